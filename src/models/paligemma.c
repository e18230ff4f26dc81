/* PaliGemma: transformers 4.47 PaliGemmaForConditionalGeneration (model_type "paligemma").
 *
 * Config keys read: image_token_index, projection_dim, tie_word_embeddings, vision_config (siglip_vision_model,
 * see vit.h), text_config (gemma: the Llama decoder with Gemma's options, see llama.h). Tensors:
 * vision_tower.vision_model.*, multi_modal_projector.linear.{weight,bias}, language_model.model.*, and
 * language_model.lm_head.weight unless tied (or transformers >= 4.52's model.* layout).
 *
 * Forward:
 *   image [1, 3, S, S] → SigLIP tower → post_layernorm (last_hidden_state) [P, Dv]
 *     → multi_modal_projector.linear [P, D] → / sqrt(text hidden_size) = image_features
 *   embeddings: the image_features rows replace the <image> tokens of the *unscaled* token embeddings; the Gemma
 *   decoder then multiplies everything by sqrt(hidden_size) (llama.c's embed_scale).
 *   Positions count from 1 (PaliGemma passes cache_position + 1, or generate()'s cumsum(mask) - 1, plus 1).
 *   Attention is a prefix LM (_update_causal_mask): at inference the whole prompt (image + prefix) attends both
 *   ways and generated tokens causally; in training (labels and token_type_ids given) the columns with
 *   token_type_ids = 0 (image + prefix) are seen by every row, the suffix causally. Callers pass that as
 *   llama_input.prefix_mask.
 * PaliGemmaProcessor builds the prompt as <image> × num_image_tokens, BOS, the prefix text, "\n" (the suffix, in
 * training, after it): plain_prompt, for the folders' missing chat template; image_prompt writes the image part. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "models/vlm.h"

static vlmc_status paligemma_load(vlm_model *m, vlmc_error *err) {
    vlmc_status s = vlm_load_llava_parts(m, err);
    if (s) return s;
    if (m->vit.kind != VIT_SIGLIP)
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: paligemma needs a SigLIP vision tower", m->vit.file);
    return VLMC_OK;
}

static vlmc_status paligemma_features_len(const vlm_model *m, const vlm_images *im, size_t *n, vlmc_error *err) {
    if (im->height != m->vit.image_size || im->width != m->vit.image_size)
        return vlmc_fail(err, VLMC_ERR_ARG, "paligemma: images must be %d×%d pixels, got %d×%d", m->vit.image_size,
                         m->vit.image_size, im->height, im->width);
    *n = (size_t)im->n_tiles * vit_tokens(&m->vit, im->height, im->width);
    return VLMC_OK;
}

static vlmc_status paligemma_encode(const vlm_model *m, const vlm_images *im, vlm_vision_out *out, vlmc_error *err) {
    size_t n_rows = 0;
    vlmc_status s = paligemma_features_len(m, im, &n_rows, err);
    if (s) return s;
    const int n = im->n_tiles, T = vit_tokens(&m->vit, im->height, im->width), D = m->lm.dim;
    float *last = out->last_hidden_state, *own = NULL;
    if (!last && !(last = own = malloc((size_t)n * T * m->vit.D * sizeof(float))))
        return vlmc_fail(err, VLMC_ERR_NOMEM, "paligemma: out of memory for %d images", n);
    /* last [n, T, Dv] = post_layernorm(tower(pixels)) */
    vit_outputs o = {.hidden_states = out->hidden_states, .last_hidden_state = last};
    if (!(s = vit_encode(&m->vit, im->pixels, n, im->height, im->width, NULL, &o, err)))
        s = projector_forward(&m->proj, last, n, T, m->vit.D, out->features, err); /* [n·T, D] */
    free(own);
    if (s) return s;
    /* image_features / (text_config.hidden_size ** 0.5): a float32 tensor divided by a Python float */
    const float root = (float)sqrt((double)D);
    for (size_t i = 0; i < n_rows * (size_t)D; i++) out->features[i] /= root;
    out->vit_tokens = out->proj_tokens = T;
    out->n_features = n_rows;
    if (out->projector_output) memcpy(out->projector_output, out->features, n_rows * D * sizeof(float));
    return VLMC_OK;
}

static vlmc_status paligemma_image_prompt(const vlm_model *m, const vlm_image_info *info, strbuf *out,
                                          vlmc_error *err) {
    (void)info;
    /* PaliGemmaProcessor: image_seq_length = (image_size / patch_size)² tokens, whatever the image */
    const int side = m->vit.image_size / m->vit.P;
    if (side <= 0) return vlmc_fail(err, VLMC_ERR_ARG, "paligemma: no image tokens");
    for (int i = 0; i < side * side; i++) strbuf_puts(out, VLM_IMAGE_PLACEHOLDER);
    return VLMC_OK;
}

/* PaliGemmaProcessor.build_string_from_input: images, BOS, the prefix, "\n" (its tokenizer adds no BOS / EOS). */
static vlmc_status paligemma_plain_prompt(const vlm_model *m, int n_images, const char *text, const char *bos,
                                          strbuf *out, vlmc_error *err) {
    (void)m;
    (void)err;
    for (int i = 0; i < n_images; i++) strbuf_puts(out, VLM_IMAGE_PLACEHOLDER);
    strbuf_printf(out, "%s%s\n", bos, text);
    return VLMC_OK;
}

static const char *const paligemma_types[] = {"paligemma", NULL};

const vlm_family vlm_family_paligemma = {
    .model_types = paligemma_types,
    .hf_class = "PaliGemmaForConditionalGeneration",
    .legacy_unmask_padding = false,
    .position_offset = 1,
    .prefix_lm = true,
    .load = paligemma_load,
    .features_len = paligemma_features_len,
    .encode = paligemma_encode,
    .image_prompt = paligemma_image_prompt,
    .plain_prompt = paligemma_plain_prompt,
};
