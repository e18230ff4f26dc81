/* The models behind a vlmc_model: a decoder-only Llama-family LM, or a VLM = config + safetensors + vision tower +
 * projector + the same decoder. What differs per family lives in one file per family (llama_family.c, llava.c,
 * llava_next.c, idefics3.c), each exporting a vlm_family descriptor; src/models/registry.c maps config.json's
 * model_type to the descriptor. This file holds what they share: loading, splicing image features into the token
 * embeddings at the image-token positions, and the prompt's image placeholder.
 *
 * Dimensions: B = sequences, T = tokens per sequence, D = decoder hidden size, Dv = vision hidden size,
 * n = tiles (CLIP / SigLIP crops) of all images together. */
#ifndef VLMC_MODELS_VLM_H
#define VLMC_MODELS_VLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/strbuf.h"
#include "formats/arrays.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "models/llama.h"
#include "models/projector.h"
#include "models/vit.h"

/* The placeholder the processors of LLaVA, LLaVA-NeXT and Idefics3 look for in the prompt text. */
#define VLM_IMAGE_PLACEHOLDER "<image>"

typedef struct vlm_family vlm_family;

/* Tokenizes text without special tokens into *ids (malloc'ed) for a family's conversation_ids. */
typedef vlmc_status (*vlm_tokenize_fn)(void *user, const char *text, int32_t **ids, size_t *n, vlmc_error *err);

typedef struct vlm_model {
    const vlm_family *fam;
    hf_config cfg;
    safetensors *st;
    bool has_vision;
    vit_model vit;
    projector proj;
    llama_model lm;
    int image_token_id; /* -1 for a decoder-only model */
    int image_seq_len;  /* Idefics3: projected tokens per tile */
} vlm_model;

/* The images of one forward pass, preprocessed (pixel_values of every image, tiles concatenated). */
typedef struct vlm_images {
    int n_images;
    const float *pixels;        /* [n, C, height, width] */
    int n_tiles, height, width; /* n = sum of tiles[] */
    const int *tiles;           /* [n_images] tiles of each image */
    const int32_t *image_sizes; /* [n_images, 2] original (height, width): LLaVA-NeXT; else NULL */
    const int32_t *pixel_mask;  /* [n, height, width] 1 = real pixel: Idefics3; NULL = all real */
} vlm_images;

/* Intermediates a family reports under its reference's names (the dump writes them): data malloc'ed (copies). */
enum { VLM_MAX_EXTRAS = 16 };
typedef struct vlm_extras {
    int n;
    named_array a[VLM_MAX_EXTRAS]; /* name and note point at string constants */
} vlm_extras;
/* Appends a copy of data [shape] (dtype dt); extras may be NULL (nothing to do). */
vlmc_status vlm_extras_add(vlm_extras *extras, const char *name, array_dtype dt, int ndim, const int64_t *shape,
                           const void *data, const char *note, vlmc_error *err);
void vlm_extras_free(vlm_extras *extras);

/* An image prepared by a family's own processing (prepare_image): the vlm_images of one image. */
typedef struct vlm_prepared {
    float *pixels;         /* [n_tiles, C, height, width], malloc'ed */
    int n_tiles, height, width;
    int32_t image_size[2]; /* the input's (height, width) */
} vlm_prepared;
void vlm_prepared_free(vlm_prepared *p);

/* What a family's encode writes. The intermediates are optional (NULL = not wanted; the dump asks for them, sized by
 * vlm_vision_sizes); features is required: the rows that replace the image tokens, image after image. */
typedef struct vlm_vision_out {
    float *hidden_states;     /* [Lv+1, n, vit_tokens, Dv] */
    float *selected;          /* [n, sel_tokens, sel_features] (LLaVA, LLaVA-NeXT) */
    float *last_hidden_state; /* [n, vit_tokens, Dv] (Idefics3) */
    float *projector_output;  /* [n, proj_tokens, D] */
    float *features;          /* [n_features, D] */
    vlm_extras *extras;       /* families with own_dump_names: their intermediates (NULL = not wanted) */
    /* written by encode */
    int vit_tokens, sel_tokens, sel_features, proj_tokens;
    size_t n_features;
} vlm_vision_out;

/* What the prompt needs for one image (from the image processor). */
typedef struct vlm_image_info {
    int64_t n_tokens; /* image tokens (LLaVA, LLaVA-NeXT) */
    int rows, cols;   /* Idefics3 tile grid, 0 × 0 = not split */
} vlm_image_info;

struct vlm_family {
    const char *const *model_types; /* config.json model_type values, NULL-terminated */
    const char *hf_class;           /* the transformers class matched */
    /* transformers 4.47's LLaVA / LLaVA-NeXT decode quirk, see llama_ctx.legacy_unmask_padding_on_decode */
    bool legacy_unmask_padding;
    /* Takes the decoder (and the vision tower and projector) from m->st per m->cfg. */
    vlmc_status (*load)(vlm_model *m, vlmc_error *err);
    /* The rest is NULL for a decoder-only family. */
    /* Rows of features encode will write for these images. */
    vlmc_status (*features_len)(const vlm_model *m, const vlm_images *im, size_t *n, vlmc_error *err);
    vlmc_status (*encode)(const vlm_model *m, const vlm_images *im, vlm_vision_out *out, vlmc_error *err);
    /* Appends the prompt text that stands for one image, as the family's HF processor expands "<image>". */
    vlmc_status (*image_prompt)(const vlm_model *m, const vlm_image_info *info, strbuf *out, vlmc_error *err);
    /* Families whose reference is their original code rather than transformers (moondream2), NULL / false otherwise: */
    /* that code's image processing of a decoded RGB image [height, width, 3] (the dump's image_raw); its steps go to
     * extras (may be NULL) under the reference's names */
    vlmc_status (*prepare_image)(const vlm_model *m, const uint8_t *rgb, int height, int width, vlm_prepared *out,
                                 vlm_extras *extras, vlmc_error *err);
    /* the dump writes encode's extras instead of the generic vision outputs, the merged input embeddings under
     * embeds_name (when not NULL), and text hidden states with the last layer's output before the final norm
     * (llama_output.hidden_states_all) */
    bool own_dump_names;
    const char *embeds_name;
    /* the model's own prompt format instead of a chat template: the whole conversation (HF messages, content lists of
     * {"type": "image"} / {"type": "text", "text"}) as token ids, image slots (image_token_id) included; ids malloc'ed */
    vlmc_status (*conversation_ids)(const vlm_model *m, const cJSON *messages, int n_images, vlm_tokenize_fn tokenize,
                                    void *user, int32_t **ids, size_t *n, vlmc_error *err);
};

/* registry.c */
const vlm_family *vlm_family_find(const char *model_type);
/* "llama, mistral, ..." for messages (static). */
const char *vlm_family_names(void);

/* Loads a model folder (config.json + *.safetensors). */
vlmc_status vlm_load(const char *dir, vlm_model *m, vlmc_error *err);
void vlm_free(vlm_model *m);

/* Upper bounds of the intermediates of vlm_vision_out for n tiles of height × width (floats). */
void vlm_vision_sizes(const vlm_model *m, int n, int height, int width, size_t *hidden, size_t *selected,
                      size_t *last, size_t *proj);

/* Token embeddings of ids[n] with the image tokens replaced, in reading order, by features rows first.. (a session
 * prefilling the end of a conversation starts after the images already cached). With exact, every feature row must
 * be used (transformers: "Image features and image tokens do not match"); otherwise they must suffice. *used = image
 * tokens seen (may be NULL). */
vlmc_status vlm_embed(const vlm_model *m, const int32_t *ids, size_t n, const float *features, size_t n_features,
                      size_t first, bool exact, float *embeds, size_t *used, vlmc_error *err);

/* Loads the decoder (tensors under text_prefix, LM head lm_head_name), the vision tower and the projector,
 * and checks the image token id against the vocabulary. */
vlmc_status vlm_load_parts(vlm_model *m, const char *text_prefix, const char *lm_head_name, vlmc_error *err);

/* Shared by the LLaVA-style families: the decoder with 4.47's names (language_model.model.*,
 * language_model.lm_head.weight) or those of transformers >= 4.52 (model.language_model.*, lm_head.weight),
 * plus vision tower and projector. */
vlmc_status vlm_load_llava_parts(vlm_model *m, vlmc_error *err);
/* Runs the tower on all tiles and keeps LLaVA's selected features ([n, sel_tokens, sel_features], malloc'ed into
 * *selected unless out->selected is given) and the hidden states when asked. */
vlmc_status vlm_llava_select(const vlm_model *m, const vlm_images *im, vlm_vision_out *out, float **selected,
                             vlmc_error *err);

#endif
