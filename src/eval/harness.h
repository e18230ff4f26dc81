/* The `vlmc eval` harness around the scoring core (metrics.h): task files,
 * benchmark data loaders, backends that answer requests, the run loop with its
 * resumable sample logs, and the lmms-eval style results. See docs/EVAL.md.
 *
 * Unlike metrics.h this part does I/O: it reads task files (formats/json.h),
 * TSV / JSONL data and images (vision/image.h). It keeps no global state. */
#ifndef VLMC_EVAL_HARNESS_H
#define VLMC_EVAL_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/error.h"
#include "eval/metrics.h"
#include "vision/image.h"

/* ==== backends ================================================================
 * A backend answers requests. The harness fills an eval_request per sample and
 * calls generate() with up to batch_size of them at a time (in doc_id order);
 * loglikelihood() is only called for tasks with "output_type":
 * "multiple_choice" and may be NULL. */

/* The prompt is the user turn's text. Each image stands at the position of the
 * marker EVAL_IMAGE_MARKER in it (the task's prompt template places them; a
 * request has exactly n_images markers). A backend that builds a chat
 * conversation splits the prompt at the markers into text and image parts. */
#define EVAL_IMAGE_MARKER "<image>"

typedef struct eval_request {
    const char *task;       /* task name */
    int64_t doc_id;         /* 0-based sample number within the task */
    const char *prompt;     /* UTF-8, with n_images EVAL_IMAGE_MARKERs */
    size_t n_images;
    const rgb_image *images;       /* [n_images] decoded (RGB), or NULL when the backend set needs_images = false */
    const char *const *image_refs; /* [n_images] where each image came from (path, or "TSV:row") */
    int max_new_tokens;            /* generation budget */
    const char *const *stop;       /* [n_stop] stop strings (the response ends before the first) */
    size_t n_stop;
    double temperature;            /* 0 = greedy */
    const char *target;            /* the reference answer: only for the oracle backend; others must not read it */
} eval_request;

typedef struct eval_backend {
    void *ctx;
    const char *name;  /* "oracle", "replay", "model" */
    bool needs_images; /* false: the harness only checks that image files exist */
    /* Answers reqs[0..n): responses[i] gets a malloc'ed UTF-8 string (the
     * harness frees it with free()). On failure, responses already set are
     * freed by the harness; the error should name the task and doc_id. */
    vlmc_status (*generate)(void *ctx, const eval_request *reqs, size_t n, char **responses, vlmc_error *err);
    /* Log-probability of each continuation after the request's prompt (the
     * assistant turn's start): logprobs[i] for continuations[i]. May be NULL. */
    vlmc_status (*loglikelihood)(void *ctx, const eval_request *req, const char *const *continuations, size_t n,
                                 double *logprobs, vlmc_error *err);
    void (*free)(void *ctx); /* may be NULL */
} eval_backend;

/* Answers every request with its target (generate: the target text;
 * loglikelihood: 0 for the target continuation, -10 for the others). A run
 * with it must score 100% on every task whose metric can reach 100%. */
vlmc_status eval_backend_oracle(eval_backend *out, vlmc_error *err);
/* Answers from a JSONL file of {"task", "doc_id", "response"} lines (a sample
 * log of an earlier run is one); a request whose (task, doc_id) the file lacks
 * is an error naming the file. Later lines win over earlier ones. */
vlmc_status eval_backend_replay(const char *path, eval_backend *out, vlmc_error *err);
/* A model folder (src/eval/backend_model.c), answered through a vlmc_session:
 * generation and log-likelihood scoring. */
vlmc_status eval_backend_model(const char *model_dir, const char *model_args, eval_backend *out,
                               vlmc_error *err);
void eval_backend_close(eval_backend *b);

/* ==== task files ============================================================== */

typedef enum eval_kind { EVAL_KIND_MCQ, EVAL_KIND_VQA, EVAL_KIND_GROUNDING, EVAL_KIND_CAPTION,
                         EVAL_KIND_YESNO, EVAL_KIND_SYNTH } eval_kind;
typedef enum eval_format { EVAL_FMT_MMBENCH_TSV, EVAL_FMT_SYNTH_QA, EVAL_FMT_POPE_JSONL, EVAL_FMT_JSONL } eval_format;
typedef enum eval_circular { EVAL_CIRC_OFF, EVAL_CIRC_EXPAND, EVAL_CIRC_GIVEN } eval_circular;

typedef struct eval_task {
    char *file;         /* the task file's path */
    char *name;
    char *alias;
    eval_kind kind;
    eval_format format;
    char *split;
    char *data;         /* resolved data path */
    char *image_root;   /* resolved folder that relative image paths start from */
    char *prompt;       /* template */
    char **metrics;     /* [n_metrics]; metrics[0] is the main one */
    size_t n_metrics;
    bool loglikelihood; /* "output_type": "multiple_choice" */
    eval_circular circular;
    int max_new_tokens;
    char **stop;
    size_t n_stop;
    double temperature;
    double iou_threshold;       /* grounding: 0.5 */
    double anls_threshold;      /* 0.5 */
    char *category_field;       /* for a per-category breakdown; NULL = none */
    /* generic JSONL: field names */
    char *f_id, *f_question, *f_answer, *f_image, *f_options, *f_hint, *f_category;
    char *fingerprint;          /* hash of the task file text + resolved paths, for resume checks */
    cJSON *config;              /* the task file as read, with "data" resolved */
} eval_task;

typedef struct eval_task_vars {
    const char *data_dir;  /* ${data}; NULL = unset */
    const char *image_dir; /* ${image_dir}; NULL = unset */
} eval_task_vars;

/* Reads a task file (see docs/EVAL.md for the keys). Errors name the file and
 * the key. Paths in it are relative to the file's folder unless absolute or
 * built from ${data} / ${image_dir}. */
vlmc_status eval_task_load(const char *path, const eval_task_vars *vars, eval_task *out, vlmc_error *err);
/* The same from text; `path` names it and anchors relative paths. */
vlmc_status eval_task_parse(const char *text, size_t len, const char *path, const eval_task_vars *vars,
                            eval_task *out, vlmc_error *err);
void eval_task_free(eval_task *t);
const char *eval_kind_name(eval_kind k);

/* ==== documents =============================================================== */

typedef struct eval_doc {
    int64_t doc_id;
    char *id;            /* the source's id (MMBench index, synth id, POPE question_id) */
    char *subtask;       /* synth: the row's "task"; else NULL */
    char *question, *hint;
    char *options[26];
    int n_options;
    char *target;        /* the reference answer (letter for MCQ) */
    char **refs;         /* [n_refs] reference answers / captions (refs[0] == target) */
    size_t n_refs;
    bool has_box;
    eval_box box;        /* grounding target, in the answer's 0..1000 space */
    char *image;         /* a path (resolved) or NULL */
    const char *image_b64; /* base64 image or data: URL (owned by eval_docs.pool, shared by rotations), or NULL */
    char *category, *l2_category;
    /* CircularEval */
    int64_t index;       /* VLMEvalKit index (with rotation offset) */
    int64_t group;       /* index % offset */
    int rotation;
    int question_no;     /* 0-based question number before expansion (for --limit) */
} eval_doc;

typedef struct eval_docs {
    eval_doc *docs;
    size_t n;
    size_t n_questions;  /* before CircularEval expansion */
    int64_t circular_offset;
    char **pool;         /* [n_pool] the image strings the docs point at */
    size_t n_pool;
} eval_docs;

/* Loads the task's data file; with limit > 0 only the first `limit` questions
 * (all rotations of each). */
vlmc_status eval_docs_load(const eval_task *t, long limit, eval_docs *out, vlmc_error *err);
/* MMBench TSV from memory (the fuzz target's entry). */
vlmc_status eval_docs_from_mmbench_tsv(const eval_task *t, const char *data, size_t len, long limit,
                                       eval_docs *out, vlmc_error *err);
void eval_docs_free(eval_docs *d);

/* The prompt of a doc: the template with {question}, {hint}, {hint_line},
 * {options}, {image} (EVAL_IMAGE_MARKER) filled; {{ and }} are braces. */
vlmc_status eval_render_prompt(const eval_task *t, const eval_doc *d, char **out, vlmc_error *err);

/* ==== scoring ================================================================= */

typedef struct eval_sample {
    int64_t doc_id;
    char *prompt, *target, *response, *parsed;
    double score;  /* per-sample score; see docs/EVAL.md for each kind */
    double iou;    /* grounding; -1 when no box was parsed */
} eval_sample;

/* Parses and scores one response (caption scores are set by eval_aggregate). */
vlmc_status eval_score_sample(const eval_task *t, const eval_doc *d, const char *response, char **parsed,
                              double *score, double *iou, vlmc_error *err);

/* Computes the task's metrics over samples[i] (for docs[i]); sets the caption
 * per-sample CIDEr scores; adds {metric: value, metric_stderr} to results and
 * the per-category / per-subtask breakdown to breakdown (may stay empty). */
vlmc_status eval_aggregate(const eval_task *t, const eval_doc *docs, eval_sample *samples, size_t n,
                           cJSON *results, cJSON *breakdown, vlmc_error *err);

/* ==== running ================================================================= */

typedef struct eval_run_opts {
    const char *output_dir;
    long limit;
    int batch_size;
    bool keep_samples;      /* false: the sample log is removed after a complete run */
    const char *model;      /* for the results' config */
    const char *model_args;
    /* called after each batch: done of total samples, `resumed` of them from the
     * sample log, `seconds` since this task started */
    void (*progress)(void *user, const char *task, size_t done, size_t total, size_t resumed, double seconds);
    void *progress_user;
} eval_run_opts;

/* Runs the tasks (resuming from OUTPUT/samples_<task>.jsonl where present) and
 * writes OUTPUT/results.json; *results_json (may be NULL) gets its text. */
vlmc_status eval_run(eval_task *tasks, size_t n_tasks, const eval_backend *backend, const eval_run_opts *o,
                     char **results_json, vlmc_error *err);

#endif
