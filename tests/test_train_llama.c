/* Training graph: per-op backward against central finite differences, then the whole model against the
 * fixtures written by PyTorch (transformers 4.47): loss to 1e-5 relative, every parameter gradient to
 * 1e-4 × its max |value| (llama, llama_train_batch, llava, llava_train incl. stage 1), and one AdamW step
 * to llava_train's updated.safetensors. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "core/file.h"
#include "testlib.h"
#include "formats/arrays.h"
#include "formats/safetensors.h"
#include "kernels/gelu.h"
#include "kernels/layernorm.h"
#include "kernels/train_ops.h"
#include "train/train_model.h"
#include "vlmc.h"

/* ---- finite differences ----------------------------------------------------------------------
 * Each op is checked through a scalar f = Σ out · r (r fixed random, f accumulated in double) so that
 * df/dinp is the op's backward applied to dout = r. Kernels compute in f32: with step h = 1e-2 the
 * central difference has truncation error O(h² f''') ≈ 1e-5 relative for these smooth ops and
 * rounding error ≈ 6e-8 · Σ|out·r| / h ≈ 1e-5 relative; 2e-3 × max|grad| leaves a wide margin while a
 * wrong formula (a missing term, a transposed index) is off by O(1). */

static uint64_t rng_state = 12345;
static float frand(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}
static void fill(float *x, size_t n, float s) {
    for (size_t i = 0; i < n; i++) x[i] = s * frand();
}
static double dotd(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

typedef double (*fd_fn)(void *ctx);
/* Compares grad[n] (analytic) with central differences of f over x[n]. */
static void fd_check(const char *what, fd_fn f, void *ctx, float *x, const float *grad, size_t n) {
    const float h = 1e-2f;
    double worst = 0, gmax = 0;
    for (size_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(grad[i]));
    for (size_t i = 0; i < n; i++) {
        float x0 = x[i];
        x[i] = x0 + h;
        double fp = f(ctx);
        x[i] = x0 - h;
        double fm = f(ctx);
        x[i] = x0;
        double num = (fp - fm) / (2.0 * h);
        worst = fmax(worst, fabs(num - grad[i]));
    }
    CHECK(worst <= 2e-3 * gmax + 1e-6, "%s: max |analytic - numeric| %g, max |grad| %g", what, worst, gmax);
}

/* RMSNorm */
typedef struct { float *x, *w, *out, *rstd, *r; int R, C; } rms_ctx;
static double rms_f(void *p) {
    rms_ctx *c = p;
    rmsnorm_forward(c->out, c->rstd, c->x, c->w, c->R, c->C, 1e-5f);
    return dotd(c->out, c->r, (size_t)c->R * c->C);
}
static void test_fd_rmsnorm(void) {
    enum { R = 3, C = 8 };
    float x[R * C], w[C], out[R * C], rstd[R], r[R * C], dx[R * C] = {0}, dw[C] = {0};
    fill(x, R * C, 1), fill(w, C, 1), fill(r, R * C, 1);
    rms_ctx c = {x, w, out, rstd, r, R, C};
    rms_f(&c);
    rmsnorm_backward(dx, dw, r, x, w, rstd, R, C);
    fd_check("rmsnorm dx", rms_f, &c, x, dx, R * C);
    fd_check("rmsnorm dw", rms_f, &c, w, dw, C);
}

/* LayerNorm */
typedef struct { float *x, *w, *b, *out, *mean, *rstd, *r; int R, C; } ln_ctx;
static double ln_f(void *p) {
    ln_ctx *c = p;
    layernorm_forward_train(c->out, c->mean, c->rstd, c->x, c->w, c->b, c->R, c->C, 1e-5f);
    return dotd(c->out, c->r, (size_t)c->R * c->C);
}
static void test_fd_layernorm(void) {
    enum { R = 3, C = 8 };
    float x[R * C], w[C], b[C], out[R * C], mean[R], rstd[R], r[R * C], dx[R * C] = {0}, dw[C] = {0}, db[C] = {0};
    fill(x, R * C, 1), fill(w, C, 1), fill(b, C, 1), fill(r, R * C, 1);
    ln_ctx c = {x, w, b, out, mean, rstd, r, R, C};
    ln_f(&c);
    layernorm_backward(dx, dw, db, r, x, w, mean, rstd, R, C);
    fd_check("layernorm dx", ln_f, &c, x, dx, R * C);
    fd_check("layernorm dw", ln_f, &c, w, dw, C);
    fd_check("layernorm db", ln_f, &c, b, db, C);
}

/* Linear */
typedef struct { float *x, *w, *b, *out, *r; int R, C, OC; } mm_ctx;
static double mm_f(void *p) {
    mm_ctx *c = p;
    matmul_forward(c->out, c->x, c->w, c->b, c->R, c->C, c->OC);
    return dotd(c->out, c->r, (size_t)c->R * c->OC);
}
static void test_fd_matmul(void) {
    enum { R = 4, C = 5, OC = 3 };
    float x[R * C], w[OC * C], b[OC], out[R * OC], r[R * OC], dx[R * C] = {0}, dw[OC * C] = {0}, db[OC] = {0};
    fill(x, R * C, 1), fill(w, OC * C, 1), fill(b, OC, 1), fill(r, R * OC, 1);
    mm_ctx c = {x, w, b, out, r, R, C, OC};
    mm_f(&c);
    matmul_backward(dx, dw, db, r, x, w, R, C, OC);
    fd_check("matmul dx", mm_f, &c, x, dx, R * C);
    fd_check("matmul dw", mm_f, &c, w, dw, OC * C);
    fd_check("matmul db", mm_f, &c, b, db, OC);
}

/* SwiGLU and the activations */
typedef struct { float *g, *u, *out, *r; int n; int act; } sw_ctx;
static double sw_f(void *p) {
    sw_ctx *c = p;
    if (c->act < 0) swiglu_forward(c->out, c->g, c->u, c->n);
    else act_forward((act_kind)c->act, c->out, c->g, (size_t)c->n);
    return dotd(c->out, c->r, (size_t)c->n);
}
static void test_fd_activations(void) {
    enum { n = 16 };
    float g[n], u[n], out[n], r[n], dg[n], du[n];
    fill(g, n, 3), fill(u, n, 1), fill(r, n, 1);
    sw_ctx c = {g, u, out, r, n, -1};
    swiglu_backward(dg, du, r, g, u, n);
    fd_check("swiglu dgate", sw_f, &c, g, dg, n);
    fd_check("swiglu dup", sw_f, &c, u, du, n);
    const act_kind kinds[] = {ACT_GELU, ACT_GELU_TANH, ACT_QUICK_GELU, ACT_SILU};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        c.act = (int)kinds[k];
        act_backward(kinds[k], dg, r, g, n);
        fd_check(act_name(kinds[k]), sw_f, &c, g, dg, n);
    }
}

/* Rope: the backward is the transpose of the forward rotation */
typedef struct { float *x, *y, *cs, *sn, *r; int R, H, hd, rot; } rope_ctx;
static double rope_f(void *p) {
    rope_ctx *c = p;
    memcpy(c->y, c->x, sizeof(float) * (size_t)c->R * c->H * c->hd);
    rope_forward(c->y, c->cs, c->sn, c->R, c->H, c->hd, c->rot);
    return dotd(c->y, c->r, (size_t)c->R * c->H * c->hd);
}
static void test_fd_rope(void) {
    enum { R = 3, H = 2, hd = 8, rot = 6, n = R * H * hd };
    float x[n], y[n], r[n], dx[n], cs[R * rot / 2], sn[R * rot / 2];
    for (int i = 0; i < R * rot / 2; i++) {
        float a = 0.7f * (float)i + 0.3f;
        cs[i] = cosf(a), sn[i] = sinf(a);
    }
    fill(x, n, 1), fill(r, n, 1);
    memcpy(dx, r, sizeof dx);
    rope_backward(dx, cs, sn, R, H, hd, rot);
    rope_ctx c = {x, y, cs, sn, r, R, H, hd, rot};
    fd_check("rope (partial rotary) dx", rope_f, &c, x, dx, n);
}

/* Attention: causal with padding, GQA; and non-causal (ViT) */
typedef struct { float *q, *k, *v, *out, *probs, *r; const int32_t *mask; int causal, B, T, H, KVH, hd; } att_ctx;
static double att_f(void *p) {
    att_ctx *c = p;
    attention_forward(c->out, c->probs, c->q, c->k, c->v, c->mask, c->causal, c->B, c->T, c->H, c->KVH, c->hd, 0.5f);
    return dotd(c->out, c->r, (size_t)c->B * c->T * c->H * c->hd);
}
static void att_case(int causal, const int32_t *mask, int KVH) {
    enum { B = 2, T = 5, H = 4, hd = 4 };
    const int QD = H * hd, KD = KVH * hd;
    float q[B * T * H * hd], k[B * T * H * hd], v[B * T * H * hd], out[B * T * H * hd], probs[B * H * T * T],
        r[B * T * H * hd], dq[B * T * H * hd], dk[B * T * H * hd], dv[B * T * H * hd];
    fill(q, (size_t)B * T * QD, 1), fill(k, (size_t)B * T * KD, 1), fill(v, (size_t)B * T * KD, 1);
    fill(r, (size_t)B * T * QD, 1);
    /* rows of padded queries carry no loss in the model (labels -100): give them none here either */
    if (mask)
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
                if (!mask[b * T + t]) memset(r + ((size_t)b * T + t) * QD, 0, sizeof(float) * (size_t)QD);
    att_ctx c = {q, k, v, out, probs, r, mask, causal, B, T, H, KVH, hd};
    att_f(&c);
    attention_backward(dq, dk, dv, r, probs, q, k, v, B, T, H, KVH, hd, 0.5f);
    fd_check("attention dq", att_f, &c, q, dq, (size_t)B * T * QD);
    fd_check("attention dk", att_f, &c, k, dk, (size_t)B * T * KD);
    fd_check("attention dv", att_f, &c, v, dv, (size_t)B * T * KD);
}
static void test_fd_attention(void) {
    const int32_t right_pad[10] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, left_pad[10] = {1, 1, 1, 1, 1, 0, 0, 1, 1, 1};
    att_case(1, NULL, 4);
    att_case(1, right_pad, 2);
    att_case(1, left_pad, 1);
    att_case(0, NULL, 4);
}

/* Cross-entropy with HF's shift and ignore index */
typedef struct { float *lg; const int32_t *labels; int B, T, V; } ce_ctx;
static double ce_f(void *p) {
    ce_ctx *c = p;
    int64_t n;
    double s = cross_entropy_forward(c->lg, c->labels, c->B, c->T, c->V, &n);
    return s / (double)n;
}
static void test_fd_cross_entropy(void) {
    enum { B = 2, T = 4, V = 7 };
    const int32_t labels[B * T] = {-100, 3, 6, -100, 2, -100, 0, 5};
    float lg[B * T * V], d[B * T * V];
    fill(lg, B * T * V, 3);
    ce_ctx c = {lg, labels, B, T, V};
    int64_t n;
    cross_entropy_forward(lg, labels, B, T, V, &n);
    CHECK(n == 4, "targets: %lld", (long long)n);
    cross_entropy_backward(d, lg, labels, B, T, V, 1.0f / (float)n);
    fd_check("cross-entropy dlogits", ce_f, &c, lg, d, B * T * V);
}

/* ---- fixtures -------------------------------------------------------------------------------- */

static bool analytically_zero(const char *name) {
    size_t n = strlen(name), k = strlen("self_attn.k_proj.bias");
    return n > k && !strcmp(name + n - k, "self_attn.k_proj.bias");
}

typedef struct fx_result { double loss_rel, worst_grad_rel; } fx_result;

/* Runs forward + backward on a fixture's reference inputs, compares logits (where attention_mask = 1),
 * loss and every gradient in grads_file against the model's trainable parameters. */
static int run_fixture(const char *name, tm_stage stage, const char *grads_file, const char *loss_file,
                       train_model *m, fx_result *res) {
    char dir[1024], ref[1100], path[1200];
    const char *sd = shared_path("fixtures");
    if (!sd) return -1;
    snprintf(dir, sizeof dir, "%s/%s", sd, name);
    snprintf(ref, sizeof ref, "%s/reference", dir);
    fixture fx;
    if (!CHECK(fx_open(&fx, ref) == 0, "%s: no manifest", ref)) return -1;
    fx_array *ids = fx_read(&fx, "input_ids"), *mask = fx_read(&fx, "attention_mask"), *labels = fx_read(&fx, "labels"),
             *loss = fx_read(&fx, loss_file), *logits = fx_read(&fx, "logits"), *pix = fx_read(&fx, "pixel_values");
    int rc = -1;
    safetensors *gs = NULL;
    vlmc_error err = {0};
    if (!CHECK(ids && labels && loss, "%s: inputs missing", name)) goto out;
    const int B = (int)ids->shape[0], T = (int)ids->shape[1], N = pix ? (int)pix->shape[0] : 0;
    if (!CHECK(!train_model_load(m, dir, NULL, 0, &err), "%s", err.message)) goto out;
    if (!CHECK(!train_model_set_stage(m, stage, &err) && !train_model_plan(m, B, T, N, &err), "%s", err.message))
        goto out;
    train_batch bt = {.B = B, .T = T, .input_ids = ids->data, .attention_mask = mask ? mask->data : NULL,
                      .labels = labels->data, .pixel_values = pix ? pix->data : NULL, .n_images = N};
    float l = 0;
    train_model_zero_grad(m);
    if (!CHECK(!train_model_forward(m, &bt, &l, &err), "%s", err.message)) goto out;
    const float ref_loss = ((float *)loss->data)[0];
    res->loss_rel = fabs((double)l - ref_loss) / fabs(ref_loss);
    CHECK(res->loss_rel <= 1e-5, "%s: loss %.9g vs %.9g (rel %g)", name, l, ref_loss, res->loss_rel);
    if (logits) {
        const float *lg = train_model_logits(m);
        float worst = 0, mx = max_abs(logits->data, logits->n);
        for (int64_t r = 0; r < (int64_t)B * T; r++) {
            if (mask && !((int32_t *)mask->data)[r]) continue;
            float d = max_abs_diff(lg + r * m->V, (float *)logits->data + r * m->V, (size_t)m->V);
            if (d > worst) worst = d;
        }
        CHECK(worst <= 1e-4f * mx, "%s: logits max diff %g (max %g)", name, worst, mx);
    }
    if (!CHECK(!train_model_backward(m, 1.0f, &err), "%s", err.message)) goto out;
    snprintf(path, sizeof path, "%s/%s", ref, grads_file);
    if (!CHECK(!safetensors_open(path, &gs, &err), "%s", err.message)) goto out;
    res->worst_grad_rel = 0;
    int n_ref = (int)safetensors_count(gs), n_ours = 0;
    for (int i = 0; i < m->n_params; i++) {
        tm_param *p = &m->params[i];
        const st_entry *e = safetensors_find(gs, p->name);
        if (!p->trainable) {
            CHECK(e == NULL, "%s: %s has a reference gradient but is not trainable here", name, p->name);
            continue;
        }
        n_ours++;
        if (!CHECK(e != NULL, "%s: %s has a gradient here but none in the reference", name, p->name)) continue;
        if (!CHECK((size_t)tensor_numel(&e->t) == p->n, "%s: %s size", name, p->name)) continue;
        const float *g = tm_param_grad(m, p);
        float mx = max_abs(e->t.data, p->n), d = max_abs_diff(g, e->t.data, p->n);
        if (analytically_zero(p->name)) {
            /* softmax(q·(k_j + b)) = softmax(q·k_j + q·b): the key bias shifts every score of a row by the
             * same amount, so d loss / d k_proj.bias = Σ_i q_i Σ_j ds_ij = 0 exactly. Both torch's value and
             * ours are float rounding noise; check that they are noise at the scale of the same layer's
             * q_proj.bias gradient instead of comparing two noises. */
            char sib[256];
            snprintf(sib, sizeof sib, "%.*sq_proj.bias", (int)(strlen(p->name) - strlen("k_proj.bias")), p->name);
            const st_entry *qb = safetensors_find(gs, sib);
            float scale = qb ? max_abs(qb->t.data, (size_t)tensor_numel(&qb->t)) : 0;
            CHECK(qb && mx <= 1e-4f * scale && max_abs(g, p->n) <= 1e-4f * scale,
                  "%s: %s should be ~0: ours %g, torch %g, scale %g", name, p->name, max_abs(g, p->n), mx, scale);
            continue;
        }
        double rel = mx > 0 ? d / mx : d;
        if (rel > res->worst_grad_rel) res->worst_grad_rel = rel;
        CHECK(d <= 1e-4f * mx || (mx == 0 && d == 0), "%s: grad %s max diff %g, max |ref| %g", name, p->name, d, mx);
    }
    CHECK(n_ours == n_ref, "%s: %d gradients here, %d in %s", name, n_ours, n_ref, grads_file);
    printf("    %s (%s): loss %.7f rel err %.2e, %d grads, worst |diff|/max|grad| %.2e\n", name, tm_stage_name(stage), l,
           res->loss_rel, n_ours, res->worst_grad_rel);
    rc = 0;
out:
    if (gs) safetensors_close(gs);
    fx_free(ids), fx_free(mask), fx_free(labels), fx_free(loss), fx_free(logits), fx_free(pix);
    fx_close(&fx);
    return rc;
}

static void test_fixture_llama(void) {
    train_model m;
    fx_result r;
    run_fixture("llama", TM_STAGE_FULL, "grads.safetensors", "loss", &m, &r);
    train_model_free(&m);
}

static void test_fixture_llama_train_batch(void) {
    train_model m;
    fx_result r;
    run_fixture("llama_train_batch", TM_STAGE_FULL, "grads.safetensors", "loss", &m, &r);
    train_model_free(&m);
}

static void test_fixture_llava(void) {
    train_model m;
    fx_result r;
    run_fixture("llava", TM_STAGE_FULL, "grads.safetensors", "loss", &m, &r);
    train_model_free(&m);
}

static void test_fixture_llava_train_stage1(void) {
    train_model m;
    fx_result r;
    if (run_fixture("llava_train", TM_STAGE_PROJECTOR, "grads_projector_only.safetensors", "loss_projector_only", &m,
                    &r) == 0)
        CHECK(m.n_grad_floats < 64 * 64 + 64 * 32 + 256 && !m.g.tok_emb && !m.vg.patch_w,
              "stage 1: gradients only for the projector (%zu floats)", m.n_grad_floats);
    train_model_free(&m);
}

/* Full stage: gradients, parameters without a gradient path, then one AdamW step (torch semantics: weight
 * decay on every parameter that has a gradient) against updated.safetensors. */
static void test_fixture_llava_train_full_and_adamw(void) {
    train_model m;
    fx_result r;
    if (run_fixture("llava_train", TM_STAGE_FULL, "grads.safetensors", "loss", &m, &r) != 0) {
        train_model_free(&m);
        return;
    }
    fixture fx;
    char ref[1200], path[1300];
    snprintf(ref, sizeof ref, "%s/llava_train/reference", shared_path("fixtures"));
    if (CHECK(fx_open(&fx, ref) == 0, "manifest")) {
        const cJSON *pw = fx_meta(&fx, "params_without_grad");
        int n = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, pw) {
            tm_param *p = train_model_find(&m, it->valuestring);
            CHECK(p && !p->on_path && !p->trainable, "%s should have no gradient path", it->valuestring);
            n++;
        }
        CHECK(n == 18, "18 parameters without gradient");
        fx_close(&fx);
    }
    adamw_params ap = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f};
    vlmc_error err = {0};
    CHECK(!train_model_adamw_step(&m, 1, ap.lr, &ap, false, &err), "%s", err.message);
    snprintf(path, sizeof path, "%s/updated.safetensors", ref);
    safetensors *up = NULL, *gref = NULL;
    char gpath[1300];
    snprintf(gpath, sizeof gpath, "%s/grads.safetensors", ref);
    safetensors *m_st_orig = NULL;
    snprintf(gpath, sizeof gpath, "%s/../model.safetensors", ref);
    safetensors_open(gpath, &m_st_orig, &err);
    snprintf(gpath, sizeof gpath, "%s/grads.safetensors", ref);
    if (CHECK(m_st_orig && !safetensors_open(path, &up, &err) && !safetensors_open(gpath, &gref, &err), "%s",
              err.message)) {
        /* Without weight decay Adam's first step is u(g) = lr · g / (|g| + eps): the same u as torch needs the
         * same g. Our gradients match torch's to ~1e-6 of each tensor's max, but for elements with |g| near
         * eps = 1e-8 that difference still moves u by up to lr · |δg| / eps. So each element is checked
         * against the bound that its own gradient difference implies (plus float rounding of p), i.e. the
         * update adds no error of its own; elements with |δg| = 0 must agree to rounding. */
        double worst = 0, worst_excess = 0;
        for (int i = 0; i < m.n_params; i++) {
            const tm_param *p = &m.params[i];
            const st_entry *e = safetensors_find(up, p->name);
            if (!CHECK(e && (size_t)tensor_numel(&e->t) == p->n, "%s missing in updated", p->name)) continue;
            const float *mine = tm_param_data(&m, p), *theirs = e->t.data;
            const st_entry *ge = safetensors_find(gref, p->name), *orig = safetensors_find(m_st_orig, p->name);
            if (!CHECK(orig != NULL, "%s missing in model.safetensors", p->name)) continue;
            const float *g1 = tm_param_grad(&m, p), *g2 = ge ? ge->t.data : NULL;
            if (!CHECK((g1 != NULL) == (g2 != NULL), "%s: gradient presence differs", p->name)) continue;
            int bad = 0;
            for (size_t j = 0; j < p->n; j++) {
                const float p0 = ((const float *)orig->t.data)[j];
                /* rounding: 8 ulps of the operands (p0 and the step of about lr); the step is a chain of ~8 f32
                 * operations (decay, two moments, sqrt, two bias corrections, division, subtraction) */
                double d = fabs((double)mine[j] - theirs[j]), bound = 8 * FLT_EPSILON * (fabs(p0) + ap.lr);
                if (g1) {
                    double a = fabs(g1[j]), b = fabs(g2[j]), dg = fabs((double)g1[j] - g2[j]), mn = a < b ? a : b;
                    bound += ((g1[j] < 0) == (g2[j] < 0)) ? ap.lr * dg * 1e-8 / ((mn + 1e-8) * (mn + 1e-8))
                                                          : ap.lr * dg / 1e-8;
                }
                if (d > worst) worst = d;
                if (d > bound) {
                    if (bad < 2)
                        printf("      %s[%zu]: d %g bound %g g %g / %g p %g / %g (p0 %g)\n", p->name, j, d, bound,
                               g1 ? g1[j] : 0.f, g2 ? g2[j] : 0.f, mine[j], theirs[j], p0);
                    bad++;
                    if (d - bound > worst_excess) worst_excess = d - bound;
                }
            }
            CHECK(bad == 0, "%s: %d updated values differ by more than their gradient difference explains", p->name,
                  bad);
        }
        printf("    llava_train AdamW step: max |param - torch| %.2e (all within the gradient-difference bound)\n",
               worst);
    }
    if (up) safetensors_close(up);
    if (gref) safetensors_close(gref);
    if (m_st_orig) safetensors_close(m_st_orig);
    train_model_free(&m);
}

/* vlmc_compute_grads (the library side of `vlmc dump --grads`): inputs in the fixture format → a
 * grads.safetensors equal to the reference's. */
static void grads_api_case(const char *name, bool with_pixels) {
    char ref[1100], in_dir[1100], out[1200];
    const char *sd = shared_path("fixtures");
    if (!sd) return;
    snprintf(ref, sizeof ref, "%s/%s/reference", sd, name);
    char model[1100];
    snprintf(model, sizeof model, "%s/%s", sd, name);
    fixture fx;
    if (!CHECK(fx_open(&fx, ref) == 0, "%s", ref)) return;
    const char *names[4] = {"input_ids", "attention_mask", "labels", "pixel_values"};
    named_array arr[4];
    fx_array *fa[4] = {0};
    int n = 0;
    for (int i = 0; i < (with_pixels ? 4 : 3); i++) {
        fa[i] = fx_read(&fx, names[i]);
        if (!CHECK(fa[i] != NULL, "%s: %s", name, names[i])) goto out;
        memset(&arr[n], 0, sizeof arr[n]);
        arr[n].name = (char *)names[i];
        arr[n].dtype = i == 3 ? ARRAY_F32 : ARRAY_I32;
        arr[n].ndim = fa[i]->ndim;
        memcpy(arr[n].shape, fa[i]->shape, sizeof(int64_t) * (size_t)fa[i]->ndim);
        arr[n].data = fa[i]->data;
        n++;
    }
    snprintf(in_dir, sizeof in_dir, "%s/%s_in", test_tmpdir(), name);
    snprintf(out, sizeof out, "%s/%s_grads.safetensors", test_tmpdir(), name);
    vlmc_error err = {0};
    float loss = 0;
    if (!CHECK(!arrays_write_dir(in_dir, "test", NULL, arr, n, &err), "%s", err.message)) goto out;
    if (!CHECK(!vlmc_compute_grads(model, in_dir, out, &loss, &err), "%s", err.message)) goto out;
    safetensors *a = NULL, *b = NULL;
    char refg[1200];
    snprintf(refg, sizeof refg, "%s/grads.safetensors", ref);
    if (CHECK(!safetensors_open(out, &a, &err) && !safetensors_open(refg, &b, &err), "%s", err.message)) {
        CHECK(safetensors_count(a) == safetensors_count(b), "%s: %zu grads vs %zu", name, safetensors_count(a),
              safetensors_count(b));
        int ok = 0;
        for (size_t i = 0; i < safetensors_count(b); i++) {
            const st_entry *r = safetensors_at(b, i), *g = safetensors_find(a, r->name);
            if (!g || tensor_numel(&g->t) != tensor_numel(&r->t)) continue;
            size_t k = (size_t)tensor_numel(&r->t);
            float mx = max_abs(r->t.data, k), d = max_abs_diff(g->t.data, r->t.data, k);
            ok += d <= 1e-4f * mx || analytically_zero(r->name);
        }
        CHECK(ok == (int)safetensors_count(b), "%s: %d of %zu gradients match", name, ok, safetensors_count(b));
        printf("    vlmc_compute_grads(%s): loss %.7f, %d/%zu gradients match\n", name, loss, ok, safetensors_count(b));
    }
    if (a) safetensors_close(a);
    if (b) safetensors_close(b);
out:
    for (int i = 0; i < 4; i++) fx_free(fa[i]);
    fx_close(&fx);
}

static void test_compute_grads_api(void) {
    grads_api_case("llama_train_batch", false);
    grads_api_case("llava", true);
}

/* The training forward on the decoder variants that have no gradient fixture: qwen2 (q/k/v biases),
 * llama_rope_scaling (llama3 rope), llama_bf16 (upcast weights): logits as transformers computes them. */
static void test_forward_variants(void) {
    const char *names[] = {"qwen2", "llama_rope_scaling", "llama_bf16"};
    for (int v = 0; v < 3; v++) {
        char dir[1100], ref[1200];
        const char *sd = shared_path("fixtures");
        if (!sd) return;
        snprintf(dir, sizeof dir, "%s/%s", sd, names[v]);
        snprintf(ref, sizeof ref, "%s/reference", dir);
        fixture fx;
        if (!CHECK(fx_open(&fx, ref) == 0, "%s", ref)) continue;
        fx_array *ids = fx_read(&fx, "input_ids"), *mask = fx_read(&fx, "attention_mask"), *lg = fx_read(&fx, "logits");
        train_model m;
        vlmc_error err = {0};
        if (CHECK(ids && lg, "%s arrays", names[v]) &&
            CHECK(!train_model_load(&m, dir, NULL, 0, &err) && !train_model_set_stage(&m, TM_STAGE_FULL, &err) &&
                      !train_model_plan(&m, (int)ids->shape[0], (int)ids->shape[1], 0, &err),
                  "%s: %s", names[v], err.message)) {
            train_batch bt = {.B = (int)ids->shape[0], .T = (int)ids->shape[1], .input_ids = ids->data,
                              .attention_mask = mask ? mask->data : NULL};
            if (CHECK(!train_model_forward(&m, &bt, NULL, &err), "%s", err.message)) {
                float d = max_abs_diff(train_model_logits(&m), lg->data, lg->n), mx = max_abs(lg->data, lg->n);
                printf("    %s: logits max diff %.2e (max %.2f)\n", names[v], d, mx);
                CHECK(d <= 1e-4f * mx, "%s: logits differ by %g", names[v], d);
            }
            train_model_free(&m);
        }
        fx_free(ids), fx_free(mask), fx_free(lg);
        fx_close(&fx);
    }
}

/* Whole-model finite differences on a tiny random Llama with everything the fixtures lack: tied embeddings,
 * attention and MLP biases, GQA, a padded batch, LoRA adapters (B made nonzero). The loss is f32 (~6, so
 * rounding ~4e-7); with h = 1e-2 the numeric derivative carries ~2e-5 of noise plus O(h²) truncation:
 * each sampled element must agree within 2e-2 · max|grad of its tensor| + 1e-4. Miswiring (a missing
 * path, the tied head counted once) is off by O(1). */
static void write_tiny(const char *dir) {
    vlmc_error e = {0};
    file_mkdirs(dir, &e);
    const int V = 40, D = 16, I = 24, L = 2, QD = 16, KD = 8;
    char p[1200];
    const char *cfg = "{\"model_type\": \"llama\", \"vocab_size\": 40, \"hidden_size\": 16, \"intermediate_size\": 24, "
                      "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 4, "
                      "\"attention_bias\": true, \"mlp_bias\": true, \"tie_word_embeddings\": true, "
                      "\"rope_theta\": 100.0, \"max_position_embeddings\": 64}";
    snprintf(p, sizeof p, "%s/config.json", dir);
    file_write_all(p, cfg, strlen(cfg), &e);
    const char *names[64];
    char nb[64][80];
    tensor ts[64];
    float *bufs[64];
    int k = 0;
    struct { const char *n; int a, b; } spec[] = {
        {"input_layernorm.weight", D, 0}, {"post_attention_layernorm.weight", D, 0},
        {"self_attn.q_proj.weight", QD, D}, {"self_attn.q_proj.bias", QD, 0},
        {"self_attn.k_proj.weight", KD, D}, {"self_attn.k_proj.bias", KD, 0},
        {"self_attn.v_proj.weight", KD, D}, {"self_attn.v_proj.bias", KD, 0},
        {"self_attn.o_proj.weight", D, QD}, {"self_attn.o_proj.bias", D, 0},
        {"mlp.gate_proj.weight", I, D}, {"mlp.gate_proj.bias", I, 0},
        {"mlp.up_proj.weight", I, D}, {"mlp.up_proj.bias", I, 0},
        {"mlp.down_proj.weight", D, I}, {"mlp.down_proj.bias", D, 0},
    };
    for (int l = -1; l < L; l++)
        for (int i = 0; i < (l < 0 ? 2 : 16); i++) {
            int a, b;
            if (l < 0) {
                snprintf(nb[k], sizeof nb[k], "%s", i ? "model.norm.weight" : "model.embed_tokens.weight");
                a = i ? D : V, b = i ? 0 : D;
            } else {
                snprintf(nb[k], sizeof nb[k], "model.layers.%d.%s", l, spec[i].n);
                a = spec[i].a, b = spec[i].b;
            }
            int64_t sh[2] = {a, b};
            size_t n = (size_t)a * (size_t)(b ? b : 1);
            bufs[k] = malloc(n * sizeof(float));
            bool norm = strstr(nb[k], "norm") != NULL;
            for (size_t j = 0; j < n; j++) bufs[k][j] = norm ? 1.0f + 0.1f * frand() : 0.3f * frand();
            ts[k] = tensor_view(DT_F32, bufs[k], b ? 2 : 1, sh);
            names[k] = nb[k];
            k++;
        }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    CHECK(!safetensors_write(p, (size_t)k, names, ts, NULL, &e), "%s", e.message);
    for (int i = 0; i < k; i++) free(bufs[i]);
}

static double model_loss(train_model *m, const train_batch *bt) {
    float l = 0;
    vlmc_error e;
    train_model_forward(m, bt, &l, &e);
    return l;
}

static void fd_model(train_model *m, const train_batch *bt, int part, const char *what) {
    vlmc_error e = {0};
    train_model_zero_grad(m);
    model_loss(m, bt);
    CHECK(!train_model_backward(m, 1.0f, &e), "%s", e.message);
    int checked = 0, bad = 0;
    for (int i = 0; i < m->n_params; i++) {
        tm_param *p = &m->params[i];
        if (!p->trainable || !(p->part & part)) continue;
        float *w = tm_param_data(m, p), *g = tm_param_grad(m, p), *gc = malloc(p->n * sizeof(float));
        memcpy(gc, g, p->n * sizeof(float));
        float gmax = max_abs(gc, p->n);
        for (int s = 0; s < 6; s++) {
            size_t j = (size_t)((frand() * 0.5f + 0.5f) * (float)(p->n - 1));
            float w0 = w[j];
            w[j] = w0 + 1e-2f;
            double fp = model_loss(m, bt);
            w[j] = w0 - 1e-2f;
            double fm = model_loss(m, bt);
            w[j] = w0;
            double num = (fp - fm) / 2e-2;
            checked++;
            if (fabs(num - gc[j]) > 2e-2 * gmax + 1e-4) {
                if (bad < 3) printf("      %s[%zu]: analytic %g numeric %g\n", p->name, j, gc[j], num);
                bad++;
            }
        }
        free(gc);
    }
    printf("    %s: %d sampled gradients, %d off\n", what, checked, bad);
    CHECK(bad == 0 && checked > 0, "%s: %d of %d gradients disagree with finite differences", what, bad, checked);
}

static void test_fd_whole_model(void) {
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/tiny_fd", test_tmpdir());
    write_tiny(dir);
    enum { B = 2, T = 7 };
    const int32_t ids[B * T] = {1, 5, 9, 13, 2, 7, 3, 4, 8, 12, 39, 0, 0, 0};
    const int32_t mask[B * T] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0};
    const int32_t labels[B * T] = {-100, -100, 9, 13, 2, 7, 3, -100, 8, 12, 39, -100, -100, -100};
    train_batch bt = {.B = B, .T = T, .input_ids = ids, .attention_mask = mask, .labels = labels};
    train_model m;
    vlmc_error e = {0};
    if (CHECK(!train_model_load(&m, dir, NULL, 0, &e) && !train_model_set_stage(&m, TM_STAGE_FULL, &e) &&
                  !train_model_plan(&m, B, T, 0, &e),
              "%s", e.message)) {
        CHECK(m.tied && m.w.lm_head == m.w.tok_emb && m.g.lm_head == m.g.tok_emb, "tied head shares the gradient");
        fd_model(&m, &bt, TM_PART_DECODER, "full (tied, biases, GQA, padding)");
        train_model_free(&m);
    }
    tm_lora_config lc = {.r = 3, .alpha = 6, .dropout = 0, .targets = 127};
    if (CHECK(!train_model_load(&m, dir, &lc, 5, &e) && !train_model_set_stage(&m, TM_STAGE_LORA, &e) &&
                  !train_model_plan(&m, B, T, 0, &e),
              "%s", e.message)) {
        for (int i = 0; i < m.n_params; i++)
            if (strstr(m.params[i].name, "lora_B")) fill(tm_param_data(&m, &m.params[i]), m.params[i].n, 0.3f);
        fd_model(&m, &bt, TM_PART_LORA, "lora (A and B, all seven modules)");
        train_model_free(&m);
    }
}

/* Gradient accumulation as the trainer does it: the llama_train_batch batch of 2 split into two
 * micro-batches, each backward scaled by its share of the targets, sums to the whole batch's gradient
 * (the mean over ALL targets, not a mean of per-sequence means). */
static void test_grad_accumulation(void) {
    char dir[1100], ref[1200];
    const char *sd = shared_path("fixtures");
    if (!sd) return;
    snprintf(dir, sizeof dir, "%s/llama_train_batch", sd);
    snprintf(ref, sizeof ref, "%s/reference", dir);
    fixture fx;
    if (!CHECK(fx_open(&fx, ref) == 0, "%s", ref)) return;
    fx_array *ids = fx_read(&fx, "input_ids"), *mask = fx_read(&fx, "attention_mask"), *labels = fx_read(&fx, "labels"),
             *loss = fx_read(&fx, "loss");
    safetensors *gs = NULL;
    train_model m;
    vlmc_error err = {0};
    char gp[1300];
    snprintf(gp, sizeof gp, "%s/grads.safetensors", ref);
    if (!CHECK(ids && mask && labels && loss && !safetensors_open(gp, &gs, &err), "inputs") ||
        !CHECK(!train_model_load(&m, dir, NULL, 0, &err) && !train_model_set_stage(&m, TM_STAGE_FULL, &err) &&
                   !train_model_plan(&m, 1, (int)ids->shape[1], 0, &err),
               "%s", err.message))
        goto out;
    const int T = (int)ids->shape[1];
    int64_t nt[2], total = 0;
    for (int b = 0; b < 2; b++) {
        nt[b] = 0;
        for (int t = 1; t < T; t++) nt[b] += ((int32_t *)labels->data)[b * T + t] != -100;
        total += nt[b];
    }
    train_model_zero_grad(&m);
    double lsum = 0;
    for (int b = 0; b < 2; b++) {
        train_batch bt = {.B = 1, .T = T, .input_ids = (int32_t *)ids->data + b * T,
                          .attention_mask = (int32_t *)mask->data + b * T, .labels = (int32_t *)labels->data + b * T};
        float l = 0;
        CHECK(!train_model_forward(&m, &bt, &l, &err) && !train_model_backward(&m, (float)nt[b] / (float)total, &err),
              "%s", err.message);
        lsum += (double)l * (double)nt[b];
    }
    const float ref_loss = ((float *)loss->data)[0];
    CHECK(fabs(lsum / (double)total - ref_loss) <= 1e-5 * fabs(ref_loss), "accumulated loss %g vs %g",
          lsum / (double)total, ref_loss);
    double worst = 0;
    int ok = 0;
    for (int i = 0; i < m.n_params; i++) {
        const tm_param *p = &m.params[i];
        const st_entry *e = safetensors_find(gs, p->name);
        if (!e) continue;
        float mx = max_abs(e->t.data, p->n), d = max_abs_diff(tm_param_grad(&m, p), e->t.data, p->n);
        if (mx > 0 && d / mx > worst) worst = d / mx;
        ok += d <= 1e-4f * mx;
    }
    printf("    2 micro-batches of 1: loss %.7f, worst |diff|/max|grad| %.2e\n", lsum / (double)total, worst);
    CHECK(ok == 21, "%d of 21 accumulated gradients match the whole batch's", ok);
    train_model_free(&m);
out:
    if (gs) safetensors_close(gs);
    fx_free(ids), fx_free(mask), fx_free(labels), fx_free(loss);
    fx_close(&fx);
}

int main(void) {
    tests_begin("train_llama");
    TEST_RUN(test_fd_rmsnorm);
    TEST_RUN(test_fd_layernorm);
    TEST_RUN(test_fd_matmul);
    TEST_RUN(test_fd_activations);
    TEST_RUN(test_fd_rope);
    TEST_RUN(test_fd_attention);
    TEST_RUN(test_fd_cross_entropy);
    TEST_RUN(test_fd_whole_model);
    TEST_RUN(test_fixture_llama);
    TEST_RUN(test_fixture_llama_train_batch);
    TEST_RUN(test_fixture_llava);
    TEST_RUN(test_fixture_llava_train_stage1);
    TEST_RUN(test_fixture_llava_train_full_and_adamw);
    TEST_RUN(test_grad_accumulation);
    TEST_RUN(test_compute_grads_api);
    TEST_RUN(test_forward_variants);
    return tests_end();
}
