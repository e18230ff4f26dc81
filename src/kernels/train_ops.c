/* Training kernels: see train_ops.h. */
#include "kernels/train_ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <omp.h>

#define PAR_MIN 32768

/* ---- linear ------------------------------------------------------------------------- */

void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int64_t R, int64_t C,
                    int64_t OC) {
    if (R <= 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)R, (int)OC, (int)C, 1.0f, inp, (int)C, weight, (int)C,
                0.0f, out, (int)OC);
    if (bias) {
        #pragma omp parallel for schedule(static) if (R * OC > PAR_MIN)
        for (int64_t r = 0; r < R; r++)
            for (int64_t o = 0; o < OC; o++) out[r * OC + o] += bias[o];
    }
}

void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int64_t R, int64_t C, int64_t OC) {
    if (R <= 0) return;
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)C, (int)OC, 1.0f, dout, (int)OC, weight,
                    (int)C, 1.0f, dinp, (int)C);
    if (dweight)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)OC, (int)C, (int)R, 1.0f, dout, (int)OC, inp,
                    (int)C, 1.0f, dweight, (int)C);
    if (dbias) {
        #pragma omp parallel for schedule(static) if (R * OC > PAR_MIN)
        for (int64_t o = 0; o < OC; o++) {
            double s = 0;
            for (int64_t r = 0; r < R; r++) s += dout[r * OC + o];
            dbias[o] += (float)s;
        }
    }
}

/* ---- RMSNorm ------------------------------------------------------------------------ */

void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int64_t R, int64_t C, float eps) {
    #pragma omp parallel for schedule(static) if (R * C > PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *x = inp + r * C;
        float *o = out + r * C;
        double ss = 0;
        for (int64_t i = 0; i < C; i++) ss += (double)x[i] * x[i];
        float rs = 1.0f / sqrtf((float)(ss / (double)C) + eps);
        for (int64_t i = 0; i < C; i++) o[i] = weight[i] * (x[i] * rs);
        rstd[r] = rs;
    }
}

/* y = w · x · s, s = (mean(x²) + eps)^-1/2:  dx = s · (w·dy) - x · s³ · mean(w·dy·x);  dw += dy · x · s. */
void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                      const float *rstd, int64_t R, int64_t C) {
    if (dinp) {
        #pragma omp parallel for schedule(static) if (R * C > PAR_MIN)
        for (int64_t r = 0; r < R; r++) {
            const float *x = inp + r * C, *dy = dout + r * C;
            float *dx = dinp + r * C;
            const float s = rstd[r];
            double dot = 0;
            for (int64_t i = 0; i < C; i++) dot += (double)dy[i] * weight[i] * x[i];
            const float k = (float)(dot / (double)C) * s * s * s;
            for (int64_t i = 0; i < C; i++) dx[i] += s * weight[i] * dy[i] - k * x[i];
        }
    }
    if (dweight) {
        #pragma omp parallel for schedule(static) if (R * C > PAR_MIN)
        for (int64_t i = 0; i < C; i++) {
            double acc = 0;
            for (int64_t r = 0; r < R; r++) acc += (double)dout[r * C + i] * (inp[r * C + i] * rstd[r]);
            dweight[i] += (float)acc;
        }
    }
}

/* ---- rotary ------------------------------------------------------------------------- */

static void rope_rotate(float *x, const float *cos_t, const float *sin_t, float sign, int64_t R, int n_heads, int hd,
                        int rot) {
    const int half = rot / 2;
    #pragma omp parallel for schedule(static) if (R * n_heads * hd > PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *c = cos_t + r * half, *s = sin_t + r * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (r * n_heads + h) * hd;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half], si = sign * s[i];
                v[i] = a * c[i] - b * si;
                v[i + half] = b * c[i] + a * si;
            }
        }
    }
}

void rope_forward(float *x, const float *cos_t, const float *sin_t, int64_t R, int n_heads, int hd, int rot) {
    rope_rotate(x, cos_t, sin_t, 1.0f, R, n_heads, hd, rot);
}

/* The rotation is orthogonal: its transpose is the rotation by -angle. */
void rope_backward(float *dx, const float *cos_t, const float *sin_t, int64_t R, int n_heads, int hd, int rot) {
    rope_rotate(dx, cos_t, sin_t, -1.0f, R, n_heads, hd, rot);
}

/* ---- SwiGLU ------------------------------------------------------------------------- */

void swiglu_forward(float *out, const float *gate, const float *up, int64_t N) {
    #pragma omp parallel for schedule(static) if (N > PAR_MIN)
    for (int64_t i = 0; i < N; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t N) {
    #pragma omp parallel for schedule(static) if (N > PAR_MIN)
    for (int64_t i = 0; i < N; i++) {
        float g = gate[i], s = 1.0f / (1.0f + expf(-g)), dy = dout[i];
        dup[i] = dy * g * s;
        dgate[i] = dy * up[i] * s * (1.0f + g * (1.0f - s));
    }
}

/* ---- attention ----------------------------------------------------------------------
 * Per (sequence, head): S = scale · Q K^T and O = P V through sgemm on strided head slices (the head's
 * columns of the [T, H·hd] rows), the softmax in between row by row. Each (sequence, kv head) is one
 * task; sgemm inside the parallel region runs on the calling thread. */

static void softmax_rows(float *P, const int32_t *key_mask, int causal, int T) {
    for (int t = 0; t < T; t++) {
        float *p = P + (int64_t)t * T;
        const int jend = causal ? t + 1 : T;
        float mx = -INFINITY;
        for (int j = 0; j < jend; j++)
            if ((!key_mask || key_mask[j]) && p[j] > mx) mx = p[j];
        if (mx == -INFINITY) { /* nothing visible */
            memset(p, 0, (size_t)T * sizeof(float));
            continue;
        }
        float sum = 0;
        for (int j = 0; j < T; j++) {
            if (j >= jend || (key_mask && !key_mask[j])) {
                p[j] = 0;
                continue;
            }
            p[j] = expf(p[j] - mx);
            sum += p[j];
        }
        const float inv = 1.0f / sum;
        for (int j = 0; j < jend; j++) p[j] *= inv;
    }
}

void attention_forward(float *out, float *probs, const float *q, const float *k, const float *v,
                       const int32_t *key_mask, int causal, int B, int T, int H, int KVH, int hd, float scale) {
    const int64_t QD = (int64_t)H * hd, KD = (int64_t)KVH * hd;
    const int grp = H / KVH;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const int kh = h / grp;
            float *P = probs + ((int64_t)b * H + h) * T * T;
            const float *qh = q + (int64_t)b * T * QD + (int64_t)h * hd, *kk = k + (int64_t)b * T * KD + (int64_t)kh * hd,
                        *vv = v + (int64_t)b * T * KD + (int64_t)kh * hd;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, qh, (int)QD, kk, (int)KD, 0.0f, P, T);
            softmax_rows(P, key_mask ? key_mask + (int64_t)b * T : NULL, causal, T);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, P, T, vv, (int)KD, 0.0f,
                        out + (int64_t)b * T * QD + (int64_t)h * hd, (int)QD);
        }
}

void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *probs, const float *q,
                        const float *k, const float *v, int B, int T, int H, int KVH, int hd, float scale) {
    const int64_t QD = (int64_t)H * hd, KD = (int64_t)KVH * hd;
    const int grp = H / KVH;
    /* one task per (sequence, kv head): it owns that head's dk, dv and its query heads' dq */
    #pragma omp parallel
    {
        float *dS = malloc((size_t)T * T * sizeof(float));
        #pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int kh = 0; kh < KVH; kh++) {
                if (!dS) continue; /* out of memory: gradients stay unset (cannot happen at planned sizes) */
                const float *kk = k + (int64_t)b * T * KD + (int64_t)kh * hd, *vv = v + (int64_t)b * T * KD + (int64_t)kh * hd;
                float *dkk = dk + (int64_t)b * T * KD + (int64_t)kh * hd, *dvv = dv + (int64_t)b * T * KD + (int64_t)kh * hd;
                for (int t = 0; t < T; t++) {
                    memset(dkk + (int64_t)t * KD, 0, (size_t)hd * sizeof(float));
                    memset(dvv + (int64_t)t * KD, 0, (size_t)hd * sizeof(float));
                }
                for (int h = kh * grp; h < (kh + 1) * grp; h++) {
                    const float *P = probs + ((int64_t)b * H + h) * T * T;
                    const float *doh = dout + (int64_t)b * T * QD + (int64_t)h * hd, *qh = q + (int64_t)b * T * QD + (int64_t)h * hd;
                    float *dqh = dq + (int64_t)b * T * QD + (int64_t)h * hd;
                    /* dP = dO V^T;  dS = P ∘ (dP - rowsum(P ∘ dP)) · scale */
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1.0f, doh, (int)QD, vv, (int)KD, 0.0f,
                                dS, T);
                    for (int t = 0; t < T; t++) {
                        const float *p = P + (int64_t)t * T;
                        float *d = dS + (int64_t)t * T;
                        double dot = 0;
                        for (int j = 0; j < T; j++) dot += (double)p[j] * d[j];
                        const float fd = (float)dot;
                        for (int j = 0; j < T; j++) d[j] = p[j] * (d[j] - fd) * scale;
                    }
                    /* dQ = dS K;  dK += dS^T Q;  dV += P^T dO */
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, dS, T, kk, (int)KD, 0.0f,
                                dqh, (int)QD);
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, dS, T, qh, (int)QD, 1.0f, dkk,
                                (int)KD);
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, P, T, doh, (int)QD, 1.0f, dvv,
                                (int)KD);
                }
            }
        free(dS);
    }
}

/* ---- embedding ---------------------------------------------------------------------- */

void embedding_forward(float *out, const int32_t *ids, const float *wte, int64_t R, int64_t C) {
    for (int64_t r = 0; r < R; r++) memcpy(out + r * C, wte + (int64_t)ids[r] * C, (size_t)C * sizeof(float));
}

void embedding_backward(float *dwte, const float *dout, const int32_t *ids, const uint8_t *skip, int64_t R,
                        int64_t C, int64_t V) {
    /* rows in order: the sum for a repeated id is the same on any thread count */
    for (int64_t r = 0; r < R; r++) {
        if ((skip && skip[r]) || ids[r] < 0 || ids[r] >= V) continue;
        float *d = dwte + (int64_t)ids[r] * C;
        const float *g = dout + r * C;
        for (int64_t i = 0; i < C; i++) d[i] += g[i];
    }
}

/* ---- loss --------------------------------------------------------------------------- */

static inline int32_t ce_target(const int32_t *labels, int b, int t, int T) {
    return t + 1 < T ? labels[(int64_t)b * T + t + 1] : -100;
}

double cross_entropy_forward(const float *logits, const int32_t *labels, int B, int T, int64_t V,
                             int64_t *n_targets) {
    /* per-thread partial sums over static row chunks, added in thread order: the same bits on every run
     * with the same thread count (an OpenMP reduction combines in completion order) */
    enum { MAXT = 256 };
    double part[MAXT] = {0};
    int64_t cnt[MAXT] = {0};
    const int64_t R = (int64_t)B * T;
    int nth = 1, cap = omp_get_max_threads();
    if (cap > MAXT) cap = MAXT;
    #pragma omp parallel num_threads(cap)
    {
        const int tid = omp_get_thread_num();
        #pragma omp single
        nth = omp_get_num_threads();
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < R; r++) {
            const int b = (int)(r / T), t = (int)(r % T);
            const int32_t y = ce_target(labels, b, t, T);
            if (y < 0 || y >= V) continue;
            const float *lg = logits + r * V;
            float mx = lg[0];
            for (int64_t i = 1; i < V; i++) if (lg[i] > mx) mx = lg[i];
            double s = 0;
            for (int64_t i = 0; i < V; i++) s += exp((double)lg[i] - mx);
            part[tid] += log(s) + mx - lg[y];
            cnt[tid]++;
        }
    }
    double total = 0;
    int64_t n = 0;
    for (int i = 0; i < nth; i++) total += part[i], n += cnt[i];
    if (n_targets) *n_targets = n;
    return total;
}

void cross_entropy_backward(float *dlogits, const float *logits, const int32_t *labels, int B, int T, int64_t V,
                            float scale) {
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const int32_t y = ce_target(labels, b, t, T);
            const float *lg = logits + ((int64_t)b * T + t) * V;
            float *d = dlogits + ((int64_t)b * T + t) * V;
            if (y < 0 || y >= V) {
                memset(d, 0, (size_t)V * sizeof(float));
                continue;
            }
            float mx = lg[0];
            for (int64_t i = 1; i < V; i++) if (lg[i] > mx) mx = lg[i];
            double s = 0;
            for (int64_t i = 0; i < V; i++) s += exp((double)lg[i] - mx);
            const double inv = 1.0 / s;
            for (int64_t i = 0; i < V; i++) {
                double p = exp((double)lg[i] - mx) * inv;
                d[i] = (float)((p - (i == y ? 1.0 : 0.0)) * scale);
            }
        }
}
