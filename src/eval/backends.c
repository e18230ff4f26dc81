/* The oracle and replay backends of the harness. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "eval/harness.h"
#include "formats/json.h"

static char *dupstr(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void eval_backend_close(eval_backend *b) {
    if (b && b->free) b->free(b->ctx);
    if (b) memset(b, 0, sizeof *b);
}

/* ---- oracle ------------------------------------------------------------------ */

static vlmc_status oracle_generate(void *ctx, const eval_request *reqs, size_t n, char **responses, vlmc_error *err) {
    (void)ctx;
    for (size_t i = 0; i < n; i++) {
        responses[i] = dupstr(reqs[i].target ? reqs[i].target : "");
        if (!responses[i]) return vlmc_fail(err, VLMC_ERR_NOMEM, "oracle: out of memory");
    }
    return VLMC_OK;
}

static vlmc_status oracle_loglikelihood(void *ctx, const eval_request *req, const char *const *cont, size_t n,
                                        double *logprobs, vlmc_error *err) {
    (void)ctx;
    (void)err;
    for (size_t i = 0; i < n; i++) logprobs[i] = req->target && !strcmp(cont[i], req->target) ? 0.0 : -10.0;
    return VLMC_OK;
}

vlmc_status eval_backend_oracle(eval_backend *out, vlmc_error *err) {
    (void)err;
    memset(out, 0, sizeof *out);
    out->name = "oracle";
    out->generate = oracle_generate;
    out->loglikelihood = oracle_loglikelihood;
    return VLMC_OK;
}

/* ---- replay ------------------------------------------------------------------ */

typedef struct replay_entry {
    char *task; /* NULL: any task (lmms-eval logs have no task field) */
    long long doc_id;
    char *response;
} replay_entry;

typedef struct replay_ctx {
    char *path;
    replay_entry *e;
    size_t n;
    size_t *table; /* open addressing, entry index + 1, 0 = empty */
    size_t cap;
} replay_ctx;

static size_t hash_key(const char *task, long long doc_id) {
    size_t h = 1469598103934665603ull;
    for (const char *p = task ? task : ""; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h ^= (size_t)doc_id * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 29);
}

static void replay_free(void *p) {
    replay_ctx *c = p;
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->e[i].task);
        free(c->e[i].response);
    }
    free(c->e);
    free(c->table);
    free(c->path);
    free(c);
}

static size_t *lookup_slot(replay_ctx *c, const char *task, long long doc_id) {
    size_t i = hash_key(task, doc_id) & (c->cap - 1);
    for (;;) {
        size_t v = c->table[i];
        if (!v) return &c->table[i];
        const replay_entry *e = &c->e[v - 1];
        if (e->doc_id == doc_id && ((!e->task && !task) || (e->task && task && !strcmp(e->task, task))))
            return &c->table[i];
        i = (i + 1) & (c->cap - 1);
    }
}

static const char *replay_find(replay_ctx *c, const char *task, long long doc_id) {
    size_t *s = lookup_slot(c, task, doc_id);
    if (*s) return c->e[*s - 1].response;
    s = lookup_slot(c, NULL, doc_id);
    return *s ? c->e[*s - 1].response : NULL;
}

static vlmc_status replay_generate(void *ctx, const eval_request *reqs, size_t n, char **responses, vlmc_error *err) {
    replay_ctx *c = ctx;
    for (size_t i = 0; i < n; i++) {
        const char *r = replay_find(c, reqs[i].task, reqs[i].doc_id);
        if (!r)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: no response for task %s doc_id %lld", c->path, reqs[i].task,
                             (long long)reqs[i].doc_id);
        if (!(responses[i] = dupstr(r))) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", c->path);
    }
    return VLMC_OK;
}

/* the response of a line: "response", else lmms-eval's "filtered_resps"[0] or "resps"[0][0] */
static const char *line_response(const cJSON *row) {
    const char *r = json_string(row, "response", NULL);
    if (r) return r;
    const cJSON *f = json_get(row, "filtered_resps");
    if (cJSON_IsArray(f) && cJSON_IsString(cJSON_GetArrayItem(f, 0))) return cJSON_GetArrayItem(f, 0)->valuestring;
    const cJSON *rs = json_get(row, "resps");
    const cJSON *r0 = cJSON_IsArray(rs) ? cJSON_GetArrayItem(rs, 0) : NULL;
    if (cJSON_IsArray(r0) && cJSON_IsString(cJSON_GetArrayItem(r0, 0))) return cJSON_GetArrayItem(r0, 0)->valuestring;
    if (cJSON_IsString(r0)) return r0->valuestring;
    return NULL;
}

vlmc_status eval_backend_replay(const char *path, eval_backend *out, vlmc_error *err) {
    memset(out, 0, sizeof *out);
    char *text;
    size_t len;
    vlmc_status st = file_read_all(path, (size_t)4 << 30, &text, &len, err);
    if (st) return vlmc_fail_prefix(err, "replay");
    replay_ctx *c = calloc(1, sizeof *c);
    if (!c || !(c->path = dupstr(path))) {
        free(c);
        free(text);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    }
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    c->e = calloc(lines, sizeof *c->e);
    c->cap = 16;
    while (c->cap < 2 * lines) c->cap *= 2;
    c->table = calloc(c->cap, sizeof *c->table);
    if (!c->e || !c->table) {
        st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        goto fail;
    }
    size_t line = 0;
    for (size_t p = 0; p < len;) {
        const char *nl = memchr(text + p, '\n', len - p);
        size_t e = nl ? (size_t)(nl - text) : len;
        size_t s = p;
        p = e + 1;
        line++;
        while (s < e && (text[s] == ' ' || text[s] == '\t' || text[s] == '\r')) s++;
        if (s == e) continue;
        cJSON *row;
        char what[600];
        snprintf(what, sizeof what, "%.500s:%zu", path, line);
        if ((st = json_parse(text + s, e - s, what, &row, err))) goto fail;
        const cJSON *id = json_get(row, "doc_id");
        const char *resp = line_response(row);
        const cJSON *task = json_get(row, "task");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 9e15 ||
            id->valuedouble != (double)(long long)id->valuedouble || !resp || (task && !cJSON_IsString(task))) {
            cJSON_Delete(row);
            st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s:%zu: a replay line is {\"task\": string, \"doc_id\": integer >= 0, "
                           "\"response\": string}", path, line);
            goto fail;
        }
        replay_entry *en = &c->e[c->n];
        en->doc_id = (long long)id->valuedouble;
        en->task = task ? dupstr(task->valuestring) : NULL;
        en->response = dupstr(resp);
        cJSON_Delete(row);
        if ((task && !en->task) || !en->response) {
            free(en->task);
            free(en->response);
            st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
            goto fail;
        }
        c->n++;
        size_t *slot = lookup_slot(c, en->task, en->doc_id);
        if (*slot) { /* a later line wins */
            replay_entry *old = &c->e[*slot - 1];
            free(old->response);
            old->response = en->response;
            free(en->task);
            c->n--;
        } else {
            *slot = c->n;
        }
    }
    free(text);
    out->ctx = c;
    out->name = "replay";
    out->generate = replay_generate;
    out->free = replay_free;
    return VLMC_OK;
fail:
    free(text);
    replay_free(c);
    return st;
}
