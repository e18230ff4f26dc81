#include "train/optim.h"

#include <math.h>

adamw_params adamw_default_params(void) {
    adamw_params p = {.lr = 5e-5f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.0f};
    return p;
}

void adamw_update(float *param, const float *grad, float *m, float *v, size_t n, int64_t step, float lr,
                  const adamw_params *p) {
    /* Scalars as torch derives them in Python (double), then applied to float32 tensors. */
    const float decay = (float)(1.0 - (double)lr * (double)p->weight_decay);
    const double bc1 = 1.0 - pow((double)p->beta1, (double)step);
    const double bc2 = 1.0 - pow((double)p->beta2, (double)step);
    const float neg_step_size = (float)(-((double)lr / bc1));
    const float bc2_sqrt = (float)sqrt(bc2);
    const float b1 = p->beta1, b2 = p->beta2;
    const float one_minus_b1 = (float)(1.0 - (double)p->beta1), one_minus_b2 = (float)(1.0 - (double)p->beta2);
    const float eps = p->eps;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float g = grad[i];
        param[i] *= decay;                                  /* decoupled weight decay first */
        m[i] = m[i] * b1 + g * one_minus_b1;                /* exp_avg.mul_(b1).add_(g, alpha=1-b1) */
        v[i] = v[i] * b2 + one_minus_b2 * g * g;            /* exp_avg_sq.mul_(b2).addcmul_(g, g, value=1-b2) */
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;         /* (exp_avg_sq.sqrt() / sqrt(bc2)).add_(eps) */
        param[i] = param[i] + neg_step_size * m[i] / denom; /* param.addcdiv_(exp_avg, denom, value=-step_size) */
    }
}

double grad_global_norm(float *const *grads, const size_t *sizes, size_t n_bufs) {
    double total = 0;
    for (size_t b = 0; b < n_bufs; b++) {
        double s = 0;
        const float *g = grads[b];
#pragma omp parallel for reduction(+ : s) schedule(static) if (sizes[b] > 65536)
        for (size_t i = 0; i < sizes[b]; i++) s += (double)g[i] * g[i];
        total += s;
    }
    return sqrt(total);
}

double grad_clip_global_norm(float *const *grads, const size_t *sizes, size_t n_bufs, double max_norm) {
    double norm = grad_global_norm(grads, sizes, n_bufs);
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
        float c = (float)coef;
        for (size_t b = 0; b < n_bufs; b++)
            for (size_t i = 0; i < sizes[b]; i++) grads[b][i] *= c;
    }
    return norm;
}

double lr_schedule_factor(lr_schedule kind, int64_t step, int64_t warmup, int64_t total) {
    if (step < warmup) return (double)step / (double)(warmup > 1 ? warmup : 1);
    switch (kind) {
    case LR_LINEAR: {
        double f = (double)(total - step) / (double)(total - warmup > 1 ? total - warmup : 1);
        return f > 0 ? f : 0;
    }
    case LR_COSINE: {
        double progress = (double)(step - warmup) / (double)(total - warmup > 1 ? total - warmup : 1);
        double f = 0.5 * (1.0 + cos(M_PI * 2.0 * 0.5 * progress)); /* num_cycles = 0.5 */
        return f > 0 ? f : 0;
    }
    default: return 1.0;
    }
}
