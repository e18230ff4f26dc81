/* Block-quantized formats (core/quant.h) and their kernels (kernels/qdot.h, kernels/matmul.h):
 * the byte layouts read as llama.cpp defines them, quantize -> dequantize within each
 * format's error bound, quantized GEMV against the f32 reference, and each run-time
 * dispatch path against the portable one. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "core/quant.h"
#include "core/rng.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "kernels/matmul.h"
#include "kernels/qdot.h"
#include "models/vlm.h"
#include "vlmc.h"

static const dtype QTYPES[] = {DT_Q8_0, DT_Q4_0, DT_Q4_K, DT_Q6_K};
enum { NQ = 4 };
/* f16 rounding of the block scales: relative 2^-11. */
static const double H = 1.0 / 2048;

/* Gaussian-ish values (sum of uniforms) times a per-row scale, with a few outliers, like weights. */
static void fill(rng *r, float *x, int64_t n, double scale) {
    for (int64_t i = 0; i < n; i++) {
        double g = rng_uniform(r) + rng_uniform(r) + rng_uniform(r) - 1.5;
        if (rng_below(r, 64) == 0) g *= 6;
        x[i] = (float)(g * scale);
    }
}

static size_t qbytes(dtype t, int64_t n) { return (size_t)(n / dtype_block_size(t)) * dtype_block_bytes(t); }

/* The bound quant.h states for |x - dq(q(x))| at each of n values (n a multiple of 256). */
static void error_bound(dtype t, const float *x, int64_t n, double *bound) {
    if (t == DT_Q8_0 || t == DT_Q4_0) {
        for (int64_t b = 0; b < n; b += 32) {
            double amax = 0;
            for (int i = 0; i < 32; i++) amax = fmax(amax, fabs(x[b + i]));
            double e = t == DT_Q8_0 ? amax / 127 * (0.5 + 127 * H) : amax / 8 * (1 + 8 * H);
            for (int i = 0; i < 32; i++) bound[b + i] = e;
        }
    } else if (t == DT_Q4_K) {
        for (int64_t b = 0; b < n; b += 256) {
            double range[8], max_range = 0, max_min = 0;
            for (int j = 0; j < 8; j++) {
                double lo = 0, hi = -INFINITY;
                for (int i = 0; i < 32; i++) lo = fmin(lo, x[b + 32 * j + i]), hi = fmax(hi, x[b + 32 * j + i]);
                range[j] = hi - lo;
                max_range = fmax(max_range, range[j]);
                max_min = fmax(max_min, -lo);
            }
            const double d = max_range / 15 / 62 * (1 + H), dmin = max_min / 63 * (1 + H);
            for (int j = 0; j < 8; j++)
                for (int i = 0; i < 32; i++) bound[b + 32 * j + i] = (range[j] / 15 + d) / 2 + dmin / 2;
        }
    } else {
        for (int64_t b = 0; b < n; b += 256) {
            double amax[16], max_scale = 0;
            for (int j = 0; j < 16; j++) {
                amax[j] = 0;
                for (int i = 0; i < 16; i++) amax[j] = fmax(amax[j], fabs(x[b + 16 * j + i]));
                max_scale = fmax(max_scale, amax[j] / 31);
            }
            const double d = max_scale / 126 * (1 + H);
            for (int j = 0; j < 16; j++)
                for (int i = 0; i < 16; i++) bound[b + 16 * j + i] = (amax[j] / 31 + d) / 2;
        }
    }
}

/* Hand-made blocks decode as ggml-quants.c's dequantize_row_* say (values worked out by hand). */
static void test_layouts(void) {
    float y[256];
    block_q8_0 q8 = {.d = f32_to_f16(0.5f)};
    q8.qs[0] = -128, q8.qs[31] = 7;
    dequantize_row(DT_Q8_0, &q8, y, 32);
    CHECK(y[0] == -64.0f && y[31] == 3.5f && y[1] == 0.0f, "Q8_0: %g %g", y[0], y[31]);

    block_q4_0 q4 = {.d = f32_to_f16(2.0f)};
    q4.qs[0] = 0x1F; /* low nibble 15 -> value 0, high nibble 1 -> value 16 */
    memset(q4.qs + 1, 0x88, 15);
    dequantize_row(DT_Q4_0, &q4, y, 32);
    CHECK(y[0] == 14.0f && y[16] == -14.0f && y[1] == 0.0f && y[17] == 0.0f, "Q4_0: %g %g", y[0], y[16]);

    /* Q4_K: sub-block 1 (high nibbles of qs[0..31]) has scale 3, min 2; sub-block 5 (high
     * nibbles of qs[64..95]) has scale 0x25 = 37 (low 4 bits in scales[9], top 2 in scales[1])
     * and min 0x13 = 19 (low 4 in scales[9] >> 4, top 2 in scales[5]). */
    block_q4_k qk;
    memset(&qk, 0, sizeof qk);
    qk.d = f32_to_f16(1.0f), qk.dmin = f32_to_f16(0.5f);
    qk.scales[1] = 3 | (0x25 >> 4) << 6;
    qk.scales[5] = 2 | (0x13 >> 4) << 6;
    qk.scales[9] = (0x25 & 15) | (0x13 & 15) << 4;
    qk.qs[0] = 0x40; /* value 32 (sub-block 1, first) = 4 */
    qk.qs[64] = 0x90; /* value 160 (sub-block 5, first) = 9 */
    dequantize_row(DT_Q4_K, &qk, y, 256);
    CHECK(y[32] == 3 * 4 - 0.5f * 2 && y[33] == -1.0f, "Q4_K sub-block 1: %g %g", y[32], y[33]);
    CHECK(y[160] == 37 * 9 - 0.5f * 19 && y[0] == 0.0f, "Q4_K sub-block 5: %g", y[160]);

    /* Q6_K: ql[0] = 0x21, qh[0] = 0b11100100: value 0 = (1 | 0 << 4) - 32, value 32 =
     * (0 | 1 << 4) - 32, value 64 = (2 | 2 << 4) - 32, value 96 = (0 | 3 << 4) - 32. */
    block_q6_k q6;
    memset(&q6, 0, sizeof q6);
    q6.d = f32_to_f16(0.25f);
    for (int j = 0; j < 16; j++) q6.scales[j] = (int8_t)(j + 1);
    q6.ql[0] = 0x21, q6.qh[0] = 0xE4;
    dequantize_row(DT_Q6_K, &q6, y, 256);
    CHECK(y[0] == 0.25f * 1 * -31 && y[32] == 0.25f * 3 * -16 && y[64] == 0.25f * 5 * 2 && y[96] == 0.25f * 7 * 16,
          "Q6_K: %g %g %g %g", y[0], y[32], y[64], y[96]);
    CHECK(y[128] == 0.25f * 9 * -32, "Q6_K second half: %g", y[128]);
}

/* quantize -> dequantize stays within each value's bound, on weight-like rows, rows of one
 * sign, constant rows and zeros; and the bound is not vacuous (mean error well below it). */
static void test_round_trip(void) {
    enum { N = 4096 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    double *bound = malloc(N * sizeof *bound);
    void *q = malloc(qbytes(DT_Q8_0, N));
    rng r;
    rng_seed(&r, 7);
    for (int kind = 0; kind < 4; kind++) {
        fill(&r, x, N, 0.02);
        if (kind == 1)
            for (int i = 0; i < N; i++) x[i] = -fabsf(x[i]) - 0.01f; /* all negative: Q4_K's min */
        if (kind == 2)
            for (int i = 0; i < N; i++) x[i] = 0.125f;
        if (kind == 3) memset(x, 0, N * sizeof *x);
        for (int k = 0; k < NQ; k++) {
            dtype t = QTYPES[k];
            quantize_row(t, x, q, N);
            dequantize_row(t, q, y, N);
            error_bound(t, x, N, bound);
            int bad = -1;
            double sum_err = 0, sum_bound = 0;
            for (int i = 0; i < N; i++) {
                double e = fabs((double)x[i] - y[i]);
                if (e > bound[i] * (1 + 1e-5) + 1e-12 && bad < 0) bad = i;
                sum_err += e, sum_bound += bound[i];
            }
            CHECK(bad < 0, "%s kind %d: |x - dq(q(x))| at %d = %g > bound %g", dtype_name(t), kind, bad,
                  bad < 0 ? 0 : fabs(x[bad] - y[bad]), bad < 0 ? 0 : bound[bad]);
            if (kind == 0) CHECK(sum_err < 0.7 * sum_bound, "%s: mean error %g vs bound %g", dtype_name(t), sum_err / N, sum_bound / N);
            if (kind >= 2) CHECK(max_abs_diff(x, y, N) <= 1e-3f * 0.125f, "%s kind %d: exact-ish", dtype_name(t), kind);
        }
    }
    free(x), free(y), free(bound), free(q);
}

/* Y = X W^T with quantized W against the f64 reference:
 *   |W_dq x - W x| <= sum_i |x_i| bound_i             (the weight's quantization, per row)
 *   |y - W_dq x|   <= sum_i |W_dq_i| amax_b(x) / 254  (the activation's int8 quantization)
 * plus 1e-5 of sum |W_dq_i x_i| for f32 sums. Through matmul_f32 (gemv for M <= 8, dequantized
 * tiles + sgemm for larger M) and matmul_f32_group. */
static void test_gemv_vs_f32(void) {
    enum { N = 96, K = 768, MMAX = 20 };
    float *W = malloc(N * K * sizeof *W), *Wd = malloc(N * K * sizeof *Wd), *X = malloc(MMAX * K * sizeof *X);
    float *Y = malloc(MMAX * N * sizeof *Y), *Y2 = malloc(MMAX * N * sizeof *Y2);
    double *bound = malloc(N * K * sizeof *bound);
    void *q = malloc(qbytes(DT_Q8_0, N * K));
    size_t sn = matmul_scratch_floats(K);
    float *scratch = malloc(sn * sizeof *scratch);
    rng r;
    rng_seed(&r, 11);
    fill(&r, W, N * K, 0.05);
    fill(&r, X, MMAX * K, 1.0);
    for (int k = 0; k < NQ; k++) {
        dtype t = QTYPES[k];
        quantize_row(t, W, q, N * K);
        dequantize_row(t, q, Wd, N * K);
        error_bound(t, W, N * K, bound);
        const int64_t shape[2] = {N, K};
        tensor wt = tensor_view(t, q, 2, shape);
        const int ab = (t == DT_Q4_K || t == DT_Q6_K) ? 256 : 32;
        const int Ms[] = {1, 3, 8, MMAX};
        for (int mi = 0; mi < 4; mi++) {
            const int M = Ms[mi];
            matmul_f32(Y, X, M, &wt, NULL, scratch, sn);
            if (M == 3) matmul_f32_group(2, (float *const[]){Y2, Y2 + M * N}, X, M, (const tensor *const[]){&wt, &wt},
                                         (const tensor *const[]){NULL, NULL}, scratch, sn);
            int bad = 0;
            for (int m = 0; m < M && !bad; m++) {
                const float *x = X + m * K;
                for (int n = 0; n < N && !bad; n++) {
                    double ref = 0, deq = 0, wbound = 0, abound = 0, mag = 0;
                    for (int b = 0; b < K; b += ab) {
                        double amax = 0;
                        for (int i = b; i < b + ab; i++) amax = fmax(amax, fabs(x[i]));
                        for (int i = b; i < b + ab; i++) {
                            const double wd = Wd[n * K + i];
                            ref += (double)W[n * K + i] * x[i];
                            deq += wd * x[i];
                            wbound += fabs(x[i]) * bound[n * K + i];
                            abound += fabs(wd) * amax / 254;
                            mag += fabs(wd * x[i]);
                        }
                    }
                    /* M > 8 runs sgemm on dequantized rows: no activation quantization. */
                    if (M > MATMUL_GEMV_MAX_M) abound = 0;
                    const double y = Y[m * N + n];
                    if (fabs(deq - ref) > wbound * (1 + 1e-6) + 1e-9 || fabs(y - deq) > abound + 1e-5 * mag) {
                        bad = 1;
                        CHECK(0, "%s M=%d row %d: ref %g, W_dq x %g (bound %g), y %g (bound %g)", dtype_name(t), M, n,
                              ref, deq, wbound, y, abound + 1e-5 * mag);
                    }
                    if (M == 3 && (Y2[m * N + n] != Y[m * N + n] || Y2[M * N + m * N + n] != Y[m * N + n])) {
                        bad = 1;
                        CHECK(0, "%s: matmul_f32_group differs from matmul_f32 at %d,%d", dtype_name(t), m, n);
                    }
                }
            }
        }
        /* without scratch (portable path) the row is dequantized in f32: no activation error */
        matmul_f32_portable(Y, X, 2, &wt, NULL);
        double worst = 0;
        for (int m = 0; m < 2; m++)
            for (int n = 0; n < N; n++) {
                double deq = 0, mag = 0;
                for (int i = 0; i < K; i++) deq += (double)Wd[n * K + i] * X[m * K + i], mag += fabs(Wd[n * K + i] * X[m * K + i]);
                worst = fmax(worst, fabs(Y[m * N + n] - deq) / mag);
            }
        CHECK(worst < 1e-5, "%s portable (dequantizing) gemv: relative error %g", dtype_name(t), worst);
    }
    free(W), free(Wd), free(X), free(Y), free(Y2), free(bound), free(q), free(scratch);
}

/* Every SIMD kernel computes the same integer sums as the portable one: equal up to f32
 * summation order (1e-6 of sum |terms|). */
static void test_dispatch_vs_portable(void) {
    if (qdot_isa_best() == QDOT_PORTABLE) {
        test_skip("this CPU has no AVX2: only the portable kernels run");
        return;
    }
    enum { K = 1024 };
    float *w = malloc(K * sizeof *w), *x = malloc(K * sizeof *x), *wd = malloc(K * sizeof *wd);
    void *q = malloc(qbytes(DT_Q8_0, K));
    void *act = malloc(qdot_act_bytes(DT_Q4_K, K) + qdot_act_bytes(DT_Q8_0, K));
    rng r;
    rng_seed(&r, 3);
    for (int trial = 0; trial < 20; trial++) {
        fill(&r, w, K, 0.1);
        fill(&r, x, K, 2.0);
        for (int k = 0; k < NQ; k++) {
            dtype t = QTYPES[k];
            quantize_row(t, w, q, K);
            dequantize_row(t, q, wd, K);
            qdot_quantize_act(t, x, act, K);
            for (int i = 0; i < 5; i++) {
                /* also odd block counts (the 2-block unrolled loops' tails) */
                const int64_t n = (i == 0 ? K : K - 256 * i);
                if (n <= 0) continue;
                double mag = 0;
                for (int j = 0; j < n; j++) mag += fabs((double)wd[j] * x[j]);
                float a = qdot_row(t, q, act, n, QDOT_PORTABLE), b = qdot_row(t, q, act, n, QDOT_AVX2);
                if (!CHECK(fabs((double)a - b) <= 1e-6 * mag, "%s n=%lld: portable %.9g, AVX2 %.9g", dtype_name(t),
                           (long long)n, a, b))
                    goto out;
            }
            if (t == DT_Q8_0 || t == DT_Q4_0) { /* 32-blocks: a count that is odd */
                float a = qdot_row(t, q, act, 96, QDOT_PORTABLE), b = qdot_row(t, q, act, 96, QDOT_AVX2);
                CHECK(fabsf(a - b) <= 1e-5f * (fabsf(a) + 1), "%s 3 blocks: %g vs %g", dtype_name(t), a, b);
            }
        }
    }
out:
    free(w), free(x), free(wd), free(q), free(act);
}

/* Logits of the last of T tokens and the image features of one random tile. */
typedef struct model_out {
    float *logits, *features;
    size_t n_features;
    int vocab;
} model_out;

static bool run_model(const char *dir, model_out *o) {
    vlm_model vm;
    vlmc_error err = {0};
    if (!CHECK(vlm_load(dir, &vm, &err) == VLMC_OK, "%s", err.message)) return false;
    enum { T = 40 };
    int32_t ids[T];
    for (int i = 0; i < T; i++) ids[i] = (i * 37 + 5) % 900;
    llama_ctx c;
    o->vocab = vm.lm.vocab;
    o->logits = malloc((size_t)vm.lm.vocab * sizeof *o->logits);
    bool ok = CHECK(llama_ctx_init(&c, &vm.lm, 1, 64, 0, &err) == VLMC_OK, "%s", err.message);
    /* prompt through sgemm (T > 8 rows), then two tokens through the GEMV kernels */
    ok = ok && CHECK(llama_forward(&c, &(llama_input){.n_tokens = T, .tokens = ids}, &(llama_output){.logits = NULL}, &err) ==
                         VLMC_OK, "%s", err.message);
    for (int i = 0; ok && i < 2; i++)
        ok = CHECK(llama_forward(&c, &(llama_input){.n_tokens = 1, .tokens = &ids[i]},
                                 &(llama_output){.logits = o->logits, .logits_last_only = true}, &err) == VLMC_OK,
                   "%s", err.message);
    if (ok) llama_ctx_free(&c);
    const int S = vm.cfg.vision.image_size, tiles[1] = {1};
    const int32_t sizes[2] = {S, S};
    float *px = malloc((size_t)3 * S * S * sizeof *px);
    for (int i = 0; i < 3 * S * S; i++) px[i] = (float)((i * 7919) % 200) / 100.0f - 1.0f;
    vlm_images im = {.n_images = 1, .pixels = px, .n_tiles = 1, .height = S, .width = S, .tiles = tiles, .image_sizes = sizes};
    ok = ok && CHECK(vm.fam->features_len(&vm, &im, &o->n_features, &err) == VLMC_OK, "%s", err.message);
    o->n_features *= (size_t)vm.cfg.text.hidden_size;
    o->features = malloc(o->n_features * sizeof *o->features);
    vlm_vision_out vo = {.features = o->features};
    ok = ok && CHECK(vm.fam->encode(&vm, &im, &vo, &err) == VLMC_OK, "%s", err.message);
    free(px);
    vlm_free(&vm);
    return ok;
}

/* A random tiny LLaVA and Idefics3 (vlmc init) quantized by vlmc quantize and loaded back from
 * model.gguf: "f32" gives bit-identical logits and image features (the GGUF path changes nothing);
 * the block types stay close to the f32 model with errors ordered by bits per weight. Hidden 256 so
 * that the decoder's K-quant rows are whole super-blocks (the 64-wide vision rows fall back).
 * Bounds: vlmc init's weights are uniform in [-a, a] (rms a/sqrt(3)); a format of step s has an rms
 * error s/sqrt(12), relative to the weights' rms: Q8_0 (s = a/127) 1/254, Q6_K (s ~ a/31) 1/62, Q4_0
 * (s ~ a/8) 1/16, Q4_K (s ~ 2a/15) 1/15; the int8 activations add 1/254. The logits' error is a sum
 * of such independent errors, with a relative spread of the same size; the largest of V logits is
 * ~3-4 spreads out, so the bound on max|d logits| / max|logits| is 5 times the relative rms error. */
static void test_quantized_models(void) {
    const char *arch[] = {"tiny-llava", "tiny-idefics3"};
    const char *sets[] = {"text_config.hidden_size=256", "text_config.intermediate_size=512", "text_config.head_dim=64",
                          "vision_config.hidden_size=64", "vision_config.intermediate_size=128"};
    const char *types[] = {"f32", "q8_0", "q6_k", "q4_k", "q4_0"};
    const double act = 1.0 / 254, bound[] = {0, 5 * (1.0 / 254 + act), 5 * (1.0 / 62 + act), 5 * (1.0 / 15 + act),
                                             5 * (1.0 / 16 + act)};
    for (int a = 0; a < 2; a++) {
        char dir[512], qdir[512];
        snprintf(dir, sizeof dir, "%s/%s", test_tmpdir(), arch[a]);
        vlmc_error err = {0};
        vlmc_init_params p = {.arch = arch[a], .sets = sets, .n_sets = 5, .seed = 5};
        if (!CHECK(vlmc_init_random(&p, dir, &err) == VLMC_OK, "init: %s", err.message)) return;
        model_out ref = {0};
        if (!run_model(dir, &ref)) return;
        const float lmax = max_abs(ref.logits, (size_t)ref.vocab), fmax_ = max_abs(ref.features, ref.n_features);
        CHECK(lmax > 0 && fmax_ > 0, "%s: non-zero outputs", arch[a]);
        double prev = -1;
        for (int t = 0; t < 5; t++) {
            snprintf(qdir, sizeof qdir, "%s/%s-%s", test_tmpdir(), arch[a], types[t]);
            if (!CHECK(vlmc_quantize(dir, types[t], qdir, &err) == VLMC_OK, "quantize %s: %s", types[t], err.message)) continue;
            model_out q = {0};
            if (run_model(qdir, &q)) {
                const double el = max_abs_diff(q.logits, ref.logits, (size_t)ref.vocab) / lmax;
                const double ef = max_abs_diff(q.features, ref.features, ref.n_features) / fmax_;
                if (t == 0) CHECK(el == 0 && ef == 0, "%s f32 through GGUF: logits %g, features %g", arch[a], el, ef);
                else {
                    CHECK(el > 0 && el <= bound[t], "%s %s: logits max|d|/max %g (bound %g)", arch[a], types[t], el, bound[t]);
                    CHECK(ef > 0 && ef <= bound[t], "%s %s: image features max|d|/max %g (bound %g)", arch[a], types[t], ef,
                          bound[t]);
                }
                if (t == 1 || t == 4) { /* 8 bits beat 4 bits */
                    if (t == 4) CHECK(el > prev, "%s: q4_0 error %g should exceed q8_0's %g", arch[a], el, prev);
                    prev = el;
                }
                printf("  %s %s: logits %.2e, features %.2e\n", arch[a], types[t], el, ef);
            }
            free(q.logits), free(q.features);
        }
        free(ref.logits), free(ref.features);
    }
}

/* vlmc convert's GGUF pair (llama.cpp's names, q/k rows permuted, LLaVA's tower cut at the feature layer)
 * loads back to exactly the HF folder's logits and image features, for f32 and for a Q8_0 folder. */
static void test_gguf_pair(void) {
    const char *arch[] = {"tiny-llava", "tiny-idefics3"};
    const char *sets[] = {"text_config.hidden_size=256", "text_config.intermediate_size=512", "text_config.head_dim=64",
                          "vision_config.hidden_size=64", "vision_config.intermediate_size=128"};
    for (int a = 0; a < 2; a++)
        for (int q = 0; q < 2; q++) {
            char dir[512], qdir[512], gdir[512];
            snprintf(dir, sizeof dir, "%s/pair-%s", test_tmpdir(), arch[a]);
            snprintf(qdir, sizeof qdir, "%s/pair-%s-q8_0", test_tmpdir(), arch[a]);
            snprintf(gdir, sizeof gdir, "%s/pair-%s-gguf%d", test_tmpdir(), arch[a], q);
            vlmc_error err = {0};
            vlmc_init_params p = {.arch = arch[a], .sets = sets, .n_sets = 5, .seed = 9};
            if (!CHECK(vlmc_init_random(&p, dir, &err) == VLMC_OK, "init: %s", err.message)) return;
            if (q && !CHECK(vlmc_quantize(dir, "q8_0", qdir, &err) == VLMC_OK, "quantize: %s", err.message)) return;
            const char *src = q ? qdir : dir;
            if (!CHECK(vlmc_convert(src, "gguf", gdir, &err) == VLMC_OK, "convert %s: %s", src, err.message)) return;
            model_out ref = {0}, got = {0};
            if (run_model(src, &ref) && run_model(gdir, &got)) {
                CHECK(max_abs_diff(ref.logits, got.logits, (size_t)ref.vocab) == 0, "%s%s: logits differ by %g", arch[a],
                      q ? " q8_0" : "", max_abs_diff(ref.logits, got.logits, (size_t)ref.vocab));
                CHECK(ref.n_features == got.n_features && max_abs_diff(ref.features, got.features, ref.n_features) == 0,
                      "%s%s: image features differ", arch[a], q ? " q8_0" : "");
            }
            /* llama.cpp's row order inside a head: row 2j + t of attn_q is row t * head_dim/2 + j of q_proj */
            if (!q) {
                char hf_path[600], g_path[600];
                snprintf(hf_path, sizeof hf_path, "%s/model.safetensors", dir);
                snprintf(g_path, sizeof g_path, "%s/model.gguf", gdir);
                safetensors *st = NULL;
                gguf *g = NULL;
                if (CHECK(safetensors_open(hf_path, &st, &err) == VLMC_OK && gguf_open(g_path, &g, &err) == VLMC_OK, "%s",
                          err.message)) {
                    const st_entry *hq = safetensors_find(st, a ? "model.text_model.layers.0.self_attn.q_proj.weight"
                                                                : "language_model.model.layers.0.self_attn.q_proj.weight");
                    const gguf_tensor *gq = gguf_find_tensor(g, "blk.0.attn_q.weight");
                    const size_t rb = 256 * sizeof(float); /* rows of hidden_size 256, f32; head_dim 64 */
                    CHECK(hq && gq && !memcmp((const char *)gq->t.data + 1 * rb, (const char *)hq->t.data + 32 * rb, rb) &&
                              !memcmp((const char *)gq->t.data + 2 * rb, (const char *)hq->t.data + 1 * rb, rb),
                          "%s: attn_q rows are not in llama.cpp's order", arch[a]);
                }
                safetensors_close(st);
                gguf_close(g);
            }
            /* the text model file alone, its mmproj found beside it */
            char text_path[600];
            snprintf(text_path, sizeof text_path, "%s/model.gguf", gdir);
            model_out by_file = {0};
            if (!q && run_model(text_path, &by_file))
                CHECK(max_abs_diff(ref.logits, by_file.logits, (size_t)ref.vocab) == 0, "%s: model.gguf path", arch[a]);
            free(ref.logits), free(ref.features), free(got.logits), free(got.features), free(by_file.logits),
                free(by_file.features);
        }
}

int main(void) {
    tests_begin("quant");
    TEST_RUN(test_layouts);
    TEST_RUN(test_round_trip);
    TEST_RUN(test_gemv_vs_f32);
    TEST_RUN(test_dispatch_vs_portable);
    TEST_RUN(test_quantized_models);
    TEST_RUN(test_gguf_pair);
    return tests_end();
}
