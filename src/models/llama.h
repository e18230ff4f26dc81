/* The Llama-family decoder as transformers 4.47 defines it:
 *   LlamaForCausalLM (model_type "llama"), MistralForCausalLM ("mistral", sliding window),
 *   Qwen2ForCausalLM ("qwen2", q/k/v biases), and the same decoder inside LLaVA
 *   (prefix "language_model.model."), LLaVA-NeXT (same) and Idefics3/SmolVLM ("model.text_model.").
 * Config keys used: vocab_size, hidden_size, intermediate_size, num_hidden_layers,
 * num_attention_heads, num_key_value_heads, head_dim, rms_norm_eps, rope_theta, rope_scaling
 * (linear, dynamic, llama3, yarn), partial_rotary_factor, attention_bias / qwen2's q/k/v bias,
 * mlp_bias, hidden_act (silu), sliding_window (mistral; qwen2 with use_sliding_window),
 * tie_word_embeddings, max_position_embeddings (dynamic/yarn rope).
 *
 * Use:
 *   llama_model m;  llama_model_load(&m, &cfg.text, st, "model.", "lm_head.weight", err);
 *   llama_ctx c;    llama_ctx_init(&c, &m, n_batch, n_ctx, 0, err);
 *   llama_forward(&c, &(llama_input){.n_tokens = T, .tokens = ids, .attention_mask = mask},
 *                 &(llama_output){.logits = logits}, err);      // prefill: T tokens per sequence
 *   llama_forward(&c, &(llama_input){.n_tokens = 1, .tokens = next}, &(llama_output){...}, err); // decode
 * A VLM builds the [B, T, hidden] input embeddings itself (llama_embed_tokens for the
 * text positions, its projector's output for image positions) and passes them as
 * llama_input.embeds instead of tokens. */
#ifndef VLMC_MODELS_LLAMA_H
#define VLMC_MODELS_LLAMA_H

#include <stdbool.h>
#include <stdint.h>

#include "core/tensor.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "kernels/gelu.h"
#include "runtime/kv_cache.h"

typedef struct llama_layer {
    tensor attn_norm;          /* [D] input_layernorm */
    tensor attn_norm_b;        /* [D] its bias (LayerNorm variant), data == NULL otherwise */
    tensor wq, wk, wv, wo;     /* [H*hd, D], [KVH*hd, D], [KVH*hd, D], [D, H*hd] */
    tensor bq, bk, bv, bo;     /* biases, data == NULL when absent */
    tensor ffn_norm;           /* [D] post_attention_layernorm */
    tensor w_gate, w_up, w_down; /* [I, D], [I, D], [D, I]; w_gate.data == NULL: plain MLP (ffn_act) */
    tensor b_gate, b_up, b_down; /* mlp_bias, data == NULL when absent */
} llama_layer;

typedef struct llama_model {
    hf_text_config cfg;
    int n_layers, dim, n_heads, n_kv_heads, head_dim, rot_dim, ffn_dim, vocab;
    float eps;
    tensor tok_emb;    /* [vocab, D] */
    tensor final_norm; /* [D] */
    tensor lm_head;    /* [vocab, D]; the embedding matrix when tied */
    llama_layer *layers;
    /* The Phi-style variant (moondream2's text model; a family loader sets these, llama_model_load leaves them off):
     *   layernorm       LayerNorm with bias (attn_norm_b, final_norm_b) instead of RMSNorm (eps = m->eps)
     *   parallel_block  x = x + attn(n(x)) + mlp(n(x)) with the one norm attn_norm (ffn_norm unused)
     *   ffn_act         the activation of a plain MLP (w_gate absent): w_down(act(w_up h + b_up)) + b_down
     *   lm_head_b       LM head bias (data == NULL: none)
     *   prefix_attn     the first prefix_attn positions attend to each other both ways (bos + image), the rest
     *                   causally; a forward call that starts inside the prefix must hold all of it */
    bool layernorm, parallel_block;
    act_kind ffn_act;
    tensor final_norm_b, lm_head_b;
    int prefix_attn;
} llama_model;

/* Takes views of the tensors `<prefix>embed_tokens.weight`, `<prefix>layers.<i>.…`,
 * `<prefix>norm.weight` and, unless the config ties the embeddings (or lm_head_name is
 * NULL), `lm_head_name`. Weights stay in the mapped file (f32, f16 or bf16): st must
 * outlive the model. A missing or misshaped tensor is an error naming file and tensor. */
/* The sizes of m from cfg (heads, rotary dims checked), no weights: for a family loader that takes the weights
 * under its own names (moondream2). */
vlmc_status llama_model_init(llama_model *m, const hf_text_config *cfg, vlmc_error *err);
vlmc_status llama_model_load(llama_model *m, const hf_text_config *cfg, const safetensors *st, const char *prefix,
                             const char *lm_head_name, vlmc_error *err);
void llama_model_free(llama_model *m);

/* Token embeddings: out[n, D] = embed_tokens[ids[i]]. Fails on an id outside the vocabulary. */
vlmc_status llama_embed_tokens(const llama_model *m, const int32_t *ids, int64_t n, float *out, vlmc_error *err);

/* The run state: KV cache and every buffer, planned for (n_batch, n_ctx, max_tokens). */
typedef struct llama_ctx {
    const llama_model *m;
    kv_cache kv;
    int n_batch, n_ctx, max_tokens, n_threads;
    /* LLaVA / LLaVA-NeXT in transformers 4.47 take their "legacy" path at every decode
     * step (no image token among the new ids): the padding mask of the cached slots is
     * dropped and the position id becomes the slot index. When set, llama_generate_greedy
     * does the same after the prefill (llama_ctx_unmask_padding). Default false. */
    bool legacy_unmask_padding_on_decode;
    int rope_seq_cached;   /* dynamic rope: the longest sequence seen (transformers' max_seq_len_cached) */
    float attn_factor;
    float *inv_freq;       /* [rot_dim/2] */
    /* activations, rows = n_batch * max_tokens */
    float *x, *xn, *q, *k, *v, *att, *tmp, *gate, *up;
    float *cos_t, *sin_t;  /* [rows, rot_dim/2] */
    int32_t *pos;          /* [rows] */
    float *scores;         /* [n_threads, n_ctx] */
    float *attn_S;         /* [attn_rows, n_ctx] prefill score block (NULL when max_tokens is small) */
    int attn_rows;
    float *last;           /* [n_batch, D] */
    float *step_logits;    /* [n_batch, vocab] */
    int32_t *step_ids, *step_mask; /* [n_batch] */
    float *scratch;        /* f16/bf16 weight tiles */
    size_t scratch_n;
} llama_ctx;

/* max_tokens: most tokens per sequence in one llama_forward call (0 = n_ctx). */
vlmc_status llama_ctx_init(llama_ctx *c, const llama_model *m, int n_batch, int n_ctx, int max_tokens,
                           vlmc_error *err);
void llama_ctx_free(llama_ctx *c);
/* Empties the KV cache (a new conversation). */
void llama_ctx_reset(llama_ctx *c);

/* Treats every cached slot as a real token from now on, and makes the next position id
 * of every sequence the slot count (transformers 4.47 LLaVA legacy decoding, see above). */
void llama_ctx_unmask_padding(llama_ctx *c);

typedef struct llama_input {
    int n_tokens;                  /* T: new tokens per sequence */
    const int32_t *tokens;         /* [B, T] token ids, or NULL when embeds is given */
    const float *embeds;           /* [B, T, D] input embeddings (used when tokens is NULL) */
    const int32_t *attention_mask; /* [B, T] 1 = token, 0 = (left) padding; NULL = all 1 */
    const int32_t *position_ids;   /* [B, T] or NULL: generate()'s rule, cumsum(mask) - 1, padding 1 */
} llama_input;

typedef struct llama_output {
    float *logits;         /* [B, T, vocab], or [B, vocab] when logits_last_only; NULL = none */
    bool logits_last_only;
    float *hidden_states;  /* [n_layers + 1, B, T, D] or NULL: [0] embeddings, [L] final norm output */
    bool hidden_states_all; /* [n_layers + 2, B, T, D] instead: [L] last layer output, [L+1] final norm output */
} llama_output;

/* Runs T new tokens of each of the n_batch sequences through the decoder, appending
 * their keys and values to the cache (B = the context's n_batch). Fails with
 * VLMC_ERR_LIMIT when the cache is full. */
vlmc_status llama_forward(llama_ctx *c, const llama_input *in, const llama_output *out, vlmc_error *err);

/* Greedy decoding: runs the prompt in one pass after whatever is cached, then feeds
 * back the argmax token n_new - 1 times (one token per sequence per step), no EOS stop.
 * ids: [B, n_new]; step_logits: [B, n_new, vocab] (the logits that chose each token) or NULL. */
vlmc_status llama_generate_greedy(llama_ctx *c, const llama_input *prompt, int n_new, int32_t *ids,
                                  float *step_logits, vlmc_error *err);

#endif
