/* vlmc — vision-language models in C. The one public header.
 *
 * Conventions (as SQLite / zstd): handles are opaque; every call that can fail
 * returns a vlmc_status and, when given a vlmc_error, fills it with a message
 * naming the file and the problem. Nothing here exits the process or keeps
 * global state. */
#ifndef VLMC_H
#define VLMC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vlmc_status {
    VLMC_OK = 0,
    VLMC_ERR_IO,          /* a file could not be opened, read, written or mapped */
    VLMC_ERR_FORMAT,      /* outside data is malformed */
    VLMC_ERR_UNSUPPORTED, /* well-formed but not something vlmc implements */
    VLMC_ERR_ARG,         /* a caller passed an invalid argument */
    VLMC_ERR_NOMEM,       /* an allocation failed */
    VLMC_ERR_LIMIT,       /* a configured limit was exceeded (pixels, context, sizes) */
    VLMC_ERR_INTERNAL,    /* a bug in vlmc */
} vlmc_status;

typedef struct vlmc_error {
    vlmc_status code;
    char message[1024];
} vlmc_error;

/* A short constant name for a status code ("format error", ...). */
const char *vlmc_status_name(vlmc_status s);
const char *vlmc_version(void);

/* ---- model folders and files ------------------------------------------------ */

/* Describes a model folder (config.json + *.safetensors [+ tokenizer files]) or a
 * single .safetensors file as a JSON object (see docs/CLI.md, `vlmc info --json`).
 * *json_out is malloc'ed; free it with vlmc_free. */
vlmc_status vlmc_info_json(const char *path, char **json_out, vlmc_error *err);
/* The same facts as human-readable text. */
vlmc_status vlmc_info_text(const char *path, char **text_out, vlmc_error *err);

void vlmc_free(void *p);

/* ---- tokenizers (tokenizer.json) -------------------------------------------- */

/* ---- chat templates (Jinja) -------------------------------------------------- */

/* ---- images and image processors --------------------------------------------- */

/* Images are decoded exactly as Hugging Face's transformers.image_utils.load_image
 * (Pillow 9.4: open, EXIF transpose, convert("RGB"): alpha dropped, palette and grey
 * expanded). JPEG, PNG, WebP, GIF (first frame), BMP and binary PPM/PGM are read. */
typedef struct vlmc_image vlmc_image;

typedef struct vlmc_image_limits {
    uint64_t max_pixels;     /* width*height; larger images fail with VLMC_ERR_LIMIT before
                                any pixel memory is allocated. 0 = 178956970 (PIL's bomb limit) */
    uint64_t max_file_bytes; /* encoded size; 0 = 512 MiB */
} vlmc_image_limits;

/* limits may be NULL (defaults) in every loader. */
vlmc_status vlmc_image_load_file(const char *path, const vlmc_image_limits *limits, vlmc_image **out,
                                 vlmc_error *err);
/* name (may be NULL) names the data in error messages. */
vlmc_status vlmc_image_load_memory(const void *data, size_t len, const char *name, const vlmc_image_limits *limits,
                                   vlmc_image **out, vlmc_error *err);
/* "data:image/png;base64,...." or a bare base64 string (standard or URL-safe alphabet). */
vlmc_status vlmc_image_load_data_url(const char *url, const vlmc_image_limits *limits, vlmc_image **out,
                                     vlmc_error *err);
/* Copies width*height*3 RGB bytes (rows packed) into a new image. */
vlmc_status vlmc_image_from_rgb(const uint8_t *rgb, int width, int height, vlmc_image **out, vlmc_error *err);
int vlmc_image_width(const vlmc_image *im);
int vlmc_image_height(const vlmc_image *im);
/* height*width*3 bytes, row-major, R G B. */
const uint8_t *vlmc_image_rgb(const vlmc_image *im);
void vlmc_image_free(vlmc_image *im);

/* An image processor from preprocessor_config.json: CLIPImageProcessor,
 * SiglipImageProcessor, LlavaNextImageProcessor or Idefics3ImageProcessor
 * (transformers 4.47.1 semantics, Pillow-exact resizing). */
typedef struct vlmc_image_processor vlmc_image_processor;

/* path: a preprocessor_config.json file, or a model folder holding one. The config.json
 * and processor_config.json beside it (when present) supply what the image-token count
 * needs (vision_config.patch_size, vision_feature_select_strategy, image_seq_len, or
 * Idefics3's scale_factor and vision_config.image_size). */
vlmc_status vlmc_image_processor_load(const char *path, vlmc_image_processor **out, vlmc_error *err);
/* image_processor_type as the config names it. */
const char *vlmc_image_processor_type(const vlmc_image_processor *p);
/* Sets the model parameters of the image-token count; a value < 0 leaves that one as is.
 * patch_size: the vision tower's patch size (LLaVA, LLaVA-NeXT, SigLIP/PaliGemma);
 * cls_token: 1 when vision_feature_select_strategy is "full" (the CLS token is kept);
 * image_seq_len: Idefics3 tokens per tile. */
void vlmc_image_processor_set_token_params(vlmc_image_processor *p, int patch_size, int cls_token, int image_seq_len);
void vlmc_image_processor_free(vlmc_image_processor *p);

/* What the processor returns for one image (batch dimension 1). */
typedef struct vlmc_preprocessed {
    float *pixel_values;           /* float32, C order */
    int ndim;                      /* 4: [1, 3, H, W] (CLIP, SigLIP); 5: [1, N, 3, H, W] (LLaVA-NeXT, Idefics3) */
    int64_t shape[6];
    uint8_t *pixels_u8;            /* the same values before rescale/normalize (same layout) */
    int has_image_sizes;
    int32_t image_sizes[2];        /* LLaVA-NeXT: original (height, width) */
    int32_t *pixel_attention_mask; /* Idefics3: [1, N, H, W] (1 = real pixel), else NULL */
    int mask_ndim;
    int64_t mask_shape[4];
    int has_rows_cols;
    int32_t rows, cols;            /* Idefics3 tile grid (0, 0 when not split) */
    int64_t num_image_tokens;      /* image tokens the prompt needs for this image; -1 when
                                      the model parameters it depends on are unknown */
} vlmc_preprocessed;

vlmc_status vlmc_preprocess(const vlmc_image_processor *p, const vlmc_image *im, vlmc_preprocessed *out,
                            vlmc_error *err);
void vlmc_preprocessed_free(vlmc_preprocessed *out);
/* Writes OUT_DIR/manifest.json ({"format", "meta", "arrays": [{"name","file","dtype","shape"}]},
 * the fixtures' reference/ format) and one raw little-endian .bin per array: image_rgb
 * (uint8 [H,W,3]), pixel_values (float32), and when the processor makes them image_sizes
 * [1,2], pixel_attention_mask [1,N,H,W], rows [1], cols [1] (int32), plus num_image_tokens
 * [1] (int32) when known. meta names the processor and repeats the counts. */
vlmc_status vlmc_preprocessed_save(const vlmc_image_processor *p, const vlmc_image *im, const vlmc_preprocessed *pp,
                                   const char *out_dir, vlmc_error *err);

/* ---- models: load, forward, dump --------------------------------------------- */

/* ---- generation --------------------------------------------------------------- */

#ifdef __cplusplus
}
#endif
#endif
