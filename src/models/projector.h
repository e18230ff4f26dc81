/* Vision → text projectors of the VLMs, f32 compute, exact against transformers 4.47:
 *
 *   llava, llava_next  LlavaMultiModalProjector: linear_1 → projector_hidden_act → linear_2 (biases per
 *                      multimodal_projector_bias), on features [tiles, tokens, D_vision · n_feature_layers]
 *   llava_next         + pack_image_features: base tile, then the tile grid unpadded to the image's aspect ratio
 *                      with image_newline after each row (get_anyres_image_grid_shape, unpad_image)
 *   idefics3           Idefics3Connector: pixel_shuffle(scale_factor) then modality_projection.proj (no bias)
 *   paligemma, fuyu    one Linear with bias (PROJ_LINEAR): multi_modal_projector.linear on the SigLIP last hidden
 *                      state; Fuyu's vision_embed_tokens on flattened image patches [patch² · C]
 *   mlp2x_gelu_Norm    the original LLaVA code's builder as Yi-VL extends it (llava/model/multimodal_projector/
 *                      builder.py): nn.Sequential(Linear, LayerNorm, GELU, Linear, LayerNorm) = mm_projector.{0,1,3,4}
 *
 * Weights are views into the mmapped safetensors (F32, F16, BF16); matrices that are not aligned F32 are
 * converted into one scratch of the largest matrix's size per call (e.g. 4096×4096 floats = 64 MiB for a
 * LLaVA-1.5-7B projector), vectors are kept as small f32 copies. */
#ifndef VLMC_MODELS_PROJECTOR_H
#define VLMC_MODELS_PROJECTOR_H

#include <stdbool.h>
#include <stddef.h>

#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "kernels/gelu.h"
#include "models/vit.h"

typedef enum projector_kind { PROJ_LLAVA = 0, PROJ_IDEFICS3, PROJ_LINEAR, PROJ_MLP_NORM } projector_kind;

typedef struct projector {
    projector_kind kind;
    char file[512];
    int in_dim, out_dim;        /* per-token features in (after the pixel shuffle for Idefics3) and out */
    int hidden_dim;             /* llava: linear_1's outputs (= out_dim; moondream2's proj_mlp: its inner dim) */
    act_kind act;               /* llava, mlp2x_gelu_Norm (GELU) */
    tensor w1, w2;              /* llava linear_1 [hidden, in], linear_2 [out, hidden]; idefics3: w1 = proj [out, in] */
    const float *b1, *b2;       /* NULL without multimodal_projector_bias */
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b; /* mlp2x_gelu_Norm's LayerNorms [out] */
    float ln_eps;
    int scale_factor;           /* idefics3 */
    /* llava_next anyres packing */
    const float *image_newline; /* [out_dim], NULL for llava / idefics3 */
    int tile_size;              /* vision image_size */
    int tile_patches;           /* vision image_size / patch_size: patches per tile side */
    int n_pinpoints;
    int pinpoints[HF_MAX_PINPOINTS][2]; /* [height, width] */
    size_t scratch_floats;
    float *owned[8];
    int n_owned;
} projector;

/* Loads the projector of a llava / llava_next / idefics3 config. prefix is the root of the VLM's tensor names:
 * "" for transformers 4.47's layout (multi_modal_projector.*, image_newline, model.connector.*), "model." for the
 * llava layout of transformers >= 4.52 (model.multi_modal_projector.*, model.image_newline). */
vlmc_status projector_load(const safetensors *st, const char *prefix, const hf_config *cfg, projector *out,
                           vlmc_error *err);
void projector_free(projector *p);
/* mlp2x_gelu_Norm from tensors <prefix>{0,1,3,4}.{weight,bias} (Yi-VL: prefix "model.mm_projector."), in_dim →
 * out_dim, LayerNorm eps (nn.LayerNorm's default 1e-5 in Yi-VL). */
vlmc_status projector_load_mlp_norm(const safetensors *st, const char *prefix, int in_dim, int out_dim, float ln_eps,
                                    projector *out, vlmc_error *err);
/* mlp2x_gelu_Norm on in [rows, in_dim] → out [rows, out_dim]; steps (NULL, or 4 arrays [rows, out_dim], each may
 * be NULL) receive the outputs of linear_1, layernorm_1, gelu, linear_2 (out is layernorm_2's). */
vlmc_status projector_mlp_norm_forward(const projector *p, const float *in, size_t rows, float *out,
                                       float *const *steps, vlmc_error *err);

/* The LLaVA-shaped MLP (w1 → act → w2, biases b1 / b2 when their names are not NULL) under other tensor names, with
 * its own widths: moondream2's proj_mlp. file names the checkpoint in messages. */
vlmc_status projector_load_mlp(const safetensors *st, const char *w1, const char *b1, const char *w2, const char *b2,
                               int in_dim, int hidden_dim, int out_dim, act_kind act, projector *out, vlmc_error *err);

/* Loads the vision tower and the projector of a VLM config, finding the tensor-name layout in st
 * (transformers 4.47's, or the llava layout of transformers >= 4.52). */
vlmc_status vlm_vision_load(const safetensors *st, const hf_config *cfg, vit_model *vit, projector *proj,
                            vlmc_error *err);

/* Tokens out for `tokens` tokens in per tile (idefics3: tokens / scale_factor^2); -1 if the input cannot be
 * projected (idefics3: tokens not a square whose side the scale factor divides). */
int projector_out_tokens(const projector *p, int tokens);

/* in [n, tokens, in_dim (llava) or D_vision (idefics3)] → out [n, projector_out_tokens(tokens), out_dim]. */
vlmc_status projector_forward(const projector *p, const float *in, int n, int tokens, int in_features, float *out,
                              vlmc_error *err);

/* LLaVA-NeXT: the best resolution select_best_resolution picks among image_grid_pinpoints for an image of
 * height × width, and the tile grid it makes (rows × cols tiles of tile_size). */
vlmc_status llava_next_grid(const projector *p, int image_height, int image_width, int *rows, int *cols,
                            vlmc_error *err);
/* Tiles LlavaNextImageProcessor makes for the image (1 + rows · cols: the base image first). */
vlmc_status llava_next_num_tiles(const projector *p, int image_height, int image_width, int *n_tiles,
                                 vlmc_error *err);
/* Length of the packed features of one image whose tiles have `tokens` projected tokens each. */
vlmc_status llava_next_packed_len(const projector *p, int n_tiles, int tokens, int image_height, int image_width,
                                  size_t *len, vlmc_error *err);
/* pack_image_features for one image: features [n_tiles, tokens, out_dim] (projector output; tile 0 = base image)
 * → out [len, out_dim] (len from llava_next_packed_len). tokens must be tile_patches² (strategy "default" on a
 * CLS tower). */
vlmc_status llava_next_pack(const projector *p, const float *features, int n_tiles, int tokens, int image_height,
                            int image_width, float *out, size_t *len, vlmc_error *err);

/* Its backward: dfeatures [n_tiles, tokens, out_dim] += the gradient of each packed row it copied, dnewline
 * [out_dim] (may be NULL) += that of every image_newline row. */
vlmc_status llava_next_pack_backward(const projector *p, const float *dpacked, int n_tiles, int tokens,
                                     int image_height, int image_width, float *dfeatures, float *dnewline,
                                     vlmc_error *err);

/* Idefics3Connector.pixel_shuffle of one tile x [side·side, E] → y [(side/s)², E·s²], and its backward
 * (dx += the gradient of each value's new place). */
void pixel_shuffle(float *y, const float *x, int side, int E, int s);
void pixel_shuffle_backward(float *dx, const float *dy, int side, int E, int s);

/* The image features a VLM merges into its input embeddings for one image (or one batch of LLaVA images),
 * tower + selection + projector (+ packing) in one call:
 *   llava       pixels [n, C, S, S]: n images → [n · tokens, out_dim] (image after image)
 *   llava_next  pixels [n, C, S, S]: one image's tiles (base first), image_h × image_w its original size →
 *               the packed features [len, out_dim]; extra tiles beyond what the size selects are ignored, as
 *               LlavaNextForConditionalGeneration does with padded pixel_values
 *   idefics3    pixels [n, C, S, S], pixel_mask [n, S, S] (1 = real pixel) or NULL: all-zero (padding) images
 *               dropped, then [real · tokens / scale², out_dim]
 * *out is malloc'ed (free it), *n_rows its rows. */
vlmc_status vlm_image_features(const vit_model *vit, const projector *proj, const hf_config *cfg, const float *pixels,
                               int n, int height, int width, const uint8_t *pixel_mask, int image_h, int image_w,
                               float **out, size_t *n_rows, vlmc_error *err);

#endif
