#include "kernels/layernorm.h"

#include <math.h>

void layernorm_forward(float *out, const float *inp, const float *weight, const float *bias, size_t N, size_t C,
                       float eps) {
    #pragma omp parallel for schedule(static) if (N * C > 32768)
    for (size_t n = 0; n < N; n++) {
        const float *x = inp + n * C;
        float *o = out + n * C;
        double sum = 0;
        for (size_t i = 0; i < C; i++) sum += x[i];
        double mean = sum / (double)C;
        double var = 0;
        for (size_t i = 0; i < C; i++) {
            double d = x[i] - mean;
            var += d * d;
        }
        var /= (double)C;
        float rstd = (float)(1.0 / sqrt(var + (double)eps));
        float m = (float)mean;
        for (size_t i = 0; i < C; i++) {
            float v = (x[i] - m) * rstd * weight[i];
            o[i] = bias ? v + bias[i] : v;
        }
    }
}
