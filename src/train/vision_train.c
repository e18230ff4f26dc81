/* LLaVA's vision half in training: CLIP vision tower (CLIPVisionTransformer, transformers 4.47: patch
 * embedding as a matmul on im2col patches, class + position embeddings, pre_layrnorm, VLR encoder layers
 * up to the selected feature layer) and LlavaMultiModalProjector (linear_1 → act → linear_2), forward and
 * backward. Layers past the selected one and post_layernorm are not on the loss path and never run. */
#include <math.h>
#include <string.h>

#include "kernels/layernorm.h"
#include "kernels/train_ops.h"
#include "train/train_internal.h"

void tm_vision_forward(train_model *m, const float *pixels) {
    tm_acts *a = m->a;
    const tm_vision *w = &m->vw;
    const int N = m->N, VT = m->VT, P = m->VP, C = m->VC, S = m->VS, gs = S / P, NP = m->VNP;
    const int64_t VR = (int64_t)N * VT, VD = m->VD, VF = m->VF, CPP = (int64_t)C * P * P, D = m->D;
    const int NS = VT - m->drop_first;
    const float scale = 1.0f / sqrtf((float)m->vhd);
    /* patches [N·NP, C·P·P] in Conv2d weight order (c, ky, kx); pe = patches W^T (CLIP: no bias) */
    for (int n = 0; n < N; n++)
        for (int py = 0; py < gs; py++)
            for (int px = 0; px < gs; px++) {
                float *row = a->patches + ((int64_t)n * NP + py * gs + px) * CPP;
                for (int c = 0; c < C; c++)
                    for (int ky = 0; ky < P; ky++)
                        memcpy(row + ((int64_t)c * P + ky) * P,
                               pixels + (((int64_t)n * C + c) * S + py * P + ky) * S + px * P,
                               (size_t)P * sizeof(float));
            }
    matmul_forward(a->pe, a->patches, w->patch_w, NULL, (int64_t)N * NP, CPP, VD);
    for (int n = 0; n < N; n++)
        for (int t = 0; t < VT; t++) {
            float *e = a->vemb + ((int64_t)n * VT + t) * VD;
            const float *src = t == 0 ? w->class_emb : a->pe + ((int64_t)n * NP + t - 1) * VD;
            for (int64_t i = 0; i < VD; i++) e[i] = src[i] + w->pos_emb[(int64_t)t * VD + i];
        }
    float *x0 = m->VLR > 0 ? a->vl[0].res : a->vfinal;
    layernorm_forward_train(x0, a->pre_mean, a->pre_rstd, a->vemb, w->pre_ln_w, w->pre_ln_b, (size_t)VR, (size_t)VD,
                            m->veps);
    for (int l = 0; l < m->VLR; l++) {
        const tm_vis_layer *lw = &w->layers[l];
        tm_vis_acts *v = &a->vl[l];
        float *out = l + 1 < m->VLR ? a->vl[l + 1].res : a->vfinal;
        layernorm_forward_train(v->ln1, v->m1, v->r1, v->res, lw->ln1_w, lw->ln1_b, (size_t)VR, (size_t)VD, m->veps);
        matmul_forward(v->q, v->ln1, lw->q_w, lw->q_b, VR, VD, VD);
        matmul_forward(v->k, v->ln1, lw->k_w, lw->k_b, VR, VD, VD);
        matmul_forward(v->v, v->ln1, lw->v_w, lw->v_b, VR, VD, VD);
        attention_forward(v->att, v->probs, v->q, v->k, v->v, NULL, 0, N, VT, m->VH, m->VH, m->vhd, scale);
        matmul_forward(v->res2, v->att, lw->o_w, lw->o_b, VR, VD, VD);
        for (int64_t i = 0; i < VR * VD; i++) v->res2[i] += v->res[i];
        layernorm_forward_train(v->ln2, v->m2, v->r2, v->res2, lw->ln2_w, lw->ln2_b, (size_t)VR, (size_t)VD, m->veps);
        matmul_forward(v->fc1, v->ln2, lw->fc1_w, lw->fc1_b, VR, VD, VF);
        act_forward(m->vact, v->act, v->fc1, (size_t)(VR * VF));
        matmul_forward(out, v->act, lw->fc2_w, lw->fc2_b, VR, VF, VD);
        for (int64_t i = 0; i < VR * VD; i++) out[i] += v->res2[i];
    }
    /* selected features (strategy "default" drops the class token), then the projector */
    for (int n = 0; n < N; n++)
        memcpy(a->feats + (int64_t)n * NS * VD, a->vfinal + ((int64_t)n * VT + m->drop_first) * VD,
               (size_t)(NS * VD) * sizeof(float));
    const int64_t NR = (int64_t)N * NS;
    matmul_forward(a->ph1, a->feats, w->p1_w, w->p1_b, NR, VD, D);
    act_forward(m->pact, a->pa1, a->ph1, (size_t)(NR * D));
    matmul_forward(a->proj, a->pa1, w->p2_w, w->p2_b, NR, D, D);
}

void tm_vision_backward(train_model *m, const float *d_proj) {
    tm_acts *a = m->a;
    const tm_vision *w = &m->vw, *g = &m->vg;
    const int N = m->N, VT = m->VT, NP = m->VNP;
    const int64_t VR = (int64_t)N * VT, VD = m->VD, VF = m->VF, CPP = (int64_t)m->VC * m->VP * m->VP, D = m->D;
    const int NS = VT - m->drop_first;
    const int64_t NR = (int64_t)N * NS;
    const float scale = 1.0f / sqrtf((float)m->vhd);
    const size_t fV = (size_t)(VR * VD) * sizeof(float);
    /* projector */
    memset(a->dpa1, 0, (size_t)(NR * D) * sizeof(float));
    matmul_backward(a->dpa1, g->p2_w, g->p2_b, d_proj, a->pa1, w->p2_w, NR, D, D);
    act_backward(m->pact, a->dpa1, a->dpa1, a->ph1, (size_t)(NR * D));
    if (!m->vision_grads) {
        matmul_backward(NULL, g->p1_w, g->p1_b, a->dpa1, a->feats, w->p1_w, NR, VD, D);
        return;
    }
    float *dfeats = a->dvln; /* [NR, VD] fits in [VR, VD] */
    memset(dfeats, 0, (size_t)(NR * VD) * sizeof(float));
    matmul_backward(dfeats, g->p1_w, g->p1_b, a->dpa1, a->feats, w->p1_w, NR, VD, D);
    memset(a->dvres, 0, fV);
    for (int n = 0; n < N; n++)
        memcpy(a->dvres + ((int64_t)n * VT + m->drop_first) * VD, dfeats + (int64_t)n * NS * VD,
               (size_t)(NS * VD) * sizeof(float));
    /* encoder layers in reverse; dvres = gradient of the layer output */
    for (int l = m->VLR - 1; l >= 0; l--) {
        const tm_vis_layer *lw = &w->layers[l], *lg = &g->layers[l];
        tm_vis_acts *v = &a->vl[l];
        memset(a->dvfc, 0, (size_t)(VR * VF) * sizeof(float));
        matmul_backward(a->dvfc, lg->fc2_w, lg->fc2_b, a->dvres, v->act, lw->fc2_w, VR, VF, VD);
        act_backward(m->vact, a->dvfc, a->dvfc, v->fc1, (size_t)(VR * VF));
        memset(a->dvln, 0, fV);
        matmul_backward(a->dvln, lg->fc1_w, lg->fc1_b, a->dvfc, v->ln2, lw->fc1_w, VR, VD, VF);
        layernorm_backward(a->dvres, lg->ln2_w, lg->ln2_b, a->dvln, v->res2, lw->ln2_w, v->m2, v->r2, (size_t)VR,
                           (size_t)VD);
        memset(a->dvatt, 0, fV);
        matmul_backward(a->dvatt, lg->o_w, lg->o_b, a->dvres, v->att, lw->o_w, VR, VD, VD);
        attention_backward(a->dvq, a->dvk, a->dvv, a->dvatt, v->probs, v->q, v->k, v->v, N, VT, m->VH, m->VH, m->vhd,
                           scale);
        memset(a->dvln, 0, fV);
        matmul_backward(a->dvln, lg->q_w, lg->q_b, a->dvq, v->ln1, lw->q_w, VR, VD, VD);
        matmul_backward(a->dvln, lg->k_w, lg->k_b, a->dvk, v->ln1, lw->k_w, VR, VD, VD);
        matmul_backward(a->dvln, lg->v_w, lg->v_b, a->dvv, v->ln1, lw->v_w, VR, VD, VD);
        layernorm_backward(a->dvres, lg->ln1_w, lg->ln1_b, a->dvln, v->res, lw->ln1_w, v->m1, v->r1, (size_t)VR,
                           (size_t)VD);
    }
    /* pre_layrnorm, then the embeddings: class token, positions, patch matmul */
    float *demb = a->dvln;
    memset(demb, 0, fV);
    layernorm_backward(demb, g->pre_ln_w, g->pre_ln_b, a->dvres, a->vemb, w->pre_ln_w, a->pre_mean, a->pre_rstd,
                       (size_t)VR, (size_t)VD);
    for (int n = 0; n < N; n++)
        for (int t = 0; t < VT; t++) {
            const float *d = demb + ((int64_t)n * VT + t) * VD;
            if (g->pos_emb)
                for (int64_t i = 0; i < VD; i++) g->pos_emb[(int64_t)t * VD + i] += d[i];
            if (t == 0) {
                if (g->class_emb)
                    for (int64_t i = 0; i < VD; i++) g->class_emb[i] += d[i];
            } else {
                memcpy(a->dpe + ((int64_t)n * NP + t - 1) * VD, d, (size_t)VD * sizeof(float));
            }
        }
    matmul_backward(NULL, g->patch_w, NULL, a->dpe, a->patches, w->patch_w, (int64_t)N * NP, CPP, VD);
}
