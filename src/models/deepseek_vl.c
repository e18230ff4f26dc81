/* DeepSeek-VL: MultiModalityCausalLM of github.com/deepseek-ai/DeepSeek-VL (commit 681bffb,
 * deepseek_vl/models/modeling_vlm.py), model_type "multi_modality", both published variants:
 *
 *   1.3B  vision_config.cls "CLIPVisionTower" with a SigLIP model_name: timm VisionTransformer (siglip_vit.py)
 *         → aligner "mlp_gelu"
 *   7B    vision_config.cls "HybridVisionTower" (clip_encoder.py): high_res_cfg = SAM-B with DeepSeek's neck and
 *         downsamples (sam.py, src/models/sam.c) on the image as given, low_res_cfg = SigLIP on the image resized by
 *         torchvision Resize(low image_size, antialias=True); concat_type "tuple" → aligner
 *         "low_high_hybrid_split_mlp_gelu" (projector.py MlpProjector)
 *
 * Config keys read: language_config (the Llama decoder, hf_config.c), vision_config.cls / params {model_name,
 * image_size, select_layer, select_feature, pixel_mean, pixel_std; high_res_cfg, low_res_cfg, concat_type},
 * aligner_config.params {projector_type, input_dim, n_embed, depth}. Tensors: vision_model.vision_tower.* (1.3B),
 * vision_model.vision_tower_{high,low}.vision_tower.* (7B; vision_model.{high,low}_layer_norm exist but the
 * forward never uses them), aligner.*, language_model.model.*, language_model.lm_head.weight.
 *
 * Forward (prepare_inputs_embeds): images [n, 3, S, S] from VLMImageProcessor (src/vision/processors.c) →
 *   CLIPVisionTower: optional Normalize(pixel_mean, pixel_std) → tower → features [n, P, Dv]
 *   HybridVisionTower: high = SAM(Normalize_high(x)) [n, 24·24, Dh], low = SigLIP(Normalize_low(Resize_aa(x)))
 * → aligner → [n, P, D] rows replacing the tokens where images_seq_mask is set (the <image_placeholder> tokens,
 * num_image_tokens per image as VLChatProcessor expands them), in the order images_emb_mask selects.
 *
 * The SigLIP tower's width, patch and mlp come from the tensors; its heads and depth are looked up by model_name
 * as create_siglip_vit does in SigLIP_MODEL_CONFIG (depth = layers + select_layer + 1 for select_layer <= 0). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/file.h"
#include "formats/json.h"
#include "kernels/conv.h"
#include "kernels/gelu.h"
#include "models/sam.h"
#include "models/vlm.h"

#define DEEPSEEK_IMAGE_TAG "<image_placeholder>"

/* siglip_vit.SigLIP_MODEL_CONFIG (heads and layers; the rest is in the tensors), plus the tiny architectures the
 * reference fixtures registered in that table (their meta.tiny_vision_arch_registry). */
static const struct siglip_arch {
    const char *name;
    int layers, heads;
} siglip_archs[] = {
    {"siglip_so400m_patch14_384", 27, 16},
    {"siglip_so400m_patch14_224", 27, 16},
    {"siglip_large_patch16_384", 24, 16},
    {"siglip_tiny_w32_d2_p8_64", 2, 4},
    {"siglip_tiny_w32_d2_p4_96", 2, 4},
};

typedef enum aligner_kind { ALIGN_LINEAR = 0, ALIGN_MLP_GELU, ALIGN_HYBRID } aligner_kind;

/* MlpProjector: [high_up_proj, low_up_proj →] linear layers with GELU between them. */
typedef struct aligner {
    aligner_kind kind;
    int in_dim, n_embed, n_layers;
    tensor high_w, low_w; /* hybrid: [n_embed/2, in_dim] each */
    const float *high_b, *low_b;
    tensor w[8];          /* linear layers, GELU before each but the first (mlp_gelu) / before each (hybrid) */
    const float *b[8];
    float *owned[10];     /* f32 copies of biases stored in another dtype */
    int n_owned;
    size_t scratch_floats; /* largest weight that is converted to f32 per use (0: all aligned f32) */
} aligner;

typedef struct tower_norm {
    bool on;
    float mean[3], std[3];
} tower_norm;

typedef struct deepseek {
    bool hybrid;
    int image_size;        /* pixels per side of the images the tower takes */
    int tokens;            /* image tokens per image */
    tower_norm norm;       /* single tower's image_norm, or the low branch's */
    tower_norm high_norm;  /* hybrid: the SAM branch's */
    int low_size;          /* hybrid: the SigLIP branch's image_size */
    sam_model sam;         /* hybrid: high-resolution branch (m->vit is the SigLIP one) */
    aligner al;
} deepseek;

/* ---- loading ---------------------------------------------------------------------------------------- */

static vlmc_status read_norm(const cJSON *params, const char *path, tower_norm *n, vlmc_error *err) {
    const cJSON *mean = json_get(params, "pixel_mean"), *std = json_get(params, "pixel_std");
    n->on = cJSON_IsArray(mean) && cJSON_IsArray(std);
    if (!n->on) return VLMC_OK;
    if (cJSON_GetArraySize(mean) != 3 || cJSON_GetArraySize(std) != 3)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: pixel_mean / pixel_std must have 3 numbers", path);
    for (int c = 0; c < 3; c++) {
        const cJSON *a = cJSON_GetArrayItem(mean, c), *b = cJSON_GetArrayItem(std, c);
        if (!cJSON_IsNumber(a) || !cJSON_IsNumber(b) || b->valuedouble == 0)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: pixel_mean / pixel_std must be numbers (std non-zero)", path);
        n->mean[c] = (float)a->valuedouble;
        n->std[c] = (float)b->valuedouble;
    }
    return VLMC_OK;
}

/* create_siglip_vit(model_name, image_size, select_layer) on the tensors under prefix, into m->vit. */
static vlmc_status load_siglip(vlm_model *m, const cJSON *params, const char *prefix, const char *path, int *image_size,
                               vlmc_error *err) {
    const char *name = json_string(params, "model_name", "siglip_large_patch16_384");
    const struct siglip_arch *a = NULL;
    for (size_t i = 0; i < sizeof siglip_archs / sizeof siglip_archs[0]; i++)
        if (!strcmp(siglip_archs[i].name, name)) a = &siglip_archs[i];
    if (!a) return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: vision model_name \"%s\" is not a known SigLIP tower", path, name);
    int select_layer = (int)json_int(params, "select_layer", -2); /* CLIPVisionTower's default */
    int depth = select_layer <= 0 ? a->layers + select_layer + 1 : select_layer;
    if (depth > a->layers) depth = a->layers;
    if (depth < 1) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: select_layer %d leaves no SigLIP block", path, select_layer);
    *image_size = (int)json_int(params, "image_size", 336);
    if (*image_size < 1 || *image_size > 16384) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: bad vision image_size", path);
    vlmc_status s = vit_load_timm(m->st, prefix, *image_size, a->heads, depth, &m->vit, err);
    if (s) return s;
    m->has_vision = true;
    return VLMC_OK;
}

/* aligner.<name>.weight [rows, cols] as a view (F32 / F16 / BF16), its bias as f32. */
static vlmc_status al_mat(vlm_model *m, deepseek *d, const char *name, int64_t rows, int64_t cols, tensor *w,
                          const float **b, vlmc_error *err) {
    aligner *al = &d->al;
    char n[128];
    snprintf(n, sizeof n, "aligner.%s.weight", name);
    vlmc_status s = safetensors_get(m->st, n, 2, (int64_t[]){rows, cols}, w, err);
    if (s) return s;
    snprintf(n, sizeof n, "aligner.%s.bias", name);
    tensor bt;
    if ((s = safetensors_get(m->st, n, 1, (int64_t[]){rows}, &bt, err))) return s;
    for (const tensor *t = w; t; t = t == w ? &bt : NULL)
        if (t->type != DT_F32 && t->type != DT_F16 && t->type != DT_BF16)
            return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: aligner tensor %s has dtype %s (F32, F16 or BF16 expected)",
                             safetensors_file_path(m->st, 0), n, dtype_name(t->type));
    if (!vision_weight_is_direct(w) && (size_t)(rows * cols) > al->scratch_floats) al->scratch_floats = (size_t)(rows * cols);
    if (vision_weight_is_direct(&bt)) {
        *b = bt.data;
        return VLMC_OK;
    }
    float *p = malloc((size_t)rows * sizeof(float));
    if (!p) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    al->owned[al->n_owned++] = p; /* at most 8 layers + 2 up-projections */
    *b = p;
    return convert_to_f32(p, bt.data, bt.type, (size_t)rows, err);
}

static vlmc_status load_aligner(vlm_model *m, deepseek *d, const cJSON *ac, const char *path, vlmc_error *err) {
    const cJSON *p = json_get(ac, "params");
    aligner *al = &d->al;
    const char *type = json_string(p, "projector_type", "");
    al->in_dim = (int)json_int(p, "input_dim", 0);
    al->n_embed = (int)json_int(p, "n_embed", 0);
    int depth = (int)json_int(p, "depth", 1);
    if (al->in_dim < 1 || al->n_embed < 2 || depth < 1 || depth > 8)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: aligner_config.params needs input_dim, n_embed and depth 1..8", path);
    if (al->n_embed != m->lm.dim)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: aligner n_embed %d differs from the decoder's hidden size %d", path,
                         al->n_embed, m->lm.dim);
    vlmc_status s;
    char n[32];
    const int E = al->n_embed;
    if (!strcmp(type, "linear")) {
        al->kind = ALIGN_LINEAR;
        al->n_layers = 1;
        return al_mat(m, d, "layers", E, al->in_dim, &al->w[0], &al->b[0], err);
    }
    if (!strcmp(type, "mlp_gelu")) { /* layers.0 = Linear(in, E), then (GELU, Linear(E, E)) × (depth - 1) */
        al->kind = ALIGN_MLP_GELU;
        for (int i = 0; i < depth; i++) {
            snprintf(n, sizeof n, "layers.%d", 2 * i);
            if ((s = al_mat(m, d, n, E, i ? E : al->in_dim, &al->w[i], &al->b[i], err))) return s;
        }
        al->n_layers = depth;
        return VLMC_OK;
    }
    if (!strcmp(type, "low_high_hybrid_split_mlp_gelu")) { /* up-projections, then (GELU, Linear(E, E)) × (depth - 1) */
        al->kind = ALIGN_HYBRID;
        if (E % 2) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: the hybrid aligner needs an even n_embed", path);
        if ((s = al_mat(m, d, "high_up_proj", E / 2, al->in_dim, &al->high_w, &al->high_b, err)) ||
            (s = al_mat(m, d, "low_up_proj", E / 2, al->in_dim, &al->low_w, &al->low_b, err)))
            return s;
        for (int i = 0; i < depth - 1; i++) {
            snprintf(n, sizeof n, "layers.%d", 2 * i + 1);
            if ((s = al_mat(m, d, n, E, E, &al->w[i], &al->b[i], err))) return s;
        }
        al->n_layers = depth - 1;
        return VLMC_OK;
    }
    return vlmc_fail(err, VLMC_ERR_UNSUPPORTED,
                     "%s: aligner projector_type \"%s\" is not supported (linear, mlp_gelu, low_high_hybrid_split_mlp_gelu are)",
                     path, type);
}

/* The id of <image_placeholder> from the folder's added_tokens.json or tokenizer.json (VLChatProcessor adds the
 * tag as a special token); -1 when neither names it. */
static int find_image_token(const char *dir) {
    int id = -1;
    char *p = path_join(dir, "added_tokens.json");
    cJSON *j = NULL;
    if (p && file_exists(p) && json_parse_file(p, 16u << 20, &j, NULL) == VLMC_OK) id = (int)json_int(j, DEEPSEEK_IMAGE_TAG, -1);
    cJSON_Delete(j);
    free(p);
    j = NULL;
    p = path_join(dir, "tokenizer.json");
    if (id < 0 && p && file_exists(p) && json_parse_file(p, 256u << 20, &j, NULL) == VLMC_OK) {
        const cJSON *e;
        cJSON_ArrayForEach(e, json_get(j, "added_tokens")) if (!strcmp(json_string(e, "content", ""), DEEPSEEK_IMAGE_TAG))
            id = (int)json_int(e, "id", -1);
    }
    cJSON_Delete(j);
    free(p);
    return id;
}

static void deepseek_free(vlm_model *m) {
    deepseek *d = m->priv;
    if (!d) return;
    for (int i = 0; i < d->al.n_owned; i++) free(d->al.owned[i]);
    sam_free(&d->sam);
    free(d);
    m->priv = NULL;
}

static vlmc_status deepseek_load(vlm_model *m, vlmc_error *err) {
    const char *file = safetensors_file_path(m->st, 0);
    char *dir = path_dirname(file), *path = dir ? path_join(dir, "config.json") : NULL;
    cJSON *root = NULL;
    deepseek *d = m->priv = calloc(1, sizeof(deepseek));
    vlmc_status s = VLMC_OK;
    if (!dir || !path || !d) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((s = json_parse_file(path, 16u << 20, &root, err))) goto done;
    if ((s = llama_model_load(&m->lm, &m->cfg.text, m->st, "language_model.model.", "language_model.lm_head.weight", err))) {
        m->lm.layers = NULL;
        goto done;
    }
    const cJSON *vc = json_get(root, "vision_config"), *vp = json_get(vc, "params");
    const char *cls = json_string(vc, "cls", "");
    if (!cJSON_IsObject(vp)) {
        s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: vision_config.params is missing", path);
        goto done;
    }
    if (strstr(cls, "HybridVisionTower")) {
        d->hybrid = true;
        const cJSON *hi = json_get(vp, "high_res_cfg"), *lo = json_get(vp, "low_res_cfg");
        const char *concat = json_string(vp, "concat_type", "tuple");
        if (!cJSON_IsObject(hi) || !cJSON_IsObject(lo) || strcmp(concat, "tuple")) {
            s = vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: HybridVisionTower needs high_res_cfg, low_res_cfg and concat_type "
                                                     "\"tuple\"", path);
            goto done;
        }
        if (strncmp(json_string(hi, "model_name", ""), "sam", 3)) {
            s = vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: high_res_cfg.model_name must be a SAM tower", path);
            goto done;
        }
        if ((s = read_norm(hi, path, &d->high_norm, err)) || (s = read_norm(lo, path, &d->norm, err)) ||
            (s = sam_load(m->st, "vision_model.vision_tower_high.vision_tower.", &d->sam, err)) ||
            (s = load_siglip(m, lo, "vision_model.vision_tower_low.vision_tower.", path, &d->low_size, err)))
            goto done;
        d->image_size = (int)json_int(hi, "image_size", 1024);
        int side = sam_out_side(&d->sam), lside = d->low_size / m->vit.P;
        if (d->image_size != d->sam.image_size || side * side != lside * lside || sam_out_channels(&d->sam) != m->vit.D) {
            s = vlmc_fail(err, VLMC_ERR_FORMAT,
                          "%s: the SAM branch (%d px, %d×%d×%d out) and the SigLIP branch (%d px → %d×%d×%d) do not fit",
                          path, d->sam.image_size, side, side, sam_out_channels(&d->sam), d->low_size, lside, lside, m->vit.D);
            goto done;
        }
        d->tokens = side * side;
    } else if (strstr(cls, "CLIPVisionTower")) {
        if (strncmp(json_string(vp, "model_name", "siglip"), "siglip", 6)) {
            s = vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: only SigLIP CLIPVisionTower towers are supported", path);
            goto done;
        }
        if ((s = read_norm(vp, path, &d->norm, err)) ||
            (s = load_siglip(m, vp, "vision_model.vision_tower.", path, &d->image_size, err)))
            goto done;
        d->tokens = vit_tokens(&m->vit, d->image_size, d->image_size);
    } else {
        s = vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: vision_config.cls \"%s\" is not supported", path, cls);
        goto done;
    }
    if ((s = load_aligner(m, d, json_get(root, "aligner_config"), path, err))) goto done;
    if (d->al.in_dim != m->vit.D) {
        s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: aligner input_dim %d differs from the vision width %d", path, d->al.in_dim,
                      m->vit.D);
        goto done;
    }
    m->image_seq_len = d->tokens;
    m->image_token_id = find_image_token(dir);
    if (m->image_token_id >= m->lm.vocab) m->image_token_id = -1;
done:
    if (s) { /* vlm_load does not free a family that failed to load */
        deepseek_free(m);
        if (m->has_vision) vit_free(&m->vit);
        if (m->lm.layers) llama_model_free(&m->lm);
        m->has_vision = false;
    }
    cJSON_Delete(root);
    free(path);
    free(dir);
    return s;
}

/* ---- forward ------------------------------------------------------------------------------------------ */

/* torchvision Normalize on [n, 3, H, W]: (x - mean) / std per channel, in float. */
static void normalize(float *dst, const float *src, int n, size_t plane, const tower_norm *t) {
    for (int b = 0; b < n; b++)
        for (int c = 0; c < 3; c++) {
            const float *x = src + ((size_t)b * 3 + c) * plane;
            float *y = dst + ((size_t)b * 3 + c) * plane;
            for (size_t i = 0; i < plane; i++) y[i] = t->on ? (x[i] - t->mean[c]) / t->std[c] : x[i];
        }
}

/* aligner on rows of features (hybrid: high and low [R, in_dim] each) → out [R, n_embed]; tmp [R, n_embed]. */
static void aligner_forward(const aligner *al, const float *x, const float *low, size_t R, float *out, float *tmp,
                            float *high_up, float *low_up, float *scratch) {
    const int E = al->n_embed;
    float *cur = out, *other = tmp;
    int first = 0;
    if (al->kind == ALIGN_HYBRID) {
        vision_linear(high_up, x, R, &al->high_w, al->high_b, scratch, false);
        vision_linear(low_up, low, R, &al->low_w, al->low_b, scratch, false);
        for (size_t r = 0; r < R; r++) { /* torch.concat([high_x, low_x], dim=-1) */
            memcpy(cur + r * E, high_up + r * (E / 2), (size_t)(E / 2) * sizeof(float));
            memcpy(cur + r * E + E / 2, low_up + r * (E / 2), (size_t)(E / 2) * sizeof(float));
        }
    } else {
        vision_linear(cur, x, R, &al->w[0], al->b[0], scratch, false);
        first = 1;
    }
    for (int i = first; i < al->n_layers; i++) {
        gelu_forward(cur, cur, R * (size_t)E);
        vision_linear(other, cur, R, &al->w[i], al->b[i], scratch, false);
        float *t = cur;
        cur = other;
        other = t;
    }
    if (cur != out) memcpy(out, cur, R * (size_t)E * sizeof(float));
}

static vlmc_status deepseek_features_len(const vlm_model *m, const vlm_images *im, size_t *n, vlmc_error *err) {
    (void)err;
    *n = (size_t)im->n_tiles * (size_t)m->image_seq_len;
    return VLMC_OK;
}

/* An extra output (NULL when not wanted). */
static float *extra(vlm_vision_out *out, const char *name, int ndim, const int64_t *shape, bool *oom) {
    if (!out->want_extras) return NULL;
    float *p = vlm_vision_out_add_extra(out, name, ndim, shape, NULL);
    if (!p) *oom = true;
    return p;
}

/* [s, s, c] (NHWC) → [c, s, s] */
static void to_nchw(float *dst, const float *src, int side, int c) {
    for (int k = 0; k < c; k++)
        for (int i = 0; i < side * side; i++) dst[(size_t)k * side * side + i] = src[(size_t)i * c + k];
}

/* The SigLIP tower on n images x [n, 3, S, S] → feat [n, P, D]; intermediates under the fixture's names. */
static vlmc_status run_siglip(const vlm_model *m, const float *x, int n, int S, float *feat, vlm_vision_out *out,
                              bool *oom, vlmc_error *err) {
    const int64_t P = vit_tokens(&m->vit, S, S), D = m->vit.D, L = m->vit.L;
    float *patch = extra(out, "siglip_patch_embed", 3, (int64_t[]){n, P, D}, oom);
    float *embed = extra(out, "siglip_embed", 3, (int64_t[]){n, P, D}, oom);
    float *blocks = extra(out, "siglip_block_outputs", 4, (int64_t[]){L, n, P, D}, oom);
    float *hidden = out->want_extras ? malloc((size_t)(L + 1) * n * P * D * sizeof(float)) : NULL;
    if (*oom || (out->want_extras && !hidden)) {
        free(hidden);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for the SigLIP intermediates");
    }
    vit_outputs o = {.patch_embeds = patch, .hidden_states = hidden, .last_hidden_state = feat};
    vlmc_status s = vit_encode(&m->vit, x, n, S, S, NULL, &o, err);
    if (!s && hidden) {
        memcpy(embed, hidden, (size_t)n * P * D * sizeof(float));
        memcpy(blocks, hidden + (size_t)n * P * D, (size_t)L * n * P * D * sizeof(float));
        vlm_vision_out_add_extra(out, "siglip_output", 3, (int64_t[]){n, P, D}, feat);
    }
    free(hidden);
    return s;
}

/* SAM on each image of x [n, 3, S, S] → high [n, s·s, C]; its stages under the fixture's names (maps NCHW). */
static vlmc_status run_sam(const sam_model *sm, const float *x, int n, float *high, vlm_vision_out *out, bool *oom,
                           vlmc_error *err) {
    const int64_t g = sm->grid, D = sm->D, O = sm->out_chans, NI = SAM_NECK_SIZE, s = sam_out_side(sm),
                  C = sam_out_channels(sm), L = sm->L;
    float *embed = extra(out, "sam_embed", 4, (int64_t[]){n, g, g, D}, oom);
    float *blocks = extra(out, "sam_block_outputs", 5, (int64_t[]){L, n, g, g, D}, oom);
    float *neck = extra(out, "sam_neck", 4, (int64_t[]){n, O, g, g}, oom);
    float *neck_i = extra(out, "sam_neck_interp", 4, (int64_t[]){n, O, NI, NI}, oom);
    float *down = extra(out, "sam_downsamples", 4, (int64_t[]){n, C, s, s}, oom);
    float *neck_hd = sm->has_hd ? extra(out, "sam_neck_hd", 4, (int64_t[]){n, O, g, g}, oom) : NULL;
    float *neck_hd_i = sm->has_hd ? extra(out, "sam_neck_hd_interp", 4, (int64_t[]){n, O, NI, NI}, oom) : NULL;
    float *hd_down = sm->has_hd ? extra(out, "sam_hd_downsamples", 4, (int64_t[]){n, C, s, s}, oom) : NULL;
    float *sam_out = extra(out, "sam_output", 4, (int64_t[]){n, C, s, s}, oom);
    const size_t N = (size_t)g * g * D, big = (size_t)NI * NI * O;
    float *st_blocks = malloc((size_t)L * N * sizeof(float)), *st_neck = malloc((size_t)g * g * O * 2 * sizeof(float));
    float *st_down = malloc((size_t)s * s * C * 2 * sizeof(float)), *st_map = malloc(big * sizeof(float) * 2);
    vlmc_status st = VLMC_OK;
    if (*oom || !st_blocks || !st_neck || !st_down || !st_map) {
        st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for the SAM branch");
        goto done;
    }
    const size_t img = (size_t)3 * sm->image_size * sm->image_size, hs = (size_t)s * s * C;
    for (int b = 0; b < n; b++) {
        sam_outputs so = {.embed = embed ? embed + (size_t)b * N : NULL,
                          .blocks = blocks ? st_blocks : NULL,
                          .neck = st_neck, .neck_hd = st_neck + (size_t)g * g * O,
                          .neck_interp = st_map, .neck_hd_interp = st_map + big,
                          .down = st_down, .hd_down = st_down + hs,
                          .out = high + (size_t)b * hs};
        if ((st = sam_encode(sm, x + (size_t)b * img, &so, err))) goto done;
        if (!out->want_extras) continue;
        for (int64_t l = 0; l < L; l++) memcpy(blocks + ((size_t)l * n + b) * N, st_blocks + (size_t)l * N, N * sizeof(float));
        to_nchw(neck + (size_t)b * g * g * O, so.neck, (int)g, (int)O);
        to_nchw(neck_i + (size_t)b * big, so.neck_interp, (int)NI, (int)O);
        to_nchw(down + (size_t)b * hs, so.down, (int)s, (int)C);
        to_nchw(sam_out + (size_t)b * hs, so.out, (int)s, (int)C);
        if (sm->has_hd) {
            to_nchw(neck_hd + (size_t)b * g * g * O, so.neck_hd, (int)g, (int)O);
            to_nchw(neck_hd_i + (size_t)b * big, so.neck_hd_interp, (int)NI, (int)O);
            to_nchw(hd_down + (size_t)b * hs, so.hd_down, (int)s, (int)C);
        }
    }
done:
    free(st_blocks);
    free(st_neck);
    free(st_down);
    free(st_map);
    return st;
}

static vlmc_status deepseek_encode(const vlm_model *m, const vlm_images *im, vlm_vision_out *out, vlmc_error *err) {
    const deepseek *d = m->priv;
    const int n = im->n_tiles, S = d->image_size, T2 = d->tokens, Dv = m->vit.D, E = d->al.n_embed;
    if (im->height != S || im->width != S)
        return vlmc_fail(err, VLMC_ERR_ARG, "deepseek_vl: images are %d×%d, the vision tower takes %d×%d", im->height,
                         im->width, S, S);
    const size_t plane = (size_t)S * S, R = (size_t)n * T2;
    vlmc_status s = VLMC_OK;
    bool oom = false;
    float *x = malloc((size_t)n * 3 * plane * sizeof(float)), *feat = malloc(R * Dv * sizeof(float));
    float *high = NULL, *low_rs = NULL, *low_in = NULL, *tmp = malloc(R * E * sizeof(float));
    float *high_up = NULL, *low_up = NULL;
    float *scratch = malloc((d->al.scratch_floats ? d->al.scratch_floats : 1) * sizeof(float));
    if (!x || !feat || !tmp || !scratch) goto oom;
    if (!d->hybrid) {
        /* CLIPVisionTower: [image_norm →] SigLIP */
        normalize(x, im->pixels, n, plane, &d->norm);
        if (out->want_extras && !vlm_vision_out_add_extra(out, "siglip_input", 4, (int64_t[]){n, 3, S, S}, x)) goto oom;
        if ((s = run_siglip(m, x, n, S, feat, out, &oom, err))) goto done;
        if (out->want_extras && !vlm_vision_out_add_extra(out, "vision_features", 3, (int64_t[]){n, T2, Dv}, feat)) goto oom;
        aligner_forward(&d->al, feat, NULL, R, out->features, tmp, NULL, NULL, scratch);
    } else {
        /* HybridVisionTower: high = SAM(norm_high(x)), low = SigLIP(norm_low(resize_aa(x))) */
        const int ls = d->low_size;
        const size_t lplane = (size_t)ls * ls;
        high = malloc(R * Dv * sizeof(float));
        low_rs = malloc((size_t)n * 3 * lplane * sizeof(float));
        low_in = malloc((size_t)n * 3 * lplane * sizeof(float));
        high_up = malloc(R * (E / 2) * sizeof(float));
        low_up = malloc(R * (E / 2) * sizeof(float));
        float *aa_tmp = malloc((size_t)3 * S * ls * sizeof(float));
        if (!high || !low_rs || !low_in || !high_up || !low_up || !aa_tmp) {
            free(aa_tmp);
            goto oom;
        }
        int bad = 0;
        for (int b = 0; b < n; b++)
            bad |= resize_bilinear_aa_nchw(low_rs + (size_t)b * 3 * lplane, ls, ls, im->pixels + (size_t)b * 3 * plane, 3, S,
                                           S, aa_tmp);
        free(aa_tmp);
        if (bad) {
            s = vlmc_fail(err, VLMC_ERR_ARG, "deepseek_vl: cannot resize %d px images to %d px", S, ls);
            goto done;
        }
        normalize(x, im->pixels, n, plane, &d->high_norm);
        normalize(low_in, low_rs, n, lplane, &d->norm);
        if (out->want_extras && (!vlm_vision_out_add_extra(out, "high_input", 4, (int64_t[]){n, 3, S, S}, x) ||
                                 !vlm_vision_out_add_extra(out, "low_resized", 4, (int64_t[]){n, 3, ls, ls}, low_rs) ||
                                 !vlm_vision_out_add_extra(out, "low_input", 4, (int64_t[]){n, 3, ls, ls}, low_in)))
            goto oom;
        if ((s = run_sam(&d->sam, x, n, high, out, &oom, err)) || (s = run_siglip(m, low_in, n, ls, feat, out, &oom, err)))
            goto done;
        aligner_forward(&d->al, high, feat, R, out->features, tmp, high_up, low_up, scratch);
        if (out->want_extras && (!vlm_vision_out_add_extra(out, "high_features", 3, (int64_t[]){n, T2, Dv}, high) ||
                                 !vlm_vision_out_add_extra(out, "low_features", 3, (int64_t[]){n, T2, Dv}, feat) ||
                                 !vlm_vision_out_add_extra(out, "aligner_high_up", 3, (int64_t[]){n, T2, E / 2}, high_up) ||
                                 !vlm_vision_out_add_extra(out, "aligner_low_up", 3, (int64_t[]){n, T2, E / 2}, low_up)))
            goto oom;
    }
    out->vit_tokens = 0; /* no hidden_states / selected: the intermediates are extras */
    out->proj_tokens = T2;
    out->n_features = R;
    if (out->projector_output) memcpy(out->projector_output, out->features, R * E * sizeof(float));
    goto done;
oom:
    s = vlmc_fail(err, VLMC_ERR_NOMEM, "deepseek_vl: out of memory for %d images", n);
done:
    free(x); free(feat); free(high); free(low_rs); free(low_in); free(tmp); free(high_up); free(low_up); free(scratch);
    return s;
}

/* VLChatProcessor: each <image_placeholder> becomes num_image_tokens copies of itself. */
static vlmc_status deepseek_image_prompt(const vlm_model *m, const vlm_image_info *info, strbuf *out, vlmc_error *err) {
    (void)info;
    if (m->image_token_id < 0)
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "deepseek_vl: the tokenizer has no %s token", DEEPSEEK_IMAGE_TAG);
    for (int i = 0; i < m->image_seq_len; i++) strbuf_puts(out, DEEPSEEK_IMAGE_TAG);
    return VLMC_OK;
}

static const char *const deepseek_types[] = {"multi_modality", NULL};

const vlm_family vlm_family_deepseek_vl = {
    .model_types = deepseek_types,
    .hf_class = "MultiModalityCausalLM",
    .load = deepseek_load,
    .features_len = deepseek_features_len,
    .encode = deepseek_encode,
    .image_prompt = deepseek_image_prompt,
    .free = deepseek_free,
    .original_inputs = true,
};
