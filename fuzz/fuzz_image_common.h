/* Shared body of the image fuzz targets: decode with small limits (so a
 * declared-huge image is rejected, not allocated), then push the result through
 * a resize and the EXIF transposes. */
#ifndef VLMC_FUZZ_IMAGE_COMMON_H
#define VLMC_FUZZ_IMAGE_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vision/image.h"
#include "vision/resize.h"

static void fuzz_decode(const uint8_t *data, size_t size) {
    image_limits lim = {1u << 22, 1u << 24};
    rgb_image im;
    vlmc_error err;
    if (image_decode(data, size, "fuzz", &lim, &im, &err) != VLMC_OK) return;
    uint8_t out[17 * 13 * 3];
    resize_u8(im.data, im.width, im.height, 3, out, 17, 13, RESAMPLE_BICUBIC, &err);
    if ((size_t)im.width * im.height <= 4096) image_apply_orientation(&im, 1 + (int)(size % 8), &err);
    rgb_image_free(&im);
}

/* Decodes data with its first bytes forced to `magic`, so the mutator stays in one format. */
static void fuzz_decode_as(const uint8_t *data, size_t size, const char *magic, size_t mlen) {
    if (size >= mlen && memcmp(data, magic, mlen) == 0) {
        fuzz_decode(data, size);
        return;
    }
    uint8_t *buf = malloc(size + mlen);
    if (!buf) return;
    memcpy(buf, magic, mlen);
    memcpy(buf + mlen, data, size);
    fuzz_decode(buf, size + mlen);
    free(buf);
}

#endif
