/* AdamW, clipping and schedules against torch: one AdamW step on the llava_train
 * fixture's gradients must give its updated.safetensors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "formats/safetensors.h"
#include "train/optim.h"

static void test_adamw_matches_torch(void) {
    const char *dir = shared_path("fixtures/llava_train");
    if (!dir) return;
    char p_model[512], p_grads[512], p_upd[512];
    snprintf(p_model, sizeof p_model, "%s/model.safetensors", dir);
    snprintf(p_grads, sizeof p_grads, "%s/reference/grads.safetensors", dir);
    snprintf(p_upd, sizeof p_upd, "%s/reference/updated.safetensors", dir);
    safetensors *model = NULL, *grads = NULL, *upd = NULL;
    vlmc_error err = {0};
    if (!CHECK(!safetensors_open(p_model, &model, &err) && !safetensors_open(p_grads, &grads, &err) &&
                   !safetensors_open(p_upd, &upd, &err), "%s", err.message))
        goto out;
    adamw_params ap = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f};
    int updated = 0, untouched = 0;
    float worst = 0;
    for (size_t i = 0; i < safetensors_count(model); i++) {
        const st_entry *e = safetensors_at(model, i);
        const st_entry *g = safetensors_find(grads, e->name), *u = safetensors_find(upd, e->name);
        if (!CHECK(u != NULL, "%s missing from updated", e->name)) continue;
        size_t n = (size_t)tensor_numel(&e->t);
        float *p = malloc(n * 4), *m = calloc(n, 4), *v = calloc(n, 4);
        memcpy(p, e->t.data, n * 4);
        if (g) {
            adamw_update(p, g->t.data, m, v, n, 1, ap.lr, &ap);
            updated++;
        } else untouched++; /* no gradient: torch skips the parameter entirely */
        float d = max_abs_diff(p, u->t.data, n);
        if (d > worst) worst = d;
        /* Bit-level agreement is not promised by float reassociation; 1 ulp-scale slack. */
        CHECK(d <= 1e-6f * (max_abs(u->t.data, n) + 1e-3f), "%s: max diff %g", e->name, d);
        free(p);
        free(m);
        free(v);
    }
    printf("    adamw: %d updated, %d without grad, max |diff| %g\n", updated, untouched, worst);
    CHECK(updated == 46 && untouched == 18, "46 parameters with gradients, 18 without");
out:
    if (model) safetensors_close(model);
    if (grads) safetensors_close(grads);
    if (upd) safetensors_close(upd);
}

static void test_clip_and_schedules(void) {
    float a[2] = {3, 0}, b[1] = {4};
    float *bufs[2] = {a, b};
    size_t sizes[2] = {2, 1};
    CHECK(fabs(grad_global_norm(bufs, sizes, 2) - 5.0) < 1e-12, "norm 5");
    double n = grad_clip_global_norm(bufs, sizes, 2, 1.0);
    CHECK(fabs(n - 5.0) < 1e-12 && fabsf(a[0] - 0.6f) < 1e-6f && fabsf(b[0] - 0.8f) < 1e-6f, "clipped to norm 1");
    n = grad_clip_global_norm(bufs, sizes, 2, 10.0);
    CHECK(fabsf(a[0] - 0.6f) < 1e-6f, "no clipping below max");
    /* transformers' schedules: warmup 10 of 110 steps. */
    CHECK(lr_schedule_factor(LR_LINEAR, 5, 10, 110) == 0.5, "warmup half");
    CHECK(lr_schedule_factor(LR_LINEAR, 60, 10, 110) == 0.5, "linear midpoint");
    CHECK(lr_schedule_factor(LR_LINEAR, 110, 10, 110) == 0.0, "linear end");
    CHECK(fabs(lr_schedule_factor(LR_COSINE, 60, 10, 110) - 0.5) < 1e-12, "cosine midpoint");
    CHECK(fabs(lr_schedule_factor(LR_COSINE, 10, 10, 110) - 1.0) < 1e-12, "cosine start");
    CHECK(lr_schedule_factor(LR_CONSTANT, 50, 10, 110) == 1.0, "constant");
}

static void test_adamw_two_steps(void) {
    /* Hand-computed: g = 1 twice, lr 0.1, no decay. Step 1: m=.1, v=.001, mhat=1, vhat=1 -> p -= .1.
     * Step 2: m=.19, v=.001999, mhat=.19/.19=1, vhat=1 -> p -= .1 again. */
    float p = 1.0f, g = 1.0f, m = 0, v = 0;
    adamw_params ap = adamw_default_params();
    adamw_update(&p, &g, &m, &v, 1, 1, 0.1f, &ap);
    CHECK(fabsf(p - 0.9f) < 1e-6f, "step 1: %g", p);
    adamw_update(&p, &g, &m, &v, 1, 2, 0.1f, &ap);
    CHECK(fabsf(p - 0.8f) < 1e-6f, "step 2: %g", p);
}

int main(void) {
    tests_begin("optim");
    TEST_RUN(test_adamw_matches_torch);
    TEST_RUN(test_clip_and_schedules);
    TEST_RUN(test_adamw_two_steps);
    return tests_end();
}
