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

int main(void) {
    tests_begin("image");
    TEST_RUN(test_preprocess_clip);
    TEST_RUN(test_preprocess_siglip);
    TEST_RUN(test_preprocess_llava_next);
    TEST_RUN(test_preprocess_idefics3);
    TEST_RUN(test_preprocess_real);
    return tests_end();
}
