/* WebP through libwebp's animation decoder (first frame) and demuxer (EXIF). */
#include "fuzz_image_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size >= 12 && !memcmp(data, "RIFF", 4) && !memcmp(data + 8, "WEBP", 4)) {
        fuzz_decode(data, size);
        return 0;
    }
    /* wrap the bytes as a RIFF/WEBP container with a consistent length */
    uint8_t *buf = malloc(size + 12);
    if (!buf) return 0;
    uint32_t n = (uint32_t)(size + 4);
    memcpy(buf, "RIFF", 4);
    buf[4] = (uint8_t)n;
    buf[5] = (uint8_t)(n >> 8);
    buf[6] = (uint8_t)(n >> 16);
    buf[7] = (uint8_t)(n >> 24);
    memcpy(buf + 8, "WEBP", 4);
    memcpy(buf + 12, data, size);
    fuzz_decode(buf, size + 12);
    free(buf);
    return 0;
}
