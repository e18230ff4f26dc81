/* Qwen-VL (v1): the remote code of the Qwen/Qwen-VL(-Chat) checkpoints: modeling_qwen.py QWenLMHeadModel /
 * QWenModel and visual.py VisionTransformer, Resampler, get_abs_pos (config.json: model_type "qwen", architectures
 * ["QWenLMHeadModel"], auto_map; a "visual" object makes it Qwen-VL, without it this is the text-only Qwen decoder).
 *
 * Config keys read: vocab_size, hidden_size, intermediate_size (the MLP is intermediate_size / 2 wide),
 * num_hidden_layers, num_attention_heads, kv_channels (head size), layer_norm_epsilon, rotary_emb_base, rotary_pct,
 * seq_length, use_dynamic_ntk, use_logn_attn, max_position_embeddings, no_bias, tie_word_embeddings, and
 * visual.{image_size, patch_size, width, layers, heads, mlp_ratio, output_dim, n_queries, image_start_id}.
 * Tensors: transformer.wte, transformer.h.<i>.{ln_1, attn.c_attn (weight + bias), attn.c_proj, ln_2, mlp.w1,
 * mlp.w2, mlp.c_proj}, transformer.ln_f, lm_head; transformer.visual.{conv1, positional_embedding, ln_pre,
 * transformer.resblocks.<i>.{ln_1, attn.in_proj, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}, attn_pool.{query,
 * pos_embed, kv_proj, ln_q, ln_kv, attn.in_proj_weight / in_proj_bias, attn.out_proj}, ln_post, proj}.
 *
 * Vision (S = image_size, P = patch_size, G = S / P, W = width, E = output_dim, Q = n_queries):
 *   image → PIL bicubic resize to S × S → ToTensor → Normalize(CLIP mean, std)            pixel_values [3, S, S]
 *   conv1 (no bias) → [G², W] + get_abs_pos(positional_embedding [256, W], G²) → ln_pre
 *   pre-LN blocks: x += out_proj(attn(ln_1 x)), in_proj's output laid out per head as [q | k | v];
 *                  x += c_proj(GELU(c_fc(ln_2 x)))
 *   Resampler: kv = ln_kv(kv_proj x) [G², E]; q = ln_q(query) + pos_embed [Q, E];
 *              nn.MultiheadAttention(E, E / 128 heads)(q, kv + get_abs_pos(pos_embed, G²), kv)
 *   ln_post, then x @ proj ([E, E] used as stored, not transposed)                          [Q, E = hidden]
 *   get_abs_pos: F.interpolate(bicubic, align_corners=False, A = -0.75) of the √L × √L table to G × G.
 * Prompt: each image is the span <img> PATH-bytes <imgpad>... </img> of Q + 2 ids (image_start_id, +1, +2);
 * QWenModel.forward writes the Q visual rows over ids[a+1 .. b-1], the path bytes included. The decoder is the
 * Llama block of llama.c with Qwen's names, w1 as "up" and w2 as "gate" (a1 * silu(a2)), dynamic NTK rotary and
 * logn query scaling (llama_model.qwen_*). Grounding answers are plain text (<ref>…</ref><box>(x1,y1),(x2,y2)</box>
 * in 0..1000 coordinates). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <omp.h>

#include "core/error.h"
#include "core/file.h"
#include "formats/json.h"
#include "kernels/gelu.h"
#include "kernels/layernorm.h"
#include "kernels/matmul.h"
#include "models/vlm.h"
#include "vision/image.h"
#include "vision/resize.h"

/* visual.py's image_transform: OpenAI CLIP's normalisation. */
static const float qwen_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float qwen_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};

typedef struct qwen_block {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b; /* [W] */
    tensor in_w, out_w, fc_w, proj_w;           /* [3W, W], [W, W], [F, W], [W, F] */
    const float *in_b, *out_b, *fc_b, *proj_b;
} qwen_block;

typedef struct qwen_visual {
    int S, P, G, W, L, H, F, E, Q, EH; /* image, patch, grid, width, layers, heads, mlp, output dim, queries, pool heads */
    int n_pos;                          /* rows of positional_embedding (a square) */
    int image_start_id;                 /* <img>; </img> = +1, <imgpad> = +2 */
    tensor conv_w;                      /* [W, 3·P·P] */
    const float *pos, *ln_pre_w, *ln_pre_b;
    qwen_block *blocks;
    const float *query, *pool_pos;      /* [Q, E] */
    tensor kv_w;                        /* [E, W]; data NULL when W == E (nn.Identity) */
    const float *ln_q_w, *ln_q_b, *ln_kv_w, *ln_kv_b;
    tensor pool_in_w, pool_out_w;       /* [3E, E], [E, E] */
    const float *pool_in_b, *pool_out_b;
    const float *ln_post_w, *ln_post_b;
    tensor proj;                        /* [E, E]: y = x @ proj */
    size_t scratch_floats;              /* largest matrix converted to f32 per GEMM */
    float **owned;
    int n_owned;
} qwen_visual;

/* ---- loading ---------------------------------------------------------------------------------------------- */

typedef struct qloader {
    const safetensors *st;
    qwen_visual *v;
    vlmc_error *err;
} qloader;

static vlmc_status q_mat(qloader *ld, const char *name, int64_t rows, int64_t cols, tensor *out) {
    vlmc_status s = llama_weight(ld->st, "transformer.visual.", name, 2, rows, cols, false, out, ld->err);
    if (!s && !vision_weight_is_direct(out) && (size_t)(rows * cols) > ld->v->scratch_floats)
        ld->v->scratch_floats = (size_t)(rows * cols);
    return s;
}

/* A vector or small table as f32: a view when stored as aligned F32, else a converted copy. */
static vlmc_status q_vec(qloader *ld, const char *name, int64_t rows, int64_t cols, const float **out) {
    tensor t;
    vlmc_status s = llama_weight(ld->st, "transformer.visual.", name, cols ? 2 : 1, rows, cols, false, &t, ld->err);
    if (s) return s;
    if (vision_weight_is_direct(&t)) {
        *out = t.data;
        return VLMC_OK;
    }
    size_t n = (size_t)tensor_numel(&t);
    float *c = malloc(n * sizeof(float)), **o = realloc(ld->v->owned, (size_t)(ld->v->n_owned + 1) * sizeof(float *));
    if (o) ld->v->owned = o;
    if (!c || !o) {
        free(c);
        return vlmc_fail(ld->err, VLMC_ERR_NOMEM, "out of memory");
    }
    ld->v->owned[ld->v->n_owned++] = c;
    if ((s = convert_to_f32(c, t.data, t.type, n, ld->err))) return s;
    *out = c;
    return VLMC_OK;
}

static void qwen_visual_free(qwen_visual *v) {
    for (int i = 0; i < v->n_owned; i++) free(v->owned[i]);
    free(v->owned);
    free(v->blocks);
    memset(v, 0, sizeof *v);
}

static vlmc_status qwen_visual_load(const safetensors *st, const cJSON *vis, const char *cfg_path, int hidden,
                                    qwen_visual *v, vlmc_error *err) {
    memset(v, 0, sizeof *v);
    v->S = (int)json_int(vis, "image_size", 448);
    v->P = (int)json_int(vis, "patch_size", 14);
    v->W = (int)json_int(vis, "width", 1664);
    v->L = (int)json_int(vis, "layers", 48);
    v->H = (int)json_int(vis, "heads", 16);
    v->F = (int)(v->W * json_number(vis, "mlp_ratio", 4.9231));
    v->E = (int)json_int(vis, "output_dim", 4096);
    v->Q = (int)json_int(vis, "n_queries", 256);
    v->image_start_id = (int)json_int(vis, "image_start_id", 151857);
    v->EH = v->E / 128;
    int gq = (int)lround(sqrt((double)v->Q));
    if (v->P <= 0 || v->S < v->P || v->S % v->P || v->W <= 0 || v->L < 0 || v->L > 1024 || v->H <= 0 || v->W % v->H ||
        v->F <= 0 || v->E < 128 || v->E % 128 || v->E != hidden || v->Q <= 0 || gq * gq != v->Q || v->S > 1 << 14 ||
        v->image_start_id < 0)
        return vlmc_fail(err, VLMC_ERR_FORMAT,
                         "%s: visual config does not fit Qwen-VL's VisionTransformer (image_size a multiple of patch_size, "
                         "width a multiple of heads, output_dim = hidden_size and a multiple of 128, n_queries a square)",
                         cfg_path);
    v->G = v->S / v->P;
    qloader ld = {st, v, err};
    const int64_t W = v->W, E = v->E, F = v->F, CPP = 3LL * v->P * v->P;
    const st_entry *pe = safetensors_find(st, "transformer.visual.positional_embedding");
    v->n_pos = pe && pe->t.ndim == 2 ? (int)pe->t.shape[0] : 256;
    int sp = (int)lround(sqrt((double)v->n_pos));
    if (sp * sp != v->n_pos)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: positional_embedding has %d rows, not a square", cfg_path, v->n_pos);
    vlmc_status s;
    tensor conv;
    int64_t conv_shape[4] = {W, 3, v->P, v->P};
    if ((s = safetensors_get(st, "transformer.visual.conv1.weight", 4, conv_shape, &conv, err))) goto fail;
    if (!matmul_dtype_ok(conv.type)) {
        s = vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: conv1.weight has dtype %s", cfg_path, dtype_name(conv.type));
        goto fail;
    }
    v->conv_w = tensor_view(conv.type, conv.data, 2, (int64_t[]){W, CPP});
    if (!vision_weight_is_direct(&v->conv_w) && (size_t)(W * CPP) > v->scratch_floats) v->scratch_floats = (size_t)(W * CPP);
    if ((s = q_vec(&ld, "positional_embedding", v->n_pos, W, &v->pos)) ||
        (s = q_vec(&ld, "ln_pre.weight", W, 0, &v->ln_pre_w)) || (s = q_vec(&ld, "ln_pre.bias", W, 0, &v->ln_pre_b)))
        goto fail;
    if (!(v->blocks = calloc((size_t)(v->L ? v->L : 1), sizeof *v->blocks))) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int l = 0; l < v->L; l++) {
        qwen_block *b = &v->blocks[l];
        char n[16][96];
        static const char *const parts[16] = {"ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias",
                                              "attn.in_proj.weight", "attn.in_proj.bias", "attn.out_proj.weight",
                                              "attn.out_proj.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
                                              "mlp.c_proj.weight", "mlp.c_proj.bias"};
        for (int i = 0; i < 12; i++) snprintf(n[i], sizeof n[i], "transformer.resblocks.%d.%s", l, parts[i]);
        if ((s = q_vec(&ld, n[0], W, 0, &b->ln1_w)) || (s = q_vec(&ld, n[1], W, 0, &b->ln1_b)) ||
            (s = q_vec(&ld, n[2], W, 0, &b->ln2_w)) || (s = q_vec(&ld, n[3], W, 0, &b->ln2_b)) ||
            (s = q_mat(&ld, n[4], 3 * W, W, &b->in_w)) || (s = q_vec(&ld, n[5], 3 * W, 0, &b->in_b)) ||
            (s = q_mat(&ld, n[6], W, W, &b->out_w)) || (s = q_vec(&ld, n[7], W, 0, &b->out_b)) ||
            (s = q_mat(&ld, n[8], F, W, &b->fc_w)) || (s = q_vec(&ld, n[9], F, 0, &b->fc_b)) ||
            (s = q_mat(&ld, n[10], W, F, &b->proj_w)) || (s = q_vec(&ld, n[11], W, 0, &b->proj_b)))
            goto fail;
    }
    if (W != E && (s = q_mat(&ld, "attn_pool.kv_proj.weight", E, W, &v->kv_w))) goto fail;
    if ((s = q_vec(&ld, "attn_pool.query", v->Q, E, &v->query)) ||
        (s = q_vec(&ld, "attn_pool.pos_embed", v->Q, E, &v->pool_pos)) ||
        (s = q_vec(&ld, "attn_pool.ln_q.weight", E, 0, &v->ln_q_w)) ||
        (s = q_vec(&ld, "attn_pool.ln_q.bias", E, 0, &v->ln_q_b)) ||
        (s = q_vec(&ld, "attn_pool.ln_kv.weight", E, 0, &v->ln_kv_w)) ||
        (s = q_vec(&ld, "attn_pool.ln_kv.bias", E, 0, &v->ln_kv_b)) ||
        (s = q_mat(&ld, "attn_pool.attn.in_proj_weight", 3 * E, E, &v->pool_in_w)) ||
        (s = q_vec(&ld, "attn_pool.attn.in_proj_bias", 3 * E, 0, &v->pool_in_b)) ||
        (s = q_mat(&ld, "attn_pool.attn.out_proj.weight", E, E, &v->pool_out_w)) ||
        (s = q_vec(&ld, "attn_pool.attn.out_proj.bias", E, 0, &v->pool_out_b)) ||
        (s = q_vec(&ld, "ln_post.weight", E, 0, &v->ln_post_w)) || (s = q_vec(&ld, "ln_post.bias", E, 0, &v->ln_post_b)) ||
        (s = q_mat(&ld, "proj", E, E, &v->proj)))
        goto fail;
    return VLMC_OK;
fail:
    qwen_visual_free(v);
    return s;
}

/* The decoder: llama.c's block under Qwen's names (c_attn's rows are [q; k; v]). */
static vlmc_status qwen_decoder_load(llama_model *m, const safetensors *st, const cJSON *root, const char *cfg_path,
                                     vlmc_error *err) {
    hf_text_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.model_type, sizeof c.model_type, "qwen");
    snprintf(c.hidden_act, sizeof c.hidden_act, "silu");
    c.vocab_size = (int)json_int(root, "vocab_size", 151936);
    c.hidden_size = (int)json_int(root, "hidden_size", 4096);
    c.intermediate_size = (int)json_int(root, "intermediate_size", 22016) / 2;
    c.num_hidden_layers = (int)json_int(root, "num_hidden_layers", 32);
    c.num_attention_heads = c.num_key_value_heads = (int)json_int(root, "num_attention_heads", 32);
    c.head_dim = (int)json_int(root, "kv_channels", 128);
    c.max_position_embeddings = (int)json_int(root, "max_position_embeddings", 8192);
    c.rms_norm_eps = json_number(root, "layer_norm_epsilon", 1e-6);
    c.rope_theta = json_number(root, "rotary_emb_base", 10000.0);
    c.partial_rotary_factor = json_number(root, "rotary_pct", 1.0);
    c.tie_word_embeddings = json_bool(root, "tie_word_embeddings", false);
    c.bos_token_id = c.pad_token_id = -1;
    const bool bias = !json_bool(root, "no_bias", true);
    c.qkv_bias = true;
    c.o_bias = c.mlp_bias = bias;
    if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_hidden_layers <= 0 ||
        c.num_hidden_layers > 1024 || c.num_attention_heads <= 0 || c.head_dim <= 0 ||
        (int64_t)c.head_dim * c.num_attention_heads != c.hidden_size || !json_bool(root, "scale_attn_weights", true))
        return vlmc_fail(err, VLMC_ERR_FORMAT,
                         "%s: sizes do not fit QWenModel (kv_channels × num_attention_heads must equal hidden_size, "
                         "scale_attn_weights true)", cfg_path);
    vlmc_status s = llama_model_dims(m, &c, err);
    if (s) return s;
    m->qwen_seq_length = (int)json_int(root, "seq_length", 2048);
    m->qwen_dynamic_ntk = json_bool(root, "use_dynamic_ntk", true);
    m->qwen_logn_attn = json_bool(root, "use_logn_attn", true);
    const int64_t D = m->dim, FF = m->ffn_dim, V = m->vocab;
    if (m->qwen_seq_length <= 1) s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: seq_length must be > 1", cfg_path);
    else if ((s = llama_weight(st, "transformer.", "wte.weight", 2, V, D, false, &m->tok_emb, err)) ||
             (s = llama_weight(st, "transformer.", "ln_f.weight", 1, D, 0, false, &m->final_norm, err))) {
    } else if (c.tie_word_embeddings) m->lm_head = m->tok_emb;
    else s = llama_weight(st, "", "lm_head.weight", 2, V, D, false, &m->lm_head, err);
    if (s) {
        llama_model_free(m); /* the layer array llama_model_dims made */
        return s;
    }
    for (int l = 0; l < m->n_layers; l++) {
        llama_layer *L = &m->layers[l];
        char p[64];
        snprintf(p, sizeof p, "transformer.h.%d.", l);
        tensor qkv, qkv_b;
        if ((s = llama_weight(st, p, "ln_1.weight", 1, D, 0, false, &L->attn_norm, err)) ||
            (s = llama_weight(st, p, "attn.c_attn.weight", 2, 3 * D, D, false, &qkv, err)) ||
            (s = llama_weight(st, p, "attn.c_attn.bias", 1, 3 * D, 0, false, &qkv_b, err)) ||
            (s = llama_weight(st, p, "attn.c_proj.weight", 2, D, D, false, &L->wo, err)) ||
            (s = llama_weight(st, p, "attn.c_proj.bias", 1, D, 0, !bias, &L->bo, err)) ||
            (s = llama_weight(st, p, "ln_2.weight", 1, D, 0, false, &L->ffn_norm, err)) ||
            (s = llama_weight(st, p, "mlp.w2.weight", 2, FF, D, false, &L->w_gate, err)) ||
            (s = llama_weight(st, p, "mlp.w1.weight", 2, FF, D, false, &L->w_up, err)) ||
            (s = llama_weight(st, p, "mlp.c_proj.weight", 2, D, FF, false, &L->w_down, err)) ||
            (s = llama_weight(st, p, "mlp.w2.bias", 1, FF, 0, !bias, &L->b_gate, err)) ||
            (s = llama_weight(st, p, "mlp.w1.bias", 1, FF, 0, !bias, &L->b_up, err)) ||
            (s = llama_weight(st, p, "mlp.c_proj.bias", 1, D, 0, !bias, &L->b_down, err))) {
            llama_model_free(m);
            return s;
        }
        /* q, k, v: consecutive row blocks of c_attn (views, no copy) */
        const size_t brow = dtype_block_bytes(qkv_b.type);
        tensor *w[3] = {&L->wq, &L->wk, &L->wv}, *b[3] = {&L->bq, &L->bk, &L->bv};
        for (int i = 0; i < 3; i++) {
            *w[i] = vit_row_slice(&qkv, (int64_t)i * D, D); /* quantized rows are whole blocks */
            *b[i] = tensor_view(qkv_b.type, (char *)qkv_b.data + (size_t)i * D * brow, 1, (int64_t[]){D});
        }
    }
    return VLMC_OK;
}

static bool qwen_detect(const hf_config *cfg) {
    return !strcmp(cfg->model_type, "qwen") || !strcmp(cfg->architecture, "QWenLMHeadModel");
}

static void qwen_free(vlm_model *m) {
    if (!m->priv) return;
    qwen_visual_free(m->priv);
    free(m->priv);
    m->priv = NULL;
}

static vlmc_status qwen_load(vlm_model *m, vlmc_error *err) {
    char *cfg_path = path_join(m->dir, "config.json");
    cJSON *root = NULL;
    vlmc_status s;
    if (!cfg_path) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    if ((s = json_parse_file(cfg_path, 16u << 20, &root, err))) goto done;
    if ((s = qwen_decoder_load(&m->lm, m->st, root, cfg_path, err))) {
        m->lm.layers = NULL;
        goto done;
    }
    m->cfg.text = m->lm.cfg;
    m->cfg.has_text = true;
    const cJSON *vis = json_get(root, "visual");
    if (!vis) goto done; /* Qwen (text only) */
    if (!cJSON_IsObject(vis)) {
        s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: visual must be an object", cfg_path);
        goto done;
    }
    qwen_visual *v = calloc(1, sizeof *v);
    if (!v) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((s = qwen_visual_load(m->st, vis, cfg_path, m->lm.dim, v, err))) {
        free(v);
        goto done;
    }
    m->priv = v;
    if (v->image_start_id + 2 >= m->lm.vocab) {
        s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: visual.image_start_id %d + 2 is outside the vocabulary (%d)", cfg_path,
                      v->image_start_id, m->lm.vocab);
        goto done;
    }
    m->has_vision = true;
    m->image_token_id = v->image_start_id + 2; /* <imgpad>: a chat's image spans (the dump reads the spans itself) */
done:
    cJSON_Delete(root);
    free(cfg_path);
    return s;
}

/* ---- vision forward ----------------------------------------------------------------------------------------- */

/* y[M, N] = x[M, K] @ w[K, N] (w used as stored, f32 or converted into scratch). */
static void matmul_xw(float *y, const float *x, size_t M, const tensor *w, float *scratch) {
    const int K = (int)w->shape[0], N = (int)w->shape[1];
    const float *W = w->data;
    if (!vision_weight_is_direct(w)) {
        convert_to_f32(scratch, w->data, w->type, (size_t)K * N, NULL);
        W = scratch;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, N, K, 1.0f, x, K, W, N, 0.0f, y, N);
}

/* torch's bicubic source index and cubic convolution coefficients (A = -0.75, f32) for output index i of a
 * resize by scale = in / out (align_corners=False: scale·(i + 0.5) - 0.5; the fraction clamped to [0, 1]). */
static int cubic_source(float scale, int i, int in_size, float w[4]) {
    const float A = -0.75f;
    float r = scale * ((float)i + 0.5f) - 0.5f;
    int idx = (int)floorf(r);
    if (idx > in_size - 1) idx = in_size - 1;
    float t = fminf(fmaxf(r - (float)idx, 0.0f), 1.0f);
    float x1 = t + 1.0f, x2 = 1.0f - t, x3 = 2.0f - t;
    w[0] = ((A * x1 - 5.0f * A) * x1 + 8.0f * A) * x1 - 4.0f * A;
    w[1] = ((A + 2.0f) * t - (A + 3.0f)) * t * t + 1.0f;
    w[2] = ((A + 2.0f) * x2 - (A + 3.0f)) * x2 * x2 + 1.0f;
    w[3] = ((A * x3 - 5.0f * A) * x3 + 8.0f * A) * x3 - 4.0f * A;
    return idx;
}

/* visual.py get_abs_pos: the table [s·s, C] seen as an s × s image of C channels, resized to g × g by
 * F.interpolate(mode="bicubic", align_corners=False) (borders clamped, rows of the width sums weighted by the
 * height coefficients), in f32; the table itself when s = g. */
static void get_abs_pos(const float *table, int s, int C, int g, float *out) {
    if (s == g) {
        memcpy(out, table, (size_t)s * s * C * sizeof(float));
        return;
    }
    const float scale = (float)s / (float)g;
    for (int oy = 0; oy < g; oy++) {
        float wy[4];
        const int iy = cubic_source(scale, oy, s, wy);
        for (int ox = 0; ox < g; ox++) {
            float wx[4];
            const int ix = cubic_source(scale, ox, s, wx);
            float *o = out + ((size_t)oy * g + ox) * C;
            for (int c = 0; c < C; c++) {
                float acc = 0.0f;
                for (int j = 0; j < 4; j++) {
                    int yy = iy - 1 + j < 0 ? 0 : iy - 1 + j > s - 1 ? s - 1 : iy - 1 + j;
                    float row = 0.0f;
                    for (int k = 0; k < 4; k++) {
                        int xx = ix - 1 + k < 0 ? 0 : ix - 1 + k > s - 1 ? s - 1 : ix - 1 + k;
                        row += table[((size_t)yy * s + xx) * C + c] * wx[k];
                    }
                    acc += row * wy[j];
                }
                o[c] = acc;
            }
        }
    }
}

/* What qwen_visual_forward writes besides the output; every pointer may be NULL. n = images, T = G². */
typedef struct qwen_visual_steps {
    float *patch_embeds;  /* [n, T, W] */
    float *pos_interp;    /* [T, W] */
    float *ln_pre;        /* [n, T, W] */
    float *blocks;        /* [L, n, T, W] */
    float *kv_pos_interp; /* [T, E] */
    float *resampler;     /* [n, Q, E] */
    float *ln_post;       /* [n, Q, E] */
} qwen_visual_steps;

/* VisionTransformer.forward on pixels [n, 3, S, S] → out [n, Q, E]. */
static vlmc_status qwen_visual_forward(const qwen_visual *v, const float *pixels, int n, float *out,
                                       const qwen_visual_steps *st, vlmc_error *err) {
    const int T = v->G * v->G, W = v->W, E = v->E, Q = v->Q, hd = W / v->H, ehd = E / v->EH;
    const size_t R = (size_t)n * T, CPP = 3 * (size_t)v->P * v->P, RQ = (size_t)n * Q;
    const int sp = (int)lround(sqrt((double)v->n_pos)), sq = (int)lround(sqrt((double)Q));
    const int nt = omp_get_max_threads();
    size_t big = R * (3 * (size_t)W > (size_t)v->F ? 3 * (size_t)W : (size_t)v->F);
    if (R * (size_t)E > big) big = R * (size_t)E;
    if (RQ * (size_t)E > big) big = RQ * (size_t)E;
    float *x = malloc(R * W * sizeof(float)), *h = malloc(R * W * sizeof(float)), *wide = malloc(big * sizeof(float));
    float *q = malloc((R > RQ ? R : RQ) * (W > E ? W : E) * sizeof(float));
    float *k = malloc(R * (W > E ? W : E) * sizeof(float)), *vv = malloc(R * (W > E ? W : E) * sizeof(float));
    float *a = malloc((R > RQ ? R : RQ) * (W > E ? W : E) * sizeof(float));
    float *patches = malloc(R * CPP * sizeof(float)), *pos = malloc((size_t)T * (W > E ? W : E) * sizeof(float));
    float *scores = malloc((size_t)nt * VISION_ATT_QB * T * sizeof(float));
    float *scratch = malloc((v->scratch_floats ? v->scratch_floats : 1) * sizeof(float));
    float *qq = malloc((size_t)Q * E * sizeof(float));
    vlmc_status s = VLMC_OK;
    if (!x || !h || !wide || !q || !k || !vv || !a || !patches || !pos || !scores || !scratch || !qq) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "Qwen-VL: out of memory for the vision tower (%d images)", n);
        goto done;
    }
    /* conv1 as a GEMM: [n·T, 3·P·P] × [W, 3·P·P]^T → [n·T, W] */
    vision_unfold_patches(patches, pixels, n, 3, v->S, v->S, v->P);
    vision_linear(x, patches, R, &v->conv_w, NULL, scratch, false);
    if (st && st->patch_embeds) memcpy(st->patch_embeds, x, R * W * sizeof(float));
    get_abs_pos(v->pos, sp, W, v->G, pos);
    if (st && st->pos_interp) memcpy(st->pos_interp, pos, (size_t)T * W * sizeof(float));
    for (size_t r = 0; r < R; r++)
        for (int d = 0; d < W; d++) x[r * W + d] += pos[(r % T) * W + d];
    layernorm_forward(x, x, v->ln_pre_w, v->ln_pre_b, R, W, 1e-6f);
    if (st && st->ln_pre) memcpy(st->ln_pre, x, R * W * sizeof(float));
    /* pre-LN blocks */
    const float scale = (float)(1.0 / sqrt((double)hd));
    for (int l = 0; l < v->L; l++) {
        const qwen_block *b = &v->blocks[l];
        layernorm_forward(h, x, b->ln1_w, b->ln1_b, R, W, 1e-6f);
        vision_linear(wide, h, R, &b->in_w, b->in_b, scratch, false); /* [R, 3W], per head [q | k | v] */
        for (size_t r = 0; r < R; r++)
            for (int hh = 0; hh < v->H; hh++) {
                const float *src = wide + r * 3 * W + (size_t)hh * 3 * hd;
                memcpy(q + r * W + (size_t)hh * hd, src, (size_t)hd * sizeof(float));
                memcpy(k + r * W + (size_t)hh * hd, src + hd, (size_t)hd * sizeof(float));
                memcpy(vv + r * W + (size_t)hh * hd, src + 2 * hd, (size_t)hd * sizeof(float));
            }
        vision_attention(a, W, q, W, k, vv, W, NULL, n, T, T, v->H, hd, scale, scores);
        vision_linear(x, a, R, &b->out_w, b->out_b, scratch, true);   /* x += out_proj(attn) */
        layernorm_forward(h, x, b->ln2_w, b->ln2_b, R, W, 1e-6f);
        vision_linear(wide, h, R, &b->fc_w, b->fc_b, scratch, false); /* [R, F] */
        gelu_forward(wide, wide, R * (size_t)v->F);
        vision_linear(x, wide, R, &b->proj_w, b->proj_b, scratch, true);
        if (st && st->blocks) memcpy(st->blocks + (size_t)l * R * W, x, R * W * sizeof(float));
    }
    /* Resampler: kv = ln_kv(kv_proj x) [R, E] */
    float *kv = h;
    if (W != E) {
        free(h);
        if (!(kv = h = malloc(R * E * sizeof(float)))) {
            s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
            goto done;
        }
        vision_linear(kv, x, R, &v->kv_w, NULL, scratch, false);
    } else {
        memcpy(kv, x, R * E * sizeof(float));
    }
    layernorm_forward(kv, kv, v->ln_kv_w, v->ln_kv_b, R, E, 1e-6f);
    get_abs_pos(v->pool_pos, sq, E, v->G, pos); /* [T, E], added to the keys only */
    if (st && st->kv_pos_interp) memcpy(st->kv_pos_interp, pos, (size_t)T * E * sizeof(float));
    /* queries: ln_q(query) + pos_embed, the same for every image → q [RQ, E] after in_proj's q rows */
    layernorm_forward(qq, v->query, v->ln_q_w, v->ln_q_b, (size_t)Q, E, 1e-6f);
    for (size_t i = 0; i < (size_t)Q * E; i++) qq[i] += v->pool_pos[i];
    const tensor wq = tensor_view(v->pool_in_w.type, v->pool_in_w.data, 2, (int64_t[]){E, E});
    const size_t erow = (size_t)E * dtype_block_bytes(v->pool_in_w.type);
    const tensor wk = tensor_view(v->pool_in_w.type, (char *)v->pool_in_w.data + (size_t)E * erow, 2, (int64_t[]){E, E});
    const tensor wv = tensor_view(v->pool_in_w.type, (char *)v->pool_in_w.data + 2 * (size_t)E * erow, 2,
                                  (int64_t[]){E, E});
    vision_linear(q, qq, (size_t)Q, &wq, v->pool_in_b, scratch, false);
    for (int i = 1; i < n; i++) memcpy(q + (size_t)i * Q * E, q, (size_t)Q * E * sizeof(float));
    for (size_t r = 0; r < R; r++)
        for (int d = 0; d < E; d++) wide[r * E + d] = kv[r * E + d] + pos[(r % T) * E + d];
    vision_linear(k, wide, R, &wk, v->pool_in_b + E, scratch, false);
    vision_linear(vv, kv, R, &wv, v->pool_in_b + 2 * E, scratch, false);
    vision_attention(a, E, q, E, k, vv, E, NULL, n, Q, T, v->EH, ehd, (float)(1.0 / sqrt((double)ehd)), scores);
    vision_linear(wide, a, RQ, &v->pool_out_w, v->pool_out_b, scratch, false); /* [RQ, E] */
    if (st && st->resampler) memcpy(st->resampler, wide, RQ * E * sizeof(float));
    layernorm_forward(wide, wide, v->ln_post_w, v->ln_post_b, RQ, E, 1e-6f);
    if (st && st->ln_post) memcpy(st->ln_post, wide, RQ * E * sizeof(float));
    matmul_xw(out, wide, RQ, &v->proj, scratch);
done:
    free(x); free(h); free(wide); free(q); free(k); free(vv); free(a); free(patches); free(pos); free(scores);
    free(scratch); free(qq);
    return s;
}

/* visual.image_transform: bicubic resize (Pillow) to S × S, ToTensor, Normalize. rgb [H, W, 3] → resized
 * [S, S, 3] (may be NULL) and pixels [3, S, S]. */
static vlmc_status qwen_preprocess(const qwen_visual *v, const uint8_t *rgb, int height, int width, uint8_t *resized,
                                   float *pixels, vlmc_error *err) {
    const int S = v->S;
    uint8_t *r = resized ? resized : malloc((size_t)S * S * 3);
    if (!r) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    vlmc_status s = resize_u8(rgb, width, height, 3, r, S, S, RESAMPLE_BICUBIC, err);
    if (!s)
        for (int c = 0; c < 3; c++)
            for (size_t i = 0; i < (size_t)S * S; i++)
                pixels[(size_t)c * S * S + i] = ((float)r[i * 3 + c] / 255.0f - qwen_mean[c]) / qwen_std[c];
    if (!resized) free(r);
    return s;
}

/* ---- family interface --------------------------------------------------------------------------------------- */

static vlmc_status qwen_features_len(const vlm_model *m, const vlm_images *im, size_t *n, vlmc_error *err) {
    const qwen_visual *v = m->priv;
    if (!v) return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: this Qwen model has no visual tower", m->dir);
    *n = (size_t)im->n_tiles * v->Q;
    return VLMC_OK;
}

static vlmc_status qwen_encode(const vlm_model *m, const vlm_images *im, vlm_vision_out *out, vlmc_error *err) {
    const qwen_visual *v = m->priv;
    if (!v) return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: this Qwen model has no visual tower", m->dir);
    if (im->height != v->S || im->width != v->S)
        return vlmc_fail(err, VLMC_ERR_ARG, "Qwen-VL: images must be %d x %d (image_transform), got %d x %d", v->S, v->S,
                         im->height, im->width);
    vlmc_status s = qwen_visual_forward(v, im->pixels, im->n_tiles, out->features, NULL, err);
    if (s) return s;
    out->proj_tokens = v->Q;
    out->n_features = (size_t)im->n_tiles * v->Q;
    if (out->projector_output) memcpy(out->projector_output, out->features, out->n_features * v->E * sizeof(float));
    return VLMC_OK;
}

/* A chat's image as the span QWenTokenizer makes of <img>PATH</img>: <img>, n_queries positions, </img>. The
 * path bytes are overwritten by the visual rows anyway, so all n_queries positions are <imgpad>, the image token
 * vlm_embed replaces. */
static vlmc_status qwen_image_prompt(const vlm_model *m, const vlm_image_info *info, strbuf *out, vlmc_error *err) {
    (void)info;
    const qwen_visual *v = m->priv;
    if (!v) return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: this Qwen model has no visual tower", m->dir);
    strbuf_puts(out, "<img>");
    for (int i = 0; i < v->Q; i++) strbuf_puts(out, "<imgpad>");
    strbuf_puts(out, "</img>");
    return VLMC_OK;
}

/* The family's preprocess hook: one tile (its steps are dumped by qwen_dump, not here). */
static vlmc_status qwen_image_preprocess(const vlm_model *m, const uint8_t *rgb, int height, int width,
                                         vlm_prepared *out, vlm_dump_out *steps, vlmc_error *err) {
    (void)steps;
    const qwen_visual *v = m->priv;
    if (!v) return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: this Qwen model has no visual tower", m->dir);
    float *p = malloc((size_t)3 * v->S * v->S * sizeof(float));
    if (!p) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    vlmc_status s = qwen_preprocess(v, rgb, height, width, NULL, p, err);
    if (s) {
        free(p);
        return s;
    }
    *out = (vlm_prepared){.pixels = p, .n_tiles = 1, .height = v->S, .width = v->S};
    return VLMC_OK;
}

/* The <img> … </img> spans of ids [T]: starts[i] = a (the <img>), count in *n (at most cap). Each span must hold
 * exactly Q ids between the two tags. */
static vlmc_status find_spans(const qwen_visual *v, const int32_t *ids, int T, int *starts, int cap, int *n,
                              vlmc_error *err) {
    *n = 0;
    for (int t = 0; t < T; t++) {
        if (ids[t] == v->image_start_id + 1)
            return vlmc_fail(err, VLMC_ERR_ARG, "Qwen-VL: </img> at position %d without <img>", t);
        if (ids[t] != v->image_start_id) continue;
        int b = t + 1;
        while (b < T && ids[b] != v->image_start_id + 1 && ids[b] != v->image_start_id) b++;
        if (b == T || ids[b] != v->image_start_id + 1)
            return vlmc_fail(err, VLMC_ERR_ARG, "Qwen-VL: <img> at position %d has no </img>", t);
        if (b - t - 1 != v->Q)
            return vlmc_fail(err, VLMC_ERR_ARG, "Qwen-VL: the <img>…</img> span at %d holds %d ids, expected n_queries = %d",
                             t, b - t - 1, v->Q);
        if (*n == cap) return vlmc_fail(err, VLMC_ERR_LIMIT, "Qwen-VL: more than %d images", cap);
        starts[(*n)++] = t;
        t = b;
    }
    return VLMC_OK;
}

/* The image of a span when no pixels are given: its path bytes (up to the first <imgpad>), opened relative to
 * `dir` unless absolute, as QWenModel.forward opens them relative to its working directory. */
static vlmc_status span_image(const qwen_visual *v, const int32_t *ids, int a, const char *dir, rgb_image *im,
                              vlmc_error *err) {
    char path[1024];
    int n = 0;
    for (int t = a + 1; t <= a + v->Q && ids[t] != v->image_start_id + 2; t++) {
        if (ids[t] < 1 || ids[t] > 255 || n + 1 >= (int)sizeof path)
            return vlmc_fail(err, VLMC_ERR_ARG, "Qwen-VL: the <img> span at %d does not hold a path (id %d)", a, ids[t]);
        path[n++] = (char)ids[t];
    }
    path[n] = 0;
    if (!n) return vlmc_fail(err, VLMC_ERR_ARG, "Qwen-VL: the <img> span at %d holds no image path and no image was given", a);
    char *full = path[0] == '/' ? strdup(path) : path_join(dir, path);
    if (!full) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    vlmc_error e = {0};
    vlmc_status s = image_decode_file(full, NULL, im, &e);
    if (s) vlmc_fail(err, s, "Qwen-VL: the image of the <img> span at %d: %s", a, e.message);
    free(full);
    return s;
}

enum { QWEN_MAX_IMAGES = 64 };

/* vlmc dump on Qwen-VL's fixture inputs: input_ids [1, T] with <img>…</img> spans, attention_mask (ones), and the
 * images as image_raw [H, W, 3] uint8 (one image, preprocessed here) and / or pixel_values [N, 3, S, S] (with both,
 * the model runs on pixel_values), or neither (the span's path is opened, relative to the inputs folder). */
static vlmc_status qwen_dump(const vlm_model *m, const array_set *in, const char *dir, int generate_n, vlm_dump_out *out,
                             vlmc_error *err) {
    const qwen_visual *v = m->priv;
    vlm_dump_inputs di;
    vlmc_status s = vlm_dump_read_inputs(in, dir, "Qwen", &di, err);
    if (s) return s;
    const named_array *px = di.pixels, *raw = di.image_raw;
    const int T = di.T;
    const int32_t *id = di.ids->data;
    if (!v && (px || raw)) return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: this Qwen model has no visual tower", dir);
    int starts[QWEN_MAX_IMAGES], n_img = 0;
    if (v && (s = find_spans(v, id, T, starts, QWEN_MAX_IMAGES, &n_img, err))) return s;
    const int64_t D = m->lm.dim;
    float *pixels = NULL, *feat = NULL, *embeds = NULL;
    if (n_img) {
        const int S = v->S, Wd = v->W, E = v->E, Q = v->Q, G2 = v->G * v->G;
        const size_t img = (size_t)3 * S * S;
        if (!(pixels = malloc((size_t)n_img * img * sizeof(float)))) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        if (raw) {
            if (n_img != 1) {
                s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: image_raw [H, W, 3] is one image, the ids have %d <img> spans",
                              dir, n_img);
                goto done;
            }
            uint8_t *resized = malloc((size_t)S * S * 3);
            if (!resized) { s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory"); goto done; }
            if ((s = qwen_preprocess(v, raw->data, (int)raw->shape[0], (int)raw->shape[1], resized, pixels, err))) {
                free(resized);
                goto done;
            }
            if ((s = vlm_dump_add(out, "resized_image", ARRAY_U8, 3, (int64_t[]){S, S, 3}, resized,
                                  "PIL bicubic resize to image_size, HxWx3", err)))
                goto done;
            float *pv = malloc(img * sizeof(float));
            if (pv) memcpy(pv, pixels, img * sizeof(float));
            if ((s = vlm_dump_add(out, "pixel_values", ARRAY_F32, 4, (int64_t[]){1, 3, S, S}, pv,
                                  "image_transform output: ToTensor, Normalize(CLIP mean/std)", err)))
                goto done;
        }
        if (px) { /* given with image_raw too: image_raw's preprocessing is dumped, the model runs on pixel_values */
            if (px->shape[0] != n_img || px->shape[1] != 3 || px->shape[2] != S || px->shape[3] != S) {
                s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: pixel_values must be [%d, 3, %d, %d] (one per <img> span)", dir,
                              n_img, S, S);
                goto done;
            }
            memcpy(pixels, px->data, (size_t)n_img * img * sizeof(float));
        } else if (!raw) {
            for (int i = 0; i < n_img && !s; i++) {
                rgb_image im = {0};
                if (!(s = span_image(v, id, starts[i], dir, &im, err)))
                    s = qwen_preprocess(v, im.data, im.height, im.width, NULL, pixels + (size_t)i * img, err);
                rgb_image_free(&im);
            }
            if (s) goto done;
            float *pv = malloc((size_t)n_img * img * sizeof(float));
            if (pv) memcpy(pv, pixels, (size_t)n_img * img * sizeof(float));
            if ((s = vlm_dump_add(out, "pixel_values", ARRAY_F32, 4, (int64_t[]){n_img, 3, S, S}, pv,
                                  "image_transform output of the images named in the spans", err)))
                goto done;
        }
        qwen_visual_steps vs = {
            .patch_embeds = malloc((size_t)n_img * G2 * Wd * sizeof(float)),
            .pos_interp = malloc((size_t)G2 * Wd * sizeof(float)),
            .ln_pre = malloc((size_t)n_img * G2 * Wd * sizeof(float)),
            .blocks = malloc(((size_t)v->L * n_img * G2 * Wd + 1) * sizeof(float)),
            .kv_pos_interp = malloc((size_t)G2 * E * sizeof(float)),
            .resampler = malloc((size_t)n_img * Q * E * sizeof(float)),
            .ln_post = malloc((size_t)n_img * Q * E * sizeof(float)),
        };
        feat = malloc((size_t)n_img * Q * E * sizeof(float));
        float *pool_pos = malloc((size_t)Q * E * sizeof(float));
        if (pool_pos) memcpy(pool_pos, v->pool_pos, (size_t)Q * E * sizeof(float));
        s = vs.patch_embeds && vs.pos_interp && vs.ln_pre && vs.blocks && vs.kv_pos_interp && vs.resampler &&
                    vs.ln_post && feat
                ? qwen_visual_forward(v, pixels, n_img, feat, &vs, err)
                : vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for the vision outputs");
        float *vout = feat ? malloc((size_t)n_img * Q * E * sizeof(float)) : NULL;
        if (vout) memcpy(vout, feat, (size_t)n_img * Q * E * sizeof(float));
        /* vlm_dump_add takes every buffer over, also after a failure */
        struct { const char *name; int nd; int64_t sh[4]; float *data; const char *note; } arr[] = {
            {"vision_patch_embeds", 3, {n_img, G2, Wd}, vs.patch_embeds, "conv1 output [N, grid^2, width]"},
            {"vision_pos_embed_interp", 2, {G2, Wd}, vs.pos_interp, "get_abs_pos(positional_embedding, grid^2)"},
            {"vision_ln_pre", 3, {n_img, G2, Wd}, vs.ln_pre, "ln_pre(patch_embeds + pos)"},
            {"vision_block_outputs", 4, {v->L, n_img, G2, Wd}, vs.blocks, "every VisualAttentionBlock's output"},
            {"resampler_pos_embed", 2, {Q, E}, pool_pos, "attn_pool.pos_embed (2-D sincos) as stored"},
            {"resampler_kv_pos_embed_interp", 2, {G2, E}, vs.kv_pos_interp, "get_abs_pos(attn_pool.pos_embed, grid^2)"},
            {"resampler_output", 3, {n_img, Q, E}, vs.resampler, "attn_pool (Resampler) output"},
            {"vision_ln_post", 3, {n_img, Q, E}, vs.ln_post, "ln_post(resampler_output)"},
            {"vision_output", 3, {n_img, Q, E}, vout, "ln_post(...) @ proj: the rows that replace ids[a+1:b]"},
        };
        for (size_t i = 0; i < sizeof arr / sizeof arr[0]; i++) {
            if (s || (v->L == 0 && !strcmp(arr[i].name, "vision_block_outputs"))) {
                free(arr[i].data);
                continue;
            }
            s = vlm_dump_add(out, arr[i].name, ARRAY_F32, arr[i].nd, arr[i].sh, arr[i].data, arr[i].note, err);
        }
        if (s) goto done;
    } else if (px || raw) {
        s = vlmc_fail(err, VLMC_ERR_ARG, "%s: an image was given but input_ids hold no <img>…</img> span (id %d)", dir,
                      v->image_start_id);
        goto done;
    }
    /* wte(ids), the visual rows written over ids[a+1 .. b-1] of each span */
    if (!(embeds = malloc((size_t)T * D * sizeof(float)))) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((s = llama_embed_tokens(&m->lm, id, T, embeds, err))) goto done;
    for (int i = 0; i < n_img; i++)
        memcpy(embeds + (size_t)(starts[i] + 1) * D, feat + (size_t)i * v->Q * D, (size_t)v->Q * D * sizeof(float));
    float *merged = malloc((size_t)T * D * sizeof(float));
    if (merged) memcpy(merged, embeds, (size_t)T * D * sizeof(float));
    if (!(s = vlm_dump_add(out, "merged_embeddings", ARRAY_F32, 3, (int64_t[]){1, T, D}, merged,
                           "wte(ids) with the visual rows written into each <img> span", err)))
        s = vlm_dump_decoder(m, embeds, T, generate_n, out, err);
done:
    free(pixels);
    free(feat);
    free(embeds);
    return s;
}

static const char *const qwen_types[] = {NULL}; /* found by qwen_detect */

const vlm_family vlm_family_qwen_vl = {
    .model_types = qwen_types,
    .detect = qwen_detect,
    .hf_class = "QWenLMHeadModel (Qwen-VL)",
    .load = qwen_load,
    .features_len = qwen_features_len,
    .encode = qwen_encode,
    .image_prompt = qwen_image_prompt,
    .preprocess = qwen_image_preprocess,
    .free = qwen_free,
    .dump = qwen_dump,
};
