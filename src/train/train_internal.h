/* Internal to src/train: the activation layout of a train_model (see train_model.h for the dimension names). */
#ifndef VLMC_TRAIN_TRAIN_INTERNAL_H
#define VLMC_TRAIN_TRAIN_INTERNAL_H

#include "train/train_model.h"

typedef struct tm_dec_acts {
    float *res;                 /* [R, D] layer input (the residual stream) */
    float *xn1, *rs1;           /* input_layernorm output [R, D], 1/rms [R] */
    float *q, *k, *v;           /* [R, QD], [R, KD], [R, KD] after rope (q, k) */
    float *probs;               /* [B, H, T, T] */
    float *att;                 /* [R, QD] attention output before o_proj */
    float *res2;                /* [R, D] after the attention residual */
    float *xn2, *rs2;           /* post_attention_layernorm */
    float *gate, *up, *hmid;    /* [R, I]: gate_proj, up_proj outputs, silu(gate)·up */
    float *lh[LIN_COUNT];       /* LoRA: dropout(x) A^T [R, r] */
    float *lx[LIN_COUNT];       /* LoRA with dropout: dropout(x) [R, in] */
    float *lmask[LIN_COUNT];    /* LoRA with dropout: 0 or 1/(1-p) per input value [R, in] */
} tm_dec_acts;

typedef struct tm_vis_acts {
    float *res;                 /* [N·VT, VD] layer input (res of layer 0 = pre_layrnorm output) */
    float *ln1, *m1, *r1;
    float *q, *k, *v, *probs, *att; /* probs [N, VH, VT, VT] */
    float *res2;
    float *ln2, *m2, *r2;
    float *fc1, *act;           /* [N·VT, VF] before / after the activation */
} tm_vis_acts;

typedef struct tm_acts {
    /* decoder */
    tm_dec_acts *dl;            /* [L] */
    float *res_final;           /* [R, D] input of the final norm */
    float *xnf, *rsf, *logits;  /* [R, D], [R], [R, V] */
    float *cos_t, *sin_t;       /* [R, rot/2] */
    int32_t *pos;               /* [R] */
    uint8_t *img_row;           /* [R] 1 where an image feature replaces the token embedding */
    float *embeds;              /* [R, D] spliced input embeddings (VLM) */
    /* decoder backward scratch */
    float *dres, *dxn, *dq, *dk, *dv, *datt, *dgate, *dup, *dh, *dlin, *dlh;
    /* vision */
    tm_vis_acts *vl;            /* [VLR] */
    int32_t *vpos;              /* [N·NP] position-table row of each patch (Idefics3: from the patch mask) */
    int32_t *vkeymask;          /* [N·VT] 0 = padded patch (Idefics3), used when vmasked */
    int vmasked;                /* some patch of the batch is padding */
    float *patches, *pe, *vemb, *pre_mean, *pre_rstd, *vfinal; /* vfinal = res after VLR layers */
    float *post_mean, *post_rstd; /* Idefics3 post_layernorm [N·VT] */
    float *feats;               /* [N·NS, VD] connector input (Idefics3: post_layernorm output) */
    float *ph1, *pa1;           /* LLaVA projector [N·NS, D]: linear_1 output, after the activation */
    float *shuf;                /* Idefics3 [N·NO, VD·scale²]: pixel-shuffled features */
    float *proj;                /* [N·NO, D] connector output */
    float *packed;              /* LLaVA-NeXT [n_img_rows, D] after pack_image_features */
    float *img;                 /* the rows spliced in: proj, or packed (LLaVA-NeXT) */
    /* vision backward scratch */
    float *dimg, *dproj, *dpa1, *dshuf, *dvres, *dvln, *dvq, *dvk, *dvv, *dvatt, *dvfc, *dpe;
} tm_acts;

/* LoRA on decoder linear `which` of layer l: out = x W^T + b + scale · dropout(x) A^T B^T. */
void tm_linear_forward(train_model *m, int l, int which, float *out, const float *inp, int64_t R, int64_t C,
                       int64_t OC);
/* dinp += ..., gradients of W, b, A, B += (where trainable). */
void tm_linear_backward(train_model *m, int l, int which, float *dinp, const float *dout, const float *inp,
                        int64_t R, int64_t C, int64_t OC);

#endif
