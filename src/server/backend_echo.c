/* The deterministic echo backend (`vlmc serve -m echo[:DELAY_MS]`): every
 * server behaviour (streaming, limits, queueing, cancellation) is testable
 * without model weights. See backend.h for what it answers. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/strbuf.h"
#include "server/backend.h"

typedef struct echo_ctx {
    int delay_ms;
} echo_ctx;

int server_count_words(const char *s, size_t n) {
    int words = 0, in = 0;
    for (size_t i = 0; i < n; i++) {
        int sp = s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == '\f' || s[i] == '\v';
        if (!sp && !in) words++;
        in = !sp;
    }
    return words;
}

static vlmc_status echo_count(void *ctx, const server_chat_request *req, int *n_tokens, vlmc_error *err) {
    (void)ctx;
    (void)err;
    long n = 0;
    for (int i = 0; i < req->n_messages; i++)
        for (int j = 0; j < req->messages[i].n_parts; j++) {
            const server_part *p = &req->messages[i].parts[j];
            n += p->text ? server_count_words(p->text, p->text_len) : 1;
        }
    *n_tokens = n > 1000000000 ? 1000000000 : (int)n;
    return VLMC_OK;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
}

static vlmc_status echo_chat(void *ctx, int slot, const server_chat_request *req, server_text_fn on_text, void *ud,
                             server_chat_result *res, vlmc_error *err) {
    (void)slot;
    echo_ctx *c = ctx;
    strbuf b = {0};
    strbuf_puts(&b, "You said:");
    const server_message *last = NULL;
    for (int i = 0; i < req->n_messages; i++)
        if (!strcmp(req->messages[i].role, "user")) last = &req->messages[i];
    if (last)
        for (int j = 0; j < last->n_parts; j++)
            if (last->parts[j].text) {
                strbuf_append(&b, " ", 1);
                strbuf_append(&b, last->parts[j].text, last->parts[j].text_len);
            }
    for (int k = 0; k < req->n_images; k++) {
        const vlmc_image *im = req->images[k].image;
        strbuf_printf(&b, " [image %dx%d sha256:%.12s]", im ? vlmc_image_width(im) : 0,
                      im ? vlmc_image_height(im) : 0, req->images[k].sha256);
    }
    if (b.failed) {
        strbuf_free(&b);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "echo backend: out of memory");
    }
    int prompt = 0;
    echo_count(ctx, req, &prompt, err);
    res->prompt_tokens = prompt;
    res->completion_tokens = 0;
    res->finish_reason = "stop";
    const char *s = strbuf_cstr(&b);
    size_t n = b.len, i = 0;
    while (i < n) {
        if (res->completion_tokens >= req->max_tokens) {
            res->finish_reason = "length";
            break;
        }
        size_t start = i;
        while (i < n && (s[i] == ' ' || s[i] == '\n')) i++;
        while (i < n && s[i] != ' ' && s[i] != '\n') i++;
        if (c->delay_ms > 0) sleep_ms(c->delay_ms);
        res->completion_tokens++;
        if (on_text(ud, s + start, i - start)) break;
    }
    strbuf_free(&b);
    return VLMC_OK;
}

static void echo_destroy(void *ctx) { free(ctx); }

vlmc_status server_backend_echo_open(const char *spec, int n_ctx, server_backend *out, vlmc_error *err) {
    int delay = 0;
    if (strncmp(spec, "echo", 4) || (spec[4] && spec[4] != ':'))
        return vlmc_fail(err, VLMC_ERR_ARG, "echo backend: '%s' is not echo or echo:DELAY_MS", spec);
    if (spec[4] == ':') {
        char *end;
        long v = strtol(spec + 5, &end, 10);
        if (end == spec + 5 || *end || v < 0 || v > 60000)
            return vlmc_fail(err, VLMC_ERR_ARG, "echo backend: delay in '%s' is not 0..60000 milliseconds", spec);
        delay = (int)v;
    }
    echo_ctx *c = calloc(1, sizeof *c);
    if (!c) return vlmc_fail(err, VLMC_ERR_NOMEM, "echo backend: out of memory");
    c->delay_ms = delay;
    memset(out, 0, sizeof *out);
    out->ctx = c;
    out->model_id = "echo";
    out->n_ctx = n_ctx > 0 ? n_ctx : 4096;
    out->count_prompt_tokens = echo_count;
    out->chat = echo_chat;
    out->destroy = echo_destroy;
    return VLMC_OK;
}
