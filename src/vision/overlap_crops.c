/* moondream2's overlap crops; see overlap_crops.h. */
#include "vision/overlap_crops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor.h"
#include "vision/resize.h"

void select_tiling(int height, int width, int crop_size, int max_crops, int *tiles_h, int *tiles_w) {
    *tiles_h = *tiles_w = 1;
    if (height <= crop_size || width <= crop_size || crop_size <= 0 || max_crops <= 0) return;
    /* the fewest tiles that cover each side */
    int min_h = (height + crop_size - 1) / crop_size, min_w = (width + crop_size - 1) / crop_size;
    if ((int64_t)min_h * min_w > max_crops) { /* too many: shrink both in proportion */
        double ratio = sqrt((double)max_crops / ((double)min_h * min_w));
        int h = (int)floor(min_h * ratio), w = (int)floor(min_w * ratio);
        *tiles_h = h > 1 ? h : 1;
        *tiles_w = w > 1 ? w : 1;
        return;
    }
    /* tiles in the image's aspect ratio (Python true division, then floor) */
    int h = (int)floor(sqrt((double)((int64_t)max_crops * height) / (double)width));
    int w = (int)floor(sqrt((double)((int64_t)max_crops * width) / (double)height));
    if (h < min_h) h = min_h;
    if (w < min_w) w = min_w;
    if ((int64_t)h * w > max_crops) { /* scale the larger side down */
        if (w > h) w = max_crops / h;
        else h = max_crops / w;
    }
    *tiles_h = h > 1 ? h : 1;
    *tiles_w = w > 1 ? w : 1;
}

void overlap_crops_free(overlap_crops *c) {
    if (!c) return;
    free(c->crops);
    memset(c, 0, sizeof *c);
}

vlmc_status overlap_crop_image(const uint8_t *rgb, int height, int width, int overlap_margin, int max_crops, int base,
                               int patch, overlap_crops *out, vlmc_error *err) {
    memset(out, 0, sizeof *out);
    if (!rgb || height <= 0 || width <= 0 || patch <= 0 || base < patch || overlap_margin < 0 || max_crops <= 0 ||
        max_crops > 1024)
        return vlmc_fail(err, VLMC_ERR_ARG, "overlap crops: invalid arguments (image %d×%d, base %d, patch %d)", height,
                         width, base, patch);
    const int margin = patch * overlap_margin, window = (base / patch - 2 * overlap_margin) * patch;
    if (window <= 0)
        return vlmc_fail(err, VLMC_ERR_ARG, "overlap crops: a margin of %d patches leaves nothing of a %d-pixel crop",
                         overlap_margin, base);
    int th, tw;
    select_tiling(height - 2 * margin, width - 2 * margin, window, max_crops, &th, &tw);
    const int rh = th * window + 2 * margin, rw = tw * window + 2 * margin; /* the resized image */
    const size_t crop_bytes = (size_t)base * base * 3;
    out->n_crops = 1 + th * tw;
    out->tiles_h = th;
    out->tiles_w = tw;
    out->size = base;
    out->crops = calloc((size_t)out->n_crops, crop_bytes);
    uint8_t *resized = malloc((size_t)rh * rw * 3);
    vlmc_status s = VLMC_OK;
    if (!out->crops || !resized) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "overlap crops: out of memory for %d crops", out->n_crops);
        goto done;
    }
    /* Pillow's resize takes (width, height) */
    if ((s = resize_u8(rgb, width, height, 3, resized, rw, rh, RESAMPLE_LANCZOS, err)) ||
        (s = resize_u8(rgb, width, height, 3, out->crops, base, base, RESAMPLE_LANCZOS, err)))
        goto done;
    for (int i = 0; i < th; i++)
        for (int j = 0; j < tw; j++) {
            const int y0 = i * window, x0 = j * window;
            const int y1 = y0 + base < rh ? y0 + base : rh, x1 = x0 + base < rw ? x0 + base : rw;
            uint8_t *crop = out->crops + (size_t)(1 + i * tw + j) * crop_bytes;
            for (int y = y0; y < y1; y++)
                memcpy(crop + (size_t)(y - y0) * base * 3, resized + ((size_t)y * rw + x0) * 3, (size_t)(x1 - x0) * 3);
        }
done:
    free(resized);
    if (s) overlap_crops_free(out);
    return s;
}

/* torch's CPU half arithmetic: each op in float32, the result rounded to half. */
static float half(float x) { return f16_to_f32(f32_to_f16(x)); }

void moondream_pixel_lut(float lut[256]) {
    for (int v = 0; v < 256; v++) lut[v] = half(half(half((float)v / 255.0f) - 0.5f) / 0.5f);
}

void overlap_crops_to_pixels(const overlap_crops *c, const float lut[256], float *pixels) {
    const size_t S = (size_t)c->size, plane = S * S;
    for (int n = 0; n < c->n_crops; n++) {
        const uint8_t *crop = c->crops + (size_t)n * plane * 3;
        float *px = pixels + (size_t)n * 3 * plane;
        for (size_t i = 0; i < plane; i++)
            for (int ch = 0; ch < 3; ch++) px[(size_t)ch * plane + i] = lut[crop[i * 3 + ch]];
    }
}
