#include "runtime/kv_cache.h"

#include <stdlib.h>
#include <string.h>

vlmc_status kv_cache_init(kv_cache *c, int n_layers, int n_batch, int n_kv_heads, int head_dim, int n_ctx,
                          vlmc_error *err) {
    memset(c, 0, sizeof *c);
    if (n_layers <= 0 || n_batch <= 0 || n_kv_heads <= 0 || head_dim <= 0 || n_ctx <= 0)
        return vlmc_fail(err, VLMC_ERR_ARG, "kv cache: invalid sizes (layers %d, batch %d, kv heads %d, head_dim %d, "
                         "n_ctx %d)", n_layers, n_batch, n_kv_heads, head_dim, n_ctx);
    double total = (double)n_layers * n_batch * n_kv_heads * n_ctx * head_dim;
    if (total * sizeof(float) > (double)SIZE_MAX / 4)
        return vlmc_fail(err, VLMC_ERR_LIMIT, "kv cache: %d layers x %d sequences x %d slots is too large", n_layers,
                         n_batch, n_ctx);
    size_t n = (size_t)total;
    c->n_layers = n_layers; c->n_batch = n_batch; c->n_kv_heads = n_kv_heads; c->head_dim = head_dim;
    c->n_ctx = n_ctx;
    c->k = malloc(n * sizeof(float));
    c->v = malloc(n * sizeof(float));
    c->mask = calloc((size_t)n_batch * n_ctx, 1);
    c->n_valid = calloc((size_t)n_batch, sizeof(int32_t));
    if (!c->k || !c->v || !c->mask || !c->n_valid) {
        kv_cache_free(c);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "kv cache: out of memory for %zu floats", 2 * n);
    }
    return VLMC_OK;
}

void kv_cache_free(kv_cache *c) {
    free(c->k); free(c->v); free(c->mask); free(c->n_valid);
    memset(c, 0, sizeof *c);
}

void kv_cache_reset(kv_cache *c) {
    c->n_past = 0;
    if (c->mask) memset(c->mask, 0, (size_t)c->n_batch * c->n_ctx);
    if (c->n_valid) memset(c->n_valid, 0, (size_t)c->n_batch * sizeof(int32_t));
}

vlmc_status kv_cache_reserve(const kv_cache *c, int n_new, vlmc_error *err) {
    if (n_new < 0 || n_new > c->n_ctx - c->n_past)
        return vlmc_fail(err, VLMC_ERR_LIMIT, "KV cache full: %d tokens are cached and %d more do not fit in n_ctx = %d",
                         c->n_past, n_new, c->n_ctx);
    return VLMC_OK;
}

void kv_cache_store(const kv_cache *c, float *base, const float *rows, int T) {
    const int B = c->n_batch, KVH = c->n_kv_heads, hd = c->head_dim;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < KVH; h++)
                memcpy(base + (((size_t)b * KVH + h) * c->n_ctx + c->n_past + t) * hd,
                       rows + (((size_t)b * T + t) * KVH + h) * hd, sizeof(float) * (size_t)hd);
}
