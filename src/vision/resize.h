/* Pillow-exact image resizing (Pillow 9.4 Image.resize on mode "RGB"/"L" uint8
 * images, reducing_gap=None, no box), as the Hugging Face image processors call it.
 *
 * BICUBIC/BILINEAR/LANCZOS/BOX/HAMMING: ImagingResample's separable convolution:
 * coefficients in double, normalised to 22-bit fixed point (PRECISION_BITS =
 * 32-8-2), support scaled by the downscale factor (antialiasing), horizontal pass
 * first into a uint8 (clamped) intermediate holding only the rows the vertical
 * pass needs, then the vertical pass. NEAREST: Pillow's affine "scale" transform
 * (pixel centres, coordinates accumulated in double). */
#ifndef VLMC_VISION_RESIZE_H
#define VLMC_VISION_RESIZE_H

#include <stdint.h>

#include "core/error.h"

/* PIL.Image.Resampling numbering (what preprocessor_config.json "resample" holds). */
typedef enum resample_filter {
    RESAMPLE_NEAREST = 0,
    RESAMPLE_LANCZOS = 1,
    RESAMPLE_BILINEAR = 2,
    RESAMPLE_BICUBIC = 3,
    RESAMPLE_BOX = 4,
    RESAMPLE_HAMMING = 5,
} resample_filter;

/* Resizes src (in_h x in_w x channels, uint8, rows packed) into dst (out_h x out_w x
 * channels), channels 1..4. Threaded with OpenMP over output rows. */
vlmc_status resize_u8(const uint8_t *src, int in_w, int in_h, int channels, uint8_t *dst, int out_w, int out_h,
                      resample_filter filter, vlmc_error *err);

/* The same on float32 pixels (Pillow's mode "F" path: double coefficients, float
 * intermediate, no clamping). None of the four processors in processors.c resizes
 * floats: each resizes the uint8 image and rescales afterwards, and transformers'
 * resize() turns a float array back into a uint8 PIL image before resizing anyway.
 * This is for callers that resample feature maps or masks. */
vlmc_status resize_f32(const float *src, int in_w, int in_h, int channels, float *dst, int out_w, int out_h,
                       resample_filter filter, vlmc_error *err);

#endif
