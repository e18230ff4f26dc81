/* Any image: image_decode dispatches on the magic bytes. */
#include "fuzz_image_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_decode(data, size);
    /* the EXIF parser on the raw bytes too */
    exif_orientation(data, size);
    return 0;
}
