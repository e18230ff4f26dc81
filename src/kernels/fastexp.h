/* exp(x) for f32 that gcc vectorizes at -O2 (no libm call): Cody-Waite range reduction x = k·ln2 + r and the
 * Cephes expf polynomial on r; about 2 ulp over the normal range. Inputs below -87.3 give 0 (as expf underflows
 * to 0 or a denormal), above 88 give exp(88) = 1.65e38 (clamped, never inf). Used by the vision
 * softmax and the GELU family, where PyTorch's CPU kernels use Sleef's vectorized 1-ulp exp. */
#ifndef VLMC_KERNELS_FASTEXP_H
#define VLMC_KERNELS_FASTEXP_H

#include <stdint.h>
#include <string.h>

static inline float fast_expf(float x) {
    x = x < 88.0f ? x : 88.0f;   /* k <= 127: a finite scale */
    x = x > -88.33f ? x : -88.33f; /* lands on k = -127 → scale 0 → result 0 */
    /* k = round(x / ln2) with the 1.5·2^23 trick (no rounding instruction needed on SSE2) */
    float kf = x * 1.44269504088896341f + 12582912.0f;
    kf -= 12582912.0f;
    float r = x - kf * 0.693359375f;
    r = r + kf * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t ki = (int32_t)kf + 127; /* in [0, 255) after the clamps */
    uint32_t bits = (uint32_t)ki << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

#endif
