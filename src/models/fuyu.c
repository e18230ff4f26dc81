/* Fuyu: transformers 4.47 FuyuForCausalLM (model_type "fuyu") with its PersimmonForCausalLM decoder.
 *
 * Config keys read: patch_size, num_channels, image_size, image_token_id (|SPEAKER|; fuyu-8b's 71011 when absent),
 * text_config (persimmon: hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, layer_norm_eps,
 * hidden_act relu2, qk_layernorm, partial_rotary_factor, rope_theta, tie_word_embeddings). Tensors:
 * vision_embed_tokens.{weight,bias}, language_model.model.* (Persimmon names, see llama.h), language_model.lm_head.
 *
 * There is no vision tower: FuyuImageProcessor resizes the image to fit size (keeping the aspect ratio, only when
 * larger), pads it bottom / right with padding_value, rescales and normalizes it; preprocess_with_tokenizer_info cuts
 * the part that covers the unpadded image into patch × patch squares, each flattened as (y, x, channel). Each patch
 * goes through vision_embed_tokens (one Linear with bias) and its embedding replaces the token at the prompt
 * position image_patches_indices names (gather_continuous_embeddings). FuyuProcessor's prompt: for each patch row,
 * |SPEAKER| per patch then |NEWLINE|; then BOS, the text, and <0x04> (boa). The decoder is Persimmon, run by
 * llama.c: LayerNorm, fused query_key_value, q/k LayerNorm per head, partial rotary, relu² MLP. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "models/vlm.h"

void fuyu_grid(int uh, int uw, int H, int W, int patch, int *rows, int *cols) {
    *rows = (uh + patch - 1) / patch;
    *cols = (uw + patch - 1) / patch;
    if (*rows > H / patch) *rows = H / patch;
    if (*cols > W / patch) *cols = W / patch;
}

void fuyu_patchify(const float *image, int C, int H, int W, int rows, int cols, int patch, float *out) {
    const int P = patch;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            float *dst = out + ((size_t)r * cols + c) * P * P * C;
            for (int y = 0; y < P; y++)
                for (int x = 0; x < P; x++)
                    for (int ch = 0; ch < C; ch++)
                        dst[((size_t)y * P + x) * C + ch] = image[((size_t)ch * H + r * P + y) * W + c * P + x];
        }
}

static vlmc_status fuyu_load(vlm_model *m, vlmc_error *err) {
    vlmc_status s = persimmon_model_load(&m->lm, &m->cfg.text, m->st, "language_model.model.",
                                         "language_model.lm_head.weight", err);
    if (s) {
        m->lm.layers = NULL;
        return s;
    }
    if ((s = projector_load(m->st, "", &m->cfg, &m->proj, err))) return s;
    m->has_vision = true; /* takes images; m->vit stays empty */
    const int id = m->cfg.image_token_index;
    m->image_token_id = id >= 0 && id < m->lm.vocab ? id : -1;
    return VLMC_OK;
}

/* Each image: the processed image [C, H, W] and its unpadded size in im->image_sizes. */
static vlmc_status fuyu_features_len(const vlm_model *m, const vlm_images *im, size_t *n, vlmc_error *err) {
    const int P = m->cfg.vision.patch_size;
    if (!im->image_sizes) return vlmc_fail(err, VLMC_ERR_ARG, "fuyu: the unpadded image sizes are missing");
    *n = 0;
    for (int i = 0; i < im->n_images; i++) {
        int rows, cols;
        if (im->tiles[i] != 1) return vlmc_fail(err, VLMC_ERR_ARG, "fuyu: image %d has %d tiles, expected 1", i, im->tiles[i]);
        fuyu_grid(im->image_sizes[2 * i], im->image_sizes[2 * i + 1], im->height, im->width, P, &rows, &cols);
        if (rows <= 0 || cols <= 0) return vlmc_fail(err, VLMC_ERR_ARG, "fuyu: image %d has no patches", i);
        *n += (size_t)rows * cols;
    }
    return VLMC_OK;
}

static vlmc_status fuyu_encode(const vlm_model *m, const vlm_images *im, vlm_vision_out *out, vlmc_error *err) {
    size_t total = 0;
    vlmc_status s = fuyu_features_len(m, im, &total, err);
    if (s) return s;
    const int P = m->cfg.vision.patch_size, C = m->cfg.vision.num_channels, H = im->height, W = im->width;
    const size_t PPC = (size_t)P * P * C;
    float *patches = malloc(total * PPC * sizeof(float));
    if (!patches) return vlmc_fail(err, VLMC_ERR_NOMEM, "fuyu: out of memory for %zu patches", total);
    size_t k = 0;
    for (int i = 0; i < im->n_images; i++) {
        int rows, cols;
        fuyu_grid(im->image_sizes[2 * i], im->image_sizes[2 * i + 1], H, W, P, &rows, &cols);
        fuyu_patchify(im->pixels + (size_t)i * C * H * W, C, H, W, rows, cols, P, patches + k * PPC);
        k += (size_t)rows * cols;
    }
    /* features [n_patches, D] = vision_embed_tokens(patches) */
    s = projector_forward(&m->proj, patches, 1, (int)total, (int)PPC, out->features, err);
    free(patches);
    if (s) return s;
    out->proj_tokens = (int)total;
    out->n_features = total;
    if (out->projector_output) memcpy(out->projector_output, out->features, total * m->lm.dim * sizeof(float));
    return VLMC_OK;
}

/* FuyuProcessor: |SPEAKER| (the token the patch embeddings replace: config image_token_id) per patch, |NEWLINE|
 * after each row of the grid FuyuImageProcessor reports. */
static vlmc_status fuyu_image_prompt(const vlm_model *m, const vlm_image_info *info, strbuf *out, vlmc_error *err) {
    (void)m;
    if (info->rows <= 0 || info->cols <= 0 || info->rows > 4096 || info->cols > 4096)
        return vlmc_fail(err, VLMC_ERR_ARG, "fuyu: a %d × %d patch grid", info->rows, info->cols);
    for (int r = 0; r < info->rows; r++) {
        for (int c = 0; c < info->cols; c++) strbuf_puts(out, "|SPEAKER|");
        strbuf_puts(out, "|NEWLINE|");
    }
    return VLMC_OK;
}

/* FuyuProcessor (no chat template): the image tokens, BOS, the text, then the beginning-of-answer token <0x04>,
 * written as the byte 0x04 that the tokenizer's byte fallback turns into it. */
static vlmc_status fuyu_plain_prompt(const vlm_model *m, int n_images, const char *text, const char *bos, strbuf *out,
                                     vlmc_error *err) {
    (void)m;
    (void)err;
    for (int i = 0; i < n_images; i++) strbuf_puts(out, VLM_IMAGE_PLACEHOLDER);
    strbuf_printf(out, "%s%s\x04", bos, text);
    return VLMC_OK;
}

static const char *const fuyu_types[] = {"fuyu", NULL};

const vlm_family vlm_family_fuyu = {
    .model_types = fuyu_types,
    .hf_class = "FuyuForCausalLM",
    .load = fuyu_load,
    .features_len = fuyu_features_len,
    .encode = fuyu_encode,
    .image_prompt = fuyu_image_prompt,
    .plain_prompt = fuyu_plain_prompt,
};
