/* GIF through giflib's record API (first frame, canvas growth, bomb check). */
#include "fuzz_image_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_decode_as(data, size, "GIF89a", 6);
    return 0;
}
