/* moondream2's image preprocessing (vikhyat/moondream moondream/torch/image_crops.py and vision.py prepare_crops, at
 * 84663ac, the Pillow path taken without pyvips): one global crop of the whole image plus a grid of overlapping
 * crops of a resized copy, all base × base, and the float16 normalisation of their pixels.
 *
 *   tiling = select_tiling(h - 2·m, w - 2·m, window, max_crops)      m = overlap_margin · patch, window = base - 2·m
 *   crops[0] = resize(image, base × base, LANCZOS)
 *   resized  = resize(image, (tiles_h · window + 2·m) × (tiles_w · window + 2·m), LANCZOS)
 *   crops[1 + i·tiles_w + j] = resized[i·window : i·window + base, j·window : j·window + base] (zero padded) */
#ifndef VLMC_VISION_OVERLAP_CROPS_H
#define VLMC_VISION_OVERLAP_CROPS_H

#include <stdint.h>

#include "core/error.h"

/* image_crops.select_tiling: (tiles_h, tiles_w) covering height × width with crops of crop_size, at most max_crops
 * of them ((1, 1) when either side fits in one crop, including sides <= 0). */
void select_tiling(int height, int width, int crop_size, int max_crops, int *tiles_h, int *tiles_w);

typedef struct overlap_crops {
    int n_crops;     /* 1 + tiles_h · tiles_w */
    int tiles_h, tiles_w;
    int size;        /* base: crops are size × size */
    uint8_t *crops;  /* [n_crops, size, size, 3] RGB, malloc'ed */
} overlap_crops;

/* image_crops.overlap_crop_image(image, overlap_margin, max_crops, base_size=(base, base), patch_size=patch) on an
 * RGB image [height, width, 3]. */
vlmc_status overlap_crop_image(const uint8_t *rgb, int height, int width, int overlap_margin, int max_crops, int base,
                               int patch, overlap_crops *out, vlmc_error *err);
void overlap_crops_free(overlap_crops *c);

/* prepare_crops' normalisation in float16 arithmetic, ((u8 / 255) - 0.5) / 0.5 rounded to half after each step,
 * as float32: lut[v] for v = 0..255. */
void moondream_pixel_lut(float lut[256]);

/* pixels [n_crops, 3, size, size] = lut[crops[n, y, x, c]] (prepare_crops' transpose to CHW). */
void overlap_crops_to_pixels(const overlap_crops *c, const float lut[256], float *pixels);

#endif
