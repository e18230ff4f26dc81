/* LLaVA-NeXT (LLaVA-1.6): transformers 4.47 LlavaNextForConditionalGeneration (model_type "llava_next").
 *
 * Config keys read: those of LLaVA (image_token_index, vision_feature_layer, vision_feature_select_strategy,
 * projector_hidden_act, multimodal_projector_bias, text_config, vision_config) plus image_grid_pinpoints.
 * Tensors: LLaVA's plus image_newline.
 *
 * Forward: each image arrives as 1 + rows·cols tiles (the whole image resized, then the anyres grid; image_sizes
 * gives its original size) → CLIP tower on every tile → selected features → projector → pack_image_features (base
 * tile, then the grid unpadded to the image's aspect ratio with image_newline after every row). LlavaNextProcessor
 * expands each "<image>" into the unpadded count of that image. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "models/vlm.h"

static vlmc_status next_load(vlm_model *m, vlmc_error *err) { return vlm_load_llava_parts(m, err); }

static vlmc_status next_tokens_per_tile(const vlm_model *m, const vlm_images *im, int *tokens, int *feat,
                                        vlmc_error *err) {
    vit_outputs o = {0};
    vlmc_status s = vit_select_from_config(&m->cfg, NULL, &o, err);
    if (s) return s;
    vit_selected_shape(&m->vit, &o, im->height, im->width, tokens, feat);
    if (!im->image_sizes) return vlmc_fail(err, VLMC_ERR_ARG, "llava_next needs image_sizes");
    return VLMC_OK;
}

static vlmc_status next_features_len(const vlm_model *m, const vlm_images *im, size_t *n, vlmc_error *err) {
    int tokens, feat;
    vlmc_status s = next_tokens_per_tile(m, im, &tokens, &feat, err);
    *n = 0;
    for (int i = 0; !s && i < im->n_images; i++) {
        size_t len = 0;
        s = llava_next_packed_len(&m->proj, im->tiles[i], tokens, im->image_sizes[2 * i], im->image_sizes[2 * i + 1],
                                  &len, err);
        *n += len;
    }
    return s;
}

static vlmc_status next_encode(const vlm_model *m, const vlm_images *im, vlm_vision_out *out, vlmc_error *err) {
    int tokens, feat;
    vlmc_status s = next_tokens_per_tile(m, im, &tokens, &feat, err);
    if (s) return s;
    float *own = NULL, *proj = out->projector_output;
    if ((s = vlm_llava_select(m, im, out, &own, err))) return s;
    float *proj_own = NULL;
    if (!proj && !(proj = proj_own = malloc((size_t)im->n_tiles * tokens * m->lm.dim * sizeof(float)))) {
        free(own);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "llava_next: out of memory for %d tiles", im->n_tiles);
    }
    s = projector_forward(&m->proj, out->selected ? out->selected : own, im->n_tiles, tokens, feat, proj, err);
    free(own);
    out->proj_tokens = tokens;
    out->n_features = 0;
    const float *tile = proj;
    for (int i = 0; !s && i < im->n_images; i++) {
        size_t len = 0;
        s = llava_next_pack(&m->proj, tile, im->tiles[i], tokens, im->image_sizes[2 * i], im->image_sizes[2 * i + 1],
                            out->features + out->n_features * m->lm.dim, &len, err);
        out->n_features += len;
        tile += (size_t)im->tiles[i] * tokens * m->lm.dim;
    }
    free(proj_own);
    return s;
}

static vlmc_status next_image_prompt(const vlm_model *m, const vlm_image_info *info, strbuf *out, vlmc_error *err) {
    (void)m;
    if (info->n_tokens <= 0 || info->n_tokens > 1 << 24)
        return vlmc_fail(err, VLMC_ERR_ARG, "llava_next: %lld image tokens", (long long)info->n_tokens);
    for (int64_t i = 0; i < info->n_tokens; i++) strbuf_puts(out, VLM_IMAGE_PLACEHOLDER);
    return VLMC_OK;
}

static const char *const next_types[] = {"llava_next", NULL};

const vlm_family vlm_family_llava_next = {
    .model_types = next_types,
    .hf_class = "LlavaNextForConditionalGeneration",
    .legacy_unmask_padding = true,
    .load = next_load,
    .features_len = next_features_len,
    .encode = next_encode,
    .image_prompt = next_image_prompt,
};
