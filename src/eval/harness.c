/* The run loop of `vlmc eval`: requests to a backend in batches, the sample
 * log (appended as samples are answered, so an interrupted run resumes from
 * it), the final metrics and OUTPUT/results.json in lmms-eval's layout. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "core/strbuf.h"
#include "core/utf8.h"
#include "eval/harness.h"
#include "formats/json.h"

static char *dupstr(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A copy of s with every byte that is not well-formed UTF-8 replaced by U+FFFD. */
static char *utf8_sanitize(const char *s) {
    size_t n = strlen(s);
    if (utf8_valid(s, n)) return dupstr(s);
    strbuf b = {0};
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_decode(s + i, n - i, &cp);
        if (k) {
            strbuf_append(&b, s + i, k);
            i += k;
        } else {
            strbuf_append(&b, "\xEF\xBF\xBD", 3);
            i++;
        }
    }
    return strbuf_take(&b);
}

/* ---- per-task state ------------------------------------------------------------ */

typedef struct task_run {
    eval_task *t;
    eval_docs docs;
    eval_sample *s;  /* [docs.n] */
    bool *have;      /* [docs.n] */
    double **logprobs; /* [docs.n], multiple_choice only */
    size_t *n_logprobs;
    char *log_path, *settings_path;
} task_run;

static void task_run_free(task_run *r) {
    for (size_t i = 0; i < r->docs.n; i++) {
        if (r->s) {
            free(r->s[i].prompt);
            free(r->s[i].target);
            free(r->s[i].response);
            free(r->s[i].parsed);
        }
        if (r->logprobs) free(r->logprobs[i]);
    }
    free(r->s);
    free(r->have);
    free(r->logprobs);
    free(r->n_logprobs);
    free(r->log_path);
    free(r->settings_path);
    eval_docs_free(&r->docs);
}

static const char *image_ref(const eval_task *t, const eval_doc *d, char *buf, size_t cap) {
    if (d->image) return d->image;
    snprintf(buf, cap, "%s#%s", t->data, d->id);
    return buf;
}

static cJSON *sample_json(const task_run *r, size_t i) {
    const eval_task *t = r->t;
    const eval_doc *d = &r->docs.docs[i];
    const eval_sample *s = &r->s[i];
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    char buf[1200];
    bool ok = cJSON_AddStringToObject(o, "task", t->name) && cJSON_AddNumberToObject(o, "doc_id", (double)d->doc_id) &&
              cJSON_AddStringToObject(o, "id", d->id) && cJSON_AddStringToObject(o, "prompt", s->prompt) &&
              cJSON_AddStringToObject(o, "target", s->target) && cJSON_AddStringToObject(o, "response", s->response) &&
              cJSON_AddStringToObject(o, "parsed", s->parsed) && cJSON_AddNumberToObject(o, "score", s->score);
    if (ok && d->has_box) ok = cJSON_AddNumberToObject(o, "iou", s->iou < 0 ? 0 : s->iou) != NULL;
    if (ok && d->subtask) ok = cJSON_AddStringToObject(o, "subtask", d->subtask) != NULL;
    if (ok && d->category) ok = cJSON_AddStringToObject(o, "category", d->category) != NULL;
    if (ok && d->l2_category) ok = cJSON_AddStringToObject(o, "l2_category", d->l2_category) != NULL;
    if (ok && t->kind == EVAL_KIND_MCQ && t->circular != EVAL_CIRC_OFF)
        ok = cJSON_AddNumberToObject(o, "circular_group", (double)d->group) &&
             cJSON_AddNumberToObject(o, "rotation", d->rotation) && cJSON_AddNumberToObject(o, "index", (double)d->index);
    if (ok && r->logprobs && r->logprobs[i]) {
        cJSON *a = cJSON_AddArrayToObject(o, "logprobs");
        ok = a != NULL;
        for (size_t k = 0; ok && k < r->n_logprobs[i]; k++) {
            cJSON *v = cJSON_CreateNumber(r->logprobs[i][k]);
            ok = v && cJSON_AddItemToArray(a, v);
        }
    }
    if (ok && (d->image || d->image_b64)) ok = cJSON_AddStringToObject(o, "image", image_ref(t, d, buf, sizeof buf)) != NULL;
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static vlmc_status append_line(FILE *f, const task_run *r, size_t i, vlmc_error *err) {
    cJSON *o = sample_json(r, i);
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!text) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", r->log_path);
    int bad = fputs(text, f) < 0 || fputc('\n', f) < 0 || fflush(f) != 0;
    cJSON_free(text);
    if (bad) return vlmc_fail(err, VLMC_ERR_IO, "%s: cannot write: %s", r->log_path, strerror(errno));
    return VLMC_OK;
}

/* Writes the log of every answered sample in doc_id order (through a temporary file). */
static vlmc_status rewrite_log(const task_run *r, vlmc_error *err) {
    size_t n = strlen(r->log_path);
    char *tmp = malloc(n + 5);
    if (!tmp) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    memcpy(tmp, r->log_path, n);
    memcpy(tmp + n, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        vlmc_status st = vlmc_fail(err, VLMC_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return st;
    }
    vlmc_status st = VLMC_OK;
    for (size_t i = 0; i < r->docs.n && !st; i++)
        if (r->have[i]) st = append_line(f, r, i, err);
    if (fclose(f) != 0 && !st) st = vlmc_fail(err, VLMC_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
    if (!st && rename(tmp, r->log_path) != 0)
        st = vlmc_fail(err, VLMC_ERR_IO, "%s: cannot rename to %s: %s", tmp, r->log_path, strerror(errno));
    if (st) remove(tmp);
    free(tmp);
    return st;
}

/* ---- resume ------------------------------------------------------------------ */

static cJSON *settings_json(const eval_task *t, const eval_run_opts *o) {
    cJSON *s = cJSON_CreateObject();
    if (!s) return NULL;
    if (!cJSON_AddStringToObject(s, "task", t->name) || !cJSON_AddStringToObject(s, "task_file", t->file) ||
        !cJSON_AddStringToObject(s, "fingerprint", t->fingerprint) ||
        !cJSON_AddStringToObject(s, "model", o->model ? o->model : "") ||
        !cJSON_AddStringToObject(s, "model_args", o->model_args ? o->model_args : "")) {
        cJSON_Delete(s);
        return NULL;
    }
    return s;
}

static vlmc_status check_settings(const task_run *r, const eval_run_opts *o, vlmc_error *err) {
    cJSON *want = settings_json(r->t, o);
    if (!want) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    vlmc_status st = VLMC_OK;
    if (!file_exists(r->settings_path)) {
        st = vlmc_fail(err, VLMC_ERR_ARG, "%s exists but %s does not: cannot tell which settings wrote it; delete it "
                       "or use another --output", r->log_path, r->settings_path);
        goto out;
    }
    cJSON *have = NULL;
    if ((st = json_parse_file(r->settings_path, 1 << 20, &have, err))) goto out;
    static const char *const keys[4] = {"task", "fingerprint", "model", "model_args"};
    static const char *const what[4] = {"task", "task file or data paths", "model", "model arguments"};
    for (int k = 0; k < 4; k++) {
        const char *a = json_string(have, keys[k], NULL), *b = json_string(want, keys[k], "");
        if (!a || strcmp(a, b)) {
            st = vlmc_fail(err, VLMC_ERR_ARG, "%s: cannot resume: it was written with other settings (%s: '%s', now "
                           "'%s'); delete it or use another --output", r->log_path, what[k], a ? a : "(none)", b);
            break;
        }
    }
    cJSON_Delete(have);
out:
    cJSON_Delete(want);
    return st;
}

static vlmc_status write_settings(const task_run *r, const eval_run_opts *o, vlmc_error *err) {
    cJSON *s = settings_json(r->t, o);
    char *text = s ? cJSON_Print(s) : NULL;
    cJSON_Delete(s);
    if (!text) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    vlmc_status st = file_write_all(r->settings_path, text, strlen(text), err);
    cJSON_free(text);
    return st;
}

static vlmc_status fill_sample(task_run *r, size_t i, const char *prompt, const char *response, vlmc_error *err);

/* Reads the sample log: lines of this run's doc_ids, with the same prompt and
 * target, are kept (re-scored from their response); a cut last line (an
 * interrupted write) is dropped. */
static vlmc_status read_log(task_run *r, size_t *resumed, vlmc_error *err) {
    char *text;
    size_t len;
    *resumed = 0;
    vlmc_status st = file_read_all(r->log_path, (size_t)8 << 30, &text, &len, err);
    if (st) return st;
    size_t line = 0;
    for (size_t p = 0; p < len;) {
        const char *nl = memchr(text + p, '\n', len - p);
        size_t e = nl ? (size_t)(nl - text) : len;
        size_t s = p;
        p = e + 1;
        line++;
        if (s == e) continue;
        cJSON *row = NULL;
        char what[64];
        snprintf(what, sizeof what, "line %zu", line);
        vlmc_error perr;
        if (json_parse(text + s, e - s, what, &row, &perr)) {
            if (!nl) break; /* the cut last line of an interrupted run */
            st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %s", r->log_path, perr.message);
            goto out;
        }
        const cJSON *id = json_get(row, "doc_id");
        const char *task = json_string(row, "task", NULL), *prompt = json_string(row, "prompt", NULL);
        const char *target = json_string(row, "target", NULL), *resp = json_string(row, "response", NULL);
        if (!cJSON_IsNumber(id) || !task || !prompt || !target || !resp) {
            cJSON_Delete(row);
            st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s:%zu: a sample line needs task, doc_id, prompt, target and "
                           "response", r->log_path, line);
            goto out;
        }
        double dd = id->valuedouble;
        if (strcmp(task, r->t->name) || !(dd >= 0 && dd < (double)r->docs.n) || dd != (double)(size_t)dd) {
            st = vlmc_fail(err, VLMC_ERR_ARG, "%s:%zu: doc_id %.0f of task '%s' is not a sample of this run (task %s, "
                           "%zu samples; was --limit larger?); use another --output", r->log_path, line, dd, task,
                           r->t->name, r->docs.n);
            cJSON_Delete(row);
            goto out;
        }
        size_t i = (size_t)dd;
        char *want_prompt = NULL;
        if ((st = eval_render_prompt(r->t, &r->docs.docs[i], &want_prompt, err))) {
            cJSON_Delete(row);
            goto out;
        }
        if (strcmp(want_prompt, prompt) || strcmp(r->docs.docs[i].target, target)) {
            free(want_prompt);
            cJSON_Delete(row);
            st = vlmc_fail(err, VLMC_ERR_ARG, "%s:%zu: doc_id %zu has another prompt or target than this run's (the "
                           "data or the task file changed); delete it or use another --output", r->log_path, line, i);
            goto out;
        }
        if (r->logprobs) {
            const cJSON *lp = json_get(row, "logprobs");
            int m = cJSON_IsArray(lp) ? cJSON_GetArraySize(lp) : 0;
            free(r->logprobs[i]);
            r->logprobs[i] = NULL;
            if (m > 0 && m <= 26 && (r->logprobs[i] = calloc((size_t)m, sizeof(double)))) {
                r->n_logprobs[i] = (size_t)m;
                for (int k = 0; k < m; k++) r->logprobs[i][k] = cJSON_GetArrayItem(lp, k)->valuedouble;
            }
        }
        if (r->have[i]) {
            free(r->s[i].prompt);
            free(r->s[i].target);
            free(r->s[i].response);
            free(r->s[i].parsed);
            memset(&r->s[i], 0, sizeof r->s[i]);
            r->have[i] = false;
            (*resumed)--;
        }
        st = fill_sample(r, i, want_prompt, resp, err);
        free(want_prompt);
        cJSON_Delete(row);
        if (st) goto out;
        (*resumed)++;
    }
out:
    free(text);
    return st;
}

/* ---- running ----------------------------------------------------------------- */

static vlmc_status fill_sample(task_run *r, size_t i, const char *prompt, const char *response, vlmc_error *err) {
    eval_sample *s = &r->s[i];
    const eval_doc *d = &r->docs.docs[i];
    char *resp = utf8_sanitize(response);
    if (!resp) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    for (size_t k = 0; k < r->t->n_stop; k++) {
        if (!r->t->stop[k][0]) continue;
        char *c = strstr(resp, r->t->stop[k]);
        if (c) *c = '\0';
    }
    s->doc_id = d->doc_id;
    s->prompt = dupstr(prompt);
    s->target = dupstr(d->target);
    s->response = resp;
    if (!s->prompt || !s->target) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    vlmc_status st = eval_score_sample(r->t, d, resp, &s->parsed, &s->score, &s->iou, err);
    if (st) return vlmc_fail_prefix(err, "task %s doc_id %zu", r->t->name, i);
    r->have[i] = true;
    return VLMC_OK;
}

typedef struct batch_item {
    size_t i;
    char *prompt;
    rgb_image image;
    bool has_image;
    const char *ref;
    char refbuf[1200];
} batch_item;

static vlmc_status prepare(task_run *r, const eval_backend *b, batch_item *it, eval_request *req, vlmc_error *err) {
    const eval_task *t = r->t;
    const eval_doc *d = &r->docs.docs[it->i];
    vlmc_status st = eval_render_prompt(t, d, &it->prompt, err);
    if (st) return st;
    memset(req, 0, sizeof *req);
    req->task = t->name;
    req->doc_id = d->doc_id;
    req->prompt = it->prompt;
    req->max_new_tokens = t->max_new_tokens;
    req->stop = (const char *const *)t->stop;
    req->n_stop = t->n_stop;
    req->temperature = t->temperature;
    req->target = d->target;
    if ((d->image || d->image_b64) && strstr(it->prompt, EVAL_IMAGE_MARKER)) {
        it->ref = image_ref(t, d, it->refbuf, sizeof it->refbuf);
        req->n_images = 1;
        req->image_refs = &it->ref;
        if (b->needs_images) {
            st = d->image ? image_decode_file(d->image, NULL, &it->image, err)
                          : image_decode_data_url(d->image_b64, strlen(d->image_b64), NULL, &it->image, err);
            if (st) return vlmc_fail_prefix(err, "task %s doc_id %zu (%s)", t->name, it->i, d->id);
            it->has_image = true;
            req->images = &it->image;
        } else if (d->image && !file_exists(d->image)) {
            return vlmc_fail(err, VLMC_ERR_IO, "task %s doc_id %zu: image %s not found (image folder: %s)", t->name,
                             it->i, d->image, t->image_root);
        }
    }
    return VLMC_OK;
}

static vlmc_status answer_loglikelihood(task_run *r, const eval_backend *b, const eval_request *req, size_t i,
                                        char **response, vlmc_error *err) {
    const eval_doc *d = &r->docs.docs[i];
    const char *yn[2] = {"yes", "no"};
    const char *letters[26];
    char lb[26][2];
    const char *const *cont;
    size_t n;
    if (r->t->kind == EVAL_KIND_MCQ) {
        for (int k = 0; k < d->n_options; k++) {
            lb[k][0] = (char)('A' + k);
            lb[k][1] = 0;
            letters[k] = lb[k];
        }
        cont = letters;
        n = (size_t)d->n_options;
    } else {
        cont = yn;
        n = 2;
    }
    double *lp = calloc(n, sizeof *lp);
    if (!lp) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    vlmc_status st = b->loglikelihood(b->ctx, req, cont, n, lp, err);
    if (st) {
        free(lp);
        return st;
    }
    size_t best = 0;
    for (size_t k = 1; k < n; k++)
        if (lp[k] > lp[best]) best = k;
    free(r->logprobs[i]);
    r->logprobs[i] = lp;
    r->n_logprobs[i] = n;
    *response = dupstr(cont[best]);
    if (!*response) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    return VLMC_OK;
}

static vlmc_status run_batches(task_run *r, const eval_backend *b, const eval_run_opts *o, FILE *log, size_t resumed,
                               vlmc_error *err) {
    size_t n = r->docs.n, bs = o->batch_size > 0 ? (size_t)o->batch_size : 1;
    batch_item *items = calloc(bs, sizeof *items);
    eval_request *reqs = calloc(bs, sizeof *reqs);
    char **resp = calloc(bs, sizeof *resp);
    vlmc_status st = VLMC_OK;
    if (!items || !reqs || !resp) {
        st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        goto out;
    }
    double t0 = now_seconds();
    size_t done = resumed;
    if (o->progress) o->progress(o->progress_user, r->t->name, done, n, resumed, 0);
    for (size_t next = 0; next < n;) {
        size_t m = 0;
        while (next < n && m < bs) {
            if (!r->have[next]) {
                memset(&items[m], 0, sizeof items[m]);
                items[m].i = next;
                if ((st = prepare(r, b, &items[m], &reqs[m], err))) {
                    m++;
                    goto free_batch;
                }
                m++;
            }
            next++;
        }
        if (!m) break;
        memset(resp, 0, bs * sizeof *resp);
        if (r->t->loglikelihood) {
            for (size_t k = 0; k < m && !st; k++)
                st = answer_loglikelihood(r, b, &reqs[k], items[k].i, &resp[k], err);
        } else {
            st = b->generate(b->ctx, reqs, m, resp, err);
            if (st) vlmc_fail_prefix(err, "backend %s", b->name);
        }
        for (size_t k = 0; k < m && !st; k++) {
            if (!resp[k]) {
                st = vlmc_fail(err, VLMC_ERR_INTERNAL, "backend %s gave no response for task %s doc_id %zu", b->name,
                               r->t->name, items[k].i);
                break;
            }
            if ((st = fill_sample(r, items[k].i, items[k].prompt, resp[k], err))) break;
            if ((st = append_line(log, r, items[k].i, err))) break;
            done++;
        }
    free_batch:
        for (size_t k = 0; k < m; k++) {
            free(items[k].prompt);
            if (items[k].has_image) rgb_image_free(&items[k].image);
            free(resp[k]);
            resp[k] = NULL;
        }
        if (st) goto out;
        if (o->progress) o->progress(o->progress_user, r->t->name, done, n, resumed, now_seconds() - t0);
    }
out:
    free(items);
    free(reqs);
    free(resp);
    return st;
}

static vlmc_status run_task(task_run *r, const eval_backend *b, const eval_run_opts *o, vlmc_error *err) {
    const eval_task *t = r->t;
    if (t->loglikelihood && !b->loglikelihood)
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: task %s scores options by log-likelihood "
                         "(output_type multiple_choice), which backend %s cannot do", t->file, t->name, b->name);
    vlmc_status st = eval_docs_load(t, o->limit, &r->docs, err);
    if (st) return st;
    size_t n = r->docs.n;
    r->s = calloc(n ? n : 1, sizeof *r->s);
    r->have = calloc(n ? n : 1, sizeof *r->have);
    if (t->loglikelihood) {
        r->logprobs = calloc(n ? n : 1, sizeof *r->logprobs);
        r->n_logprobs = calloc(n ? n : 1, sizeof *r->n_logprobs);
    }
    char name[300];
    snprintf(name, sizeof name, "samples_%.200s.jsonl", t->name);
    r->log_path = path_join(o->output_dir, name);
    snprintf(name, sizeof name, "samples_%.200s.settings.json", t->name);
    r->settings_path = path_join(o->output_dir, name);
    if (!r->s || !r->have || !r->log_path || !r->settings_path || (t->loglikelihood && (!r->logprobs || !r->n_logprobs)))
        return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    size_t resumed = 0;
    struct stat sb;
    bool empty_log = stat(r->log_path, &sb) == 0 && sb.st_size == 0; /* a run that failed before its first sample */
    if (file_exists(r->log_path) && !empty_log) {
        if ((st = check_settings(r, o, err)) || (st = read_log(r, &resumed, err))) return st;
        if ((st = rewrite_log(r, err))) return st; /* drops a cut last line before appending */
    } else if ((st = write_settings(r, o, err))) {
        return st;
    }
    FILE *log = fopen(r->log_path, "ab");
    if (!log) return vlmc_fail(err, VLMC_ERR_IO, "%s: cannot open: %s", r->log_path, strerror(errno));
    st = run_batches(r, b, o, log, resumed, err);
    if (fclose(log) != 0 && !st) st = vlmc_fail(err, VLMC_ERR_IO, "%s: cannot write: %s", r->log_path, strerror(errno));
    return st;
}

vlmc_status eval_run(eval_task *tasks, size_t n_tasks, const eval_backend *backend, const eval_run_opts *o,
                     char **results_json, vlmc_error *err) {
    if (results_json) *results_json = NULL;
    if (!o || !o->output_dir || !o->output_dir[0]) return vlmc_fail(err, VLMC_ERR_ARG, "eval: no output folder");
    if (!backend || !backend->generate) return vlmc_fail(err, VLMC_ERR_ARG, "eval: no backend");
    for (size_t i = 0; i < n_tasks; i++)
        for (size_t j = 0; j < i; j++)
            if (!strcmp(tasks[i].name, tasks[j].name))
                return vlmc_fail(err, VLMC_ERR_ARG, "eval: task %s is named twice (%s, %s)", tasks[i].name,
                                 tasks[j].file, tasks[i].file);
    vlmc_status st = file_mkdirs(o->output_dir, err);
    if (st) return st;
    double t0 = now_seconds();
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    cJSON *root = cJSON_CreateObject();
    cJSON *results = cJSON_AddObjectToObject(root, "results");
    cJSON *breakdown = cJSON_AddObjectToObject(root, "breakdown");
    cJSON *configs = cJSON_AddObjectToObject(root, "configs");
    cJSON *versions = cJSON_AddObjectToObject(root, "versions");
    cJSON *nshot = cJSON_AddObjectToObject(root, "n-shot");
    cJSON *hib = cJSON_AddObjectToObject(root, "higher_is_better");
    cJSON *nsamples = cJSON_AddObjectToObject(root, "n-samples");
    if (!root || !results || !breakdown || !configs || !versions || !nshot || !hib || !nsamples) {
        cJSON_Delete(root);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    }
    for (size_t k = 0; k < n_tasks && !st; k++) {
        task_run r = {0};
        r.t = &tasks[k];
        st = run_task(&r, backend, o, err);
        cJSON *res = NULL, *bd = NULL;
        if (!st) {
            res = cJSON_AddObjectToObject(results, r.t->name);
            bd = cJSON_CreateObject();
            if (!res || !bd || !cJSON_AddStringToObject(res, "alias", r.t->alias)) st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        }
        if (!st) {
            /* every sample is answered now: metrics over the whole log */
            st = eval_aggregate(r.t, r.docs.docs, r.s, r.docs.n, res, bd, err);
            if (st) vlmc_fail_prefix(err, "task %s", r.t->name);
        }
        if (!st) st = rewrite_log(&r, err); /* final scores (CIDEr-D shares), doc_id order */
        if (!st) {
            if (bd && bd->child) cJSON_AddItemToObject(breakdown, r.t->name, bd);
            else cJSON_Delete(bd);
            bd = NULL;
            cJSON *cfg = cJSON_Duplicate(r.t->config, 1);
            cJSON *ns = cJSON_AddObjectToObject(nsamples, r.t->name);
            cJSON *h = cJSON_AddObjectToObject(hib, r.t->name);
            size_t effective = 0; /* questions asked: rotation-0 docs (GIVEN orphans excluded) */
            for (size_t i = 0; i < r.docs.n; i++)
                effective += r.docs.docs[i].rotation == 0 && r.docs.docs[i].question_no != INT32_MAX;
            if (!cfg || !ns || !h || !cJSON_AddItemToObject(configs, r.t->name, cfg) ||
                !cJSON_AddNumberToObject(versions, r.t->name, json_number(r.t->config, "version", 1)) ||
                !cJSON_AddNumberToObject(nshot, r.t->name, 0) ||
                !cJSON_AddNumberToObject(ns, "original", (double)r.docs.n_questions) ||
                !cJSON_AddNumberToObject(ns, "effective", (double)effective) ||
                !cJSON_AddNumberToObject(ns, "prompts", (double)r.docs.n))
                st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
            for (const cJSON *m = res ? res->child : NULL; m && !st; m = m->next) {
                if (!strcmp(m->string, "alias") || strstr(m->string, "_stderr"))
                    continue;
                /* yes_ratio describes a bias (POPE reports it next to the others); it is not a score */
                if (!cJSON_AddBoolToObject(h, m->string, strcmp(m->string, "yes_ratio") != 0))
                    st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
            }
        }
        cJSON_Delete(bd);
        task_run_free(&r);
    }
    if (!st) {
        cJSON *cfg = cJSON_AddObjectToObject(root, "config");
        char tsec[64];
        snprintf(tsec, sizeof tsec, "%.3f", now_seconds() - t0);
        if (!cfg || !cJSON_AddStringToObject(cfg, "model", o->model ? o->model : backend->name) ||
            !cJSON_AddStringToObject(cfg, "model_args", o->model_args ? o->model_args : "") ||
            !cJSON_AddStringToObject(cfg, "backend", backend->name) ||
            !cJSON_AddNumberToObject(cfg, "batch_size", o->batch_size > 0 ? o->batch_size : 1) ||
            !(o->limit > 0 ? cJSON_AddNumberToObject(cfg, "limit", (double)o->limit) : cJSON_AddNullToObject(cfg, "limit")) ||
            !cJSON_AddNumberToObject(root, "date", (double)wall.tv_sec + (double)wall.tv_nsec * 1e-9) ||
            !cJSON_AddStringToObject(root, "total_evaluation_time_seconds", tsec))
            st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    }
    if (!st) {
        char *text = cJSON_Print(root);
        char *path = path_join(o->output_dir, "results.json");
        if (!text || !path) st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        else {
            strbuf b = {0};
            strbuf_append(&b, text, strlen(text));
            strbuf_append(&b, "\n", 1);
            const char *c = strbuf_cstr(&b);
            st = c ? file_write_all(path, c, b.len, err) : vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
            strbuf_free(&b);
        }
        if (!st && results_json) {
            *results_json = dupstr(text);
            if (!*results_json) st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        }
        cJSON_free(text);
        free(path);
    }
    /* without keep_samples the logs go once every task is done (a failed run keeps them all, for resuming) */
    for (size_t k = 0; k < n_tasks && !st && !o->keep_samples; k++) {
        char name[300];
        snprintf(name, sizeof name, "samples_%.200s.jsonl", tasks[k].name);
        char *a = path_join(o->output_dir, name);
        snprintf(name, sizeof name, "samples_%.200s.settings.json", tasks[k].name);
        char *b = path_join(o->output_dir, name);
        if (a) remove(a);
        if (b) remove(b);
        free(a);
        free(b);
    }
    cJSON_Delete(root);
    return st;
}
