/* See quant.h: GGUF's block formats, quantization and dequantization (portable C). */
#include "core/quant.h"

#include <math.h>
#include <string.h>

bool dtype_is_quantized(dtype t) { return t == DT_Q8_0 || t == DT_Q4_0 || t == DT_Q4_K || t == DT_Q6_K; }

static float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

/* llama.cpp's quantize_row_q8_0_ref: d = amax / 127, q = round(x / d). */
static void quantize_q8_0(const float *x, block_q8_0 *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += QK8_0) {
        float amax = 0.0f;
        for (int i = 0; i < QK8_0; i++) amax = fmaxf(amax, fabsf(x[i]));
        const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        y[b].d = f32_to_f16(d);
        for (int i = 0; i < QK8_0; i++) y[b].qs[i] = (int8_t)roundf(x[i] * id);
    }
}

/* llama.cpp's quantize_row_q4_0_ref: the value of largest magnitude maps to -8, so
 * d = max / -8 keeps its sign; q = min(15, trunc(x / d + 8.5)). */
static void quantize_q4_0(const float *x, block_q4_0 *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += QK4_0) {
        float amax = 0.0f, max = 0.0f;
        for (int i = 0; i < QK4_0; i++)
            if (fabsf(x[i]) > amax) {
                amax = fabsf(x[i]);
                max = x[i];
            }
        const float d = max / -8.0f, id = d ? 1.0f / d : 0.0f;
        y[b].d = f32_to_f16(d);
        for (int i = 0; i < QK4_0 / 2; i++) {
            int q0 = (int8_t)(x[i] * id + 8.5f), q1 = (int8_t)(x[i + QK4_0 / 2] * id + 8.5f);
            q0 = q0 > 15 ? 15 : q0;
            q1 = q1 > 15 ? 15 : q1;
            y[b].qs[i] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

/* Q4_K: per sub-block of 32, [lo, hi] with lo = min(0, min x) is covered by 15 steps.
 * The super-block scale d is max_scale / 62 (rounded to f16), and each 6-bit scale is
 * rounded up (ceil(scale / d) <= 63), so a step is never smaller than needed and no
 * value is clamped; the mins (-lo) are rounded to nearest in units of dmin. */
static void quantize_q4_k(const float *x, block_q4_k *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += QK_K) {
        float scale[8], mn[8], max_scale = 0.0f, max_min = 0.0f;
        for (int j = 0; j < 8; j++) {
            float lo = 0.0f, hi = -INFINITY;
            for (int i = 0; i < 32; i++) {
                lo = fminf(lo, x[32 * j + i]);
                hi = fmaxf(hi, x[32 * j + i]);
            }
            scale[j] = (hi - lo) / 15.0f;
            mn[j] = -lo;
            max_scale = fmaxf(max_scale, scale[j]);
            max_min = fmaxf(max_min, mn[j]);
        }
        y[b].d = f32_to_f16(max_scale / 62.0f);
        y[b].dmin = f32_to_f16(max_min / 63.0f);
        const float d = f16_to_f32(y[b].d), dmin = f16_to_f32(y[b].dmin);
        int sc[8], m[8];
        for (int j = 0; j < 8; j++) {
            sc[j] = d > 0 ? (int)clampf(ceilf(scale[j] / d), 0, 63) : 0;
            m[j] = dmin > 0 ? (int)clampf(roundf(mn[j] / dmin), 0, 63) : 0;
        }
        for (int j = 0; j < 4; j++) {
            y[b].scales[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
            y[b].scales[j + 4] = (uint8_t)(m[j] | (m[j + 4] >> 4) << 6);
            y[b].scales[j + 8] = (uint8_t)((sc[j + 4] & 15) | (m[j + 4] & 15) << 4);
        }
        uint8_t q[QK_K];
        for (int j = 0; j < 8; j++) {
            const float step = d * (float)sc[j], off = dmin * (float)m[j];
            for (int i = 0; i < 32; i++)
                q[32 * j + i] = step > 0 ? (uint8_t)clampf(roundf((x[32 * j + i] + off) / step), 0, 15) : 0;
        }
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) y[b].qs[32 * c + l] = (uint8_t)(q[64 * c + l] | q[64 * c + 32 + l] << 4);
    }
}

/* Q6_K: symmetric per sub-block of 16, amax covered by 31 steps (q in -31..31 of -32..31);
 * d = max_scale / 126 (f16) and the int8 scales rounded up, as for Q4_K. */
static void quantize_q6_k(const float *x, block_q6_k *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += QK_K) {
        float scale[16], max_scale = 0.0f;
        for (int j = 0; j < 16; j++) {
            float amax = 0.0f;
            for (int i = 0; i < 16; i++) amax = fmaxf(amax, fabsf(x[16 * j + i]));
            scale[j] = amax / 31.0f;
            max_scale = fmaxf(max_scale, scale[j]);
        }
        y[b].d = f32_to_f16(max_scale / 126.0f);
        const float d = f16_to_f32(y[b].d);
        uint8_t L[QK_K];
        for (int j = 0; j < 16; j++) {
            int sc = d > 0 ? (int)clampf(ceilf(scale[j] / d), 0, 127) : 0;
            y[b].scales[j] = (int8_t)sc;
            const float step = d * (float)sc;
            for (int i = 0; i < 16; i++)
                L[16 * j + i] = (uint8_t)(32 + (step > 0 ? (int)clampf(roundf(x[16 * j + i] / step), -32, 31) : 0));
        }
        for (int h = 0; h < 2; h++) {
            uint8_t *ql = y[b].ql + 64 * h, *qh = y[b].qh + 32 * h;
            const uint8_t *Lh = L + 128 * h;
            for (int l = 0; l < 32; l++) {
                const int q1 = Lh[l], q2 = Lh[l + 32], q3 = Lh[l + 64], q4 = Lh[l + 96];
                ql[l] = (uint8_t)((q1 & 15) | (q3 & 15) << 4);
                ql[l + 32] = (uint8_t)((q2 & 15) | (q4 & 15) << 4);
                qh[l] = (uint8_t)((q1 >> 4) | (q2 >> 4) << 2 | (q3 >> 4) << 4 | (q4 >> 4) << 6);
            }
        }
    }
}

void quantize_row(dtype t, const float *x, void *dst, int64_t n) {
    switch (t) {
    case DT_Q8_0: quantize_q8_0(x, dst, n / QK8_0); break;
    case DT_Q4_0: quantize_q4_0(x, dst, n / QK4_0); break;
    case DT_Q4_K: quantize_q4_k(x, dst, n / QK_K); break;
    case DT_Q6_K: quantize_q6_k(x, dst, n / QK_K); break;
    default: break;
    }
}

void dequantize_row(dtype t, const void *src, float *y, int64_t n) {
    if (t == DT_Q8_0) {
        const block_q8_0 *b = src;
        for (int64_t i = 0; i < n / QK8_0; i++, y += QK8_0) {
            const float d = f16_to_f32(b[i].d);
            for (int j = 0; j < QK8_0; j++) y[j] = d * (float)b[i].qs[j];
        }
    } else if (t == DT_Q4_0) {
        const block_q4_0 *b = src;
        for (int64_t i = 0; i < n / QK4_0; i++, y += QK4_0) {
            const float d = f16_to_f32(b[i].d);
            for (int j = 0; j < QK4_0 / 2; j++) {
                y[j] = d * (float)((b[i].qs[j] & 15) - 8);
                y[j + QK4_0 / 2] = d * (float)((b[i].qs[j] >> 4) - 8);
            }
        }
    } else if (t == DT_Q4_K) {
        const block_q4_k *b = src;
        for (int64_t i = 0; i < n / QK_K; i++) {
            const float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
            for (int c = 0; c < 4; c++) {
                int sc0, m0, sc1, m1;
                quant_q4k_scale_min(b[i].scales, 2 * c, &sc0, &m0);
                quant_q4k_scale_min(b[i].scales, 2 * c + 1, &sc1, &m1);
                const float d0 = d * (float)sc0, o0 = dmin * (float)m0, d1 = d * (float)sc1, o1 = dmin * (float)m1;
                const uint8_t *q = b[i].qs + 32 * c;
                for (int l = 0; l < 32; l++) y[l] = d0 * (float)(q[l] & 15) - o0;
                for (int l = 0; l < 32; l++) y[32 + l] = d1 * (float)(q[l] >> 4) - o1;
                y += 64;
            }
        }
    } else if (t == DT_Q6_K) {
        const block_q6_k *b = src;
        for (int64_t i = 0; i < n / QK_K; i++) {
            const float d = f16_to_f32(b[i].d);
            for (int h = 0; h < 2; h++) {
                const uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
                const int8_t *sc = b[i].scales + 8 * h;
                for (int l = 0; l < 32; l++) {
                    const int is = l / 16;
                    y[l] = d * (float)sc[is] * (float)(((ql[l] & 15) | (qh[l] & 3) << 4) - 32);
                    y[l + 32] = d * (float)sc[is + 2] * (float)(((ql[l + 32] & 15) | (qh[l] >> 2 & 3) << 4) - 32);
                    y[l + 64] = d * (float)sc[is + 4] * (float)(((ql[l] >> 4) | (qh[l] >> 4 & 3) << 4) - 32);
                    y[l + 96] = d * (float)sc[is + 6] * (float)(((ql[l + 32] >> 4) | (qh[l] >> 6 & 3) << 4) - 32);
                }
                y += 128;
            }
        }
    }
}
