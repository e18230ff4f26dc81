/* Convolution (im2col) and PyTorch's bilinear resampling of f32 maps. See conv.h. */
#include "kernels/conv.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

void im2col_nhwc(float *col, const float *in, int H, int W, int C, int K, int stride, int pad) {
    const int OH = conv_out_size(H, K, stride, pad), OW = conv_out_size(W, K, stride, pad);
    const size_t row = (size_t)C * K * K;
    #pragma omp parallel for schedule(static)
    for (int oy = 0; oy < OH; oy++)
        for (int ox = 0; ox < OW; ox++) {
            float *dst = col + ((size_t)oy * OW + ox) * row;
            for (int ky = 0; ky < K; ky++) {
                const int y = oy * stride - pad + ky;
                for (int kx = 0; kx < K; kx++) {
                    const int x = ox * stride - pad + kx;
                    const bool inside = y >= 0 && y < H && x >= 0 && x < W;
                    const float *src = inside ? in + ((size_t)y * W + x) * C : NULL;
                    for (int c = 0; c < C; c++) dst[((size_t)c * K + ky) * K + kx] = inside ? src[c] : 0.0f;
                }
            }
        }
}

/* PyTorch's source index for linear interpolation without align_corners (area_pixel_compute_source_index):
 * scale·(dst + 0.5) - 0.5 in float, negative values clamped to 0; i0 = floor, i1 = i0 + 1 unless at the border. */
static void linear_index(int dst, int in, int out, int *i0, int *i1, float *l0, float *l1) {
    const float scale = (float)in / (float)out;
    float src = scale * ((float)dst + 0.5f) - 0.5f;
    if (src < 0) src = 0;
    int i = (int)src;
    if (i > in - 1) i = in - 1;
    *i0 = i;
    *i1 = i + (i < in - 1 ? 1 : 0);
    *l1 = src - (float)i;
    *l0 = 1.0f - *l1;
}

void interp_bilinear_nhwc(float *out, int OH, int OW, const float *in, int H, int W, int C) {
    #pragma omp parallel for schedule(static)
    for (int oy = 0; oy < OH; oy++) {
        int y0, y1;
        float h0, h1;
        linear_index(oy, H, OH, &y0, &y1, &h0, &h1);
        for (int ox = 0; ox < OW; ox++) {
            int x0, x1;
            float w0, w1;
            linear_index(ox, W, OW, &x0, &x1, &w0, &w1);
            const float *a = in + ((size_t)y0 * W + x0) * C, *b = in + ((size_t)y0 * W + x1) * C;
            const float *c = in + ((size_t)y1 * W + x0) * C, *d = in + ((size_t)y1 * W + x1) * C;
            float *o = out + ((size_t)oy * OW + ox) * C;
            for (int k = 0; k < C; k++) o[k] = h0 * (w0 * a[k] + w1 * b[k]) + h1 * (w0 * c[k] + w1 * d[k]);
        }
    }
}

/* The antialiased weights of one output index (_compute_indices_min_size_weights_aa with the bilinear filter
 * max(0, 1 - |x|)): support = scale (when downscaling), taps xmin .. xmin + n - 1, normalised to sum 1. */
static int aa_weights(int dst, int in, int out, float *w, int cap, int *xmin) {
    const float scale = (float)in / (float)out;
    const float support = scale >= 1.0f ? scale : 1.0f;
    const float invscale = scale >= 1.0f ? 1.0f / scale : 1.0f;
    const float center = (float)(scale * (dst + 0.5));
    int lo = (int)(center - support + 0.5f);
    if (lo < 0) lo = 0;
    int hi = (int)(center + support + 0.5f);
    if (hi > in) hi = in;
    int n = hi - lo;
    if (n > cap) n = cap;
    float total = 0.0f;
    for (int j = 0; j < n; j++) {
        float x = fabsf(((float)(j + lo) - center + 0.5f) * invscale);
        w[j] = x < 1.0f ? 1.0f - x : 0.0f;
        total += w[j];
    }
    if (total != 0.0f)
        for (int j = 0; j < n; j++) w[j] /= total;
    *xmin = lo;
    return n;
}

int resize_bilinear_aa_nchw(float *out, int OH, int OW, const float *in, int C, int H, int W, float *tmp) {
    if ((double)W / OW > AA_MAX_SCALE || (double)H / OH > AA_MAX_SCALE) return -1;
    #pragma omp parallel for schedule(static)
    for (int ox = 0; ox < OW; ox++) { /* width pass: tmp [C, H, OW] */
        float w[AA_MAX_TAPS];
        int x0, n = aa_weights(ox, W, OW, w, AA_MAX_TAPS, &x0);
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++) {
                const float *src = in + ((size_t)c * H + y) * W + x0;
                float acc = n ? src[0] * w[0] : 0.0f;
                for (int j = 1; j < n; j++) acc += src[j] * w[j];
                tmp[((size_t)c * H + y) * OW + ox] = acc;
            }
    }
    #pragma omp parallel for schedule(static)
    for (int oy = 0; oy < OH; oy++) { /* height pass */
        float w[AA_MAX_TAPS];
        int y0, n = aa_weights(oy, H, OH, w, AA_MAX_TAPS, &y0);
        for (int c = 0; c < C; c++)
            for (int x = 0; x < OW; x++) {
                const float *src = tmp + ((size_t)c * H + y0) * OW + x;
                float acc = n ? src[0] * w[0] : 0.0f;
                for (int j = 1; j < n; j++) acc += src[(size_t)j * OW] * w[j];
                out[((size_t)c * OH + oy) * OW + x] = acc;
            }
    }
    return 0;
}
