/* KV cache of a decoder for a batch of sequences that advance together (a batch of
 * prompts of different lengths is left padded, so every sequence fills the same
 * slots). Planned once for (n_batch, n_ctx); nothing is allocated per token.
 *
 * Layout (per layer): k, v: [n_batch, n_kv_heads, n_ctx, head_dim] f32, so that one
 * attention head reads its keys as one contiguous block. `mask` remembers which
 * slots hold real tokens (1) or padding (0); `n_valid` counts the real tokens of each
 * sequence, which gives the next position id as generate() derives it from the
 * attention mask (cumsum - 1). */
#ifndef VLMC_RUNTIME_KV_CACHE_H
#define VLMC_RUNTIME_KV_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct kv_cache {
    int n_layers, n_batch, n_kv_heads, head_dim, n_ctx;
    int n_past;       /* slots filled, the same for every sequence */
    float *k, *v;     /* [n_layers][n_batch][n_kv_heads][n_ctx][head_dim] */
    uint8_t *mask;    /* [n_batch][n_ctx] */
    int32_t *n_valid; /* [n_batch] */
} kv_cache;

vlmc_status kv_cache_init(kv_cache *c, int n_layers, int n_batch, int n_kv_heads, int head_dim, int n_ctx,
                          vlmc_error *err);
void kv_cache_free(kv_cache *c);
/* Forgets every sequence (n_past = 0); keeps the memory. */
void kv_cache_reset(kv_cache *c);
/* Fails with VLMC_ERR_LIMIT and a message giving the sizes when n_new more slots do not fit. */
vlmc_status kv_cache_reserve(const kv_cache *c, int n_new, vlmc_error *err);

static inline float *kv_cache_k(const kv_cache *c, int layer) {
    return c->k + (size_t)layer * c->n_batch * c->n_kv_heads * c->n_ctx * c->head_dim;
}
static inline float *kv_cache_v(const kv_cache *c, int layer) {
    return c->v + (size_t)layer * c->n_batch * c->n_kv_heads * c->n_ctx * c->head_dim;
}
/* Copies T new rows of k or v ([B, T, n_kv_heads, head_dim]) into slots n_past.. of one layer. */
void kv_cache_store(const kv_cache *c, float *layer_base, const float *rows, int T);

#endif
