/* The sampler: greedy, each filter's rule as transformers applies it, determinism by seed. */
#include <math.h>
#include <string.h>

#include "testlib.h"
#include "kernels/ops.h"
#include "runtime/sampler.h"

static int count_distinct(sampler_params p, const float *base, int V, int draws, int *hits) {
    sampler s;
    vlmc_error err = {0};
    if (!CHECK(sampler_init(&s, &p, V, &err) == VLMC_OK, "init: %s", err.message)) return -1;
    float l[16];
    memset(hits, 0, sizeof(int) * (size_t)V);
    for (int i = 0; i < draws; i++) {
        memcpy(l, base, sizeof(float) * (size_t)V);
        hits[sampler_sample(&s, l, NULL, 0)]++;
    }
    sampler_free(&s);
    int d = 0;
    for (int i = 0; i < V; i++) d += hits[i] > 0;
    return d;
}

static void test_greedy_and_penalty(void) {
    sampler s;
    sampler_params p = sampler_default_params();
    p.repetition_penalty = 2.0f;
    vlmc_error err = {0};
    CHECK(sampler_init(&s, &p, 4, &err) == VLMC_OK, "init");
    float l[4] = {1.0f, 3.0f, 2.0f, -1.0f};
    int32_t hist[2] = {1, 1};
    /* 3 / 2 = 1.5 < 2: the penalty moves the argmax to token 2. */
    CHECK(sampler_sample(&s, l, hist, 2) == 2, "penalised argmax");
    CHECK(l[1] == 1.5f, "positive logit divided once, not per occurrence: %g", l[1]);
    float l2[4] = {-1.0f, -3.0f, -2.0f, -4.0f};
    int32_t h2[1] = {0};
    CHECK(sampler_sample(&s, l2, h2, 1) == 0 || l2[0] == -2.0f, "negative logit multiplied");
    CHECK(l2[0] == -2.0f, "negative logit multiplied: %g", l2[0]);
    sampler_free(&s);
    float t[5] = {1, 5, 5, 0, 2};
    CHECK(argmax_f32(t, 5) == 1, "first max wins");
}

static void test_filters(void) {
    const float base[4] = {2.0f, 1.0f, 0.0f, -1.0f}; /* probs ~ .644 .237 .087 .032 */
    int hits[4];
    sampler_params p = sampler_default_params();
    p.temperature = 1.0f;
    p.seed = 7;
    CHECK(count_distinct(p, base, 4, 4000, hits) == 4, "plain sampling reaches every token");
    CHECK(fabs(hits[0] / 4000.0 - 0.644) < 0.03, "frequency of the top token %.3f", hits[0] / 4000.0);
    p.top_k = 2;
    CHECK(count_distinct(p, base, 4, 2000, hits) == 2 && hits[2] == 0, "top-k 2");
    p.top_k = 0;
    p.top_p = 0.85f; /* tail .032+.087 = .119 <= .15 is dropped, .237 more is not */
    CHECK(count_distinct(p, base, 4, 2000, hits) == 2, "top-p 0.85 keeps two");
    p.top_p = 0.5f;
    CHECK(count_distinct(p, base, 4, 500, hits) == 1, "top-p 0.5 keeps one");
    p.top_p = 1.0f;
    p.min_p = 0.2f; /* .237 >= .2*.644 = .129 kept; .087 dropped */
    CHECK(count_distinct(p, base, 4, 2000, hits) == 2, "min-p 0.2 keeps two");
}

static void test_seed_determinism(void) {
    sampler a, b;
    sampler_params p = sampler_default_params();
    p.temperature = 0.8f;
    p.seed = 1234;
    vlmc_error err = {0};
    sampler_init(&a, &p, 8, &err);
    sampler_init(&b, &p, 8, &err);
    int same = 1;
    for (int i = 0; i < 200; i++) {
        float la[8], lb[8];
        for (int j = 0; j < 8; j++) la[j] = lb[j] = (float)((j * 7 + i) % 5);
        same &= sampler_sample(&a, la, NULL, 0) == sampler_sample(&b, lb, NULL, 0);
    }
    CHECK(same, "same seed, same tokens");
    sampler_free(&a);
    sampler_free(&b);
    p.top_p = 1.5f;
    CHECK(sampler_init(&a, &p, 8, &err) == VLMC_ERR_ARG && strstr(err.message, "top_p"), "bad params rejected");
}

int main(void) {
    tests_begin("sampler");
    TEST_RUN(test_greedy_and_penalty);
    TEST_RUN(test_filters);
    TEST_RUN(test_seed_determinism);
    return tests_end();
}
