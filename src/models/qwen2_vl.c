/* Qwen2-VL: transformers 4.47 Qwen2VLForConditionalGeneration (model_type "qwen2_vl").
 *
 * Config keys read: the Qwen2 decoder at the top level (see llama.h) with rope_scaling.mrope_section,
 * image_token_id, video_token_id, vision_start_token_id, vision_config (Qwen2VLVisionConfig: depth, embed_dim,
 * hidden_size, num_heads, mlp_ratio, in_channels, patch_size, spatial_merge_size, temporal_patch_size, hidden_act).
 * Tensors: visual.patch_embed.proj.weight, visual.blocks.<i>.{norm1, norm2, attn.qkv, attn.proj, mlp.fc1,
 * mlp.fc2}.*, visual.merger.{ln_q, mlp.0, mlp.2}.*, model.* (decoder), lm_head.weight (or transformers >= 4.52's
 * model.visual.* / model.language_model.*).
 *
 * Vision tower (Qwen2VisionTransformerPretrainedModel). The image processor gives each image as t × h × w patch
 * rows of C·tps·P·P values (tps = temporal_patch_size), ordered (t, h/m, w/m, m, m) with m = spatial_merge_size.
 * N = patches of all images, Dv = embed_dim, H heads of hd, F = Dv · mlp_ratio, D = decoder hidden size:
 *   x = pixels Wpatch^T                                [N, Dv]   PatchEmbed: the Conv3d (kernel = stride) as a linear
 *   angles[p] = (row_p · θ, col_p · θ)                 [N, hd/2] rot_pos_emb, θ_i = 10000^(-2i / (hd/2)), i < hd/4
 *   per block (Qwen2VLVisionBlock, VisionSdpaAttention):
 *     q, k, v = norm1(x) Wqkv^T + bqkv                 [N, Dv] each (rows of attn.qkv)
 *     q, k = rotate_half rope of q, k by angles        (apply_rotary_pos_emb_vision)
 *     x += softmax(q k^T / sqrt(hd)) v Wproj^T + b     attention only within one frame of one image (cu_seqlens)
 *     x += fc2(act(fc1(norm2(x))))                     act = vision_config.hidden_act (quick_gelu)
 *   PatchMerger: ln_q(x) as [N/m², m²·Dv] (each m × m group is m² consecutive rows) → Linear → GELU → Linear
 *                → [N/m², D], one row per image token.
 * Decoder: Qwen2 (llama.c) with M-RoPE: every token has (t, h, w) positions (qwen2_vl_rope_index below, transformers'
 * get_rope_index) and frequency i of a head rotates by the axis its mrope_section chunk names.
 * Prompt: the chat template writes <|vision_start|><|image_pad|><|vision_end|> per image; Qwen2VLProcessor repeats
 * <|image_pad|> t·h·w / m² times. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kernels/layernorm.h"
#include "kernels/ops.h"
#include "models/rope.h"
#include "models/vlm.h"

#define QWEN2_VL_IMAGE_PAD "<|image_pad|>"

typedef struct qwen2_vl_tower {
    vit_model vit;             /* D = embed_dim, layers (q, k, v = row slices of attn.qkv; o = attn.proj), patch_w,
                                  act, eps 1e-6; owns the f32 copies */
    int merge, temporal, out_dim; /* spatial_merge_size, temporal_patch_size, merger output (decoder hidden) */
    const float *ln_q_w, *ln_q_b; /* [Dv] */
    tensor mlp0_w, mlp2_w;        /* [m²Dv, m²Dv], [D, m²Dv] */
    const float *mlp0_b, *mlp2_b;
    float *inv_freq;              /* [hd/4] VisionRotaryEmbedding(hd/2) */
} qwen2_vl_tower;

/* ---- loading ------------------------------------------------------------------------------------------ */

static void tower_free(vlm_model *m) {
    qwen2_vl_tower *t = m->tower;
    if (!t) return;
    vit_free(&t->vit);
    free(t->inv_freq);
    free(t);
    m->tower = NULL;
}

static vlmc_status tower_load(vlm_model *m, const char *prefix, vlmc_error *err) {
    const hf_vision_config *vc = &m->cfg.vision;
    qwen2_vl_tower *t = calloc(1, sizeof *t);
    if (!t) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    m->tower = t;
    vit_model *v = &t->vit;
    snprintf(v->file, sizeof v->file, "%s", safetensors_file_path(m->st, 0));
    v->kind = VIT_QWEN2_VL;
    vlmc_status s = vit_init_dims(v, vc, err);
    if (s) return s;
    t->merge = vc->spatial_merge_size;
    t->temporal = vc->temporal_patch_size;
    t->out_dim = vc->projection_dim;
    if (t->out_dim != m->lm.dim)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "config.json: vision_config.hidden_size %d is not the decoder's %d",
                         t->out_dim, m->lm.dim);
    const int64_t D = v->D, F = v->F, MD = D * t->merge * t->merge;
    char n[512];
    snprintf(n, sizeof n, "%spatch_embed.proj.weight", prefix);
    if ((s = vit_load_matrix(v, m->st, n, 5, (int64_t[]){D, v->C, t->temporal, v->P, v->P}, &v->patch_w, err)))
        return s;
    if (!(v->layers = calloc((size_t)v->L, sizeof *v->layers))) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    for (int l = 0; l < v->L; l++) {
        vit_layer *ly = &v->layers[l];
        char nm[8][512];
        static const char *const sub[8] = {"norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias",
                                           "attn.qkv.weight", "attn.proj.weight", "mlp.fc1.weight", "mlp.fc2.weight"};
        for (int i = 0; i < 8; i++) snprintf(nm[i], sizeof nm[i], "%sblocks.%d.%s", prefix, l, sub[i]);
        tensor qkv;
        const float *qkv_b;
        char b[4][512];
        snprintf(b[0], sizeof b[0], "%sblocks.%d.attn.qkv.bias", prefix, l);
        snprintf(b[1], sizeof b[1], "%sblocks.%d.attn.proj.bias", prefix, l);
        snprintf(b[2], sizeof b[2], "%sblocks.%d.mlp.fc1.bias", prefix, l);
        snprintf(b[3], sizeof b[3], "%sblocks.%d.mlp.fc2.bias", prefix, l);
        if ((s = vit_load_vector(v, m->st, nm[0], D, &ly->ln1_w, err)) ||
            (s = vit_load_vector(v, m->st, nm[1], D, &ly->ln1_b, err)) ||
            (s = vit_load_vector(v, m->st, nm[2], D, &ly->ln2_w, err)) ||
            (s = vit_load_vector(v, m->st, nm[3], D, &ly->ln2_b, err)) ||
            (s = vit_load_matrix(v, m->st, nm[4], 2, (int64_t[]){3 * D, D}, &qkv, err)) ||
            (s = vit_load_vector(v, m->st, b[0], 3 * D, &qkv_b, err)) ||
            (s = vit_load_matrix(v, m->st, nm[5], 2, (int64_t[]){D, D}, &ly->o_w, err)) ||
            (s = vit_load_vector(v, m->st, b[1], D, &ly->o_b, err)) ||
            (s = vit_load_matrix(v, m->st, nm[6], 2, (int64_t[]){F, D}, &ly->fc1_w, err)) ||
            (s = vit_load_vector(v, m->st, b[2], F, &ly->fc1_b, err)) ||
            (s = vit_load_matrix(v, m->st, nm[7], 2, (int64_t[]){D, F}, &ly->fc2_w, err)) ||
            (s = vit_load_vector(v, m->st, b[3], D, &ly->fc2_b, err)))
            return s;
        /* qkv(x).reshape(N, 3, H, hd): rows [0, D) are q, [D, 2D) k, [2D, 3D) v */
        vit_layer_split_qkv(ly, &qkv, qkv_b, D);
    }
    char mn[6][512];
    static const char *const msub[6] = {"ln_q.weight", "ln_q.bias", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight",
                                        "mlp.2.bias"};
    for (int i = 0; i < 6; i++) snprintf(mn[i], sizeof mn[i], "%smerger.%s", prefix, msub[i]);
    if ((s = vit_load_vector(v, m->st, mn[0], D, &t->ln_q_w, err)) ||
        (s = vit_load_vector(v, m->st, mn[1], D, &t->ln_q_b, err)) ||
        (s = vit_load_matrix(v, m->st, mn[2], 2, (int64_t[]){MD, MD}, &t->mlp0_w, err)) ||
        (s = vit_load_vector(v, m->st, mn[3], MD, &t->mlp0_b, err)) ||
        (s = vit_load_matrix(v, m->st, mn[4], 2, (int64_t[]){t->out_dim, MD}, &t->mlp2_w, err)) ||
        (s = vit_load_vector(v, m->st, mn[5], t->out_dim, &t->mlp2_b, err)))
        return s;
    if (!(t->inv_freq = malloc((size_t)(v->head_dim / 4) * sizeof(float))))
        return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    rope_default_inv_freq(10000.0, v->head_dim / 2, t->inv_freq);
    return VLMC_OK;
}

static vlmc_status qwen2_vl_load(vlm_model *m, vlmc_error *err) {
    /* transformers >= 4.52 saves the decoder under model.language_model. and the tower under model.visual. */
    const bool new_layout = !safetensors_find(m->st, "model.embed_tokens.weight") &&
                            safetensors_find(m->st, "model.language_model.embed_tokens.weight");
    vlmc_status s = llama_model_load(&m->lm, &m->cfg.text, m->st, new_layout ? "model.language_model." : "model.",
                                     "lm_head.weight", err);
    if (s) {
        m->lm.layers = NULL;
        return s;
    }
    m->image_token_id = m->cfg.image_token_index;
    if (m->image_token_id < 0 || m->image_token_id >= m->lm.vocab)
        s = vlmc_fail(err, VLMC_ERR_FORMAT, "config.json: the image token id %d is outside the vocabulary (%d)",
                      m->image_token_id, m->lm.vocab);
    if (!s) s = tower_load(m, new_layout ? "model.visual." : "visual.", err);
    if (s) {
        tower_free(m);
        llama_model_free(&m->lm);
        return s;
    }
    m->has_vision = true;
    return VLMC_OK;
}

/* ---- vision ----------------------------------------------------------------------------------------------- */

/* Checks the grids against the patch rows; *patches = sum t·h·w, *frames = sum t (attention segments). */
static vlmc_status check_grids(const qwen2_vl_tower *t, const vlm_images *im, int64_t *patches, vlmc_error *err) {
    int64_t n = 0;
    if (!im->grid_thw || im->n_images < 1)
        return vlmc_fail(err, VLMC_ERR_ARG, "qwen2_vl: the images need their image_grid_thw");
    for (int i = 0; i < im->n_images; i++) {
        const int32_t *g = im->grid_thw + 3 * i;
        if (g[0] < 1 || g[1] < 1 || g[2] < 1 || g[1] % t->merge || g[2] % t->merge || g[0] > 4096 || g[1] > 4096 ||
            g[2] > 4096)
            return vlmc_fail(err, VLMC_ERR_ARG,
                             "qwen2_vl: image %d has grid (%d, %d, %d); h and w must be positive multiples of the "
                             "spatial_merge_size %d",
                             i, g[0], g[1], g[2], t->merge);
        n += (int64_t)g[0] * g[1] * g[2];
        if (n > (1 << 22)) return vlmc_fail(err, VLMC_ERR_LIMIT, "qwen2_vl: more than 2^22 patches");
    }
    if (n != im->n_tiles)
        return vlmc_fail(err, VLMC_ERR_ARG, "qwen2_vl: image_grid_thw gives %lld patches, pixel_values has %d rows",
                         (long long)n, im->n_tiles);
    *patches = n;
    return VLMC_OK;
}

static vlmc_status qwen2_vl_features_len(const vlm_model *m, const vlm_images *im, size_t *n, vlmc_error *err) {
    const qwen2_vl_tower *t = m->tower;
    int64_t patches;
    vlmc_status s = check_grids(t, im, &patches, err);
    if (!s) *n = (size_t)(patches / (t->merge * t->merge));
    return s;
}

/* rot_pos_emb: patch p of a frame sits at (row, col) of the grid, the patches going by m × m groups. */
static void rotary_angles(const qwen2_vl_tower *t, const int32_t *grid, int n_images, float *angles) {
    const int q = t->vit.head_dim / 4, m = t->merge;
    size_t r = 0;
    for (int i = 0; i < n_images; i++) {
        const int gt = grid[3 * i], gh = grid[3 * i + 1], gw = grid[3 * i + 2];
        for (int f = 0; f < gt; f++)
            for (int bh = 0; bh < gh / m; bh++)
                for (int bw = 0; bw < gw / m; bw++)
                    for (int mh = 0; mh < m; mh++)
                        for (int mw = 0; mw < m; mw++, r++) {
                            float row = (float)(bh * m + mh), col = (float)(bw * m + mw);
                            for (int k = 0; k < q; k++) {
                                angles[r * 2 * q + k] = row * t->inv_freq[k];
                                angles[r * 2 * q + q + k] = col * t->inv_freq[k];
                            }
                        }
    }
}

static vlmc_status qwen2_vl_encode(const vlm_model *m, const vlm_images *im, vlm_vision_out *out, vlmc_error *err) {
    const qwen2_vl_tower *t = m->tower;
    const vit_model *v = &t->vit;
    int64_t Np;
    vlmc_status s = check_grids(t, im, &Np, err);
    if (s) return s;
    const size_t N = (size_t)Np, D = (size_t)v->D, F = (size_t)v->F, hd = (size_t)v->head_dim, half = hd / 2;
    const size_t MM = (size_t)t->merge * t->merge, Nm = N / MM, MD = MM * D;
    int max_frame = 0;
    for (int i = 0; i < im->n_images; i++)
        if (im->grid_thw[3 * i + 1] * im->grid_thw[3 * i + 2] > max_frame)
            max_frame = im->grid_thw[3 * i + 1] * im->grid_thw[3 * i + 2];
    const int nt = omp_get_max_threads();
    float *x = malloc(N * D * sizeof(float)), *h = malloc(N * D * sizeof(float)), *q = malloc(N * D * sizeof(float));
    float *k = malloc(N * D * sizeof(float)), *vv = malloc(N * D * sizeof(float)), *a = malloc(N * D * sizeof(float));
    float *f = malloc(N * (F > D ? F : D) * sizeof(float)), *cos_t = malloc(N * half * sizeof(float));
    float *sin_t = malloc(N * half * sizeof(float));
    float *angles = out->rotary_freqs ? out->rotary_freqs : malloc(N * half * sizeof(float));
    float *scores = malloc((size_t)nt * VISION_ATT_QB * (size_t)max_frame * sizeof(float));
    float *scratch = malloc((v->scratch_floats ? v->scratch_floats : 1) * sizeof(float));
    if (!x || !h || !q || !k || !vv || !a || !f || !cos_t || !sin_t || !angles || !scores || !scratch) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "qwen2_vl: out of memory for %zu patches", N);
        goto done;
    }
    /* x[N, Dv] = patch embeddings */
    vision_linear(x, im->pixels, N, &v->patch_w, NULL, scratch, false);
    if (out->hidden_states) memcpy(out->hidden_states, x, N * D * sizeof(float));
    rotary_angles(t, im->grid_thw, im->n_images, angles);
    for (size_t i = 0; i < N * half; i++) {
        cos_t[i] = (float)cos((double)angles[i]);
        sin_t[i] = (float)sin((double)angles[i]);
    }
    const float scale = (float)(1.0 / sqrt((double)hd));
    for (int l = 0; l < v->L; l++) {
        const vit_layer *ly = &v->layers[l];
        layernorm_forward(h, x, ly->ln1_w, ly->ln1_b, N, D, v->eps);
        vision_linear(q, h, N, &ly->q_w, ly->q_b, scratch, false);
        vision_linear(k, h, N, &ly->k_w, ly->k_b, scratch, false);
        vision_linear(vv, h, N, &ly->v_w, ly->v_b, scratch, false);
        rope_apply_f32(q, (int64_t)N, v->H, (int)hd, (int)hd, cos_t, sin_t);
        rope_apply_f32(k, (int64_t)N, v->H, (int)hd, (int)hd, cos_t, sin_t);
        /* cu_seqlens: each frame of each image attends only to itself */
        size_t s0 = 0;
        for (int i = 0; i < im->n_images; i++) {
            const int len = im->grid_thw[3 * i + 1] * im->grid_thw[3 * i + 2];
            for (int fr = 0; fr < im->grid_thw[3 * i]; fr++, s0 += (size_t)len)
                vision_attention(a + s0 * D, (int)D, q + s0 * D, (int)D, k + s0 * D, vv + s0 * D, (int)D, NULL, 1, len,
                                 len, v->H, (int)hd, scale, scores);
        }
        vision_linear(x, a, N, &ly->o_w, ly->o_b, scratch, true); /* x += proj(attn) */
        layernorm_forward(h, x, ly->ln2_w, ly->ln2_b, N, D, v->eps);
        vision_linear(f, h, N, &ly->fc1_w, ly->fc1_b, scratch, false);
        act_forward(v->act, f, f, N * F);
        vision_linear(x, f, N, &ly->fc2_w, ly->fc2_b, scratch, true); /* x += fc2(act(fc1(h))) */
        if (out->hidden_states) memcpy(out->hidden_states + (size_t)(l + 1) * N * D, x, N * D * sizeof(float));
    }
    /* merger: h = ln_q(x) seen as [N/m², m²·Dv]; f = gelu(h W0^T + b0) [N/m², m²·Dv]; features = f W2^T + b2 */
    layernorm_forward(h, x, t->ln_q_w, t->ln_q_b, N, D, 1e-6f);
    vision_linear(f, h, Nm, &t->mlp0_w, t->mlp0_b, scratch, false);
    act_forward(ACT_GELU, f, f, Nm * MD);
    vision_linear(out->features, f, Nm, &t->mlp2_w, t->mlp2_b, scratch, false);
    out->vit_tokens = (int)N;
    out->proj_tokens = (int)Nm;
    out->n_features = Nm;
    if (out->projector_output) memcpy(out->projector_output, out->features, Nm * (size_t)t->out_dim * sizeof(float));
done:
    free(x); free(h); free(q); free(k); free(vv); free(a); free(f); free(cos_t); free(sin_t); free(scores);
    free(scratch);
    if (angles != out->rotary_freqs) free(angles);
    return s;
}

/* ---- prompt --------------------------------------------------------------------------------------------- */

static vlmc_status qwen2_vl_image_prompt(const vlm_model *m, const vlm_image_info *info, strbuf *out,
                                         vlmc_error *err) {
    (void)m;
    if (info->n_tokens <= 0 || info->n_tokens > 1 << 20)
        return vlmc_fail(err, VLMC_ERR_ARG, "qwen2_vl: %lld image tokens", (long long)info->n_tokens);
    for (int64_t i = 0; i < info->n_tokens; i++) strbuf_puts(out, QWEN2_VL_IMAGE_PAD);
    return VLMC_OK;
}

/* get_rope_index for one sequence of n real tokens (padding removed): text positions advance all three axes by one;
 * an image (its first image token after text of length L, next = 1 + the largest position so far) takes
 * (next + L + frame, next + L + row, next + L + col) over its t × h/m × w/m merged grid. */
static vlmc_status rope_index_one(const vlm_model *m, const int32_t *tok, int n, const int32_t *grid, int n_grids,
                                  int *image_index, int32_t *pos3, int *max_pos, vlmc_error *err) {
    const qwen2_vl_tower *t = m->tower;
    const int img = m->image_token_id, vid = m->cfg.video_token_id, vstart = m->cfg.vision_start_token_id;
    int n_images = 0;
    for (int i = 0; i + 1 < n; i++)
        if (tok[i] == vstart) {
            if (tok[i + 1] == vid)
                return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "qwen2_vl: video tokens (id %d) are not supported", vid);
            n_images += tok[i + 1] == img;
        }
    int st = 0, next = 0, w = 0; /* st: first token not placed yet; w: positions written */
    for (int k = 0; k < n_images; k++) {
        int ed = st;
        while (ed < n && tok[ed] != img) ed++;
        if (ed == n || *image_index >= n_grids)
            return vlmc_fail(err, VLMC_ERR_ARG, "qwen2_vl: %s for image %d of the prompt",
                             ed == n ? "no image token" : "no image_grid_thw", *image_index);
        const int32_t *g = grid + 3 * (*image_index)++;
        const int gt = g[0], gh = g[1] / t->merge, gw = g[2] / t->merge;
        const int text = ed - st;
        if ((int64_t)gt * gh * gw > n - ed)
            return vlmc_fail(err, VLMC_ERR_ARG,
                             "qwen2_vl: image %d needs %d image tokens (grid %d × %d × %d merged), the prompt has fewer",
                             *image_index - 1, gt * gh * gw, gt, gh, gw);
        for (int i = 0; i < text; i++, w++) pos3[3 * w] = pos3[3 * w + 1] = pos3[3 * w + 2] = next + i;
        int mx = 0;
        for (int a = 0; a < gt; a++)
            for (int b = 0; b < gh; b++)
                for (int c = 0; c < gw; c++, w++) {
                    pos3[3 * w] = next + text + a;
                    pos3[3 * w + 1] = next + text + b;
                    pos3[3 * w + 2] = next + text + c;
                    int here = a > b ? (a > c ? a : c) : (b > c ? b : c);
                    if (here > mx) mx = here;
                }
        next = next + text + mx + 1;
        st = ed + gt * gh * gw;
    }
    for (int i = 0; st + i < n; i++, w++) pos3[3 * w] = pos3[3 * w + 1] = pos3[3 * w + 2] = next + i;
    *max_pos = next + (n - st) - 1; /* the trailing text's last position, or the last image's largest */
    return VLMC_OK;
}

static vlmc_status qwen2_vl_rope_index(const vlm_model *m, const int32_t *ids, const int32_t *mask, int B, int T,
                                       const int32_t *grid_thw, int n_images, int32_t *pos, int32_t *deltas,
                                       vlmc_error *err) {
    int32_t *tok = malloc((size_t)(T > 0 ? T : 1) * sizeof(int32_t)), *p3 = malloc((size_t)(T > 0 ? T : 1) * 3 * sizeof(int32_t));
    if (!tok || !p3) {
        free(tok);
        free(p3);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    }
    vlmc_status s = VLMC_OK;
    int image_index = 0;
    for (int b = 0; b < B && !s; b++) {
        const int32_t *id = ids + (size_t)b * T, *mk = mask ? mask + (size_t)b * T : NULL;
        int n = 0, max_pos = -1;
        for (int i = 0; i < T; i++)
            if (!mk || mk[i]) tok[n++] = id[i];
        if ((s = rope_index_one(m, tok, n, grid_thw, n_images, &image_index, p3, &max_pos, err))) break;
        /* real tokens get their positions in order; padding keeps 1 (torch.ones) */
        for (int i = 0, k = 0; i < T; i++) {
            int32_t *dst = pos + ((size_t)b * T + i) * 3;
            if (!mk || mk[i]) memcpy(dst, p3 + 3 * (size_t)k++, 3 * sizeof(int32_t));
            else dst[0] = dst[1] = dst[2] = 1;
        }
        if (deltas) deltas[b] = max_pos + 1 - T;
    }
    free(tok);
    free(p3);
    return s;
}

static const char *const qwen2_vl_types[] = {"qwen2_vl", NULL};

const vlm_family vlm_family_qwen2_vl = {
    .model_types = qwen2_vl_types,
    .hf_class = "Qwen2VLForConditionalGeneration",
    .load = qwen2_vl_load,
    .features_len = qwen2_vl_features_len,
    .encode = qwen2_vl_encode,
    .image_prompt = qwen2_vl_image_prompt,
    .image_placeholder = QWEN2_VL_IMAGE_PAD,
    .free = tower_free,
    .rope_index = qwen2_vl_rope_index,
};
