/* `vlmc serve -m MODEL_DIR`: the server's backend on the vlmc_session API.
 *
 * One session per slot. Each request is a fresh conversation on its slot's
 * session: the session is reset, every message is added with its images (a
 * message's images go before its text, as Hugging Face templates lay them out;
 * the order of interleaved text and image parts inside one message is not kept),
 * and the reply is generated with the request's temperature, top_p, seed and
 * max_tokens. Stop strings are applied by the server, which stops generation
 * through on_text. A trailing assistant message (a prefill) cannot be expressed
 * with the session API and is a 400.
 * The prompt length is known only once the session renders it, so an over-long
 * prompt fails inside chat() with VLMC_ERR_LIMIT (HTTP 400 before any text). The
 * image cache saves decoding; encoded features are not cached yet (sessions encode
 * on attach). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/strbuf.h"
#include "server/backend.h"

typedef struct model_backend {
    vlmc_model *model;
    vlmc_session **sessions; /* [parallel] */
    int parallel;
    char model_id[256];
} model_backend;

static void model_backend_destroy(void *ctx) {
    model_backend *b = ctx;
    if (!b) return;
    for (int i = 0; b->sessions && i < b->parallel; i++) vlmc_session_free(b->sessions[i]);
    free(b->sessions);
    vlmc_model_free(b->model);
    free(b);
}

typedef struct stream_ctx {
    server_text_fn on_text;
    void *ud;
} stream_ctx;

static int stream_piece(const char *text, size_t len, int32_t id, void *user) {
    (void)id;
    stream_ctx *c = user;
    return len > 0 ? c->on_text(c->ud, text, len) : 0;
}

static vlmc_status model_chat(void *ctx, int slot, const server_chat_request *req, server_text_fn on_text, void *ud,
                              server_chat_result *res, vlmc_error *err) {
    model_backend *b = ctx;
    if (slot < 0 || slot >= b->parallel) return vlmc_fail(err, VLMC_ERR_INTERNAL, "slot %d out of range", slot);
    vlmc_session *s = b->sessions[slot];
    vlmc_session_reset(s);
    if (req->n_messages == 0 || strcmp(req->messages[req->n_messages - 1].role, "assistant") == 0)
        return vlmc_fail(err, VLMC_ERR_ARG, "the last message must not be the assistant's (prefill is not supported)");
    vlmc_status st = VLMC_OK;
    for (int i = 0; i < req->n_messages && !st; i++) {
        const server_message *m = &req->messages[i];
        strbuf text = {0};
        for (int k = 0; k < m->n_parts && !st; k++) {
            const server_part *p = &m->parts[k];
            if (p->image >= 0) {
                if (p->image >= req->n_images) st = vlmc_fail(err, VLMC_ERR_INTERNAL, "image part out of range");
                else st = vlmc_session_add_image(s, req->images[p->image].image, err);
            } else {
                if (text.len) strbuf_puts(&text, "\n");
                strbuf_append(&text, p->text, p->text_len);
            }
        }
        /* The OpenAI "developer" role is the system prompt of HF templates. */
        const char *role = strcmp(m->role, "developer") ? m->role : "system";
        const char *t = strbuf_cstr(&text);
        if (!st && !t) st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        if (!st) st = vlmc_session_add_message(s, role, t, err);
        strbuf_free(&text);
    }
    if (st) return st;
    vlmc_gen_params g = vlmc_gen_default_params();
    g.max_new_tokens = req->max_tokens;
    g.temperature = (float)req->temperature;
    g.top_p = (float)req->top_p;
    g.seed = req->has_seed ? req->seed : (uint64_t)(uintptr_t)req ^ 0x9E3779B97F4A7C15ull;
    stream_ctx sc = {on_text, ud};
    vlmc_result out;
    memset(&out, 0, sizeof out);
    st = vlmc_session_generate(s, &g, stream_piece, &sc, &out, err);
    if (!st) {
        res->finish_reason = out.stop == VLMC_STOP_LENGTH ? "length" : "stop";
        res->prompt_tokens = out.timings.n_prompt_tokens;
        res->completion_tokens = out.timings.n_generated;
    }
    vlmc_result_free(&out);
    return st;
}

vlmc_status server_backend_model_open(const char *model_dir, int n_ctx, int parallel, server_backend *out,
                                      vlmc_error *err) {
    memset(out, 0, sizeof *out);
    if (parallel < 1) parallel = 1;
    model_backend *b = calloc(1, sizeof *b);
    if (!b) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    b->parallel = parallel;
    vlmc_model_params mp = {.n_ctx = n_ctx > 0 ? n_ctx : 0};
    vlmc_status st = vlmc_model_load(model_dir, &mp, &b->model, err);
    if (!st && !vlmc_model_tokenizer(b->model))
        st = vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: no tokenizer.json: the server cannot generate text", model_dir);
    if (!st && !(b->sessions = calloc((size_t)parallel, sizeof *b->sessions))) st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    for (int i = 0; !st && i < parallel; i++) st = vlmc_session_new(b->model, n_ctx > 0 ? n_ctx : 0, &b->sessions[i], err);
    if (st) {
        model_backend_destroy(b);
        return st;
    }
    const char *base = strrchr(model_dir, '/');
    while (base && base[1] == '\0' && base > model_dir) { /* "dir/" */
        const char *q = base - 1;
        while (q > model_dir && *q != '/') q--;
        base = *q == '/' ? q : NULL;
        break;
    }
    snprintf(b->model_id, sizeof b->model_id, "%s", base ? base + 1 : model_dir);
    size_t L = strlen(b->model_id);
    if (L && b->model_id[L - 1] == '/') b->model_id[L - 1] = '\0';
    out->ctx = b;
    out->model_id = b->model_id;
    out->n_ctx = n_ctx > 0 ? n_ctx : 4096;
    out->count_prompt_tokens = NULL;
    out->chat = model_chat;
    out->destroy = model_backend_destroy;
    return VLMC_OK;
}
