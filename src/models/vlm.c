/* Shared VLM machinery: loading through the family registry, the image-feature splice. See vlm.h. */
#include "models/vlm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

vlmc_status vlm_load(const char *dir, vlm_model *m, vlmc_error *err) {
    memset(m, 0, sizeof *m);
    m->image_token_id = -1;
    vlmc_status s = hf_config_load(dir, &m->cfg, err);
    if (s) return s;
    m->fam = vlm_family_find(m->cfg.model_type);
    if (!m->fam)
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: model_type \"%s\" is not supported (supported: %s)", dir,
                         m->cfg.model_type, vlm_family_names());
    if ((s = safetensors_open(dir, &m->st, err))) return s;
    if ((s = m->fam->load(m, err))) {
        safetensors_close(m->st);
        m->st = NULL;
        return s;
    }
    return VLMC_OK;
}

void vlm_free(vlm_model *m) {
    if (!m) return;
    if (m->fam && m->fam->free) m->fam->free(m);
    if (m->has_vision) {
        projector_free(&m->proj);
        vit_free(&m->vit);
    }
    if (m->lm.layers) llama_model_free(&m->lm);
    safetensors_close(m->st);
    memset(m, 0, sizeof *m);
}

void vlm_vision_sizes(const vlm_model *m, int n, int height, int width, size_t *hidden, size_t *selected,
                      size_t *last, size_t *proj) {
    *hidden = *selected = *last = *proj = 0;
    if (!m->has_vision) return;
    size_t T = (size_t)vit_tokens(&m->vit, height, width), Dv = (size_t)m->vit.D;
    *hidden = (size_t)(m->vit.L + 1) * n * T * Dv;
    *selected = (size_t)n * T * Dv * HF_MAX_FEATURE_LAYERS;
    *last = (size_t)n * T * Dv;
    *proj = (size_t)n * T * (size_t)m->lm.dim;
}

vlmc_status vlm_embed(const vlm_model *m, const int32_t *ids, size_t n, const float *features, size_t n_features,
                      size_t first, bool exact, float *embeds, size_t *used, vlmc_error *err) {
    const size_t D = (size_t)m->lm.dim;
    size_t n_img = 0;
    for (size_t i = 0; i < n; i++) n_img += m->image_token_id >= 0 && ids[i] == m->image_token_id;
    if (used) *used = n_img;
    if (n_img && !features)
        return vlmc_fail(err, VLMC_ERR_ARG, "the prompt has %zu image tokens (id %d) but no image was given", n_img,
                         m->image_token_id);
    if (first > n_features || n_img > n_features - first || (exact && first + n_img != n_features))
        return vlmc_fail(err, VLMC_ERR_ARG,
                         "Image features and image tokens do not match: tokens: %zu, features %zu (the prompt needs "
                         "one image token id %d per feature row)",
                         n_img, n_features - (first < n_features ? first : n_features), m->image_token_id);
    vlmc_status s = llama_embed_tokens(&m->lm, ids, (int64_t)n, embeds, err);
    if (s) return s;
    size_t k = first;
    for (size_t i = 0; i < n; i++)
        if (m->image_token_id >= 0 && ids[i] == m->image_token_id)
            memcpy(embeds + i * D, features + (k++) * D, D * sizeof(float));
    return VLMC_OK;
}

vlmc_status vlm_load_parts(vlm_model *m, const char *text_prefix, const char *lm_head_name, vlmc_error *err) {
    vlmc_status s = llama_model_load(&m->lm, &m->cfg.text, m->st, text_prefix, lm_head_name, err);
    if (s) {
        m->lm.layers = NULL;
        return s;
    }
    if ((s = vlm_vision_load(m->st, &m->cfg, &m->vit, &m->proj, err))) return s;
    m->has_vision = true;
    m->image_token_id = m->cfg.image_token_index;
    if (m->image_token_id < 0 || m->image_token_id >= m->lm.vocab)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "config.json: the image token id %d is outside the vocabulary (%d)",
                         m->image_token_id, m->lm.vocab);
    return VLMC_OK;
}

vlmc_status vlm_load_llava_parts(vlm_model *m, vlmc_error *err) {
    /* transformers >= 4.52 moved the decoder under model.language_model. */
    const bool new_layout = !safetensors_find(m->st, "language_model.model.embed_tokens.weight") &&
                            safetensors_find(m->st, "model.language_model.embed_tokens.weight");
    return vlm_load_parts(m, new_layout ? "model.language_model." : "language_model.model.",
                          new_layout ? "lm_head.weight" : "language_model.lm_head.weight", err);
}

vlmc_status vlm_llava_select(const vlm_model *m, const vlm_images *im, vlm_vision_out *out, float **selected,
                             vlmc_error *err) {
    *selected = NULL;
    vit_outputs o = {.hidden_states = out->hidden_states};
    vlmc_status s = vit_select_from_config(&m->cfg, NULL, &o, err);
    if (s) return s;
    int tokens, feat;
    vit_selected_shape(&m->vit, &o, im->height, im->width, &tokens, &feat);
    float *sel = out->selected;
    if (!sel && !(sel = *selected = malloc((size_t)im->n_tiles * tokens * feat * sizeof(float))))
        return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for the vision features of %d tiles", im->n_tiles);
    o.selected = sel;
    if ((s = vit_encode(&m->vit, im->pixels, im->n_tiles, im->height, im->width, NULL, &o, err))) {
        free(*selected);
        *selected = NULL;
        return s;
    }
    out->vit_tokens = vit_tokens(&m->vit, im->height, im->width);
    out->sel_tokens = tokens;
    out->sel_features = feat;
    return VLMC_OK;
}

vlmc_status vlm_embed_masked(const vlm_model *m, const int32_t *ids, size_t n, const uint8_t *seq_mask,
                             const float *features, const uint8_t *emb_mask, size_t n_features, float *embeds,
                             vlmc_error *err) {
    const size_t D = (size_t)m->lm.dim;
    size_t n_seq = 0, n_emb = 0;
    for (size_t i = 0; i < n; i++) n_seq += seq_mask[i] != 0;
    for (size_t i = 0; i < n_features; i++) n_emb += emb_mask[i] != 0;
    if (n_seq != n_emb)
        return vlmc_fail(err, VLMC_ERR_ARG, "images_seq_mask selects %zu tokens but images_emb_mask %zu image embeddings",
                         n_seq, n_emb);
    if (n_seq && !features) return vlmc_fail(err, VLMC_ERR_ARG, "images_seq_mask selects %zu tokens but no image was given", n_seq);
    vlmc_status s = llama_embed_tokens(&m->lm, ids, (int64_t)n, embeds, err);
    if (s) return s;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!seq_mask[i]) continue;
        while (!emb_mask[k]) k++;
        memcpy(embeds + i * D, features + (k++) * D, D * sizeof(float));
    }
    return VLMC_OK;
}

float *vlm_vision_out_add_extra(vlm_vision_out *o, const char *name, int ndim, const int64_t *shape, const float *src) {
    if (o->n_extras >= VLM_MAX_EXTRAS || ndim < 1 || ndim > VLM_EXTRA_MAX_DIMS) return NULL;
    size_t n = 1;
    for (int d = 0; d < ndim; d++) n *= (size_t)shape[d];
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) return NULL;
    vlm_extra *e = &o->extras[o->n_extras++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->ndim = ndim;
    memcpy(e->shape, shape, (size_t)ndim * sizeof(int64_t));
    e->data = p;
    if (src) memcpy(p, src, n * sizeof(float));
    return p;
}

void vlm_vision_out_free_extras(vlm_vision_out *o) {
    for (int i = 0; i < o->n_extras; i++) free(o->extras[i].data);
    o->n_extras = 0;
}
