#include "runtime/sampler.h"

#include "kernels/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

sampler_params sampler_default_params(void) {
    sampler_params p = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .repetition_penalty = 1.0f, .seed = 0};
    return p;
}

double sampler_uniform(sampler *s) { return rng_uniform(&s->rng); }

vlmc_status sampler_init(sampler *s, const sampler_params *p, int vocab, vlmc_error *err) {
    memset(s, 0, sizeof *s);
    if (vocab <= 0) return vlmc_fail(err, VLMC_ERR_ARG, "sampler: vocabulary size %d", vocab);
    if (!(p->temperature >= 0) || p->top_k < 0 || !(p->top_p > 0 && p->top_p <= 1) || !(p->min_p >= 0 && p->min_p <= 1) ||
        !(p->repetition_penalty > 0))
        return vlmc_fail(err, VLMC_ERR_ARG,
                         "sampler: invalid parameters (temperature >= 0, top_k >= 0, 0 < top_p <= 1, 0 <= min_p <= 1, "
                         "repetition_penalty > 0)");
    s->p = *p;
    s->vocab = vocab;
    rng_seed(&s->rng, p->seed);
    s->probs = malloc((size_t)vocab * sizeof *s->probs);
    s->order = malloc((size_t)vocab * sizeof *s->order);
    s->seen = calloc((size_t)vocab, 1);
    if (!s->probs || !s->order || !s->seen) {
        sampler_free(s);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "sampler: out of memory");
    }
    return VLMC_OK;
}

void sampler_free(sampler *s) {
    free(s->probs);
    free(s->order);
    free(s->seen);
    memset(s, 0, sizeof *s);
}

/* Sorts candidate ids by logit, descending (ties by id, ascending, for determinism). */
static int cmp_desc(const void *a, const void *b, void *keys) {
    const float *k = keys;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (k[x] != k[y]) return k[x] > k[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

int32_t sampler_sample(sampler *s, float *logits, const int32_t *history, size_t n_history) {
    const int V = s->vocab;
    /* Repetition penalty (CTRL): each distinct earlier token's logit is divided by the
     * penalty if positive, multiplied if negative. */
    if (s->p.repetition_penalty != 1.0f && n_history) {
        float pen = s->p.repetition_penalty;
        for (size_t i = 0; i < n_history; i++) {
            int32_t t = history[i];
            if (t < 0 || t >= V || s->seen[t]) continue;
            s->seen[t] = 1;
            logits[t] = logits[t] > 0 ? logits[t] / pen : logits[t] * pen;
        }
        for (size_t i = 0; i < n_history; i++)
            if (history[i] >= 0 && history[i] < V) s->seen[history[i]] = 0;
    }
    if (s->p.temperature == 0.0f) return (int32_t)argmax_f32(logits, V);

    for (int i = 0; i < V; i++) logits[i] /= s->p.temperature;
    /* Candidates sorted by logit: the filters below keep a prefix of this order. */
    int n = 0;
    for (int i = 0; i < V; i++)
        if (logits[i] > -INFINITY) s->order[n++] = i;
    if (n == 0) return (int32_t)argmax_f32(logits, V);
    qsort_r(s->order, (size_t)n, sizeof *s->order, cmp_desc, logits);
    /* top-k keeps every token whose logit reaches the k-th largest (ties included, as HF). */
    if (s->p.top_k > 0 && s->p.top_k < n) {
        float kth = logits[s->order[s->p.top_k - 1]];
        int m = s->p.top_k;
        while (m < n && logits[s->order[m]] >= kth) m++;
        n = m;
    }
    /* Softmax over the remaining candidates. */
    float mx = logits[s->order[0]];
    double sum = 0;
    for (int i = 0; i < n; i++) {
        s->probs[i] = expf(logits[s->order[i]] - mx);
        sum += s->probs[i];
    }
    for (int i = 0; i < n; i++) s->probs[i] = (float)(s->probs[i] / sum);
    /* top-p as HF: drop the low tail whose cumulative mass is <= 1 - top_p; keep >= 1 token. */
    if (s->p.top_p < 1.0f) {
        double tail = 0;
        int m = n;
        while (m > 1 && tail + s->probs[m - 1] <= 1.0 - s->p.top_p) {
            tail += s->probs[m - 1];
            m--;
        }
        n = m;
    }
    /* min-p: drop tokens less likely than min_p times the most likely one. */
    if (s->p.min_p > 0.0f) {
        float thr = s->p.min_p * s->probs[0];
        int m = 1;
        while (m < n && s->probs[m] >= thr) m++;
        n = m;
    }
    double total = 0;
    for (int i = 0; i < n; i++) total += s->probs[i];
    double u = sampler_uniform(s) * total, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += s->probs[i];
        if (u < acc) return s->order[i];
    }
    return s->order[n - 1];
}
