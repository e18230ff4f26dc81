/* Task files: tasks/<name>.json (see docs/EVAL.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/strbuf.h"
#include "eval/harness.h"
#include "formats/json.h"

#define TASK_MAX_BYTES (1u << 20)

static const char *const kind_names[] = {"mcq", "vqa", "grounding", "caption", "yesno", "synth"};
static const char *const format_names[] = {"mmbench_tsv", "synth_qa_jsonl", "pope_jsonl", "jsonl"};

const char *eval_kind_name(eval_kind k) { return (unsigned)k < 6 ? kind_names[k] : "?"; }

/* metrics each kind may report; the first is the default main metric */
static const char *const kind_metrics[6][6] = {
    {"accuracy", NULL},
    {"exact_match", "vqa_accuracy", "anls", NULL},
    {"iou_accuracy", "mean_iou", NULL},
    {"cider", "bleu4", NULL},
    {"accuracy", "precision", "recall", "f1", "yes_ratio", NULL},
    {"accuracy", "iou_accuracy", "cider", NULL},
};

static const char *const default_prompts[6] = {
    "{image}{hint_line}{question}\n{options}Answer with the option's letter from the given choices directly.",
    "{image}{question}\nAnswer the question using a single word or phrase.",
    "{image}{question}",
    "{image}{question}",
    "{image}{question}\nAnswer the question using a single word or phrase.",
    "{image}{question}",
};

static const char *const known_keys[] = {"name", "alias", "description", "version", "kind", "format", "data",
                                         "split", "image_root", "prompt", "metric", "output_type", "circular",
                                         "generation", "iou_threshold", "anls_threshold", "category_field",
                                         "fields", NULL};

static char *dupstr(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* Expands ${data}, ${image_dir}, ${split} in s; a relative result is joined to base. */
static vlmc_status expand_path(const char *file, const char *key, const char *s, const eval_task_vars *vars,
                               const char *split, const char *base, char **out, vlmc_error *err) {
    strbuf b = {0};
    bool from_var = false;
    for (const char *p = s; *p;) {
        if (p[0] == '$' && p[1] == '{') {
            const char *e = strchr(p, '}');
            if (!e) {
                strbuf_free(&b);
                return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: key \"%s\": unterminated ${ in '%s'", file, key, s);
            }
            size_t n = (size_t)(e - p - 2);
            const char *val = NULL;
            if (n == 4 && !strncmp(p + 2, "data", 4)) {
                val = vars ? vars->data_dir : NULL;
                if (!val) {
                    strbuf_free(&b);
                    return vlmc_fail(err, VLMC_ERR_ARG,
                                     "%s: key \"%s\" uses ${data}: pass the data folder (vlmc eval --data DIR)", file,
                                     key);
                }
                if (p == s) from_var = true;
            } else if (n == 9 && !strncmp(p + 2, "image_dir", 9)) {
                val = vars ? vars->image_dir : NULL;
                if (!val) {
                    strbuf_free(&b);
                    return vlmc_fail(err, VLMC_ERR_ARG,
                                     "%s: key \"%s\" uses ${image_dir}: this task's images are not bundled; pass "
                                     "their folder (vlmc eval --image-dir DIR)",
                                     file, key);
                }
                if (p == s) from_var = true;
            } else if (n == 5 && !strncmp(p + 2, "split", 5)) {
                val = split;
            } else {
                strbuf_free(&b);
                return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: key \"%s\": unknown variable '%.*s' (known: ${data}, "
                                 "${image_dir}, ${split})", file, key, (int)(n + 3), p);
            }
            strbuf_puts(&b, val);
            p = e + 1;
        } else {
            strbuf_append(&b, p, 1);
            p++;
        }
    }
    const char *r = strbuf_cstr(&b);
    if (!r) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file);
    if (r[0] == '/' || from_var || !base) {
        *out = dupstr(r);
    } else {
        *out = path_join(base, r);
    }
    strbuf_free(&b);
    if (!*out) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file);
    return VLMC_OK;
}

static vlmc_status get_str(const char *file, const cJSON *root, const char *key, const char *def, bool required,
                           char **out, vlmc_error *err) {
    const cJSON *v = json_get(root, key);
    if (!v) {
        if (required) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: missing key \"%s\"", file, key);
        *out = def ? dupstr(def) : NULL;
        if (def && !*out) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file);
        return VLMC_OK;
    }
    if (!cJSON_IsString(v)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: key \"%s\" must be a string", file, key);
    *out = dupstr(v->valuestring);
    if (!*out) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file);
    return VLMC_OK;
}

static int lookup(const char *s, const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}

static vlmc_status str_list(const char *file, const char *key, const cJSON *v, char ***out, size_t *n,
                            vlmc_error *err) {
    *out = NULL;
    *n = 0;
    if (cJSON_IsString(v)) {
        *out = calloc(1, sizeof **out);
        if (!*out || !((*out)[0] = dupstr(v->valuestring))) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file);
        *n = 1;
        return VLMC_OK;
    }
    if (!cJSON_IsArray(v)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: key \"%s\" must be a string or a list of strings", file, key);
    int m = cJSON_GetArraySize(v);
    if (m > 64) return vlmc_fail(err, VLMC_ERR_LIMIT, "%s: key \"%s\" has more than 64 entries", file, key);
    *out = calloc((size_t)m + 1, sizeof **out);
    if (!*out) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file);
    for (int i = 0; i < m; i++) {
        const cJSON *e = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsString(e))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: key \"%s\": entry %d is not a string", file, key, i);
        if (!((*out)[i] = dupstr(e->valuestring))) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file);
        (*n)++;
    }
    return VLMC_OK;
}

static uint64_t fnv1a(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

vlmc_status eval_task_parse(const char *text, size_t len, const char *path, const eval_task_vars *vars,
                            eval_task *t, vlmc_error *err) {
    memset(t, 0, sizeof *t);
    t->file = dupstr(path);
    if (!t->file) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    const char *file = t->file;
    cJSON *root = NULL;
    vlmc_status st = json_parse(text, len, file, &root, err);
    if (st) goto fail;
    t->config = root;
    if (!cJSON_IsObject(root)) {
        st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: a task file is one JSON object", file);
        goto fail;
    }
    for (const cJSON *c = root->child; c; c = c->next)
        if (lookup(c->string, known_keys, (int)(sizeof known_keys / sizeof *known_keys) - 1) < 0) {
            st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: unknown key \"%s\"", file, c->string);
            goto fail;
        }
    char *kind = NULL, *format = NULL, *data = NULL, *image_root = NULL, *otype = NULL, *circ = NULL;
    if ((st = get_str(file, root, "name", NULL, true, &t->name, err))) goto fail;
    if (!t->name[0] || strpbrk(t->name, "/\\ \t\n")) {
        st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: key \"name\" must be a non-empty word without '/' or spaces", file);
        goto fail;
    }
    if ((st = get_str(file, root, "alias", t->name, false, &t->alias, err))) goto fail;
    if ((st = get_str(file, root, "kind", NULL, true, &kind, err))) goto fail;
    int k = lookup(kind, kind_names, 6);
    if (k < 0) {
        st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: key \"kind\": unknown kind '%s' (mcq, vqa, grounding, caption, "
                       "yesno, synth)", file, kind);
        free(kind);
        goto fail;
    }
    free(kind);
    t->kind = (eval_kind)k;
    if ((st = get_str(file, root, "format", NULL, true, &format, err))) goto fail;
    int f = lookup(format, format_names, 4);
    if (f < 0) {
        st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: key \"format\": unknown format '%s' (mmbench_tsv, synth_qa_jsonl, "
                       "pope_jsonl, jsonl)", file, format);
        free(format);
        goto fail;
    }
    free(format);
    t->format = (eval_format)f;
    if ((st = get_str(file, root, "split", "test", false, &t->split, err))) goto fail;
    char *dir = path_dirname(file);
    if (!dir) {
        st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((st = get_str(file, root, "data", NULL, true, &data, err))) {
        free(dir);
        goto fail;
    }
    st = expand_path(file, "data", data, vars, t->split, dir, &t->data, err);
    free(data);
    if (st) {
        free(dir);
        goto fail;
    }
    if ((st = get_str(file, root, "image_root", NULL, false, &image_root, err))) {
        free(dir);
        goto fail;
    }
    if (image_root) {
        st = expand_path(file, "image_root", image_root, vars, t->split, dir, &t->image_root, err);
        free(image_root);
    } else {
        t->image_root = path_dirname(t->data);
        if (!t->image_root) st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    }
    free(dir);
    if (st) goto fail;
    if ((st = get_str(file, root, "prompt", default_prompts[t->kind], false, &t->prompt, err))) goto fail;
    const cJSON *m = json_get(root, "metric");
    if (m) {
        if ((st = str_list(file, "metric", m, &t->metrics, &t->n_metrics, err))) goto fail;
        if (!t->n_metrics) {
            st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: key \"metric\" is an empty list", file);
            goto fail;
        }
        for (size_t i = 0; i < t->n_metrics; i++) {
            int ok = 0;
            for (int j = 0; kind_metrics[t->kind][j]; j++) ok |= !strcmp(t->metrics[i], kind_metrics[t->kind][j]);
            if (!ok) {
                strbuf b = {0};
                for (int j = 0; kind_metrics[t->kind][j]; j++)
                    strbuf_printf(&b, "%s%s", j ? ", " : "", kind_metrics[t->kind][j]);
                st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: key \"metric\": '%s' is not a metric of kind %s (%s)", file,
                               t->metrics[i], kind_names[t->kind], strbuf_cstr(&b) ? strbuf_cstr(&b) : "");
                strbuf_free(&b);
                goto fail;
            }
        }
    } else {
        size_t n = 0;
        while (kind_metrics[t->kind][n]) n++;
        if (t->kind != EVAL_KIND_SYNTH && t->kind != EVAL_KIND_YESNO && t->kind != EVAL_KIND_CAPTION) n = 1;
        t->metrics = calloc(n + 1, sizeof *t->metrics);
        if (!t->metrics) {
            st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < n; i++)
            if (!(t->metrics[t->n_metrics++] = dupstr(kind_metrics[t->kind][i]))) {
                st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
                goto fail;
            }
    }
    if ((st = get_str(file, root, "output_type", "generate_until", false, &otype, err))) goto fail;
    if (!strcmp(otype, "multiple_choice")) t->loglikelihood = true;
    else if (strcmp(otype, "generate_until")) {
        st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: key \"output_type\": '%s' is neither generate_until nor "
                       "multiple_choice", file, otype);
        free(otype);
        goto fail;
    }
    free(otype);
    if (t->loglikelihood && t->kind != EVAL_KIND_MCQ && t->kind != EVAL_KIND_YESNO) {
        st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: key \"output_type\": multiple_choice needs kind mcq or yesno", file);
        goto fail;
    }
    if ((st = get_str(file, root, "circular", "off", false, &circ, err))) goto fail;
    if (!strcmp(circ, "off")) t->circular = EVAL_CIRC_OFF;
    else if (!strcmp(circ, "expand")) t->circular = EVAL_CIRC_EXPAND;
    else if (!strcmp(circ, "given")) t->circular = EVAL_CIRC_GIVEN;
    else {
        st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: key \"circular\": '%s' is not off, expand or given", file, circ);
        free(circ);
        goto fail;
    }
    free(circ);
    if (t->circular != EVAL_CIRC_OFF && t->kind != EVAL_KIND_MCQ) {
        st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: key \"circular\" applies to kind mcq only", file);
        goto fail;
    }
    t->max_new_tokens = t->kind == EVAL_KIND_CAPTION || t->kind == EVAL_KIND_SYNTH ? 64 : 32;
    t->temperature = 0;
    const cJSON *g = json_get(root, "generation");
    if (g) {
        if (!cJSON_IsObject(g)) {
            st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: key \"generation\" must be an object", file);
            goto fail;
        }
        for (const cJSON *c = g->child; c; c = c->next)
            if (strcmp(c->string, "max_new_tokens") && strcmp(c->string, "stop") && strcmp(c->string, "temperature")) {
                st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: unknown key \"generation.%s\" (max_new_tokens, stop, "
                               "temperature)", file, c->string);
                goto fail;
            }
        const cJSON *v = json_get(g, "max_new_tokens");
        if (v) {
            if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 65536 ||
                v->valuedouble != (double)(int)v->valuedouble) {
                st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: key \"generation.max_new_tokens\" must be an integer in "
                               "1..65536", file);
                goto fail;
            }
            t->max_new_tokens = (int)v->valuedouble;
        }
        v = json_get(g, "temperature");
        if (v) {
            if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= 100)) {
                st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: key \"generation.temperature\" must be a number >= 0", file);
                goto fail;
            }
            t->temperature = v->valuedouble;
        }
        v = json_get(g, "stop");
        if (v && (st = str_list(file, "generation.stop", v, &t->stop, &t->n_stop, err))) goto fail;
    }
    t->iou_threshold = 0.5;
    t->anls_threshold = 0.5;
    static const char *const thr_keys[2] = {"iou_threshold", "anls_threshold"};
    double *thr[2] = {&t->iou_threshold, &t->anls_threshold};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = json_get(root, thr_keys[i]);
        if (!v) continue;
        if (!cJSON_IsNumber(v) || !(v->valuedouble > 0 && v->valuedouble <= 1)) {
            st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: key \"%s\" must be a number in (0, 1]", file, thr_keys[i]);
            goto fail;
        }
        *thr[i] = v->valuedouble;
    }
    const char *cat_def = t->format == EVAL_FMT_MMBENCH_TSV ? "category" : NULL;
    if ((st = get_str(file, root, "category_field", cat_def, false, &t->category_field, err))) goto fail;
    const cJSON *fields = json_get(root, "fields");
    if (fields && !cJSON_IsObject(fields)) {
        st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: key \"fields\" must be an object", file);
        goto fail;
    }
    if (fields && t->format != EVAL_FMT_JSONL) {
        st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: key \"fields\" applies to format jsonl only", file);
        goto fail;
    }
    static const char *const fkeys[7] = {"id", "question", "answer", "image", "options", "hint", "category"};
    char **fdst[7] = {&t->f_id, &t->f_question, &t->f_answer, &t->f_image, &t->f_options, &t->f_hint, &t->f_category};
    static const char *const fdef[7] = {"id", "question", "answer", "image", "options", "hint", "category"};
    for (const cJSON *c = fields ? fields->child : NULL; c; c = c->next)
        if (lookup(c->string, fkeys, 7) < 0) {
            st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: unknown key \"fields.%s\" (id, question, answer, image, options, "
                           "hint, category)", file, c->string);
            goto fail;
        }
    for (int i = 0; i < 7; i++) {
        char key[32];
        snprintf(key, sizeof key, "fields.%s", fkeys[i]);
        const cJSON *v = json_get(fields, fkeys[i]);
        if (v && !cJSON_IsString(v)) {
            st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: key \"%s\" must be a string", file, key);
            goto fail;
        }
        if (!(*fdst[i] = dupstr(v ? v->valuestring : fdef[i]))) {
            st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
            goto fail;
        }
    }
    /* resolved data path in the config, and the fingerprint over the text and resolved paths */
    cJSON_DeleteItemFromObjectCaseSensitive(root, "data");
    if (!cJSON_AddStringToObject(root, "data", t->data)) {
        st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        goto fail;
    }
    uint64_t h = 1469598103934665603ull;
    h = fnv1a(h, text, len);
    h = fnv1a(h, t->data, strlen(t->data) + 1);
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
    if (!(t->fingerprint = dupstr(hex))) {
        st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        goto fail;
    }
    return VLMC_OK;
fail:
    eval_task_free(t);
    return st;
}

vlmc_status eval_task_load(const char *path, const eval_task_vars *vars, eval_task *out, vlmc_error *err) {
    char *text;
    size_t len;
    memset(out, 0, sizeof *out);
    vlmc_status st = file_read_all(path, TASK_MAX_BYTES, &text, &len, err);
    if (st) return st;
    st = eval_task_parse(text, len, path, vars, out, err);
    free(text);
    return st;
}

static void free_list(char **l, size_t n) {
    if (!l) return;
    for (size_t i = 0; i < n; i++) free(l[i]);
    free(l);
}

void eval_task_free(eval_task *t) {
    if (!t) return;
    free(t->file);
    free(t->name);
    free(t->alias);
    free(t->split);
    free(t->data);
    free(t->image_root);
    free(t->prompt);
    free_list(t->metrics, t->n_metrics);
    free_list(t->stop, t->n_stop);
    free(t->category_field);
    free(t->f_id);
    free(t->f_question);
    free(t->f_answer);
    free(t->f_image);
    free(t->f_options);
    free(t->f_hint);
    free(t->f_category);
    free(t->fingerprint);
    cJSON_Delete(t->config);
    memset(t, 0, sizeof *t);
}
