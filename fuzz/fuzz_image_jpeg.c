/* JPEG through libjpeg-turbo (per-call error manager), CMYK conversion, EXIF APP1. */
#include "fuzz_image_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_decode_as(data, size, "\xff\xd8\xff", 3);
    return 0;
}
