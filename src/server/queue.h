/* Jobs (one chat request on its way through a slot) and the bounded FIFO queue
 * in front of the slots. A job's text output is produced by a worker thread
 * (job_on_text, job_finish) and consumed by the HTTP connection thread (stream
 * reader or the non-streaming wait), under the job's mutex. */
#ifndef VLMC_SERVER_QUEUE_H
#define VLMC_SERVER_QUEUE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/strbuf.h"
#include "server/image_cache.h"
#include "server/openai.h"

typedef struct job job;
struct job {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;                /* under mu */
    openai_request req;
    image_cache *cache;      /* where req.chat.images' entries come from */
    char id[48];
    int64_t created;
    const char *model_id;
    strbuf out;              /* stream: SSE bytes not yet taken; else the text so far */
    strbuf hold;             /* text held back while it may start a stop string (worker only) */
    size_t max_stop;
    bool stop_hit;           /* worker only */
    bool done;               /* under mu: out is complete */
    bool started;            /* a worker took it */
    atomic_int cancelled;    /* the client went away (or the server stops) */
    const atomic_int *stopping; /* the server's shutdown flag */
    vlmc_status status;      /* after done */
    vlmc_error err;
    server_chat_result res;
    job *next;               /* queue link */
};

/* A job owning req (moved in); refs = 1. NULL when out of memory. */
job *job_new(openai_request *req, image_cache *cache, const char *id, int64_t created, const char *model_id,
             const atomic_int *stopping);
void job_ref(job *j);
void job_unref(job *j);
/* The server_text_fn given to the backend (ud = job). */
int job_on_text(void *ud, const char *piece, size_t len);
/* Called once after the backend returns (or instead of it, for a job cancelled or
 * dropped from the queue): flushes held text, formats the end, sets done. */
void job_finish(job *j, vlmc_status st, const vlmc_error *err, const server_chat_result *res);

typedef struct job_queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *head, *tail;
    int queued;    /* waiting */
    int admitted;  /* waiting + running */
    int capacity;  /* max admitted: slots + waiting room */
    bool stopping;
} job_queue;

void jq_init(job_queue *q, int capacity);
void jq_destroy(job_queue *q);
/* Admits j (taking a reference): 0, or -1 when full, -2 when stopping. */
int jq_push(job_queue *q, job *j);
/* The oldest waiting job (the queue's reference passes to the caller); blocks;
 * NULL once the queue stops. */
job *jq_pop(job_queue *q);
/* Removes j if it is still waiting; true when it was (its reference passes to the caller). */
bool jq_remove(job_queue *q, job *j);
/* A job admitted earlier is over (frees its place). */
void jq_done(job_queue *q);
/* Stops the queue; returns the list (next-linked) of jobs still waiting, each with
 * its reference, for the caller to finish. */
job *jq_stop(job_queue *q);
void jq_counts(job_queue *q, int *queued, int *admitted);

#endif
