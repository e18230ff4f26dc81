/* The generation loop; see generate.h. */
#include "runtime/generate.h"

#include <string.h>
#include <time.h>

#include "core/error.h"

double gen_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Where the first stop string starts in text[from..n), or -1. */
static long find_stop(const gen_config *g, const char *text, size_t n, size_t from) {
    long best = -1;
    for (int i = 0; i < g->n_stop; i++) {
        size_t sl = strlen(g->stop[i]);
        if (!sl || sl > n) continue;
        for (size_t p = from; p + sl <= n; p++)
            if (!memcmp(text + p, g->stop[i], sl)) {
                if (best < 0 || (long)p < best) best = (long)p;
                break;
            }
    }
    return best;
}

/* Bytes at the end of text that could begin a stop string (held back from the stream). */
static size_t stop_prefix_tail(const gen_config *g, const char *text, size_t n) {
    size_t hold = 0;
    for (int i = 0; i < g->n_stop; i++) {
        size_t sl = strlen(g->stop[i]);
        for (size_t h = sl ? sl - 1 : 0; h > hold; h--)
            if (h <= n && !memcmp(text + n - h, g->stop[i], h)) {
                hold = h;
                break;
            }
    }
    return hold;
}

typedef struct streamer {
    const gen_config *g;
    gen_result *r;
    size_t emitted, searched;
    size_t max_stop;
} streamer;

/* Adds a piece of final text; emits what can no longer be part of a stop string. Returns 1 when a stop string
 * was found (the text is cut before it and everything before it emitted). */
static int stream_add(streamer *st, const char *piece, size_t len, bool final, int32_t id, int *cb_stop) {
    gen_result *r = st->r;
    const gen_config *g = st->g;
    if (len) strbuf_append(&r->text, piece, len);
    size_t n = r->text.len;
    int found = 0;
    size_t upto = n;
    if (g->n_stop) {
        size_t from = st->searched > st->max_stop ? st->searched - st->max_stop : 0;
        long p = find_stop(g, r->text.data ? r->text.data : "", n, from);
        if (p >= 0) {
            found = 1;
            upto = (size_t)p;
            r->text.len = upto;
            if (r->text.data) r->text.data[upto] = 0;
        } else if (!final) {
            upto = n - stop_prefix_tail(g, r->text.data ? r->text.data : "", n);
        }
        st->searched = n;
    }
    if (upto < st->emitted) upto = st->emitted;
    if (g->on_token && g->on_token(r->text.data ? r->text.data + st->emitted : "", upto - st->emitted, id, g->user))
        *cb_stop = 1;
    st->emitted = upto;
    return found;
}

vlmc_status generate_run(llama_ctx *c, const llama_input *prefill, int32_t *history, size_t n_history,
                         const gen_config *g, gen_result *r, vlmc_error *err) {
    r->n_ids = r->n_fed = 0;
    r->stop = VLMC_STOP_LENGTH;
    r->prefill_s = r->decode_s = 0;
    if (c->n_batch != 1) return vlmc_fail(err, VLMC_ERR_ARG, "generate: batch of %d, expected 1", c->n_batch);
    if (g->max_new_tokens <= 0) return vlmc_fail(err, VLMC_ERR_ARG, "generate: max_new_tokens must be > 0");
    if (prefill->n_tokens <= 0 || prefill->attention_mask || prefill->position_ids)
        return vlmc_fail(err, VLMC_ERR_ARG, "generate: the prefill must be > 0 unpadded tokens");
    if (prefill->prefix_mask && prefill->n_tokens > c->max_tokens)
        return vlmc_fail(err, VLMC_ERR_LIMIT,
                         "generate: a prefix-LM prompt attends both ways and must run in one pass: %d tokens, at most "
                         "%d per pass", prefill->n_tokens, c->max_tokens);
    sampler smp;
    vlmc_status s = sampler_init(&smp, &g->sp, c->m->vocab, err);
    if (s) return s;
    vlmc_decode_stream *ds = NULL;
    if (g->tok && (s = vlmc_decode_stream_new(g->tok, 1, &ds, err))) {
        sampler_free(&smp);
        return s;
    }
    streamer st = {.g = g, .r = r};
    for (int i = 0; i < g->n_stop; i++)
        if (strlen(g->stop[i]) > st.max_stop) st.max_stop = strlen(g->stop[i]);
    double t0 = gen_now();
    /* the prompt in passes of at most c->max_tokens tokens (only the last one's logits are kept) */
    const size_t D = (size_t)c->m->dim;
    for (int done = 0; !s && done < prefill->n_tokens;) {
        int n = prefill->n_tokens - done < c->max_tokens ? prefill->n_tokens - done : c->max_tokens;
        llama_input part = {.n_tokens = n, .prompt_len = prefill->n_tokens,
                            .tokens = prefill->tokens ? prefill->tokens + done : NULL,
                            .embeds = prefill->tokens ? NULL : prefill->embeds + (size_t)done * D,
                            .mrope_pos = prefill->mrope_pos ? prefill->mrope_pos + (size_t)done * 3 : NULL,
                            .prefix_mask = prefill->prefix_mask ? prefill->prefix_mask + done : NULL};
        s = llama_forward(c, &part, &(llama_output){.logits = c->step_logits, .logits_last_only = true}, err);
        done += n;
    }
    if (!s && c->legacy_unmask_padding_on_decode) llama_ctx_unmask_padding(c);
    double t1 = gen_now();
    r->prefill_s = t1 - t0;
    int cb_stop = 0;
    while (!s) {
        if (g->cancel && *g->cancel) {
            r->stop = VLMC_STOP_CANCEL;
            break;
        }
        int32_t id = sampler_sample(&smp, c->step_logits, history, n_history);
        history[n_history++] = id;
        r->ids[r->n_ids++] = id;
        bool eos = false;
        for (int i = 0; i < g->n_eos; i++) eos |= id == g->eos[i];
        if (eos) {
            r->stop = VLMC_STOP_EOS;
            break;
        }
        const char *piece = "";
        size_t plen = 0;
        if (ds && (s = vlmc_decode_stream_push(ds, id, &piece, &plen, err))) break;
        if (stream_add(&st, piece, plen, false, id, &cb_stop)) {
            r->stop = VLMC_STOP_STRING;
            break;
        }
        if (cb_stop) {
            r->stop = VLMC_STOP_CALLBACK;
            break;
        }
        if (r->n_ids >= g->max_new_tokens || c->kv.n_past >= c->n_ctx) {
            r->stop = VLMC_STOP_LENGTH;
            break;
        }
        c->step_ids[0] = id;
        c->step_mask[0] = 1;
        s = llama_forward(c, &(llama_input){.n_tokens = 1, .tokens = c->step_ids, .attention_mask = c->step_mask},
                          &(llama_output){.logits = c->step_logits, .logits_last_only = true}, err);
        if (!s) r->n_fed++;
    }
    if (!s && ds && r->stop != VLMC_STOP_STRING) {
        const char *piece = "";
        size_t plen = 0;
        if (!(s = vlmc_decode_stream_flush(ds, &piece, &plen, err))) {
            int ignored = 0;
            if (stream_add(&st, piece, plen, true, -1, &ignored) && r->stop != VLMC_STOP_CANCEL)
                r->stop = VLMC_STOP_STRING;
        }
    }
    if (!s && r->text.failed) s = vlmc_fail(err, VLMC_ERR_NOMEM, "generate: out of memory for the answer");
    r->decode_s = gen_now() - t1;
    vlmc_decode_stream_free(ds);
    sampler_free(&smp);
    return s;
}
