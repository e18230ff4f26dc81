/* See matmul.h. Layout: W rows are contiguous (K values), so a matrix-vector
 * product is N independent dot products, split across OpenMP threads by rows. */
#include "kernels/matmul.h"

#include <stdbool.h>
#include <string.h>

#include <cblas.h>

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

/* dot(x[f32], w[t]) with four independent accumulators */
AVX2 static float dot_avx2(const float *x, const void *w, dtype t, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), load8(w, t, i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), load8(w, t, i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), load8(w, t, i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), load8(w, t, i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), load8(w, t, i), a0);
    float r = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) r += x[i] * load1(w, t, i);
    return r;
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

static bool have_avx2(void) {
    /* F16C through CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports does not know "f16c" */
    unsigned a, b, c, d;
    bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1u);
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
}
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

int matmul_dtype_ok(dtype t) { return t == DT_F32 || t == DT_F16 || t == DT_BF16; }

/* A tile of up to 4 MiB of f32 weight rows, at least one row. */
size_t matmul_scratch_floats(int64_t K) {
    size_t rows = ((size_t)1 << 20) / (size_t)(K > 0 ? K : 1);
    if (rows < 16) rows = 16;
    return rows * (size_t)K;
}

static size_t elem_size(dtype t) { return t == DT_F32 ? 4 : 2; }

/* Matrix-vector (M small): each thread takes a block of weight rows and, for every
 * row, computes its dot with each of the M inputs while the row is in cache. */
static void gemv_rows(float *Y, const float *X, int64_t M, const tensor *W, bool avx) {
    const int64_t N = W->shape[0], K = W->shape[1];
    const dtype t = W->type;
    const char *wd = W->data;
    const size_t rs = (size_t)K * elem_size(t);
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const void *row = wd + (size_t)n * rs;
        for (int64_t m = 0; m < M; m++) Y[m * N + n] = dot_any(avx, X + m * K, row, t, K);
    }
}

void matmul_f32(float *Y, const float *X, int64_t M, const tensor *W, const tensor *bias, float *scratch,
                size_t scratch_n) {
    const int64_t N = W->shape[0], K = W->shape[1];
    const bool avx = have_avx2();
    if (M <= 0) return;
    if (M <= MATMUL_GEMV_MAX_M) {
        gemv_rows(Y, X, M, W, avx);
    } else if (W->type == DT_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1.0f, X, (int)K,
                    (const float *)W->data, (int)K, 0.0f, Y, (int)N);
    } else if (!scratch || scratch_n < (size_t)K) {
        gemv_rows(Y, X, M, W, avx);
    } else {
        /* Convert a tile of rows to f32, then one sgemm per tile: Y[:, n0:n0+nt]. */
        const int64_t tile = (int64_t)(scratch_n / (size_t)K);
        const size_t rs = (size_t)K * elem_size(W->type);
        for (int64_t n0 = 0; n0 < N; n0 += tile) {
            int64_t nt = N - n0 < tile ? N - n0 : tile;
            const char *src = (const char *)W->data + (size_t)n0 * rs;
            #pragma omp parallel for schedule(static)
            for (int64_t r = 0; r < nt; r++) row_to_f32(avx, scratch + r * K, src + (size_t)r * rs, W->type, K);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)nt, (int)K, 1.0f, X, (int)K, scratch,
                        (int)K, 0.0f, Y + n0, (int)N);
        }
    }
    if (bias && bias->data) {
        for (int64_t m = 0; m < M; m++) {
            float *y = Y + m * N;
            for (int64_t n = 0; n < N; n++) y[n] += tensor_get_f32(bias, n);
        }
    }
}
