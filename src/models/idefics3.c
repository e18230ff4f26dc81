/* Idefics3 / SmolVLM: transformers 4.47 Idefics3ForConditionalGeneration (model_type "idefics3").
 *
 * Config keys read: image_token_id, scale_factor, text_config (the Llama decoder, see llama.h), vision_config
 * (idefics3_vision: image_size, patch_size, ...). Tensors: model.vision_model.*, model.connector.modality_projection
 * .proj.weight, model.text_model.*, lm_head.weight.
 *
 * Forward: each image arrives as rows·cols tiles plus the global image (or the global image alone), with a
 * pixel_attention_mask → SigLIP-like tower with NaViT position ids (padded patches masked out) → post_layernorm →
 * connector (pixel_shuffle by scale_factor, then a linear projection): image_seq_len rows per tile.
 * Idefics3Processor writes each "<image>" of the prompt as (get_image_prompt_string):
 *   split:  for each row r, col c: <fake_token_around_image><row_r_col_c><image>×seq, "\n" after each row, then
 *           "\n<fake_token_around_image><global-img><image>×seq<fake_token_around_image>"
 *   single: <fake_token_around_image><global-img><image>×seq<fake_token_around_image> */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "models/vlm.h"

static vlmc_status idefics3_load(vlm_model *m, vlmc_error *err) {
    vlmc_status s = vlm_load_parts(m, "model.text_model.", "lm_head.weight", err);
    if (s) return s;
    int side = m->vit.image_size / m->vit.P;
    m->image_seq_len = projector_out_tokens(&m->proj, side * side);
    if (m->image_seq_len <= 0)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "config.json: scale_factor %d does not divide %d patches per side",
                         m->proj.scale_factor, side);
    return VLMC_OK;
}

static vlmc_status idefics3_features_len(const vlm_model *m, const vlm_images *im, size_t *n, vlmc_error *err) {
    int out = projector_out_tokens(&m->proj, vit_tokens(&m->vit, im->height, im->width));
    if (out <= 0) return vlmc_fail(err, VLMC_ERR_ARG, "idefics3: tiles of %d×%d cannot be projected", im->height, im->width);
    *n = (size_t)im->n_tiles * out;
    return VLMC_OK;
}

static vlmc_status idefics3_encode(const vlm_model *m, const vlm_images *im, vlm_vision_out *out, vlmc_error *err) {
    const int n = im->n_tiles, H = im->height, W = im->width, P = m->vit.P;
    const int T = vit_tokens(&m->vit, H, W);
    vlmc_status s = VLMC_OK;
    uint8_t *pm8 = NULL, *patch = NULL;
    float *last = out->last_hidden_state, *last_own = NULL;
    if (im->pixel_mask) {
        pm8 = malloc((size_t)n * H * W);
        patch = malloc((size_t)n * (H / P) * (W / P));
        if (!pm8 || !patch) {
            s = vlmc_fail(err, VLMC_ERR_NOMEM, "idefics3: out of memory for the patch mask");
            goto done;
        }
        for (size_t i = 0; i < (size_t)n * H * W; i++) pm8[i] = im->pixel_mask[i] != 0;
        vit_patch_mask_from_pixels(pm8, n, H, W, P, patch);
    }
    if (!last && !(last = last_own = malloc((size_t)n * T * m->vit.D * sizeof(float)))) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "idefics3: out of memory for %d tiles", n);
        goto done;
    }
    vit_outputs o = {.hidden_states = out->hidden_states, .last_hidden_state = last};
    if ((s = vit_encode(&m->vit, im->pixels, n, H, W, patch, &o, err))) goto done;
    out->vit_tokens = T;
    out->proj_tokens = projector_out_tokens(&m->proj, T);
    if ((s = projector_forward(&m->proj, last, n, T, m->vit.D, out->features, err))) goto done;
    out->n_features = (size_t)n * out->proj_tokens;
    if (out->projector_output)
        memcpy(out->projector_output, out->features, out->n_features * m->lm.dim * sizeof(float));
done:
    free(pm8);
    free(patch);
    free(last_own);
    return s;
}

static void image_run(strbuf *out, int seq) {
    for (int i = 0; i < seq; i++) strbuf_puts(out, VLM_IMAGE_PLACEHOLDER);
}

static vlmc_status idefics3_image_prompt(const vlm_model *m, const vlm_image_info *info, strbuf *out,
                                         vlmc_error *err) {
    const int seq = m->image_seq_len;
    if (info->rows < 0 || info->cols < 0 || info->rows > 64 || info->cols > 64)
        return vlmc_fail(err, VLMC_ERR_ARG, "idefics3: a %d × %d tile grid", info->rows, info->cols);
    if (info->rows == 0 && info->cols == 0) {
        strbuf_puts(out, "<fake_token_around_image><global-img>");
        image_run(out, seq);
        strbuf_puts(out, "<fake_token_around_image>");
        return VLMC_OK;
    }
    for (int r = 0; r < info->rows; r++) {
        for (int c = 0; c < info->cols; c++) {
            strbuf_printf(out, "<fake_token_around_image><row_%d_col_%d>", r + 1, c + 1);
            image_run(out, seq);
        }
        strbuf_puts(out, "\n");
    }
    strbuf_puts(out, "\n<fake_token_around_image><global-img>");
    image_run(out, seq);
    strbuf_puts(out, "<fake_token_around_image>");
    return VLMC_OK;
}

static const char *const idefics3_types[] = {"idefics3", NULL};

const vlm_family vlm_family_idefics3 = {
    .model_types = idefics3_types,
    .hf_class = "Idefics3ForConditionalGeneration",
    .legacy_unmask_padding = false,
    .load = idefics3_load,
    .features_len = idefics3_features_len,
    .encode = idefics3_encode,
    .image_prompt = idefics3_image_prompt,
};
