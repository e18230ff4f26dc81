#include "kernels/layernorm.h"

#include <math.h>

void layernorm_forward_train(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                             const float *bias, size_t N, size_t C, float eps) {
    #pragma omp parallel for schedule(static) if (N * C > 32768)
    for (size_t n = 0; n < N; n++) {
        const float *x = inp + n * C;
        float *o = out + n * C;
        double sum = 0;
        for (size_t i = 0; i < C; i++) sum += x[i];
        double mu = sum / (double)C;
        double var = 0;
        for (size_t i = 0; i < C; i++) {
            double d = x[i] - mu;
            var += d * d;
        }
        var /= (double)C;
        float rs = (float)(1.0 / sqrt(var + (double)eps));
        float m = (float)mu;
        for (size_t i = 0; i < C; i++) {
            float v = weight ? (x[i] - m) * rs * weight[i] : (x[i] - m) * rs;
            o[i] = bias ? v + bias[i] : v;
        }
        if (mean) mean[n] = m;
        if (rstd) rstd[n] = rs;
    }
}

/* Inference keeps no statistics: the same normalisation, with nowhere to save them. */
void layernorm_forward(float *out, const float *inp, const float *weight, const float *bias, size_t N, size_t C,
                       float eps) {
    layernorm_forward_train(out, NULL, NULL, inp, weight, bias, N, C, eps);
}

/* With xhat = (x - mean) * rstd and y = xhat * w + b:
 *   dxhat = dy * w;  dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)). */
void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *weight, const float *mean, const float *rstd, size_t N, size_t C) {
    if (dinp) {
        #pragma omp parallel for schedule(static) if (N * C > 32768)
        for (size_t n = 0; n < N; n++) {
            const float *x = inp + n * C, *dy = dout + n * C;
            float *dx = dinp + n * C;
            const float m = mean[n], rs = rstd[n];
            double s1 = 0, s2 = 0;
            for (size_t i = 0; i < C; i++) {
                double dxh = (double)dy[i] * weight[i];
                s1 += dxh;
                s2 += dxh * ((x[i] - m) * rs);
            }
            const float a = (float)(s1 / (double)C), b = (float)(s2 / (double)C);
            for (size_t i = 0; i < C; i++) {
                float xh = (x[i] - m) * rs;
                dx[i] += rs * (dy[i] * weight[i] - a - xh * b);
            }
        }
    }
    if (dweight || dbias) {
        /* columns split over threads: each thread owns its columns, the sum over rows stays in order */
        #pragma omp parallel for schedule(static) if (N * C > 32768)
        for (size_t i = 0; i < C; i++) {
            double sw = 0, sb = 0;
            for (size_t n = 0; n < N; n++) {
                float dy = dout[n * C + i];
                sw += (double)dy * ((inp[n * C + i] - mean[n]) * rstd[n]);
                sb += dy;
            }
            if (dweight) dweight[i] += (float)sw;
            if (dbias) dbias[i] += (float)sb;
        }
    }
}
