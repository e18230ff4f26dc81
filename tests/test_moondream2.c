/* moondream2 (vikhyat/moondream's HfMoondream at the fixture's recorded commit) against ../shared/fixtures/moondream2:
 * the overlap crops (Pillow LANCZOS resizes, exact bytes), the tiling, the float16 pixel table, and through the dump
 * path (vlmc_dump on image_raw + input_ids_full) every intermediate the fixture records within
 * max|Δ| <= 1e-4 · max|ref|, greedy ids exactly. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "testlib.h"
#include "vlmc.h"
#include "formats/arrays.h"
#include "models/vlm.h"
#include "vision/overlap_crops.h"
#include "vision/resize.h"

#define TOL 1e-4f

static bool open_fixture(fixture *f) {
    const char *p = shared_path("fixtures/moondream2/reference");
    if (!p) return false;
    if (fx_open(f, p)) {
        test_skip("%s: no manifest", p);
        return false;
    }
    return true;
}

/* select_tiling and overlap_crop_image against the fixture's crops_u8 / tiling: every byte. */
static void test_overlap_crops(void) {
    fixture f;
    if (!open_fixture(&f)) return;
    fx_array *img = fx_read(&f, "image_raw"), *crops = fx_read(&f, "crops_u8"), *tiling = fx_read(&f, "tiling");
    if (CHECK(img && crops && tiling, "fixture arrays missing")) {
        overlap_crops c;
        vlmc_error err = {0};
        int H = (int)img->shape[0], W = (int)img->shape[1];
        if (CHECK(overlap_crop_image(img->data, H, W, 4, 4, 378, 14, &c, &err) == VLMC_OK, "%s", err.message)) {
            const int32_t *t = tiling->data;
            CHECK(c.tiles_h == t[0] && c.tiles_w == t[1], "tiling %d×%d, fixture %d×%d", c.tiles_h, c.tiles_w, t[0], t[1]);
            CHECK(c.n_crops == crops->shape[0], "%d crops, fixture %lld", c.n_crops, (long long)crops->shape[0]);
            if (c.n_crops == crops->shape[0]) {
                size_t bad = 0, n = crops->n;
                int worst = 0;
                for (size_t i = 0; i < n; i++) {
                    int d = abs((int)c.crops[i] - (int)((uint8_t *)crops->data)[i]);
                    bad += d != 0;
                    if (d > worst) worst = d;
                }
                printf("    crops %d×%d tiles, %zu of %zu bytes differ (max %d)\n", c.tiles_h, c.tiles_w, bad, n, worst);
                CHECK(bad == 0, "%zu crop bytes differ", bad);
            }
            overlap_crops_free(&c);
        }
    }
    fx_free(img);
    fx_free(crops);
    fx_free(tiling);
    fx_close(&f);
}

/* The float16 normalisation table and the CHW pixels of the global crop, bit for bit. */
static void test_pixel_lut(void) {
    fixture f;
    if (!open_fixture(&f)) return;
    fx_array *lut_ref = fx_read(&f, "pixel_lut"), *crops = fx_read(&f, "crops_u8"), *px = fx_read(&f, "pixel_values_crop0");
    if (CHECK(lut_ref && crops && px, "fixture arrays missing")) {
        float lut[256];
        moondream_pixel_lut(lut);
        CHECK(!memcmp(lut, lut_ref->data, sizeof lut), "pixel_lut differs");
        overlap_crops c = {.n_crops = 1, .size = (int)crops->shape[1], .crops = crops->data};
        float *mine = malloc(px->n * sizeof(float));
        overlap_crops_to_pixels(&c, lut, mine);
        CHECK(!memcmp(mine, px->data, px->n * sizeof(float)), "pixel_values_crop0 differs");
        free(mine);
    }
    fx_free(lut_ref);
    fx_free(crops);
    fx_free(px);
    fx_close(&f);
}

/* select_tiling's branches on hand-worked sizes (crop 266, as overlap_crop_image calls it with the defaults). */
static void test_select_tiling(void) {
    int h, w;
    select_tiling(200, 900, 266, 12, &h, &w); /* a side fits in one crop */
    CHECK(h == 1 && w == 1, "200×900: %d×%d", h, w);
    select_tiling(-50, 300, 266, 12, &h, &w);
    CHECK(h == 1 && w == 1, "-50×300: %d×%d", h, w);
    /* min 2×2 = 4 <= 12; sqrt(12·600/600) = 3.46 → 3×3 = 9 <= 12 */
    select_tiling(600, 600, 266, 12, &h, &w);
    CHECK(h == 3 && w == 3, "600×600: %d×%d", h, w);
    /* min 4×4 = 16 > 4: ratio sqrt(4/16) = 0.5 → 2×2 */
    select_tiling(1000, 1000, 266, 4, &h, &w);
    CHECK(h == 2 && w == 2, "1000×1000 max 4: %d×%d", h, w);
    /* min 2×5 = 10 <= 12; floor(sqrt(12·300/1300)) = 1 → 2, floor(sqrt(12·1300/300)) = 7; 14 > 12, w > h → 12/2 = 6 */
    select_tiling(300, 1300, 266, 12, &h, &w);
    CHECK(h == 2 && w == 6, "300×1300: %d×%d", h, w);
}

/* Writes the fixture's arrays named in names (the dump's inputs) into a fresh folder. */
static bool make_inputs(const char *ref, const char *const *names, char *out, size_t out_n) {
    static int counter;
    snprintf(out, out_n, "%s/in_%d", test_tmpdir(), counter++);
    return fx_copy_arrays(ref, names, out);
}

/* Every array of the fixture that the dump writes: floats within max|Δ| <= 1e-4 · max|ref|, ints and bytes exact. */
static void test_dump(void) {
    const char *p = shared_path("fixtures/moondream2");
    if (!p) return;
    char dir[1024], ref[1100], in[1200], out[1200];
    snprintf(dir, sizeof dir, "%s", p);
    snprintf(ref, sizeof ref, "%s/reference", dir);
    if (!make_inputs(ref, (const char *const[]){"image_raw", "input_ids_full", NULL}, in, sizeof in)) return;
    snprintf(out, sizeof out, "%s/out", test_tmpdir());
    vlmc_error err = {0};
    array_set r = {0}, o = {0};
    if (!CHECK(arrays_read_dir(ref, 1, &r, &err) == VLMC_OK, "%s", err.message)) return;
    named_array *gen = array_set_find(&r, "generated_ids");
    if (CHECK(gen, "no generated_ids in the fixture") &&
        CHECK(vlmc_dump(dir, in, out, (int)gen->shape[1], 0, &err) == VLMC_OK, "%s", err.message) &&
        CHECK(arrays_read_dir(out, 1, &o, &err) == VLMC_OK, "%s", err.message)) {
        int n_cmp = 0;
        for (int i = 0; i < r.count; i++) {
            const named_array *y = &r.arrays[i], *x = array_set_find(&o, y->name);
            if (!strcmp(y->name, "image_raw") || !strcmp(y->name, "input_ids_full") || !strcmp(y->name, "prompt_ids") ||
                !strcmp(y->name, "pixel_lut"))
                continue; /* inputs, and what test_pixel_lut checks */
            if (!CHECK(x, "no %s in the dump", y->name)) continue;
            bool same_shape = x->ndim == y->ndim && x->dtype == y->dtype;
            for (int d = 0; same_shape && d < x->ndim; d++) same_shape = x->shape[d] == y->shape[d];
            if (!CHECK(same_shape, "%s: shape or dtype differs", y->name)) continue;
            size_t numel = (size_t)named_array_numel(y);
            n_cmp++;
            if (y->dtype != ARRAY_F32) {
                bool exact = !memcmp(x->data, y->data, numel * array_dtype_size(y->dtype));
                printf("    %-28s %s\n", y->name, exact ? "exact" : "DIFFER");
                CHECK(exact, "%s differs", y->name);
                continue;
            }
            float d = max_abs_diff(x->data, y->data, numel), m = max_abs(y->data, numel);
            float rel = m > 0 ? d / m : d;
            printf("    %-28s max|Δ| %.3g = %.3g · max|ref|\n", y->name, d, rel);
            CHECK(rel <= TOL, "%s: max|Δ| %g > %g · max|ref| %g", y->name, d, TOL, m);
        }
        CHECK(n_cmp == 15, "%d arrays compared, expected 15", n_cmp);
    }
    array_set_free(&r);
    array_set_free(&o);
}

/* Inputs the dump refuses for moondream2, with messages naming the problem. */
static void test_dump_errors(void) {
    const char *p = shared_path("fixtures/moondream2");
    if (!p) return;
    char dir[1024], ref[1100], in[1200], out[1200];
    snprintf(dir, sizeof dir, "%s", p);
    snprintf(ref, sizeof ref, "%s/reference", dir);
    snprintf(out, sizeof out, "%s/out_err", test_tmpdir());
    vlmc_error err = {0};
    /* the crops are moondream's own: pixel_values is not an input */
    if (make_inputs(ref, (const char *const[]){"pixel_values_crop0", "input_ids_full", NULL}, in, sizeof in)) {
        CHECK(vlmc_dump(dir, in, out, 0, 0, &err) != VLMC_OK, "pixel_values_crop0 accepted");
        CHECK(strstr(err.message, "pixel_values_crop0"), "message: %s", err.message);
    }
    /* image slots (-1) without an image */
    if (make_inputs(ref, (const char *const[]){"input_ids_full", NULL}, in, sizeof in)) {
        CHECK(vlmc_dump(dir, in, out, 0, 0, &err) != VLMC_OK, "image slots without an image accepted");
        CHECK(strstr(err.message, "no image"), "message: %s", err.message);
    }
    /* one image slot fewer than the image has features */
    array_set set = {0};
    if (CHECK(arrays_read_dir(ref, 1, &set, &err) == VLMC_OK, "%s", err.message)) {
        named_array *img = array_set_find(&set, "image_raw"), *ids = array_set_find(&set, "input_ids_full");
        if (CHECK(img && ids, "fixture inputs missing")) {
            named_array keep[2] = {*img, *ids};
            keep[0].file = keep[1].file = keep[0].note = keep[1].note = NULL;
            int32_t *v = ids->data;
            memmove(v + 1, v + 2, (size_t)(ids->shape[1] - 2) * sizeof(int32_t)); /* drop the first image slot */
            keep[1].shape[1]--;
            snprintf(in, sizeof in, "%s/in_short", test_tmpdir());
            if (CHECK(arrays_write_dir(in, NULL, NULL, keep, 2, &err) == VLMC_OK, "%s", err.message)) {
                CHECK(vlmc_dump(dir, in, out, 0, 0, &err) != VLMC_OK, "728 image slots for 729 features accepted");
                CHECK(strstr(err.message, "do not match"), "message: %s", err.message);
            }
        }
        array_set_free(&set);
    }
}

/* The bidirectional bos + image prefix must be run in one decoder call: a prompt split inside it is an error. */
static void test_prefix_in_one_call(void) {
    const char *p = shared_path("fixtures/moondream2");
    if (!p) return;
    vlm_model m;
    vlmc_error err = {0};
    if (!CHECK(vlm_load(p, &m, &err) == VLMC_OK, "%s", err.message)) return;
    CHECK(m.lm.prefix_attn == 730, "prefix %d", m.lm.prefix_attn);
    llama_ctx c;
    if (CHECK(llama_ctx_init(&c, &m.lm, 1, 1024, 512, &err) == VLMC_OK, "%s", err.message)) {
        int32_t ids[512] = {0};
        llama_input in = {.n_tokens = 512, .tokens = ids};
        CHECK(llama_forward(&c, &in, &(llama_output){0}, &err) == VLMC_ERR_ARG, "a 512-token start of the prefix ran");
        CHECK(strstr(err.message, "730"), "message: %s", err.message);
        llama_ctx_free(&c);
    }
    vlm_free(&m);
}

int main(void) {
    tests_begin("moondream2");
    TEST_RUN(test_select_tiling);
    TEST_RUN(test_overlap_crops);
    TEST_RUN(test_pixel_lut);
    TEST_RUN(test_dump);
    TEST_RUN(test_dump_errors);
    TEST_RUN(test_prefix_in_one_call);
    return tests_end();
}
