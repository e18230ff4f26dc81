/* Choosing the next token from logits, with the logits processors of
 * transformers' generate() applied in its order: repetition penalty, then
 * temperature, top-k, top-p, min-p. Buffers are sized once for the vocabulary:
 * sampling a token allocates nothing. */
#ifndef VLMC_RUNTIME_SAMPLER_H
#define VLMC_RUNTIME_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/rng.h"

typedef struct sampler_params {
    float temperature;        /* 0 = greedy (argmax) */
    int top_k;                /* 0 = off */
    float top_p;              /* 1 = off */
    float min_p;              /* 0 = off */
    float repetition_penalty; /* 1 = off */
    uint64_t seed;
} sampler_params;

typedef struct sampler {
    sampler_params p;
    int vocab;
    rng rng;
    float *probs;    /* [vocab] scratch */
    int32_t *order;  /* [vocab] scratch: candidate token ids */
    uint8_t *seen;   /* [vocab] scratch for the repetition penalty */
} sampler;

sampler_params sampler_default_params(void);
vlmc_status sampler_init(sampler *s, const sampler_params *p, int vocab, vlmc_error *err);
void sampler_free(sampler *s);
/* Picks a token. logits[vocab] is modified in place (penalties, temperature, masks);
 * history holds the tokens so far (prompt and generated) for the repetition penalty. */
int32_t sampler_sample(sampler *s, float *logits, const int32_t *history, size_t n_history);
/* A uniform double in [0, 1) from the sampler's generator. */
double sampler_uniform(sampler *s);

#endif
