#include "server/queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"

job *job_new(openai_request *req, image_cache *cache, const char *id, int64_t created, const char *model_id,
             const atomic_int *stopping) {
    job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->refs = 1;
    j->req = *req;
    memset(req, 0, sizeof *req);
    j->cache = cache;
    snprintf(j->id, sizeof j->id, "%s", id);
    j->created = created;
    j->model_id = model_id;
    j->stopping = stopping;
    atomic_init(&j->cancelled, 0);
    for (int i = 0; i < j->req.chat.n_stop; i++) {
        size_t n = strlen(j->req.chat.stop[i]);
        if (n > j->max_stop) j->max_stop = n;
    }
    if (j->req.stream) openai_sse_chunk(&j->out, j->id, j->created, j->model_id, "assistant", "", 0, NULL);
    return j;
}

void job_ref(job *j) {
    pthread_mutex_lock(&j->mu);
    j->refs++;
    pthread_mutex_unlock(&j->mu);
}

void job_unref(job *j) {
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    int last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (!last) return;
    for (int i = 0; i < j->req.chat.n_images; i++)
        if (j->req.chat.images[i].cache_entry) image_cache_release(j->cache, j->req.chat.images[i].cache_entry);
    openai_request_free(&j->req);
    strbuf_free(&j->out);
    strbuf_free(&j->hold);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

static void emit(job *j, const char *s, size_t n) {
    if (n == 0) return;
    pthread_mutex_lock(&j->mu);
    if (j->req.stream) openai_sse_chunk(&j->out, j->id, j->created, j->model_id, NULL, s, n, NULL);
    else strbuf_append(&j->out, s, n);
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static int should_stop(job *j) { return atomic_load(&j->cancelled) || (j->stopping && atomic_load(j->stopping)); }

int job_on_text(void *ud, const char *piece, size_t len) {
    job *j = ud;
    if (j->stop_hit || should_stop(j)) return 1;
    if (j->req.chat.n_stop == 0) {
        emit(j, piece, len);
        return should_stop(j);
    }
    strbuf_append(&j->hold, piece, len);
    if (j->hold.failed) return 1;
    const char *h = j->hold.data;
    size_t hl = j->hold.len;
    const char *first = NULL;
    for (int i = 0; i < j->req.chat.n_stop; i++) {
        const char *s = j->req.chat.stop[i];
        size_t sl = strlen(s);
        for (size_t p = 0; p + sl <= hl && (!first || h + p < first); p++)
            if (!memcmp(h + p, s, sl)) {
                first = h + p;
                break;
            }
    }
    if (first) {
        emit(j, h, (size_t)(first - h));
        j->hold.len = 0;
        j->stop_hit = true;
        return 1;
    }
    size_t keep = j->max_stop - 1;
    if (hl > keep) {
        size_t n = utf8_complete_prefix(h, hl - keep);
        emit(j, h, n);
        memmove(j->hold.data, h + n, hl - n);
        j->hold.len = hl - n;
    }
    return should_stop(j);
}

void job_finish(job *j, vlmc_status st, const vlmc_error *err, const server_chat_result *res) {
    if (st == VLMC_OK && !j->stop_hit && j->hold.len) emit(j, j->hold.data, j->hold.len);
    j->hold.len = 0;
    pthread_mutex_lock(&j->mu);
    j->status = st;
    if (err) j->err = *err;
    if (res) j->res = *res;
    if (j->stop_hit) j->res.finish_reason = "stop";
    if (!j->res.finish_reason) j->res.finish_reason = "stop";
    if (j->req.stream) {
        if (st == VLMC_OK) {
            openai_sse_chunk(&j->out, j->id, j->created, j->model_id, NULL, NULL, 0, j->res.finish_reason);
            if (j->req.include_usage)
                openai_sse_usage(&j->out, j->id, j->created, j->model_id, j->res.prompt_tokens,
                                 j->res.completion_tokens);
        } else {
            api_error e;
            api_error_set(&e, 500, "server_error", NULL, NULL, "%s", err ? err->message : "generation failed");
            openai_sse_error(&j->out, &e);
        }
        openai_sse_done(&j->out);
    }
    j->done = true;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

void jq_init(job_queue *q, int capacity) {
    memset(q, 0, sizeof *q);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->capacity = capacity;
}

void jq_destroy(job_queue *q) {
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
}

int jq_push(job_queue *q, job *j) {
    pthread_mutex_lock(&q->mu);
    int rc = 0;
    if (q->stopping) rc = -2;
    else if (q->admitted >= q->capacity) rc = -1;
    else {
        job_ref(j);
        j->next = NULL;
        if (q->tail) q->tail->next = j;
        else q->head = j;
        q->tail = j;
        q->queued++;
        q->admitted++;
        pthread_cond_signal(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
    return rc;
}

job *jq_pop(job_queue *q) {
    pthread_mutex_lock(&q->mu);
    while (!q->head && !q->stopping) pthread_cond_wait(&q->cv, &q->mu);
    job *j = NULL;
    if (!q->stopping) {
        j = q->head;
        q->head = j->next;
        if (!q->head) q->tail = NULL;
        j->next = NULL;
        q->queued--;
    }
    pthread_mutex_unlock(&q->mu);
    return j;
}

bool jq_remove(job_queue *q, job *j) {
    pthread_mutex_lock(&q->mu);
    job *prev = NULL, *it = q->head;
    while (it && it != j) prev = it, it = it->next;
    if (it) {
        if (prev) prev->next = it->next;
        else q->head = it->next;
        if (q->tail == it) q->tail = prev;
        it->next = NULL;
        q->queued--;
    }
    pthread_mutex_unlock(&q->mu);
    return it != NULL;
}

void jq_done(job_queue *q) {
    pthread_mutex_lock(&q->mu);
    q->admitted--;
    pthread_mutex_unlock(&q->mu);
}

job *jq_stop(job_queue *q) {
    pthread_mutex_lock(&q->mu);
    q->stopping = true;
    job *list = q->head;
    q->head = q->tail = NULL;
    q->queued = 0;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return list;
}

void jq_counts(job_queue *q, int *queued, int *admitted) {
    pthread_mutex_lock(&q->mu);
    if (queued) *queued = q->queued;
    if (admitted) *admitted = q->admitted;
    pthread_mutex_unlock(&q->mu);
}
