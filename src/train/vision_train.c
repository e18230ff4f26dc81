/* The vision half of a VLM in training, forward and backward (transformers 4.47, read with train_model.h's
 * dimension names):
 *   tower      CLIPVisionTransformer (class token, pre_layrnorm), SiglipVisionTransformer (patch bias, no class
 *              token) or Idefics3VisionTransformer (SigLIP-like, bucketized position ids and a key mask from the
 *              pixel_attention_mask, post_layernorm); the patch embedding is a matmul on im2col patches;
 *              LLaVA runs VLR layers, up to the selected feature layer: the later ones and post_layernorm are
 *              not on the loss path and never run
 *   connector  LlavaMultiModalProjector (linear_1 → act → linear_2) on the selected tokens, then for LLaVA-NeXT
 *              pack_image_features (llava_next_pack: base tile, unpadded grid, image_newline after each row);
 *              Idefics3Connector: pixel_shuffle(scale_factor) then modality_projection (no bias) */
#include <math.h>
#include <string.h>

#include "kernels/layernorm.h"
#include "kernels/train_ops.h"
#include "train/train_internal.h"

vlmc_status tm_vision_forward(train_model *m, const float *pixels, vlmc_error *err) {
    tm_acts *a = m->a;
    const tm_vision *w = &m->vw;
    const int N = m->N, VT = m->VT, P = m->VP, C = m->VC, S = m->VS, gs = S / P, NP = m->VNP, cls = m->cls;
    const int64_t VR = (int64_t)N * VT, VD = m->VD, VF = m->VF, CPP = (int64_t)C * P * P, D = m->D;
    const int NS = m->NS;
    const float scale = 1.0f / sqrtf((float)m->vhd);
    const int32_t *keymask = a->vmasked ? a->vkeymask : NULL;
    /* patches [N·NP, C·P·P] in Conv2d weight order (c, ky, kx); pe = patches W^T (+ bias: SigLIP, Idefics3) */
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
    matmul_forward(a->pe, a->patches, w->patch_w, w->patch_b, (int64_t)N * NP, CPP, VD);
    /* token t of tile n: (class embedding | patch t - cls) + position embedding row */
    for (int n = 0; n < N; n++)
        for (int t = 0; t < VT; t++) {
            float *e = a->vemb + ((int64_t)n * VT + t) * VD;
            const bool is_cls = t < cls;
            const float *src = is_cls ? w->class_emb : a->pe + ((int64_t)n * NP + t - cls) * VD;
            const float *pos = w->pos_emb + (is_cls ? 0 : (int64_t)a->vpos[(int64_t)n * NP + t - cls]) * VD;
            for (int64_t i = 0; i < VD; i++) e[i] = src[i] + pos[i];
        }
    float *x0 = m->VLR > 0 ? a->vl[0].res : a->vfinal;
    if (cls)
        layernorm_forward_train(x0, a->pre_mean, a->pre_rstd, a->vemb, w->pre_ln_w, w->pre_ln_b, (size_t)VR,
                                (size_t)VD, m->veps);
    else
        memcpy(x0, a->vemb, (size_t)(VR * VD) * sizeof(float));
    for (int l = 0; l < m->VLR; l++) {
        const tm_vis_layer *lw = &w->layers[l];
        tm_vis_acts *v = &a->vl[l];
        float *out = l + 1 < m->VLR ? a->vl[l + 1].res : a->vfinal;
        layernorm_forward_train(v->ln1, v->m1, v->r1, v->res, lw->ln1_w, lw->ln1_b, (size_t)VR, (size_t)VD, m->veps);
        matmul_forward(v->q, v->ln1, lw->q_w, lw->q_b, VR, VD, VD);
        matmul_forward(v->k, v->ln1, lw->k_w, lw->k_b, VR, VD, VD);
        matmul_forward(v->v, v->ln1, lw->v_w, lw->v_b, VR, VD, VD);
        attention_forward(v->att, v->probs, v->q, v->k, v->v, keymask, 0, N, VT, m->VH, m->VH, m->vhd, scale);
        matmul_forward(v->res2, v->att, lw->o_w, lw->o_b, VR, VD, VD);
        for (int64_t i = 0; i < VR * VD; i++) v->res2[i] += v->res[i];
        layernorm_forward_train(v->ln2, v->m2, v->r2, v->res2, lw->ln2_w, lw->ln2_b, (size_t)VR, (size_t)VD, m->veps);
        matmul_forward(v->fc1, v->ln2, lw->fc1_w, lw->fc1_b, VR, VD, VF);
        act_forward(m->vact, v->act, v->fc1, (size_t)(VR * VF));
        matmul_forward(out, v->act, lw->fc2_w, lw->fc2_b, VR, VF, VD);
        for (int64_t i = 0; i < VR * VD; i++) out[i] += v->res2[i];
    }
    if (m->vlm == TM_IDEFICS3) {
        /* last_hidden_state = post_layernorm(all tokens) → pixel shuffle per tile → modality_projection */
        const int side = gs, SD = (int)VD * m->scale * m->scale;
        layernorm_forward_train(a->feats, a->post_mean, a->post_rstd, a->vfinal, w->post_ln_w, w->post_ln_b,
                                (size_t)VR, (size_t)VD, m->veps);
        for (int n = 0; n < N; n++)
            pixel_shuffle(a->shuf + (int64_t)n * m->NO * SD, a->feats + (int64_t)n * VT * VD, side, (int)VD, m->scale);
        matmul_forward(a->proj, a->shuf, w->p1_w, NULL, (int64_t)N * m->NO, SD, D);
        return VLMC_OK;
    }
    /* selected features (strategy "default" drops the first token), then the projector */
    for (int n = 0; n < N; n++)
        memcpy(a->feats + (int64_t)n * NS * VD, a->vfinal + ((int64_t)n * VT + m->drop_first) * VD,
               (size_t)(NS * VD) * sizeof(float));
    const int64_t NR = (int64_t)N * NS;
    matmul_forward(a->ph1, a->feats, w->p1_w, w->p1_b, NR, VD, D);
    act_forward(m->pact, a->pa1, a->ph1, (size_t)(NR * D));
    matmul_forward(a->proj, a->pa1, w->p2_w, w->p2_b, NR, D, D);
    if (m->vlm != TM_LLAVA_NEXT) return VLMC_OK;
    /* pack_image_features, image after image */
    const float *tile = a->proj;
    float *o = a->packed;
    for (int g = 0; g < m->n_groups; g++) {
        size_t len = 0;
        vlmc_status s = llava_next_pack(&m->pack, tile, m->img_tiles[g], NS, m->img_sizes[2 * g],
                                        m->img_sizes[2 * g + 1], o, &len, err);
        if (s) return s;
        o += len * (size_t)D;
        tile += (int64_t)m->img_tiles[g] * NS * D;
    }
    return VLMC_OK;
}

/* The connector's backward from a->dimg: parameter gradients, and d(features) into a->dvln ([N·NS, VD]) when the
 * tower is trained. */
static vlmc_status connector_backward(train_model *m, float *dfeats, vlmc_error *err) {
    tm_acts *a = m->a;
    const tm_vision *w = &m->vw, *g = &m->vg;
    const int N = m->N, NS = m->NS;
    const int64_t VD = m->VD, D = m->D;
    if (m->vlm == TM_IDEFICS3) {
        const int64_t NR = (int64_t)N * m->NO, SD = VD * m->scale * m->scale;
        if (!dfeats) {
            matmul_backward(NULL, g->p1_w, NULL, a->dproj, a->shuf, w->p1_w, NR, SD, D);
            return VLMC_OK;
        }
        memset(a->dshuf, 0, (size_t)(NR * SD) * sizeof(float));
        matmul_backward(a->dshuf, g->p1_w, NULL, a->dproj, a->shuf, w->p1_w, NR, SD, D);
        memset(dfeats, 0, (size_t)N * NS * VD * sizeof(float));
        for (int n = 0; n < N; n++)
            pixel_shuffle_backward(dfeats + (int64_t)n * NS * VD, a->dshuf + (int64_t)n * m->NO * SD, m->VS / m->VP,
                                   (int)VD, m->scale);
        return VLMC_OK;
    }
    if (m->vlm == TM_LLAVA_NEXT) {
        /* unpack: each packed row's gradient back to its tile row; the newline rows' to image_newline */
        memset(a->dproj, 0, (size_t)N * NS * D * sizeof(float));
        const float *dp = a->dimg;
        float *dtile = a->dproj;
        for (int i = 0; i < m->n_groups; i++) {
            size_t len = 0;
            vlmc_status s = llava_next_packed_len(&m->pack, m->img_tiles[i], NS, m->img_sizes[2 * i],
                                                  m->img_sizes[2 * i + 1], &len, err);
            if (!s)
                s = llava_next_pack_backward(&m->pack, dp, m->img_tiles[i], NS, m->img_sizes[2 * i],
                                             m->img_sizes[2 * i + 1], dtile, g->newline, err);
            if (s) return s;
            dp += len * (size_t)D;
            dtile += (int64_t)m->img_tiles[i] * NS * D;
        }
    }
    const int64_t NR = (int64_t)N * NS;
    memset(a->dpa1, 0, (size_t)(NR * D) * sizeof(float));
    matmul_backward(a->dpa1, g->p2_w, g->p2_b, a->dproj, a->pa1, w->p2_w, NR, D, D);
    act_backward(m->pact, a->dpa1, a->dpa1, a->ph1, (size_t)(NR * D));
    if (dfeats) memset(dfeats, 0, (size_t)(NR * VD) * sizeof(float));
    matmul_backward(dfeats, g->p1_w, g->p1_b, a->dpa1, a->feats, w->p1_w, NR, VD, D);
    return VLMC_OK;
}

vlmc_status tm_vision_backward(train_model *m, vlmc_error *err) {
    tm_acts *a = m->a;
    const tm_vision *w = &m->vw, *g = &m->vg;
    const int N = m->N, VT = m->VT, NP = m->VNP, NS = m->NS, cls = m->cls;
    const int64_t VR = (int64_t)N * VT, VD = m->VD, VF = m->VF, CPP = (int64_t)m->VC * m->VP * m->VP;
    const float scale = 1.0f / sqrtf((float)m->vhd);
    const size_t fV = (size_t)(VR * VD) * sizeof(float);
    float *dfeats = m->vision_grads ? a->dvln : NULL; /* [N·NS, VD] fits in [VR, VD] */
    vlmc_status s = connector_backward(m, dfeats, err);
    if (s || !m->vision_grads) return s;
    if (m->vlm == TM_IDEFICS3) {
        memset(a->dvres, 0, fV);
        layernorm_backward(a->dvres, g->post_ln_w, g->post_ln_b, dfeats, a->vfinal, w->post_ln_w, a->post_mean,
                           a->post_rstd, (size_t)VR, (size_t)VD);
    } else {
        memset(a->dvres, 0, fV);
        for (int n = 0; n < N; n++)
            memcpy(a->dvres + ((int64_t)n * VT + m->drop_first) * VD, dfeats + (int64_t)n * NS * VD,
                   (size_t)(NS * VD) * sizeof(float));
    }
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
    /* (masked keys have zero probabilities, so attention_backward needs no mask) */
    /* CLIP's pre_layrnorm, then the embeddings: class token, position rows, patch matmul */
    float *demb = a->dvres;
    if (cls) {
        demb = a->dvln;
        memset(demb, 0, fV);
        layernorm_backward(demb, g->pre_ln_w, g->pre_ln_b, a->dvres, a->vemb, w->pre_ln_w, a->pre_mean, a->pre_rstd,
                           (size_t)VR, (size_t)VD);
    }
    for (int n = 0; n < N; n++)
        for (int t = 0; t < VT; t++) {
            const float *d = demb + ((int64_t)n * VT + t) * VD;
            const bool is_cls = t < cls;
            if (g->pos_emb) {
                float *gp = g->pos_emb + (is_cls ? 0 : (int64_t)a->vpos[(int64_t)n * NP + t - cls]) * VD;
                for (int64_t i = 0; i < VD; i++) gp[i] += d[i];
            }
            if (is_cls) {
                if (g->class_emb)
                    for (int64_t i = 0; i < VD; i++) g->class_emb[i] += d[i];
            } else {
                memcpy(a->dpe + ((int64_t)n * NP + t - cls) * VD, d, (size_t)VD * sizeof(float));
            }
        }
    matmul_backward(NULL, g->patch_w, g->patch_b, a->dpe, a->patches, w->patch_w, (int64_t)N * NP, CPP, VD);
    return VLMC_OK;
}
