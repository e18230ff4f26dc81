/* Vision transformers: CLIP, SigLIP and Idefics3 image encoders (see vit.h).
 *
 * Matches transformers 4.47:
 *   modeling_clip.py      CLIPVisionEmbeddings, CLIPVisionTransformer (pre_layrnorm, post_layernorm on the pooled
 *                         class token), CLIPEncoderLayer, CLIPAttention / CLIPSdpaAttention, CLIPMLP
 *   modeling_siglip.py    SiglipVisionEmbeddings, SiglipVisionTransformer (post_layernorm on all tokens),
 *                         SiglipMultiheadAttentionPoolingHead
 *   modeling_idefics3.py  Idefics3VisionEmbeddings (bucketized position ids), Idefics3VisionTransformer
 *
 * One encoder layer (all three families), x: [B·T, D]:
 *   h = layer_norm1(x)
 *   q, k, v = h Wq^T + bq, h Wk^T + bk, h Wv^T + bv        [B·T, D] each, heads are D/H-wide column blocks
 *   a = softmax(q k^T · head_dim^-0.5 + mask) v            per tile and head, non-causal
 *   x = x + a Wo^T + bo
 *   h = layer_norm2(x)
 *   x = x + act(h W1^T + b1) W2^T + b2                     act = hidden_act
 */
#include "models/vit.h"

#include "core/quant.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "kernels/fastexp.h"
#include "kernels/layernorm.h"

/* ---- loading ---------------------------------------------------------------------------------------- */

typedef struct loader {
    const safetensors *st;
    const char *prefix;
    vit_model *m;
    vlmc_error *err;
} loader;

static vlmc_status full_name(loader *ld, const char *name, char *buf, size_t cap) {
    int k = snprintf(buf, cap, "%s%s", ld->prefix, name);
    if (k < 0 || (size_t)k >= cap)
        return vlmc_fail(ld->err, VLMC_ERR_ARG, "%s: tensor name prefix '%s' is too long", ld->m->file, ld->prefix);
    return VLMC_OK;
}

static vlmc_status check_float_dtype(loader *ld, const char *name, const tensor *t) {
    if (t->type == DT_F32 || t->type == DT_F16 || t->type == DT_BF16 || dtype_is_quantized(t->type)) return VLMC_OK;
    return vlmc_fail(ld->err, VLMC_ERR_UNSUPPORTED,
                     "%s: tensor '%s' has dtype %s; vision weights must be F32, F16, BF16 or Q8_0/Q4_0/Q4_K/Q6_K",
                     ld->m->file, name, dtype_name(t->type));
}

bool vision_weight_is_direct(const tensor *t) { return t->type == DT_F32 && ((uintptr_t)t->data % sizeof(float)) == 0; }

/* A weight matrix [rows, cols] (or a tensor of ndim dims seen as one, for the patch conv) as a view. */
static vlmc_status get_mat(loader *ld, const char *name, int ndim, const int64_t *shape, tensor *out) {
    char full[512];
    vlmc_status s;
    if ((s = full_name(ld, name, full, sizeof full))) return s;
    if ((s = safetensors_get(ld->st, full, ndim, shape, out, ld->err))) return s;
    if ((s = check_float_dtype(ld, full, out))) return s;
    if (ndim > 2) { /* flatten to [shape[0], prod(rest)] */
        int64_t cols = 1;
        for (int i = 1; i < ndim; i++) cols *= out->shape[i];
        int64_t sh[2] = {out->shape[0], cols};
        *out = tensor_view(out->type, out->data, 2, sh);
    }
    size_t numel = (size_t)tensor_numel(out);
    if (!vision_weight_is_direct(out) && numel > ld->m->scratch_floats) ld->m->scratch_floats = numel;
    return VLMC_OK;
}

static vlmc_status mat2(loader *ld, const char *name, int64_t rows, int64_t cols, tensor *out) {
    int64_t sh[2] = {rows, cols};
    return get_mat(ld, name, 2, sh, out);
}

static vlmc_status keep_owned(loader *ld, float *p) {
    vit_model *m = ld->m;
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? 2 * m->cap_owned : 64;
        float **o = realloc(m->owned, (size_t)cap * sizeof *o);
        if (!o) { free(p); return vlmc_fail(ld->err, VLMC_ERR_NOMEM, "out of memory"); }
        m->owned = o;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = p;
    return VLMC_OK;
}

/* A small tensor as f32: a view when the file holds aligned F32, else an owned copy. */
static vlmc_status get_f32(loader *ld, const char *name, int ndim, const int64_t *shape, const float **out) {
    char full[512];
    tensor t;
    vlmc_status s;
    if ((s = full_name(ld, name, full, sizeof full))) return s;
    if ((s = safetensors_get(ld->st, full, ndim, shape, &t, ld->err))) return s;
    if ((s = check_float_dtype(ld, full, &t))) return s;
    if (vision_weight_is_direct(&t)) {
        *out = t.data;
        return VLMC_OK;
    }
    size_t n = (size_t)tensor_numel(&t);
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) return vlmc_fail(ld->err, VLMC_ERR_NOMEM, "out of memory");
    if ((s = convert_to_f32(p, t.data, t.type, n, ld->err)) || (s = keep_owned(ld, p))) return s;
    *out = p;
    return VLMC_OK;
}

static vlmc_status vec(loader *ld, const char *name, int64_t n, const float **out) {
    return get_f32(ld, name, 1, &n, out);
}

static bool has_tensor(loader *ld, const char *name) {
    char full[512];
    if (snprintf(full, sizeof full, "%s%s", ld->prefix, name) >= (int)sizeof full) return false;
    return safetensors_find(ld->st, full) != NULL;
}

/* Rows [r0, r0 + rows) of a 2-D weight (elements of a 1-D one) as its own view. */
tensor vit_row_slice(const tensor *t, int64_t r0, int64_t rows) {
    /* a row of a quantized matrix is whole blocks; 1-D tensors (biases) are never quantized */
    int64_t cols = t->ndim == 2 ? t->shape[1] : 1, sh[2] = {rows, cols};
    size_t row_bytes = (size_t)(cols / dtype_block_size(t->type)) * dtype_block_bytes(t->type);
    return tensor_view(t->type, (char *)t->data + (size_t)r0 * row_bytes, t->ndim == 2 ? 2 : 1, sh);
}

void vit_layer_split_qkv(vit_layer *ly, const tensor *qkv, const float *qkv_b, int64_t D) {
    ly->q_w = vit_row_slice(qkv, 0, D);
    ly->k_w = vit_row_slice(qkv, D, D);
    ly->v_w = vit_row_slice(qkv, 2 * D, D);
    ly->q_b = qkv_b;
    ly->k_b = qkv_b + D;
    ly->v_b = qkv_b + 2 * D;
}

vlmc_status vit_load_f32(vit_model *m, const safetensors *st, const char *name, int ndim, const int64_t *shape,
                         const float **out, vlmc_error *err) {
    loader ld = {st, "", m, err};
    return get_f32(&ld, name, ndim, shape, out);
}

vlmc_status vit_init(const safetensors *st, const hf_vision_config *cfg, vit_kind kind, vit_model *m, vlmc_error *err) {
    memset(m, 0, sizeof *m);
    const char *where = safetensors_count(st) ? safetensors_file_path(st, safetensors_at(st, 0)->file) : "safetensors";
    snprintf(m->file, sizeof m->file, "%s", where);
    m->kind = kind;
    return vit_init_dims(m, cfg, err);
}

vlmc_status vit_init_dims(vit_model *m, const hf_vision_config *cfg, vlmc_error *err) {
    if (cfg->hidden_size <= 0 || cfg->num_attention_heads <= 0 || cfg->hidden_size % cfg->num_attention_heads ||
        cfg->intermediate_size <= 0 || cfg->num_hidden_layers <= 0 || cfg->num_channels <= 0 || cfg->patch_size <= 0 ||
        (m->kind != VIT_QWEN2_VL && cfg->image_size < cfg->patch_size))
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: inconsistent vision config (hidden %d, heads %d, image %d, patch %d)",
                         m->file, cfg->hidden_size, cfg->num_attention_heads, cfg->image_size, cfg->patch_size);
    vlmc_status s = act_from_name(cfg->hidden_act, "vision_config.hidden_act", &m->act, err);
    if (s) return s;
    m->D = cfg->hidden_size;
    m->H = cfg->num_attention_heads;
    m->head_dim = m->D / m->H;
    m->F = cfg->intermediate_size;
    m->L = cfg->num_hidden_layers;
    m->C = cfg->num_channels;
    m->P = cfg->patch_size;
    m->image_size = cfg->image_size;
    m->side = cfg->image_size / cfg->patch_size;
    m->n_pos = m->side * m->side + (m->kind == VIT_CLIP ? 1 : 0);
    m->eps = (float)cfg->layer_norm_eps;
    m->batch_tokens = 4096;
    return VLMC_OK;
}

vlmc_status vit_load(const safetensors *st, const char *prefix, const hf_vision_config *cfg, vit_model *m,
                     vlmc_error *err) {
    vit_kind kind;
    if (!strcmp(cfg->model_type, "clip_vision_model")) kind = VIT_CLIP;
    else if (!strcmp(cfg->model_type, "siglip_vision_model")) kind = VIT_SIGLIP;
    else if (!strcmp(cfg->model_type, "idefics3_vision")) kind = VIT_IDEFICS3;
    else return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: vision model_type \"%s\" is not a supported ViT",
                          safetensors_count(st) ? safetensors_file_path(st, safetensors_at(st, 0)->file) : "safetensors",
                          cfg->model_type);
    vlmc_status s = vit_init(st, cfg, kind, m, err);
    if (s) return s;

    loader ld = {st, prefix ? prefix : "", m, err};
    const int64_t D = m->D, F = m->F;
    int64_t pshape[4] = {D, m->C, m->P, m->P}, posshape[2] = {m->n_pos, D};
    if ((s = get_mat(&ld, "embeddings.patch_embedding.weight", 4, pshape, &m->patch_w)) ||
        (s = get_f32(&ld, "embeddings.position_embedding.weight", 2, posshape, &m->pos_emb)))
        goto fail;
    if (m->kind == VIT_CLIP) {
        if ((s = vec(&ld, "embeddings.class_embedding", D, &m->class_emb)) ||
            (s = vec(&ld, "pre_layrnorm.weight", D, &m->pre_ln_w)) || (s = vec(&ld, "pre_layrnorm.bias", D, &m->pre_ln_b)))
            goto fail;
    } else if ((s = vec(&ld, "embeddings.patch_embedding.bias", D, &m->patch_b))) goto fail;
    if ((s = vec(&ld, "post_layernorm.weight", D, &m->post_ln_w)) || (s = vec(&ld, "post_layernorm.bias", D, &m->post_ln_b)))
        goto fail;

    m->layers = calloc((size_t)m->L, sizeof *m->layers);
    if (!m->layers) { s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory"); goto fail; }
    for (int l = 0; l < m->L; l++) {
        vit_layer *ly = &m->layers[l];
        char n[16][96];
        static const char *const sub[16] = {
            "layer_norm1.weight", "layer_norm1.bias", "layer_norm2.weight", "layer_norm2.bias",
            "self_attn.q_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.weight", "self_attn.k_proj.bias",
            "self_attn.v_proj.weight", "self_attn.v_proj.bias", "self_attn.out_proj.weight", "self_attn.out_proj.bias",
            "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"};
        for (int i = 0; i < 16; i++) snprintf(n[i], sizeof n[i], "encoder.layers.%d.%s", l, sub[i]);
        if ((s = vec(&ld, n[0], D, &ly->ln1_w)) || (s = vec(&ld, n[1], D, &ly->ln1_b)) ||
            (s = vec(&ld, n[2], D, &ly->ln2_w)) || (s = vec(&ld, n[3], D, &ly->ln2_b)) ||
            (s = mat2(&ld, n[4], D, D, &ly->q_w)) || (s = vec(&ld, n[5], D, &ly->q_b)) ||
            (s = mat2(&ld, n[6], D, D, &ly->k_w)) || (s = vec(&ld, n[7], D, &ly->k_b)) ||
            (s = mat2(&ld, n[8], D, D, &ly->v_w)) || (s = vec(&ld, n[9], D, &ly->v_b)) ||
            (s = mat2(&ld, n[10], D, D, &ly->o_w)) || (s = vec(&ld, n[11], D, &ly->o_b)) ||
            (s = mat2(&ld, n[12], F, D, &ly->fc1_w)) || (s = vec(&ld, n[13], F, &ly->fc1_b)) ||
            (s = mat2(&ld, n[14], D, F, &ly->fc2_w)) || (s = vec(&ld, n[15], D, &ly->fc2_b)))
            goto fail;
    }

    /* SiglipVisionTransformer builds the head when vision_use_head (default True); a file without head.* tensors
     * (e.g. a tower saved inside a VLM) has none, and then there is no pooler output. */
    if (m->kind == VIT_SIGLIP && has_tensor(&ld, "head.probe")) {
        vit_head *hd = &m->head;
        int64_t probe_shape[3] = {1, 1, D};
        tensor in_w;
        if ((s = get_f32(&ld, "head.probe", 3, probe_shape, &hd->probe)) ||
            (s = mat2(&ld, "head.attention.in_proj_weight", 3 * D, D, &in_w)) ||
            (s = vec(&ld, "head.attention.in_proj_bias", 3 * D, &hd->in_b)) ||
            (s = mat2(&ld, "head.attention.out_proj.weight", D, D, &hd->o_w)) ||
            (s = vec(&ld, "head.attention.out_proj.bias", D, &hd->o_b)) ||
            (s = vec(&ld, "head.layernorm.weight", D, &hd->ln_w)) || (s = vec(&ld, "head.layernorm.bias", D, &hd->ln_b)) ||
            (s = mat2(&ld, "head.mlp.fc1.weight", F, D, &hd->fc1_w)) || (s = vec(&ld, "head.mlp.fc1.bias", F, &hd->fc1_b)) ||
            (s = mat2(&ld, "head.mlp.fc2.weight", D, F, &hd->fc2_w)) || (s = vec(&ld, "head.mlp.fc2.bias", D, &hd->fc2_b)))
            goto fail;
        hd->q_w = vit_row_slice(&in_w, 0, D);
        hd->k_w = vit_row_slice(&in_w, D, D);
        hd->v_w = vit_row_slice(&in_w, 2 * D, D);
        m->has_head = true;
    }
    return VLMC_OK;
fail:
    vit_free(m);
    return s;
}

vlmc_status vit_load_matrix(vit_model *m, const safetensors *st, const char *name, int ndim, const int64_t *shape,
                            tensor *out, vlmc_error *err) {
    loader ld = {st, "", m, err};
    return get_mat(&ld, name, ndim, shape, out);
}

vlmc_status vit_load_vector(vit_model *m, const safetensors *st, const char *name, int64_t n, const float **out,
                            vlmc_error *err) {
    loader ld = {st, "", m, err};
    return vec(&ld, name, n, out);
}

/* timm's VisionTransformer as DeepSeek-VL builds it (siglip_vit.create_siglip_vit: class_token False, no pre-norm,
 * LayerNorm eps 1e-6, exact GELU, fused qkv with bias; the attn_pool head is built but unused, ignore_head=True):
 *   patch_embed.proj.{weight,bias} [D, C, P, P], pos_embed [1, side², D], blocks.<i>.{norm1, attn.qkv, attn.proj,
 *   norm2, mlp.fc1, mlp.fc2}, norm.
 * The qkv weight [3D, D] is seen as three row slices; the forward is then SigLIP's (vit_encode, kind VIT_SIGLIP:
 * norm(blocks(patch_embed(x) + pos_embed)) = last_hidden_state). D, P, F and the grid come from the tensors;
 * heads and layers are not in the checkpoint's shapes and are given. */
vlmc_status vit_load_timm(const safetensors *st, const char *prefix, int image_size, int heads, int layers,
                          vit_model *m, vlmc_error *err) {
    memset(m, 0, sizeof *m);
    const char *where = safetensors_count(st) ? safetensors_file_path(st, safetensors_at(st, 0)->file) : "safetensors";
    snprintf(m->file, sizeof m->file, "%s", where);
    loader ld = {st, prefix ? prefix : "", m, err};
    char full[512];
    vlmc_status s;
    if ((s = full_name(&ld, "patch_embed.proj.weight", full, sizeof full))) return s;
    const st_entry *pe = safetensors_find(st, full);
    if (!pe || pe->t.ndim != 4 || pe->t.shape[2] != pe->t.shape[3] || pe->t.shape[2] < 1)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: no 4-D square patch embedding '%s'", m->file, full);
    if ((s = full_name(&ld, "blocks.0.mlp.fc1.weight", full, sizeof full))) return s;
    const st_entry *fc1 = safetensors_find(st, full);
    if (!fc1 || fc1->t.ndim != 2) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: no tensor '%s'", m->file, full);
    m->kind = VIT_SIGLIP;
    m->act = ACT_GELU;
    m->D = (int)pe->t.shape[0];
    m->C = (int)pe->t.shape[1];
    m->P = (int)pe->t.shape[2];
    m->F = (int)fc1->t.shape[0];
    m->H = heads;
    m->L = layers;
    m->image_size = image_size;
    if (m->D <= 0 || heads <= 0 || m->D % heads || layers <= 0 || image_size < m->P || m->F <= 0)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: inconsistent timm ViT (width %d, heads %d, layers %d, image %d, patch %d)",
                         m->file, m->D, heads, layers, image_size, m->P);
    m->head_dim = m->D / heads;
    m->side = image_size / m->P;
    m->n_pos = m->side * m->side;
    m->eps = 1e-6f;
    m->batch_tokens = 4096;
    const int64_t D = m->D, F = m->F;
    int64_t pshape[4] = {D, m->C, m->P, m->P}, posshape[3] = {1, m->n_pos, D};
    if ((s = get_mat(&ld, "patch_embed.proj.weight", 4, pshape, &m->patch_w)) ||
        (s = vec(&ld, "patch_embed.proj.bias", D, &m->patch_b)) ||
        (s = get_f32(&ld, "pos_embed", 3, posshape, &m->pos_emb)) || (s = vec(&ld, "norm.weight", D, &m->post_ln_w)) ||
        (s = vec(&ld, "norm.bias", D, &m->post_ln_b)))
        goto fail;
    m->layers = calloc((size_t)m->L, sizeof *m->layers);
    if (!m->layers) { s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory"); goto fail; }
    for (int l = 0; l < m->L; l++) {
        vit_layer *ly = &m->layers[l];
        char n[12][96];
        static const char *const sub[12] = {"norm1.weight",    "norm1.bias",     "norm2.weight",   "norm2.bias",
                                            "attn.qkv.weight", "attn.qkv.bias",  "attn.proj.weight", "attn.proj.bias",
                                            "mlp.fc1.weight",  "mlp.fc1.bias",   "mlp.fc2.weight", "mlp.fc2.bias"};
        for (int i = 0; i < 12; i++) snprintf(n[i], sizeof n[i], "blocks.%d.%s", l, sub[i]);
        tensor qkv;
        const float *qkv_b;
        if ((s = vec(&ld, n[0], D, &ly->ln1_w)) || (s = vec(&ld, n[1], D, &ly->ln1_b)) ||
            (s = vec(&ld, n[2], D, &ly->ln2_w)) || (s = vec(&ld, n[3], D, &ly->ln2_b)) ||
            (s = mat2(&ld, n[4], 3 * D, D, &qkv)) || (s = vec(&ld, n[5], 3 * D, &qkv_b)) ||
            (s = mat2(&ld, n[6], D, D, &ly->o_w)) || (s = vec(&ld, n[7], D, &ly->o_b)) ||
            (s = mat2(&ld, n[8], F, D, &ly->fc1_w)) || (s = vec(&ld, n[9], F, &ly->fc1_b)) ||
            (s = mat2(&ld, n[10], D, F, &ly->fc2_w)) || (s = vec(&ld, n[11], D, &ly->fc2_b)))
            goto fail;
        vit_layer_split_qkv(ly, &qkv, qkv_b, D);
    }
    return VLMC_OK;
fail:
    vit_free(m);
    return s;
}

void vit_free(vit_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    m->owned = NULL;
    m->layers = NULL;
    m->n_owned = m->cap_owned = 0;
}

int vit_tokens(const vit_model *m, int height, int width) {
    if (height <= 0 || width <= 0 || m->P <= 0) return 0;
    return (height / m->P) * (width / m->P) + (m->kind == VIT_CLIP ? 1 : 0);
}

/* ---- building blocks ---------------------------------------------------------------------------------- */

/* dst[0..n) = f32 values of a float tensor's elements (bf16 / f16 / f32 / block-quantized), threaded. */
static void to_f32(float *dst, const tensor *w, size_t n) {
    if (dtype_is_quantized(w->type)) { /* a 2-D weight: dequantized row by row */
        const int64_t rows = w->shape[0], cols = w->shape[1];
        const size_t row_bytes = (size_t)(cols / dtype_block_size(w->type)) * dtype_block_bytes(w->type);
        #pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++) dequantize_row(w->type, (const char *)w->data + (size_t)r * row_bytes, dst + r * cols, cols);
    } else if (w->type == DT_BF16) {
        const uint16_t *s = w->data;
        #pragma omp parallel for schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32(s[i]);
    } else if (w->type == DT_F16) {
        const uint16_t *s = w->data;
        #pragma omp parallel for schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32(s[i]);
    } else {
        memcpy(dst, w->data, n * sizeof(float)); /* unaligned f32 */
    }
}

/* The f32 data of a weight matrix: the view itself, or its conversion into scratch. */
static const float *weight_f32(const tensor *w, float *scratch) {
    if (vision_weight_is_direct(w)) return w->data;
    to_f32(scratch, w, (size_t)tensor_numel(w));
    return scratch;
}

/* y[i, :] = b (set) or y[i, :] += b, for M rows of N. */
static void put_bias(float *y, const float *b, size_t M, size_t N, bool add) {
    #pragma omp parallel for schedule(static) if (M * N > 65536)
    for (size_t i = 0; i < M; i++) {
        float *yi = y + i * N;
        if (add)
            for (size_t j = 0; j < N; j++) yi[j] += b[j];
        else
            memcpy(yi, b, N * sizeof(float));
    }
}

void vision_linear(float *y, const float *x, size_t M, const tensor *w, const float *b, float *scratch,
                   bool accumulate) {
    const int N = (int)w->shape[0], K = (int)w->shape[1];
    const float *W = weight_f32(w, scratch);
    /* The bias goes into y first and the GEMM accumulates onto it (beta = 1): one pass over y instead of
     * zeroing it and adding the bias afterwards. */
    if (b) put_bias(y, b, M, (size_t)N, accumulate);
    float beta = (b || accumulate) ? 1.0f : 0.0f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, N, K, 1.0f, x, K, W, K, beta, y, N);
}


/* In place: row = exp(row + mask - max) over n values; returns 1 / sum, the softmax normalizer
 * (torch.softmax: max-subtracted exponentials over their sum). */
static float softmax_unnormalized(float *row, const float *mask, int n) {
    float mx = -INFINITY;
    /* No `omp simd` on the max loops: clang 14 cannot vectorise a max reduction without -ffinite-math and
     * warns (an error under -Werror); the exp loop below is where the time goes. */
    if (mask) {
        for (int j = 0; j < n; j++) {
            row[j] += mask[j];
            mx = row[j] > mx ? row[j] : mx;
        }
    } else {
        for (int j = 0; j < n; j++) mx = row[j] > mx ? row[j] : mx;
    }
    float sum = 0.0f;
    #pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; j++) {
        row[j] = fast_expf(row[j] - mx);
        sum += row[j];
    }
    return 1.0f / sum;
}

void vision_unfold_patches(float *patches, const float *pixels, int n, int C, int height, int width, int P) {
    const int gh = height / P, gw = width / P, Np = gh * gw;
    const size_t CPP = (size_t)C * P * P;
    #pragma omp parallel for schedule(static)
    for (int bp = 0; bp < n * Np; bp++) {
        int b = bp / Np, p = bp % Np, py = p / gw, px = p % gw;
        float *dst = patches + (size_t)bp * CPP;
        for (int c = 0; c < C; c++)
            for (int ky = 0; ky < P; ky++)
                memcpy(dst + ((size_t)c * P + ky) * P,
                       pixels + ((((size_t)b * C + c) * height + (size_t)py * P + ky) * width + (size_t)px * P),
                       (size_t)P * sizeof(float));
    }
}

/* vision_attention (see vit.h). OpenMP over (tile, head) pairs; each pair runs single-threaded SGEMMs (OpenBLAS's
 * OpenMP build does not spawn threads inside a parallel region) on blocks of VISION_ATT_QB queries:
 *   S = scale · Q_blk K^T            [qb, Tk]
 *   S = exp(S + mask - rowmax)       (unnormalized softmax, row sums kept)
 *   O_blk = (S V) / rowsum           [qb, hd]  (normalizing the hd outputs instead of the Tk probabilities) */
void vision_attention(float *out, int ldo, const float *q, int ldq, const float *k, const float *v, int ldkv,
                      const float *keymask, int B, int Tq, int Tk, int H, int hd, float scale, float *scores) {
    #pragma omp parallel for schedule(dynamic, 1)
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H;
        float *S = scores + (size_t)omp_get_thread_num() * VISION_ATT_QB * (size_t)Tk;
        const float *K = k + (size_t)b * Tk * ldkv + (size_t)h * hd;
        const float *V = v + (size_t)b * Tk * ldkv + (size_t)h * hd;
        const float *mask = keymask ? keymask + (size_t)b * Tk : NULL;
        float inv[VISION_ATT_QB];
        for (int i0 = 0; i0 < Tq; i0 += VISION_ATT_QB) {
            int qb = Tq - i0 < VISION_ATT_QB ? Tq - i0 : VISION_ATT_QB;
            const float *Q = q + ((size_t)b * Tq + i0) * ldq + (size_t)h * hd;
            float *O = out + ((size_t)b * Tq + i0) * ldo + (size_t)h * hd;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, qb, Tk, hd, scale, Q, ldq, K, ldkv, 0.0f, S, Tk);
            for (int i = 0; i < qb; i++) inv[i] = softmax_unnormalized(S + (size_t)i * Tk, mask, Tk);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, qb, hd, Tk, 1.0f, S, Tk, V, ldkv, 0.0f, O, ldo);
            for (int i = 0; i < qb; i++) {
                float *o = O + (size_t)i * ldo;
                #pragma omp simd
                for (int d = 0; d < hd; d++) o[d] *= inv[i];
            }
        }
    }
}

/* ---- Idefics3 position ids ------------------------------------------------------------------------------ */

/* torch.arange(start, end, step) for a float32 result: length ceil((end - start) / step) in double, values
 * (float)(start + i·step) computed in double (CPU accumulate type), as torch's scalar CPU loop does.
 * Caveat: torch's vectorized loop (runs of 2·V elements, V = 8 with AVX2, 16 with AVX-512) rounds each chunk's
 * base to float first, so for some patch grids the bucketized ids depend on PyTorch's SIMD width. Worked out
 * for every mask size: grids of up to 18 patches per side, and 24, 26, 27, 32 (the released Idefics3 / SmolVLM
 * towers use 26 and 32), bucketize identically under all three schemes; others (e.g. 19, 25, 29) can differ by
 * one bucket between PyTorch builds, and this code follows the scalar one. */
static int arange_f32(double start, double end, double step, float *out, int cap) {
    double len = ceil((end - start) / step);
    if (!(len >= 0) || len > cap) return -1;
    for (int i = 0; i < (int)len; i++) out[i] = (float)(start + step * i);
    return (int)len;
}

/* torch.bucketize(x, boundaries, right=True): the number of boundaries <= x (boundaries sorted). */
static int bucketize_right(float x, const float *bnd, int n) {
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (bnd[mid] <= x) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Idefics3VisionEmbeddings' position ids for one tile of gh × gw patches with mask pm (NULL = all real):
 * masked-out patches get 0; real ones, in raster order, bucket(h)·side + bucket(w) where the fractional
 * coordinates arange(0, 1 - 1e-6, 1 / nb) are bucketized against arange(1/side, 1, 1/side). */
vlmc_status vit_idefics3_position_ids(const vit_model *m, const uint8_t *pm, int gh, int gw, int *pos, int tile,
                                      vlmc_error *err) {
    int nb_h = 0, nb_w = 0, n_real = 0;
    for (int r = 0; r < gh; r++) nb_h += pm ? (pm[(size_t)r * gw] != 0) : 1;
    for (int c = 0; c < gw; c++) nb_w += pm ? (pm[c] != 0) : 1;
    for (int i = 0; i < gh * gw; i++) n_real += pm ? (pm[i] != 0) : 1;
    if (nb_h == 0 || nb_w == 0)
        return vlmc_fail(err, VLMC_ERR_ARG, "%s: tile %d has no real patch in its first row or column", m->file, tile);
    int cap = gh > gw ? gh : gw;
    if (m->side > cap) cap = m->side;
    float *buf = malloc(sizeof(float) * (size_t)(3 * cap + 3));
    if (!buf) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    float *bnd = buf, *fh = buf + cap + 1, *fw = buf + 2 * cap + 2;
    double bstep = 1.0 / m->side;
    int nbnd = arange_f32(bstep, 1.0, bstep, bnd, cap + 1);
    /* 1 / nb_patches is a float32 tensor division (int64 sum promoted to the default dtype) */
    int lh = arange_f32(0.0, 1.0 - 1e-6, (double)(1.0f / (float)nb_h), fh, cap + 1);
    int lw = arange_f32(0.0, 1.0 - 1e-6, (double)(1.0f / (float)nb_w), fw, cap + 1);
    vlmc_status s = VLMC_OK;
    if (nbnd < 0 || lh < 0 || lw < 0 || (long)lh * lw != n_real) {
        s = vlmc_fail(err, VLMC_ERR_ARG, "%s: tile %d's patch mask is not a rectangle of real patches (%d × %d, %d real)",
                      m->file, tile, nb_h, nb_w, n_real);
    } else {
        int k = 0;
        for (int i = 0; i < gh * gw; i++) {
            if (pm && !pm[i]) { pos[i] = 0; continue; }
            int y = k / lw, x = k % lw;
            pos[i] = bucketize_right(fh[y], bnd, nbnd) * m->side + bucketize_right(fw[x], bnd, nbnd);
            k++;
        }
    }
    free(buf);
    return s;
}

void vit_patch_mask_from_pixels(const uint8_t *pixel_mask, int n, int height, int width, int patch,
                                uint8_t *patch_mask) {
    int gh = height / patch, gw = width / patch;
    for (int b = 0; b < n; b++)
        for (int py = 0; py < gh; py++)
            for (int px = 0; px < gw; px++) {
                int any = 0;
                for (int y = 0; y < patch && !any; y++) {
                    const uint8_t *row = pixel_mask + ((size_t)b * height + (size_t)py * patch + y) * width + (size_t)px * patch;
                    for (int x = 0; x < patch; x++) any |= row[x] != 0;
                }
                patch_mask[((size_t)b * gh + py) * gw + px] = (uint8_t)any;
            }
}

int vit_real_images(const float *pixels, int n, size_t per_image, int *keep) {
    int k = 0;
    for (int b = 0; b < n; b++) {
        const float *p = pixels + (size_t)b * per_image;
        size_t i = 0;
        while (i < per_image && p[i] == 0.0f) i++;
        if (i < per_image) keep[k++] = b;
    }
    return k;
}

/* ---- encoder ------------------------------------------------------------------------------------------ */

typedef struct work {
    float *x, *h, *q, *k, *v, *a, *f, *patches, *scores, *wscratch, *keymask;
    int *pos;
} work;

static void work_free(work *w) {
    free(w->x); free(w->h); free(w->q); free(w->k); free(w->v); free(w->a); free(w->f);
    free(w->patches); free(w->scores); free(w->wscratch); free(w->keymask); free(w->pos);
}

/* Resolves a Python-style hidden-state index into [0, L]; -1 when out of range. */
static int resolve_layer(int l, int L) {
    if (l < 0) l += L + 1;
    return (l < 0 || l > L) ? -1 : l;
}

/* Copies hidden state number `layer` of a batch (tiles b0.., bc of them, x [bc·T, D]) to the outputs that want it. */
static void emit(const vit_model *m, const vit_outputs *o, const float *x, int layer, int n, int b0, int bc, int T) {
    const size_t D = (size_t)m->D;
    if (o->hidden_states)
        memcpy(o->hidden_states + (((size_t)layer * n + b0) * T) * D, x, (size_t)bc * T * D * sizeof(float));
    if (o->selected) {
        int drop = o->select_drop_first ? 1 : 0, Ts = T - drop;
        size_t feat = D * (size_t)o->n_select;
        for (int j = 0; j < o->n_select; j++) {
            if (resolve_layer(o->select_layers[j], m->L) != layer) continue;
            for (int b = 0; b < bc; b++)
                for (int t = 0; t < Ts; t++)
                    memcpy(o->selected + ((size_t)(b0 + b) * Ts + t) * feat + (size_t)j * D,
                           x + ((size_t)b * T + t + drop) * D, D * sizeof(float));
        }
    }
}

/* SiglipMultiheadAttentionPoolingHead on hs [bc, T, D] (post_layernorm output) → pooled [bc, D]. */
static vlmc_status siglip_head(const vit_model *m, const float *hs, int bc, int T, float *pooled, work *w,
                               vlmc_error *err) {
    const vit_head *hd = &m->head;
    const size_t D = (size_t)m->D, F = (size_t)m->F, R = (size_t)bc * T;
    float *q1 = malloc((size_t)bc * D * sizeof(float)), *a = malloc((size_t)bc * D * sizeof(float));
    float *r = malloc((size_t)bc * D * sizeof(float)), *f = malloc((size_t)bc * F * sizeof(float));
    float *hl = malloc((size_t)bc * D * sizeof(float));
    vlmc_status s = VLMC_OK;
    if (!q1 || !a || !r || !f || !hl) { s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory"); goto done; }
    /* q = probe Wq^T + bq (the same for every tile); k, v over all tokens */
    vision_linear(q1, hd->probe, 1, &hd->q_w, hd->in_b, w->wscratch, false);
    vision_linear(w->k, hs, R, &hd->k_w, hd->in_b + D, w->wscratch, false);
    vision_linear(w->v, hs, R, &hd->v_w, hd->in_b + 2 * D, w->wscratch, false);
    for (int b = 1; b < bc; b++) memcpy(q1 + (size_t)b * D, q1, D * sizeof(float)); /* one query per tile */
    vision_attention(a, (int)D, q1, (int)D, w->k, w->v, (int)D, NULL, bc, 1, T, m->H, m->head_dim,
              (float)(1.0 / sqrt((double)m->head_dim)), w->scores);
    vision_linear(r, a, (size_t)bc, &hd->o_w, hd->o_b, w->wscratch, false);   /* residual = attention output */
    layernorm_forward(hl, r, hd->ln_w, hd->ln_b, (size_t)bc, D, m->eps);
    vision_linear(f, hl, (size_t)bc, &hd->fc1_w, hd->fc1_b, w->wscratch, false);
    act_forward(m->act, f, f, (size_t)bc * F);
    vision_linear(r, f, (size_t)bc, &hd->fc2_w, hd->fc2_b, w->wscratch, true); /* residual + mlp */
    memcpy(pooled, r, (size_t)bc * D * sizeof(float));
done:
    free(q1); free(a); free(r); free(f); free(hl);
    return s;
}

vlmc_status vit_encode(const vit_model *m, const float *pixels, int n, int height, int width,
                       const uint8_t *patch_mask, const vit_outputs *o, vlmc_error *err) {
    if (n <= 0 || !pixels) return vlmc_fail(err, VLMC_ERR_ARG, "%s: vit_encode needs at least one tile", m->file);
    if (m->kind != VIT_IDEFICS3 && (height != m->image_size || width != m->image_size))
        return vlmc_fail(err, VLMC_ERR_ARG, "%s: input is %d×%d pixels, the model takes %d×%d (no position interpolation)",
                         m->file, height, width, m->image_size, m->image_size);
    if (height < m->P || width < m->P || height % m->P || width % m->P)
        return vlmc_fail(err, VLMC_ERR_ARG, "%s: input %d×%d is not a whole number of %d-pixel patches", m->file, height,
                         width, m->P);
    if ((long long)(height / m->P) * (width / m->P) > (1 << 20))
        return vlmc_fail(err, VLMC_ERR_LIMIT, "%s: input %d×%d has more than 2^20 patches", m->file, height, width);
    if (patch_mask && m->kind != VIT_IDEFICS3)
        return vlmc_fail(err, VLMC_ERR_ARG, "%s: a patch mask applies to Idefics3 only", m->file);
    if (o->pooler_output && m->kind == VIT_SIGLIP && !m->has_head)
        return vlmc_fail(err, VLMC_ERR_ARG, "%s: this SigLIP tower has no head.* tensors, so no pooler output", m->file);
    if (o->pooler_output && m->kind == VIT_IDEFICS3)
        return vlmc_fail(err, VLMC_ERR_ARG, "%s: Idefics3's vision tower has no pooler output", m->file);

    const int gh = height / m->P, gw = width / m->P, Np = gh * gw, cls = m->kind == VIT_CLIP ? 1 : 0;
    const int T = Np + cls, D = m->D, F = m->F, C = m->C, P = m->P, CPP = C * P * P;

    /* How many layers to run. */
    int need = (o->hidden_states || o->last_hidden_state || o->pooler_output) ? m->L : 0;
    if (o->selected) {
        if (o->n_select <= 0 || o->n_select > HF_MAX_FEATURE_LAYERS || (o->select_drop_first && T < 2))
            return vlmc_fail(err, VLMC_ERR_ARG, "%s: bad feature selection (%d layers)", m->file, o->n_select);
        for (int j = 0; j < o->n_select; j++) {
            int l = resolve_layer(o->select_layers[j], m->L);
            if (l < 0)
                return vlmc_fail(err, VLMC_ERR_ARG, "%s: vision_feature_layer %d is outside the %d-layer tower", m->file,
                                 o->select_layers[j], m->L);
            if (l > need) need = l;
        }
    }

    /* Batches of about batch_tokens (4096) tokens: big enough GEMMs, bounded activation memory
     * (R·(6·D + F) + tiles·patches·C·P² floats, e.g. 4096·(6·768 + 3072) floats = 126 MiB for SigLIP-B). */
    int bmax = m->batch_tokens / T;
    if (bmax < 1) bmax = 1;
    if (bmax > n) bmax = n;
    const size_t R = (size_t)bmax * T;
    const int nt = omp_get_max_threads();
    work w = {0};
    w.x = malloc(R * D * sizeof(float));
    w.h = malloc(R * D * sizeof(float));
    w.q = malloc(R * D * sizeof(float));
    w.k = malloc(R * D * sizeof(float));
    w.v = malloc(R * D * sizeof(float));
    w.a = malloc(R * D * sizeof(float));
    w.f = malloc(R * (size_t)F * sizeof(float));
    w.patches = malloc((size_t)bmax * Np * CPP * sizeof(float));
    w.scores = malloc((size_t)nt * VISION_ATT_QB * T * sizeof(float));
    w.wscratch = malloc((m->scratch_floats ? m->scratch_floats : 1) * sizeof(float));
    w.keymask = malloc((size_t)bmax * T * sizeof(float));
    w.pos = malloc((size_t)Np * sizeof(int));
    vlmc_status s = VLMC_OK;
    if (!w.x || !w.h || !w.q || !w.k || !w.v || !w.a || !w.f || !w.patches || !w.scores || !w.wscratch || !w.keymask ||
        !w.pos) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory for a batch of %d tiles of %d tokens", m->file, bmax, T);
        goto done;
    }
    const float scale = (float)(1.0 / sqrt((double)m->head_dim));

    for (int b0 = 0; b0 < n; b0 += bmax) {
        const int bc = n - b0 < bmax ? n - b0 : bmax;
        const size_t rows = (size_t)bc * T;

        /* -- embeddings: the patch Conv2d (kernel = stride = P) as a GEMM over unfolded patches --
         * patches[b·Np + py·gw + px][c·P·P + ky·P + kx] = pixels[b, c, py·P + ky, px·P + kx] */
        vision_unfold_patches(w.patches, pixels + (size_t)b0 * C * height * width, bc, C, height, width, P);
        /* h[b·Np + p, D] = patches W^T (+ bias for SigLIP / Idefics3) */
        vision_linear(w.h, w.patches, (size_t)bc * Np, &m->patch_w, m->patch_b, w.wscratch, false);
        if (o->patch_embeds)
            memcpy(o->patch_embeds + (size_t)b0 * Np * D, w.h, (size_t)bc * Np * D * sizeof(float));
        bool masked = false;
        for (int b = 0; b < bc; b++) {
            const uint8_t *pm = patch_mask ? patch_mask + (size_t)(b0 + b) * Np : NULL;
            float *xb = w.x + (size_t)b * T * D;
            if (m->kind == VIT_IDEFICS3) {
                if ((s = vit_idefics3_position_ids(m, pm, gh, gw, w.pos, b0 + b, err))) goto done;
            } else {
                for (int p = 0; p < Np; p++) w.pos[p] = p + cls;
            }
            if (cls) /* CLIP: class token first, with position 0 */
                for (int d = 0; d < D; d++) xb[d] = m->class_emb[d] + m->pos_emb[d];
            for (int p = 0; p < Np; p++) {
                const float *pe = m->pos_emb + (size_t)w.pos[p] * D, *he = w.h + ((size_t)b * Np + p) * D;
                float *xe = xb + (size_t)(p + cls) * D;
                for (int d = 0; d < D; d++) xe[d] = he[d] + pe[d];
            }
            /* Idefics3: padded patches are masked out as keys (only when some are, as HF does) */
            for (int t = 0; t < T; t++) {
                bool real = !pm || pm[t];
                w.keymask[(size_t)b * T + t] = real ? 0.0f : -FLT_MAX;
                masked |= !real;
            }
        }
        if (m->kind == VIT_CLIP) layernorm_forward(w.x, w.x, m->pre_ln_w, m->pre_ln_b, rows, (size_t)D, m->eps);
        emit(m, o, w.x, 0, n, b0, bc, T);

        /* -- encoder layers -- */
        for (int l = 0; l < need; l++) {
            const vit_layer *ly = &m->layers[l];
            layernorm_forward(w.h, w.x, ly->ln1_w, ly->ln1_b, rows, (size_t)D, m->eps);
            vision_linear(w.q, w.h, rows, &ly->q_w, ly->q_b, w.wscratch, false);
            vision_linear(w.k, w.h, rows, &ly->k_w, ly->k_b, w.wscratch, false);
            vision_linear(w.v, w.h, rows, &ly->v_w, ly->v_b, w.wscratch, false);
            vision_attention(w.a, D, w.q, D, w.k, w.v, D, masked ? w.keymask : NULL, bc, T, T, m->H, m->head_dim, scale,
                      w.scores);
            vision_linear(w.x, w.a, rows, &ly->o_w, ly->o_b, w.wscratch, true); /* x += out_proj(attn) */
            layernorm_forward(w.h, w.x, ly->ln2_w, ly->ln2_b, rows, (size_t)D, m->eps);
            vision_linear(w.f, w.h, rows, &ly->fc1_w, ly->fc1_b, w.wscratch, false);
            act_forward(m->act, w.f, w.f, rows * (size_t)F);
            vision_linear(w.x, w.f, rows, &ly->fc2_w, ly->fc2_b, w.wscratch, true); /* x += fc2(act(fc1(h))) */
            emit(m, o, w.x, l + 1, n, b0, bc, T);
        }

        /* -- heads -- */
        if (m->kind == VIT_CLIP) {
            if (o->last_hidden_state)
                memcpy(o->last_hidden_state + (size_t)b0 * T * D, w.x, rows * D * sizeof(float));
            if (o->pooler_output) /* post_layernorm(last_hidden_state[:, 0]) */
                for (int b = 0; b < bc; b++)
                    layernorm_forward(o->pooler_output + (size_t)(b0 + b) * D, w.x + (size_t)b * T * D, m->post_ln_w,
                                      m->post_ln_b, 1, (size_t)D, m->eps);
        } else if (o->last_hidden_state || o->pooler_output) {
            layernorm_forward(w.h, w.x, m->post_ln_w, m->post_ln_b, rows, (size_t)D, m->eps);
            if (o->last_hidden_state)
                memcpy(o->last_hidden_state + (size_t)b0 * T * D, w.h, rows * D * sizeof(float));
            if (o->pooler_output &&
                (s = siglip_head(m, w.h, bc, T, o->pooler_output + (size_t)b0 * D, &w, err)))
                goto done;
        }
    }
done:
    work_free(&w);
    return s;
}

vlmc_status vit_select_from_config(const hf_config *cfg, float *selected, vit_outputs *out, vlmc_error *err) {
    if (cfg->n_vision_feature_layers <= 0 || cfg->n_vision_feature_layers > HF_MAX_FEATURE_LAYERS)
        return vlmc_fail(err, VLMC_ERR_ARG, "config: no vision_feature_layer");
    out->selected = selected;
    out->n_select = cfg->n_vision_feature_layers;
    memcpy(out->select_layers, cfg->vision_feature_layers, sizeof(int) * (size_t)out->n_select);
    if (!strcmp(cfg->vision_feature_select_strategy, "default")) out->select_drop_first = true;
    else if (!strcmp(cfg->vision_feature_select_strategy, "full")) out->select_drop_first = false;
    else
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "config: vision_feature_select_strategy \"%s\" is not supported",
                         cfg->vision_feature_select_strategy);
    return VLMC_OK;
}

void vit_selected_shape(const vit_model *m, const vit_outputs *sel, int height, int width, int *tokens, int *features) {
    *tokens = vit_tokens(m, height, width) - (sel->select_drop_first ? 1 : 0);
    *features = m->D * sel->n_select;
}
