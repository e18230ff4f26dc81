/* The Llama-family decoder as transformers 4.47 defines it:
 *   LlamaForCausalLM (model_type "llama"), MistralForCausalLM ("mistral", sliding window),
 *   Qwen2ForCausalLM ("qwen2", q/k/v biases), and the same decoder inside LLaVA
 *   (prefix "language_model.model."), LLaVA-NeXT (same) and Idefics3/SmolVLM ("model.text_model.").
 * Two relatives are options of the same forward:
 *   GemmaForCausalLM ("gemma", inside PaliGemma): RMSNorm scaled by (1 + weight), GeGLU MLP
 *     (hidden_act gelu_pytorch_tanh), embeddings multiplied by sqrt(hidden_size) rounded to the model dtype;
 *   PersimmonForCausalLM ("persimmon", inside Fuyu; persimmon_model_load): LayerNorm with bias, the fused
 *     query_key_value projection (per head: q, k, v rows), LayerNorm of q and k over head_dim (qk_layernorm),
 *     partial rotary (partial_rotary_factor), a plain MLP dense_h_to_4h → relu² → dense_4h_to_h, biases.
 * Config keys used: vocab_size, hidden_size, intermediate_size, num_hidden_layers,
 * num_attention_heads, num_key_value_heads, head_dim, rms_norm_eps, rope_theta, rope_scaling
 * (linear, dynamic, llama3, yarn; mrope_section = Qwen2-VL's M-RoPE), partial_rotary_factor, attention_bias / qwen2's q/k/v bias,
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
    tensor attn_norm, attn_norm_b; /* [D] input_layernorm (bias: LayerNorm only) */
    tensor wq, wk, wv, wo;     /* [H*hd, D], [KVH*hd, D], [KVH*hd, D], [D, H*hd] */
    tensor bq, bk, bv, bo;     /* biases, data == NULL when absent */
    tensor wqkv, bqkv;         /* Persimmon: fused [H*3*hd, D] (rows per head: q, k, v) instead of wq, wk, wv */
    tensor q_norm, q_norm_b, k_norm, k_norm_b; /* [hd] qk_layernorm, data == NULL when absent */
    tensor ffn_norm, ffn_norm_b; /* [D] post_attention_layernorm */
    tensor w_gate, w_up, w_down; /* [I, D], [I, D], [D, I]; w_gate.data == NULL: plain MLP down(act(up x)) */
    tensor b_gate, b_up, b_down; /* mlp_bias, data == NULL when absent */
} llama_layer;

struct llama_ctx;
struct llama_input;
struct llama_output;

typedef struct llama_model {
    hf_text_config cfg;
    int n_layers, dim, n_heads, n_kv_heads, head_dim, rot_dim, ffn_dim, vocab;
    float eps;
    bool layer_norm;   /* LayerNorm (weight, bias; f32) instead of RMSNorm: Persimmon */
    act_kind act;      /* of the MLP: silu (Llama), gelu_pytorch_tanh (Gemma), relu2 (Persimmon) */
    float embed_scale; /* Gemma: sqrt(hidden_size) in the model dtype; 0 = embeddings as they are */
    tensor tok_emb;    /* [vocab, D] */
    tensor final_norm, final_norm_b; /* [D] */
    tensor lm_head;    /* [vocab, D]; the embedding matrix when tied */
    llama_layer *layers;
    /* A decoder of another architecture that runs in this context (its KV cache, buffers, generation loop and
     * sessions): llama_forward calls `forward` instead of the layers above (layers is NULL), the sizes above plan
     * the buffers (ffn_dim = its MLP width) and `arch` holds its own weights. NULL for the Llama family.
     * Kosmos-2's text decoder (src/models/kosmos2.c) is one. */
    vlmc_status (*forward)(struct llama_ctx *c, const struct llama_input *in, const struct llama_output *out,
                           vlmc_error *err);
    const void *arch;
    float **owned;     /* f32 vectors made at load (Gemma's 1 + w, LayerNorm weights of other dtypes) */
    int n_owned;
    /* Qwen (v1) QWenModel's extras, off (0) for every other decoder: with dynamic_ntk, a prefill into an empty
     * cache picks the rotary base from its length (decode steps keep it); with logn_attn, the query at 0-based
     * position p is scaled by log(p+1) / log(seq_length) once p+1 > seq_length. */
    int qwen_seq_length;
    bool qwen_dynamic_ntk, qwen_logn_attn;
    /* The Phi-style variant (moondream2's text model; its family loader sets these, llama_model_load leaves them
     * off), with layer_norm and a plain MLP (w_gate absent, act):
     *   parallel_block  x = x + attn(n(x)) + mlp(n(x)) with the one norm attn_norm (ffn_norm unused)
     *   lm_head_b       LM head bias (data == NULL: none)
     *   prefix_attn     the first prefix_attn positions attend to each other both ways (bos + image: slots of mask
     *                   value 2, as a prefix-LM prefix), the rest causally; a forward call that starts inside the
     *                   prefix must hold all of it */
    bool parallel_block;
    tensor lm_head_b;
    int prefix_attn;
} llama_model;

/* Takes views of the tensors `<prefix>embed_tokens.weight`, `<prefix>layers.<i>.…`,
 * `<prefix>norm.weight` and, unless the config ties the embeddings (or lm_head_name is
 * NULL), `lm_head_name`. Weights stay in the mapped file (f32, f16 or bf16): st must
 * outlive the model. A missing or misshaped tensor is an error naming file and tensor. */
vlmc_status llama_model_load(llama_model *m, const hf_text_config *cfg, const safetensors *st, const char *prefix,
                             const char *lm_head_name, vlmc_error *err);
/* The Persimmon decoder (cfg->model_type "persimmon"): `<prefix>embed_tokens.weight`, `<prefix>layers.<i>.
 * {input_layernorm, self_attn.{query_key_value, q_layernorm, k_layernorm, dense}, post_attention_layernorm,
 * mlp.{dense_h_to_4h, dense_4h_to_h}}.{weight, bias}`, `<prefix>final_layernorm.*`, lm_head_name. */
vlmc_status persimmon_model_load(llama_model *m, const hf_text_config *cfg, const safetensors *st, const char *prefix,
                                 const char *lm_head_name, vlmc_error *err);
void llama_model_free(llama_model *m);
/* The first step of llama_model_load: the config and the dimensions, checked, and the (zeroed) layer array; no
 * tensors. For decoders whose weights are named otherwise (Qwen's transformer.h.*, moondream2's), which then set
 * the tensor views themselves. */
vlmc_status llama_model_dims(llama_model *m, const hf_text_config *cfg, vlmc_error *err);
/* A view of the tensor <prefix><name> of shape [d0] (ndim 1) or [d0, d1] in a dtype the decoder's matmuls read
 * (F32, F16, BF16); with optional, an absent tensor leaves *out zeroed. */
vlmc_status llama_weight(const safetensors *st, const char *prefix, const char *name, int ndim, int64_t d0, int64_t d1,
                         bool optional, tensor *out, vlmc_error *err);

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
    /* Added to the position ids derived from the attention mask (PaliGemma counts from 1). Default 0. */
    int position_offset;
    int rope_seq_cached;   /* dynamic rope: the longest sequence seen (transformers' max_seq_len_cached) */
    float attn_factor;
    float *inv_freq;       /* [rot_dim/2] */
    /* activations, rows = n_batch * max_tokens */
    float *x, *xn, *q, *k, *v, *att, *tmp, *gate, *up;
    float *qkv;            /* [rows, 3*H*hd] Persimmon's fused projection, else NULL */
    int32_t *prefix_end;   /* [n_batch] prefix-LM: 1 + last slot of the call's prefix (see attn_args) */
    float *cos_t, *sin_t;  /* [rows, rot_dim/2] */
    int32_t *pos;          /* [rows], or [rows, 3] with M-RoPE */
    int32_t *pos_offset;   /* [n_batch] added to the default position ids: M-RoPE's rope_deltas (see llama_input) */
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
    const int32_t *position_ids;   /* [B, T] or NULL: generate()'s rule, cumsum(mask) - 1 (+ position_offset),
                                      padding 1 */
    int prompt_len;                /* a prompt run in several passes: its whole length (0 = this pass), which
                                      Qwen's dynamic NTK sizes the rotary base by */
    /* M-RoPE (rope_scaling.mrope_section, Qwen2-VL): [B, T, 3] (temporal, height, width) positions per token, as
     * get_rope_index computes them for a prompt; NULL = position_ids or the default rule on all three axes. A call
     * with them also sets each sequence's offset (rope_deltas, relative to the default rule) so that the tokens
     * fed later without positions continue after the prompt's largest position. */
    const int32_t *mrope_pos;
    /* Prefix-LM attention (PaliGemma), NULL = causal: [B, T], 1 = every query of this call sees the token
     * (PaliGemma's image + prefix: the whole prompt at inference, token_type_ids = 0 in training), 0 = causal. */
    const int32_t *prefix_mask;
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

/* The two ends of a forward, shared with the decoders that run in this context (llama_model.forward):
 * start checks T, reserves T slots, writes c->x [B·T, D] (token embeddings, or in->embeds) and records the
 * padding mask of the new slots, with c->pos[r] = the 1-based count of real tokens of the sequence up to token r
 * (0 for padding); finish computes the logits of c->xn (the final norm's output) and makes the T slots cached. */
vlmc_status llama_forward_start(llama_ctx *c, const llama_input *in, vlmc_error *err);
void llama_forward_finish(llama_ctx *c, int T, const llama_output *out);
/* One layer's attention: caches c->k, c->v (aa->T new rows per sequence) in layer l, then c->att = softmax(c->q k^T
 * · aa->scale + mask) v over the cache (row by row, or through sgemm for ATTN_GEMM_MIN_T+ new tokens). */
struct attn_args;
void llama_attention(llama_ctx *c, int l, const struct attn_args *aa);

/* Greedy decoding: runs the prompt in one pass after whatever is cached, then feeds
 * back the argmax token n_new - 1 times (one token per sequence per step), no EOS stop.
 * ids: [B, n_new]; step_logits: [B, n_new, vocab] (the logits that chose each token) or NULL. */
vlmc_status llama_generate_greedy(llama_ctx *c, const llama_input *prompt, int n_new, int32_t *ids,
                                  float *step_logits, vlmc_error *err);

#endif
