/* See matmul.h. Layout: W rows are contiguous (K values), so a matrix-vector
 * product is N independent dot products, split across OpenMP threads by rows. */
#include "kernels/matmul.h"

#include <stdbool.h>
#include <string.h>

#include <cblas.h>

#include "core/quant.h"
#include "kernels/qdot.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define VLMC_X86 1
#else
#define VLMC_X86 0
#endif

/* ---- portable kernels ---------------------------------------------------------- */

static float dot_f32_portable(const float *a, const float *b, int64_t n) {
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += a[i + j] * b[i + j];
    float r = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
    for (; i < n; i++) r += a[i] * b[i];
    return r;
}

static void row_to_f32_portable(float *dst, const void *src, dtype t, int64_t n) {
    const uint16_t *h = src;
    if (t == DT_F32) memcpy(dst, src, (size_t)n * sizeof(float));
    else if (t == DT_BF16)
        for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(h[i]);
    else
        for (int64_t i = 0; i < n; i++) dst[i] = f16_to_f32(h[i]);
}

/* ---- AVX2 + FMA + F16C kernels ---------------------------------------------- */
#if VLMC_X86
#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

AVX2 static inline __m256 load8(const void *p, dtype t, int64_t i) {
    if (t == DT_F32) return _mm256_loadu_ps((const float *)p + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + i));
    if (t == DT_BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

static inline float load1(const void *p, dtype t, int64_t i) {
    if (t == DT_F32) return ((const float *)p)[i];
    if (t == DT_BF16) return bf16_to_f32(((const uint16_t *)p)[i]);
    return f16_to_f32(((const uint16_t *)p)[i]);
}

/* dot(x[f32], w[t]) with four independent accumulators; one loop per storage type so
 * that the inner loop has no branch. */
#define DOT_AVX2(NAME, T, LOAD8, LOAD1)                                                       \
    AVX2 static float NAME(const float *x, const T *w, int64_t n) {                           \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                           \
        int64_t i = 0;                                                                        \
        for (; i + 32 <= n; i += 32) {                                                        \
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), LOAD8(w + i), a0);                   \
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), LOAD8(w + i + 8), a1);           \
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), LOAD8(w + i + 16), a2);         \
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), LOAD8(w + i + 24), a3);         \
        }                                                                                     \
        for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), LOAD8(w + i), a0); \
        float r = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));       \
        for (; i < n; i++) r += x[i] * LOAD1(w[i]);                                           \
        return r;                                                                             \
    }
#define LD_F32(p) _mm256_loadu_ps(p)
#define LD_BF16(p) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))
#define LD_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define ID1(v) (v)
DOT_AVX2(dot_avx2_f32, float, LD_F32, ID1)
DOT_AVX2(dot_avx2_bf16, uint16_t, LD_BF16, bf16_to_f32)
DOT_AVX2(dot_avx2_f16, uint16_t, LD_F16, f16_to_f32)

AVX2 static float dot_avx2(const float *x, const void *w, dtype t, int64_t n) {
    if (t == DT_F32) return dot_avx2_f32(x, w, n);
    if (t == DT_BF16) return dot_avx2_bf16(x, w, n);
    return dot_avx2_f16(x, w, n);
}

AVX2 static void row_to_f32_avx2(float *dst, const void *src, dtype t, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load8(src, t, i));
    for (; i < n; i++) dst[i] = load1(src, t, i);
}

AVX2 static void axpy_avx2(float *y, float a, const float *x, int64_t n) {
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

/* Cheap (reads what libgcc's constructor found). Every x86 CPU with AVX2 also has F16C
 * (Intel since Haswell, AMD since Piledriver); clang's builtin cannot test "f16c" itself. */
static bool have_avx2(void) { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
#else
static bool have_avx2(void) { return false; }
#endif

/* ---- dispatch ------------------------------------------------------------------ */

static float dot_any(bool avx, const float *x, const void *w, dtype t, int64_t n) {
#if VLMC_X86
    if (avx) return dot_avx2(x, w, t, n);
#endif
    (void)avx;
    if (t == DT_F32) return dot_f32_portable(x, w, n);
    /* convert in small chunks on the stack */
    float buf[256], r = 0.0f;
    for (int64_t i = 0; i < n; i += 256) {
        int64_t c = n - i < 256 ? n - i : 256;
        size_t es = t == DT_F32 ? 4 : 2;
        row_to_f32_portable(buf, (const char *)w + (size_t)i * es, t, c);
        r += dot_f32_portable(x + i, buf, c);
    }
    return r;
}

static void row_to_f32(bool avx, float *dst, const void *src, dtype t, int64_t n) {
    if (dtype_is_quantized(t)) {
        dequantize_row(t, src, dst, n);
        return;
    }
#if VLMC_X86
    if (avx) { row_to_f32_avx2(dst, src, t, n); return; }
#endif
    (void)avx;
    row_to_f32_portable(dst, src, t, n);
}

float dot_f32(const float *a, const float *b, int64_t n) { return dot_any(have_avx2(), a, b, DT_F32, n); }

void axpy_f32(float *y, float a, const float *x, int64_t n) {
#if VLMC_X86
    if (have_avx2()) { axpy_avx2(y, a, x, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

int matmul_dtype_ok(dtype t) { return t == DT_F32 || t == DT_F16 || t == DT_BF16 || dtype_is_quantized(t); }

/* A tile of up to 4 MiB of f32 weight rows, at least 16 rows. This is also always enough for
 * MATMUL_GEMV_MAX_M quantized activation rows (at most 292 bytes per 256 values). */
size_t matmul_scratch_floats(int64_t K) {
    size_t rows = ((size_t)1 << 20) / (size_t)(K > 0 ? K : 1);
    if (rows < 16) rows = 16;
    return rows * (size_t)K;
}

/* Bytes of one weight row of K values. */
static size_t row_bytes(dtype t, int64_t K) { return (size_t)(K / dtype_block_size(t)) * dtype_block_bytes(t); }

/* dot(x, quantized row) without quantizing x: the row is dequantized 256 values at a time
 * (a multiple of every block size) on the stack. For callers without scratch. */
static float dot_dequantized(bool avx, const float *x, const void *row, dtype t, int64_t K) {
    float buf[256], r = 0.0f;
    const size_t chunk_bytes = row_bytes(t, 256);
    for (int64_t i = 0; i < K; i += 256) {
        int64_t c = K - i < 256 ? K - i : 256;
        dequantize_row(t, (const char *)row + (size_t)(i / 256) * chunk_bytes, buf, c);
        r += dot_any(avx, x + i, buf, DT_F32, c);
    }
    return r;
}

/* The M input rows quantized for dot products with weights of type t, in scratch; NULL when t
 * is not quantized or scratch is too small (then quantized rows go through dot_dequantized). */
static const void *quantize_inputs(const float *X, int64_t M, dtype t, int64_t K, float *scratch, size_t scratch_n) {
    if (!dtype_is_quantized(t) || !scratch || (size_t)M * qdot_act_bytes(t, K) > scratch_n * sizeof(float)) return NULL;
    const size_t stride = qdot_act_bytes(t, K);
    for (int64_t m = 0; m < M; m++) qdot_quantize_act(t, X + m * K, (char *)scratch + (size_t)m * stride, K);
    return scratch;
}

/* Y[m * N + n] for m < M: weight row n of W against the M inputs (X in f32, or act: X
 * quantized by quantize_inputs). */
static void gemv_one_row(float *Y, int64_t N, const float *X, const void *act, int64_t M, const tensor *W, int64_t n,
                         bool avx) {
    const int64_t K = W->shape[1];
    const dtype t = W->type;
    const void *row = (const char *)W->data + (size_t)n * row_bytes(t, K);
    if (act) {
        const size_t stride = qdot_act_bytes(t, K);
        const qdot_isa isa = avx ? QDOT_AVX2 : QDOT_PORTABLE;
        for (int64_t m = 0; m < M; m++) Y[m * N + n] = qdot_row(t, row, (const char *)act + (size_t)m * stride, K, isa);
    } else if (dtype_is_quantized(t)) {
        for (int64_t m = 0; m < M; m++) Y[m * N + n] = dot_dequantized(avx, X + m * K, row, t, K);
    } else {
        for (int64_t m = 0; m < M; m++) Y[m * N + n] = dot_any(avx, X + m * K, row, t, K);
    }
}

/* Matrix-vector (M small): each thread takes a block of weight rows and, for every
 * row, computes its dot with each of the M inputs while the row is in cache. */
static void gemv_rows(float *Y, const float *X, int64_t M, const tensor *W, bool avx, float *scratch, size_t scratch_n) {
    const int64_t N = W->shape[0];
    const void *act = quantize_inputs(X, M, W->type, W->shape[1], scratch, scratch_n);
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) gemv_one_row(Y, N, X, act, M, W, n, avx);
}

static void add_bias(float *Y, int64_t M, int64_t N, const tensor *bias) {
    if (!bias || !bias->data) return;
    for (int64_t m = 0; m < M; m++) {
        float *y = Y + m * N;
        for (int64_t n = 0; n < N; n++) y[n] += tensor_get_f32(bias, n);
    }
}

void matmul_f32_group(int n, float *const *Y, const float *X, int64_t M, const tensor *const *W,
                      const tensor *const *bias, float *scratch, size_t scratch_n) {
    bool same_type = true;
    for (int i = 1; i < n; i++) same_type = same_type && W[i]->type == W[0]->type;
    if (M > MATMUL_GEMV_MAX_M || n > 4 || !same_type) {
        for (int i = 0; i < n; i++) matmul_f32(Y[i], X, M, W[i], bias[i], scratch, scratch_n);
        return;
    }
    if (M <= 0) return;
    const bool avx = have_avx2();
    int64_t start[5] = {0};
    for (int i = 0; i < n; i++) start[i + 1] = start[i] + W[i]->shape[0];
    const void *act = quantize_inputs(X, M, W[0]->type, W[0]->shape[1], scratch, scratch_n);
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < start[n]; r++) {
        int i = 0;
        while (r >= start[i + 1]) i++;
        gemv_one_row(Y[i], W[i]->shape[0], X, act, M, W[i], r - start[i], avx);
    }
    for (int i = 0; i < n; i++) add_bias(Y[i], M, W[i]->shape[0], bias[i]);
}

void matmul_f32_portable(float *Y, const float *X, int64_t M, const tensor *W, const tensor *bias) {
    gemv_rows(Y, X, M, W, false, NULL, 0);
    add_bias(Y, M, W->shape[0], bias);
}

void matmul_f32(float *Y, const float *X, int64_t M, const tensor *W, const tensor *bias, float *scratch,
                size_t scratch_n) {
    const int64_t N = W->shape[0], K = W->shape[1];
    const bool avx = have_avx2();
    if (M <= 0) return;
    if (M <= MATMUL_GEMV_MAX_M) {
        gemv_rows(Y, X, M, W, avx, scratch, scratch_n);
    } else if (W->type == DT_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1.0f, X, (int)K,
                    (const float *)W->data, (int)K, 0.0f, Y, (int)N);
    } else if (!scratch || scratch_n < (size_t)K) {
        gemv_rows(Y, X, M, W, avx, NULL, 0);
    } else {
        /* Convert a tile of rows to f32, then one sgemm per tile: Y[:, n0:n0+nt]. */
        const int64_t tile = (int64_t)(scratch_n / (size_t)K);
        const size_t rs = row_bytes(W->type, K);
        for (int64_t n0 = 0; n0 < N; n0 += tile) {
            int64_t nt = N - n0 < tile ? N - n0 : tile;
            const char *src = (const char *)W->data + (size_t)n0 * rs;
            #pragma omp parallel for schedule(static)
            for (int64_t r = 0; r < nt; r++) row_to_f32(avx, scratch + r * K, src + (size_t)r * rs, W->type, K);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)nt, (int)K, 1.0f, X, (int)K, scratch,
                        (int)K, 0.0f, Y + n0, (int)N);
        }
    }
    add_bias(Y, M, N, bias);
}
