/* See qdot.h. */
#include "kernels/qdot.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define VLMC_X86 1
#else
#define VLMC_X86 0
#endif

/* Activation blocks. */
typedef struct qact32 {
    float d;
    int8_t qs[32];
} qact32;

typedef struct qact256 {
    float d;
    int16_t bsums[16]; /* sum of qs[16 j .. 16 j + 15] */
    int8_t qs[256];
} qact256;

static int act_is_256(dtype wt) { return wt == DT_Q4_K || wt == DT_Q6_K; }

size_t qdot_act_bytes(dtype wt, int64_t k) {
    return act_is_256(wt) ? (size_t)(k / 256) * sizeof(qact256) : (size_t)(k / 32) * sizeof(qact32);
}

/* d = amax / 127, q = round-half-even(x / d) (what the AVX2 rounding instruction would do too). */
static float quantize_i8(const float *x, int8_t *q, int n) {
    float amax = 0.0f;
    for (int i = 0; i < n; i++) amax = fmaxf(amax, fabsf(x[i]));
    const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
    for (int i = 0; i < n; i++) q[i] = (int8_t)nearbyintf(x[i] * id);
    return d;
}

void qdot_quantize_act(dtype wt, const float *x, void *act, int64_t k) {
    if (act_is_256(wt)) {
        qact256 *a = act;
        for (int64_t b = 0; b < k / 256; b++, x += 256) {
            a[b].d = quantize_i8(x, a[b].qs, 256);
            for (int j = 0; j < 16; j++) {
                int s = 0;
                for (int i = 0; i < 16; i++) s += a[b].qs[16 * j + i];
                a[b].bsums[j] = (int16_t)s;
            }
        }
    } else {
        qact32 *a = act;
        for (int64_t b = 0; b < k / 32; b++, x += 32) a[b].d = quantize_i8(x, a[b].qs, 32);
    }
}

/* ---- portable kernels ---------------------------------------------------------------- */

static float dot_q8_0_portable(const block_q8_0 *w, const qact32 *a, int64_t nb) {
    float sum = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        int s = 0;
        for (int i = 0; i < 32; i++) s += w[b].qs[i] * a[b].qs[i];
        sum += f16_to_f32(w[b].d) * a[b].d * (float)s;
    }
    return sum;
}

static float dot_q4_0_portable(const block_q4_0 *w, const qact32 *a, int64_t nb) {
    float sum = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        int s = 0;
        for (int i = 0; i < 16; i++)
            s += ((w[b].qs[i] & 15) - 8) * a[b].qs[i] + ((w[b].qs[i] >> 4) - 8) * a[b].qs[i + 16];
        sum += f16_to_f32(w[b].d) * a[b].d * (float)s;
    }
    return sum;
}

/* Sum over sub-blocks of m_j * (sum of the activation's sub-block j): the mins' share. */
static int q4k_min_sum(const int *m, const qact256 *a) {
    int s = 0;
    for (int j = 0; j < 8; j++) s += m[j] * (a->bsums[2 * j] + a->bsums[2 * j + 1]);
    return s;
}

static float dot_q4_k_portable(const block_q4_k *w, const qact256 *a, int64_t nb) {
    float sum = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        int sc[8], m[8], s = 0;
        for (int j = 0; j < 8; j++) quant_q4k_scale_min(w[b].scales, j, &sc[j], &m[j]);
        for (int c = 0; c < 4; c++) {
            const uint8_t *q = w[b].qs + 32 * c;
            const int8_t *x = a[b].qs + 64 * c;
            int lo = 0, hi = 0;
            for (int l = 0; l < 32; l++) {
                lo += (q[l] & 15) * x[l];
                hi += (q[l] >> 4) * x[32 + l];
            }
            s += sc[2 * c] * lo + sc[2 * c + 1] * hi;
        }
        sum += a[b].d * (f16_to_f32(w[b].d) * (float)s - f16_to_f32(w[b].dmin) * (float)q4k_min_sum(m, &a[b]));
    }
    return sum;
}

/* The -32 offset of every Q6_K value: 32 * sum_j scale_j * (sum of the activation's 16-block j). */
static int q6k_offset_sum(const int8_t *sc, const qact256 *a) {
    int s = 0;
    for (int j = 0; j < 16; j++) s += sc[j] * a->bsums[j];
    return 32 * s;
}

static float dot_q6_k_portable(const block_q6_k *w, const qact256 *a, int64_t nb) {
    float sum = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        int s = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[b].ql + 64 * h, *qh = w[b].qh + 32 * h;
            const int8_t *sc = w[b].scales + 8 * h, *x = a[b].qs + 128 * h;
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                s += sc[is] * ((ql[l] & 15) | (qh[l] & 3) << 4) * x[l];
                s += sc[is + 2] * ((ql[l + 32] & 15) | (qh[l] >> 2 & 3) << 4) * x[l + 32];
                s += sc[is + 4] * ((ql[l] >> 4) | (qh[l] >> 4 & 3) << 4) * x[l + 64];
                s += sc[is + 6] * ((ql[l + 32] >> 4) | (qh[l] >> 6 & 3) << 4) * x[l + 96];
            }
        }
        sum += f16_to_f32(w[b].d) * a[b].d * (float)(s - q6k_offset_sum(w[b].scales, &a[b]));
    }
    return sum;
}

/* ---- AVX2 kernels ---------------------------------------------------------------------- */
#if VLMC_X86
#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 static inline float half_to_f32(uint16_t h) { return _cvtsh_ss(h); }

/* Eight int32 sums of 4 products w*a each, for signed bytes: maddubs wants an unsigned
 * operand, so |w| times a with w's sign (|w| <= 128, |a| <= 127: no int16 saturation). */
AVX2 static inline __m256i mul_sum_i8(__m256i w, __m256i a) {
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

AVX2 static float dot_q8_0_avx2(const block_q8_0 *w, const qact32 *a, int64_t nb) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        __m256i p0 = mul_sum_i8(_mm256_loadu_si256((const __m256i *)w[b].qs), _mm256_loadu_si256((const __m256i *)a[b].qs));
        __m256i p1 = mul_sum_i8(_mm256_loadu_si256((const __m256i *)w[b + 1].qs),
                                _mm256_loadu_si256((const __m256i *)a[b + 1].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half_to_f32(w[b].d) * a[b].d), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(half_to_f32(w[b + 1].d) * a[b + 1].d), _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; b < nb; b++) {
        __m256i p = mul_sum_i8(_mm256_loadu_si256((const __m256i *)w[b].qs), _mm256_loadu_si256((const __m256i *)a[b].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half_to_f32(w[b].d) * a[b].d), _mm256_cvtepi32_ps(p), acc0);
    }
    return hsum_ps(_mm256_add_ps(acc0, acc1));
}

/* 16 bytes of nibbles -> 32 bytes: low nibbles (values 0..15) then high nibbles (16..31). */
AVX2 static inline __m256i unpack_nibbles16(const uint8_t *qs) {
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
    return _mm256_and_si256(both, _mm256_set1_epi8(15));
}

AVX2 static float dot_q4_0_avx2(const block_q4_0 *w, const qact32 *a, int64_t nb) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    const __m256i eight = _mm256_set1_epi8(8);
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        __m256i w0 = _mm256_sub_epi8(unpack_nibbles16(w[b].qs), eight);
        __m256i w1 = _mm256_sub_epi8(unpack_nibbles16(w[b + 1].qs), eight);
        __m256i p0 = mul_sum_i8(w0, _mm256_loadu_si256((const __m256i *)a[b].qs));
        __m256i p1 = mul_sum_i8(w1, _mm256_loadu_si256((const __m256i *)a[b + 1].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half_to_f32(w[b].d) * a[b].d), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(half_to_f32(w[b + 1].d) * a[b + 1].d), _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; b < nb; b++) {
        __m256i w0 = _mm256_sub_epi8(unpack_nibbles16(w[b].qs), eight);
        __m256i p = mul_sum_i8(w0, _mm256_loadu_si256((const __m256i *)a[b].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half_to_f32(w[b].d) * a[b].d), _mm256_cvtepi32_ps(p), acc0);
    }
    return hsum_ps(_mm256_add_ps(acc0, acc1));
}

/* int16 lanes 0-7 = lo, 8-15 = hi (for madd with per-16-value scales). */
AVX2 static inline __m256i two_scales(int lo, int hi) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16((short)lo)), _mm_set1_epi16((short)hi), 1);
}

AVX2 static float dot_q4_k_avx2(const block_q4_k *w, const qact256 *a, int64_t nb) {
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    const __m256i low4 = _mm256_set1_epi8(15);
    for (int64_t b = 0; b < nb; b++) {
        int sc[8], m[8];
        for (int j = 0; j < 8; j++) quant_q4k_scale_min(w[b].scales, j, &sc[j], &m[j]);
        __m256i s = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(w[b].qs + 32 * c));
            __m256i lo = _mm256_and_si256(q, low4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
            __m256i plo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(a[b].qs + 64 * c)));
            __m256i phi = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(a[b].qs + 64 * c + 32)));
            s = _mm256_add_epi32(s, _mm256_madd_epi16(plo, _mm256_set1_epi16((short)sc[2 * c])));
            s = _mm256_add_epi32(s, _mm256_madd_epi16(phi, _mm256_set1_epi16((short)sc[2 * c + 1])));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(half_to_f32(w[b].d) * a[b].d), _mm256_cvtepi32_ps(s), acc);
        mins += half_to_f32(w[b].dmin) * a[b].d * (float)q4k_min_sum(m, &a[b]);
    }
    return hsum_ps(acc) - mins;
}

AVX2 static float dot_q6_k_avx2(const block_q6_k *w, const qact256 *a, int64_t nb) {
    __m256 acc = _mm256_setzero_ps();
    float offsets = 0.0f;
    const __m256i low4 = _mm256_set1_epi8(15);
    for (int64_t b = 0; b < nb; b++) {
        __m256i s = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[b].ql + 64 * h;
            const int8_t *sc = w[b].scales + 8 * h, *x = a[b].qs + 128 * h;
            __m256i ql0 = _mm256_loadu_si256((const __m256i *)ql), ql1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(w[b].qh + 32 * h));
            /* the four 32-value groups of this half, 6-bit values 0..63 */
            __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(3)), 4)),
                _mm256_or_si256(_mm256_and_si256(ql1, low4), _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(12)), 2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), _mm256_and_si256(qh, _mm256_set1_epi8(48))),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                                _mm256_srli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8((char)192)), 2)),
            };
            for (int g = 0; g < 4; g++) {
                __m256i p = _mm256_maddubs_epi16(q[g], _mm256_loadu_si256((const __m256i *)(x + 32 * g)));
                s = _mm256_add_epi32(s, _mm256_madd_epi16(p, two_scales(sc[2 * g], sc[2 * g + 1])));
            }
        }
        const float d = half_to_f32(w[b].d) * a[b].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(s), acc);
        offsets += d * (float)q6k_offset_sum(w[b].scales, &a[b]);
    }
    return hsum_ps(acc) - offsets;
}

qdot_isa qdot_isa_best(void) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? QDOT_AVX2 : QDOT_PORTABLE;
}
#else
qdot_isa qdot_isa_best(void) { return QDOT_PORTABLE; }
#endif

float qdot_row(dtype wt, const void *wrow, const void *act, int64_t k, qdot_isa isa) {
#if VLMC_X86
    if (isa == QDOT_AVX2) {
        switch (wt) {
        case DT_Q8_0: return dot_q8_0_avx2(wrow, act, k / 32);
        case DT_Q4_0: return dot_q4_0_avx2(wrow, act, k / 32);
        case DT_Q4_K: return dot_q4_k_avx2(wrow, act, k / 256);
        case DT_Q6_K: return dot_q6_k_avx2(wrow, act, k / 256);
        default: return 0.0f;
        }
    }
#endif
    (void)isa;
    switch (wt) {
    case DT_Q8_0: return dot_q8_0_portable(wrow, act, k / 32);
    case DT_Q4_0: return dot_q4_0_portable(wrow, act, k / 32);
    case DT_Q4_K: return dot_q4_k_portable(wrow, act, k / 256);
    case DT_Q6_K: return dot_q6_k_portable(wrow, act, k / 256);
    default: return 0.0f;
    }
}
