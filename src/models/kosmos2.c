/* KOSMOS-2: transformers 4.47 Kosmos2ForConditionalGeneration (model_type "kosmos-2").
 *
 * Config keys read (hf_config.c, parse_kosmos2): latent_query_num; text_config: vocab_size, embed_dim, layers,
 * ffn_dim, attention_heads, max_position_embeddings, activation_function, layer_norm_eps, scale_embedding,
 * pad_token_id, tie_word_embeddings; vision_config: Kosmos2VisionConfig (a CLIP tower).
 * Tensors: vision_model.model.* (Kosmos2VisionTransformer = CLIPVisionTransformer), image_to_text_projection.*
 * (Kosmos2ImageToTextConnector), text_model.model.* (Kosmos2TextTransformer), text_model.lm_head.weight.
 *
 * Image → embeddings (encode):
 *   h = CLIP tower(pixels).last_hidden_state             [n, 1+P, Dv]  (P patches, class token first)
 *   h = post_layernorm(h) over every token, not only the class token
 *   h = h / max(|h|, 1e-12) per token                     (F.normalize)
 *   h = h dense^T + b                                     [n, 1+P, D]
 *   image_embeds = x_attn(q = latent_query, k = v = [h; latent_query])   [n, N, D], N = latent_query_num,
 *       multi-head attention without mask, q scaled by head_dim^-0.5, out_proj; no inner LayerNorm.
 * The processor writes <image>, N placeholder tokens and </image>; image_embeds_position_mask marks the
 * placeholders, whose embeddings the image embeddings replace.
 *
 * Text decoder (kosmos2_text_forward, run through llama.h's context: KV cache, generation loop), x: [R, D]:
 *   x = embed_tokens(ids) (image rows replaced) · sqrt(D) (scale_embedding) + sinusoid(position)
 *   per block (Kosmos2TextBlock, pre-LayerNorm, with the sub-LayerNorms of MAGNETO):
 *     a = attention(self_attn_layer_norm(x))      q, k, v with biases, causal, over the cache
 *     x = x + out_proj(inner_attn_ln(a))
 *     f = ffn_layernorm(act(fc1(final_layer_norm(x))))     [R, F]
 *     x = x + fc2(f)
 *   logits = lm_head(layer_norm(x))
 * Positions (Kosmos2TextSinusoidalPositionalEmbedding, fairseq's make_positions): a real token's position is
 * padding_idx + its 1-based count among the real tokens, a padding token's is padding_idx (a zero row).
 * transformers counts the ids that are not pad_token_id; here the attention mask tells the real tokens, which is
 * the same for prompts padded with pad_token_id. Explicit position_ids are used as given. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kernels/gelu.h"
#include "kernels/layernorm.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "models/vlm.h"

typedef struct k2_norm {
    const float *w, *b; /* LayerNorm weight and bias (f32 copies) */
} k2_norm;

typedef struct k2_layer {
    k2_norm attn_norm;             /* self_attn_layer_norm */
    tensor wq, bq, wk, bk, wv, bv; /* [D, D], [D] */
    k2_norm inner_norm;            /* self_attn.inner_attn_ln: on the attention output, before out_proj */
    tensor wo, bo;
    k2_norm ffn_norm;              /* final_layer_norm: before the FFN */
    tensor fc1, b1;                /* [F, D], [F] */
    k2_norm mid_norm;              /* ffn.ffn_layernorm [F]: after the activation */
    tensor fc2, b2;                /* [D, F], [D] */
} k2_layer;

typedef struct kosmos2 {
    /* Kosmos2TextTransformer */
    int L, D, H, F, pad;
    float eps, embed_scale;
    act_kind act;
    k2_layer *layers;
    k2_norm final_norm; /* layer_norm */
    /* Kosmos2ImageToTextConnector */
    int n_query;
    tensor dense_w, dense_b; /* [D, Dv], [D] */
    const float *latent;     /* [n_query, D] */
    tensor xq, xqb, xk, xkb, xv, xvb, xo, xob;
    float *f32;              /* the LayerNorm vectors and latent queries, one allocation */
    size_t n_f32, used_f32;
} kosmos2;

/* ---- loading ------------------------------------------------------------------------------------------ */

typedef struct k2_loader {
    const safetensors *st;
    kosmos2 *k;
    vlmc_error *err;
} k2_loader;

static vlmc_status k2_tensor(k2_loader *ld, const char *name, int ndim, int64_t d0, int64_t d1, tensor *out) {
    int64_t shape[2] = {d0, d1};
    vlmc_status s = safetensors_get(ld->st, name, ndim, shape, out, ld->err);
    if (s) return s;
    if (!matmul_dtype_ok(out->type))
        return vlmc_fail(ld->err, VLMC_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s; KOSMOS-2 reads F32, F16 or BF16",
                         safetensors_file_path(ld->st, 0), name, dtype_name(out->type));
    return VLMC_OK;
}

/* n values of a 1-D (or [rows, cols] when n = rows·cols) tensor as f32, copied into the model's f32 block. */
static vlmc_status k2_floats(k2_loader *ld, const char *name, int ndim, int64_t d0, int64_t d1, const float **out) {
    tensor t;
    vlmc_status s = k2_tensor(ld, name, ndim, d0, d1, &t);
    if (s) return s;
    size_t n = (size_t)tensor_numel(&t);
    if (ld->k->used_f32 + n > ld->k->n_f32)
        return vlmc_fail(ld->err, VLMC_ERR_INTERNAL, "kosmos-2: f32 block too small for %s", name);
    float *dst = ld->k->f32 + ld->k->used_f32;
    if ((s = convert_to_f32(dst, t.data, t.type, n, ld->err))) return s;
    ld->k->used_f32 += n;
    *out = dst;
    return VLMC_OK;
}

static vlmc_status k2_norm_load(k2_loader *ld, const char *prefix, int64_t n, k2_norm *out) {
    char w[320], b[320];
    snprintf(w, sizeof w, "%s.weight", prefix);
    snprintf(b, sizeof b, "%s.bias", prefix);
    vlmc_status s = k2_floats(ld, w, 1, n, 0, &out->w);
    return s ? s : k2_floats(ld, b, 1, n, 0, &out->b);
}

/* <prefix>.weight [rows, cols] and <prefix>.bias [rows] */
static vlmc_status k2_linear(k2_loader *ld, const char *prefix, int64_t rows, int64_t cols, tensor *w, tensor *b) {
    char wn[320], bn[320];
    snprintf(wn, sizeof wn, "%s.weight", prefix);
    snprintf(bn, sizeof bn, "%s.bias", prefix);
    vlmc_status s = k2_tensor(ld, wn, 2, rows, cols, w);
    return s ? s : k2_tensor(ld, bn, 1, rows, 0, b);
}

/* "text_model.model.layers.<l>.<suffix>" in buf[320] */
static const char *layer_name(char *buf, int l, const char *suffix) {
    snprintf(buf, 320, "text_model.model.layers.%d.%s", l, suffix);
    return buf;
}

static void kosmos2_free(vlm_model *m) {
    kosmos2 *k = m->priv;
    if (!k) return;
    free(k->layers);
    free(k->f32);
    free(k);
    m->priv = NULL;
}

static vlmc_status kosmos2_text_forward(llama_ctx *c, const llama_input *in, const llama_output *out,
                                        vlmc_error *err);

static vlmc_status kosmos2_load(vlm_model *m, vlmc_error *err) {
    const hf_text_config *tc = &m->cfg.text;
    kosmos2 *k = calloc(1, sizeof *k);
    if (!k) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    m->priv = k;
    k->L = tc->num_hidden_layers;
    k->D = tc->hidden_size;
    k->H = tc->num_attention_heads;
    k->F = tc->intermediate_size;
    k->pad = tc->pad_token_id;
    k->eps = (float)tc->layer_norm_eps;
    k->embed_scale = tc->scale_embedding ? (float)sqrt((double)k->D) : 1.0f;
    k->n_query = m->cfg.latent_query_num;
    const int64_t D = k->D, F = k->F, V = tc->vocab_size, Dv = m->cfg.vision.hidden_size;
    const char *file = safetensors_file_path(m->st, 0);
    vlmc_status s = act_from_name(tc->hidden_act, file, &k->act, err);
    if (s) return s;
    if (D / 2 < 2) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: embed_dim %d is too small for sinusoidal positions", file, k->D);
    k->n_f32 = (size_t)k->L * (6 * D + 2 * F) + 2 * D + (size_t)k->n_query * D;
    k->layers = calloc((size_t)k->L, sizeof *k->layers);
    k->f32 = malloc(k->n_f32 * sizeof(float));
    if (!k->layers || !k->f32) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory for the KOSMOS-2 weights", file);
    k2_loader ld = {.st = m->st, .k = k, .err = err};

    /* text decoder */
    for (int l = 0; l < k->L && !s; l++) {
        k2_layer *w = &k->layers[l];
        char p[320];
        if ((s = k2_norm_load(&ld, layer_name(p, l, "self_attn_layer_norm"), D, &w->attn_norm)) ||
            (s = k2_linear(&ld, layer_name(p, l, "self_attn.q_proj"), D, D, &w->wq, &w->bq)) ||
            (s = k2_linear(&ld, layer_name(p, l, "self_attn.k_proj"), D, D, &w->wk, &w->bk)) ||
            (s = k2_linear(&ld, layer_name(p, l, "self_attn.v_proj"), D, D, &w->wv, &w->bv)) ||
            (s = k2_norm_load(&ld, layer_name(p, l, "self_attn.inner_attn_ln"), D, &w->inner_norm)) ||
            (s = k2_linear(&ld, layer_name(p, l, "self_attn.out_proj"), D, D, &w->wo, &w->bo)) ||
            (s = k2_norm_load(&ld, layer_name(p, l, "final_layer_norm"), D, &w->ffn_norm)) ||
            (s = k2_linear(&ld, layer_name(p, l, "ffn.fc1"), F, D, &w->fc1, &w->b1)) ||
            (s = k2_norm_load(&ld, layer_name(p, l, "ffn.ffn_layernorm"), F, &w->mid_norm)) ||
            (s = k2_linear(&ld, layer_name(p, l, "ffn.fc2"), D, F, &w->fc2, &w->b2)))
            break;
    }
    llama_model *lm = &m->lm;
    if (s || (s = k2_norm_load(&ld, "text_model.model.layer_norm", D, &k->final_norm)) ||
        (s = k2_tensor(&ld, "text_model.model.embed_tokens.weight", 2, V, D, &lm->tok_emb)))
        return s;
    if (tc->tie_word_embeddings) lm->lm_head = lm->tok_emb;
    else if ((s = k2_tensor(&ld, "text_model.lm_head.weight", 2, V, D, &lm->lm_head))) return s;

    /* image_to_text_projection */
    if ((s = k2_linear(&ld, "image_to_text_projection.dense", D, Dv, &k->dense_w, &k->dense_b)) ||
        (s = k2_floats(&ld, "image_to_text_projection.latent_query", 2, k->n_query, D, &k->latent)) ||
        (s = k2_linear(&ld, "image_to_text_projection.x_attn.q_proj", D, D, &k->xq, &k->xqb)) ||
        (s = k2_linear(&ld, "image_to_text_projection.x_attn.k_proj", D, D, &k->xk, &k->xkb)) ||
        (s = k2_linear(&ld, "image_to_text_projection.x_attn.v_proj", D, D, &k->xv, &k->xvb)) ||
        (s = k2_linear(&ld, "image_to_text_projection.x_attn.out_proj", D, D, &k->xo, &k->xob)))
        return s;

    /* the decoder runs in a llama_ctx: the sizes plan its buffers (rot_dim only sizes rope tables it never uses) */
    lm->cfg = *tc;
    lm->n_layers = k->L;
    lm->dim = k->D;
    lm->n_heads = lm->n_kv_heads = k->H;
    lm->head_dim = k->D / k->H;
    lm->rot_dim = lm->head_dim;
    lm->ffn_dim = k->F;
    lm->vocab = (int)V;
    lm->eps = k->eps;
    lm->forward = kosmos2_text_forward;
    lm->arch = k;

    /* vision tower: Kosmos2VisionTransformer is CLIP's */
    hf_vision_config vc = m->cfg.vision;
    snprintf(vc.model_type, sizeof vc.model_type, "clip_vision_model");
    if ((s = vit_load(m->st, "vision_model.model.", &vc, &m->vit, err))) return s;
    m->has_vision = true;
    return VLMC_OK;
}

/* ---- image → embeddings ------------------------------------------------------------------------------- */

static vlmc_status kosmos2_features_len(const vlm_model *m, const vlm_images *im, size_t *n, vlmc_error *err) {
    (void)err;
    *n = (size_t)im->n_tiles * (size_t)m->cfg.latent_query_num;
    return VLMC_OK;
}

/* out[Nq, D] = softmax(q k^T) v per head (heads are hd-wide column blocks), q already scaled; keys k, v [Nk, D]. */
static void connector_attention(float *out, const float *q, const float *k, const float *v, int Nq, int Nk, int D,
                                int H, float *scores) {
    const int hd = D / H;
    for (int h = 0; h < H; h++)
        for (int i = 0; i < Nq; i++) {
            const float *qi = q + (size_t)i * D + h * hd;
            float mx = -INFINITY, sum = 0.0f;
            for (int j = 0; j < Nk; j++) {
                scores[j] = dot_f32(qi, k + (size_t)j * D + h * hd, hd);
                if (scores[j] > mx) mx = scores[j];
            }
            for (int j = 0; j < Nk; j++) sum += scores[j] = expf(scores[j] - mx);
            float *o = out + (size_t)i * D + h * hd;
            memset(o, 0, (size_t)hd * sizeof(float));
            for (int j = 0; j < Nk; j++) axpy_f32(o, scores[j] / sum, v + (size_t)j * D + h * hd, hd);
        }
}

static vlmc_status kosmos2_encode(const vlm_model *m, const vlm_images *im, vlm_vision_out *out, vlmc_error *err) {
    const kosmos2 *k = m->priv;
    const int n = im->n_tiles, T = vit_tokens(&m->vit, im->height, im->width), Dv = m->vit.D, D = k->D,
              N = k->n_query, Nk = T + N;
    for (int i = 0; i < im->n_images; i++)
        if (im->tiles[i] != 1)
            return vlmc_fail(err, VLMC_ERR_ARG, "kosmos-2: image %d has %d tiles, expected 1", i, im->tiles[i]);
    const size_t rows = (size_t)n * T;
    float *post = out->last_hidden_state, *normed = out->selected;
    float *own_post = post ? NULL : malloc(rows * Dv * sizeof(float));
    float *own_normed = normed ? NULL : malloc(rows * Dv * sizeof(float));
    if (!post) post = own_post;
    if (!normed) normed = own_normed;
    /* kv: per image [T dense rows; N latent rows], then its keys and values */
    float *kv = malloc((size_t)n * Nk * D * sizeof(float)), *keys = malloc((size_t)n * Nk * D * sizeof(float)),
          *vals = malloc((size_t)n * Nk * D * sizeof(float)), *q = malloc((size_t)N * D * sizeof(float)),
          *att = malloc((size_t)n * N * D * sizeof(float)), *scores = malloc((size_t)Nk * sizeof(float));
    size_t sn = matmul_scratch_floats(Dv > D ? Dv : D);
    float *scratch = malloc(sn * sizeof(float));
    vlmc_status s = VLMC_OK;
    if (!post || !normed || !kv || !keys || !vals || !q || !att || !scores || !scratch) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "kosmos-2: out of memory for the image features of %d images", n);
        goto done;
    }
    /* tower: last layer output [n, T, Dv] (CLIP's last_hidden_state) */
    vit_outputs vo = {.hidden_states = out->hidden_states, .last_hidden_state = post};
    if ((s = vit_encode(&m->vit, im->pixels, n, im->height, im->width, NULL, &vo, err))) goto done;
    layernorm_forward(post, post, m->vit.post_ln_w, m->vit.post_ln_b, rows, (size_t)Dv, m->vit.eps);
    for (size_t r = 0; r < rows; r++) { /* F.normalize(dim=-1, eps=1e-12) */
        const float *x = post + r * Dv;
        double ss = 0;
        for (int i = 0; i < Dv; i++) ss += (double)x[i] * x[i];
        float nrm = (float)sqrt(ss);
        if (nrm < 1e-12f) nrm = 1e-12f;
        for (int i = 0; i < Dv; i++) normed[r * Dv + i] = x[i] / nrm;
    }
    /* connector */
    for (int b = 0; b < n; b++) {
        float *kvb = kv + (size_t)b * Nk * D;
        matmul_f32(kvb, normed + (size_t)b * T * Dv, T, &k->dense_w, &k->dense_b, scratch, sn); /* [T, D] */
        memcpy(kvb + (size_t)T * D, k->latent, (size_t)N * D * sizeof(float));                  /* [N, D] */
    }
    matmul_f32(keys, kv, (int64_t)n * Nk, &k->xk, &k->xkb, scratch, sn);
    matmul_f32(vals, kv, (int64_t)n * Nk, &k->xv, &k->xvb, scratch, sn);
    matmul_f32(q, k->latent, N, &k->xq, &k->xqb, scratch, sn);
    const float qscale = 1.0f / sqrtf((float)(D / k->H)); /* q_proj(x) * head_dim^-0.5 */
    for (size_t i = 0; i < (size_t)N * D; i++) q[i] *= qscale;
    for (int b = 0; b < n; b++)
        connector_attention(att + (size_t)b * N * D, q, keys + (size_t)b * Nk * D, vals + (size_t)b * Nk * D, N, Nk,
                            D, k->H, scores);
    matmul_f32(out->features, att, (int64_t)n * N, &k->xo, &k->xob, scratch, sn); /* [n·N, D] */
    out->vit_tokens = T;
    out->sel_tokens = T;
    out->sel_features = Dv;
    out->proj_tokens = N;
    out->n_features = (size_t)n * N;
    if (out->projector_output) memcpy(out->projector_output, out->features, out->n_features * D * sizeof(float));
done:
    free(own_post);
    free(own_normed);
    free(kv);
    free(keys);
    free(vals);
    free(q);
    free(att);
    free(scores);
    free(scratch);
    return s;
}

static vlmc_status kosmos2_image_prompt(const vlm_model *m, const vlm_image_info *info, strbuf *out,
                                        vlmc_error *err) {
    (void)m;
    (void)info;
    (void)out;
    return vlmc_fail(err, VLMC_ERR_UNSUPPORTED,
                     "kosmos-2: prompts with images from text (Kosmos2Processor) are not supported yet; "
                     "`vlmc dump` runs the model on input_ids + image_embeds_position_mask");
}

/* ---- text decoder ------------------------------------------------------------------------------------- */

/* x[D] += row `pos` of M2M100SinusoidalPositionalEmbedding.get_embedding (tensor2tensor's layout): sin(pos·f_i)
 * for i < D/2, then cos(pos·f_i), a zero column when D is odd, f_i = exp(-i · ln(10000) / (D/2 - 1)); row
 * padding_idx is zero. float arithmetic as torch computes the table. */
static void add_sinusoid(float *x, int pos, int pad, int D) {
    if (pos == pad) return;
    const int half = D / 2;
    const float step = (float)(log(10000.0) / (half - 1));
    for (int i = 0; i < half; i++) {
        float a = (float)pos * expf((float)i * -step);
        x[i] += sinf(a);
        x[half + i] += cosf(a);
    }
}

static vlmc_status kosmos2_text_forward(llama_ctx *c, const llama_input *in, const llama_output *out,
                                        vlmc_error *err) {
    const kosmos2 *k = c->m->arch;
    const int B = c->n_batch, T = in->n_tokens, L = k->L;
    const int64_t R = (int64_t)B * T, D = k->D, F = k->F, hd = D / k->H;
    vlmc_status s = llama_forward_start(c, in, err); /* c->x = embeddings (image rows spliced in by the caller) */
    if (s) return s;
    /* x = x · embed_scale + sinusoid(position); position: padding_idx + count of real tokens, padding_idx for
     * padding (a zero row) */
    for (int64_t i = 0; i < R * D; i++) c->x[i] *= k->embed_scale;
    for (int64_t r = 0; r < R; r++) {
        int pos = in->position_ids ? in->position_ids[r] : k->pad + c->pos[r];
        add_sinusoid(c->x + r * D, pos, k->pad, (int)D);
    }
    float *hs = out->hidden_states;
    if (hs) memcpy(hs, c->x, (size_t)R * D * sizeof(float));

    const attn_args aa = {.B = B, .T = T, .n_past = c->kv.n_past, .n_ctx = c->n_ctx, .n_heads = k->H,
                          .n_kv_heads = k->H, .head_dim = (int)hd, .window = 0, .scale = 1.0f / sqrtf((float)hd),
                          .n_threads = c->n_threads};
    for (int l = 0; l < L; l++) {
        const k2_layer *w = &k->layers[l];
        /* attention block: q, k, v [R, D] of the normed x; cache k, v; att = softmax(q k^T / sqrt(hd) + mask) v */
        layernorm_forward(c->xn, c->x, w->attn_norm.w, w->attn_norm.b, (size_t)R, (size_t)D, k->eps);
        matmul_f32_group(3, (float *const[]){c->q, c->k, c->v}, c->xn, R,
                         (const tensor *const[]){&w->wq, &w->wk, &w->wv},
                         (const tensor *const[]){&w->bq, &w->bk, &w->bv}, c->scratch, c->scratch_n);
        llama_attention(c, l, &aa);
        /* x += inner_attn_ln(att) Wo^T + bo */
        layernorm_forward(c->att, c->att, w->inner_norm.w, w->inner_norm.b, (size_t)R, (size_t)D, k->eps);
        matmul_f32(c->tmp, c->att, R, &w->wo, &w->bo, c->scratch, c->scratch_n);
        add_f32(c->x, c->tmp, R * D);
        /* FFN block: x += ffn_layernorm(act(final_layer_norm(x) W1^T + b1)) W2^T + b2, hidden [R, F] */
        layernorm_forward(c->xn, c->x, w->ffn_norm.w, w->ffn_norm.b, (size_t)R, (size_t)D, k->eps);
        matmul_f32(c->gate, c->xn, R, &w->fc1, &w->b1, c->scratch, c->scratch_n);
        act_forward(k->act, c->gate, c->gate, (size_t)(R * F));
        layernorm_forward(c->gate, c->gate, w->mid_norm.w, w->mid_norm.b, (size_t)R, (size_t)F, k->eps);
        matmul_f32(c->tmp, c->gate, R, &w->fc2, &w->b2, c->scratch, c->scratch_n);
        add_f32(c->x, c->tmp, R * D);
        if (hs && l + 1 < L) memcpy(hs + (size_t)(l + 1) * R * D, c->x, (size_t)R * D * sizeof(float));
    }
    /* final layer_norm; logits = xn lm_head^T */
    layernorm_forward(c->xn, c->x, k->final_norm.w, k->final_norm.b, (size_t)R, (size_t)D, k->eps);
    if (hs) memcpy(hs + (size_t)L * R * D, c->xn, (size_t)R * D * sizeof(float));
    llama_forward_finish(c, T, out);
    return VLMC_OK;
}

static const char *const kosmos2_types[] = {"kosmos-2", NULL};

const vlm_family vlm_family_kosmos2 = {
    .model_types = kosmos2_types,
    .hf_class = "Kosmos2ForConditionalGeneration",
    .load = kosmos2_load,
    .features_len = kosmos2_features_len,
    .encode = kosmos2_encode,
    .image_prompt = kosmos2_image_prompt,
    .free = kosmos2_free,
};
