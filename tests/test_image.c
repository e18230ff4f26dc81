/* Images: decoding as load_image does, Pillow-exact resize, the HF image processors
 * against the preprocess_* and model fixtures, the shared/data/images corpus, the
 * public API and the arrays reader/writer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "vlmc.h"
#include "core/file.h"
#include "formats/arrays.h"
#include "formats/json.h"
#include "vision/image.h"
#include "vision/processors.h"
#include "vision/resize.h"

/* ---- helpers ------------------------------------------------------------------ */

static int load_set(const char *rel, array_set *s) {
    const char *dir = shared_path(rel);
    if (!dir) return 0;
    vlmc_error e = {0};
    if (arrays_read_dir(dir, 1, s, &e)) {
        CHECK(0, "%s: %s", rel, e.message);
        return 0;
    }
    return 1;
}

static named_array *need(const array_set *s, const char *name) {
    named_array *a = array_set_find(s, name);
    CHECK(a != NULL, "array %s missing", name);
    return a;
}

/* Number of differing bytes; reports the largest difference. */
static size_t u8_diff(const uint8_t *a, const uint8_t *b, size_t n, int *maxd) {
    size_t bad = 0;
    *maxd = 0;
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) {
            bad++;
            int d = abs((int)a[i] - (int)b[i]);
            if (d > *maxd) *maxd = d;
        }
    return bad;
}

static int check_u8(const char *what, const uint8_t *got, const named_array *want, size_t n) {
    if (!want) return 0;
    size_t wn = (size_t)named_array_numel(want);
    if (!CHECK(wn == n, "%s: %zu values, fixture has %zu", what, n, wn)) return 0;
    int maxd;
    size_t bad = u8_diff(got, want->data, n, &maxd);
    CHECK(bad == 0, "%s: %zu of %zu uint8 values differ (max diff %d)", what, bad, n, maxd);
    return bad == 0;
}

static float check_f32(const char *what, const float *got, const named_array *want, size_t n, float tol) {
    if (!want) return -1;
    size_t wn = (size_t)named_array_numel(want);
    if (!CHECK(wn == n, "%s: %zu values, fixture has %zu", what, n, wn)) return -1;
    float d = max_abs_diff(got, want->data, n);
    CHECK(d <= tol, "%s: max |diff| %g > %g", what, d, tol);
    return d;
}

static int load_proc(const char *cfg_path, image_proc *p) {
    cJSON *cfg = NULL;
    vlmc_error e = {0};
    if (json_parse_file(cfg_path, 1 << 20, &cfg, &e)) {
        CHECK(0, "%s", e.message);
        return 0;
    }
    vlmc_status st = image_proc_from_json(cfg, cfg_path, p, &e);
    cJSON_Delete(cfg);
    CHECK(st == VLMC_OK, "%s", e.message);
    return st == VLMC_OK;
}

static int decode_rel(const char *rel, rgb_image *im, vlmc_error *e) {
    const char *path = shared_path(rel);
    if (!path) return -1;
    return (int)image_decode_file(path, NULL, im, e);
}

static const uint8_t *shape_ok(const named_array *a, int h, int w) {
    if (!a) return NULL;
    CHECK(a->ndim == 3 && a->shape[0] == h && a->shape[1] == w && a->shape[2] == 3,
          "%s: shape [%lld,%lld,%lld] vs %dx%dx3", a->name, (long long)a->shape[0], (long long)a->shape[1],
          (long long)a->shape[2], h, w);
    return a->data;
}

/* ---- preprocess_clip / siglip: intermediates and pixel values ------------------- */

static void run_simple_fixture(const char *dir, int has_crop) {
    array_set s;
    char rel[256];
    snprintf(rel, sizeof rel, "fixtures/%s/reference", dir);
    if (!load_set(rel, &s)) return;
    snprintf(rel, sizeof rel, "fixtures/%s/preprocessor_config.json", dir);
    image_proc p;
    if (!load_proc(shared_path(rel), &p)) goto out;
    for (int i = 0; i < 2; i++) {
        char name[64];
        rgb_image im = {0};
        vlmc_error e = {0};
        snprintf(rel, sizeof rel, "fixtures/%s/reference/image%d.png", dir, i);
        if (decode_rel(rel, &im, &e)) {
            CHECK(0, "%s", e.message);
            continue;
        }
        snprintf(name, sizeof name, "image%d_raw", i);
        named_array *raw = need(&s, name);
        if (raw && shape_ok(raw, im.height, im.width)) check_u8(name, im.data, raw, (size_t)im.width * im.height * 3);
        /* the resize step alone */
        snprintf(name, sizeof name, "image%d_resized", i);
        named_array *rz = need(&s, name);
        if (rz && rz->ndim == 3) {
            int oh = (int)rz->shape[0], ow = (int)rz->shape[1];
            uint8_t *buf = malloc((size_t)oh * ow * 3);
            CHECK(resize_u8(im.data, im.width, im.height, 3, buf, ow, oh, p.resample, &e) == VLMC_OK, "%s", e.message);
            check_u8(name, buf, rz, (size_t)oh * ow * 3);
            free(buf);
        }
        proc_output o;
        if (image_proc_run(&p, &im, &o, &e)) {
            CHECK(0, "%s", e.message);
            rgb_image_free(&im);
            continue;
        }
        size_t n = (size_t)o.n_frames * 3 * o.frame_h * o.frame_w;
        if (has_crop) { /* the cropped uint8 image = our u8 planes, HWC */
            snprintf(name, sizeof name, "image%d_cropped", i);
            named_array *cr = need(&s, name);
            if (cr) {
                uint8_t *hwc = malloc(n);
                size_t plane = (size_t)o.frame_h * o.frame_w;
                for (size_t k = 0; k < plane; k++)
                    for (int c = 0; c < 3; c++) hwc[k * 3 + c] = o.u8[c * plane + k];
                check_u8(name, hwc, cr, n);
                free(hwc);
            }
        }
        snprintf(name, sizeof name, "image%d_pixel_values", i);
        float d = check_f32(name, o.pixel_values, need(&s, name), n, 1e-5f);
        printf("  %s %s: pixel_values max |diff| %g%s\n", dir, name, d, d == 0 ? " (bit-exact)" : "");
        proc_output_free(&o);
        rgb_image_free(&im);
    }
out:
    array_set_free(&s);
}

static void test_preprocess_clip(void) { run_simple_fixture("preprocess_clip", 1); }
static void test_preprocess_siglip(void) { run_simple_fixture("preprocess_siglip", 0); }

/* ---- preprocess_llava_next / idefics3 --------------------------------------------- */

static void run_tiled_fixture(const char *dir) {
    array_set s;
    char rel[256];
    snprintf(rel, sizeof rel, "fixtures/%s/reference", dir);
    if (!load_set(rel, &s)) return;
    snprintf(rel, sizeof rel, "fixtures/%s/preprocessor_config.json", dir);
    image_proc p;
    if (!load_proc(shared_path(rel), &p)) goto out;
    for (int i = 0; i < 2; i++) {
        char name[64];
        rgb_image im = {0};
        vlmc_error e = {0};
        snprintf(rel, sizeof rel, "fixtures/%s/reference/image%d.png", dir, i);
        if (decode_rel(rel, &im, &e)) {
            CHECK(0, "%s", e.message);
            continue;
        }
        proc_output o;
        if (image_proc_run(&p, &im, &o, &e)) {
            CHECK(0, "%s", e.message);
            rgb_image_free(&im);
            continue;
        }
        snprintf(name, sizeof name, "image%d_pixel_values", i);
        named_array *pv = need(&s, name);
        if (pv) {
            int same = pv->ndim == o.ndim;
            for (int d = 0; same && d < o.ndim; d++) same = pv->shape[d] == o.shape[d];
            CHECK(same, "%s: shape differs (fixture tiles %lld, ours %lld)", name, (long long)pv->shape[1],
                  (long long)o.shape[1]);
            if (same) {
                size_t n = (size_t)o.n_frames * 3 * o.frame_h * o.frame_w;
                float d = check_f32(name, o.pixel_values, pv, n, 1e-5f);
                printf("  %s %s: %d tiles, pixel_values max |diff| %g%s\n", dir, name, o.n_frames, d,
                       d == 0 ? " (bit-exact)" : "");
            }
        }
        snprintf(name, sizeof name, "image%d_image_sizes", i);
        named_array *is = array_set_find(&s, name);
        if (is) {
            const int32_t *v = is->data;
            CHECK(o.has_image_sizes && v[0] == o.image_sizes[0] && v[1] == o.image_sizes[1], "%s", name);
        }
        snprintf(name, sizeof name, "image%d_pixel_attention_mask", i);
        named_array *pm = array_set_find(&s, name);
        if (pm) {
            size_t n = (size_t)o.n_frames * o.frame_h * o.frame_w;
            CHECK(o.pixel_attention_mask && (size_t)named_array_numel(pm) == n &&
                      !memcmp(pm->data, o.pixel_attention_mask, n * 4),
                  "%s differs", name);
        }
        if (o.has_rows_cols && s.meta) {
            const cJSON *imgs = json_get(s.meta, "images");
            const cJSON *m = cJSON_GetArrayItem(imgs, i);
            if (json_has(m, "rows"))
                CHECK(json_int(m, "rows", -1) == o.rows && json_int(m, "cols", -1) == o.cols,
                      "%s image%d rows/cols %d,%d vs %lld,%lld", dir, i, o.rows, o.cols, (long long)json_int(m, "rows", -1),
                      (long long)json_int(m, "cols", -1));
        }
        proc_output_free(&o);
        rgb_image_free(&im);
    }
out:
    array_set_free(&s);
}

static void test_preprocess_llava_next(void) { run_tiled_fixture("preprocess_llava_next"); }
static void test_preprocess_idefics3(void) { run_tiled_fixture("preprocess_idefics3"); }

/* ---- preprocess_real: real files, load_image output, u8 + lut --------------------- */

static void test_preprocess_real(void) {
    array_set s;
    if (!load_set("fixtures/preprocess_real/reference", &s)) return;
    static const char *procs[4] = {"clip", "siglip", "llava_next", "idefics3"};
    image_proc p[4];
    char rel[256];
    for (int k = 0; k < 4; k++) {
        snprintf(rel, sizeof rel, "fixtures/preprocess_real/processor_%s/preprocessor_config.json", procs[k]);
        if (!load_proc(shared_path(rel), &p[k])) goto out;
        snprintf(rel, sizeof rel, "%s_lut", procs[k]);
        named_array *lut = need(&s, rel);
        if (lut) {
            float mine[3][256];
            proc_make_lut(&p[k], mine);
            float d = max_abs_diff(&mine[0][0], lut->data, 768);
            CHECK(d == 0, "%s: our rescale/normalize table differs by %g", rel, d);
        }
    }
    const cJSON *imgs = json_get(s.meta, "images");
    for (int i = 0; i < cJSON_GetArraySize(imgs); i++) {
        const cJSON *m = cJSON_GetArrayItem(imgs, i);
        snprintf(rel, sizeof rel, "fixtures/preprocess_real/%s", json_string(m, "file", ""));
        rgb_image im = {0};
        vlmc_error e = {0};
        if (decode_rel(rel, &im, &e)) {
            CHECK(0, "%s", e.message);
            continue;
        }
        char name[64];
        snprintf(name, sizeof name, "image%d_rgb", i);
        named_array *rgb = need(&s, name);
        int ok = 0;
        if (rgb && shape_ok(rgb, im.height, im.width)) ok = check_u8(name, im.data, rgb, (size_t)im.width * im.height * 3);
        printf("  preprocess_real %s (%s): load_image %s\n", name, json_string(m, "file", ""), ok ? "bit-exact" : "DIFFERS");
        for (int k = 0; k < 4; k++) {
            snprintf(name, sizeof name, "image%d_%s_u8", i, procs[k]);
            named_array *u8 = array_set_find(&s, name);
            if (!u8) continue;
            /* the processors run on the fixture's own load_image output, so decoding
             * differences (checked above) do not hide processing ones */
            rgb_image ref = {(int)rgb->shape[1], (int)rgb->shape[0], rgb->data};
            proc_output o;
            if (image_proc_run(&p[k], &ref, &o, &e)) {
                CHECK(0, "%s: %s", name, e.message);
                continue;
            }
            size_t n = (size_t)o.n_frames * 3 * o.frame_h * o.frame_w;
            int same = u8->ndim == o.ndim;
            for (int d = 0; same && d < o.ndim; d++) same = u8->shape[d] == o.shape[d];
            if (CHECK(same, "%s: shape differs (fixture dim1 %lld, ours %lld)", name, (long long)u8->shape[1],
                      (long long)o.shape[1])) {
                int good = check_u8(name, o.u8, u8, n);
                printf("  preprocess_real %s: %d frames %s\n", name, o.n_frames, good ? "bit-exact" : "DIFFERS");
            }
            snprintf(name, sizeof name, "image%d_%s_image_sizes", i, procs[k]);
            named_array *is = array_set_find(&s, name);
            if (is) CHECK(o.image_sizes[0] == ((int32_t *)is->data)[0] && o.image_sizes[1] == ((int32_t *)is->data)[1],
                          "%s", name);
            if (k == 2 && json_has(m, "llava_next_tiles"))
                CHECK(o.n_frames == json_int(m, "llava_next_tiles", -1), "image%d llava_next tiles %d", i, o.n_frames);
            if (k == 3 && json_has(m, "idefics3_rows_cols")) {
                const cJSON *rc = json_get(m, "idefics3_rows_cols");
                CHECK(o.rows == cJSON_GetArrayItem(rc, 0)->valueint && o.cols == cJSON_GetArrayItem(rc, 1)->valueint,
                      "image%d idefics3 rows/cols %d,%d", i, o.rows, o.cols);
            }
            proc_output_free(&o);
        }
        rgb_image_free(&im);
    }
out:
    array_set_free(&s);
}


/* ---- model fixtures through the public API ------------------------------------------ */

static void test_model_fixtures(void) {
    static const char *models[] = {"llava", "llava_next", "idefics3", "clip_vision", "siglip_vision",
                                   "paligemma", "llava_batch", "llava_multi_image"};
    if (!shared_dir()) return;
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        char rel[256];
        snprintf(rel, sizeof rel, "fixtures/%s", models[m]);
        const char *dir = shared_path(rel);
        if (!file_is_dir(dir)) continue;
        char dirbuf[512];
        snprintf(dirbuf, sizeof dirbuf, "%s", dir);
        array_set s;
        snprintf(rel, sizeof rel, "fixtures/%s/reference", models[m]);
        if (!load_set(rel, &s)) continue;
        vlmc_error e = {0};
        vlmc_image_processor *proc = NULL;
        if (!CHECK(vlmc_image_processor_load(dirbuf, &proc, &e) == VLMC_OK, "%s: %s", models[m], e.message)) {
            array_set_free(&s);
            continue;
        }
        named_array *pv = need(&s, "pixel_values");
        int nimg = array_set_find(&s, "image0_raw") ? 2 : 1;
        size_t off = 0;
        float worst = 0;
        for (int i = 0; i < nimg && pv; i++) {
            char name[64], path[600];
            if (nimg == 1) snprintf(path, sizeof path, "%s/reference/image.png", dirbuf);
            else snprintf(path, sizeof path, "%s/reference/image%d.png", dirbuf, i);
            vlmc_image *im = NULL;
            if (!CHECK(vlmc_image_load_file(path, NULL, &im, &e) == VLMC_OK, "%s", e.message)) continue;
            snprintf(name, sizeof name, nimg == 1 ? "image_raw" : "image%d_raw", i);
            named_array *raw = array_set_find(&s, name);
            if (raw) check_u8(name, vlmc_image_rgb(im), raw, (size_t)vlmc_image_width(im) * vlmc_image_height(im) * 3);
            vlmc_preprocessed pp;
            if (!CHECK(vlmc_preprocess(proc, im, &pp, &e) == VLMC_OK, "%s: %s", models[m], e.message)) {
                vlmc_image_free(im);
                continue;
            }
            size_t n = 1;
            for (int d = 0; d < pp.ndim; d++) n *= (size_t)pp.shape[d];
            /* shapes: [1,...] per image; the fixture stacks images on dim 0 */
            for (int d = 1; d < pp.ndim; d++)
                CHECK(pv->ndim == pp.ndim && pv->shape[d] == pp.shape[d], "%s: pixel_values dim %d", models[m], d);
            if (off + n <= (size_t)named_array_numel(pv)) {
                float d = max_abs_diff(pp.pixel_values, (float *)pv->data + off, n);
                if (d > worst) worst = d;
                CHECK(d <= 1e-5f, "%s image %d: pixel_values max |diff| %g", models[m], i, d);
            } else {
                CHECK(0, "%s: pixel_values size", models[m]);
            }
            off += n;
            /* image-token counts from the model's config.json */
            const cJSON *meta = s.meta;
            int64_t want = json_int(meta, "num_image_tokens", json_int(meta, "num_image_tokens_per_image", -1));
            if (!strcmp(models[m], "idefics3")) {
                int64_t per = json_int(meta, "image_seq_len_per_tile", -1), r = json_int(meta, "image_rows", -1),
                        c = json_int(meta, "image_cols", -1);
                want = per * (r * c + 1);
                CHECK(pp.has_rows_cols && pp.rows == r && pp.cols == c, "idefics3 rows/cols %d,%d", pp.rows, pp.cols);
                named_array *pm = need(&s, "pixel_attention_mask");
                if (pm && pp.pixel_attention_mask)
                    CHECK(!memcmp(pm->data, pp.pixel_attention_mask, (size_t)named_array_numel(pm) * 4),
                          "idefics3 pixel_attention_mask");
            }
            if (!strcmp(models[m], "llava_next")) {
                named_array *is = need(&s, "image_sizes");
                if (is) CHECK(pp.has_image_sizes && !memcmp(is->data, pp.image_sizes, 8), "llava_next image_sizes");
            }
            if (want >= 0)
                CHECK(pp.num_image_tokens == want, "%s: %lld image tokens, fixture %lld", models[m],
                      (long long)pp.num_image_tokens, (long long)want);
            vlmc_preprocessed_free(&pp);
            vlmc_image_free(im);
        }
        printf("  model fixture %s: pixel_values max |diff| %g%s\n", models[m], worst, worst == 0 ? " (bit-exact)" : "");
        vlmc_image_processor_free(proc);
        array_set_free(&s);
    }
}

/* ---- the data/images corpus ------------------------------------------------------------ */

static void test_corpus(void) {
    const char *root = shared_path("data/images");
    if (!root) return;
    char rootbuf[512];
    snprintf(rootbuf, sizeof rootbuf, "%s", root);
    static const char *sub[] = {"bad", "documents", "exif", "formats", "photos"};
    int decoded = 0, failed = 0;
    for (size_t k = 0; k < sizeof sub / sizeof sub[0]; k++) {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "ls '%s/%s' 2>/dev/null", rootbuf, sub[k]);
        FILE *ls = popen(cmd, "r");
        if (!ls) continue;
        char line[512];
        while (fgets(line, sizeof line, ls)) {
            line[strcspn(line, "\n")] = 0;
            char path[1100];
            snprintf(path, sizeof path, "%s/%s/%s", rootbuf, sub[k], line);
            rgb_image im;
            vlmc_error e = {0};
            vlmc_status st = image_decode_file(path, NULL, &im, &e);
            int expect_fail = !strcmp(sub[k], "bad") && strcmp(line, "invalid_exif.jpg") != 0;
            if (st) {
                failed++;
                printf("  fails (as %s): %s/%s: [%s] %s\n", expect_fail ? "expected" : "NOT expected", sub[k], line,
                       vlmc_status_name(st), e.message);
                CHECK(expect_fail, "%s should decode: %s", line, e.message);
                CHECK(strstr(e.message, line) != NULL, "error for %s does not name the file: %s", line, e.message);
            } else {
                decoded++;
                CHECK(!expect_fail, "%s should fail", line);
                CHECK(im.width > 0 && im.height > 0, "%s: empty", line);
                rgb_image_free(&im);
            }
            if (!strcmp(line, "decompression_bomb.gif")) CHECK(st == VLMC_ERR_LIMIT, "bomb: %s", vlmc_status_name(st));
        }
        pclose(ls);
    }
    printf("  data/images: %d decoded, %d failed cleanly\n", decoded, failed);
    CHECK(decoded >= 40, "only %d images decoded", decoded);
}

static double mean_abs(const rgb_image *a, const rgb_image *b) {
    if (a->width != b->width || a->height != b->height) return 1e9;
    double s = 0;
    size_t n = (size_t)a->width * a->height * 3;
    for (size_t i = 0; i < n; i++) s += abs((int)a->data[i] - (int)b->data[i]);
    return s / n;
}

static void test_exif_orientation(void) {
    rgb_image ref;
    vlmc_error e = {0};
    int r = decode_rel("data/images/formats/hopper.jpg", &ref, &e);
    if (r < 0) return;
    if (!CHECK(r == 0, "%s", e.message)) return;
    for (int o = 2; o <= 8; o++) {
        char rel[128];
        snprintf(rel, sizeof rel, "data/images/exif/hopper_orientation_%d.jpg", o);
        rgb_image im;
        if (!CHECK(decode_rel(rel, &im, &e) == 0, "%s", e.message)) continue;
        double upright = mean_abs(&ref, &im);
        CHECK(upright < 8.0, "orientation %d: mean |diff| to hopper.jpg %.2f", o, upright);
        /* and no other transpose of the decoded pixels matches better */
        for (int t = 2; t <= 8; t++) {
            rgb_image c = {im.width, im.height, malloc((size_t)im.width * im.height * 3)};
            memcpy(c.data, im.data, (size_t)im.width * im.height * 3);
            image_apply_orientation(&c, t, &e);
            double d = mean_abs(&ref, &c);
            CHECK(d > upright, "orientation %d: transform %d matches better (%.2f <= %.2f)", o, t, d, upright);
            rgb_image_free(&c);
        }
        printf("  hopper_orientation_%d: mean |diff| to hopper.jpg %.2f\n", o, upright);
        rgb_image_free(&im);
    }
    rgb_image_free(&ref);
    rgb_image rect;
    if (decode_rel("data/images/exif/orientation_rectangle.jpg", &rect, &e) == 0) {
        CHECK(rect.width == 1 && rect.height == 2, "orientation_rectangle: %dx%d, want 1x2", rect.width, rect.height);
        rgb_image_free(&rect);
    }
    /* the parser on hand-made blocks */
    static const uint8_t be[] = {'E', 'x', 'i', 'f', 0, 0, 'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0};
    static const uint8_t le[] = {'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 3, 0, 0, 0};
    static const uint8_t bad[] = {'I', 'I', 42, 0, 0xff, 0xff, 0xff, 0x7f};
    CHECK(exif_orientation(be, sizeof be) == 6, "big-endian EXIF");
    CHECK(exif_orientation(le, sizeof le) == 3, "little-endian EXIF");
    CHECK(exif_orientation(bad, sizeof bad) == 1, "bad IFD offset");
    CHECK(exif_orientation(le, 12) == 1, "truncated EXIF");
}

static void test_cmyk(void) {
    rgb_image a, b;
    vlmc_error e = {0};
    int r = decode_rel("data/images/formats/pil_sample_cmyk.jpg", &a, &e);
    if (r < 0) return;
    if (!CHECK(r == 0, "%s", e.message)) return;
    if (CHECK(decode_rel("data/images/formats/pil_sample_rgb.jpg", &b, &e) == 0, "%s", e.message)) {
        double d = mean_abs(&a, &b);
        printf("  CMYK vs RGB sample: mean |diff| %.2f\n", d);
        CHECK(d < 8.0, "CMYK sample differs from the RGB one by %.2f on average", d);
        rgb_image_free(&b);
    }
    rgb_image_free(&a);
}

static char *b64(const uint8_t *d, size_t n) {
    static const char *T = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = malloc(n / 3 * 4 + 8), *p = o;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
        *p++ = T[v >> 18 & 63];
        *p++ = T[v >> 12 & 63];
        *p++ = i + 1 < n ? T[v >> 6 & 63] : '=';
        *p++ = i + 2 < n ? T[v & 63] : '=';
    }
    *p = 0;
    return o;
}

static void test_data_url(void) {
    static const char *files[] = {"data/images/formats/hopper.png", "data/images/formats/hopper.webp",
                                  "data/images/exif/hopper_orientation_6.jpg", "data/images/formats/hopper.gif"};
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        const char *path = shared_path(files[k]);
        if (!path) return;
        size_t n;
        char *bytes = test_read_file(path, &n);
        if (!CHECK(bytes != NULL, "read %s", path)) continue;
        char *enc = b64((const uint8_t *)bytes, n);
        size_t L = strlen(enc) + 64;
        char *url = malloc(L);
        snprintf(url, L, "data:image/whatever;base64,%s", enc);
        vlmc_error e = {0};
        vlmc_image *a = NULL, *b = NULL, *c = NULL, *d = NULL;
        CHECK(vlmc_image_load_file(path, NULL, &a, &e) == VLMC_OK, "%s", e.message);
        CHECK(vlmc_image_load_data_url(url, NULL, &b, &e) == VLMC_OK, "%s", e.message);
        CHECK(vlmc_image_load_data_url(enc, NULL, &c, &e) == VLMC_OK, "bare base64: %s", e.message);
        CHECK(vlmc_image_load_memory(bytes, n, "mem", NULL, &d, &e) == VLMC_OK, "%s", e.message);
        if (a && b && c && d) {
            size_t sz = (size_t)vlmc_image_width(a) * vlmc_image_height(a) * 3;
            CHECK(vlmc_image_width(a) == vlmc_image_width(b) && vlmc_image_height(a) == vlmc_image_height(b) &&
                      !memcmp(vlmc_image_rgb(a), vlmc_image_rgb(b), sz) && !memcmp(vlmc_image_rgb(a), vlmc_image_rgb(c), sz) &&
                      !memcmp(vlmc_image_rgb(a), vlmc_image_rgb(d), sz),
                  "%s: data URL decode differs from the file", files[k]);
        }
        vlmc_image_free(a);
        vlmc_image_free(b);
        vlmc_image_free(c);
        vlmc_image_free(d);
        free(url);
        free(enc);
        free(bytes);
    }
    vlmc_error e = {0};
    vlmc_image *x = NULL;
    CHECK(vlmc_image_load_data_url("data:image/png;base64,@@@@", NULL, &x, &e) == VLMC_ERR_FORMAT && !x, "bad base64");
    CHECK(vlmc_image_load_data_url("data:image/png,abc", NULL, &x, &e) == VLMC_ERR_UNSUPPORTED, "non-base64 data URL");
    CHECK(vlmc_image_load_data_url("data:image/png;base64,", NULL, &x, &e) != VLMC_OK, "empty payload");
}

static void test_limits(void) {
    const char *path = shared_path("data/images/photos/chelsea.png");
    if (!path) return;
    vlmc_error e = {0};
    vlmc_image *im = NULL;
    vlmc_image_limits lim = {1000, 0};
    CHECK(vlmc_image_load_file(path, &lim, &im, &e) == VLMC_ERR_LIMIT && !im, "pixel limit: %s", e.message);
    CHECK(strstr(e.message, "chelsea.png") != NULL, "limit error names the file: %s", e.message);
    lim = (vlmc_image_limits){0, 1000};
    CHECK(vlmc_image_load_file(path, &lim, &im, &e) == VLMC_ERR_LIMIT, "file size limit: %s", e.message);
    CHECK(vlmc_image_load_file("/nonexistent/x.png", NULL, &im, &e) == VLMC_ERR_IO, "missing file");
    CHECK(vlmc_image_load_memory("hello world", 11, "text", NULL, &im, &e) == VLMC_ERR_UNSUPPORTED, "not an image");
}

/* ---- resize and processors without fixtures -------------------------------------------- */

static void test_resize_basics(void) {
    enum { W = 37, H = 23 };
    uint8_t src[H][W][3], dst[64 * 64 * 3];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) src[y][x][0] = src[y][x][1] = src[y][x][2] = 77;
    vlmc_error e = {0};
    static const resample_filter fs[] = {RESAMPLE_NEAREST, RESAMPLE_LANCZOS, RESAMPLE_BILINEAR, RESAMPLE_BICUBIC,
                                         RESAMPLE_BOX, RESAMPLE_HAMMING};
    for (size_t f = 0; f < 6; f++) {
        int sizes[3][2] = {{64, 64}, {5, 3}, {37, 40}};
        for (int k = 0; k < 3; k++) {
            int ow = sizes[k][0], oh = sizes[k][1];
            CHECK(resize_u8(&src[0][0][0], W, H, 3, dst, ow, oh, fs[f], &e) == VLMC_OK, "%s", e.message);
            int bad = 0;
            for (int i = 0; i < ow * oh * 3; i++) bad += dst[i] != 77;
            CHECK(bad == 0, "filter %d %dx%d: a flat image did not stay flat", (int)fs[f], ow, oh);
        }
    }
    /* NEAREST 2x downscale picks pixel centres 1, 3, 5 ... (Pillow's affine scale) */
    uint8_t row[6] = {0, 10, 20, 30, 40, 50}, out[3];
    CHECK(resize_u8(row, 6, 1, 1, out, 3, 1, RESAMPLE_NEAREST, &e) == VLMC_OK && out[0] == 10 && out[1] == 30 && out[2] == 50,
          "nearest: %d %d %d", out[0], out[1], out[2]);
    CHECK(resize_u8(row, 6, 1, 1, out, 0, 1, RESAMPLE_BICUBIC, &e) == VLMC_ERR_ARG, "zero size rejected");
    /* the float path agrees with the fixed-point one to rounding */
    enum { N = 31 * 17 };
    static uint8_t ru[N * 3], ro[9 * 13 * 3];
    static float rf[N * 3], rfo[9 * 13 * 3];
    for (int i = 0; i < N * 3; i++) rf[i] = ru[i] = (uint8_t)((i * 2654435761u) >> 13);
    for (size_t f = 1; f < 6; f++) {
        int ok = resize_u8(ru, 31, 17, 3, ro, 9, 13, fs[f], &e) == VLMC_OK &&
                 resize_f32(rf, 31, 17, 3, rfo, 9, 13, fs[f], &e) == VLMC_OK;
        float worst = 0;
        for (int i = 0; ok && i < 9 * 13 * 3; i++) {
            float v = rfo[i] < 0 ? 0 : rfo[i] > 255 ? 255 : rfo[i];
            float d = fabsf(v - ro[i]);
            if (d > worst) worst = d;
        }
        CHECK(ok && worst <= 1.5f, "filter %d: float and uint8 resize differ by %g", (int)fs[f], worst);
    }
}

static void test_processor_configs(void) {
    static const char *bad[] = {
        "{}", "[]", "{\"image_processor_type\": \"FooProcessor\"}",
        "{\"image_processor_type\": \"CLIPImageProcessor\", \"size\": {\"longest_edge\": 5}}",
        "{\"image_processor_type\": \"CLIPImageProcessor\", \"size\": -3}",
        "{\"image_processor_type\": \"CLIPImageProcessor\", \"image_std\": [0, 1, 1]}",
        "{\"image_processor_type\": \"CLIPImageProcessor\", \"resample\": 9}",
        "{\"image_processor_type\": \"SiglipImageProcessor\", \"size\": {\"shortest_edge\": 5}}",
        "{\"image_processor_type\": \"LlavaNextImageProcessor\", \"image_grid_pinpoints\": [[1]]}",
        "{\"image_processor_type\": \"Idefics3ImageProcessor\", \"max_image_size\": 7}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cJSON *j = NULL;
        vlmc_error e = {0};
        image_proc p;
        if (json_parse(bad[i], strlen(bad[i]), "cfg", &j, &e) != VLMC_OK) continue;
        CHECK(image_proc_from_json(j, "cfg", &p, &e) != VLMC_OK, "config accepted: %s", bad[i]);
        CHECK(e.message[0] != 0, "no message for %s", bad[i]);
        cJSON_Delete(j);
    }
    /* defaults: an (almost) empty CLIP config is the OpenAI CLIP processor */
    cJSON *j = NULL;
    vlmc_error e = {0};
    image_proc p;
    const char *txt = "{\"image_processor_type\": \"CLIPImageProcessor\"}";
    json_parse(txt, strlen(txt), "cfg", &j, &e);
    CHECK(image_proc_from_json(j, "cfg", &p, &e) == VLMC_OK && p.size_shortest_edge == 224 && p.crop_height == 224 &&
              p.resample == RESAMPLE_BICUBIC && p.mean[0] == 0.48145466,
          "CLIP defaults");
    cJSON_Delete(j);
    /* a tiny and an extreme image through every processor */
    static const char *cfgs[] = {
        "{\"image_processor_type\": \"CLIPImageProcessor\", \"size\": {\"shortest_edge\": 32}, \"crop_size\": 32}",
        "{\"image_processor_type\": \"SiglipImageProcessor\", \"size\": {\"height\": 16, \"width\": 24}}",
        "{\"image_processor_type\": \"LlavaNextImageProcessor\", \"size\": {\"shortest_edge\": 16}, \"crop_size\": 16, "
        "\"image_grid_pinpoints\": [[16, 32], [32, 16], [32, 32]]}",
        "{\"image_processor_type\": \"Idefics3ImageProcessor\", \"size\": {\"longest_edge\": 48}, \"max_image_size\": "
        "{\"longest_edge\": 16}}",
    };
    uint8_t px[1 * 200 * 3];
    for (int i = 0; i < 600; i++) px[i] = (uint8_t)(i * 7);
    rgb_image tall = {1, 200, px}, wide = {200, 1, px}, dot = {1, 1, px};
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        json_parse(cfgs[i], strlen(cfgs[i]), "cfg", &j, &e);
        if (!CHECK(image_proc_from_json(j, "cfg", &p, &e) == VLMC_OK, "%s: %s", cfgs[i], e.message)) {
            cJSON_Delete(j);
            continue;
        }
        cJSON_Delete(j);
        const rgb_image *ims[3] = {&tall, &wide, &dot};
        for (int k = 0; k < 3; k++) {
            proc_output o;
            vlmc_status st = image_proc_run(&p, ims[k], &o, &e);
            /* either a result or a clear error, never a crash */
            if (st == VLMC_OK) {
                CHECK(o.n_frames >= 1 && o.pixel_values != NULL, "%s", p.type_name);
                proc_output_free(&o);
            } else {
                CHECK(e.message[0] != 0, "%s: error without message", p.type_name);
            }
        }
    }
}

static void test_arrays_roundtrip(void) {
    const char *dir = test_tmpdir();
    char sub[512];
    snprintf(sub, sizeof sub, "%s/arrays", dir);
    float f[6] = {1, 2, 3, 4, 5, 6};
    int32_t i4[2] = {-7, 9};
    uint8_t u[3] = {1, 2, 255};
    named_array a[3] = {
        {.name = "f", .dtype = ARRAY_F32, .ndim = 6, .shape = {1, 1, 1, 2, 3, 1}, .data = f, .note = "six dims"},
        {.name = "i", .dtype = ARRAY_I32, .ndim = 1, .shape = {2}, .data = i4},
        {.name = "u", .file = "bytes.bin", .dtype = ARRAY_U8, .ndim = 2, .shape = {1, 3}, .data = u},
    };
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddNumberToObject(meta, "k", 3);
    vlmc_error e = {0};
    CHECK(arrays_write_dir(sub, "test", meta, a, 3, &e) == VLMC_OK, "%s", e.message);
    cJSON_Delete(meta);
    array_set s;
    if (!CHECK(arrays_read_dir(sub, 1, &s, &e) == VLMC_OK, "%s", e.message)) return;
    CHECK(s.count == 3 && !strcmp(s.format, "test") && json_int(s.meta, "k", 0) == 3, "manifest");
    named_array *rf = array_set_find(&s, "f"), *ri = array_set_find(&s, "i"), *ru = array_set_find(&s, "u");
    CHECK(rf && rf->ndim == 6 && rf->shape[4] == 3 && !memcmp(rf->data, f, sizeof f) && !strcmp(rf->note, "six dims"), "f");
    CHECK(ri && ri->dtype == ARRAY_I32 && !memcmp(ri->data, i4, sizeof i4), "i");
    CHECK(ru && !strcmp(ru->file, "bytes.bin") && !memcmp(ru->data, u, 3), "u");
    array_set_free(&s);
    /* a .bin of the wrong size is an error naming the file */
    char p[600];
    snprintf(p, sizeof p, "%s/i.bin", sub);
    file_write_all(p, "abc", 3, &e);
    CHECK(arrays_read_dir(sub, 1, &s, &e) == VLMC_ERR_FORMAT && strstr(e.message, "i.bin"), "short file: %s", e.message);
    /* manifests that point outside the folder are refused */
    snprintf(p, sizeof p, "%s/manifest.json", sub);
    const char *evil = "{\"arrays\": [{\"name\": \"x\", \"file\": \"../x.bin\", \"dtype\": \"uint8\", \"shape\": [1]}]}";
    file_write_all(p, evil, strlen(evil), &e);
    CHECK(arrays_read_dir(sub, 1, &s, &e) == VLMC_ERR_FORMAT, "path escape: %s", e.message);
}

/* BMP and PPM written here from known pixels decode back to them. */
static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint8_t *make_bmp(int w, int h, int bpp, int top_down, const uint8_t *rgb, size_t *len) {
    size_t stride = (((size_t)w * bpp + 31) / 32) * 4, pal = bpp == 8 ? 256 * 4 : 0;
    size_t off = 54 + pal, n = off + stride * h;
    uint8_t *b = calloc(n, 1);
    b[0] = 'B';
    b[1] = 'M';
    put32(b + 2, (uint32_t)n);
    put32(b + 10, (uint32_t)off);
    put32(b + 14, 40);
    put32(b + 18, (uint32_t)w);
    put32(b + 22, (uint32_t)(top_down ? -h : h));
    b[26] = 1;
    b[28] = (uint8_t)bpp;
    for (int i = 0; bpp == 8 && i < 256; i++) { /* a palette of (i, 255-i, i/2) */
        b[54 + 4 * i] = (uint8_t)(i / 2);
        b[54 + 4 * i + 1] = (uint8_t)(255 - i);
        b[54 + 4 * i + 2] = (uint8_t)i;
    }
    for (int y = 0; y < h; y++) {
        uint8_t *r = b + off + (size_t)(top_down ? y : h - 1 - y) * stride;
        for (int x = 0; x < w; x++) {
            const uint8_t *px = rgb + ((size_t)y * w + x) * 3;
            if (bpp == 8) r[x] = px[0];
            else {
                int k = bpp / 8;
                r[x * k] = px[2];
                r[x * k + 1] = px[1];
                r[x * k + 2] = px[0];
            }
        }
    }
    *len = n;
    return b;
}

static void test_bmp_ppm(void) {
    enum { W = 13, H = 7 };
    uint8_t rgb[H * W * 3];
    for (int i = 0; i < H * W * 3; i++) rgb[i] = (uint8_t)(i * 37 + 11);
    for (int bpp = 8; bpp <= 32; bpp += 8) {
        if (bpp == 16) continue;
        for (int td = 0; td < 2; td++) {
            size_t n;
            uint8_t *b = make_bmp(W, H, bpp, td, rgb, &n);
            rgb_image im;
            vlmc_error e = {0};
            if (CHECK(image_decode(b, n, "t.bmp", NULL, &im, &e) == VLMC_OK, "bmp %d: %s", bpp, e.message)) {
                int bad = im.width != W || im.height != H;
                for (int i = 0; !bad && i < W * H; i++) {
                    const uint8_t *o = im.data + 3 * i, *want = rgb + 3 * i;
                    if (bpp == 8) bad = o[0] != want[0] || (int)o[1] != 255 - (int)want[0] || (int)o[2] != want[0] / 2;
                    else bad = memcmp(o, want, 3) != 0;
                }
                CHECK(!bad, "bmp %d-bit %s pixels differ", bpp, td ? "top-down" : "bottom-up");
                rgb_image_free(&im);
            }
            CHECK(image_decode(b, n - 5, "t.bmp", NULL, &im, &e) == VLMC_ERR_FORMAT, "truncated bmp accepted");
            free(b);
        }
    }
    char hdr[32];
    int hl = snprintf(hdr, sizeof hdr, "P6\n# c\n%d %d\n255\n", W, H);
    uint8_t ppm[sizeof hdr + sizeof rgb];
    memcpy(ppm, hdr, (size_t)hl);
    memcpy(ppm + hl, rgb, sizeof rgb);
    rgb_image im;
    vlmc_error e = {0};
    if (CHECK(image_decode(ppm, (size_t)hl + sizeof rgb, "t.ppm", NULL, &im, &e) == VLMC_OK, "ppm: %s", e.message)) {
        CHECK(im.width == W && im.height == H && !memcmp(im.data, rgb, sizeof rgb), "ppm pixels");
        rgb_image_free(&im);
    }
    CHECK(image_decode(ppm, (size_t)hl + 10, "t.ppm", NULL, &im, &e) == VLMC_ERR_FORMAT, "truncated ppm accepted");
}

/* Pillow 9.4 Image.resize on deterministic RGB images: FNV-1a 64 of the output bytes,
 * recorded from Pillow (Debian python3-pil 9.4.0). Input bytes: x = x*1103515245+12345
 * (mod 2^31), byte = (x >> 16) & 255, seeded with the case number + 1. */
static void test_resize_pillow_vectors(void) {
    static const struct {
        int w, h, ow, oh, filter;
        uint64_t fnv;
    } cases[] = {
        {37, 53, 224, 320, 3, 0xd0c7f39fa0bef802ull},
        {640, 480, 298, 224, 3, 0xeada6003432a3f10ull},
        {53, 37, 16, 11, 3, 0xa5af7f38453cfcd2ull},
        {200, 100, 13, 300, 1, 0xab19ad8fec9dc294ull},
        {451, 300, 97, 64, 1, 0xde0dbdade18239abull},
        {31, 17, 64, 64, 2, 0x0d310c54a2c54d85ull},
        {300, 300, 7, 9, 2, 0x9a3fe49ce4cadbfdull},
        {99, 77, 33, 22, 0, 0x5833c903e63a6a1cull},
        {5, 3, 17, 13, 0, 0x5c5c082928ee1e61ull},
        {120, 80, 41, 29, 4, 0x46996773a9d543a7ull},
        {64, 48, 80, 60, 5, 0xb924062390ecd13aull},
        {1, 1, 7, 5, 1, 0x7af5e6007be37674ull},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t n = (size_t)cases[c].w * cases[c].h * 3, on = (size_t)cases[c].ow * cases[c].oh * 3;
        uint8_t *in = malloc(n), *out = malloc(on);
        uint32_t x = (uint32_t)c + 1;
        for (size_t i = 0; i < n; i++) {
            x = (x * 1103515245u + 12345u) & 0x7fffffffu;
            in[i] = (uint8_t)(x >> 16);
        }
        vlmc_error e = {0};
        vlmc_status st = resize_u8(in, cases[c].w, cases[c].h, 3, out, cases[c].ow, cases[c].oh,
                                   (resample_filter)cases[c].filter, &e);
        uint64_t h = 0xcbf29ce484222325ull;
        for (size_t i = 0; i < on; i++) h = (h ^ out[i]) * 0x100000001b3ull;
        CHECK(st == VLMC_OK && h == cases[c].fnv, "resize %dx%d -> %dx%d filter %d differs from Pillow", cases[c].w,
              cases[c].h, cases[c].ow, cases[c].oh, cases[c].filter);
        free(in);
        free(out);
    }
}

/* load_image (Pillow 9.4: open, exif_transpose, convert("RGB")) of every decodable file
 * in data/images: size and FNV-1a 64 of the RGB bytes, recorded from Pillow 9.4.0
 * (Debian python3-pil, same libjpeg-turbo/libpng/libwebp/giflib builds as here). */
static const struct {
    const char *file;
    int w, h;
    uint64_t fnv;
} pil_load_image[] = {
        {"bad/invalid_exif.jpg", 200, 200, 0xeaa35e36e5114474ull},
        {"documents/page_scan.png", 384, 191, 0x82f21c7d6d839db7ull},
        {"documents/text_corner.png", 448, 172, 0xea6ab2ace5617634ull},
        {"exif/hopper_orientation_2.jpg", 128, 128, 0xca916c6979e81134ull},
        {"exif/hopper_orientation_3.jpg", 128, 128, 0xca916c6979e81134ull},
        {"exif/hopper_orientation_4.jpg", 128, 128, 0xb83860f93697ff83ull},
        {"exif/hopper_orientation_5.jpg", 128, 128, 0x8042eef1568d102bull},
        {"exif/hopper_orientation_6.jpg", 128, 128, 0x8042eef1568d102bull},
        {"exif/hopper_orientation_7.jpg", 128, 128, 0x58249f45fb9e6059ull},
        {"exif/hopper_orientation_8.jpg", 128, 128, 0x58249f45fb9e6059ull},
        {"exif/orientation_rectangle.jpg", 1, 2, 0x63a313316f2fcb3dull},
        {"formats/flower.webp", 480, 360, 0x665a5fc0acce024dull},
        {"formats/foo3x5x4indexed.png", 5, 3, 0xfd9bf9a950db49b2ull},
        {"formats/gray16_trns.png", 64, 64, 0xcbdb1c84dff420d3ull},
        {"formats/gray_trns.png", 64, 64, 0xcbdb1c84dff420d3ull},
        {"formats/green_palette.png", 320, 240, 0xb8301be1989ba54dull},
        {"formats/hopper.gif", 128, 128, 0x5df8fb3f47e8f1b3ull},
        {"formats/hopper.jpg", 128, 128, 0x7f9673b5bd70bde5ull},
        {"formats/hopper.png", 128, 128, 0x9fd5849cfd0b4536ull},
        {"formats/hopper.webp", 128, 128, 0x6b14da995aad5f2eull},
        {"formats/hopper_gray.jpg", 128, 128, 0x02384eefaf4ef5eaull},
        {"formats/horse_silhouette_rgba.png", 400, 328, 0x1721f9f0cdc2aec9ull},
        {"formats/interlaced_palette.png", 162, 150, 0x938abc8fa92918c1ull},
        {"formats/interlaced_rgba.png", 162, 150, 0x3d2b17d3b951fa6cull},
        {"formats/no_time_for_that_tiny.gif", 14, 25, 0x3a8dda65e0358ad1ull},
        {"formats/palette_color.png", 10, 10, 0x75075ef3769146dcull},
        {"formats/palette_gray.png", 10, 10, 0x81997a16045de431ull},
        {"formats/palette_trns_single.png", 64, 64, 0xac8b6ccf8fc25b19ull},
        {"formats/pil_sample_cmyk.jpg", 100, 100, 0x9b92ebfd81ed41bcull},
        {"formats/pil_sample_rgb.jpg", 100, 100, 0x817cba73bf3421eaull},
        {"formats/progressive_app13.jpg", 256, 160, 0x1b74a522de93eb83ull},
        {"formats/rgb_trns.png", 64, 64, 0xac8b6ccf8fc25b19ull},
        {"formats/rgba16_apng.png", 128, 64, 0x55fbb7f12f944325ull},
        {"formats/transparent.webp", 200, 150, 0x7fe123208a892571ull},
        {"photos/camera_gray.png", 512, 512, 0x350bdd5a5fceb30eull},
        {"photos/chelsea.png", 451, 300, 0xb2179687966157a8ull},
        {"photos/coco_000000039769_cats.png", 640, 480, 0xaa7e884ad0673849ull},
        {"photos/coffee.png", 600, 400, 0xd261c1b91ef6ee1eull},
        {"photos/extreme_ironing.jpg", 570, 380, 0xa138a75ab6577a82ull},
        {"photos/flower.jpg", 480, 360, 0xf03fb417b0c6354aull},
        {"photos/hubble_deep_field.jpg", 1000, 872, 0xfb39eb1ad7fbf8d4ull},
        {"photos/llava_logo.png", 512, 512, 0x3f04ff335bf7aefcull},
        {"photos/llava_v1_5_radar.jpg", 1024, 899, 0xb1308a8a9747ffd9ull},
        {"photos/retina.jpg", 1411, 1411, 0xf1309d46145345d1ull},
        {"photos/rocket.jpg", 640, 427, 0x34b9b35d9b0edb19ull},
        {"photos/skimage_logo_rgba.png", 500, 500, 0x53277361b10f3de2ull},
        {"photos/waterview.jpg", 1000, 667, 0x78832721aa367957ull},
};

static void test_corpus_matches_pillow(void) {
    if (!shared_dir()) return;
    int exact = 0, missing = 0;
    for (size_t i = 0; i < sizeof pil_load_image / sizeof pil_load_image[0]; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "data/images/%s", pil_load_image[i].file);
        const char *path = shared_path(rel);
        if (!file_exists(path)) {
            missing++;
            continue;
        }
        rgb_image im;
        vlmc_error e = {0};
        if (!CHECK(image_decode_file(path, NULL, &im, &e) == VLMC_OK, "%s: %s", rel, e.message)) continue;
        uint64_t h = 0xcbf29ce484222325ull;
        for (size_t k = 0; k < (size_t)im.width * im.height * 3; k++) h = (h ^ im.data[k]) * 0x100000001b3ull;
        int ok = im.width == pil_load_image[i].w && im.height == pil_load_image[i].h && h == pil_load_image[i].fnv;
        CHECK(ok, "%s: %dx%d, differs from Pillow's load_image (%dx%d)", rel, im.width, im.height, pil_load_image[i].w,
              pil_load_image[i].h);
        exact += ok;
        rgb_image_free(&im);
    }
    printf("  data/images: %d files bit-exact with Pillow 9.4 load_image (%d absent)\n", exact, missing);
}

/* tests/data/images (see its README): every mode/format variant against Pillow 9.4. */
static const struct {
    const char *file;
    int w, h;
    uint64_t fnv;
} pil_variants[] = {
        {"anim.gif", 23, 17, 0x7f92434981b14e55ull}, /* P */
        {"cmyk.jpg", 23, 17, 0x921520519082ebdcull}, /* CMYK */
        {"exif6.png", 17, 23, 0x9f781d9724315b39ull}, /* RGB */
        {"exif6.webp", 17, 23, 0x57c940ccef34792eull}, /* RGB */
        {"exif8.jpg", 17, 23, 0x48eb9c706dac2c74ull}, /* RGB */
        {"gray.jpg", 23, 17, 0x29135357f1d8faa3ull}, /* L */
        {"interlace.png", 23, 17, 0x5b990348b37ebb11ull}, /* RGB */
        {"l.bmp", 23, 17, 0x7ac16bf984aec8f9ull}, /* L */
        {"l.gif", 23, 17, 0x7ac16bf984aec8f9ull}, /* P */
        {"l.pgm", 23, 17, 0x7ac16bf984aec8f9ull}, /* L */
        {"l.png", 23, 17, 0x7ac16bf984aec8f9ull}, /* L */
        {"l_trns.png", 23, 17, 0x7ac16bf984aec8f9ull}, /* L */
        {"la.png", 23, 17, 0xd3886047721014b4ull}, /* LA */
        {"lossless_alpha.webp", 23, 17, 0x4a69743c5692746aull}, /* RGBA */
        {"lossy.webp", 23, 17, 0xbec5c0aa71927946ull}, /* RGB */
        {"lossy_alpha.webp", 23, 17, 0x8f112630422d2ce5ull}, /* RGBA */
        {"one.bmp", 23, 17, 0x421e4184fadfc414ull}, /* 1 */
        {"one.png", 23, 17, 0x421e4184fadfc414ull}, /* 1 */
        {"p.bmp", 23, 17, 0x7f92434981b14e55ull}, /* P */
        {"p.gif", 23, 17, 0x7f92434981b14e55ull}, /* P */
        {"p16.png", 23, 17, 0x7f92434981b14e55ull}, /* P */
        {"p200.png", 23, 17, 0xf16d49f716797b26ull}, /* P */
        {"p4.png", 23, 17, 0x7f92434981b14e55ull}, /* P */
        {"p_trns.gif", 23, 17, 0x7f92434981b14e55ull}, /* P */
        {"p_trns.png", 23, 17, 0x7f92434981b14e55ull}, /* P */
        {"prog.jpg", 23, 17, 0x5ceb0b3e448ea5c7ull}, /* RGB */
        {"q.jpg", 23, 17, 0x8ef87b600c0aff16ull}, /* RGB */
        {"rgb.bmp", 23, 17, 0x5b990348b37ebb11ull}, /* RGB */
        {"rgb.gif", 23, 17, 0xc2bbfb3c05ab329aull}, /* P */
        {"rgb.png", 23, 17, 0x5b990348b37ebb11ull}, /* RGB */
        {"rgb.ppm", 23, 17, 0x5b990348b37ebb11ull}, /* RGB */
        {"rgba.png", 23, 17, 0xae8706fd314dcd5dull}, /* RGBA */
        {"sub422.jpg", 23, 17, 0x2cc582edca73e42dull}, /* RGB */
        {"sub444.jpg", 23, 17, 0x77a21be7a0466c8cull}, /* RGB */
        {"maxval100.ppm", 34, 1, 0x6bb031388962f818ull}, /* RGB */
        {"maxval1000.pgm", 1002, 1, 0xab405d304804f76dull}, /* I */
        {"maxval4095.ppm", 342, 1, 0xc0dd05ea0ddb0c2dull}, /* RGB */
        {"gif_frame_offset.gif", 28, 20, 0x9cd0b55ac0a34103ull}, /* P */
        {"gif_trns_canvas_grown.gif", 30, 30, 0x3228ed786d50435full}, /* P */
        {"palette_index_past_plte.png", 16, 1, 0x738978e5f4a17a29ull}, /* P: indices 3..15 read the grey ramp */
};

static void test_variants_match_pillow(void) {
    int exact = 0;
    for (size_t i = 0; i < sizeof pil_variants / sizeof pil_variants[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "tests/data/images/%s", pil_variants[i].file);
        if (!file_exists(path)) {
            test_skip("%s is absent (run from the repository root)", path);
            return;
        }
        rgb_image im;
        vlmc_error e = {0};
        if (!CHECK(image_decode_file(path, NULL, &im, &e) == VLMC_OK, "%s: %s", path, e.message)) continue;
        uint64_t h = 0xcbf29ce484222325ull;
        for (size_t k = 0; k < (size_t)im.width * im.height * 3; k++) h = (h ^ im.data[k]) * 0x100000001b3ull;
        int ok = im.width == pil_variants[i].w && im.height == pil_variants[i].h && h == pil_variants[i].fnv;
        CHECK(ok, "%s: %dx%d, differs from Pillow's load_image (%dx%d)", path, im.width, im.height, pil_variants[i].w,
              pil_variants[i].h);
        exact += ok;
        rgb_image_free(&im);
    }
    printf("  tests/data/images: %d variants bit-exact with Pillow 9.4 load_image\n", exact);
}

int main(void) {
    tests_begin("image");
    TEST_RUN(test_preprocess_clip);
    TEST_RUN(test_preprocess_siglip);
    TEST_RUN(test_preprocess_llava_next);
    TEST_RUN(test_preprocess_idefics3);
    TEST_RUN(test_preprocess_real);
    TEST_RUN(test_model_fixtures);
    TEST_RUN(test_corpus);
    TEST_RUN(test_corpus_matches_pillow);
    TEST_RUN(test_variants_match_pillow);
    TEST_RUN(test_exif_orientation);
    TEST_RUN(test_cmyk);
    TEST_RUN(test_data_url);
    TEST_RUN(test_limits);
    TEST_RUN(test_bmp_ppm);
    TEST_RUN(test_resize_basics);
    TEST_RUN(test_resize_pillow_vectors);
    TEST_RUN(test_processor_configs);
    TEST_RUN(test_arrays_roundtrip);
    return tests_end();
}
