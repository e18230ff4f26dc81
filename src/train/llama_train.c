/* The Llama decoder's training graph (LlamaForCausalLM in transformers 4.47, training mode): forward that
 * keeps what the backward needs, and the backward, layer by layer in reverse. Read with train_model.h's
 * dimension names; activations are laid out in train_model.c (tm_acts). */
#include <math.h>
#include <string.h>

#include "kernels/train_ops.h"
#include "train/train_internal.h"

/* ---- linear with optional LoRA ------------------------------------------------------------ */

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void tm_linear_forward(train_model *m, int l, int which, float *out, const float *inp, int64_t R, int64_t C,
                       int64_t OC) {
    const tm_linear *w = &m->w.layers[l].lin[which];
    matmul_forward(out, inp, w->w, w->b, R, C, OC);
    if (!w->lora_a) return;
    tm_dec_acts *d = &m->a->dl[l];
    const int64_t r = m->lora.r;
    const float *x = inp;
    if (d->lx[which]) {
        /* dropout mask from a counter hash of (seed, layer, module, element): reproducible on resume */
        const float p = m->training ? m->lora.dropout : 0.0f, keep = 1.0f / (1.0f - p);
        const uint64_t base = mix64(m->dropout_seed ^ ((uint64_t)(l * LIN_COUNT + which + 1) << 40));
        float *mk = d->lmask[which], *xd = d->lx[which];
        #pragma omp parallel for schedule(static) if (R * C > 32768)
        for (int64_t i = 0; i < R * C; i++) {
            float s = keep;
            if (p > 0) {
                double u = (double)(mix64(base + (uint64_t)i) >> 11) * 0x1.0p-53;
                s = u < p ? 0.0f : keep;
            }
            mk[i] = s;
            xd[i] = inp[i] * s;
        }
        x = xd;
    }
    float *h = d->lh[which], *tmp = m->a->dlin; /* [R, r], then [R, OC] */
    matmul_forward(h, x, w->lora_a, NULL, R, C, r);
    matmul_forward(tmp, h, w->lora_b, NULL, R, r, OC);
    const float s = m->lora_scale;
    #pragma omp parallel for schedule(static) if (R * OC > 32768)
    for (int64_t i = 0; i < R * OC; i++) out[i] += s * tmp[i];
}

void tm_linear_backward(train_model *m, int l, int which, float *dinp, const float *dout, const float *inp,
                        int64_t R, int64_t C, int64_t OC) {
    const tm_linear *w = &m->w.layers[l].lin[which];
    const tm_linear *g = &m->g.layers[l].lin[which];
    matmul_backward(dinp, g->w, g->b, dout, inp, w->w, R, C, OC);
    if (!w->lora_a) return;
    tm_dec_acts *d = &m->a->dl[l];
    const int64_t r = m->lora.r;
    const float s = m->lora_scale;
    const float *x = d->lx[which] ? d->lx[which] : inp;
    /* out += s · h B^T, h = x A^T:  dB += s · dout^T h;  dh = s · dout B;  dA += dh^T x;  dx += dh A (· mask) */
    float *dh = m->a->dlh, *dx = m->a->dlin;
    memset(dh, 0, (size_t)(R * r) * sizeof(float));
    matmul_backward(dh, NULL, NULL, dout, NULL, w->lora_b, R, r, OC);
    #pragma omp parallel for schedule(static) if (R * r > 32768)
    for (int64_t i = 0; i < R * r; i++) dh[i] *= s;
    if (g->lora_b) {
        /* dB += s · dout^T h  ==  dout^T (s · h): reuse the scaled product through a scaled copy of h */
        float *hs = dx; /* [R, r] fits in [R, wide] */
        for (int64_t i = 0; i < R * r; i++) hs[i] = s * d->lh[which][i];
        matmul_backward(NULL, g->lora_b, NULL, dout, hs, NULL, R, r, OC);
    }
    if (!dinp && !g->lora_a) return;
    if (g->lora_a) matmul_backward(NULL, g->lora_a, NULL, dh, x, NULL, R, C, r);
    if (dinp) {
        if (d->lmask[which]) {
            memset(dx, 0, (size_t)(R * C) * sizeof(float));
            matmul_backward(dx, NULL, NULL, dh, NULL, w->lora_a, R, C, r);
            const float *mk = d->lmask[which];
            #pragma omp parallel for schedule(static) if (R * C > 32768)
            for (int64_t i = 0; i < R * C; i++) dinp[i] += dx[i] * mk[i];
        } else {
            matmul_backward(dinp, NULL, NULL, dh, NULL, w->lora_a, R, C, r);
        }
    }
}

/* ---- forward -------------------------------------------------------------------------------- */

void tm_decoder_forward(train_model *m, const float *embeds) {
    tm_acts *a = m->a;
    const int B = m->B, T = m->T, L = m->L, H = m->H, KVH = m->KVH, hd = m->hd;
    const int64_t R = (int64_t)B * T, D = m->D, QD = (int64_t)H * hd, KD = (int64_t)KVH * hd, I = m->I, V = m->V;
    const float scale = 1.0f / sqrtf((float)hd);
    /* embeddings: token rows, or the caller's (VLM: image features spliced in) */
    if (embeds) memcpy(a->dl[0].res, embeds, (size_t)(R * D) * sizeof(float));
    else embedding_forward(a->dl[0].res, m->ids, m->w.tok_emb, R, D);
    for (int l = 0; l < L; l++) {
        const tm_dec_layer *w = &m->w.layers[l];
        tm_dec_acts *d = &a->dl[l];
        float *res_out = l + 1 < L ? a->dl[l + 1].res : a->res_final;
        /* attention block: res2 = res + o(attn(rope(q), rope(k), v)) on xn1 = rmsnorm(res) */
        rmsnorm_forward(d->xn1, d->rs1, d->res, w->attn_norm, R, D, m->eps);
        tm_linear_forward(m, l, LIN_Q, d->q, d->xn1, R, D, QD);
        tm_linear_forward(m, l, LIN_K, d->k, d->xn1, R, D, KD);
        tm_linear_forward(m, l, LIN_V, d->v, d->xn1, R, D, KD);
        rope_forward(d->q, a->cos_t, a->sin_t, R, H, hd, m->rot);
        rope_forward(d->k, a->cos_t, a->sin_t, R, KVH, hd, m->rot);
        attention_forward(d->att, d->probs, d->q, d->k, d->v, m->mask, 1, B, T, H, KVH, hd, scale);
        tm_linear_forward(m, l, LIN_O, d->res2, d->att, R, QD, D);
        for (int64_t i = 0; i < R * D; i++) d->res2[i] += d->res[i];
        /* MLP block: res_out = res2 + down(silu(gate(xn2)) · up(xn2)) on xn2 = rmsnorm(res2) */
        rmsnorm_forward(d->xn2, d->rs2, d->res2, w->ffn_norm, R, D, m->eps);
        tm_linear_forward(m, l, LIN_GATE, d->gate, d->xn2, R, D, I);
        tm_linear_forward(m, l, LIN_UP, d->up, d->xn2, R, D, I);
        swiglu_forward(d->hmid, d->gate, d->up, R * I);
        tm_linear_forward(m, l, LIN_DOWN, res_out, d->hmid, R, I, D);
        for (int64_t i = 0; i < R * D; i++) res_out[i] += d->res2[i];
    }
    rmsnorm_forward(a->xnf, a->rsf, a->res_final, m->w.final_norm, R, D, m->eps);
    matmul_forward(a->logits, a->xnf, m->w.lm_head, NULL, R, D, V);
}

/* ---- backward ------------------------------------------------------------------------------- */

void tm_decoder_backward(train_model *m, float *d_embeds) {
    tm_acts *a = m->a;
    const int B = m->B, T = m->T, L = m->L, H = m->H, KVH = m->KVH, hd = m->hd;
    const int64_t R = (int64_t)B * T, D = m->D, QD = (int64_t)H * hd, KD = (int64_t)KVH * hd, I = m->I, V = m->V;
    const float scale = 1.0f / sqrtf((float)hd);
    const size_t fD = (size_t)(R * D) * sizeof(float);
    /* the logits buffer holds dlogits (cross_entropy_backward) */
    memset(a->dxn, 0, fD);
    matmul_backward(a->dxn, m->g.lm_head, NULL, a->logits, a->xnf, m->w.lm_head, R, D, V);
    memset(a->dres, 0, fD);
    rmsnorm_backward(a->dres, m->g.final_norm, a->dxn, a->res_final, m->w.final_norm, a->rsf, R, D);
    for (int l = L - 1; l >= 0; l--) {
        const tm_dec_layer *w = &m->w.layers[l], *g = &m->g.layers[l];
        tm_dec_acts *d = &a->dl[l];
        /* MLP block; dres is the gradient of the layer output = of res2 through the residual */
        memset(a->dh, 0, (size_t)(R * I) * sizeof(float));
        tm_linear_backward(m, l, LIN_DOWN, a->dh, a->dres, d->hmid, R, I, D);
        swiglu_backward(a->dgate, a->dup, a->dh, d->gate, d->up, R * I);
        memset(a->dxn, 0, fD);
        tm_linear_backward(m, l, LIN_GATE, a->dxn, a->dgate, d->xn2, R, D, I);
        tm_linear_backward(m, l, LIN_UP, a->dxn, a->dup, d->xn2, R, D, I);
        rmsnorm_backward(a->dres, g->ffn_norm, a->dxn, d->res2, w->ffn_norm, d->rs2, R, D);
        /* attention block; dres is now the gradient of res2 = of res through the residual */
        memset(a->datt, 0, (size_t)(R * QD) * sizeof(float));
        tm_linear_backward(m, l, LIN_O, a->datt, a->dres, d->att, R, QD, D);
        attention_backward(a->dq, a->dk, a->dv, a->datt, d->probs, d->q, d->k, d->v, B, T, H, KVH, hd, scale);
        rope_backward(a->dq, a->cos_t, a->sin_t, R, H, hd, m->rot);
        rope_backward(a->dk, a->cos_t, a->sin_t, R, KVH, hd, m->rot);
        memset(a->dxn, 0, fD);
        tm_linear_backward(m, l, LIN_Q, a->dxn, a->dq, d->xn1, R, D, QD);
        tm_linear_backward(m, l, LIN_K, a->dxn, a->dk, d->xn1, R, D, KD);
        tm_linear_backward(m, l, LIN_V, a->dxn, a->dv, d->xn1, R, D, KD);
        rmsnorm_backward(a->dres, g->attn_norm, a->dxn, d->res, w->attn_norm, d->rs1, R, D);
    }
    /* dres = d(input embeddings). Image positions were replaced (masked_scatter): no embedding gradient. */
    if (m->g.tok_emb) embedding_backward(m->g.tok_emb, a->dres, m->ids, a->img_row, R, D, V);
    if (d_embeds) memcpy(d_embeds, a->dres, fD);
}
