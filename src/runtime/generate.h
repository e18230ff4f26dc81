/* The generation loop: prefill, then one token at a time through the sampler, with EOS ids, stop strings,
 * max_new_tokens, a cancel flag checked before every token, streaming of final text through the tokenizer's
 * decode stream, and timings. Buffers are planned before the loop: the loop itself allocates nothing except
 * the amortized growth of the answer's text buffer and of the decode stream's window. */
#ifndef VLMC_RUNTIME_GENERATE_H
#define VLMC_RUNTIME_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "vlmc.h"
#include "core/strbuf.h"
#include "models/llama.h"
#include "runtime/sampler.h"

typedef struct gen_config {
    sampler_params sp;
    int max_new_tokens;            /* > 0 */
    const int32_t *eos;            /* ids that end the answer */
    int n_eos;
    const char *const *stop;       /* stop strings */
    int n_stop;
    volatile sig_atomic_t *cancel; /* may be NULL */
    const vlmc_tokenizer *tok;     /* for the text; NULL = no text (and no stop strings) */
    vlmc_stream_fn on_token;       /* may be NULL */
    void *user;
} gen_config;

typedef struct gen_result {
    int32_t *ids;           /* [max_new_tokens], the caller's */
    int n_ids;
    int n_fed;              /* generated ids now in the KV cache (the last one sampled is not fed) */
    strbuf text;            /* the answer (the caller frees it) */
    vlmc_stop_reason stop;
    double prefill_s, decode_s;
} gen_result;

/* Runs prefill (batch 1: c->n_batch must be 1; no padding; in passes of c->max_tokens tokens) after what c caches,
 * then generates. history[0..n_history) are the
 * ids so far (cached + prefill: the repetition penalty's context); the generated ids are appended to it, so it
 * needs room for max_new_tokens more. */
vlmc_status generate_run(llama_ctx *c, const llama_input *prefill, int32_t *history, size_t n_history,
                         const gen_config *g, gen_result *r, vlmc_error *err);

/* Monotonic seconds. */
double gen_now(void);

#endif
