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

/* VIT_QWEN2_VL: the weights of Qwen2-VL's tower, loaded and run by src/models/qwen2_vl.c (not by vit_encode). */
typedef enum vit_kind { VIT_CLIP = 0, VIT_SIGLIP, VIT_IDEFICS3, VIT_QWEN2_VL } vit_kind;

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
/* timm's VisionTransformer with DeepSeek-VL's SigLIP settings (tensors <prefix>patch_embed.proj.*, pos_embed,
 * blocks.<i>.*, norm.*): run as kind VIT_SIGLIP, last_hidden_state = norm output. heads and layers (blocks to
 * load) come from the caller; the rest from the tensor shapes. */
vlmc_status vit_load_timm(const safetensors *st, const char *prefix, int image_size, int heads, int layers,
                          vit_model *out, vlmc_error *err);
void vit_free(vit_model *m);

/* Checks cfg and sets m's sizes, activation and eps from it (m->kind and m->file set first); vit_load calls it.
 * vit_init does the same on a zeroed *m after setting file (from st) and kind: for towers stored under other
 * names (moondream2's model.vision.*), whose loader allocates m->layers and takes every weight through the
 * loaders below. */
vlmc_status vit_init_dims(vit_model *m, const hf_vision_config *cfg, vlmc_error *err);
vlmc_status vit_init(const safetensors *st, const hf_vision_config *cfg, vit_kind kind, vit_model *m, vlmc_error *err);
/* For towers that another file builds from these blocks (Qwen2-VL, moondream2): a float weight named `name` (shape
 * checked; ndim > 2 is seen as [shape[0], the rest]) as a view, with m->scratch_floats grown to what its f32
 * conversion needs; a float vector [n] (vit_load_vector) or array of any shape (vit_load_f32) as f32 (a view, or a
 * copy that m owns until vit_free). Errors name m->file. */
vlmc_status vit_load_matrix(vit_model *m, const safetensors *st, const char *name, int ndim, const int64_t *shape,
                            tensor *out, vlmc_error *err);
vlmc_status vit_load_vector(vit_model *m, const safetensors *st, const char *name, int64_t n, const float **out,
                            vlmc_error *err);
vlmc_status vit_load_f32(vit_model *m, const safetensors *st, const char *name, int ndim, const int64_t *shape,
                         const float **out, vlmc_error *err);
/* Rows [r0, r0 + rows) of a 2-D weight (elements of a 1-D one) as its own view (a fused qkv split into q, k, v). */
tensor vit_row_slice(const tensor *t, int64_t r0, int64_t rows);
/* A fused qkv projection (weight [3D, D], bias [3D]; rows [0, D) q, [D, 2D) k, [2D, 3D) v) as the layer's q, k, v
 * views (Qwen2-VL, timm's ViT, moondream2). */
void vit_layer_split_qkv(vit_layer *ly, const tensor *qkv, const float *qkv_b, int64_t D);

/* Tokens per tile for an input of height × width pixels (1 + patches for CLIP). */
int vit_tokens(const vit_model *m, int height, int width);

/* What vit_encode writes; every pointer may be NULL. n = number of tiles, T = vit_tokens(). */
typedef struct vit_outputs {
    float *patch_embeds;       /* [n, patches, D]: the patch convolution (+ bias), before position embeddings */
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

/* Idefics3VisionEmbeddings' position ids (rows of the position table) of one tile's gh × gw patches, from its
 * patch mask pm (NULL = all real; padded patches get 0); uses m->side and m->file only. tile names it in errors. */
vlmc_status vit_idefics3_position_ids(const vit_model *m, const uint8_t *pm, int gh, int gw, int *pos, int tile,
                                      vlmc_error *err);

/* Idefics3Model drops padding images (every pixel value exactly 0) before the vision tower: writes the indices of
 * the others among n images of per_image floats into keep[] and returns how many there are. */
int vit_real_images(const float *pixels, int n, size_t per_image, int *keep);

/* Shared by the vision models: y[M, N] = x[M, K] W^T + b (W: a [N, K] F32 / F16 / BF16 view, b may be NULL);
 * with accumulate, y += x W^T + b (a residual add). Through cblas_sgemm; W is converted into scratch (at least
 * N·K floats) unless vision_weight_is_direct (4-byte-aligned F32). */
void vision_linear(float *y, const float *x, size_t M, const tensor *w, const float *b, float *scratch,
                   bool accumulate);
bool vision_weight_is_direct(const tensor *t);

/* The patch Conv2d (kernel = stride = P) as a GEMM input: patches[b·Np + py·gw + px][c·P·P + ky·P + kx] =
 * pixels[b, c, py·P + ky, px·P + kx] for n images [n, C, height, width] (Np = (height/P)·(width/P)). */
void vision_unfold_patches(float *patches, const float *pixels, int n, int C, int height, int width, int P);

/* Query rows per attention block: a block's scores (VISION_ATT_QB × Tk floats, 256 KiB for 1024 keys) stay in L2. */
enum { VISION_ATT_QB = 64 };
/* Shared by the vision models: non-causal multi-head attention of B tiles of Tq queries over Tk keys;
 * q [B·Tq, H·hd] (row stride ldq), k, v [B·Tk, H·hd] (stride ldkv), head h in columns h·hd ..; out [B·Tq, H·hd]
 * (stride ldo). keymask [B, Tk] (0 or -FLT_MAX, added to the scaled scores as _prepare_4d_attention_mask does) or
 * NULL. scores: per-thread scratch of omp_get_max_threads() × VISION_ATT_QB·Tk floats. */
void vision_attention(float *out, int ldo, const float *q, int ldq, const float *k, const float *v, int ldkv,
                      const float *keymask, int B, int Tq, int Tk, int H, int hd, float scale, float *scores);

#endif
