/* Decoded images: RGB uint8, rows packed, HxWx3, exactly as Hugging Face's
 * transformers.image_utils.load_image returns them (PIL.Image.open +
 * ImageOps.exif_transpose + convert("RGB"), Pillow 9.4). */
#ifndef VLMC_VISION_IMAGE_H
#define VLMC_VISION_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct rgb_image {
    int width, height;
    uint8_t *data; /* height*width*3 bytes, malloc'ed */
} rgb_image;

typedef struct image_limits {
    uint64_t max_pixels;     /* width*height above this is VLMC_ERR_LIMIT before decoding */
    uint64_t max_file_bytes; /* encoded size above this is VLMC_ERR_LIMIT */
} image_limits;

/* PIL's decompression-bomb error threshold (2 * MAX_IMAGE_PIXELS). */
#define IMAGE_DEFAULT_MAX_PIXELS 178956970ull
#define IMAGE_DEFAULT_MAX_FILE_BYTES (512ull << 20)

void image_limits_default(image_limits *l);

/* Decodes JPEG, PNG, WebP, GIF (first frame), BMP or binary PPM/PGM from memory; `name`
 * names the source in errors. limits may be NULL (defaults). */
vlmc_status image_decode(const uint8_t *data, size_t len, const char *name, const image_limits *limits,
                         rgb_image *out, vlmc_error *err);
vlmc_status image_decode_file(const char *path, const image_limits *limits, rgb_image *out, vlmc_error *err);
/* A "data:[<mime>][;base64],<payload>" URL, or a bare base64 string. */
vlmc_status image_decode_data_url(const char *url, size_t len, const image_limits *limits, rgb_image *out,
                                  vlmc_error *err);

void rgb_image_free(rgb_image *im);

/* EXIF: the Orientation tag (1..8) of a TIFF-structured EXIF block (starting at
 * "II*\0"/"MM\0*", or with the "Exif\0\0" prefix); 1 when absent or unreadable. */
int exif_orientation(const uint8_t *data, size_t len);
/* Applies PIL's ImageOps.exif_transpose for orientation 2..8 (in place on *im). */
vlmc_status image_apply_orientation(rgb_image *im, int orientation, vlmc_error *err);

/* Decodes base64 (standard or URL-safe alphabet, whitespace ignored, padding optional). */
vlmc_status base64_decode(const char *s, size_t len, uint8_t **out, size_t *out_len, vlmc_error *err);

#endif
