/* Hugging Face image processors driven by preprocessor_config.json (transformers
 * 4.47.1 semantics, Pillow 9.4 resampling). Each takes one load_image()-style RGB
 * image and returns what the processor returns for it:
 *   CLIPImageProcessor       pixel_values [1, 3, H, W]
 *   SiglipImageProcessor     pixel_values [1, 3, H, W]
 *   LlavaNextImageProcessor  pixel_values [1, 1+tiles, 3, S, S], image_sizes [1, 2]
 *   Idefics3ImageProcessor   pixel_values [1, N, 3, S, S], pixel_attention_mask [1, N, S, S], rows, cols
 *   Qwen2VLImageProcessor    pixel_values [t·h·w, 3·tps·P·P] (flattened patches), image_grid_thw [1, 3]
 *   FuyuImageProcessor       pixel_values [1, 3, H, W] (the padded image), image_sizes [1, 2] (its unpadded size),
 *                            rows, cols (the patch grid over the unpadded image)
 *   VLMImageProcessor        pixel_values [1, 3, S, S] (DeepSeek-VL's own processor, image_processing_vlm.py:
 *                            longest side to image_size, PIL bicubic, expand2square with the mean colour)
 * All of them resize uint8 images with Pillow and only then rescale and normalise,
 * so the output is kept as the uint8 values before rescale/normalise (`u8`, same
 * layout) plus a per-channel table lut[c][v] computed in the processor's float
 * order: float32(double(v) * rescale_factor), then (x - float32(mean)) / float32(std)
 * in float32 (transformers' rescale() and normalize()). */
#ifndef VLMC_VISION_PROCESSORS_H
#define VLMC_VISION_PROCESSORS_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/error.h"
#include "vision/image.h"
#include "vision/resize.h"

typedef enum proc_kind {
    PROC_CLIP = 0, PROC_SIGLIP, PROC_LLAVA_NEXT, PROC_IDEFICS3, PROC_QWEN2_VL, PROC_FUYU, PROC_VLM
} proc_kind;

enum { PROC_MAX_PINPOINTS = 64 };

typedef struct image_proc {
    proc_kind kind;
    char type_name[64]; /* image_processor_type as written in the config */
    int do_resize, do_center_crop, do_rescale, do_normalize, do_pad, do_convert_rgb, do_image_splitting;
    resample_filter resample;
    /* size: exactly one of shortest_edge / longest_edge / (height, width) is set (> 0) */
    int size_shortest_edge, size_longest_edge, size_height, size_width;
    int crop_height, crop_width;   /* CLIP, LLaVA-NeXT */
    int max_image_size;            /* Idefics3 max_image_size.longest_edge */
    /* Qwen2-VL: smart_resize's pixel bounds, and the patch layout (its own patch_size, not the model's) */
    int64_t qwen_min_pixels, qwen_max_pixels;
    int qwen_patch_size, temporal_patch_size, merge_size;
    int pad_value;                 /* Fuyu padding_value (on the uint8 image) */
    int min_size;                  /* VLMImageProcessor: smallest resized side */
    int background[3];             /* VLMImageProcessor: expand2square's fill, int(image_mean · 255) */
    double rescale_factor;
    double mean[3], std[3];
    int n_pinpoints;               /* LLaVA-NeXT image_grid_pinpoints, [height, width] each */
    int pinpoints[PROC_MAX_PINPOINTS][2];
    /* Image-token counting; these come from the model's config.json (0 = unknown). */
    int patch_size;                /* vision_config.patch_size (LLaVA, LLaVA-NeXT, SigLIP); Fuyu: its own patch_size */
    int strategy_full;             /* vision_feature_select_strategy == "full": the CLS token counts */
    int image_seq_len;             /* Idefics3 tokens per tile; VLChatProcessor num_image_tokens */
    /* Work limit: any intermediate image or the output above this many pixels (per
     * frame, or in total over all frames) is VLMC_ERR_LIMIT. 0 = PROC_DEFAULT_MAX_PIXELS. */
    uint64_t max_pixels;
} image_proc;

#define PROC_DEFAULT_MAX_PIXELS (1ull << 28)
#define PROC_MAX_FRAMES 4096

typedef struct proc_output {
    int n_frames, frame_h, frame_w;
    uint8_t *u8;           /* [n_frames][3][frame_h][frame_w] before rescale/normalize */
    float lut[3][256];     /* pixel_values = lut[c][u8] */
    float *pixel_values;   /* same layout as u8, float32 */
    int ndim;
    int64_t shape[6];      /* of pixel_values */
    int has_image_sizes;
    int32_t image_sizes[2];        /* (height, width) of the input image (LLaVA-NeXT) */
    int32_t *pixel_attention_mask; /* Idefics3: [n_frames][frame_h][frame_w], else NULL */
    int has_rows_cols;
    int32_t rows, cols;            /* Idefics3 */
    int64_t num_image_tokens;      /* -1 when the model parameters needed are unknown */
    int has_grid_thw;
    int32_t grid_thw[3];           /* Qwen2-VL (t, h, w) in patches; u8 / pixel_values are then patch rows */
} proc_output;

/* Parses a preprocessor_config.json object; `what` names it in errors. */
vlmc_status image_proc_from_json(const cJSON *cfg, const char *what, image_proc *out, vlmc_error *err);
/* Reads token-count parameters from a model config.json or processor_config.json object
 * (patch_size or vision_config.patch_size, vision_feature_select_strategy, image_seq_len,
 * or Idefics3's scale_factor + vision_config.image_size). Absent keys change nothing. */
void image_proc_set_model_config(image_proc *p, const cJSON *config);

vlmc_status image_proc_run(const image_proc *p, const rgb_image *im, proc_output *out, vlmc_error *err);
void proc_output_free(proc_output *o);

/* Helpers shared with tests. */
void proc_make_lut(const image_proc *p, float lut[3][256]);
/* LLaVA-NeXT: select_best_resolution over the pinpoints for an (h, w) image. */
void llava_next_best_resolution(const image_proc *p, int h, int w, int *best_h, int *best_w);
/* LlavaNextProcessor._get_number_of_features (unpadded count, with newlines and base). */
int64_t llava_next_num_tokens(const image_proc *p, int orig_h, int orig_w);

#endif
