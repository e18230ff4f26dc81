/* The real-model backend of `vlmc eval`: each request becomes a fresh
 * one-turn conversation of a vlmc_session.
 *
 * The request's images are attached to the user turn, which the session lays out
 * as the model's chat template expects (content = the images, then the text, as
 * LLaVA's training data puts them); the prompt's EVAL_IMAGE_MARKERs are removed
 * from the text. Generation is greedy when the task's temperature is 0, stops at
 * the task's stop strings and at EOS, and is cut before the first stop string.
 * model_args: comma-separated key=value pairs: n_ctx=N, threads=N.
 * Log-likelihood scoring ("output_type": "multiple_choice") asks the session for
 * the log-probability of each option as the start of the assistant's answer;
 * the prompt runs once per question (the options reuse its KV cache). */
#include "eval/harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"

typedef struct model_backend {
    vlmc_model *model;
    vlmc_session *session;
} model_backend;

static void model_backend_free(void *ctx) {
    model_backend *b = ctx;
    if (!b) return;
    vlmc_session_free(b->session);
    vlmc_model_free(b->model);
    free(b);
}

/* The prompt without its image markers, trimmed. */
static char *prompt_text(const char *prompt) {
    strbuf sb = {0};
    const char *p = prompt;
    for (const char *m; (m = strstr(p, EVAL_IMAGE_MARKER)); p = m + strlen(EVAL_IMAGE_MARKER)) strbuf_append(&sb, p, (size_t)(m - p));
    strbuf_puts(&sb, p);
    char *s = strbuf_take(&sb);
    if (!s) return NULL;
    char *b = s;
    while (*b == ' ' || *b == '\n' || *b == '\t') b++;
    size_t n = strlen(b);
    while (n && (b[n - 1] == ' ' || b[n - 1] == '\n' || b[n - 1] == '\t')) n--;
    memmove(s, b, n);
    s[n] = '\0';
    return s;
}

/* A fresh one-turn conversation: the request's images, then its text. */
static vlmc_status start_request(model_backend *b, const eval_request *r, vlmc_error *err) {
    vlmc_session_reset(b->session);
    vlmc_status s = VLMC_OK;
    for (size_t k = 0; k < r->n_images && !s; k++) {
        vlmc_image *im = NULL;
        s = vlmc_image_from_rgb(r->images[k].data, r->images[k].width, r->images[k].height, &im, err);
        if (!s) s = vlmc_session_add_image(b->session, im, err);
        vlmc_image_free(im);
    }
    char *text = s ? NULL : prompt_text(r->prompt);
    if (!s && !text) s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    if (!s) s = vlmc_session_add_message(b->session, "user", text, err);
    free(text);
    return s;
}

static vlmc_status model_loglikelihood(void *ctx, const eval_request *r, const char *const *continuations, size_t n,
                                       double *logprobs, vlmc_error *err) {
    model_backend *b = ctx;
    vlmc_status s = start_request(b, r, err);
    for (size_t i = 0; i < n && !s; i++) s = vlmc_session_loglikelihood(b->session, continuations[i], &logprobs[i], NULL, err);
    return s ? vlmc_fail_prefix(err, "%s doc %lld", r->task, (long long)r->doc_id) : VLMC_OK;
}

static vlmc_status model_generate(void *ctx, const eval_request *reqs, size_t n, char **responses, vlmc_error *err) {
    model_backend *b = ctx;
    for (size_t i = 0; i < n; i++) {
        const eval_request *r = &reqs[i];
        vlmc_status s = start_request(b, r, err);
        vlmc_gen_params p = vlmc_gen_default_params();
        p.max_new_tokens = r->max_new_tokens > 0 ? r->max_new_tokens : p.max_new_tokens;
        p.temperature = (float)r->temperature;
        p.stop = r->stop;
        p.n_stop = (int)r->n_stop;
        vlmc_result res;
        memset(&res, 0, sizeof res);
        if (!s) s = vlmc_session_generate(b->session, &p, NULL, NULL, &res, err);
        if (s) {
            vlmc_result_free(&res);
            return vlmc_fail_prefix(err, "%s doc %lld", r->task, (long long)r->doc_id);
        }
        size_t len = res.text ? strlen(res.text) : 0;
        for (size_t k = 0; k < r->n_stop; k++) {
            const char *at = res.text && r->stop[k][0] ? strstr(res.text, r->stop[k]) : NULL;
            if (at && (size_t)(at - res.text) < len) len = (size_t)(at - res.text);
        }
        responses[i] = strndup(res.text ? res.text : "", len);
        vlmc_result_free(&res);
        if (!responses[i]) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    }
    return VLMC_OK;
}

vlmc_status eval_backend_model(const char *model_dir, const char *model_args, eval_backend *out, vlmc_error *err) {
    memset(out, 0, sizeof *out);
    vlmc_model_params mp = {0};
    int n_ctx = 0;
    /* model_args: n_ctx=N,threads=N */
    for (const char *a = model_args; a && *a;) {
        const char *comma = strchr(a, ',');
        size_t len = comma ? (size_t)(comma - a) : strlen(a);
        int v;
        char key[32];
        if (len < sizeof key + 16 && sscanf(a, "%31[^=]=%d", key, &v) == 2 && v >= 0) {
            if (!strcmp(key, "n_ctx")) n_ctx = v;
            else if (!strcmp(key, "threads")) mp.n_threads = v;
            else return vlmc_fail(err, VLMC_ERR_ARG, "--model-args: unknown key '%s' (n_ctx, threads)", key);
        } else return vlmc_fail(err, VLMC_ERR_ARG, "--model-args: expected key=value pairs, got '%.*s'", (int)len, a);
        a = comma ? comma + 1 : NULL;
    }
    model_backend *b = calloc(1, sizeof *b);
    if (!b) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    vlmc_status s = vlmc_model_load(model_dir, &mp, &b->model, err);
    if (!s) s = vlmc_session_new(b->model, n_ctx, &b->session, err);
    if (s) {
        model_backend_free(b);
        return s;
    }
    out->ctx = b;
    out->name = "model";
    out->needs_images = true;
    out->generate = model_generate;
    out->loglikelihood = model_loglikelihood;
    out->free = model_backend_free;
    return VLMC_OK;
}
