/* Fuzz target: arbitrary bytes as a GGUF file; touches every tensor's first and
 * last byte and every string-array item so that ASan checks the bounds. */
#include <stddef.h>
#include <stdint.h>

#include "formats/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf *g = NULL;
    vlmc_error err;
    if (gguf_open_memory(data, size, "fuzz.gguf", &g, &err) != VLMC_OK) return 0;
    volatile unsigned char sink = 0;
    for (size_t i = 0; i < gguf_tensor_count(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        if (t->nbytes) sink ^= ((const unsigned char *)t->t.data)[0] ^ ((const unsigned char *)t->t.data)[t->nbytes - 1];
    }
    for (size_t i = 0; i < gguf_kv_count(g); i++) {
        const gguf_kv *kv = gguf_kv_at(g, i);
        for (uint64_t j = 0; kv->str_items && j < kv->arr_count; j++)
            if (kv->str_items[j].len) sink ^= (unsigned char)kv->str_items[j].ptr[kv->str_items[j].len - 1];
        if (kv->type == GGUF_ARRAY && kv->arr_count) sink ^= gguf_array_number(kv, kv->arr_count - 1) != 0.0;
    }
    (void)sink;
    gguf_close(g);
    return 0;
}
