/* PNG through libpng (setjmp error handler): palettes, 16-bit, interlace, eXIf. */
#include "fuzz_image_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_decode_as(data, size, "\x89PNG\r\n\x1a\n", 8);
    return 0;
}
