/* Shared VLM machinery: loading through the family registry, the image-feature splice. See vlm.h. */
#include "models/vlm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/file.h"

/* llama.cpp's pair: dir/model.gguf + dir/mmproj.gguf with no config.json, or X.gguf + mmproj.gguf beside it. */
static bool gguf_pair(const char *path, char **text, char **mmproj) {
    *text = *mmproj = NULL;
    size_t n = strlen(path);
    if (n > 5 && !strcmp(path + n - 5, ".gguf")) {
        char *dir = path_dirname(path);
        *text = strdup(path);
        *mmproj = dir ? path_join(dir, "mmproj.gguf") : NULL;
        free(dir);
    } else {
        char *cfg = path_join(path, "config.json");
        bool has_cfg = cfg && file_exists(cfg);
        free(cfg);
        if (has_cfg) return false;
        *text = path_join(path, "model.gguf");
        *mmproj = path_join(path, "mmproj.gguf");
    }
    if (*text && *mmproj && file_exists(*text) && file_exists(*mmproj)) return true;
    free(*text), free(*mmproj);
    *text = *mmproj = NULL;
    return false;
}

void vlm_prepared_free(vlm_prepared *p) {
    if (!p) return;
    free(p->pixels);
    memset(p, 0, sizeof *p);
}

vlmc_status vlm_load(const char *dir, vlm_model *m, vlmc_error *err) {
    char *text_gguf, *mmproj_gguf;
    if (gguf_pair(dir, &text_gguf, &mmproj_gguf)) {
        vlmc_status s = vlm_load_gguf(text_gguf, mmproj_gguf, m, err);
        free(text_gguf), free(mmproj_gguf);
        return s;
    }
    memset(m, 0, sizeof *m);
    m->image_token_id = -1;
    vlmc_status s = hf_config_load(dir, &m->cfg, err);
    if (s) return s;
    m->fam = vlm_family_find(&m->cfg);
    if (!m->fam)
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: model_type \"%s\" is not supported (supported: %s)", dir,
                         m->cfg.model_type, vlm_family_names());
    if (!(m->dir = strdup(dir))) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    if ((s = safetensors_open(dir, &m->st, err))) {
        vlm_free(m);
        return s;
    }
    if ((s = m->fam->load(m, err))) {
        vlm_free(m);
        return s;
    }
    return VLMC_OK;
}

void vlm_free(vlm_model *m) {
    if (!m) return;
    const bool own_tower = m->tower != NULL;
    if (m->fam && m->fam->free) m->fam->free(m);
    if (m->has_vision && !own_tower) {
        projector_free(&m->proj);
        vit_free(&m->vit);
    }
    if (m->lm.layers) llama_model_free(&m->lm);
    safetensors_close(m->st);
    safetensors_close(m->st_vision);
    free(m->dir);
    memset(m, 0, sizeof *m);
}

vlmc_status vlm_dump_add(vlm_dump_out *o, const char *name, array_dtype dtype, int ndim, const int64_t *shape,
                         void *data, const char *note, vlmc_error *err) {
    if (!data) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for %s", name);
    if (o->n == o->cap) {
        int cap = o->cap ? 2 * o->cap : 16;
        named_array *a = realloc(o->a, (size_t)cap * sizeof *a);
        if (!a) {
            free(data);
            return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        }
        o->a = a;
        o->cap = cap;
    }
    named_array *a = &o->a[o->n];
    memset(a, 0, sizeof *a);
    a->name = strdup(name);
    a->note = note ? strdup(note) : NULL;
    if (!a->name || (note && !a->note) || ndim > ARRAYS_MAX_DIMS) {
        free(a->name);
        free(a->note);
        free(data);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    }
    a->dtype = dtype;
    a->ndim = ndim;
    memcpy(a->shape, shape, (size_t)ndim * sizeof(int64_t));
    a->data = data;
    o->n++;
    return VLMC_OK;
}

vlmc_status vlm_dump_add_copy(vlm_dump_out *o, const char *name, array_dtype dt, int ndim, const int64_t *shape,
                              const void *data, const char *note, vlmc_error *err) {
    if (!o) return VLMC_OK;
    if (ndim < 1 || ndim > ARRAYS_MAX_DIMS)
        return vlmc_fail(err, VLMC_ERR_INTERNAL, "intermediate %s: %d dimensions", name, ndim);
    size_t bytes = array_dtype_size(dt);
    for (int d = 0; d < ndim; d++) bytes *= (size_t)shape[d];
    void *copy = malloc(bytes ? bytes : 1);
    if (copy) memcpy(copy, data, bytes);
    return vlm_dump_add(o, name, dt, ndim, shape, copy, note, err);
}

void vlm_dump_out_free(vlm_dump_out *o) {
    for (int i = 0; i < o->n; i++) {
        free(o->a[i].name);
        free(o->a[i].note);
        free(o->a[i].data);
    }
    free(o->a);
    memset(o, 0, sizeof *o);
}

void vlm_vision_sizes(const vlm_model *m, int n, int height, int width, size_t *hidden, size_t *selected,
                      size_t *last, size_t *proj) {
    *hidden = *selected = *last = *proj = 0;
    if (!m->has_vision) return;
    size_t T = (size_t)vit_tokens(&m->vit, height, width), Dv = (size_t)m->vit.D;
    *hidden = (size_t)(m->vit.L + 1) * n * T * Dv;
    *selected = (size_t)n * T * Dv * HF_MAX_FEATURE_LAYERS;
    *last = (size_t)n * T * Dv;
    size_t P = (size_t)m->cfg.latent_query_num > T ? (size_t)m->cfg.latent_query_num : T;
    *proj = (size_t)n * P * (size_t)m->lm.dim;
}

vlmc_status vlm_embed(const vlm_model *m, const int32_t *ids, size_t n, const float *features, size_t n_features,
                      size_t first, bool exact, float *embeds, size_t *used, vlmc_error *err) {
    return vlm_embed_at(m, ids, n, NULL, features, n_features, first, exact, embeds, used, err);
}

/* Is position i an image slot: image_mask's, or the image token id (moondream2's input_ids_full marks its slots
 * with -1, its image_token_id) of a model with vision. */
static bool image_slot(const vlm_model *m, const int32_t *ids, const int32_t *image_mask, size_t i) {
    return image_mask ? image_mask[i] != 0 : m->has_vision && ids[i] == m->image_token_id;
}

vlmc_status vlm_embed_at(const vlm_model *m, const int32_t *ids, size_t n, const int32_t *image_mask,
                         const float *features, size_t n_features, size_t first, bool exact, float *embeds,
                         size_t *used, vlmc_error *err) {
    const size_t D = (size_t)m->lm.dim;
    size_t n_img = 0;
    for (size_t i = 0; i < n; i++) n_img += image_slot(m, ids, image_mask, i);
    if (used) *used = n_img;
    if (n_img && !features)
        return vlmc_fail(err, VLMC_ERR_ARG, "the prompt has %zu image positions but no image was given", n_img);
    if (first > n_features || n_img > n_features - first || (exact && first + n_img != n_features))
        return vlmc_fail(err, VLMC_ERR_ARG,
                         "Image features and image tokens do not match: tokens: %zu, features %zu (the prompt needs "
                         "one image %s per feature row)",
                         n_img, n_features - (first < n_features ? first : n_features),
                         image_mask ? "position" : "token");
    /* text runs through the embedding table (an image slot's id may be outside it), image slots from features */
    size_t k = first;
    for (size_t i = 0; i < n;) {
        if (image_slot(m, ids, image_mask, i)) {
            memcpy(embeds + i * D, features + (k++) * D, D * sizeof(float));
            i++;
            continue;
        }
        size_t j = i; /* a run of text tokens [i, j) */
        while (j < n && !image_slot(m, ids, image_mask, j)) j++;
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

static vlmc_status dump_input(const array_set *in, const char *dir, const char *name, array_dtype dtype, int ndim,
                              const named_array **out, vlmc_error *err) {
    const named_array *a = array_set_find(in, name);
    *out = NULL;
    if (!a) return VLMC_OK;
    if (a->dtype != dtype || a->ndim != ndim)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %s must be %s with %d dimensions", dir, name, array_dtype_name(dtype),
                         ndim);
    for (int d = 0; d < ndim; d++)
        if (a->shape[d] < 1 || a->shape[d] > (1 << 20))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %s has dimension %d of size %lld", dir, name, d,
                             (long long)a->shape[d]);
    *out = a;
    return VLMC_OK;
}

vlmc_status vlm_dump_read_inputs(const array_set *in, const char *dir, const char *family, vlm_dump_inputs *out,
                                 vlmc_error *err) {
    static const char *const known[] = {"input_ids", "attention_mask", "pixel_values", "image_raw", NULL};
    memset(out, 0, sizeof *out);
    for (int i = 0; i < in->count; i++) {
        bool ok = false;
        for (const char *const *k = known; *k && !ok; k++) ok = !strcmp(*k, in->arrays[i].name);
        if (!ok)
            return vlmc_fail(err, VLMC_ERR_ARG, "%s: array %s is not an input of vlmc dump for %s", dir,
                             in->arrays[i].name, family);
    }
    vlmc_status s;
    if ((s = dump_input(in, dir, "input_ids", ARRAY_I32, 2, &out->ids, err)) ||
        (s = dump_input(in, dir, "attention_mask", ARRAY_I32, 2, &out->mask, err)) ||
        (s = dump_input(in, dir, "pixel_values", ARRAY_F32, 4, &out->pixels, err)) ||
        (s = dump_input(in, dir, "image_raw", ARRAY_U8, 3, &out->image_raw, err)))
        return s;
    if (!out->ids || out->ids->shape[0] != 1)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %s's dump takes input_ids [1, T] (one sequence)", dir, family);
    out->T = (int)out->ids->shape[1];
    if (out->mask) {
        if (out->mask->shape[0] != 1 || out->mask->shape[1] != out->T)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: attention_mask must have the shape of input_ids", dir);
        for (int t = 0; t < out->T; t++)
            if (((const int32_t *)out->mask->data)[t] != 1)
                return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: %s's dump takes an attention_mask of ones", dir, family);
    }
    if (out->image_raw && out->image_raw->shape[2] != 3)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: image_raw must be [H, W, 3]", dir);
    return VLMC_OK;
}

vlmc_status vlm_dump_decoder(const vlm_model *m, const float *embeds, int T, int generate_n, vlm_dump_out *out,
                             vlmc_error *err) {
    const int64_t V = m->lm.vocab, D = m->lm.dim, L = m->lm.n_layers;
    llama_ctx c;
    vlmc_status s = llama_ctx_init(&c, &m->lm, 1, T + generate_n, T, err);
    if (s) return s;
    float *logits = malloc((size_t)T * V * sizeof(float)), *hidden = malloc((size_t)(L + 1) * T * D * sizeof(float));
    float *inv = NULL, *steps = NULL;
    int32_t *gen = NULL;
    llama_input li = {.n_tokens = T, .embeds = embeds};
    if (!logits || !hidden) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for the logits of %d tokens", T);
        goto done;
    }
    if ((s = llama_forward(&c, &li, &(llama_output){.logits = logits, .hidden_states = hidden}, err))) goto done;
    if (m->lm.qwen_dynamic_ntk) {
        const int half = m->lm.rot_dim / 2;
        if ((inv = malloc((size_t)half * sizeof(float)))) memcpy(inv, c.inv_freq, (size_t)half * sizeof(float));
        s = vlm_dump_add(out, "rope_inv_freq_prefill", ARRAY_F32, 1, (int64_t[]){half}, inv,
                         "rotary inv_freq after the dynamic-NTK update at prefill", err);
        if (s) goto done;
    }
    s = vlm_dump_add(out, "logits", ARRAY_F32, 3, (int64_t[]){1, T, V}, logits, "[1, T, vocab]", err);
    logits = NULL;
    if (s) goto done;
    s = vlm_dump_add(out, "text_hidden_states", ARRAY_F32, 4, (int64_t[]){L + 1, 1, T, D}, hidden,
                     "[layers+1, 1, T, D]; [0] = input embeddings, last = final norm output", err);
    hidden = NULL;
    if (s || !generate_n) goto done;
    gen = malloc((size_t)generate_n * sizeof(int32_t));
    steps = malloc((size_t)generate_n * V * sizeof(float));
    if (!gen || !steps) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        goto done;
    }
    llama_ctx_reset(&c);
    if ((s = llama_generate_greedy(&c, &li, generate_n, gen, steps, err))) goto done;
    s = vlm_dump_add(out, "generated_ids", ARRAY_I32, 2, (int64_t[]){1, generate_n}, gen,
                     "greedy continuation (KV-cache path, no EOS stop)", err);
    gen = NULL;
    if (!s)
        s = vlm_dump_add(out, "generation_step_logits", ARRAY_F32, 3, (int64_t[]){1, generate_n, V}, steps,
                         "raw logits that produced each generated token [1, n, vocab]", err);
    steps = NULL;
done:
    llama_ctx_free(&c);
    free(logits); free(hidden); free(gen); free(steps);
    return s;
}

vlmc_status vlm_llava_features_len(const vlm_model *m, const vlm_images *im, size_t *n, vlmc_error *err) {
    vit_outputs o = {0};
    vlmc_status s = vit_select_from_config(&m->cfg, NULL, &o, err);
    if (s) return s;
    int tokens, feat;
    vit_selected_shape(&m->vit, &o, im->height, im->width, &tokens, &feat);
    *n = (size_t)im->n_tiles * (size_t)tokens;
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
