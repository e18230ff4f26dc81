/* Elementwise and row kernels of a transformer decoder, all on f32 activations.
 * Weights (norm scales) may be f32/f16/bf16 tensors read in place. */
#ifndef VLMC_KERNELS_OPS_H
#define VLMC_KERNELS_OPS_H

#include <stdint.h>

#include "core/tensor.h"

/* out[r] = (x[r] * rsqrt(mean(x[r]^2) + eps)) * w, for rows r of dim values (out may be x). */
void rmsnorm_f32(float *out, const float *x, int64_t rows, int64_t dim, const tensor *w, float eps);

/* out[r] = LayerNorm(x[r]) * w + b over rows of dim values (torch.nn.LayerNorm; statistics as layernorm_forward);
 * w, b: f32 / f16 / bf16 [dim] tensors read in place (b may be NULL). out may be x. */
void layernorm_tensor_f32(float *out, const float *x, int64_t rows, int64_t dim, const tensor *w, const tensor *b,
                          float eps);

/* Rotary embedding, "rotate_half" layout (transformers' Llama): for each row r and
 * head h, the first rot_dim values of x[r, h*head_dim ...] are rotated pairwise
 * (i, i + rot_dim/2) by cos[r, i], sin[r, i] (rot_dim/2 values per row). */
void rope_apply_f32(float *x, int64_t rows, int n_heads, int head_dim, int rot_dim, const float *cos_t,
                    const float *sin_t);

/* gate[i] = silu(gate[i]) * up[i] */
void silu_mul_f32(float *gate, const float *up, int64_t n);

/* x[i] *= a */
void scale_f32(float *x, float a, int64_t n);

/* x[i] += y[i] */
void add_f32(float *x, const float *y, int64_t n);

/* Index of the largest value (the first one on ties, as torch.argmax). */
int64_t argmax_f32(const float *x, int64_t n);

/* Causal attention of T new queries per sequence against a KV cache.
 *   q:   [B, T, n_heads, head_dim] (rows of the q projection)
 *   k,v: one layer of the cache, [B, n_kv_heads, n_ctx, head_dim]; slots 0..n_past+T-1 filled
 *   mask:[B, n_ctx] 1 = a real token in that slot, 0 = padding, 2 = a real token of a prefix-LM
 *        prefix (PaliGemma's image + prefix), which every query of the sequence sees
 *   prefix_end: NULL (causal), or [B]: 1 + the last slot with mask 2 of each sequence (0 = none)
 *   out: [B, T, n_heads, head_dim]
 * Query t sits in slot i = n_past + t and sees slot j iff mask[j] != 0, j <= i or mask[j] = 2, and,
 * when window > 0, j > i - window. A query with no visible slot (left padding) gets, as in
 * transformers' eager attention (every score + finfo.min rounds to finfo.min, so the
 * softmax is flat), the plain average of the values of all slots 0..n_past+T-1.
 * scores: n_threads * n_ctx floats of scratch; the loop runs on at most n_threads threads. */
typedef struct attn_args {
    int B, T, n_past, n_ctx, n_heads, n_kv_heads, head_dim, window;
    float scale;
    int n_threads;
    const int32_t *prefix_end;
} attn_args;
void attention_f32(float *out, const float *q, const float *k, const float *v, const uint8_t *mask,
                   const attn_args *a, float *scores);

/* The same attention for many queries at once (prefill): per sequence, head and block of
 * up to s_rows queries, the scores S = q k^T (only the keys up to the block's last slot) and
 * the output P v go through OpenBLAS sgemm, the masked softmax in between row by row.
 * S: s_rows * n_ctx floats of scratch. */
enum { ATTN_GEMM_MIN_T = 16, ATTN_GEMM_ROWS = 256 };
void attention_f32_gemm(float *out, const float *q, const float *k, const float *v, const uint8_t *mask,
                        const attn_args *a, float *S, int s_rows);

#endif
