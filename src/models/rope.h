/* Rotary frequencies as transformers 4.47's modeling_rope_utils computes them
 * (ROPE_INIT_FUNCTIONS: default, linear, dynamic, llama3, yarn), in f32 like torch. */
#ifndef VLMC_MODELS_ROPE_H
#define VLMC_MODELS_ROPE_H

#include "formats/hf_config.h"

/* 1 / base ** (arange(0, dim, 2).float() / dim), torch-style f32: inv[dim/2]. */
void rope_default_inv_freq(double base, int dim, float *inv);

/* Rotated dimensions of a head: head_dim * partial_rotary_factor. */
int rope_dim(const hf_text_config *c);

/* inv_freq[rope_dim/2] and the attention factor that scales cos/sin (1 except yarn).
 * seq_len matters only for dynamic scaling (<= 0: the config's max_position_embeddings,
 * which gives the unscaled frequencies, as at model init). Fails for types that
 * are not implemented (longrope); mrope has the default frequencies. */
vlmc_status rope_inv_freq(const hf_text_config *c, int seq_len, float *inv_freq, float *attention_factor,
                          vlmc_error *err);

/* cos/sin tables for n positions: cos_t[p * half + i] = cos(pos[p] * inv_freq[i]) * factor. */
void rope_tables(const float *inv_freq, int half, float factor, const int32_t *pos, int n, float *cos_t, float *sin_t);

/* M-RoPE (Qwen2-VL's mrope_section): the same tables where frequency i takes its position from one of three axes
 * (temporal, height, width; section[] frequencies each, in that order). pos3: [n, 3] positions per row. */
void rope_tables_mrope(const float *inv_freq, int half, float factor, const int section[3], const int32_t *pos3, int n,
                       float *cos_t, float *sin_t);

#endif
