/* Fixture manifests (formats/arrays.h): the JSON the reader trusts for names, files,
 * dtypes and shapes. */
#include <stdint.h>

#include "formats/arrays.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    array_set s;
    vlmc_error err;
    if (arrays_parse_manifest((const char *)data, size, "fuzz", &s, &err) == VLMC_OK) {
        for (int i = 0; i < s.count; i++) (void)named_array_numel(&s.arrays[i]);
        array_set_free(&s);
    }
    return 0;
}
