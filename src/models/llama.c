/* Llama-family decoder forward (see llama.h for the transformers classes it matches).
 * Reads top to bottom like llama2.c's run.c: load weights → plan buffers → forward.
 * Shapes: B sequences, T new tokens each, R = B*T rows, D hidden, H heads of hd,
 * KVH key/value heads (GQA: H/KVH query heads share one), I MLP width, V vocab. */
#include "models/llama.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "core/quant.h"
#include "kernels/layernorm.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "models/rope.h"

/* ---- weights ---------------------------------------------------------------------- */

vlmc_status llama_weight(const safetensors *st, const char *prefix, const char *name, int ndim, int64_t d0, int64_t d1,
                         bool optional, tensor *out, vlmc_error *err) {
    char full[512];
    int n = snprintf(full, sizeof full, "%s%s", prefix, name);
    if (n < 0 || (size_t)n >= sizeof full) return vlmc_fail(err, VLMC_ERR_ARG, "tensor name too long: %s%s", prefix, name);
    memset(out, 0, sizeof *out);
    if (optional && !safetensors_find(st, full)) return VLMC_OK;
    int64_t shape[2] = {d0, d1};
    vlmc_status s = safetensors_get(st, full, ndim, shape, out, err);
    if (s) return s;
    if (!matmul_dtype_ok(out->type) || (ndim == 1 && dtype_is_quantized(out->type))) {
        const st_entry *e = safetensors_find(st, full);
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s; the decoder reads F32, F16, BF16 or Q8_0/Q4_0/Q4_K/Q6_K",
                         safetensors_file_path(st, e ? e->file : 0), full, dtype_name(out->type));
    }
    return VLMC_OK;
}

/* Replaces a norm vector by an f32 copy plus `add` that the model owns (Gemma's 1 + weight; LayerNorm weights,
 * which the LayerNorm kernel reads as f32). HF adds in f32 too: (1.0 + weight.float()). */
static vlmc_status own_f32(llama_model *m, tensor *t, float add, vlmc_error *err) {
    if (!t->data) return VLMC_OK;
    const int64_t n = tensor_numel(t);
    float **o = realloc(m->owned, (size_t)(m->n_owned + 1) * sizeof *o);
    if (!o) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for the norm weights");
    m->owned = o;
    float *c = malloc((size_t)n * sizeof(float));
    if (!c) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for the norm weights");
    m->owned[m->n_owned++] = c;
    vlmc_status s = convert_to_f32(c, t->data, t->type, (size_t)n, err);
    if (s) return s;
    for (int64_t i = 0; i < n; i++) c[i] = c[i] + add;
    *t = tensor_view(DT_F32, c, 1, (int64_t[]){n});
    return VLMC_OK;
}

vlmc_status llama_model_dims(llama_model *m, const hf_text_config *cfg, vlmc_error *err) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    vlmc_status s = act_from_name(cfg->hidden_act, "config.json hidden_act", &m->act, err);
    if (s) return s;
    if (cfg->num_key_value_heads <= 0 || cfg->num_attention_heads % cfg->num_key_value_heads)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "num_attention_heads %d is not a multiple of num_key_value_heads %d",
                         cfg->num_attention_heads, cfg->num_key_value_heads);
    m->n_layers = cfg->num_hidden_layers;
    m->dim = cfg->hidden_size;
    m->n_heads = cfg->num_attention_heads;
    m->n_kv_heads = cfg->num_key_value_heads;
    m->head_dim = cfg->head_dim;
    m->rot_dim = rope_dim(cfg);
    m->ffn_dim = cfg->intermediate_size;
    m->vocab = cfg->vocab_size;
    m->eps = (float)cfg->rms_norm_eps;
    if (m->rot_dim <= 0 || m->rot_dim % 2 || m->rot_dim > m->head_dim)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "rotary dimension %d does not fit head_dim %d", m->rot_dim, m->head_dim);
    m->layers = calloc((size_t)m->n_layers, sizeof *m->layers);
    if (!m->layers) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for %d layers", m->n_layers);
    return VLMC_OK;
}

static vlmc_status load_lm_head(llama_model *m, const safetensors *st, const char *lm_head_name, vlmc_error *err) {
    if (m->cfg.tie_word_embeddings || !lm_head_name) {
        m->lm_head = m->tok_emb;
        return VLMC_OK;
    }
    return llama_weight(st, "", lm_head_name, 2, m->vocab, m->dim, false, &m->lm_head, err);
}

vlmc_status llama_model_load(llama_model *m, const hf_text_config *cfg, const safetensors *st, const char *prefix,
                             const char *lm_head_name, vlmc_error *err) {
    vlmc_status s = llama_model_dims(m, cfg, err);
    if (s) return s;
    const bool gemma = !strcmp(cfg->model_type, "gemma");
    if (m->act == ACT_RELU2) {
        llama_model_free(m);
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "decoder hidden_act \"%s\" is not supported in a gated MLP",
                         cfg->hidden_act);
    }
    const int64_t D = m->dim, QD = (int64_t)m->n_heads * m->head_dim, KD = (int64_t)m->n_kv_heads * m->head_dim,
                  I = m->ffn_dim, V = m->vocab;
    if ((s = llama_weight(st, prefix, "embed_tokens.weight", 2, V, D, false, &m->tok_emb, err)) ||
        (s = llama_weight(st, prefix, "norm.weight", 1, D, 0, false, &m->final_norm, err)) ||
        (gemma && (s = own_f32(m, &m->final_norm, 1.0f, err))) || (s = load_lm_head(m, st, lm_head_name, err))) {
        llama_model_free(m);
        return s;
    }
    if (gemma) {
        /* GemmaModel: hidden_states * torch.tensor(hidden_size**0.5, dtype=hidden_states.dtype) */
        float sc = (float)sqrt((double)D);
        if (m->tok_emb.type == DT_BF16) sc = bf16_to_f32(f32_to_bf16(sc));
        else if (m->tok_emb.type == DT_F16) sc = f16_to_f32(f32_to_f16(sc));
        m->embed_scale = sc;
    }
    for (int l = 0; l < m->n_layers; l++) {
        llama_layer *L = &m->layers[l];
        char p[400];
        snprintf(p, sizeof p, "%slayers.%d.", prefix, l);
        bool qkvb = cfg->qkv_bias, ob = cfg->o_bias, mb = cfg->mlp_bias;
        if ((s = llama_weight(st, p, "input_layernorm.weight", 1, D, 0, false, &L->attn_norm, err)) ||
            (s = llama_weight(st, p, "self_attn.q_proj.weight", 2, QD, D, false, &L->wq, err)) ||
            (s = llama_weight(st, p, "self_attn.k_proj.weight", 2, KD, D, false, &L->wk, err)) ||
            (s = llama_weight(st, p, "self_attn.v_proj.weight", 2, KD, D, false, &L->wv, err)) ||
            (s = llama_weight(st, p, "self_attn.o_proj.weight", 2, D, QD, false, &L->wo, err)) ||
            (qkvb && (s = llama_weight(st, p, "self_attn.q_proj.bias", 1, QD, 0, false, &L->bq, err))) ||
            (qkvb && (s = llama_weight(st, p, "self_attn.k_proj.bias", 1, KD, 0, false, &L->bk, err))) ||
            (qkvb && (s = llama_weight(st, p, "self_attn.v_proj.bias", 1, KD, 0, false, &L->bv, err))) ||
            (ob && (s = llama_weight(st, p, "self_attn.o_proj.bias", 1, D, 0, false, &L->bo, err))) ||
            (s = llama_weight(st, p, "post_attention_layernorm.weight", 1, D, 0, false, &L->ffn_norm, err)) ||
            (s = llama_weight(st, p, "mlp.gate_proj.weight", 2, I, D, false, &L->w_gate, err)) ||
            (s = llama_weight(st, p, "mlp.up_proj.weight", 2, I, D, false, &L->w_up, err)) ||
            (s = llama_weight(st, p, "mlp.down_proj.weight", 2, D, I, false, &L->w_down, err)) ||
            (mb && (s = llama_weight(st, p, "mlp.gate_proj.bias", 1, I, 0, false, &L->b_gate, err))) ||
            (mb && (s = llama_weight(st, p, "mlp.up_proj.bias", 1, I, 0, false, &L->b_up, err))) ||
            (mb && (s = llama_weight(st, p, "mlp.down_proj.bias", 1, D, 0, false, &L->b_down, err))) ||
            (gemma && ((s = own_f32(m, &L->attn_norm, 1.0f, err)) || (s = own_f32(m, &L->ffn_norm, 1.0f, err))))) {
            llama_model_free(m);
            return s;
        }
    }
    return VLMC_OK;
}

vlmc_status persimmon_model_load(llama_model *m, const hf_text_config *cfg, const safetensors *st, const char *prefix,
                                 const char *lm_head_name, vlmc_error *err) {
    vlmc_status s = llama_model_dims(m, cfg, err);
    if (s) return s;
    m->layer_norm = true;
    m->eps = (float)cfg->layer_norm_eps;
    if (m->n_kv_heads != m->n_heads || (int64_t)m->head_dim * m->n_heads != m->dim) {
        llama_model_free(m);
        return vlmc_fail(err, VLMC_ERR_FORMAT, "persimmon: %d heads of %d do not make hidden_size %d (no GQA)",
                         m->n_heads, m->head_dim, m->dim);
    }
    const int64_t D = m->dim, I = m->ffn_dim, V = m->vocab, hd = m->head_dim;
    if ((s = llama_weight(st, prefix, "embed_tokens.weight", 2, V, D, false, &m->tok_emb, err)) ||
        (s = llama_weight(st, prefix, "final_layernorm.weight", 1, D, 0, false, &m->final_norm, err)) ||
        (s = llama_weight(st, prefix, "final_layernorm.bias", 1, D, 0, false, &m->final_norm_b, err)) ||
        (s = own_f32(m, &m->final_norm, 0.0f, err)) || (s = own_f32(m, &m->final_norm_b, 0.0f, err)) ||
        (s = load_lm_head(m, st, lm_head_name, err))) {
        llama_model_free(m);
        return s;
    }
    for (int l = 0; l < m->n_layers; l++) {
        llama_layer *L = &m->layers[l];
        char p[400];
        snprintf(p, sizeof p, "%slayers.%d.", prefix, l);
        const bool qkn = cfg->qk_layernorm;
        if ((s = llama_weight(st, p, "input_layernorm.weight", 1, D, 0, false, &L->attn_norm, err)) ||
            (s = llama_weight(st, p, "input_layernorm.bias", 1, D, 0, false, &L->attn_norm_b, err)) ||
            (s = llama_weight(st, p, "self_attn.query_key_value.weight", 2, 3 * D, D, false, &L->wqkv, err)) ||
            (s = llama_weight(st, p, "self_attn.query_key_value.bias", 1, 3 * D, 0, false, &L->bqkv, err)) ||
            (qkn && (s = llama_weight(st, p, "self_attn.q_layernorm.weight", 1, hd, 0, false, &L->q_norm, err))) ||
            (qkn && (s = llama_weight(st, p, "self_attn.q_layernorm.bias", 1, hd, 0, false, &L->q_norm_b, err))) ||
            (qkn && (s = llama_weight(st, p, "self_attn.k_layernorm.weight", 1, hd, 0, false, &L->k_norm, err))) ||
            (qkn && (s = llama_weight(st, p, "self_attn.k_layernorm.bias", 1, hd, 0, false, &L->k_norm_b, err))) ||
            (s = llama_weight(st, p, "self_attn.dense.weight", 2, D, D, false, &L->wo, err)) ||
            (s = llama_weight(st, p, "self_attn.dense.bias", 1, D, 0, false, &L->bo, err)) ||
            (s = llama_weight(st, p, "post_attention_layernorm.weight", 1, D, 0, false, &L->ffn_norm, err)) ||
            (s = llama_weight(st, p, "post_attention_layernorm.bias", 1, D, 0, false, &L->ffn_norm_b, err)) ||
            (s = llama_weight(st, p, "mlp.dense_h_to_4h.weight", 2, I, D, false, &L->w_up, err)) ||
            (s = llama_weight(st, p, "mlp.dense_h_to_4h.bias", 1, I, 0, false, &L->b_up, err)) ||
            (s = llama_weight(st, p, "mlp.dense_4h_to_h.weight", 2, D, I, false, &L->w_down, err)) ||
            (s = llama_weight(st, p, "mlp.dense_4h_to_h.bias", 1, D, 0, false, &L->b_down, err))) {
            llama_model_free(m);
            return s;
        }
        tensor *vecs[] = {&L->attn_norm, &L->attn_norm_b, &L->ffn_norm, &L->ffn_norm_b,
                          &L->q_norm,    &L->q_norm_b,    &L->k_norm,   &L->k_norm_b};
        for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++)
            if ((s = own_f32(m, vecs[i], 0.0f, err))) {
                llama_model_free(m);
                return s;
            }
    }
    return VLMC_OK;
}

void llama_model_free(llama_model *m) {
    free(m->layers);
    m->layers = NULL;
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    m->owned = NULL;
    m->n_owned = 0;
}

vlmc_status llama_embed_tokens(const llama_model *m, const int32_t *ids, int64_t n, float *out, vlmc_error *err) {
    const int64_t D = m->dim, rows = m->tok_emb.shape[0];
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= rows)
            return vlmc_fail(err, VLMC_ERR_ARG, "token id %d at position %lld is outside the vocabulary (%lld)", ids[i],
                             (long long)i, (long long)rows);
        vlmc_status s = tensor_row_to_f32(out + i * D, &m->tok_emb, ids[i], err);
        if (s) return s;
    }
    return VLMC_OK;
}

/* ---- run state ---------------------------------------------------------------------- */

void llama_ctx_free(llama_ctx *c) {
    kv_cache_free(&c->kv);
    free(c->inv_freq); free(c->x); free(c->xn); free(c->q); free(c->k); free(c->v); free(c->att); free(c->tmp);
    free(c->gate); free(c->up); free(c->cos_t); free(c->sin_t); free(c->pos); free(c->pos_offset); free(c->scores); free(c->attn_S); free(c->last);
    free(c->step_logits); free(c->step_ids); free(c->step_mask); free(c->scratch); free(c->qkv); free(c->prefix_end);
    memset(c, 0, sizeof *c);
}

static void rope_reset(llama_ctx *c) {
    /* At init transformers computes inv_freq for seq_len = max_position_embeddings. */
    vlmc_error e;
    rope_inv_freq(&c->m->cfg, 0, c->inv_freq, &c->attn_factor, &e); /* validated in init */
    c->rope_seq_cached = c->m->cfg.max_position_embeddings;
}

void llama_ctx_reset(llama_ctx *c) {
    kv_cache_reset(&c->kv);
    memset(c->pos_offset, 0, (size_t)c->n_batch * sizeof(int32_t));
    rope_reset(c);
}

vlmc_status llama_ctx_init(llama_ctx *c, const llama_model *m, int n_batch, int n_ctx, int max_tokens,
                           vlmc_error *err) {
    memset(c, 0, sizeof *c);
    if (n_batch <= 0 || n_ctx <= 0 || max_tokens < 0)
        return vlmc_fail(err, VLMC_ERR_ARG, "decoder context: invalid n_batch %d / n_ctx %d / max_tokens %d", n_batch,
                         n_ctx, max_tokens);
    c->m = m;
    c->n_batch = n_batch;
    c->n_ctx = n_ctx;
    c->max_tokens = max_tokens ? (max_tokens < n_ctx ? max_tokens : n_ctx) : n_ctx;
    c->n_threads = omp_get_max_threads();
    if (c->n_threads < 1) c->n_threads = 1;
    vlmc_status s = kv_cache_init(&c->kv, m->n_layers, n_batch, m->n_kv_heads, m->head_dim, n_ctx, err);
    if (s) return s;
    const size_t R = (size_t)n_batch * c->max_tokens, D = m->dim, QD = (size_t)m->n_heads * m->head_dim,
                 KD = (size_t)m->n_kv_heads * m->head_dim, I = m->ffn_dim, half = m->rot_dim / 2;
    size_t sn = matmul_scratch_floats(m->dim);
    if (matmul_scratch_floats((int64_t)QD) > sn) sn = matmul_scratch_floats((int64_t)QD);
    if (matmul_scratch_floats((int64_t)I) > sn) sn = matmul_scratch_floats((int64_t)I);
    bool all_f32 = m->tok_emb.type == DT_F32 && m->lm_head.type == DT_F32;
    for (int l = 0; l < m->n_layers && all_f32; l++)
        all_f32 = m->layers && (m->layers[l].wqkv.data ? m->layers[l].wqkv.type : m->layers[l].wq.type) == DT_F32;
    const bool fused_qkv = m->n_layers > 0 && m->layers && m->layers[0].wqkv.data;
    c->scratch_n = all_f32 ? 0 : sn;
    c->inv_freq = malloc(half * sizeof(float));
    c->x = malloc(R * D * sizeof(float));
    c->xn = malloc(R * D * sizeof(float));
    c->tmp = malloc(R * D * sizeof(float));
    c->q = malloc(R * QD * sizeof(float));
    c->att = malloc(R * QD * sizeof(float));
    c->k = malloc(R * KD * sizeof(float));
    c->v = malloc(R * KD * sizeof(float));
    c->gate = malloc(R * I * sizeof(float));
    c->up = malloc(R * I * sizeof(float));
    c->cos_t = malloc(R * half * sizeof(float));
    c->sin_t = malloc(R * half * sizeof(float));
    c->pos = malloc(R * 3 * sizeof(int32_t)); /* [R] positions, or [R, 3] with M-RoPE */
    c->pos_offset = calloc((size_t)n_batch, sizeof(int32_t));
    c->scores = malloc((size_t)c->n_threads * n_ctx * sizeof(float));
    c->last = malloc((size_t)n_batch * D * sizeof(float));
    c->step_logits = malloc((size_t)n_batch * m->vocab * sizeof(float));
    c->step_ids = malloc((size_t)n_batch * sizeof(int32_t));
    c->step_mask = malloc((size_t)n_batch * sizeof(int32_t));
    c->scratch = c->scratch_n ? malloc(c->scratch_n * sizeof(float)) : NULL;
    c->qkv = fused_qkv ? malloc(R * 3 * QD * sizeof(float)) : NULL;
    c->prefix_end = malloc((size_t)n_batch * sizeof(int32_t));
    const bool gemm_attn = c->max_tokens >= ATTN_GEMM_MIN_T;
    c->attn_rows = c->max_tokens < ATTN_GEMM_ROWS ? c->max_tokens : ATTN_GEMM_ROWS;
    c->attn_S = gemm_attn ? malloc((size_t)c->attn_rows * n_ctx * sizeof(float)) : NULL;
    if (!c->inv_freq || !c->x || !c->xn || !c->tmp || !c->q || !c->att || !c->k || !c->v || !c->gate || !c->up ||
        !c->cos_t || !c->sin_t || !c->pos || !c->pos_offset || !c->scores || !c->last || !c->step_logits || !c->step_ids ||
        !c->step_mask || (c->scratch_n && !c->scratch) || (gemm_attn && !c->attn_S) || (fused_qkv && !c->qkv) ||
        !c->prefix_end) {
        llama_ctx_free(c);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "decoder context: out of memory (batch %d, n_ctx %d)", n_batch, n_ctx);
    }
    if ((s = rope_inv_freq(&m->cfg, 0, c->inv_freq, &c->attn_factor, err))) {
        llama_ctx_free(c);
        return s;
    }
    c->rope_seq_cached = m->cfg.max_position_embeddings;
    return VLMC_OK;
}

void llama_ctx_unmask_padding(llama_ctx *c) {
    kv_cache *kv = &c->kv;
    for (int b = 0; b < kv->n_batch; b++) {
        memset(kv->mask + (size_t)b * kv->n_ctx, 1, (size_t)kv->n_past);
        kv->n_valid[b] = kv->n_past;
    }
}

/* transformers' dynamic rope (_dynamic_frequency_update): grow the frequencies when a
 * longer sequence than ever before shows up; go back to the originals for short ones. */
static void rope_dynamic_update(llama_ctx *c, int seq_len) {
    const int orig = c->m->cfg.max_position_embeddings;
    vlmc_error e;
    if (seq_len > c->rope_seq_cached) {
        rope_inv_freq(&c->m->cfg, seq_len, c->inv_freq, &c->attn_factor, &e);
        c->rope_seq_cached = seq_len;
    } else if (seq_len < orig && c->rope_seq_cached > orig) {
        rope_inv_freq(&c->m->cfg, 0, c->inv_freq, &c->attn_factor, &e);
        c->rope_seq_cached = orig;
    }
}

/* Qwen's dynamic NTK (QWenModel.get_ntk_alpha, RotaryEmbedding.update_rotary_pos_emb_cache): for a prefill of
 * len tokens, alpha = max(2^ceil(log2(len / seq_length) + 1) - 1, 1) in double, base' = base · alpha^(d / (d-2)),
 * inv_freq = 1 / base'^(arange(0, d, 2) / d) in f32 as torch computes it. */
static void qwen_ntk_update(llama_ctx *c, int len) {
    const llama_model *m = c->m;
    double alpha = pow(2.0, ceil(log2((double)len / m->qwen_seq_length) + 1.0)) - 1.0;
    if (alpha < 1.0) alpha = 1.0;
    const int d = m->rot_dim;
    const float base = (float)(m->cfg.rope_theta * pow(alpha, (double)d / (double)(d - 2)));
    for (int i = 0; i < d / 2; i++) {
        float e = (float)(2 * i) / (float)d;
        c->inv_freq[i] = 1.0f / (float)pow((double)base, (double)e);
    }
    c->attn_factor = 1.0f;
}

/* Qwen's logn attention: q rows of the R new tokens (slot n_past + t of each sequence) times
 * log(p+1) / log(seq_length) (Python's math.log(p+1, seq_length), then f32) past seq_length. */
static void qwen_logn_scale(llama_ctx *c, float *q, int B, int T, int64_t QD) {
    const int n0 = c->kv.n_past, S = c->m->qwen_seq_length;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int i = n0 + t + 1;
            if (i <= S) continue;
            float f = (float)(log((double)i) / log((double)S));
            float *row = q + ((size_t)b * T + t) * QD;
            for (int64_t j = 0; j < QD; j++) row[j] *= f;
        }
}

/* ---- forward ------------------------------------------------------------------------ */

/* out[R, D] = RMSNorm(x) (Llama; Gemma's weights are 1 + w already), or LayerNorm(x) with bias (Persimmon;
 * moondream2, whose f16 weights are read in place) */
static void norm_rows(const llama_model *m, float *out, const float *x, int64_t R, const tensor *w, const tensor *b) {
    if (m->layer_norm) layernorm_tensor_f32(out, x, R, m->dim, w, b && b->data ? b : NULL, m->eps);
    else rmsnorm_f32(out, x, R, m->dim, w, m->eps);
}

/* Persimmon's fused projection: qkv [R, H, 3, hd] (view(B, T, H, 3, hd) in modeling_persimmon) → q, k, v [R, H, hd] */
static void split_qkv(float *q, float *k, float *v, const float *qkv, int64_t R, int H, int hd) {
    for (int64_t r = 0; r < R; r++)
        for (int h = 0; h < H; h++) {
            const float *src = qkv + (r * H + h) * 3 * hd;
            const size_t dst = (size_t)(r * H + h) * hd, n = (size_t)hd * sizeof(float);
            memcpy(q + dst, src, n);
            memcpy(k + dst, src + hd, n);
            memcpy(v + dst, src + 2 * hd, n);
        }
}

vlmc_status llama_forward_start(llama_ctx *c, const llama_input *in, vlmc_error *err) {
    const int B = c->n_batch, T = in->n_tokens;
    const int64_t R = (int64_t)B * T, D = c->m->dim;
    kv_cache *kv = &c->kv;
    vlmc_status s;
    if (T <= 0 || T > c->max_tokens)
        return vlmc_fail(err, VLMC_ERR_ARG, "decoder: %d tokens per sequence in one call (1..%d planned)", T,
                         c->max_tokens);
    if (!in->tokens && !in->embeds) return vlmc_fail(err, VLMC_ERR_ARG, "decoder: neither tokens nor embeddings given");
    if ((s = kv_cache_reserve(kv, T, err))) return s;
    const int prefix_attn = c->m->prefix_attn;
    if (kv->n_past < prefix_attn && (kv->n_past > 0 || T < prefix_attn))
        return vlmc_fail(err, VLMC_ERR_ARG,
                         "decoder: the first %d positions attend to each other both ways and must be run in one call "
                         "(this one runs positions %d..%d)", prefix_attn, kv->n_past, kv->n_past + T - 1);

    /* x[R, D]: token embeddings, or the caller's (VLM: text + image features); Gemma scales them */
    if (in->tokens) {
        if ((s = llama_embed_tokens(c->m, in->tokens, R, c->x, err))) return s;
    } else {
        memcpy(c->x, in->embeds, (size_t)R * D * sizeof(float));
    }
    if (c->m->embed_scale) scale_f32(c->x, c->m->embed_scale, R * D);
    /* slots n_past..n_past+T-1: padding mask (2 = prefix-LM prefix: in->prefix_mask, or moondream2's first
     * prefix_attn slots), and the count of real tokens so far (0 for padding) */
    for (int b = 0; b < B; b++) {
        c->prefix_end[b] = 0;
        for (int t = 0; t < T; t++) {
            const size_t r = (size_t)b * T + t;
            const int slot = kv->n_past + t;
            int mk = in->attention_mask ? in->attention_mask[r] != 0 : 1;
            if (mk && (in->prefix_mask ? in->prefix_mask[r] != 0 : slot < prefix_attn)) {
                mk = 2;
                c->prefix_end[b] = slot + 1;
            }
            kv->mask[(size_t)b * c->n_ctx + slot] = (uint8_t)mk;
            if (mk) kv->n_valid[b]++;
            c->pos[r] = mk ? kv->n_valid[b] : 0;
        }
    }
    return VLMC_OK;
}

void llama_forward_finish(llama_ctx *c, int T, const llama_output *out) {
    const llama_model *m = c->m;
    const int B = c->n_batch;
    const int64_t D = m->dim;
    if (out->logits) {
        if (out->logits_last_only) {
            for (int b = 0; b < B; b++)
                memcpy(c->last + (size_t)b * D, c->xn + ((size_t)b * T + T - 1) * D, (size_t)D * sizeof(float));
            matmul_f32(out->logits, c->last, B, &m->lm_head, &m->lm_head_b, c->scratch, c->scratch_n);
        } else {
            matmul_f32(out->logits, c->xn, (int64_t)B * T, &m->lm_head, &m->lm_head_b, c->scratch, c->scratch_n);
        }
    }
    c->kv.n_past += T;
}

void llama_attention(llama_ctx *c, int l, const attn_args *aa) {
    kv_cache *kv = &c->kv;
    kv_cache_store(kv, kv_cache_k(kv, l), c->k, aa->T);
    kv_cache_store(kv, kv_cache_v(kv, l), c->v, aa->T);
    if (aa->T >= ATTN_GEMM_MIN_T && c->attn_S)
        attention_f32_gemm(c->att, c->q, kv_cache_k(kv, l), kv_cache_v(kv, l), kv->mask, aa, c->attn_S, c->attn_rows);
    else
        attention_f32(c->att, c->q, kv_cache_k(kv, l), kv_cache_v(kv, l), kv->mask, aa, c->scores);
}

vlmc_status llama_forward(llama_ctx *c, const llama_input *in, const llama_output *out, vlmc_error *err) {
    const llama_model *m = c->m;
    if (m->forward) return m->forward(c, in, out, err);
    const int B = c->n_batch, T = in->n_tokens, L = m->n_layers;
    const int64_t R = (int64_t)B * T, D = m->dim, H = m->n_heads, KVH = m->n_kv_heads, hd = m->head_dim,
                  I = m->ffn_dim, half = m->rot_dim / 2;
    kv_cache *kv = &c->kv;
    vlmc_status s = llama_forward_start(c, in, err);
    if (s) return s;

    /* position ids from the counts llama_forward_start left in c->pos: generate()'s rule, cumsum(mask) - 1,
     * padding -> 1, + pos_offset (rope_deltas: only M-RoPE prompts make it non-zero) + position_offset (PaliGemma
     * counts from 1). M-RoPE (Qwen2-VL) has
     * three per token, [R, 3]: a prompt's from get_rope_index (in->mrope_pos), later tokens' all equal. Rows
     * are visited last to first, so that [R, 3] positions never overwrite a count not yet read. */
    const bool mrope = m->cfg.rope_scaling.type == ROPE_MROPE;
    int max_pos = 0;
    for (int b = B - 1; b >= 0; b--) {
        int seq_max = INT32_MIN;
        for (int t = T - 1; t >= 0; t--) {
            const int64_t r = (int64_t)b * T + t;
            const int count = c->pos[r];
            int p = in->position_ids ? in->position_ids[r]
                                     : (count ? count - 1 + c->pos_offset[b] : 1) + c->position_offset;
            if (!mrope) {
                c->pos[r] = p;
            } else {
                for (int a = 0; a < 3; a++) {
                    c->pos[r * 3 + a] = in->mrope_pos ? in->mrope_pos[r * 3 + a] : p;
                    if (count && c->pos[r * 3 + a] > seq_max) seq_max = c->pos[r * 3 + a];
                }
            }
            if (p > max_pos) max_pos = p;
        }
        /* get_rope_index's rope_deltas: later tokens continue after the largest position of the prompt */
        if (in->mrope_pos && seq_max != INT32_MIN) c->pos_offset[b] = seq_max + 1 - kv->n_valid[b];
    }
    if (m->cfg.rope_scaling.type == ROPE_DYNAMIC) rope_dynamic_update(c, max_pos + 1);
    if (m->qwen_dynamic_ntk && kv->n_past == 0) {
        /* Qwen takes the real length of each sequence (mask ones); one base for the batch here: the longest */
        int len = in->prompt_len;
        for (int b = 0; b < B; b++) len = kv->n_valid[b] > len ? kv->n_valid[b] : len;
        qwen_ntk_update(c, len);
    }
    if (mrope)
        rope_tables_mrope(c->inv_freq, (int)half, c->attn_factor, m->cfg.rope_scaling.mrope_section, c->pos, (int)R,
                          c->cos_t, c->sin_t);
    else
        rope_tables(c->inv_freq, (int)half, c->attn_factor, c->pos, (int)R, c->cos_t, c->sin_t);

    float *hs = out->hidden_states;
    if (hs) memcpy(hs, c->x, (size_t)R * D * sizeof(float));

    const attn_args aa = {.B = B, .T = T, .n_past = kv->n_past, .n_ctx = c->n_ctx, .n_heads = (int)H,
                          .n_kv_heads = (int)KVH, .head_dim = (int)hd, .window = m->cfg.sliding_window,
                          .scale = 1.0f / sqrtf((float)hd), .n_threads = c->n_threads,
                          .prefix_end = in->prefix_mask || m->prefix_attn ? c->prefix_end : NULL};
    for (int l = 0; l < L; l++) {
        const llama_layer *w = &m->layers[l];
        /* attention block: xn = norm(x); q,k,v = xn W^T (+b); [Persimmon: layernorm(q), layernorm(k) per head];
         * rope(q, k); cache k, v */
        norm_rows(m, c->xn, c->x, R, &w->attn_norm, &w->attn_norm_b);
        /* q [R, H*hd], k [R, KVH*hd], v [R, KVH*hd] */
        if (w->wqkv.data) {
            matmul_f32(c->qkv, c->xn, R, &w->wqkv, &w->bqkv, c->scratch, c->scratch_n); /* [R, H, 3, hd] */
            split_qkv(c->q, c->k, c->v, c->qkv, R, (int)H, (int)hd);
        } else {
            matmul_f32_group(3, (float *const[]){c->q, c->k, c->v}, c->xn, R,
                             (const tensor *const[]){&w->wq, &w->wk, &w->wv},
                             (const tensor *const[]){&w->bq, &w->bk, &w->bv}, c->scratch, c->scratch_n);
        }
        if (w->q_norm.data) {
            layernorm_forward(c->q, c->q, w->q_norm.data, w->q_norm_b.data, (size_t)(R * H), (size_t)hd, m->eps);
            layernorm_forward(c->k, c->k, w->k_norm.data, w->k_norm_b.data, (size_t)(R * KVH), (size_t)hd, m->eps);
        }
        rope_apply_f32(c->q, R, (int)H, (int)hd, m->rot_dim, c->cos_t, c->sin_t);
        rope_apply_f32(c->k, R, (int)KVH, (int)hd, m->rot_dim, c->cos_t, c->sin_t);
        if (m->qwen_logn_attn) qwen_logn_scale(c, c->q, B, T, H * hd);
        /* att[R, H*hd] = softmax(q k^T / sqrt(hd) + mask) v ; x += att Wo^T */
        llama_attention(c, l, &aa);
        matmul_f32(c->tmp, c->att, R, &w->wo, &w->bo, c->scratch, c->scratch_n);
        add_f32(c->x, c->tmp, R * D);
        /* MLP block: x += (act(xn Wg^T) * (xn Wu^T)) Wd^T, or (Persimmon, moondream2) x += act(xn Wu^T + bu) Wd^T + bd;
         * a parallel block (moondream2) reuses the attention's xn: x = (x + attn) + mlp, torch's order */
        if (!m->parallel_block) norm_rows(m, c->xn, c->x, R, &w->ffn_norm, &w->ffn_norm_b);
        float *h = c->gate; /* [R, I] */
        if (w->w_gate.data) {
            matmul_f32_group(2, (float *const[]){c->gate, c->up}, c->xn, R,
                             (const tensor *const[]){&w->w_gate, &w->w_up}, (const tensor *const[]){&w->b_gate, &w->b_up},
                             c->scratch, c->scratch_n);
            if (m->act == ACT_SILU) silu_mul_f32(c->gate, c->up, R * I);
            else act_mul_forward(m->act, c->gate, c->up, (size_t)(R * I));
        } else {
            matmul_f32(h, c->xn, R, &w->w_up, &w->b_up, c->scratch, c->scratch_n);
            act_forward(m->act, h, h, (size_t)(R * I));
        }
        matmul_f32(c->tmp, h, R, &w->w_down, &w->b_down, c->scratch, c->scratch_n); /* [R, D] */
        add_f32(c->x, c->tmp, R * D);
        if (hs && (l + 1 < L || out->hidden_states_all))
            memcpy(hs + (size_t)(l + 1) * R * D, c->x, (size_t)R * D * sizeof(float));
    }
    /* final norm; logits = xn lm_head^T (+ bias) */
    norm_rows(m, c->xn, c->x, R, &m->final_norm, &m->final_norm_b);
    if (hs) memcpy(hs + (size_t)(out->hidden_states_all ? L + 1 : L) * R * D, c->xn, (size_t)R * D * sizeof(float));
    llama_forward_finish(c, T, out);
    return VLMC_OK;
}

vlmc_status llama_generate_greedy(llama_ctx *c, const llama_input *prompt, int n_new, int32_t *ids,
                                  float *step_logits, vlmc_error *err) {
    const int B = c->n_batch;
    const int64_t V = c->m->vocab;
    if (n_new <= 0) return VLMC_OK;
    if (c->kv.n_past + prompt->n_tokens + n_new - 1 > c->n_ctx)
        return vlmc_fail(err, VLMC_ERR_LIMIT, "KV cache full: %d cached + %d prompt + %d new tokens exceed n_ctx = %d",
                         c->kv.n_past, prompt->n_tokens, n_new - 1, c->n_ctx);
    vlmc_status s = llama_forward(c, prompt, &(llama_output){.logits = c->step_logits, .logits_last_only = true}, err);
    if (!s && c->legacy_unmask_padding_on_decode) llama_ctx_unmask_padding(c);
    for (int i = 0; !s && i < n_new; i++) {
        for (int b = 0; b < B; b++) {
            const float *lg = c->step_logits + (size_t)b * V;
            c->step_ids[b] = (int32_t)argmax_f32(lg, V);
            c->step_mask[b] = 1;
            ids[(size_t)b * n_new + i] = c->step_ids[b];
            if (step_logits) memcpy(step_logits + ((size_t)b * n_new + i) * V, lg, (size_t)V * sizeof(float));
        }
        if (i + 1 < n_new)
            s = llama_forward(c, &(llama_input){.n_tokens = 1, .tokens = c->step_ids, .attention_mask = c->step_mask},
                              &(llama_output){.logits = c->step_logits, .logits_last_only = true}, err);
    }
    return s;
}
