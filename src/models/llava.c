/* LLaVA-1.5: transformers 4.47 LlavaForConditionalGeneration (model_type "llava").
 *
 * Config keys read: image_token_index, vision_feature_layer (int or list), vision_feature_select_strategy,
 * projector_hidden_act, multimodal_projector_bias, text_config (the Llama decoder, see llama.h), vision_config
 * (CLIP, see vit.h). Tensors: vision_tower.vision_model.*, multi_modal_projector.linear_{1,2}.*,
 * language_model.model.*, language_model.lm_head.weight (or transformers >= 4.52's model.* layout).
 *
 * Forward: every image → CLIP tower → hidden_states[vision_feature_layer] (CLS dropped with the "default" strategy)
 * → projector → one feature row per image token; LlavaProcessor expands each "<image>" of the prompt into
 * num_image_tokens copies. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "models/vlm.h"

static vlmc_status llava_load(vlm_model *m, vlmc_error *err) {
    if (m->cfg.original_llava_layout)
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED,
                         "%s: the original LLaVA layout (%s: flat Llama config + mm_* keys, e.g. Yi-VL) is not "
                         "supported yet; transformers' LlavaForConditionalGeneration layout is",
                         safetensors_file_path(m->st, 0), m->cfg.architecture[0] ? m->cfg.architecture : "LlavaLlamaForCausalLM");
    return vlm_load_llava_parts(m, err);
}

static vlmc_status llava_encode(const vlm_model *m, const vlm_images *im, vlm_vision_out *out, vlmc_error *err) {
    for (int i = 0; i < im->n_images; i++)
        if (im->tiles[i] != 1)
            return vlmc_fail(err, VLMC_ERR_ARG, "llava: image %d has %d tiles, expected 1", i, im->tiles[i]);
    float *own = NULL;
    vlmc_status s = vlm_llava_select(m, im, out, &own, err);
    if (s) return s;
    const float *sel = out->selected ? out->selected : own;
    /* the projector writes straight into the feature rows (one per image token) */
    s = projector_forward(&m->proj, sel, im->n_tiles, out->sel_tokens, out->sel_features, out->features, err);
    free(own);
    if (s) return s;
    out->proj_tokens = out->sel_tokens;
    out->n_features = (size_t)im->n_tiles * out->sel_tokens;
    if (out->projector_output)
        memcpy(out->projector_output, out->features, out->n_features * m->lm.dim * sizeof(float));
    return VLMC_OK;
}

static vlmc_status llava_image_prompt(const vlm_model *m, const vlm_image_info *info, strbuf *out, vlmc_error *err) {
    (void)m;
    if (info->n_tokens <= 0 || info->n_tokens > 1 << 20)
        return vlmc_fail(err, VLMC_ERR_ARG, "llava: %lld image tokens", (long long)info->n_tokens);
    for (int64_t i = 0; i < info->n_tokens; i++) strbuf_puts(out, VLM_IMAGE_PLACEHOLDER);
    return VLMC_OK;
}

static const char *const llava_types[] = {"llava", NULL};

const vlm_family vlm_family_llava = {
    .model_types = llava_types,
    .hf_class = "LlavaForConditionalGeneration",
    .legacy_unmask_padding = true,
    .load = llava_load,
    .features_len = vlm_llava_features_len,
    .encode = llava_encode,
    .image_prompt = llava_image_prompt,
};
