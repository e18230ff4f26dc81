#include "kernels/ops.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#include <cblas.h>
#include <omp.h>

#include "kernels/layernorm.h"
#include "kernels/matmul.h"

void rmsnorm_f32(float *out, const float *x, int64_t rows, int64_t dim, const tensor *w, float eps) {
    #pragma omp parallel for schedule(static) if (rows * dim > 32768)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim;
        float *o = out + r * dim;
        double ss = 0.0;
        for (int64_t i = 0; i < dim; i++) ss += (double)xr[i] * xr[i];
        float var = (float)(ss / (double)dim);
        float inv = 1.0f / sqrtf(var + eps);
        if (w->type == DT_F32) {
            const float *wf = w->data;
            for (int64_t i = 0; i < dim; i++) o[i] = wf[i] * (xr[i] * inv);
        } else {
            for (int64_t i = 0; i < dim; i++) o[i] = tensor_get_f32(w, i) * (xr[i] * inv);
        }
    }
}

void layernorm_tensor_f32(float *out, const float *x, int64_t rows, int64_t dim, const tensor *w, const tensor *b,
                          float eps) {
    const bool direct = w->type == DT_F32 && (!b || b->type == DT_F32);
    layernorm_forward(out, x, direct ? w->data : NULL, direct && b ? b->data : NULL, (size_t)rows, (size_t)dim, eps);
    if (direct) return;
    /* half-precision scale and shift: applied after the normalisation, in the same order ((x - mean) * rstd * w + b) */
    #pragma omp parallel for schedule(static) if (rows * dim > 32768)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < dim; i++) out[r * dim + i] = out[r * dim + i] * tensor_get_f32(w, i) + (b ? tensor_get_f32(b, i) : 0.0f);
}

void rope_apply_f32(float *x, int64_t rows, int n_heads, int head_dim, int rot_dim, const float *cos_t,
                    const float *sin_t) {
    const int half = rot_dim / 2;
    #pragma omp parallel for schedule(static) if (rows * n_heads * head_dim > 32768)
    for (int64_t r = 0; r < rows; r++) {
        const float *c = cos_t + r * half, *s = sin_t + r * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (r * n_heads + h) * head_dim;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * s[i];
                v[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}

void silu_mul_f32(float *gate, const float *up, int64_t n) {
    #pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void scale_f32(float *x, float a, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] *= a;
}

void add_f32(float *x, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

/* The last slot query i may see: i, or the end of a prefix-LM prefix after it (see attn_args). */
static inline int last_key(const attn_args *a, int b, int i) {
    return a->prefix_end && a->prefix_end[b] - 1 > i ? a->prefix_end[b] - 1 : i;
}

static inline int visible(const uint8_t *mb, int j, int i) { return mb[j] && (j <= i || mb[j] == 2); }

int64_t argmax_f32(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

void attention_f32(float *out, const float *q, const float *k, const float *v, const uint8_t *mask,
                   const attn_args *a, float *scores) {
    const int B = a->B, T = a->T, H = a->n_heads, KVH = a->n_kv_heads, hd = a->head_dim;
    const int group = H / KVH;
    const int64_t n_rows = (int64_t)B * T * H;
    #pragma omp parallel for schedule(dynamic, 4) num_threads(a->n_threads)
    for (int64_t row = 0; row < n_rows; row++) {
        const int h = (int)(row % H);
        const int t = (int)((row / H) % T);
        const int b = (int)(row / ((int64_t)H * T));
        float *sc = scores + (size_t)omp_get_thread_num() * (size_t)a->n_ctx;
        const int i = a->n_past + t;
        const int kvh = h / group;
        const float *qv = q + row * hd;
        const float *kb = k + ((size_t)b * KVH + kvh) * (size_t)a->n_ctx * hd;
        const float *vb = v + ((size_t)b * KVH + kvh) * (size_t)a->n_ctx * hd;
        const uint8_t *mb = mask + (size_t)b * a->n_ctx;
        float *o = out + row * hd;
        int j0 = a->window > 0 ? i - a->window + 1 : 0;
        if (j0 < 0) j0 = 0;
        const int j1 = last_key(a, b, i);
        float mx = -INFINITY;
        int any = 0;
        for (int j = j0; j <= j1; j++) {
            if (!visible(mb, j, i)) continue;
            float s = dot_f32(qv, kb + (size_t)j * hd, hd) * a->scale;
            sc[j] = s;
            if (s > mx) mx = s;
            any = 1;
        }
        memset(o, 0, sizeof(float) * (size_t)hd);
        if (!any) {
            const int n_all = a->n_past + T;
            for (int j = 0; j < n_all; j++) axpy_f32(o, 1.0f / (float)n_all, vb + (size_t)j * hd, hd);
            continue;
        }
        float sum = 0.0f;
        for (int j = j0; j <= j1; j++) {
            if (!visible(mb, j, i)) continue;
            float e = expf(sc[j] - mx);
            sc[j] = e;
            sum += e;
        }
        float inv = 1.0f / sum;
        for (int j = j0; j <= j1; j++) {
            if (!visible(mb, j, i)) continue;
            axpy_f32(o, sc[j] * inv, vb + (size_t)j * hd, hd);
        }
    }
}

void attention_f32_gemm(float *out, const float *q, const float *k, const float *v, const uint8_t *mask,
                        const attn_args *a, float *S, int s_rows) {
    const int B = a->B, T = a->T, H = a->n_heads, KVH = a->n_kv_heads, hd = a->head_dim;
    const int group = H / KVH, n_all = a->n_past + T, ld = H * hd;
    for (int b = 0; b < B; b++) {
        const uint8_t *mb = mask + (size_t)b * a->n_ctx;
        for (int h = 0; h < H; h++) {
            const int kvh = h / group;
            const float *kb = k + ((size_t)b * KVH + kvh) * (size_t)a->n_ctx * hd;
            const float *vb = v + ((size_t)b * KVH + kvh) * (size_t)a->n_ctx * hd;
            for (int t0 = 0; t0 < T; t0 += s_rows) {
                const int nt = T - t0 < s_rows ? T - t0 : s_rows;
                /* keys up to the block's last query (causal) or the end of a prefix-LM prefix */
                const int nk = last_key(a, b, a->n_past + t0 + nt - 1) + 1;
                const float *qh = q + ((size_t)b * T + t0) * ld + (size_t)h * hd;
                float *oh = out + ((size_t)b * T + t0) * ld + (size_t)h * hd;
                /* S[nt, nk] = scale * q_h k^T */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nt, nk, hd, a->scale, qh, ld, kb, hd, 0.0f, S, nk);
                #pragma omp parallel for schedule(static) num_threads(a->n_threads)
                for (int t = 0; t < nt; t++) {
                    float *row = S + (size_t)t * nk;
                    const int i = a->n_past + t0 + t;
                    int j0 = a->window > 0 ? i - a->window + 1 : 0;
                    if (j0 < 0) j0 = 0;
                    const int j1 = last_key(a, b, i);
                    float mx = -INFINITY;
                    for (int j = j0; j <= j1; j++)
                        if (visible(mb, j, i) && row[j] > mx) mx = row[j];
                    if (mx == -INFINITY) {
                        /* no visible key: eager attention's flat softmax over all n_all slots; the
                         * keys past this block (nk..n_all) are added below */
                        for (int j = 0; j < nk; j++) row[j] = 1.0f / (float)n_all;
                        continue;
                    }
                    float sum = 0.0f;
                    for (int j = 0; j < nk; j++) {
                        float e = (j >= j0 && visible(mb, j, i)) ? expf(row[j] - mx) : 0.0f;
                        row[j] = e;
                        sum += e;
                    }
                    float inv = 1.0f / sum;
                    for (int j = 0; j < nk; j++) row[j] *= inv;
                }
                /* out_h[nt, hd] = P v */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nt, hd, nk, 1.0f, S, nk, vb, hd, 0.0f, oh, ld);
                if (nk < n_all) {
                    /* flat rows also average the values of the later slots */
                    for (int t = 0; t < nt; t++) {
                        const int i = a->n_past + t0 + t;
                        int j0 = a->window > 0 ? i - a->window + 1 : 0, vis = 0;
                        if (j0 < 0) j0 = 0;
                        for (int j = j0; j <= last_key(a, b, i) && !vis; j++) vis = visible(mb, j, i);
                        if (vis) continue;
                        for (int j = nk; j < n_all; j++)
                            axpy_f32(oh + (size_t)t * ld, 1.0f / (float)n_all, vb + (size_t)j * hd, hd);
                    }
                }
            }
        }
    }
}
