/* The seam between `vlmc serve` and whatever generates text.
 *
 * The HTTP side (http.c, openai.c, queue.c) validates an OpenAI chat-completions
 * request, decodes its images (through the image cache), and hands the backend a
 * normalised server_chat_request. The backend streams UTF-8 text pieces through
 * on_text and fills a server_chat_result. Two backends exist:
 *   - backend_echo.c: deterministic test backend (`vlmc serve -m echo[:DELAY_MS]`);
 *   - backend_model.c: the adapter to the vlmc_model / session API (to be written
 *     by the integrator once the session API is merged; see docs/SERVER.md).
 *
 * Threads: the server runs `parallel` worker threads; each calls chat() with its
 * own slot index (0..parallel-1), so up to `parallel` calls run at once, never
 * two with the same slot. A backend may keep per-slot state (a session, a KV
 * cache) indexed by slot, and may batch the concurrent calls internally.
 * count_prompt_tokens is called from HTTP connection threads, concurrently with
 * chat(). */
#ifndef VLMC_SERVER_BACKEND_H
#define VLMC_SERVER_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "vlmc.h"

/* One decoded image of a request. The image is shared with the image cache and
 * other requests: read-only. */
typedef struct server_image {
    const vlmc_image *image;
    char sha256[65];    /* hex SHA-256 of the encoded image bytes (the cache key) */
    void *cache_entry;  /* the image cache's handle (image_cache.h), NULL when uncached */
} server_image;

/* A content part: text, or a reference to req->images[image]. */
typedef struct server_part {
    const char *text; /* NULL for an image part */
    size_t text_len;
    int image;        /* index into images, -1 for a text part */
} server_part;

typedef struct server_message {
    const char *role; /* "system", "developer", "user" or "assistant" */
    server_part *parts;
    int n_parts;
} server_message;

typedef struct server_chat_request {
    server_message *messages;
    int n_messages;
    server_image *images; /* in order of appearance over all messages */
    int n_images;
    /* The messages in the Hugging Face chat-template form, ready for
     * vlmc_chat_template_render's "messages": every content is a list of
     * {"type":"text","text":...} and {"type":"image"} parts. */
    const char *messages_json;
    int max_tokens;     /* >= 1; already clamped to n_ctx - prompt tokens when those are known */
    double temperature; /* 0..2 (default 1); 0 = greedy */
    double top_p;       /* 0..1 (default 1) */
    int has_seed;
    uint64_t seed;
    /* Stop strings: the server cuts the text at the first one and then asks the
     * backend to stop (on_text returns non-zero); a backend need not look at them. */
    const char *const *stop;
    int n_stop;
} server_chat_request;

typedef struct server_chat_result {
    const char *finish_reason; /* "stop" (end of sequence) or "length" (max_tokens or context); static string */
    int prompt_tokens;
    int completion_tokens;
} server_chat_result;

/* Receives the generated text, piece by piece, as it becomes final (complete
 * UTF-8, e.g. from vlmc_decode_stream_push). Returns non-zero when generation
 * must stop: the client went away, a stop string matched, or the server is
 * shutting down. The backend then returns VLMC_OK promptly. */
typedef int (*server_text_fn)(void *ud, const char *piece, size_t len);

typedef struct server_backend {
    void *ctx;
    const char *model_id; /* the id /v1/models reports and responses carry */
    int n_ctx;            /* context length in tokens (prompt + completion) */
    /* Optional (may be NULL): the prompt's token count, images included, so that
     * an over-long prompt gets HTTP 400 before the request is queued. */
    vlmc_status (*count_prompt_tokens)(void *ctx, const server_chat_request *req, int *n_tokens, vlmc_error *err);
    /* Generates the assistant's reply to req. VLMC_ERR_LIMIT / VLMC_ERR_ARG become
     * HTTP 400 when nothing was streamed yet; other errors HTTP 500. */
    vlmc_status (*chat)(void *ctx, int slot, const server_chat_request *req, server_text_fn on_text, void *ud,
                        server_chat_result *res, vlmc_error *err);
    void (*destroy)(void *ctx); /* may be NULL */
} server_backend;

/* The echo test backend. spec: "echo" or "echo:DELAY_MS" (a pause before each
 * piece). n_ctx <= 0 means 4096. Its reply is
 *   "You said: <text of the last user message>" then, per image of the request,
 *   " [image WxH sha256:<first 12 hex digits>]"
 * streamed word by word (each piece is a word with its leading space). Prompt
 * tokens: whitespace-separated words of every text part, plus one per image. */
vlmc_status server_backend_echo_open(const char *spec, int n_ctx, server_backend *out, vlmc_error *err);

/* A model folder (backend_model.c). */
vlmc_status server_backend_model_open(const char *model_dir, int n_ctx, int parallel, server_backend *out,
                                      vlmc_error *err);

/* Shared by the backends: words of a text (runs of non-space bytes). */
int server_count_words(const char *s, size_t n);

#endif
