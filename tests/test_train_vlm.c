/* The training graph of the VLM families without gradient fixtures: LLaVA-NeXT (anyres packing with
 * image_newline), Idefics3 / SmolVLM (SigLIP-like tower with post_layernorm, pixel shuffle, modality
 * projection) and LLaVA with a SigLIP tower.
 *   - the new ops' backward against central finite differences (pixel shuffle, anyres pack / unpad);
 *   - on the llava_next and idefics3 fixtures: the training forward's logits against transformers' logits,
 *     its loss against the cross-entropy of transformers' logits computed here in double, then the gradient
 *     of sampled elements of EVERY parameter tensor against central differences of the loss;
 *   - the stages (projector, projector+decoder, lora): which tensors get gradient buffers;
 *   - vlmc_compute_grads (`vlmc dump --grads`) on the fixture inputs. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "testlib.h"
#include "core/file.h"
#include "formats/arrays.h"
#include "formats/safetensors.h"
#include "models/projector.h"
#include "train/train_model.h"
#include "vlmc.h"

#define SMALL TESTS_UNDER_ASAN

static uint64_t rng = 777;
static float frand(void) { /* uniform in [-1, 1) */
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

/* ---- ops: the backward of a pure data movement is checked through f = Σ out · r (r random, f in double);
 * f is linear in the input, so central differences are exact up to rounding of f (~1e-7 relative): any
 * misplaced gradient row is off by O(1). ---------------------------------------------------------------- */

static double dotd(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

typedef double (*lin_fn)(void *ctx);
static int fd_linear(lin_fn f, void *ctx, float *x, const float *grad, size_t n) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        const float x0 = x[i];
        x[i] = x0 + 0.5f;
        double fp = f(ctx);
        x[i] = x0 - 0.5f;
        double fm = f(ctx);
        x[i] = x0;
        bad += fabs((fp - fm) - grad[i]) > 1e-4 * (1 + fabs(grad[i]));
    }
    return bad;
}

typedef struct { float *x, *y, *r; int side, E, s; } ps_ctx;
static double ps_f(void *p) {
    ps_ctx *c = p;
    pixel_shuffle(c->y, c->x, c->side, c->E, c->s);
    return dotd(c->y, c->r, (size_t)c->side * c->side * c->E);
}
static void test_fd_pixel_shuffle(void) {
    const int cases[3][3] = {{4, 3, 2}, {6, 2, 3}, {6, 5, 2}}; /* side, E, scale */
    for (int k = 0; k < 3; k++) {
        const int side = cases[k][0], E = cases[k][1], s = cases[k][2];
        const size_t n = (size_t)side * side * E;
        float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *r = malloc(n * sizeof *r),
              *dx = calloc(n, sizeof *dx);
        for (size_t i = 0; i < n; i++) x[i] = frand(), r[i] = frand();
        pixel_shuffle_backward(dx, r, side, E, s);
        ps_ctx c = {x, y, r, side, E, s};
        int bad = fd_linear(ps_f, &c, x, dx, n);
        CHECK(bad == 0, "pixel_shuffle side %d E %d scale %d: %d input gradients wrong", side, E, s, bad);
        free(x), free(y), free(r), free(dx);
    }
}

/* LLaVA-NeXT packing on a toy geometry: 2x2-patch tiles of 28 pixels, the fixture's pinpoints; image sizes
 * that select a 1x2, 2x1 and 2x2 grid and unpad rows or columns, and the base tile alone. */
typedef struct { const projector *p; float *feat, *out, *r; int tiles, tokens, h, w; size_t len; } pk_ctx;
static double pk_f(void *q) {
    pk_ctx *c = q;
    vlmc_error e;
    size_t len;
    llava_next_pack(c->p, c->feat, c->tiles, c->tokens, c->h, c->w, c->out, &len, &e);
    return dotd(c->out, c->r, len * (size_t)c->p->out_dim);
}
static void test_fd_anyres_pack(void) {
    enum { D = 3 };
    float newline[D] = {0.3f, -0.2f, 0.9f};
    projector p;
    memset(&p, 0, sizeof p);
    p.kind = PROJ_LLAVA;
    p.out_dim = D;
    p.image_newline = newline;
    p.tile_size = 28;
    p.tile_patches = 2;
    const int pins[5][2] = {{28, 56}, {56, 28}, {56, 56}, {84, 28}, {28, 84}};
    p.n_pinpoints = 5;
    memcpy(p.pinpoints, pins, sizeof pins);
    const int sizes[5][2] = {{20, 50}, {50, 20}, {37, 53}, {53, 37}, {40, 40}};
    for (int k = 0; k < 6; k++) {
        vlmc_error e = {0};
        int h = k < 5 ? sizes[k][0] : 30, w = k < 5 ? sizes[k][1] : 30, tiles = 1;
        if (k < 5 && !CHECK(!llava_next_num_tiles(&p, h, w, &tiles, &e), "%s", e.message)) continue;
        const int tokens = 4;
        size_t len = 0;
        if (!CHECK(!llava_next_packed_len(&p, tiles, tokens, h, w, &len, &e), "%s", e.message)) continue;
        const size_t nf = (size_t)tiles * tokens * D;
        float *feat = malloc(nf * sizeof(float)), *dfeat = calloc(nf, sizeof(float)),
              *out = malloc(len * D * sizeof(float)), *r = malloc(len * D * sizeof(float)), dnl[D] = {0};
        for (size_t i = 0; i < nf; i++) feat[i] = frand();
        for (size_t i = 0; i < len * D; i++) r[i] = frand();
        CHECK(!llava_next_pack_backward(&p, r, tiles, tokens, h, w, dfeat, dnl, &e), "%s", e.message);
        pk_ctx c = {&p, feat, out, r, tiles, tokens, h, w, len};
        int bad = fd_linear(pk_f, &c, feat, dfeat, nf) + fd_linear(pk_f, &c, newline, dnl, D);
        CHECK(bad == 0, "pack %dx%d (%d tiles, %zu rows): %d gradients wrong", h, w, tiles, len, bad);
        free(feat), free(dfeat), free(out), free(r);
    }
}

/* ---- fixtures ------------------------------------------------------------------------------------------ */

typedef struct vlm_case {
    const char *name;
    fixture fx;
    fx_array *ids, *mask, *pix, *sizes, *pmask, *logits;
    int32_t *labels;
    int tiles[8];
    bool pix_4d;                /* LLaVA takes pixel_values [N, C, H, W] */
    train_batch bt;
    char dir[1024];
} vlm_case;

static void case_free(vlm_case *c) {
    fx_free(c->ids), fx_free(c->mask), fx_free(c->pix), fx_free(c->sizes), fx_free(c->pmask), fx_free(c->logits);
    free(c->labels);
    fx_close(&c->fx);
}

/* The fixture's prompt with labels = its ids, -100 on the image tokens and the first 3 positions. */
static bool case_open(vlm_case *c, const char *name, int image_token) {
    memset(c, 0, sizeof *c);
    c->name = name;
    const char *sd = shared_path("fixtures");
    if (!sd) return false;
    char ref[1100];
    snprintf(c->dir, sizeof c->dir, "%s/%s", sd, name);
    snprintf(ref, sizeof ref, "%s/reference", c->dir);
    if (!CHECK(fx_open(&c->fx, ref) == 0, "%s", ref)) return false;
    c->ids = fx_read(&c->fx, "input_ids"), c->mask = fx_read(&c->fx, "attention_mask");
    c->pix = fx_read(&c->fx, "pixel_values"), c->logits = fx_read(&c->fx, "logits");
    c->sizes = fx_read(&c->fx, "image_sizes"), c->pmask = fx_read(&c->fx, "pixel_attention_mask");
    if (!CHECK(c->ids && c->pix && c->logits && c->pix->ndim == 5 && c->pix->shape[0] == 1, "%s arrays", name))
        return false;
    const int B = (int)c->ids->shape[0], T = (int)c->ids->shape[1];
    c->labels = malloc(sizeof(int32_t) * (size_t)B * T);
    const int32_t *ids = c->ids->data;
    for (int i = 0; i < B * T; i++) c->labels[i] = (i % T < 3 || ids[i] == image_token) ? -100 : ids[i];
    c->tiles[0] = (int)c->pix->shape[1];
    c->bt = (train_batch){.B = B, .T = T, .input_ids = ids, .attention_mask = c->mask ? c->mask->data : NULL,
                          .labels = c->labels, .pixel_values = c->pix->data, .n_images = (int)c->pix->shape[1],
                          .pixel_mask = c->pmask ? c->pmask->data : NULL};
    if (c->sizes) {
        c->bt.n_groups = 1;
        c->bt.image_tiles = c->tiles;
        c->bt.image_sizes = c->sizes->data;
    }
    return true;
}

/* Mean cross-entropy of the reference logits against labels (HF shift), in double. */
static double reference_loss(const vlm_case *c, int V) {
    const float *lg = c->logits->data;
    const int B = c->bt.B, T = c->bt.T;
    double sum = 0;
    int n = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t + 1 < T; t++) {
            const int y = c->labels[b * T + t + 1];
            if (y == -100) continue;
            const float *row = lg + ((size_t)b * T + t) * V;
            double mx = row[0], s = 0;
            for (int v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
            for (int v = 0; v < V; v++) s += exp((double)row[v] - mx);
            sum += mx + log(s) - row[y];
            n++;
        }
    return sum / n;
}

static double loss_of(train_model *m, const train_batch *bt) {
    float l = 0;
    vlmc_error e = {0};
    CHECK(!train_model_forward(m, bt, &l, &e), "%s", e.message);
    return l;
}

/* d loss / d k_proj.bias is exactly 0 (a key bias shifts every score of a softmax row equally). */
static bool analytically_zero(const char *name) {
    const char *k = "self_attn.k_proj.bias";
    size_t n = strlen(name), kn = strlen(k);
    return n > kn && !strcmp(name + n - kn, k);
}

/* Central differences of the f32 loss (≈ 7, rounding ≈ 1e-6) with h = 1e-2: numeric noise ≈ 1e-4, truncation
 * O(h²) relative; the gradients here are ~1e-1 per tensor, so 2e-2 · max|grad| + 2e-4 separates a correct
 * gradient from a wrong one (a missing path or misplaced row is off by O(max|grad|)). Per tensor: the element
 * of largest |grad| plus random ones. */
static void fd_every_tensor(train_model *m, const train_batch *bt, const char *what) {
    vlmc_error e = {0};
    train_model_zero_grad(m);
    loss_of(m, bt);
    if (!CHECK(!train_model_backward(m, 1.0f, &e), "%s", e.message)) return;
    int tensors = 0, checked = 0, bad = 0;
    double worst = 0;
    for (int i = 0; i < m->n_params; i++) {
        tm_param *p = &m->params[i];
        if (!p->trainable) continue;
        tensors++;
        float *w = tm_param_data(m, p), *gc = malloc(p->n * sizeof(float));
        memcpy(gc, tm_param_grad(m, p), p->n * sizeof(float));
        float gmax = max_abs(gc, p->n);
        size_t arg = 0;
        for (size_t j = 0; j < p->n; j++)
            if (fabsf(gc[j]) == gmax) arg = j;
        const int samples = SMALL ? 2 : 4;
        for (int s = 0; s < samples; s++) {
            size_t j = s == 0 ? arg : (size_t)((frand() * 0.5f + 0.5f) * (float)(p->n - 1));
            const float w0 = w[j];
            w[j] = w0 + 1e-2f;
            double fp = loss_of(m, bt);
            w[j] = w0 - 1e-2f;
            double fm = loss_of(m, bt);
            w[j] = w0;
            double num = (fp - fm) / 2e-2, tol = 2e-2 * gmax + 2e-4, d = fabs(num - gc[j]);
            if (analytically_zero(p->name)) tol = 2e-4;
            checked++;
            if (gmax > 0 && d / gmax > worst && !analytically_zero(p->name)) worst = d / gmax;
            if (d > tol) {
                if (bad < 4) printf("      %s[%zu]: analytic %g numeric %g\n", p->name, j, gc[j], num);
                bad++;
            }
        }
        free(gc);
    }
    printf("    %s: %d tensors, %d sampled gradients, %d off, worst |diff|/max|grad| %.2e\n", what, tensors, checked,
           bad, worst);
    CHECK(bad == 0 && checked > 0, "%s: %d of %d gradients disagree with finite differences", what, bad, checked);
}

/* Training forward vs c->logits (transformers', or vlmc's inference forward), loss vs their cross-entropy, then
 * finite differences of every trainable tensor. */
static void check_case(vlm_case *c, int want_tensors) {
    train_model m;
    memset(&m, 0, sizeof m);
    vlmc_error e = {0};
    const char *name = c->name;
    if (!CHECK(!train_model_load(&m, c->dir, NULL, 0, &e) && !train_model_set_stage(&m, TM_STAGE_FULL, &e) &&
                   !train_model_plan(&m, c->bt.B, c->bt.T, c->bt.n_images, &e),
               "%s: %s", name, e.message)) {
        train_model_free(&m);
        return;
    }
    const double ref = reference_loss(c, m.V);
    const double l = loss_of(&m, &c->bt);
    const float d = max_abs_diff(train_model_logits(&m), c->logits->data, c->logits->n),
                mx = max_abs(c->logits->data, c->logits->n);
    printf("    %s: training logits vs reference max diff %.2e (max %.2f); loss %.7f vs %.7f from its logits "
           "(rel %.1e)\n",
           name, d, mx, l, ref, fabs(l - ref) / ref);
    CHECK(d <= 1e-4f * mx, "%s: logits differ by %g", name, d);
    CHECK(fabs(l - ref) <= 1e-5 * ref, "%s: loss %.9g vs %.9g", name, l, ref);
    int trainable = 0;
    for (int i = 0; i < m.n_params; i++) trainable += m.params[i].trainable;
    CHECK(trainable == want_tensors, "%s: %d tensors have gradients, want %d", name, trainable, want_tensors);
    fd_every_tensor(&m, &c->bt, name);
    train_model_free(&m);
}

static void fixture_case(const char *name, int image_token, int want_tensors) {
    vlm_case c;
    if (case_open(&c, name, image_token)) check_case(&c, want_tensors);
    case_free(&c);
}

/* llava_next: the 48 of llava (CLIP layer 1 and post_layernorm are off the path at feature layer -2: 46)
 * plus image_newline. idefics3: embeddings 3 + 2·16 layers + post_layernorm 2 + connector 1 + decoder 21. */
static void test_fixture_llava_next(void) { fixture_case("llava_next", 1000, 47); }
static void test_fixture_idefics3(void) { fixture_case("idefics3", 1000, 59); }

/* Stages: which parameters have gradient buffers, and that the trainable ones get the full stage's gradient. */
static void stage_case(const char *name, int image_token) {
    vlm_case c;
    if (!case_open(&c, name, image_token)) {
        case_free(&c);
        return;
    }
    train_model full, m;
    memset(&full, 0, sizeof full);
    vlmc_error e = {0};
    if (!CHECK(!train_model_load(&full, c.dir, NULL, 0, &e) && !train_model_set_stage(&full, TM_STAGE_FULL, &e) &&
                   !train_model_plan(&full, c.bt.B, c.bt.T, c.bt.n_images, &e),
               "%s", e.message))
        goto out;
    train_model_zero_grad(&full);
    loss_of(&full, &c.bt);
    CHECK(!train_model_backward(&full, 1.0f, &e), "%s", e.message);
    const tm_stage stages[3] = {TM_STAGE_PROJECTOR, TM_STAGE_PROJECTOR_DECODER, TM_STAGE_LORA};
    for (int k = 0; k < 3; k++) {
        tm_lora_config lc = {.r = 2, .alpha = 4, .targets = 127};
        if (!CHECK(!train_model_load(&m, c.dir, stages[k] == TM_STAGE_LORA ? &lc : NULL, 3, &e) &&
                       !train_model_set_stage(&m, stages[k], &e) &&
                       !train_model_plan(&m, c.bt.B, c.bt.T, c.bt.n_images, &e),
                   "%s", e.message))
            continue;
        train_model_zero_grad(&m);
        loss_of(&m, &c.bt);
        CHECK(!train_model_backward(&m, 1.0f, &e), "%s", e.message);
        int wrong = 0, n_train = 0, same = 0;
        size_t floats = 0;
        for (int i = 0; i < m.n_params; i++) {
            const tm_param *p = &m.params[i];
            const bool want = p->on_path && (stages[k] == TM_STAGE_PROJECTOR ? p->part == TM_PART_PROJECTOR
                                              : stages[k] == TM_STAGE_LORA   ? p->part == TM_PART_LORA
                                                                              : p->part != TM_PART_VISION);
            wrong += p->trainable != want || (tm_param_grad(&m, p) != NULL) != want;
            if (!p->trainable) continue;
            n_train++;
            floats += p->n;
            const tm_param *q = train_model_find(&full, p->name);
            if (!q) continue; /* LoRA adapters */
            same += max_abs_diff(tm_param_grad(&m, p), tm_param_grad(&full, q), p->n) <=
                    1e-6f * max_abs(tm_param_grad(&full, q), q->n);
        }
        printf("    %s %s: %d tensors with gradients (%zu floats)\n", name, tm_stage_name(stages[k]), n_train, floats);
        CHECK(wrong == 0 && n_train > 0, "%s %s: %d parameters with the wrong trainability", name,
              tm_stage_name(stages[k]), wrong);
        CHECK(m.n_grad_floats < floats + 16 * (size_t)n_train, "%s %s: gradient memory %zu floats for %zu", name,
              tm_stage_name(stages[k]), m.n_grad_floats, floats);
        if (stages[k] != TM_STAGE_LORA)
            CHECK(same == n_train, "%s %s: %d of %d gradients equal the full stage's", name, tm_stage_name(stages[k]),
                  same, n_train);
        train_model_free(&m);
    }
out:
    train_model_free(&full);
    case_free(&c);
}
static void test_stages_llava_next(void) { stage_case("llava_next", 1000); }
static void test_stages_idefics3(void) { stage_case("idefics3", 1000); }

/* The case's batch as a fixture-format input folder (what `vlmc dump` reads), with or without the labels. */
static bool write_inputs(const vlm_case *c, bool with_labels, const char *dir) {
    named_array arr[6];
    int n = 0;
    const int64_t pshape[5] = {1, c->bt.n_images, 3, c->pix->shape[3], c->pix->shape[4]};
    const int64_t *pix_shape = c->pix_4d ? pshape + 1 : pshape;
    const int64_t mshape[4] = {1, c->bt.n_images, c->pix->shape[3], c->pix->shape[4]};
    struct { const char *name; const void *data; int dtype, ndim; const int64_t *shape; } in[6] = {
        {"input_ids", c->bt.input_ids, ARRAY_I32, 2, c->ids->shape},
        {"attention_mask", c->bt.attention_mask, ARRAY_I32, 2, c->ids->shape},
        {"pixel_values", c->bt.pixel_values, ARRAY_F32, c->pix_4d ? 4 : 5, pix_shape},
        {"image_sizes", c->bt.image_sizes, ARRAY_I32, 2, c->sizes ? c->sizes->shape : NULL},
        {"pixel_attention_mask", c->bt.pixel_mask, ARRAY_I32, 4, mshape},
        {"labels", with_labels ? c->labels : NULL, ARRAY_I32, 2, c->ids->shape},
    };
    for (int i = 0; i < 6; i++) {
        if (!in[i].data) continue;
        memset(&arr[n], 0, sizeof arr[n]);
        arr[n].name = (char *)in[i].name;
        arr[n].dtype = in[i].dtype;
        arr[n].ndim = in[i].ndim;
        memcpy(arr[n].shape, in[i].shape, sizeof(int64_t) * (size_t)in[i].ndim);
        arr[n].data = (void *)in[i].data;
        n++;
    }
    vlmc_error e = {0};
    return CHECK(!arrays_write_dir(dir, "test", NULL, arr, n, &e), "%s", e.message);
}

/* vlmc_compute_grads on the fixture inputs (5-D pixel_values, image_sizes / pixel_attention_mask) gives the
 * gradients of the training graph. */
static void grads_api_case(const char *name) {
    vlm_case c;
    if (!case_open(&c, name, 1000)) {
        case_free(&c);
        return;
    }
    char in_dir[1100], out[1200];
    snprintf(in_dir, sizeof in_dir, "%s/%s_in", test_tmpdir(), name);
    snprintf(out, sizeof out, "%s/%s_grads.safetensors", test_tmpdir(), name);
    vlmc_error e = {0};
    float loss = 0;
    train_model m;
    memset(&m, 0, sizeof m);
    safetensors *st = NULL;
    if (CHECK(write_inputs(&c, true, in_dir) && !vlmc_compute_grads(c.dir, in_dir, out, &loss, &e), "%s", e.message) &&
        CHECK(!train_model_load(&m, c.dir, NULL, 0, &e) && !train_model_set_stage(&m, TM_STAGE_FULL, &e) &&
                  !train_model_plan(&m, c.bt.B, c.bt.T, c.bt.n_images, &e) && !safetensors_open(out, &st, &e),
              "%s", e.message)) {
        train_model_zero_grad(&m);
        const double l = loss_of(&m, &c.bt);
        CHECK(!train_model_backward(&m, 1.0f, &e), "%s", e.message);
        int same = 0, trainable = 0;
        for (int i = 0; i < m.n_params; i++) {
            const tm_param *p = &m.params[i];
            if (!p->trainable) continue;
            trainable++;
            const st_entry *g = safetensors_find(st, p->name);
            same += g && (size_t)tensor_numel(&g->t) == p->n && !memcmp(g->t.data, tm_param_grad(&m, p), p->n * 4);
        }
        printf("    vlmc_compute_grads(%s): loss %.7f, %d/%d gradients as the training graph's\n", name, loss, same,
               trainable);
        CHECK(loss == (float)l && same == trainable && (int)safetensors_count(st) == trainable,
              "%s: %d of %d gradients (%zu written), loss %g vs %g", name, same, trainable, safetensors_count(st), loss, l);
    }
    if (st) safetensors_close(st);
    train_model_free(&m);
    case_free(&c);
}
static void test_compute_grads_api(void) {
    grads_api_case("llava_next");
    grads_api_case("idefics3");
}


/* vlmc's inference forward (vlmc_dump, no labels) on the case's inputs replaces c->logits. */
static bool inference_logits(vlm_case *c, const char *tag) {
    char in_dir[1100], out_dir[1100];
    snprintf(in_dir, sizeof in_dir, "%s/%s_inf_in", test_tmpdir(), tag);
    snprintf(out_dir, sizeof out_dir, "%s/%s_inf_out", test_tmpdir(), tag);
    vlmc_error e = {0};
    if (!write_inputs(c, false, in_dir) || !CHECK(!vlmc_dump(c->dir, in_dir, out_dir, 0, 0, &e), "%s", e.message))
        return false;
    fixture out;
    if (!CHECK(fx_open(&out, out_dir) == 0, "%s", out_dir)) return false;
    fx_array *lg = fx_read(&out, "logits");
    fx_close(&out);
    if (!CHECK(lg != NULL, "dump wrote no logits")) return false;
    fx_free(c->logits);
    c->logits = lg;
    return true;
}

/* Idefics3 with padding: the global image's bottom patch row is padding (pixel_attention_mask 0), so the tower
 * runs with bucketized position ids of a 3x4 grid and a key mask; checked against vlmc's inference forward. */
static void test_idefics3_padded_patches(void) {
    vlm_case c;
    if (case_open(&c, "idefics3", 1000) && CHECK(c.pmask != NULL, "pixel_attention_mask")) {
        const int S = (int)c.pix->shape[3], n = c.bt.n_images;
        int32_t *pm = (int32_t *)c.pmask->data + (size_t)(n - 1) * S * S;
        float *px = (float *)c.pix->data + (size_t)(n - 1) * 3 * S * S;
        for (int y = S - 14; y < S; y++)
            for (int x = 0; x < S; x++) {
                pm[y * S + x] = 0;
                for (int ch = 0; ch < 3; ch++) px[((size_t)ch * S + y) * S + x] = 0; /* as the processor pads */
            }
        c.name = "idefics3 (padded patches)";
        if (inference_logits(&c, "idefics3_pad")) check_case(&c, 59);
    }
    case_free(&c);
}

/* LLaVA with a SigLIP tower (no class token, patch bias, gelu_pytorch_tanh, strategy "full", last layer): the
 * siglip_vision fixture's tower (64 px, 16 patches of 16) under the llava fixture's projector and decoder. */
static fx_array *new_array(const char *dtype, int ndim, const int64_t *shape) {
    fx_array *a = calloc(1, sizeof *a);
    snprintf(a->dtype, sizeof a->dtype, "%s", dtype);
    a->ndim = ndim;
    a->n = 1;
    for (int i = 0; i < ndim; i++) a->shape[i] = shape[i], a->n *= (size_t)shape[i];
    a->data = calloc(a->n, 4);
    return a;
}

static void test_llava_siglip(void) {
    const char *lv = shared_path("fixtures/llava");
    if (!lv) return;
    char llava[1100], sig[1100], dir[1000], p[1200];
    snprintf(llava, sizeof llava, "%s", lv);
    snprintf(sig, sizeof sig, "%s", shared_path("fixtures/siglip_vision"));
    snprintf(dir, sizeof dir, "%s/llava_siglip", test_tmpdir());
    vlmc_error e = {0};
    file_mkdirs(dir, &e);
    const char *cfg =
        "{\"architectures\": [\"LlavaForConditionalGeneration\"], \"model_type\": \"llava\", \"image_token_index\": "
        "1000, \"image_seq_length\": 16, \"projector_hidden_act\": \"gelu\", \"vision_feature_layer\": -1, "
        "\"vision_feature_select_strategy\": \"full\", \"text_config\": {\"head_dim\": 16, \"hidden_size\": 64, "
        "\"intermediate_size\": 160, \"max_position_embeddings\": 512, \"model_type\": \"llama\", "
        "\"num_attention_heads\": 4, \"num_hidden_layers\": 2, \"num_key_value_heads\": 2, \"pad_token_id\": 0, "
        "\"rms_norm_eps\": 1e-05, \"vocab_size\": 1024}, \"vision_config\": {\"model_type\": \"siglip_vision_model\", "
        "\"hidden_act\": \"gelu_pytorch_tanh\", \"hidden_size\": 32, \"image_size\": 64, \"intermediate_size\": 64, "
        "\"layer_norm_eps\": 1e-06, \"num_attention_heads\": 4, \"num_hidden_layers\": 2, \"patch_size\": 16}}";
    snprintf(p, sizeof p, "%s/config.json", dir);
    file_write_all(p, cfg, strlen(cfg), &e);
    safetensors *a = NULL, *b = NULL;
    if (!CHECK(!safetensors_open(llava, &a, &e) && !safetensors_open(sig, &b, &e), "%s", e.message)) goto out;
    {
        size_t na = safetensors_count(a), nb = safetensors_count(b), n = 0;
        const char **names = calloc(na + nb, sizeof *names);
        char (*buf)[160] = calloc(na + nb, sizeof *buf);
        tensor *ts = calloc(na + nb, sizeof *ts);
        for (size_t i = 0; i < na; i++) {
            const st_entry *x = safetensors_at(a, i);
            if (!strncmp(x->name, "vision_tower.", 13)) continue;
            names[n] = x->name, ts[n++] = x->t;
        }
        for (size_t i = 0; i < nb; i++) {
            const st_entry *x = safetensors_at(b, i);
            if (strstr(x->name, ".head.")) continue;
            snprintf(buf[n], sizeof buf[n], "vision_tower.%s", x->name);
            names[n] = buf[n], ts[n++] = x->t;
        }
        snprintf(p, sizeof p, "%s/model.safetensors", dir);
        CHECK(!safetensors_write(p, n, names, ts, NULL, &e), "%s", e.message);
        free(names), free(buf), free(ts);
    }
    vlm_case c;
    memset(&c, 0, sizeof c);
    c.name = "llava + siglip";
    c.pix_4d = true;
    snprintf(c.dir, sizeof c.dir, "%s", dir);
    enum { T = 26 };
    const int64_t ish[2] = {1, T}, psh[5] = {1, 1, 3, 64, 64};
    c.ids = new_array("int32", 2, ish);
    c.mask = new_array("int32", 2, ish);
    c.pix = new_array("float32", 5, psh);
    c.labels = malloc(sizeof(int32_t) * T);
    int32_t *ids = c.ids->data, *mask = c.mask->data;
    for (int t = 0; t < T; t++) {
        ids[t] = t >= 3 && t < 19 ? 1000 : (t * 37 + 11) % 1000;
        mask[t] = 1;
        c.labels[t] = t < 3 || ids[t] == 1000 ? -100 : ids[t];
    }
    float *px = c.pix->data;
    for (size_t i = 0; i < c.pix->n; i++) px[i] = frand();
    c.bt = (train_batch){.B = 1, .T = T, .input_ids = ids, .attention_mask = mask, .labels = c.labels,
                         .pixel_values = px, .n_images = 1};
    /* 16 vision tensors × 2 layers + patch w, b + positions (post_layernorm is off the path) + 4 + 21 */
    if (inference_logits(&c, "llava_siglip")) check_case(&c, 60);
    case_free(&c);
out:
    if (a) safetensors_close(a);
    if (b) safetensors_close(b);
}

int main(void) {
    /* One thread: the shapes are tiny (nothing to split) and the finite differences run ~1000 forwards, whose
     * OpenMP barriers stall on a loaded machine; results are also thread-count independent this way. */
    omp_set_num_threads(1);
    tests_begin("train_vlm");
    TEST_RUN(test_fd_pixel_shuffle);
    TEST_RUN(test_fd_anyres_pack);
    TEST_RUN(test_fixture_llava_next);
    TEST_RUN(test_fixture_idefics3);
    TEST_RUN(test_idefics3_padded_patches);
    TEST_RUN(test_llava_siglip);
    TEST_RUN(test_stages_llava_next);
    TEST_RUN(test_stages_idefics3);
    TEST_RUN(test_compute_grads_api);
    return tests_end();
}
