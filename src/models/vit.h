/* Vision transformers (ViT image encoders), f32 compute, exact against transformers 4.47:
 *
 *   clip_vision_model    CLIPVisionTransformer (CLIPVisionModel, LLaVA / LLaVA-NeXT's vision_tower)
 *   siglip_vision_model  SiglipVisionTransformer (SiglipVisionModel), with the attention-pooling head
 *                        (SiglipMultiheadAttentionPoolingHead) when the file has head.* tensors
 *   idefics3_vision      Idefics3VisionTransformer (SigLIP-like, NaViT-style position ids from a patch mask)
 *
 * Config keys used (hf_vision_config): hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
 * num_channels, image_size, patch_size, layer_norm_eps, hidden_act.
 *
 * Weights are zero-copy views into the mmapped safetensors (F32, F16 or BF16). Weight matrices that are not
 * 4-byte-aligned F32 are converted to f32 just before their GEMM into one scratch buffer the size of the largest
 * such matrix (e.g. 4096×1024 floats = 16 MiB for CLIP ViT-L, 4304×1152 = 19 MiB for SigLIP-so400m), once per
 * layer per batch of tiles; nothing else is copied except the small vectors (norms, biases, class and position
 * embeddings: about (10·L + 2)·D + n_pos·D floats, e.g. 0.6 M floats = 2.4 MiB for CLIP ViT-L/14-336), which are
 * kept as f32 copies when the file stores them in another dtype.
 *
 * Layout of activations: row-major [tiles, tokens, features]; tokens are 1 + patches for CLIP (class token
 * first), patches otherwise, patches in raster order (row by row of the patch grid). */
#ifndef VLMC_MODELS_VIT_H
#define VLMC_MODELS_VIT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/tensor.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "kernels/gelu.h"

typedef enum vit_kind { VIT_CLIP = 0, VIT_SIGLIP, VIT_IDEFICS3 } vit_kind;

typedef struct vit_layer {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;         /* [D] */
    tensor q_w, k_w, v_w, o_w;                          /* [D, D] (out, in) */
    const float *q_b, *k_b, *v_b, *o_b;                 /* [D] */
    tensor fc1_w, fc2_w;                                /* [F, D], [D, F] */
    const float *fc1_b, *fc2_b;                         /* [F], [D] */
} vit_layer;

/* SigLIP's attention-pooling head: one learned query (probe) attends over all tokens through
 * torch.nn.MultiheadAttention, then a residual MLP after a LayerNorm. */
typedef struct vit_head {
    const float *probe;                                 /* [D] */
    tensor q_w, k_w, v_w;                               /* row slices of in_proj_weight [3D, D] */
    const float *in_b;                                  /* in_proj_bias [3D] */
    tensor o_w;                                         /* out_proj.weight [D, D] */
    const float *o_b, *ln_w, *ln_b, *fc1_b, *fc2_b;
    tensor fc1_w, fc2_w;
} vit_head;

typedef struct vit_model {
    vit_kind kind;
    char file[512];          /* the safetensors file, for messages */
    int D, H, head_dim, F, L, C, P; /* hidden, heads, head dim, mlp, layers, channels, patch */
    int image_size;          /* config image_size */
    int side;                /* image_size / patch_size: patches per side of the position table */
    int n_pos;               /* rows of the position embedding table */
    float eps;
    act_kind act;
    tensor patch_w;          /* Conv2d weight [D, C, P, P] seen as a matrix [D, C·P·P] */
    const float *patch_b;    /* [D] (SigLIP, Idefics3); NULL for CLIP */
    const float *class_emb;  /* [D] CLIP only */
    const float *pos_emb;    /* [n_pos, D] */
    const float *pre_ln_w, *pre_ln_b;   /* CLIP pre_layrnorm */
    const float *post_ln_w, *post_ln_b; /* post_layernorm */
    vit_layer *layers;       /* [L] */
    bool has_head;
    vit_head head;
    size_t scratch_floats;   /* largest weight matrix that needs an f32 conversion (0 = none) */
    int batch_tokens;        /* tiles are encoded in batches of about this many tokens (vit_load sets 4096) */
    float **owned;           /* f32 copies this model owns */
    int n_owned, cap_owned;
} vit_model;

/* Loads the tower whose tensors are named <prefix>embeddings..., <prefix>encoder.layers.<i>..., <prefix>post_layernorm...
 * (e.g. "vision_model." for CLIPVisionModel, "vision_tower.vision_model." for LLaVA, "model.vision_model." for
 * Idefics3) from st; cfg->model_type picks the architecture. st must outlive the model. Missing or misshaped
 * tensors are errors naming the file and the tensor. */
vlmc_status vit_load(const safetensors *st, const char *prefix, const hf_vision_config *cfg, vit_model *out,
                     vlmc_error *err);
void vit_free(vit_model *m);

/* For towers stored under other names (moondream2's model.vision.*): vit_init sets *m's kind, sizes, eps, act and
 * file from cfg (checked as vit_load does); the caller allocates m->layers and takes every weight through these, which check name, shape and dtype
 * as vit_load does and keep its bookkeeping (views, f32 copies freed by vit_free, the conversion scratch size).
 * A matrix of ndim > 2 dimensions is seen as [shape[0], rest]; vit_weight_rows is a view of rows [first, first+rows)
 * of a 2-D tensor, or elements of a 1-D one (a fused qkv projection split into q, k, v). */
vlmc_status vit_init(const safetensors *st, const hf_vision_config *cfg, vit_kind kind, vit_model *m, vlmc_error *err);
vlmc_status vit_weight_matrix(vit_model *m, const safetensors *st, const char *name, int ndim, const int64_t *shape,
                              tensor *out, vlmc_error *err);
vlmc_status vit_weight_f32(vit_model *m, const safetensors *st, const char *name, int ndim, const int64_t *shape,
                           const float **out, vlmc_error *err);
tensor vit_weight_rows(const tensor *t, int64_t first, int64_t rows);

/* Tokens per tile for an input of height × width pixels (1 + patches for CLIP). */
int vit_tokens(const vit_model *m, int height, int width);

/* What vit_encode writes; every pointer may be NULL. n = number of tiles, T = vit_tokens(). */
typedef struct vit_outputs {
    float *hidden_states;      /* [L+1, n, T, D]: [0] = embeddings (CLIP: after pre_layrnorm), [i] = layer i output */
    /* Selected features, as LLaVA's get_image_features takes them: hidden_states[select_layers[j]] (negative =
     * from the end, Python-style: -1 = last layer, -(L+1) = embeddings) concatenated on the feature axis, the first
     * token dropped when select_drop_first ("default" strategy; the CLS token for CLIP). */
    float *selected;           /* [n, T - drop, D · n_select] */
    int n_select;
    int select_layers[HF_MAX_FEATURE_LAYERS];
    bool select_drop_first;
    float *last_hidden_state;  /* [n, T, D]: CLIP: last layer output; SigLIP / Idefics3: post_layernorm of it */
    float *pooler_output;      /* [n, D]: CLIP: post_layernorm(class token); SigLIP: attention-pooling head */
} vit_outputs;

/* Encodes n tiles pixels [n, C, height, width] (f32, normalized as the image processor does). CLIP and SigLIP
 * need height = width = image_size. patch_mask [n, height/P, width/P] (1 = real patch; Idefics3 only, NULL = all
 * real) masks padded patches out of attention as Idefics3VisionTransformer does. Only as many layers run as the
 * requested outputs need; tiles are processed in batches of about m->batch_tokens tokens. */
vlmc_status vit_encode(const vit_model *m, const float *pixels, int n, int height, int width,
                       const uint8_t *patch_mask, const vit_outputs *out, vlmc_error *err);

/* Fills out's selection from a VLM config's vision_feature_layer(s) and vision_feature_select_strategy
 * (the other output pointers are left alone). */
vlmc_status vit_select_from_config(const hf_config *cfg, float *selected, vit_outputs *out, vlmc_error *err);
/* Shape of the selected features for n tiles: tokens and features per token. */
void vit_selected_shape(const vit_model *m, const vit_outputs *sel, int height, int width, int *tokens,
                        int *features);

/* Idefics3's patch mask: a patch is real when any pixel of its P × P square is (pixel_mask [n, H, W] != 0). */
void vit_patch_mask_from_pixels(const uint8_t *pixel_mask, int n, int height, int width, int patch,
                                uint8_t *patch_mask);

/* Idefics3Model drops padding images (every pixel value exactly 0) before the vision tower: writes the indices of
 * the others among n images of per_image floats into keep[] and returns how many there are. */
int vit_real_images(const float *pixels, int n, size_t per_image, int *keep);

/* Shared by the vision models: y[M, N] = x[M, K] W^T + b (W: a [N, K] F32 / F16 / BF16 view, b may be NULL);
 * with accumulate, y += x W^T + b (a residual add). Through cblas_sgemm; W is converted into scratch (at least
 * N·K floats) unless vision_weight_is_direct (4-byte-aligned F32). */
void vision_linear(float *y, const float *x, size_t M, const tensor *w, const float *b, float *scratch,
                   bool accumulate);
bool vision_weight_is_direct(const tensor *t);

#endif
