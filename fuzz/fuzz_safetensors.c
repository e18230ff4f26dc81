/* Fuzz target: arbitrary bytes as a safetensors file. Every tensor that opens must
 * lie inside the buffer, which the reads below make ASan check. */
#include <stddef.h>
#include <stdint.h>

#include "formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    safetensors *st = NULL;
    vlmc_error err;
    if (safetensors_open_memory(data, size, "fuzz.safetensors", &st, &err) != VLMC_OK) return 0;
    volatile unsigned char sink = 0;
    for (size_t i = 0; i < safetensors_count(st); i++) {
        const st_entry *e = safetensors_at(st, i);
        size_t n = e->end - e->begin;
        if (n) sink ^= ((const unsigned char *)e->t.data)[0] ^ ((const unsigned char *)e->t.data)[n - 1];
        (void)safetensors_find(st, e->name);
    }
    (void)sink;
    safetensors_close(st);
    return 0;
}
