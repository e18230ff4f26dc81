/* The trainer: data → token ids and labels (chat template), batches, the optimisation loop with
 * Hugging Face Trainer's semantics, checkpoints with exact resume, metrics, export. See vlmc.h
 * (vlmc_train) for the parameters and trainer.h for the pieces. */
#include "train/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#include "core/file.h"
#include "formats/json.h"
#include "formats/safetensors.h"
#include "models/vlm.h"
#include "train/optim.h"

/* ---- examples --------------------------------------------------------------------------------- */

void tr_example_free(tr_example *e) {
    free(e->ids);
    free(e->labels);
    memset(e, 0, sizeof *e);
}

/* A copy of messages[0..n) with, for text-only models, each content list joined into a string. */
static vlmc_status messages_slice(const cJSON *messages, int n, bool as_string, cJSON **out, vlmc_error *err) {
    cJSON *arr = cJSON_CreateArray();
    if (!arr) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    int i = 0;
    const cJSON *msg;
    cJSON_ArrayForEach(msg, messages) {
        if (i++ >= n) break;
        cJSON *c = cJSON_Duplicate(msg, 1);
        if (!c) {
            cJSON_Delete(arr);
            return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        }
        cJSON *content = cJSON_GetObjectItemCaseSensitive(c, "content");
        if (as_string && cJSON_IsArray(content)) {
            size_t len = 0;
            const cJSON *part;
            cJSON_ArrayForEach(part, content) {
                const char *t = json_string(part, "text", NULL);
                if (!strcmp(json_string(part, "type", ""), "image")) {
                    cJSON_Delete(c);
                    cJSON_Delete(arr);
                    return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "an image in a conversation for a text-only model");
                }
                if (t) len += strlen(t);
            }
            char *s = malloc(len + 1), *w = s;
            if (!s) {
                cJSON_Delete(c);
                cJSON_Delete(arr);
                return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
            }
            cJSON_ArrayForEach(part, content) {
                const char *t = json_string(part, "text", NULL);
                if (t) {
                    size_t k = strlen(t);
                    memcpy(w, t, k);
                    w += k;
                }
            }
            *w = 0;
            cJSON_ReplaceItemInObjectCaseSensitive(c, "content", cJSON_CreateString(s));
            free(s);
        }
        cJSON_AddItemToArray(arr, c);
    }
    *out = arr;
    return VLMC_OK;
}

static vlmc_status render(const chat_template *ct, const cJSON *messages, int n, bool gen_prompt, bool as_string,
                          char **out, vlmc_error *err) {
    cJSON *msgs = NULL;
    vlmc_status s = messages_slice(messages, n, as_string, &msgs, err);
    if (s) return s;
    cJSON *req = cJSON_CreateObject();
    if (!req) {
        cJSON_Delete(msgs);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    }
    cJSON_AddItemToObject(req, "messages", msgs);
    cJSON_AddBoolToObject(req, "add_generation_prompt", gen_prompt);
    s = chat_template_render(ct, req, out, err);
    cJSON_Delete(req);
    return s;
}

typedef struct seg { size_t a, b; bool target; } seg;

static vlmc_status append_ids(tr_example *e, int *cap, const int32_t *ids, size_t n, bool target, vlmc_error *err) {
    if (e->n + (int64_t)n > *cap) {
        int nc = (int)(e->n + (int64_t)n) * 2 + 16;
        int32_t *a = realloc(e->ids, (size_t)nc * sizeof *a), *b = a ? realloc(e->labels, (size_t)nc * sizeof *b) : NULL;
        if (a) e->ids = a;
        if (!a || !b) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        e->labels = b;
        *cap = nc;
    }
    for (size_t i = 0; i < n; i++) {
        e->ids[e->n] = ids[i];
        e->labels[e->n] = target ? ids[i] : -100;
        e->n++;
    }
    return VLMC_OK;
}

vlmc_status tr_build_example(const conv_sample *smp, const chat_template *ct, const vlmc_tokenizer *tok,
                             const tr_text_opts *o, tr_example *out, vlmc_error *err) {
    memset(out, 0, sizeof *out);
    const int n_msg = cJSON_GetArraySize(smp->messages);
    char *full = NULL, *pre = NULL, *upto = NULL;
    seg segs[2 * 256 + 1];
    int n_seg = 0;
    vlmc_status s = render(ct, smp->messages, n_msg, false, o->content_as_string, &full, err);
    if (s) return s;
    const size_t full_len = strlen(full);
    if (o->train_on_prompt) {
        segs[n_seg++] = (seg){0, full_len, true};
    } else {
        size_t pos = 0;
        int i = 0;
        const cJSON *msg;
        cJSON_ArrayForEach(msg, smp->messages) {
            if (strcmp(json_string(msg, "role", ""), "assistant")) {
                i++;
                continue;
            }
            if (n_seg + 2 >= (int)(sizeof segs / sizeof segs[0])) {
                s = vlmc_fail(err, VLMC_ERR_LIMIT, "row %d: more than 256 assistant turns", smp->source_line);
                goto out;
            }
            if ((s = render(ct, smp->messages, i, true, o->content_as_string, &pre, err)) ||
                (s = render(ct, smp->messages, i + 1, false, o->content_as_string, &upto, err)))
                goto out;
            size_t lp = strlen(pre), lu = strlen(upto);
            if (lu > full_len || strncmp(full, upto, lu) || lp > lu || strncmp(upto, pre, lp) || lp < pos) {
                s = vlmc_fail(err, VLMC_ERR_UNSUPPORTED,
                              "row %d: the chat template does not render message %d as a continuation of the ones "
                              "before it, so the assistant's part cannot be found; use --train-on-prompt",
                              smp->source_line, i);
                goto out;
            }
            if (lp > pos) segs[n_seg++] = (seg){pos, lp, false};
            segs[n_seg++] = (seg){lp, lu, true};
            pos = lu;
            free(pre);
            free(upto);
            pre = upto = NULL;
            i++;
        }
        if (pos < full_len) segs[n_seg++] = (seg){pos, full_len, false};
    }
    int cap = 0;
    for (int k = 0; k < n_seg; k++) {
        int32_t *ids = NULL;
        size_t n = 0;
        if ((s = vlmc_tokenizer_encode(tok, full + segs[k].a, segs[k].b - segs[k].a, 0, &ids, &n, err))) goto out;
        /* image placeholders: image_tokens copies each, never targets */
        size_t start = 0;
        for (size_t j = 0; j <= n && !s; j++) {
            if (j < n && !(o->image_token >= 0 && ids[j] == o->image_token)) continue;
            s = append_ids(out, &cap, ids + start, j - start, segs[k].target, err);
            if (j < n && !s) {
                if (o->expansions && out->n_images < smp->n_images) {
                    const tr_image_ids *x = &o->expansions[out->n_images];
                    for (size_t c = 0; c < x->n && !s; c++)
                        s = append_ids(out, &cap, x->ids + c, 1, segs[k].target && x->ids[c] != o->image_token, err);
                } else {
                    for (int c = 0; c < o->image_tokens && !s; c++) s = append_ids(out, &cap, ids + j, 1, false, err);
                }
                out->n_images++;
            }
            start = j + 1;
        }
        free(ids);
        if (s) goto out;
    }
    if (out->n_images != smp->n_images) {
        s = vlmc_fail(err, VLMC_ERR_FORMAT, "row %d: %d images but %d image tokens in the rendered text",
                      smp->source_line, smp->n_images, out->n_images);
        goto out;
    }
    if (o->max_length > 0 && out->n > o->max_length) {
        int cut = out->n - o->max_length;
        for (int t = o->max_length; t < out->n && o->image_token >= 0; t++)
            if (out->ids[t] == o->image_token) {
                s = vlmc_fail(err, VLMC_ERR_LIMIT, "row %d: %d tokens; cutting to max_length %d would cut an image",
                              smp->source_line, out->n, o->max_length);
                goto out;
            }
        out->n -= cut;
    }
    out->images = smp->images;
    out->n_targets = 0;
    for (int t = 1; t < out->n; t++) out->n_targets += out->labels[t] != -100;
out:
    free(full);
    free(pre);
    free(upto);
    if (s) tr_example_free(out);
    return s;
}

/* The family's expansion of "<image>" (vlm_family.image_prompt) for the processor's output on the image. */
vlmc_status tr_image_expansion(const train_model *m, const vlmc_image_processor *proc, const vlmc_tokenizer *tok,
                               const char *path, tr_image_ids *out, vlmc_error *err) {
    vlmc_image *im = NULL;
    vlmc_preprocessed pp;
    memset(&pp, 0, sizeof pp);
    vlmc_status s = vlmc_image_load_file(path, NULL, &im, err);
    if (s) return s;
    s = vlmc_preprocess(proc, im, &pp, err);
    vlmc_image_free(im);
    if (s) return s;
    vlm_image_info info = {.n_tokens = 0, .rows = pp.has_rows_cols ? pp.rows : 0, .cols = pp.has_rows_cols ? pp.cols : 0};
    if (m->vlm == TM_LLAVA_NEXT) {
        /* the packed length the training graph computes for the image's size */
        int tiles = 0;
        size_t len = 0;
        if (!pp.has_image_sizes) s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: the processor gave no image size", path);
        else if (!(s = llava_next_num_tiles(&m->pack, pp.image_sizes[0], pp.image_sizes[1], &tiles, err)))
            s = llava_next_packed_len(&m->pack, tiles, m->NS, pp.image_sizes[0], pp.image_sizes[1], &len, err);
        info.n_tokens = (int64_t)len;
    }
    vlmc_preprocessed_free(&pp);
    if (s) return s;
    /* image_prompt reads the family and, for Idefics3, the rows per tile: a model view with just those */
    vlm_model view;
    memset(&view, 0, sizeof view);
    view.fam = vlm_family_find(&m->cfg);
    view.image_seq_len = m->NO;
    if (!view.fam || !view.fam->image_prompt)
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: no image prompt for %s", m->dir, m->cfg.model_type);
    strbuf b = {0};
    if ((s = view.fam->image_prompt(&view, &info, &b, err))) {
        strbuf_free(&b);
        return s;
    }
    const char *text = strbuf_cstr(&b);
    if (b.failed || !text) s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    else s = vlmc_tokenizer_encode(tok, text, b.len, 0, &out->ids, &out->n, err);
    strbuf_free(&b);
    return s;
}

/* ---- export ---------------------------------------------------------------------------------------- */

static const char *const copied_files[] = {
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "added_tokens.json", "vocab.json", "merges.txt", "tokenizer.model", "chat_template.json", "chat_template.jinja",
    "preprocessor_config.json", "processor_config.json",
};

static vlmc_status copy_file(const char *src_dir, const char *dst_dir, const char *name, vlmc_error *err) {
    char *a = path_join(src_dir, name), *b = path_join(dst_dir, name);
    vlmc_status s = VLMC_OK;
    if (!a || !b) s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    else if (file_exists(a)) {
        char *data = NULL;
        size_t len = 0;
        s = file_read_all(a, (size_t)1 << 30, &data, &len, err);
        if (!s) s = file_write_all(b, data, len, err);
        free(data);
    }
    free(a);
    free(b);
    return s;
}

/* W + scale · B A for a LoRA-wrapped weight, into out [o, i]. */
static void lora_merge(const train_model *m, const tm_linear *l, const tm_param *wp, float *out) {
    const int64_t O = wp->shape[0], I = wp->shape[1], r = m->lora.r;
    memcpy(out, l->w, (size_t)(O * I) * sizeof(float));
    for (int64_t o = 0; o < O; o++)
        for (int64_t k = 0; k < r; k++) {
            const float b = m->lora_scale * l->lora_b[o * r + k];
            const float *a = l->lora_a + k * I;
            for (int64_t i = 0; i < I; i++) out[o * I + i] += b * a[i];
        }
}

/* The linear that owns weight w, or NULL. */
static const tm_linear *linear_of(const train_model *m, const float *w) {
    for (int l = 0; l < m->L; l++)
        for (int j = 0; j < LIN_COUNT; j++)
            if (m->w.layers[l].lin[j].w == w) return &m->w.layers[l].lin[j];
    return NULL;
}

vlmc_status tr_export_model(const train_model *m, const char *src_dir, const char *out_dir, vlmc_error *err) {
    vlmc_status s = file_mkdirs(out_dir, err);
    if (s) return s;
    for (size_t i = 0; i < sizeof copied_files / sizeof copied_files[0]; i++)
        if ((s = copy_file(src_dir, out_dir, copied_files[i], err))) return s;
    safetensors *st = NULL;
    if ((s = safetensors_open(src_dir, &st, err))) return s;
    const size_t n = safetensors_count(st);
    const char **names = calloc(n + 1, sizeof *names);
    tensor *ts = calloc(n + 1, sizeof *ts);
    float **merged = calloc(n + 1, sizeof *merged);
    char *path = path_join(out_dir, "model.safetensors");
    if (!names || !ts || !merged || !path) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const st_entry *e = safetensors_at(st, i);
        names[i] = e->name;
        tm_param *p = train_model_find((train_model *)m, e->name);
        if (!p) {
            ts[i] = e->t; /* not a parameter we hold (buffers): as it was */
            continue;
        }
        const float *data = tm_param_data(m, p);
        const tm_linear *lin = m->lora.r > 0 ? linear_of(m, data) : NULL;
        if (lin && lin->lora_a) {
            merged[i] = malloc(p->n * sizeof(float));
            if (!merged[i]) {
                s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
                goto out;
            }
            lora_merge(m, lin, p, merged[i]);
            data = merged[i];
        }
        ts[i] = tensor_view(DT_F32, (void *)data, (int)e->t.ndim, e->t.shape);
    }
    s = safetensors_write(path, n, names, ts, "{\"format\": \"pt\"}", err);
out:
    for (size_t i = 0; merged && i < n; i++) free(merged[i]);
    free(merged);
    free(names);
    free(ts);
    free(path);
    safetensors_close(st);
    return s;
}

vlmc_status tr_export_adapter(const train_model *m, const char *src_dir, const char *out_dir, vlmc_error *err) {
    vlmc_status s = file_mkdirs(out_dir, err);
    if (s) return s;
    int n = 0;
    for (int i = 0; i < m->n_params; i++) n += m->params[i].part == TM_PART_LORA;
    const char **names = calloc((size_t)n + 1, sizeof *names);
    tensor *ts = calloc((size_t)n + 1, sizeof *ts);
    char *path = path_join(out_dir, "adapter_model.safetensors"), *cfg_path = path_join(out_dir, "adapter_config.json");
    cJSON *c = cJSON_CreateObject();
    char *txt = NULL;
    if (!names || !ts || !path || !cfg_path || !c) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        goto out;
    }
    int k = 0;
    for (int i = 0; i < m->n_params; i++) {
        const tm_param *p = &m->params[i];
        if (p->part != TM_PART_LORA) continue;
        names[k] = p->name;
        ts[k++] = tensor_view(DT_F32, tm_param_data(m, p), p->ndim, p->shape);
    }
    if ((s = safetensors_write(path, (size_t)n, names, ts, "{\"format\": \"pt\"}", err))) goto out;
    /* PEFT's LoraConfig as save_pretrained writes it. For a VLM the target is a regex on the language
     * model (LLaVA's language_model, Idefics3's text_model), since the vision tower has modules of the same
     * names. */
    cJSON_AddStringToObject(c, "base_model_name_or_path", src_dir);
    cJSON_AddBoolToObject(c, "bias", 0);
    cJSON_ReplaceItemInObject(c, "bias", cJSON_CreateString("none"));
    cJSON_AddBoolToObject(c, "fan_in_fan_out", 0);
    cJSON_AddBoolToObject(c, "inference_mode", 1);
    cJSON_AddBoolToObject(c, "init_lora_weights", 1);
    cJSON_AddNullToObject(c, "layers_pattern");
    cJSON_AddNullToObject(c, "layers_to_transform");
    cJSON_AddNumberToObject(c, "lora_alpha", m->lora.alpha);
    cJSON_AddNumberToObject(c, "lora_dropout", m->lora.dropout);
    cJSON_AddNullToObject(c, "modules_to_save");
    cJSON_AddStringToObject(c, "peft_type", "LORA");
    cJSON_AddNumberToObject(c, "r", m->lora.r);
    cJSON_AddNullToObject(c, "revision");
    if (m->is_vlm) {
        char re[512];
        snprintf(re, sizeof re, ".*%s.*\\.(", m->vlm == TM_IDEFICS3 ? "text_model" : "language_model");
        for (int j = 0, first = 1; j < LIN_COUNT; j++)
            if (m->lora.targets >> j & 1u) {
                if (!first) strcat(re, "|");
                strcat(re, strchr(tm_linear_modules[j], '.') + 1);
                first = 0;
            }
        strcat(re, ")");
        cJSON_AddStringToObject(c, "target_modules", re);
    } else {
        cJSON *t = cJSON_AddArrayToObject(c, "target_modules");
        for (int j = 0; j < LIN_COUNT; j++)
            if (m->lora.targets >> j & 1u) cJSON_AddItemToArray(t, cJSON_CreateString(strchr(tm_linear_modules[j], '.') + 1));
    }
    cJSON_AddStringToObject(c, "task_type", "CAUSAL_LM");
    cJSON_AddBoolToObject(c, "use_dora", 0);
    cJSON_AddBoolToObject(c, "use_rslora", 0);
    txt = cJSON_Print(c);
    if (!txt) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        goto out;
    }
    s = file_write_all(cfg_path, txt, strlen(txt), err);
out:
    free(txt);
    cJSON_Delete(c);
    free(names);
    free(ts);
    free(path);
    free(cfg_path);
    return s;
}
