/* OpenAI chat-completions wire format: request validation and response /
 * Server-Sent-Events formatting. Pure functions of their inputs (no I/O), so
 * they are unit-tested (tests/test_server_openai.c) and fuzzed
 * (fuzz/fuzz_openai_request.c). */
#ifndef VLMC_SERVER_OPENAI_H
#define VLMC_SERVER_OPENAI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/strbuf.h"
#include "server/backend.h"

/* An error as OpenAI returns it: HTTP status + {"error": {"message", "type", "param", "code"}}. */
typedef struct api_error {
    int status;         /* 400, 401, 403, 404, 405, 413, 500, 503 */
    const char *type;   /* "invalid_request_error", "authentication_error", "permission_error",
                           "not_found_error", "server_error" (static strings) */
    const char *code;   /* static string or NULL (JSON null) */
    char param[160];    /* "" = JSON null */
    char message[600];
} api_error;

void api_error_set(api_error *e, int status, const char *type, const char *code, const char *param, const char *fmt,
                   ...) __attribute__((format(printf, 6, 7)));
/* {"error": {...}} (malloc'ed; NULL when out of memory). */
char *openai_error_json(const api_error *e);

typedef struct openai_limits {
    int max_images;            /* per request */
    int max_stop;              /* stop strings (OpenAI: 4) */
    int max_tokens_cap;        /* max_tokens above this is an error; 0 = no cap */
} openai_limits;

/* Where an image part points. */
typedef enum { IMG_URL_DATA, IMG_URL_FILE } image_url_kind;

/* A parsed request. Owns everything it points to; free with openai_request_free. */
typedef struct openai_request {
    server_chat_request chat; /* images[] holds no image yet (see image_urls) */
    char **image_urls;        /* n = chat.n_images; the url strings */
    image_url_kind *image_kinds;
    char **image_params;      /* "messages[i].content[j].image_url" for errors */
    char *model;              /* as requested, NULL when absent */
    bool stream;
    bool include_usage;       /* stream_options.include_usage */
    bool has_max_tokens;
    void *priv;               /* cJSON tree the strings point into */
} openai_request;

/* Parses and validates a chat-completions body. On failure fills e (status 400)
 * and returns false; out is then empty. Never touches the file system. */
bool openai_parse_chat(const char *body, size_t len, const openai_limits *lim, openai_request *out, api_error *e);
void openai_request_free(openai_request *r);

/* Appends a JSON string literal of s[0..n) (invalid UTF-8 bytes become U+FFFD). */
void json_escape_n(strbuf *b, const char *s, size_t n);

/* One SSE event "data: <chat.completion.chunk>\n\n". role may be NULL (no role in
 * the delta), content may be NULL (no content), finish_reason NULL = null. */
void openai_sse_chunk(strbuf *b, const char *id, int64_t created, const char *model, const char *role,
                      const char *content, size_t content_len, const char *finish_reason);
/* The stream_options.include_usage chunk: choices [] and usage. */
void openai_sse_usage(strbuf *b, const char *id, int64_t created, const char *model, int prompt_tokens,
                      int completion_tokens);
/* An error inside a stream (after the 200 status line): data: {"error": ...}. */
void openai_sse_error(strbuf *b, const api_error *e);
void openai_sse_done(strbuf *b);
/* The non-streaming chat.completion object (malloc'ed). */
char *openai_completion_json(const char *id, int64_t created, const char *model, const char *content,
                             size_t content_len, const char *finish_reason, int prompt_tokens,
                             int completion_tokens);
/* GET /v1/models and /v1/models/{id}. */
char *openai_models_json(const char *model_id, int64_t created);
char *openai_model_json(const char *model_id, int64_t created);

#endif
