/* VLM projectors (see projector.h). Matches transformers 4.47:
 *   modeling_llava.py       LlavaMultiModalProjector
 *   modeling_llava_next.py  LlavaNextMultiModalProjector, pack_image_features, get_anyres_image_grid_shape,
 *                           image_size_to_num_patches, unpad_image; image_processing_utils.select_best_resolution
 *   modeling_idefics3.py    Idefics3Connector (pixel_shuffle), Idefics3SimpleMLP (proj, no bias)
 *   modeling_paligemma.py   PaliGemmaMultiModalProjector (one Linear with bias)
 *   modeling_fuyu.py        FuyuForCausalLM.vision_embed_tokens (one Linear with bias on flattened patches)
 * and Yi-VL's mlp2x_gelu_Norm (github 01-ai/Yi, VL/llava/model/multimodal_projector/builder.py). */
#include "models/projector.h"

#include "core/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/layernorm.h"

static vlmc_status name_of(char *buf, size_t cap, const char *prefix, const char *name, vlmc_error *err) {
    int k = snprintf(buf, cap, "%s%s", prefix, name);
    if (k < 0 || (size_t)k >= cap) return vlmc_fail(err, VLMC_ERR_ARG, "tensor name prefix '%s' is too long", prefix);
    return VLMC_OK;
}

static vlmc_status float_dtype(const projector *p, const char *name, const tensor *t, vlmc_error *err) {
    if (t->type == DT_F32 || t->type == DT_F16 || t->type == DT_BF16 || dtype_is_quantized(t->type)) return VLMC_OK;
    return vlmc_fail(err, VLMC_ERR_UNSUPPORTED,
                     "%s: tensor '%s' has dtype %s; projector weights must be F32, F16, BF16 or Q8_0/Q4_0/Q4_K/Q6_K",
                     p->file, name, dtype_name(t->type));
}

static vlmc_status get_mat(const safetensors *st, projector *p, const char *prefix, const char *name, int64_t rows,
                           int64_t cols, tensor *out, vlmc_error *err) {
    char full[512];
    int64_t sh[2] = {rows, cols};
    vlmc_status s;
    if ((s = name_of(full, sizeof full, prefix, name, err)) || (s = safetensors_get(st, full, 2, sh, out, err)) ||
        (s = float_dtype(p, full, out, err)))
        return s;
    size_t n = (size_t)(rows * cols);
    if (!vision_weight_is_direct(out) && n > p->scratch_floats) p->scratch_floats = n;
    return VLMC_OK;
}

static vlmc_status get_vec(const safetensors *st, projector *p, const char *prefix, const char *name, int64_t n,
                           const float **out, vlmc_error *err) {
    char full[512];
    tensor t;
    vlmc_status s;
    if ((s = name_of(full, sizeof full, prefix, name, err)) || (s = safetensors_get(st, full, 1, &n, &t, err)) ||
        (s = float_dtype(p, full, &t, err)))
        return s;
    if (vision_weight_is_direct(&t)) {
        *out = t.data;
        return VLMC_OK;
    }
    if (p->n_owned == (int)(sizeof p->owned / sizeof p->owned[0]))
        return vlmc_fail(err, VLMC_ERR_INTERNAL, "projector: too many converted vectors");
    float *c = malloc((size_t)n * sizeof(float));
    if (!c) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    p->owned[p->n_owned++] = c;
    if ((s = convert_to_f32(c, t.data, t.type, (size_t)n, err))) return s;
    *out = c;
    return VLMC_OK;
}

vlmc_status projector_load(const safetensors *st, const char *prefix, const hf_config *cfg, projector *p,
                           vlmc_error *err) {
    memset(p, 0, sizeof *p);
    const char *where = safetensors_count(st) ? safetensors_file_path(st, safetensors_at(st, 0)->file) : "safetensors";
    snprintf(p->file, sizeof p->file, "%s", where);
    if (!prefix) prefix = "";
    const int Dv = cfg->vision.hidden_size, Dt = cfg->text.hidden_size;
    if (Dv <= 0 || Dt <= 0) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: config has no vision or text hidden_size", p->file);
    vlmc_status s;
    bool llava = !strcmp(cfg->model_type, "llava"), next = !strcmp(cfg->model_type, "llava_next");
    if (llava || next) {
        p->kind = PROJ_LLAVA;
        if (cfg->n_vision_feature_layers < 1)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: config has no vision_feature_layer", p->file);
        p->in_dim = Dv * cfg->n_vision_feature_layers;
        p->out_dim = p->hidden_dim = Dt;
        if ((s = act_from_name(cfg->projector_hidden_act, "config.json projector_hidden_act", &p->act, err)) ||
            (s = get_mat(st, p, prefix, "multi_modal_projector.linear_1.weight", Dt, p->in_dim, &p->w1, err)) ||
            (s = get_mat(st, p, prefix, "multi_modal_projector.linear_2.weight", Dt, Dt, &p->w2, err)))
            goto fail;
        if (cfg->multimodal_projector_bias &&
            ((s = get_vec(st, p, prefix, "multi_modal_projector.linear_1.bias", Dt, &p->b1, err)) ||
             (s = get_vec(st, p, prefix, "multi_modal_projector.linear_2.bias", Dt, &p->b2, err))))
            goto fail;
        if (next) {
            if ((s = get_vec(st, p, prefix, "image_newline", Dt, &p->image_newline, err))) goto fail;
            p->tile_size = cfg->vision.image_size;
            p->tile_patches = cfg->vision.image_size / cfg->vision.patch_size;
            p->n_pinpoints = cfg->n_image_grid_pinpoints;
            memcpy(p->pinpoints, cfg->image_grid_pinpoints, sizeof p->pinpoints);
            if (p->n_pinpoints < 1 || p->tile_size <= 0 || p->tile_patches <= 0) {
                s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: llava_next config needs image_grid_pinpoints and a vision image_size",
                              p->file);
                goto fail;
            }
        }
        return VLMC_OK;
    }
    if (!strcmp(cfg->model_type, "paligemma") || !strcmp(cfg->model_type, "fuyu")) {
        /* one Linear with bias: PaliGemma's projector on the tower's last hidden state, Fuyu's patch embedding */
        const bool fuyu = !strcmp(cfg->model_type, "fuyu");
        const char *base = fuyu ? "vision_embed_tokens." : "multi_modal_projector.linear.";
        char wn[128], bn[128];
        snprintf(wn, sizeof wn, "%sweight", base);
        snprintf(bn, sizeof bn, "%sbias", base);
        p->kind = PROJ_LINEAR;
        p->in_dim = fuyu ? cfg->vision.patch_size * cfg->vision.patch_size * cfg->vision.num_channels : Dv;
        p->out_dim = Dt;
        if ((s = get_mat(st, p, prefix, wn, Dt, p->in_dim, &p->w1, err)) ||
            (s = get_vec(st, p, prefix, bn, Dt, &p->b1, err)))
            goto fail;
        return VLMC_OK;
    }
    if (!strcmp(cfg->model_type, "idefics3")) {
        p->kind = PROJ_IDEFICS3;
        p->scale_factor = cfg->scale_factor;
        if (p->scale_factor <= 0 || p->scale_factor > 64)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: scale_factor %d is out of range", p->file, p->scale_factor);
        p->in_dim = Dv * p->scale_factor * p->scale_factor;
        p->out_dim = Dt;
        if ((s = get_mat(st, p, prefix, "model.connector.modality_projection.proj.weight", Dt, p->in_dim, &p->w1, err)))
            goto fail;
        return VLMC_OK;
    }
    return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: no projector for model_type \"%s\"", p->file, cfg->model_type);
fail:
    projector_free(p);
    return s;
}

vlmc_status projector_load_mlp(const safetensors *st, const char *w1, const char *b1, const char *w2, const char *b2,
                               int in_dim, int hidden_dim, int out_dim, act_kind act, projector *p, vlmc_error *err) {
    memset(p, 0, sizeof *p);
    const char *where = safetensors_count(st) ? safetensors_file_path(st, safetensors_at(st, 0)->file) : "safetensors";
    snprintf(p->file, sizeof p->file, "%s", where);
    p->kind = PROJ_LLAVA;
    p->in_dim = in_dim;
    p->hidden_dim = hidden_dim;
    p->out_dim = out_dim;
    p->act = act;
    vlmc_status s;
    if ((s = get_mat(st, p, "", w1, hidden_dim, in_dim, &p->w1, err)) ||
        (s = get_mat(st, p, "", w2, out_dim, hidden_dim, &p->w2, err)) ||
        (b1 && (s = get_vec(st, p, "", b1, hidden_dim, &p->b1, err))) ||
        (b2 && (s = get_vec(st, p, "", b2, out_dim, &p->b2, err))))
        projector_free(p);
    return s;
}

void projector_free(projector *p) {
    if (!p) return;
    for (int i = 0; i < p->n_owned; i++) free(p->owned[i]);
    p->n_owned = 0;
}

vlmc_status projector_load_mlp_norm(const safetensors *st, const char *prefix, int in_dim, int out_dim, float ln_eps,
                                    projector *p, vlmc_error *err) {
    memset(p, 0, sizeof *p);
    const char *where = safetensors_count(st) ? safetensors_file_path(st, safetensors_at(st, 0)->file) : "safetensors";
    snprintf(p->file, sizeof p->file, "%s", where);
    if (in_dim <= 0 || out_dim <= 0)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: projector sizes %d -> %d", p->file, in_dim, out_dim);
    p->kind = PROJ_MLP_NORM;
    p->in_dim = in_dim;
    p->out_dim = out_dim;
    p->act = ACT_GELU; /* nn.GELU(): the erf form */
    p->ln_eps = ln_eps;
    vlmc_status s;
    if ((s = get_mat(st, p, prefix, "0.weight", out_dim, in_dim, &p->w1, err)) ||
        (s = get_vec(st, p, prefix, "0.bias", out_dim, &p->b1, err)) ||
        (s = get_vec(st, p, prefix, "1.weight", out_dim, &p->ln1_w, err)) ||
        (s = get_vec(st, p, prefix, "1.bias", out_dim, &p->ln1_b, err)) ||
        (s = get_mat(st, p, prefix, "3.weight", out_dim, out_dim, &p->w2, err)) ||
        (s = get_vec(st, p, prefix, "3.bias", out_dim, &p->b2, err)) ||
        (s = get_vec(st, p, prefix, "4.weight", out_dim, &p->ln2_w, err)) ||
        (s = get_vec(st, p, prefix, "4.bias", out_dim, &p->ln2_b, err))) {
        projector_free(p);
        return s;
    }
    return VLMC_OK;
}

vlmc_status projector_mlp_norm_forward(const projector *p, const float *in, size_t rows, float *out,
                                       float *const *steps, vlmc_error *err) {
    const size_t E = (size_t)p->out_dim;
    float *scratch = malloc((p->scratch_floats ? p->scratch_floats : 1) * sizeof(float));
    float *a = malloc(rows * E * sizeof(float)), *b = malloc(rows * E * sizeof(float));
    if (!scratch || !a || !b) {
        free(scratch); free(a); free(b);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for the projector (%zu rows)", rows);
    }
    vision_linear(a, in, rows, &p->w1, p->b1, scratch, false);               /* 0: Linear */
    if (steps && steps[0]) memcpy(steps[0], a, rows * E * sizeof(float));
    layernorm_forward(b, a, p->ln1_w, p->ln1_b, rows, E, p->ln_eps);          /* 1: LayerNorm */
    if (steps && steps[1]) memcpy(steps[1], b, rows * E * sizeof(float));
    act_forward(p->act, b, b, rows * E);                                      /* 2: GELU */
    if (steps && steps[2]) memcpy(steps[2], b, rows * E * sizeof(float));
    vision_linear(a, b, rows, &p->w2, p->b2, scratch, false);                /* 3: Linear */
    if (steps && steps[3]) memcpy(steps[3], a, rows * E * sizeof(float));
    layernorm_forward(out, a, p->ln2_w, p->ln2_b, rows, E, p->ln_eps);        /* 4: LayerNorm */
    free(scratch); free(a); free(b);
    return VLMC_OK;
}

vlmc_status vlm_vision_load(const safetensors *st, const hf_config *cfg, vit_model *vit, projector *proj,
                            vlmc_error *err) {
    const char *root = "", *vit_prefix;
    char buf[128];
    if (!strcmp(cfg->model_type, "llava") || !strcmp(cfg->model_type, "llava_next") ||
        !strcmp(cfg->model_type, "paligemma")) {
        /* transformers 4.47: vision_tower.*, multi_modal_projector.*; >= 4.52: model.vision_tower.*, ... */
        if (!safetensors_find(st, "vision_tower.vision_model.embeddings.patch_embedding.weight") &&
            safetensors_find(st, "model.vision_tower.vision_model.embeddings.patch_embedding.weight"))
            root = "model.";
        snprintf(buf, sizeof buf, "%svision_tower.vision_model.", root);
        vit_prefix = buf;
    } else if (!strcmp(cfg->model_type, "idefics3")) {
        vit_prefix = "model.vision_model.";
    } else {
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "model_type \"%s\" is not a llava / llava_next / idefics3 / paligemma VLM",
                         cfg->model_type);
    }
    vlmc_status s = vit_load(st, vit_prefix, &cfg->vision, vit, err);
    if (s) return s;
    if ((s = projector_load(st, root, cfg, proj, err))) vit_free(vit);
    return s;
}

int projector_out_tokens(const projector *p, int tokens) {
    if (tokens <= 0) return -1;
    if (p->kind != PROJ_IDEFICS3) return tokens;
    int side = (int)sqrt((double)tokens), s = p->scale_factor;
    while (side * side > tokens) side--;
    while ((side + 1) * (side + 1) <= tokens) side++;
    if (side * side != tokens || side % s) return -1;
    return tokens / (s * s);
}

/* Idefics3Connector.pixel_shuffle for one tile: x [side·side, E] → y [(side/s)², E·s²] with
 * y[i·(side/s) + j][(dy·s + dx)·E + e] = x[(i·s + dy)·side + j·s + dx][e]
 * (the view / permute / reshape chain of modeling_idefics3.py, worked out). */
void pixel_shuffle(float *y, const float *x, int side, int E, int s) {
    int os = side / s;
    for (int i = 0; i < os; i++)
        for (int j = 0; j < os; j++) {
            float *dst = y + ((size_t)i * os + j) * (size_t)E * s * s;
            for (int dy = 0; dy < s; dy++)
                for (int dx = 0; dx < s; dx++)
                    memcpy(dst + ((size_t)dy * s + dx) * E, x + (((size_t)i * s + dy) * side + (size_t)j * s + dx) * E,
                           (size_t)E * sizeof(float));
        }
}

/* The shuffle is a permutation: its backward sends each gradient row piece back where it came from. */
void pixel_shuffle_backward(float *dx, const float *dy, int side, int E, int s) {
    int os = side / s;
    for (int i = 0; i < os; i++)
        for (int j = 0; j < os; j++) {
            const float *src = dy + ((size_t)i * os + j) * (size_t)E * s * s;
            for (int ky = 0; ky < s; ky++)
                for (int kx = 0; kx < s; kx++) {
                    float *d = dx + (((size_t)i * s + ky) * side + (size_t)j * s + kx) * E;
                    const float *g = src + ((size_t)ky * s + kx) * E;
                    for (int e = 0; e < E; e++) d[e] += g[e];
                }
        }
}

vlmc_status projector_forward(const projector *p, const float *in, int n, int tokens, int in_features, float *out,
                              vlmc_error *err) {
    int tout = projector_out_tokens(p, tokens);
    if (n <= 0 || tout <= 0)
        return vlmc_fail(err, VLMC_ERR_ARG, "%s: cannot project %d tiles of %d tokens%s", p->file, n, tokens,
                         p->kind == PROJ_IDEFICS3 ? " (pixel shuffle needs a square grid the scale factor divides)" : "");
    int want = p->kind != PROJ_IDEFICS3 ? p->in_dim : p->in_dim / (p->scale_factor * p->scale_factor);
    if (in_features != want)
        return vlmc_fail(err, VLMC_ERR_ARG, "%s: projector takes %d features per token, got %d", p->file, want,
                         in_features);
    const size_t rows = (size_t)n * tout;
    if (p->kind == PROJ_MLP_NORM) return projector_mlp_norm_forward(p, in, rows, out, NULL, err);
    float *scratch = malloc((p->scratch_floats ? p->scratch_floats : 1) * sizeof(float));
    float *tmp = malloc(rows * (size_t)(p->kind == PROJ_LLAVA ? p->hidden_dim : p->in_dim) * sizeof(float));
    vlmc_status s = VLMC_OK;
    if (!scratch || !tmp) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    } else if (p->kind == PROJ_LINEAR) {
        vision_linear(out, in, rows, &p->w1, p->b1, scratch, false);
    } else if (p->kind == PROJ_LLAVA) {
        vision_linear(tmp, in, rows, &p->w1, p->b1, scratch, false);      /* linear_1 */
        act_forward(p->act, tmp, tmp, rows * (size_t)p->hidden_dim);       /* act */
        vision_linear(out, tmp, rows, &p->w2, p->b2, scratch, false);     /* linear_2 */
    } else {
        int side = (int)lround(sqrt((double)tokens));
        for (int b = 0; b < n; b++)
            pixel_shuffle(tmp + (size_t)b * tout * p->in_dim, in + (size_t)b * tokens * in_features, side, in_features,
                          p->scale_factor);
        vision_linear(out, tmp, rows, &p->w1, NULL, scratch, false);      /* modality_projection.proj */
    }
    free(scratch);
    free(tmp);
    return s;
}

/* ---- LLaVA-NeXT anyres ---------------------------------------------------------------------------------- */

/* image_processing_utils.select_best_resolution: the pinpoint that keeps the most of the image after a
 * fit-inside downscale, then wastes the least area. */
static void select_best_resolution(const projector *p, int oh, int ow, int *bh, int *bw) {
    long max_eff = 0;
    double min_waste = INFINITY;
    *bh = p->pinpoints[0][0];
    *bw = p->pinpoints[0][1];
    for (int i = 0; i < p->n_pinpoints; i++) {
        int h = p->pinpoints[i][0], w = p->pinpoints[i][1];
        double sw = (double)w / ow, sh = (double)h / oh, scale = sw < sh ? sw : sh;
        long dw = (long)(ow * scale), dh = (long)(oh * scale);
        long eff = dw * dh < (long)ow * oh ? dw * dh : (long)ow * oh;
        double waste = (double)w * h - (double)eff;
        if (eff > max_eff || (eff == max_eff && waste < min_waste)) {
            max_eff = eff;
            min_waste = waste;
            *bh = h;
            *bw = w;
        }
    }
}

static vlmc_status check_size(const projector *p, int h, int w, vlmc_error *err) {
    if (p->kind != PROJ_LLAVA || !p->image_newline)
        return vlmc_fail(err, VLMC_ERR_ARG, "%s: anyres packing needs a llava_next projector", p->file);
    if (h <= 0 || w <= 0 || h > (1 << 20) || w > (1 << 20))
        return vlmc_fail(err, VLMC_ERR_ARG, "%s: image size %d×%d is out of range", p->file, h, w);
    return VLMC_OK;
}

vlmc_status llava_next_grid(const projector *p, int image_height, int image_width, int *rows, int *cols,
                            vlmc_error *err) {
    vlmc_status s = check_size(p, image_height, image_width, err);
    if (s) return s;
    int bh, bw;
    select_best_resolution(p, image_height, image_width, &bh, &bw);
    *rows = bh / p->tile_size; /* get_anyres_image_grid_shape: floor division */
    *cols = bw / p->tile_size;
    return VLMC_OK;
}

vlmc_status llava_next_num_tiles(const projector *p, int image_height, int image_width, int *n_tiles,
                                 vlmc_error *err) {
    vlmc_status s = check_size(p, image_height, image_width, err);
    if (s) return s;
    int bh, bw;
    select_best_resolution(p, image_height, image_width, &bh, &bw);
    /* image_size_to_num_patches counts range(0, h, size) × range(0, w, size): ceiling division */
    *n_tiles = ((bh + p->tile_size - 1) / p->tile_size) * ((bw + p->tile_size - 1) / p->tile_size) + 1;
    return VLMC_OK;
}

/* Python's int(round(x, 7)) for the non-negative values unpad_image sees. */
static long int_round7(double x) { return (long)(nearbyint(x * 1e7) / 1e7); }

static long floordiv(long a, long b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* unpad_image on a [rows·side, cols·side] feature grid: the kept row range [*y0, *y1) and column range. */
static void unpad(int oh, int ow, int ch, int cw, int *y0, int *y1, int *x0, int *x1) {
    double orig_ratio = (double)ow / oh, cur_ratio = (double)cw / ch;
    *y0 = 0; *y1 = ch; *x0 = 0; *x1 = cw;
    if (orig_ratio > cur_ratio) {
        double scale = (double)cw / ow;
        long new_h = int_round7(oh * scale);
        long pad = floordiv(ch - new_h, 2);
        *y0 = (int)pad;
        *y1 = (int)(ch - pad);
    } else {
        double scale = (double)ch / oh;
        long new_w = int_round7(ow * scale);
        long pad = floordiv(cw - new_w, 2);
        *x0 = (int)pad;
        *x1 = (int)(cw - pad);
    }
    /* Python slices clamp */
    if (*y0 < 0) *y0 = 0;
    if (*x0 < 0) *x0 = 0;
    if (*y1 > ch) *y1 = ch;
    if (*x1 > cw) *x1 = cw;
    if (*y1 < *y0) *y1 = *y0;
    if (*x1 < *x0) *x1 = *x0;
}

typedef struct pack_plan {
    int rows, cols, side, y0, y1, x0, x1;
} pack_plan;

static vlmc_status plan(const projector *p, int n_tiles, int tokens, int ih, int iw, pack_plan *pl, size_t *len,
                        vlmc_error *err) {
    vlmc_status s = check_size(p, ih, iw, err);
    if (s) return s;
    if (n_tiles < 1 || tokens < 1) return vlmc_fail(err, VLMC_ERR_ARG, "%s: nothing to pack", p->file);
    if (n_tiles == 1) { /* only the base image: its features and one newline */
        *len = (size_t)tokens + 1;
        return VLMC_OK;
    }
    if ((s = llava_next_grid(p, ih, iw, &pl->rows, &pl->cols, err))) return s;
    pl->side = p->tile_patches;
    if (pl->rows * pl->cols != n_tiles - 1 || tokens != pl->side * pl->side)
        return vlmc_fail(err, VLMC_ERR_ARG,
                         "%s: %d tiles of %d tokens do not make the %d×%d grid of %d×%d-patch tiles that image size %d×%d "
                         "selects (strategy \"full\" keeps the CLS token, which LLaVA-NeXT packing cannot place)",
                         p->file, n_tiles - 1, tokens, pl->rows, pl->cols, pl->side, pl->side, ih, iw);
    unpad(ih, iw, pl->rows * pl->side, pl->cols * pl->side, &pl->y0, &pl->y1, &pl->x0, &pl->x1);
    *len = (size_t)tokens + (size_t)(pl->y1 - pl->y0) * (size_t)(pl->x1 - pl->x0 + 1);
    return VLMC_OK;
}

vlmc_status llava_next_packed_len(const projector *p, int n_tiles, int tokens, int image_height, int image_width,
                                  size_t *len, vlmc_error *err) {
    pack_plan pl;
    return plan(p, n_tiles, tokens, image_height, image_width, &pl, len, err);
}

vlmc_status llava_next_pack(const projector *p, const float *features, int n_tiles, int tokens, int image_height,
                            int image_width, float *out, size_t *len, vlmc_error *err) {
    pack_plan pl;
    vlmc_status s = plan(p, n_tiles, tokens, image_height, image_width, &pl, len, err);
    if (s) return s;
    const size_t D = (size_t)p->out_dim;
    /* base image features first */
    memcpy(out, features, (size_t)tokens * D * sizeof(float));
    float *o = out + (size_t)tokens * D;
    if (n_tiles == 1) {
        memcpy(o, p->image_newline, D * sizeof(float));
        return VLMC_OK;
    }
    /* The grid features [rows, cols, side, side, D] seen as one [rows·side, cols·side] image of D-vectors,
     * cropped to [y0, y1) × [x0, x1), each row followed by image_newline. */
    const int side = pl.side;
    for (int y = pl.y0; y < pl.y1; y++) {
        for (int x = pl.x0; x < pl.x1; x++) {
            int tile = 1 + (y / side) * pl.cols + x / side, t = (y % side) * side + x % side;
            memcpy(o, features + ((size_t)tile * tokens + t) * D, D * sizeof(float));
            o += D;
        }
        memcpy(o, p->image_newline, D * sizeof(float));
        o += D;
    }
    return VLMC_OK;
}

static void add_row(float *d, const float *g, size_t D) {
    for (size_t i = 0; i < D; i++) d[i] += g[i];
}

vlmc_status llava_next_pack_backward(const projector *p, const float *dpacked, int n_tiles, int tokens,
                                     int image_height, int image_width, float *dfeatures, float *dnewline,
                                     vlmc_error *err) {
    pack_plan pl;
    size_t len;
    vlmc_status s = plan(p, n_tiles, tokens, image_height, image_width, &pl, &len, err);
    if (s) return s;
    const size_t D = (size_t)p->out_dim;
    /* the same walk as llava_next_pack, adding each packed row's gradient to the row it copied */
    for (int t = 0; t < tokens; t++) add_row(dfeatures + (size_t)t * D, dpacked + (size_t)t * D, D);
    const float *g = dpacked + (size_t)tokens * D;
    if (n_tiles == 1) {
        if (dnewline) add_row(dnewline, g, D);
        return VLMC_OK;
    }
    const int side = pl.side;
    for (int y = pl.y0; y < pl.y1; y++) {
        for (int x = pl.x0; x < pl.x1; x++) {
            int tile = 1 + (y / side) * pl.cols + x / side, t = (y % side) * side + x % side;
            add_row(dfeatures + ((size_t)tile * tokens + t) * D, g, D);
            g += D;
        }
        if (dnewline) add_row(dnewline, g, D);
        g += D;
    }
    return VLMC_OK;
}

/* ---- the whole image path ---------------------------------------------------------------------------------- */

vlmc_status vlm_image_features(const vit_model *vit, const projector *proj, const hf_config *cfg, const float *pixels,
                               int n, int height, int width, const uint8_t *pixel_mask, int image_h, int image_w,
                               float **out, size_t *n_rows, vlmc_error *err) {
    *out = NULL;
    *n_rows = 0;
    if (n <= 0 || height <= 0 || width <= 0)
        return vlmc_fail(err, VLMC_ERR_ARG, "%s: no image to encode", proj->file);
    const size_t per_image = (size_t)vit->C * height * width;
    vlmc_status s = VLMC_OK;
    float *sel = NULL, *feat = NULL, *packed = NULL, *kept = NULL;
    uint8_t *pmask = NULL;
    int *keep = NULL;

    if (proj->kind == PROJ_IDEFICS3) {
        /* Idefics3Model.forward: drop padding images, patch mask from the pixel mask, last_hidden_state, connector */
        keep = malloc((size_t)n * sizeof(int));
        if (!keep) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        int nr = vit_real_images(pixels, n, per_image, keep);
        if (nr == 0) {
            free(keep);
            return vlmc_fail(err, VLMC_ERR_ARG, "%s: every image is padding (all zero)", proj->file);
        }
        int T = vit_tokens(vit, height, width), tout = projector_out_tokens(proj, T);
        if (tout <= 0) {
            free(keep);
            return vlmc_fail(err, VLMC_ERR_ARG, "%s: %d×%d tiles do not pixel-shuffle by %d", proj->file, height, width,
                             proj->scale_factor);
        }
        const int gh = height / vit->P, gw = width / vit->P;
        kept = malloc((size_t)nr * per_image * sizeof(float));
        feat = malloc((size_t)nr * T * vit->D * sizeof(float));
        if (pixel_mask) pmask = malloc((size_t)nr * gh * gw);
        *out = malloc((size_t)nr * tout * proj->out_dim * sizeof(float));
        if (!kept || !feat || (pixel_mask && !pmask) || !*out) {
            s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
            goto done;
        }
        for (int i = 0; i < nr; i++) {
            memcpy(kept + (size_t)i * per_image, pixels + (size_t)keep[i] * per_image, per_image * sizeof(float));
            if (pixel_mask)
                vit_patch_mask_from_pixels(pixel_mask + (size_t)keep[i] * height * width, 1, height, width, vit->P,
                                           pmask + (size_t)i * gh * gw);
        }
        vit_outputs o = {.last_hidden_state = feat};
        if ((s = vit_encode(vit, kept, nr, height, width, pmask, &o, err)) ||
            (s = projector_forward(proj, feat, nr, T, vit->D, *out, err)))
            goto done;
        *n_rows = (size_t)nr * tout;
        goto done;
    }

    /* LLaVA / LLaVA-NeXT: hidden_states[vision_feature_layer(s)], strategy, multi_modal_projector */
    int use = n;
    if (proj->image_newline) {
        int nt;
        if ((s = llava_next_num_tiles(proj, image_h, image_w, &nt, err))) return s;
        if (nt > n)
            return vlmc_fail(err, VLMC_ERR_ARG, "%s: image size %d×%d needs %d tiles, got %d", proj->file, image_h,
                             image_w, nt, n);
        use = nt;
    }
    vit_outputs o = {0};
    if ((s = vit_select_from_config(cfg, NULL, &o, err))) return s;
    int tokens, feats;
    vit_selected_shape(vit, &o, height, width, &tokens, &feats);
    sel = malloc((size_t)use * tokens * feats * sizeof(float));
    feat = malloc((size_t)use * tokens * proj->out_dim * sizeof(float));
    if (!sel || !feat) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        goto done;
    }
    o.selected = sel;
    if ((s = vit_encode(vit, pixels, use, height, width, NULL, &o, err)) ||
        (s = projector_forward(proj, sel, use, tokens, feats, feat, err)))
        goto done;
    if (!proj->image_newline) {
        *out = feat;
        feat = NULL;
        *n_rows = (size_t)use * tokens;
        goto done;
    }
    size_t len;
    if ((s = llava_next_packed_len(proj, use, tokens, image_h, image_w, &len, err))) goto done;
    packed = malloc(len * proj->out_dim * sizeof(float));
    if (!packed) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((s = llava_next_pack(proj, feat, use, tokens, image_h, image_w, packed, &len, err))) goto done;
    *out = packed;
    packed = NULL;
    *n_rows = len;
done:
    if (s) {
        free(*out);
        *out = NULL;
        *n_rows = 0;
    }
    free(sel); free(feat); free(packed); free(kept); free(pmask); free(keep);
    return s;
}
