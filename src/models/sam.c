/* SAM ViT image encoder with DeepSeek-VL's neck and downsamples (deepseek_vl/models/sam.py ImageEncoderViT). See sam.h.
 *
 * Dimensions: g = grid side (image_size / P), N = g·g tokens, D = width, F = mlp width, S = attention side (14 for
 * window blocks, g for global ones), T = S·S tokens per window, O = neck channels. */
#include "models/sam.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "core/error.h"
#include "kernels/conv.h"
#include "kernels/fastexp.h"
#include "kernels/gelu.h"
#include "kernels/layernorm.h"
#include "models/vit.h"

/* ---- loading ---------------------------------------------------------------------------------------- */

typedef struct sam_loader {
    const safetensors *st;
    const char *prefix;
    sam_model *m;
    vlmc_error *err;
} sam_loader;

/* The tensor <prefix>name with ndim dims of shape (entries < 0 = any); *t its view. */
static vlmc_status sam_get(sam_loader *ld, const char *name, int ndim, const int64_t *shape, tensor *t) {
    char full[512];
    if (snprintf(full, sizeof full, "%s%s", ld->prefix, name) >= (int)sizeof full)
        return vlmc_fail(ld->err, VLMC_ERR_ARG, "%s: tensor name prefix too long", ld->m->file);
    vlmc_status s = safetensors_get(ld->st, full, ndim, shape, t, ld->err);
    if (s) return s;
    if (t->type != DT_F32 && t->type != DT_F16 && t->type != DT_BF16)
        return vlmc_fail(ld->err, VLMC_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s; SAM weights must be F32, F16 or BF16",
                         ld->m->file, full, dtype_name(t->type));
    return VLMC_OK;
}

/* A weight matrix [rows, prod(rest)] as a view (converted per use when not aligned f32). */
static vlmc_status sam_mat(sam_loader *ld, const char *name, int ndim, const int64_t *shape, tensor *out) {
    vlmc_status s = sam_get(ld, name, ndim, shape, out);
    if (s) return s;
    int64_t sh[2] = {out->shape[0], tensor_numel(out) / (out->shape[0] ? out->shape[0] : 1)};
    *out = tensor_view(out->type, out->data, 2, sh);
    size_t n = (size_t)tensor_numel(out);
    if (!vision_weight_is_direct(out) && n > ld->m->scratch_floats) ld->m->scratch_floats = n;
    return VLMC_OK;
}

/* A small tensor as f32 (a view, or an owned copy). */
static vlmc_status sam_f32(sam_loader *ld, const char *name, int ndim, const int64_t *shape, const float **out) {
    tensor t;
    vlmc_status s = sam_get(ld, name, ndim, shape, &t);
    if (s) return s;
    if (vision_weight_is_direct(&t)) {
        *out = t.data;
        return VLMC_OK;
    }
    sam_model *m = ld->m;
    size_t n = (size_t)tensor_numel(&t);
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? 2 * m->cap_owned : 64;
        float **o = realloc(m->owned, (size_t)cap * sizeof *o);
        if (!o) return vlmc_fail(ld->err, VLMC_ERR_NOMEM, "out of memory");
        m->owned = o;
        m->cap_owned = cap;
    }
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) return vlmc_fail(ld->err, VLMC_ERR_NOMEM, "out of memory");
    m->owned[m->n_owned++] = p;
    if ((s = convert_to_f32(p, t.data, t.type, n, ld->err))) return s;
    *out = p;
    return VLMC_OK;
}

static vlmc_status sam_vec(sam_loader *ld, const char *name, int64_t n, const float **out) {
    return sam_f32(ld, name, 1, &n, out);
}

static bool sam_has(sam_loader *ld, const char *name) {
    char full[512];
    return snprintf(full, sizeof full, "%s%s", ld->prefix, name) < (int)sizeof full && safetensors_find(ld->st, full);
}

static vlmc_status load_neck(sam_loader *ld, const char *name, sam_neck *nk) {
    const sam_model *m = ld->m;
    const int64_t O = m->out_chans;
    char n[6][96];
    static const char *const sub[6] = {"0.weight", "1.weight", "1.bias", "2.weight", "3.weight", "3.bias"};
    for (int i = 0; i < 6; i++) snprintf(n[i], sizeof n[i], "%s.%s", name, sub[i]);
    vlmc_status s;
    if ((s = sam_mat(ld, n[0], 4, (int64_t[]){O, m->D, 1, 1}, &nk->conv1)) || (s = sam_vec(ld, n[1], O, &nk->ln1_w)) ||
        (s = sam_vec(ld, n[2], O, &nk->ln1_b)) || (s = sam_mat(ld, n[3], 4, (int64_t[]){O, O, 3, 3}, &nk->conv2)) ||
        (s = sam_vec(ld, n[4], O, &nk->ln2_w)) || (s = sam_vec(ld, n[5], O, &nk->ln2_b)))
        return s;
    return VLMC_OK;
}

vlmc_status sam_load(const safetensors *st, const char *prefix, sam_model *m, vlmc_error *err) {
    memset(m, 0, sizeof *m);
    const char *where = safetensors_count(st) ? safetensors_file_path(st, safetensors_at(st, 0)->file) : "safetensors";
    snprintf(m->file, sizeof m->file, "%s", where);
    sam_loader ld = {st, prefix ? prefix : "", m, err};
    vlmc_status s;
    tensor pos, pw, rh;
    if ((s = sam_get(&ld, "pos_embed", 4, (int64_t[]){1, -1, -1, -1}, &pos)) ||
        (s = sam_get(&ld, "patch_embed.proj.weight", 4, (int64_t[]){-1, -1, -1, -1}, &pw)) ||
        (s = sam_get(&ld, "blocks.0.attn.rel_pos_h", 2, (int64_t[]){-1, -1}, &rh)))
        return s;
    m->grid = (int)pos.shape[1];
    m->D = (int)pos.shape[3];
    m->C = (int)pw.shape[1];
    m->P = (int)pw.shape[2];
    m->head_dim = (int)rh.shape[1];
    if (pos.shape[2] != m->grid || pw.shape[0] != m->D || pw.shape[3] != m->P || m->P < 1 || m->grid < 1 || m->D < 1 ||
        m->C < 1 || m->head_dim < 1 || m->D % m->head_dim || m->grid > 1024 || m->P > 1024)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: inconsistent SAM encoder (pos_embed grid %d, width %d, patch %d, head dim %d)",
                         m->file, m->grid, m->D, m->P, m->head_dim);
    m->H = m->D / m->head_dim;
    m->image_size = m->grid * m->P;
    while (m->L < 1024) {
        char n[64];
        snprintf(n, sizeof n, "blocks.%d.norm1.weight", m->L);
        if (!sam_has(&ld, n)) break;
        m->L++;
    }
    char n[96];
    tensor t;
    snprintf(n, sizeof n, "blocks.0.mlp.lin1.weight");
    if ((s = sam_get(&ld, n, 2, (int64_t[]){-1, m->D}, &t))) return s;
    m->F = (int)t.shape[0];
    if ((s = sam_get(&ld, "neck.0.weight", 4, (int64_t[]){-1, m->D, 1, 1}, &t))) return s;
    m->out_chans = (int)t.shape[0];
    if (m->F < 1 || m->out_chans < 1 || m->L < 1)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: SAM encoder without blocks, mlp or neck channels", m->file);
    int prev = m->out_chans;
    for (m->n_down = 0; m->n_down < SAM_MAX_DOWNSAMPLES; m->n_down++) {
        snprintf(n, sizeof n, "downsamples.%d.weight", m->n_down);
        if (!sam_has(&ld, n)) break;
        if ((s = sam_mat(&ld, n, 4, (int64_t[]){-1, prev, 3, 3}, &m->down[m->n_down]))) return s;
        prev = m->down_ch[m->n_down] = (int)m->down[m->n_down].shape[0];
        if (prev < 1) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: '%s' has no output channels", m->file, n);
    }
    const int64_t D = m->D, F = m->F, g = m->grid;
    if ((s = sam_mat(&ld, "patch_embed.proj.weight", 4, (int64_t[]){D, m->C, m->P, m->P}, &m->patch_w)) ||
        (s = sam_vec(&ld, "patch_embed.proj.bias", D, &m->patch_b)) ||
        (s = sam_f32(&ld, "pos_embed", 4, (int64_t[]){1, g, g, D}, &m->pos_emb)) ||
        (s = load_neck(&ld, "neck", &m->neck)))
        goto fail;
    m->has_hd = sam_has(&ld, "hd_alpha_downsamples");
    if (m->has_hd) {
        const float *alpha;
        if ((s = sam_vec(&ld, "hd_alpha_downsamples", 1, &alpha)) || (s = load_neck(&ld, "neck_hd", &m->neck_hd))) goto fail;
        m->hd_alpha = alpha[0];
    }
    if (!(m->blocks = calloc((size_t)(m->L ? m->L : 1), sizeof *m->blocks))) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        goto fail;
    }
    m->first_global = -1;
    for (int l = 0; l < m->L; l++) {
        sam_block *b = &m->blocks[l];
        char w[14][96];
        static const char *const sub[14] = {"norm1.weight",   "norm1.bias",     "norm2.weight",    "norm2.bias",
                                            "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
                                            "mlp.lin1.weight", "mlp.lin1.bias", "mlp.lin2.weight", "mlp.lin2.bias",
                                            "attn.rel_pos_h", "attn.rel_pos_w"};
        for (int i = 0; i < 14; i++) snprintf(w[i], sizeof w[i], "blocks.%d.%s", l, sub[i]);
        tensor r;
        if ((s = sam_get(&ld, w[12], 2, (int64_t[]){-1, m->head_dim}, &r))) goto fail;
        const int64_t R = r.shape[0];
        /* window blocks are built with input_size (14, 14), global ones with the grid: 2·size - 1 rows */
        b->window = R == 2 * g - 1 ? 0 : (int)(R + 1) / 2;
        if (R % 2 == 0 || R < 1 || (b->window && b->window > g + 13)) {
            s = vlmc_fail(err, VLMC_ERR_UNSUPPORTED,
                          "%s: block %d's rel_pos_h has %lld rows; neither a window nor the %lld-wide grid (resized "
                          "relative positions are not supported)",
                          m->file, l, (long long)R, (long long)g);
            goto fail;
        }
        if (!b->window && m->first_global < 0) m->first_global = l;
        const int64_t S = b->window ? b->window : g;
        if ((s = sam_vec(&ld, w[0], D, &b->ln1_w)) || (s = sam_vec(&ld, w[1], D, &b->ln1_b)) ||
            (s = sam_vec(&ld, w[2], D, &b->ln2_w)) || (s = sam_vec(&ld, w[3], D, &b->ln2_b)) ||
            (s = sam_mat(&ld, w[4], 2, (int64_t[]){3 * D, D}, &b->qkv_w)) || (s = sam_vec(&ld, w[5], 3 * D, &b->qkv_b)) ||
            (s = sam_mat(&ld, w[6], 2, (int64_t[]){D, D}, &b->proj_w)) || (s = sam_vec(&ld, w[7], D, &b->proj_b)) ||
            (s = sam_mat(&ld, w[8], 2, (int64_t[]){F, D}, &b->lin1_w)) || (s = sam_vec(&ld, w[9], F, &b->lin1_b)) ||
            (s = sam_mat(&ld, w[10], 2, (int64_t[]){D, F}, &b->lin2_w)) || (s = sam_vec(&ld, w[11], D, &b->lin2_b)) ||
            (s = sam_f32(&ld, w[12], 2, (int64_t[]){2 * S - 1, m->head_dim}, &b->rel_h)) ||
            (s = sam_f32(&ld, w[13], 2, (int64_t[]){2 * S - 1, m->head_dim}, &b->rel_w)))
            goto fail;
    }
    if (m->has_hd && m->first_global < 0) {
        s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: SAM with neck_hd needs a global-attention block", m->file);
        goto fail;
    }
    return VLMC_OK;
fail:
    sam_free(m);
    return s;
}

void sam_free(sam_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->blocks);
    memset(m, 0, sizeof *m);
}

int sam_out_side(const sam_model *m) {
    int s = SAM_NECK_SIZE;
    for (int i = 0; i < m->n_down; i++) s = conv_out_size(s, 3, 2, 1);
    return s;
}

int sam_out_channels(const sam_model *m) { return m->n_down ? m->down_ch[m->n_down - 1] : m->out_chans; }

/* ---- forward ------------------------------------------------------------------------------------------ */

/* Query rows per attention block: the block's scores stay small (64 × 4096 floats = 1 MiB for SAM-B's grid). */
enum { SAM_QB = 64 };

typedef struct sam_work {
    float *x, *h, *win, *qkv, *att, *f, *col, *scores, *scratch;
    float *map1, *map2, *mapi; /* neck / interpolation / downsample maps */
} sam_work;

/* Attention of nw windows of S×S tokens: qkv [nw·T, 3D] (q | k | v, heads as hd-wide column blocks), out [nw·T, D].
 * Per (window, head), blocks of SAM_QB queries:
 *   A = (q·scale) k^T                                             [qb, T]
 *   A[i, kh·S + kw] += q_i · rel_h[qh_i - kh + S - 1] + q_i · rel_w[qw_i - kw + S - 1]
 *   out = softmax(A) v */
static void sam_attention(const sam_model *m, const sam_block *b, float *out, const float *qkv, int nw, int S,
                          float *scores) {
    const int T = S * S, D = m->D, hd = m->head_dim, H = m->H, ld = 3 * D;
    const float scale = (float)(1.0 / sqrt((double)hd));
    #pragma omp parallel for schedule(dynamic, 1)
    for (int wh = 0; wh < nw * H; wh++) {
        const int w = wh / H, h = wh % H;
        float *A = scores + (size_t)omp_get_thread_num() * ((size_t)SAM_QB * T + 2 * (size_t)S);
        float *relh = A + (size_t)SAM_QB * T, *relw = relh + S;
        const float *Q = qkv + (size_t)w * T * ld + (size_t)h * hd, *K = Q + D, *V = Q + 2 * D;
        for (int i0 = 0; i0 < T; i0 += SAM_QB) {
            const int qb = T - i0 < SAM_QB ? T - i0 : SAM_QB;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, qb, T, hd, scale, Q + (size_t)i0 * ld, ld, K, ld, 0.0f,
                        A, T);
            for (int i = 0; i < qb; i++) {
                const int qi = i0 + i, qh = qi / S, qw = qi % S;
                const float *q = Q + (size_t)qi * ld;
                for (int k = 0; k < S; k++) {
                    const float *rh = b->rel_h + (size_t)(qh - k + S - 1) * hd, *rw = b->rel_w + (size_t)(qw - k + S - 1) * hd;
                    float sh = 0.0f, sw = 0.0f;
                    for (int d = 0; d < hd; d++) {
                        sh += q[d] * rh[d];
                        sw += q[d] * rw[d];
                    }
                    relh[k] = sh;
                    relw[k] = sw;
                }
                float *a = A + (size_t)i * T, mx = -INFINITY, sum = 0.0f;
                for (int kh = 0; kh < S; kh++)
                    for (int kw = 0; kw < S; kw++) {
                        float v = a[kh * S + kw] + relh[kh] + relw[kw];
                        a[kh * S + kw] = v;
                        mx = v > mx ? v : mx;
                    }
                for (int j = 0; j < T; j++) {
                    a[j] = fast_expf(a[j] - mx);
                    sum += a[j];
                }
                const float inv = 1.0f / sum;
                for (int j = 0; j < T; j++) a[j] *= inv;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, qb, hd, T, 1.0f, A, T, V, ld, 0.0f,
                        out + ((size_t)w * T + i0) * D + (size_t)h * hd, D);
        }
    }
}

/* One block in place on x [g·g, D]. */
static void sam_block_forward(const sam_model *m, const sam_block *b, sam_work *w) {
    const int g = m->grid, D = m->D, F = m->F, S = b->window ? b->window : g;
    const int nside = (g + S - 1) / S, nw = nside * nside, T = S * S;
    const size_t N = (size_t)g * g;
    layernorm_forward(w->h, w->x, b->ln1_w, b->ln1_b, N, (size_t)D, 1e-6f);
    /* window_partition: [nw, S, S, D], positions past the grid are zeros */
    const float *in = w->h;
    if (b->window) {
        memset(w->win, 0, (size_t)nw * T * D * sizeof(float));
        for (int y = 0; y < g; y++)
            for (int x = 0; x < g; x++) {
                const int wi = (y / S) * nside + x / S, t = (y % S) * S + x % S;
                memcpy(w->win + ((size_t)wi * T + t) * D, w->h + ((size_t)y * g + x) * D, (size_t)D * sizeof(float));
            }
        in = w->win;
    }
    vision_linear(w->qkv, in, (size_t)nw * T, &b->qkv_w, b->qkv_b, w->scratch, false);
    sam_attention(m, b, w->att, w->qkv, nw, S, w->scores);
    /* window_unpartition (dropping the padding) into h, then x += proj(h) */
    const float *att = w->att;
    if (b->window) {
        for (int y = 0; y < g; y++)
            for (int x = 0; x < g; x++) {
                const int wi = (y / S) * nside + x / S, t = (y % S) * S + x % S;
                memcpy(w->h + ((size_t)y * g + x) * D, w->att + ((size_t)wi * T + t) * D, (size_t)D * sizeof(float));
            }
        att = w->h;
    }
    vision_linear(w->x, att, N, &b->proj_w, b->proj_b, w->scratch, true);
    layernorm_forward(w->h, w->x, b->ln2_w, b->ln2_b, N, (size_t)D, 1e-6f);
    vision_linear(w->f, w->h, N, &b->lin1_w, b->lin1_b, w->scratch, false);
    gelu_forward(w->f, w->f, N * (size_t)F);
    vision_linear(w->x, w->f, N, &b->lin2_w, b->lin2_b, w->scratch, true);
}

/* A bias-free Conv2d K×K (stride, pad) on in [H, W, C] → out [OH, OW, O] through im2col. */
static void conv_nhwc(float *out, const float *in, int H, int W, int C, const tensor *wt, int K, int stride, int pad,
                      sam_work *w) {
    const int OH = conv_out_size(H, K, stride, pad), OW = conv_out_size(W, K, stride, pad);
    if (K == 1 && stride == 1 && pad == 0) {
        vision_linear(out, in, (size_t)H * W, wt, NULL, w->scratch, false);
        return;
    }
    im2col_nhwc(w->col, in, H, W, C, K, stride, pad);
    vision_linear(out, w->col, (size_t)OH * OW, wt, NULL, w->scratch, false);
}

/* neck → 96×96 → downsamples, from x [g, g, D]; the stages are copied out when asked. dst [s, s, c]. */
static void sam_neck_path(const sam_model *m, const sam_neck *nk, const float *x, float *neck_out, float *interp_out,
                          float *dst, sam_work *w) {
    const int g = m->grid, O = m->out_chans, NI = SAM_NECK_SIZE;
    const size_t N = (size_t)g * g;
    conv_nhwc(w->map1, x, g, g, m->D, &nk->conv1, 1, 1, 0, w);
    layernorm_forward(w->map1, w->map1, nk->ln1_w, nk->ln1_b, N, (size_t)O, 1e-6f); /* LayerNorm2d */
    conv_nhwc(w->map2, w->map1, g, g, O, &nk->conv2, 3, 1, 1, w);
    layernorm_forward(w->map2, w->map2, nk->ln2_w, nk->ln2_b, N, (size_t)O, 1e-6f);
    if (neck_out) memcpy(neck_out, w->map2, N * O * sizeof(float));
    interp_bilinear_nhwc(w->mapi, NI, NI, w->map2, g, g, O);
    if (interp_out) memcpy(interp_out, w->mapi, (size_t)NI * NI * O * sizeof(float));
    /* downsamples, ping-ponging between map1 and map2 (each at least 96·96/4·c floats) */
    const float *cur = w->mapi;
    int side = NI, ch = O;
    for (int i = 0; i < m->n_down; i++) {
        float *next = i == m->n_down - 1 ? dst : (i % 2 ? w->map2 : w->map1);
        conv_nhwc(next, cur, side, side, ch, &m->down[i], 3, 2, 1, w);
        side = conv_out_size(side, 3, 2, 1);
        ch = m->down_ch[i];
        cur = next;
    }
    if (!m->n_down) memcpy(dst, w->mapi, (size_t)NI * NI * O * sizeof(float));
}

vlmc_status sam_encode(const sam_model *m, const float *pixels, const sam_outputs *o, vlmc_error *err) {
    const int g = m->grid, D = m->D, P = m->P, C = m->C, O = m->out_chans, NI = SAM_NECK_SIZE, S = m->image_size;
    const size_t N = (size_t)g * g;
    /* largest window side and token count of any block */
    int maxS = 0;
    for (int l = 0; l < m->L; l++) {
        int s = m->blocks[l].window ? m->blocks[l].window : g;
        maxS = s > maxS ? s : maxS;
    }
    size_t rows = N; /* tokens of the padded windows */
    for (int l = 0; l < m->L; l++)
        if (m->blocks[l].window) {
            size_t nside = (size_t)(g + m->blocks[l].window - 1) / m->blocks[l].window, t = nside * m->blocks[l].window;
            if (t * t > rows) rows = t * t;
        }
    size_t maxc = (size_t)O, col = N * (size_t)C * P * P; /* widest map channels, largest im2col */
    if (N * (size_t)O * 9 > col) col = N * (size_t)O * 9;
    int side = NI, ch = O;
    for (int i = 0; i < m->n_down; i++) {
        int os = conv_out_size(side, 3, 2, 1);
        if ((size_t)os * os * ch * 9 > col) col = (size_t)os * os * ch * 9;
        side = os;
        ch = m->down_ch[i];
        if ((size_t)ch > maxc) maxc = ch;
    }
    const size_t map = (size_t)NI * NI * maxc > N * maxc ? (size_t)NI * NI * maxc : N * maxc;
    const int nt = omp_get_max_threads();
    sam_work w = {0};
    w.x = malloc(N * D * sizeof(float));
    w.h = malloc(N * D * sizeof(float));
    w.win = malloc(rows * D * sizeof(float));
    w.qkv = malloc(rows * 3 * D * sizeof(float));
    w.att = malloc(rows * D * sizeof(float));
    w.f = malloc(N * (size_t)m->F * sizeof(float));
    w.col = malloc(col * sizeof(float));
    w.scores = malloc((size_t)nt * ((size_t)SAM_QB * maxS * maxS + 2 * (size_t)maxS) * sizeof(float));
    w.scratch = malloc((m->scratch_floats ? m->scratch_floats : 1) * sizeof(float));
    w.map1 = malloc(map * sizeof(float));
    w.map2 = malloc(map * sizeof(float));
    w.mapi = malloc((size_t)NI * NI * O * sizeof(float));
    float *hd_feat = m->has_hd ? malloc(N * D * sizeof(float)) : NULL;
    float *down = malloc((size_t)sam_out_side(m) * sam_out_side(m) * sam_out_channels(m) * sizeof(float));
    float *hd_down = m->has_hd ? malloc((size_t)sam_out_side(m) * sam_out_side(m) * sam_out_channels(m) * sizeof(float)) : NULL;
    float *img = malloc((size_t)S * S * C * sizeof(float));
    vlmc_status s = VLMC_OK;
    if (!w.x || !w.h || !w.win || !w.qkv || !w.att || !w.f || !w.col || !w.scores || !w.scratch || !w.map1 || !w.map2 ||
        !w.mapi || (m->has_hd && (!hd_feat || !hd_down)) || !down || !img) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory for the SAM encoder", m->file);
        goto done;
    }
    /* patch_embed: the image to NHWC, unfolded into P×P patches, one GEMM; then + pos_embed */
    for (int c = 0; c < C; c++)
        for (size_t i = 0; i < (size_t)S * S; i++) img[i * C + c] = pixels[(size_t)c * S * S + i];
    im2col_nhwc(w.col, img, S, S, C, P, P, 0);
    vision_linear(w.x, w.col, N, &m->patch_w, m->patch_b, w.scratch, false);
    for (size_t i = 0; i < N * D; i++) w.x[i] += m->pos_emb[i];
    if (o->embed) memcpy(o->embed, w.x, N * D * sizeof(float));
    for (int l = 0; l < m->L; l++) {
        sam_block_forward(m, &m->blocks[l], &w);
        if (o->blocks) memcpy(o->blocks + (size_t)l * N * D, w.x, N * D * sizeof(float));
        if (l == m->first_global && hd_feat) memcpy(hd_feat, w.x, N * D * sizeof(float));
    }
    const size_t out_n = (size_t)sam_out_side(m) * sam_out_side(m) * sam_out_channels(m);
    sam_neck_path(m, &m->neck, w.x, o->neck, o->neck_interp, down, &w);
    if (o->down) memcpy(o->down, down, out_n * sizeof(float));
    if (m->has_hd) {
        sam_neck_path(m, &m->neck_hd, hd_feat, o->neck_hd, o->neck_hd_interp, hd_down, &w);
        if (o->hd_down) memcpy(o->hd_down, hd_down, out_n * sizeof(float));
        for (size_t i = 0; i < out_n; i++) down[i] += hd_down[i] * m->hd_alpha;
    }
    memcpy(o->out, down, out_n * sizeof(float));
done:
    free(w.x); free(w.h); free(w.win); free(w.qkv); free(w.att); free(w.f); free(w.col); free(w.scores);
    free(w.scratch); free(w.map1); free(w.map2); free(w.mapi);
    free(hd_feat); free(down); free(hd_down); free(img);
    return s;
}
