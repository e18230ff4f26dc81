/* SAM's image encoder as DeepSeek-VL uses it for high-resolution images: deepseek_vl/models/sam.py ImageEncoderViT
 * (built by create_sam_vit: LayerNorm eps 1e-6, exact GELU, qkv bias, relative positions, window 14), f32 compute.
 *
 *   x = patch_embed(image) + pos_embed                        [g, g, D]   Conv2d P×P stride P, absolute positions
 *   blocks: x += proj(attn(norm1(x))), x += lin2(gelu(lin1(norm2(x))))
 *       window blocks: attention inside 14×14 windows of the grid zero-padded to a multiple of 14 (the padded
 *       tokens take part as keys); global blocks: over the whole grid. Both add SAM's decomposed relative
 *       positions: score[(qh,qw),(kh,kw)] += q·rel_pos_h[qh-kh+S-1] + q·rel_pos_w[qw-kw+S-1] (q unscaled)
 *   neck (Conv2d 1×1, LayerNorm2d, Conv2d 3×3 pad 1, LayerNorm2d; no conv biases) → bilinear resize to 96×96
 *       → downsamples (Conv2d 3×3 stride 2 pad 1, no bias, each)
 *   sam_hd: the same neck (neck_hd weights) on the first global block's output → resize → the same downsamples,
 *       added times hd_alpha_downsamples.
 * Everything is computed channels-last (NHWC): a Conv2d is im2col + one GEMM, LayerNorm2d a LayerNorm over the
 * channels of each position.
 *
 * The architecture comes from the tensors: D and the grid from pos_embed, P from the patch conv, heads from
 * rel_pos_h's width (head_dim), global blocks by their rel_pos_h length 2g - 1 (window blocks have 2·14 - 1),
 * neck and downsample channels from their convs. */
#ifndef VLMC_MODELS_SAM_H
#define VLMC_MODELS_SAM_H

#include <stdbool.h>

#include "core/tensor.h"
#include "formats/safetensors.h"

enum { SAM_MAX_DOWNSAMPLES = 4, SAM_NECK_SIZE = 96 /* the F.interpolate size the code fixes */ };

typedef struct sam_block {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b; /* [D] */
    tensor qkv_w, proj_w, lin1_w, lin2_w;       /* [3D, D], [D, D], [F, D], [D, F] */
    const float *qkv_b, *proj_b, *lin1_b, *lin2_b;
    const float *rel_h, *rel_w;                 /* [2S - 1, head_dim] */
    int window;                                 /* 0 = global attention */
} sam_block;

typedef struct sam_neck {
    tensor conv1, conv2;                        /* [O, D] (1×1), [O, O·9] (3×3) */
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b; /* [O] */
} sam_neck;

typedef struct sam_model {
    char file[512];
    int D, H, head_dim, F, L, P, C, grid, image_size; /* grid = image_size / P */
    int out_chans;                                    /* neck channels */
    int n_down, down_ch[SAM_MAX_DOWNSAMPLES];
    int first_global;                                 /* index of the first global block (-1: none) */
    tensor patch_w;                                   /* [D, C·P·P] */
    const float *patch_b, *pos_emb;                   /* [D], [g·g, D] */
    sam_block *blocks;
    sam_neck neck, neck_hd;
    bool has_hd;
    float hd_alpha;
    tensor down[SAM_MAX_DOWNSAMPLES];                 /* [c_i, c_{i-1}·9] */
    size_t scratch_floats;                            /* largest weight needing f32 conversion */
    float **owned;                                    /* f32 copies of non-f32 vectors (BF16 checkpoints) */
    int n_owned, cap_owned;
} sam_model;

/* Loads the encoder under prefix (e.g. "vision_model.vision_tower_high.vision_tower."). st must outlive it. */
vlmc_status sam_load(const safetensors *st, const char *prefix, sam_model *m, vlmc_error *err);
void sam_free(sam_model *m);

/* Side of the output map (SAM_NECK_SIZE halved per downsample). */
int sam_out_side(const sam_model *m);
/* Channels of the output: the last downsample's, else the neck's. */
int sam_out_channels(const sam_model *m);

/* What sam_encode writes for one image; every pointer may be NULL but out. All maps NHWC. */
typedef struct sam_outputs {
    float *embed;          /* [g, g, D] */
    float *blocks;         /* [L, g, g, D] */
    float *neck, *neck_hd; /* [g, g, out_chans] */
    float *neck_interp, *neck_hd_interp; /* [96, 96, out_chans] */
    float *down, *hd_down; /* [s, s, c] (s = sam_out_side) */
    float *out;            /* [s, s, c] = down + hd_down · hd_alpha */
} sam_outputs;

/* One image pixels [C, image_size, image_size] (normalized as the tower expects). */
vlmc_status sam_encode(const sam_model *m, const float *pixels, const sam_outputs *o, vlmc_error *err);

#endif
