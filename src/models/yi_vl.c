/* Yi-VL: the original LLaVA code as 01-ai/Yi ships it (VL/llava, commit f73194c): llava.model.LlavaLlamaForCausalLM
 * (LlavaMetaForCausalLM.prepare_inputs_labels_for_multimodal), CLIPVisionTower, build_vision_projector's
 * "mlp2x_gelu_Norm", and llava.mm_utils.expand2square.
 *
 * Layout of the released folders: config.json is a flat Llama config (model_type "llava", architectures
 * ["LlavaLlamaForCausalLM"]) plus mm_* keys; model.safetensors holds the decoder (model.*, lm_head.weight) and the
 * projector (model.mm_projector.{0,1,3,4}); the CLIP tower is a folder of its own, mm_vision_tower = "./vit/<name>",
 * with its config.json (CLIPVisionModel), model.safetensors (vision_model.*) and preprocessor_config.json.
 * Config keys read: mm_vision_tower, mm_hidden_size, mm_projector_type (mlp2x_gelu_Norm), mm_vision_select_layer,
 * mm_vision_select_feature ("patch" drops the CLS token, "cls_patch" keeps it), image_aspect_ratio ("pad":
 * expand2square), mm_use_im_start_end (must be false), and the Llama keys (see llama.h).
 *
 * Forward: image (uint8 RGB) → expand2square on the processor's image_mean × 255 (truncated to int) → the tower's
 * CLIPImageProcessor → CLIP hidden_states[mm_vision_select_layer] (CLS dropped) → mm_projector = Linear, LayerNorm,
 * GELU, Linear, LayerNorm → P feature rows per image. The prompt (tokenizer_image_token) holds one id -200
 * (IMAGE_TOKEN_INDEX) per image where "<image_placeholder>" was; the embedding sequence is embed(ids before),
 * the P rows, embed(ids after): T - 1 + P positions per image. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/file.h"
#include "formats/json.h"
#include "models/vlm.h"
#include "vision/processors.h"

enum { YI_IMAGE_INDEX = -200 }; /* llava.constants.IMAGE_TOKEN_INDEX */

typedef struct yi_state {
    image_proc proc;    /* vit/<name>/preprocessor_config.json */
    uint8_t pad_rgb[3]; /* expand2square background: int(image_mean[c] * 255) */
} yi_state;

static bool yi_detect(const hf_config *cfg) { return cfg->original_llava_layout; }

static void yi_free(vlm_model *m) {
    free(m->priv);
    m->priv = NULL;
}

/* The tower folder named by mm_vision_tower, inside the model folder (malloc'ed into *out). */
static vlmc_status tower_dir(const vlm_model *m, const cJSON *root, const char *cfg_path, char **out, vlmc_error *err) {
    const char *vt = json_string(root, "mm_vision_tower", NULL);
    *out = NULL;
    if (!vt) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: no mm_vision_tower", cfg_path);
    if (vt[0] == '/' || strstr(vt, ".."))
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: mm_vision_tower \"%s\" must be a folder inside the model folder",
                         cfg_path, vt);
    char *d = path_join(m->dir, vt);
    if (!d) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    if (!file_is_dir(d)) {
        vlmc_status s = vlmc_fail(err, VLMC_ERR_IO, "%s: mm_vision_tower folder %s does not exist", cfg_path, d);
        free(d);
        return s;
    }
    *out = d;
    return VLMC_OK;
}

/* Reads the tower's config and processor, sets the LLaVA selection keys of m->cfg from the mm_* keys. */
static vlmc_status yi_read_config(vlm_model *m, const char *vdir, yi_state *ys, const cJSON *root, const char *cfg_path,
                                  vlmc_error *err) {
    hf_config vc;
    vlmc_status s = hf_config_load(vdir, &vc, err);
    if (s) return s;
    if (!vc.has_vision || strcmp(vc.vision.model_type, "clip_vision_model"))
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s/config.json: the tower must be a CLIPVisionModel", vdir);
    m->cfg.vision = vc.vision;
    m->cfg.has_vision = true;
    const char *ptype = json_string(root, "mm_projector_type", "linear");
    if (strcmp(ptype, "mlp2x_gelu_Norm"))
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: mm_projector_type \"%s\" is not supported (Yi-VL: mlp2x_gelu_Norm)",
                         cfg_path, ptype);
    if (json_bool(root, "mm_use_im_start_end", false))
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: mm_use_im_start_end is not supported", cfg_path);
    const char *aspect = json_string(root, "image_aspect_ratio", "square");
    if (strcmp(aspect, "pad"))
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: image_aspect_ratio \"%s\" is not supported (Yi-VL: pad)",
                         cfg_path, aspect);
    const int L = vc.vision.num_hidden_layers, layer = (int)json_int(root, "mm_vision_select_layer", -2);
    if (layer < -(L + 1) || layer > L)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: mm_vision_select_layer %d is outside the %d-layer tower", cfg_path,
                         layer, L);
    const char *feat = json_string(root, "mm_vision_select_feature", "patch");
    if (strcmp(feat, "patch") && strcmp(feat, "cls_patch"))
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: mm_vision_select_feature \"%s\" is neither patch nor cls_patch",
                         cfg_path, feat);
    m->cfg.n_vision_feature_layers = 1;
    m->cfg.vision_feature_layers[0] = layer;
    snprintf(m->cfg.vision_feature_select_strategy, sizeof m->cfg.vision_feature_select_strategy, "%s",
             strcmp(feat, "patch") ? "full" : "default");
    if ((int)json_int(root, "mm_hidden_size", vc.vision.hidden_size) != vc.vision.hidden_size)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: mm_hidden_size differs from the tower's hidden_size %d", cfg_path,
                         vc.vision.hidden_size);
    /* the image processor of the tower folder, and expand2square's background colour */
    char *pp = path_join(vdir, "preprocessor_config.json");
    cJSON *pj = NULL;
    if (!pp) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    s = json_parse_file(pp, 1u << 20, &pj, err);
    if (!s) s = image_proc_from_json(pj, pp, &ys->proc, err);
    if (!s && ys->proc.kind != PROC_CLIP)
        s = vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: Yi-VL's tower takes a CLIPImageProcessor", pp);
    for (int c = 0; c < 3 && !s; c++) ys->pad_rgb[c] = (uint8_t)(int)(ys->proc.mean[c] * 255.0);
    cJSON_Delete(pj);
    free(pp);
    return s;
}

static vlmc_status yi_load(vlm_model *m, vlmc_error *err) {
    char *cfg_path = path_join(m->dir, "config.json"), *vdir = NULL;
    cJSON *root = NULL;
    yi_state *ys = calloc(1, sizeof *ys);
    vlmc_status s;
    if (!cfg_path || !ys) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        goto done;
    }
    m->priv = ys;
    if ((s = json_parse_file(cfg_path, 16u << 20, &root, err)) || (s = tower_dir(m, root, cfg_path, &vdir, err)) ||
        (s = yi_read_config(m, vdir, ys, root, cfg_path, err)))
        goto done;
    if ((s = llama_model_load(&m->lm, &m->cfg.text, m->st, "model.", "lm_head.weight", err))) {
        m->lm.layers = NULL;
        goto done;
    }
    if ((s = safetensors_open(vdir, &m->st_vision, err)) ||
        (s = vit_load(m->st_vision, "vision_model.", &m->cfg.vision, &m->vit, err)))
        goto done;
    if ((s = projector_load_mlp_norm(m->st, "model.mm_projector.", m->vit.D, m->lm.dim, 1e-5f, &m->proj, err))) {
        vit_free(&m->vit);
        goto done;
    }
    m->has_vision = true;
    m->image_token_id = -1; /* the image index -200 is no vocabulary id: yi_embed expands it */
done:
    cJSON_Delete(root);
    free(cfg_path);
    free(vdir);
    return s;
}

/* encode_images: tower → selection → mm_projector, one image per tile. proj_steps (NULL or 4 arrays) receive the
 * projector's intermediate steps. */
static vlmc_status yi_encode_steps(const vlm_model *m, const vlm_images *im, vlm_vision_out *out,
                                   float *const *proj_steps, vlmc_error *err) {
    for (int i = 0; i < im->n_images; i++)
        if (im->tiles[i] != 1) return vlmc_fail(err, VLMC_ERR_ARG, "Yi-VL: image %d has %d tiles, expected 1", i, im->tiles[i]);
    float *own = NULL;
    vlmc_status s = vlm_llava_select(m, im, out, &own, err);
    if (s) return s;
    const float *sel = out->selected ? out->selected : own;
    const size_t rows = (size_t)im->n_tiles * out->sel_tokens;
    s = projector_mlp_norm_forward(&m->proj, sel, rows, out->features, proj_steps, err);
    free(own);
    if (s) return s;
    out->proj_tokens = out->sel_tokens;
    out->n_features = rows;
    if (out->projector_output) memcpy(out->projector_output, out->features, rows * m->lm.dim * sizeof(float));
    return VLMC_OK;
}

static vlmc_status yi_encode(const vlm_model *m, const vlm_images *im, vlm_vision_out *out, vlmc_error *err) {
    return yi_encode_steps(m, im, out, NULL, err);
}

static vlmc_status yi_image_prompt(const vlm_model *m, const vlm_image_info *info, strbuf *out, vlmc_error *err) {
    (void)m; (void)info; (void)out;
    return vlmc_fail(err, VLMC_ERR_UNSUPPORTED,
                     "Yi-VL: prompts hold the image index -200 (tokenizer_image_token), which the chat path does not build");
}

/* llava.mm_utils.expand2square: the image pasted at the centre of a square of the longer side filled with bg. */
static vlmc_status expand2square(const rgb_image *in, const uint8_t bg[3], rgb_image *out, vlmc_error *err) {
    const int S = in->width > in->height ? in->width : in->height;
    out->width = out->height = S;
    if (!(out->data = malloc((size_t)S * S * 3))) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < (size_t)S * S; i++) memcpy(out->data + 3 * i, bg, 3);
    const int x0 = (S - in->width) / 2, y0 = (S - in->height) / 2;
    for (int y = 0; y < in->height; y++)
        memcpy(out->data + ((size_t)(y0 + y) * S + x0) * 3, in->data + (size_t)y * in->width * 3, (size_t)in->width * 3);
    return VLMC_OK;
}

/* process_images with image_aspect_ratio "pad": expand2square, then the tower's CLIPImageProcessor (po's
 * pixel_values [1, 3, S, S]); padded is kept for the dump. */
static vlmc_status yi_prepare(const yi_state *ys, const rgb_image *im, rgb_image *padded, proc_output *po,
                              vlmc_error *err) {
    vlmc_status s = expand2square(im, ys->pad_rgb, padded, err);
    return s ? s : image_proc_run(&ys->proc, padded, po, err);
}

/* The family's preprocess hook: one tile (its steps are dumped by yi_dump, not here). */
static vlmc_status yi_preprocess(const vlm_model *m, const uint8_t *rgb, int height, int width, vlm_prepared *out,
                                 vlm_dump_out *steps, vlmc_error *err) {
    (void)steps;
    rgb_image im = {.width = width, .height = height, .data = (uint8_t *)rgb}, padded = {0};
    proc_output po = {0};
    vlmc_status s = yi_prepare(m->priv, &im, &padded, &po, err);
    if (!s) {
        *out = (vlm_prepared){.pixels = po.pixel_values, .n_tiles = 1, .height = po.frame_h, .width = po.frame_w};
        po.pixel_values = NULL;
    }
    rgb_image_free(&padded);
    proc_output_free(&po);
    return s;
}

/* prepare_inputs_labels_for_multimodal for one sequence: ids [T] with one -200 per image → embeds [T - n + n·P, D]. */
static vlmc_status yi_embed(const vlm_model *m, const int32_t *ids, int T, const float *features, int n_images, int P,
                            float *embeds, vlmc_error *err) {
    const size_t D = (size_t)m->lm.dim;
    int k = 0;
    size_t row = 0;
    for (int t = 0; t < T; t++) {
        if (ids[t] == YI_IMAGE_INDEX) {
            if (k == n_images)
                return vlmc_fail(err, VLMC_ERR_ARG, "Yi-VL: more image indices (-200) in input_ids than images (%d)",
                                 n_images);
            memcpy(embeds + row * D, features + (size_t)k * P * D, (size_t)P * D * sizeof(float));
            row += (size_t)P;
            k++;
            continue;
        }
        vlmc_status s = llama_embed_tokens(&m->lm, ids + t, 1, embeds + row * D, err);
        if (s) return s;
        row++;
    }
    if (k != n_images)
        return vlmc_fail(err, VLMC_ERR_ARG, "Yi-VL: %d images but %d image indices (-200) in input_ids", n_images, k);
    return VLMC_OK;
}

/* vlmc dump on Yi-VL's fixture inputs: input_ids [1, T] with -200 per image, attention_mask (all ones), and the
 * images as pixel_values [N, 3, S, S] and / or image_raw [H, W, 3] uint8 (one image, preprocessed here; with
 * both, the model runs on pixel_values). */
static vlmc_status yi_dump(const vlm_model *m, const array_set *in, const char *dir, int generate_n, vlm_dump_out *out,
                           vlmc_error *err) {
    const yi_state *ys = m->priv;
    vlm_dump_inputs di;
    vlmc_status s = vlm_dump_read_inputs(in, dir, "Yi-VL", &di, err);
    if (s) return s;
    const named_array *ids = di.ids, *px = di.pixels, *raw = di.image_raw;
    const int T = di.T;
    int n_idx = 0;
    for (int t = 0; t < T; t++) n_idx += ((const int32_t *)ids->data)[t] == YI_IMAGE_INDEX;
    float *pixels = NULL, *feat = NULL, *embeds = NULL;
    rgb_image padded = {0};
    proc_output po = {0};
    vlm_images vi = {0};
    int *tiles = NULL;
    if (raw) {
        rgb_image im = {.width = (int)raw->shape[1], .height = (int)raw->shape[0], .data = raw->data};
        if ((s = yi_prepare(ys, &im, &padded, &po, err))) goto done;
        uint8_t *pad_copy = malloc((size_t)padded.width * padded.height * 3);
        if (pad_copy) memcpy(pad_copy, padded.data, (size_t)padded.width * padded.height * 3);
        if ((s = vlm_dump_add(out, "image_padded", ARRAY_U8, 3, (int64_t[]){padded.height, padded.width, 3}, pad_copy,
                              "expand2square(image, int(image_mean * 255)) HxWx3", err)))
            goto done;
        size_t n = (size_t)3 * po.frame_h * po.frame_w;
        if ((pixels = malloc(n * sizeof(float)))) memcpy(pixels, po.pixel_values, n * sizeof(float));
        if ((s = vlm_dump_add(out, "pixel_values", ARRAY_F32, 4, (int64_t[]){1, 3, po.frame_h, po.frame_w}, pixels,
                              "CLIPImageProcessor (vit/<name>/preprocessor_config.json) of image_padded", err)))
            goto done;
        vi = (vlm_images){.n_images = 1, .n_tiles = 1, .pixels = po.pixel_values, .height = po.frame_h,
                          .width = po.frame_w};
    }
    if (px) { /* given with image_raw too: image_raw's preprocessing is dumped, the model runs on pixel_values */
        if (px->shape[1] != m->vit.C || px->shape[0] > 4096) {
            s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: pixel_values must be [N, %d, H, W]", dir, m->vit.C);
            goto done;
        }
        vi = (vlm_images){.n_images = (int)px->shape[0], .n_tiles = (int)px->shape[0], .pixels = px->data,
                          .height = (int)px->shape[2], .width = (int)px->shape[3]};
    }
    if (vi.n_images != n_idx) {
        s = vlmc_fail(err, VLMC_ERR_ARG, "%s: input_ids hold %d image indices (-200) for %d images", dir, n_idx,
                      vi.n_images);
        goto done;
    }
    size_t P = 0;
    const int64_t D = m->lm.dim, Dv = m->vit.D, Lv = m->vit.L;
    if (vi.n_images) {
        if (vi.height != m->vit.image_size || vi.width != m->vit.image_size) {
            s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: images must be %d x %d for this tower", dir, m->vit.image_size,
                          m->vit.image_size);
            goto done;
        }
        if (!(tiles = malloc((size_t)vi.n_images * sizeof(int)))) {
            s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
            goto done;
        }
        for (int i = 0; i < vi.n_images; i++) tiles[i] = 1;
        vi.tiles = tiles;
        size_t nf, nh, ns, nl, np;
        if ((s = vlm_llava_features_len(m, &vi, &nf, err))) goto done;
        vlm_vision_sizes(m, vi.n_tiles, vi.height, vi.width, &nh, &ns, &nl, &np);
        const int64_t n = vi.n_tiles, Tv = vit_tokens(&m->vit, vi.height, vi.width);
        P = nf / (size_t)n;
        float *hs = malloc(nh * sizeof(float)), *sel = malloc(nf * Dv * sizeof(float));
        float *steps[4], *proj = malloc(nf * D * sizeof(float));
        feat = malloc(nf * D * sizeof(float));
        for (int i = 0; i < 4; i++) steps[i] = malloc(nf * D * sizeof(float));
        vlm_vision_out vo = {.hidden_states = hs, .selected = sel, .projector_output = proj, .features = feat};
        s = hs && sel && proj && feat && steps[0] && steps[1] && steps[2] && steps[3]
                ? yi_encode_steps(m, &vi, &vo, steps, err)
                : vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for the vision outputs");
        if (s) {
            free(hs); free(sel); free(proj);
            for (int i = 0; i < 4; i++) free(steps[i]);
            goto done;
        }
        static const char *const step_names[4] = {"projector_linear_1", "projector_layernorm_1", "projector_gelu",
                                                  "projector_linear_2"};
        const int64_t ps[3] = {n, (int64_t)P, D};
        if (!(s = vlm_dump_add(out, "vision_hidden_states", ARRAY_F32, 4, (int64_t[]){Lv + 1, n, Tv, Dv}, hs,
                               "CLIPVisionModel hidden states [L+1, N, 1+P, Dv]; [0] after pre_layrnorm", err)))
            s = vlm_dump_add(out, "vision_features", ARRAY_F32, 3, (int64_t[]){n, (int64_t)P, Dv}, sel,
                             "hidden_states[mm_vision_select_layer] ('patch': CLS dropped)", err);
        else free(sel);
        for (int i = 0; i < 4; i++) {
            if (!s) s = vlm_dump_add(out, step_names[i], ARRAY_F32, 3, ps, steps[i], "mm_projector step output", err);
            else free(steps[i]);
        }
        float *ln2 = s ? NULL : malloc(nf * D * sizeof(float));
        if (ln2) memcpy(ln2, proj, nf * D * sizeof(float));
        if (!s) s = vlm_dump_add(out, "projector_layernorm_2", ARRAY_F32, 3, ps, ln2, "mm_projector step output", err);
        if (!s) s = vlm_dump_add(out, "projector_output", ARRAY_F32, 3, ps, proj, "mm_projector(vision_features)", err);
        else free(proj);
        if (s) goto done;
    }
    /* the merged sequence */
    const int Tm = T - n_idx + n_idx * (int)P;
    if (!(embeds = malloc((size_t)Tm * D * sizeof(float)))) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((s = yi_embed(m, ids->data, T, feat, vi.n_images, (int)P, embeds, err))) goto done;
    float *emb_copy = malloc((size_t)Tm * D * sizeof(float));
    int32_t *ones = malloc((size_t)Tm * sizeof(int32_t));
    if (emb_copy) memcpy(emb_copy, embeds, (size_t)Tm * D * sizeof(float));
    for (int t = 0; ones && t < Tm; t++) ones[t] = 1;
    if (!(s = vlm_dump_add(out, "inputs_embeds", ARRAY_F32, 3, (int64_t[]){1, Tm, D}, emb_copy,
                           "embed(ids before -200), image features, embed(ids after) [1, T-1+P, D]", err)))
        s = vlm_dump_add(out, "attention_mask_expanded", ARRAY_I32, 2, (int64_t[]){1, Tm}, ones,
                         "attention mask after the multimodal merge (ones)", err);
    else free(ones);
    if (!s) s = vlm_dump_decoder(m, embeds, Tm, generate_n, out, err);
done:
    free(feat);
    free(embeds);
    free(tiles);
    rgb_image_free(&padded);
    proc_output_free(&po);
    return s;
}

static const char *const yi_types[] = {NULL}; /* found by yi_detect only */

const vlm_family vlm_family_yi_vl = {
    .model_types = yi_types,
    .detect = yi_detect,
    .hf_class = "LlavaLlamaForCausalLM (Yi-VL)",
    .load = yi_load,
    .features_len = vlm_llava_features_len,
    .encode = yi_encode,
    .image_prompt = yi_image_prompt,
    .preprocess = yi_preprocess,
    .free = yi_free,
    .dump = yi_dump,
};
