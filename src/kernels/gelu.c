#include "kernels/gelu.h"

#include "kernels/fastexp.h"

#include <math.h>
#include <string.h>

vlmc_status act_from_name(const char *name, const char *where, act_kind *out, vlmc_error *err) {
    static const struct { const char *name; act_kind a; } names[] = {
        {"gelu", ACT_GELU},           {"gelu_pytorch_tanh", ACT_GELU_TANH}, {"gelu_new", ACT_GELU_TANH},
        {"gelu_fast", ACT_GELU_FAST}, {"quick_gelu", ACT_QUICK_GELU},       {"relu", ACT_RELU},
        {"silu", ACT_SILU},           {"swish", ACT_SILU},                  {"relu2", ACT_RELU2},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(name, names[i].name)) {
            *out = names[i].a;
            return VLMC_OK;
        }
    return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: activation \"%s\" is not supported", where, name);
}

const char *act_name(act_kind a) {
    switch (a) {
    case ACT_GELU: return "gelu";
    case ACT_GELU_TANH: return "gelu_pytorch_tanh";
    case ACT_GELU_FAST: return "gelu_fast";
    case ACT_QUICK_GELU: return "quick_gelu";
    case ACT_RELU: return "relu";
    case ACT_SILU: return "silu";
    case ACT_RELU2: return "relu2";
    }
    return "?";
}

#define PAR_THRESHOLD 65536

void gelu_forward(float *out, const float *inp, size_t N) {
    /* No `simd`: clang cannot vectorise erff and would warn (an error under -Werror). */
    #pragma omp parallel for schedule(static) if (N > PAR_THRESHOLD)
    for (size_t i = 0; i < N; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2));
    }
}

void gelu_tanh_forward(float *out, const float *inp, size_t N) {
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    #pragma omp parallel for simd schedule(static) if (N > PAR_THRESHOLD)
    for (size_t i = 0; i < N; i++) {
        float x = inp[i];
        /* 1 + tanh(u) = 2 - 2 / (1 + e^{2u}) */
        float u = k * (x + 0.044715f * x * x * x);
        out[i] = x * (1.0f - 1.0f / (1.0f + fast_expf(2.0f * u)));
    }
}

static void gelu_fast_forward(float *out, const float *inp, size_t N) {
    #pragma omp parallel for simd schedule(static) if (N > PAR_THRESHOLD)
    for (size_t i = 0; i < N; i++) {
        float x = inp[i];
        float u = x * 0.7978845608f * (1.0f + 0.044715f * x * x);
        out[i] = x * (1.0f - 1.0f / (1.0f + fast_expf(2.0f * u)));
    }
}

void quick_gelu_forward(float *out, const float *inp, size_t N) {
    #pragma omp parallel for simd schedule(static) if (N > PAR_THRESHOLD)
    for (size_t i = 0; i < N; i++) {
        float x = inp[i];
        out[i] = x / (1.0f + fast_expf(-1.702f * x));
    }
}

void act_forward(act_kind a, float *out, const float *inp, size_t N) {
    switch (a) {
    case ACT_GELU: gelu_forward(out, inp, N); return;
    case ACT_GELU_TANH: gelu_tanh_forward(out, inp, N); return;
    case ACT_GELU_FAST: gelu_fast_forward(out, inp, N); return;
    case ACT_QUICK_GELU: quick_gelu_forward(out, inp, N); return;
    case ACT_RELU:
        #pragma omp parallel for schedule(static) if (N > PAR_THRESHOLD)
        for (size_t i = 0; i < N; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
        return;
    case ACT_SILU:
        #pragma omp parallel for simd schedule(static) if (N > PAR_THRESHOLD)
        for (size_t i = 0; i < N; i++) out[i] = inp[i] / (1.0f + fast_expf(-inp[i]));
        return;
    case ACT_RELU2:
        #pragma omp parallel for schedule(static) if (N > PAR_THRESHOLD)
        for (size_t i = 0; i < N; i++) out[i] = inp[i] > 0.0f ? inp[i] * inp[i] : 0.0f;
        return;
    }
}

void act_mul_forward(act_kind a, float *gate, const float *up, size_t N) {
    act_forward(a, gate, gate, N);
    #pragma omp parallel for simd schedule(static) if (N > PAR_THRESHOLD)
    for (size_t i = 0; i < N; i++) gate[i] *= up[i];
}

/* Derivatives, in f32 with libm's exp/erf/tanh:
 *   gelu:       Phi(x) + x phi(x)
 *   gelu_tanh:  0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2),  t = tanh(k (x + c x^3))
 *   quick_gelu: s + 1.702 x s (1 - s),  s = sigmoid(1.702 x)
 *   silu:       s (1 + x (1 - s)),      s = sigmoid(x) */
void act_backward(act_kind a, float *dinp, const float *dout, const float *inp, size_t N) {
    #pragma omp parallel for schedule(static) if (N > PAR_THRESHOLD)
    for (size_t i = 0; i < N; i++) {
        const float x = inp[i];
        float d;
        switch (a) {
        case ACT_GELU: {
            float cdf = 0.5f * (1.0f + erff(x * (float)M_SQRT1_2));
            float pdf = expf(-0.5f * x * x) * 0.3989422804014327f;
            d = cdf + x * pdf;
            break;
        }
        case ACT_GELU_TANH:
        case ACT_GELU_FAST: {
            const float k = 0.7978845608028654f, c = 0.044715f;
            float t = tanhf(k * (x + c * x * x * x));
            d = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * k * (1.0f + 3.0f * c * x * x);
            break;
        }
        case ACT_QUICK_GELU: {
            float s = 1.0f / (1.0f + expf(-1.702f * x));
            d = s + 1.702f * x * s * (1.0f - s);
            break;
        }
        case ACT_RELU: d = x > 0.0f ? 1.0f : 0.0f; break;
        case ACT_RELU2: d = x > 0.0f ? 2.0f * x : 0.0f; break;
        case ACT_SILU: {
            float s = 1.0f / (1.0f + expf(-x));
            d = s * (1.0f + x * (1.0f - s));
            break;
        }
        default: d = 0.0f;
        }
        dinp[i] = dout[i] * d;
    }
}
