/* Shared VLM machinery: loading through the family registry, the image-feature splice. See vlm.h. */
#include "models/vlm.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

vlmc_status vlm_extras_add(vlm_extras *e, const char *name, array_dtype dt, int ndim, const int64_t *shape,
                           const void *data, const char *note, vlmc_error *err) {
    if (!e) return VLMC_OK;
    if (e->n == VLM_MAX_EXTRAS || ndim < 1 || ndim > ARRAYS_MAX_DIMS)
        return vlmc_fail(err, VLMC_ERR_INTERNAL, "intermediate %s: more than %d arrays or %d dimensions", name,
                         VLM_MAX_EXTRAS, ndim);
    named_array *a = &e->a[e->n];
    *a = named_array_make(name, dt, ndim, shape, NULL, note);
    size_t bytes = (size_t)named_array_numel(a) * array_dtype_size(dt);
    if (!(a->data = malloc(bytes ? bytes : 1))) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for %s", name);
    memcpy(a->data, data, bytes);
    e->n++;
    return VLMC_OK;
}

void vlm_extras_free(vlm_extras *e) {
    if (!e) return;
    for (int i = 0; i < e->n; i++) free(e->a[i].data);
    e->n = 0;
}

void vlm_prepared_free(vlm_prepared *p) {
    if (!p) return;
    free(p->pixels);
    memset(p, 0, sizeof *p);
}

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
    /* image slots: the image token id (moondream2's input_ids_full marks them with -1) */
    const bool vision = m->has_vision;
    size_t n_img = 0;
    for (size_t i = 0; i < n; i++) n_img += vision && ids[i] == m->image_token_id;
    if (used) *used = n_img;
    if (n_img && !features)
        return vlmc_fail(err, VLMC_ERR_ARG, "the prompt has %zu image tokens (id %d) but no image was given", n_img,
                         m->image_token_id);
    if (first > n_features || n_img > n_features - first || (exact && first + n_img != n_features))
        return vlmc_fail(err, VLMC_ERR_ARG,
                         "Image features and image tokens do not match: tokens: %zu, features %zu (the prompt needs "
                         "one image token id %d per feature row)",
                         n_img, n_features - (first < n_features ? first : n_features), m->image_token_id);
    size_t k = first;
    for (size_t i = 0; i < n;) {
        if (vision && ids[i] == m->image_token_id) {
            memcpy(embeds + i * D, features + (k++) * D, D * sizeof(float));
            i++;
            continue;
        }
        size_t j = i; /* a run of text tokens [i, j) */
        while (j < n && !(vision && ids[j] == m->image_token_id)) j++;
        vlmc_status s = llama_embed_tokens(&m->lm, ids + i, (int64_t)(j - i), embeds + i * D, err);
        if (s) {
            vlmc_fail_prefix(err, "text tokens from position %zu", i);
            return s;
        }
        i = j;
    }
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
