/* The models behind a vlmc_model: a decoder-only Llama-family LM, or a VLM = config + safetensors + vision tower +
 * projector + the same decoder. What differs per family lives in one file per family (llama_family.c, llava.c,
 * llava_next.c, idefics3.c, kosmos2.c, qwen2_vl.c, paligemma.c, fuyu.c, yi_vl.c, qwen_vl.c), each exporting a
 * vlm_family descriptor; src/models/registry.c maps config.json's model_type to the descriptor. This file holds what they share: loading, splicing image features into the token
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
    char *dir; /* the model folder (malloc'ed) */
    hf_config cfg;
    safetensors *st;
    safetensors *st_vision; /* a vision tower stored in a folder of its own (Yi-VL's vit/<name>/), else NULL */
    bool has_vision;
    vit_model vit;
    projector proj;
    llama_model lm;
    int image_token_id; /* -1 for a decoder-only model */
    int image_seq_len;  /* Idefics3: projected tokens per tile; DeepSeek-VL: image tokens per image */
    void *priv;         /* a family's own parts (Kosmos-2's weights, Yi-VL's and Qwen-VL's state, DeepSeek-VL's
                           towers), freed by its free */
    void *tower;        /* a family's own vision model (Qwen2-VL) instead of vit + proj; freed by fam->free */
} vlm_model;

/* The images of one forward pass, preprocessed (pixel_values of every image, tiles concatenated). */
typedef struct vlm_images {
    int n_images;
    const float *pixels;        /* [n, C, height, width] */
    int n_tiles, height, width; /* n = sum of tiles[] */
    const int *tiles;           /* [n_images] tiles of each image */
    const int32_t *image_sizes; /* [n_images, 2] original (height, width): LLaVA-NeXT; Fuyu: before padding; else NULL */
    const int32_t *pixel_mask;  /* [n, height, width] 1 = real pixel: Idefics3; NULL = all real */
    /* Qwen2-VL: [n_images, 3] (t, h, w) patch grids; pixels are then n = sum t·h·w flattened patch rows of
     * C·temporal_patch_size·P·P values (height = width = 0) */
    const int32_t *grid_thw;
} vlm_images;

/* A named intermediate a family's encode adds for the dump (ask with vlm_vision_out.want_extras): float32, shape
 * as the family's reference fixture stores it, data malloc'ed (vlm_vision_out_free_extras). */
enum { VLM_MAX_EXTRAS = 40, VLM_EXTRA_MAX_DIMS = 6 };
typedef struct vlm_extra {
    char name[48];
    int ndim;
    int64_t shape[VLM_EXTRA_MAX_DIMS];
    float *data;
} vlm_extra;

/* What a family's own dump writes, and the intermediates a family reports under its reference's names: arrays
 * (data malloc'ed, owned by the list). */
typedef struct vlm_dump_out {
    named_array *a;
    int n, cap;
} vlm_dump_out;

/* An image prepared by a family's own processing (its preprocess hook): the vlm_images of one image. */
typedef struct vlm_prepared {
    float *pixels;         /* [n_tiles, C, height, width], malloc'ed */
    int n_tiles, height, width;
    int32_t image_size[2]; /* the input's (height, width); 0 × 0 = not needed by the family */
} vlm_prepared;
void vlm_prepared_free(vlm_prepared *p);

/* What a family's encode writes. The intermediates are optional (NULL = not wanted; the dump asks for them, sized by
 * vlm_vision_sizes); features is required: the rows that replace the image tokens, image after image. */
typedef struct vlm_vision_out {
    float *hidden_states;     /* [Lv+1, n, vit_tokens, Dv] */
    float *selected;          /* [n, sel_tokens, sel_features]: the projector's input (LLaVA, LLaVA-NeXT: the
                                 vision_feature_layer selection; Kosmos-2: the L2-normalised post_layernorm states) */
    float *last_hidden_state; /* [n, vit_tokens, Dv] post_layernorm of the last layer (Idefics3; Kosmos-2: every token) */
    float *projector_output;  /* [n, proj_tokens, D] */
    float *rotary_freqs;      /* [n, head_dim / 2] (Qwen2-VL: the vision rotary angles of each patch) */
    float *features;          /* [n_features, D] */
    vlm_dump_out *own_out;    /* families with own_dump_names: their intermediates (NULL = not wanted) */
    /* written by encode (vit_tokens = 0: hidden_states were not written) */
    int vit_tokens, sel_tokens, sel_features, proj_tokens;
    size_t n_features;
    bool want_extras;
    int n_extras;
    vlm_extra extras[VLM_MAX_EXTRAS];
} vlm_vision_out;

/* Adds an extra output of shape[ndim] (copied from src when not NULL); NULL when the list is full or memory is out. */
float *vlm_vision_out_add_extra(vlm_vision_out *o, const char *name, int ndim, const int64_t *shape, const float *src);
void vlm_vision_out_free_extras(vlm_vision_out *o);

/* What the prompt needs for one image (from the image processor). */
typedef struct vlm_image_info {
    int64_t n_tokens; /* image tokens (LLaVA, LLaVA-NeXT) */
    int rows, cols;   /* Idefics3 tile grid, 0 × 0 = not split */
    int32_t grid_thw[3]; /* Qwen2-VL patch grid (t, h, w) */
} vlm_image_info;


struct vlm_family {
    const char *const *model_types; /* config.json model_type values, NULL-terminated */
    /* Optional: decides from the parsed config instead of model_types (layouts that share a model_type with
     * another family, e.g. Yi-VL's "llava"); families with it are asked first. */
    bool (*detect)(const hf_config *cfg);
    const char *hf_class;           /* the transformers class matched */
    /* transformers 4.47's LLaVA / LLaVA-NeXT decode quirk, see llama_ctx.legacy_unmask_padding_on_decode */
    bool legacy_unmask_padding;
    /* added to the position ids derived from the attention mask (PaliGemma counts from 1), see llama_ctx */
    int position_offset;
    /* PaliGemma: the prompt (image + prefix) attends both ways, see llama_input.prefix_mask */
    bool prefix_lm;
    /* Takes the decoder (and the vision tower and projector) from m->st per m->cfg. */
    vlmc_status (*load)(vlm_model *m, vlmc_error *err);
    /* The rest is NULL for a decoder-only family. */
    /* Rows of features encode will write for these images. */
    vlmc_status (*features_len)(const vlm_model *m, const vlm_images *im, size_t *n, vlmc_error *err);
    vlmc_status (*encode)(const vlm_model *m, const vlm_images *im, vlm_vision_out *out, vlmc_error *err);
    /* Appends the prompt text that stands for one image, as the family's HF processor expands "<image>". */
    vlmc_status (*image_prompt)(const vlm_model *m, const vlm_image_info *info, strbuf *out, vlmc_error *err);
    /* The text the chat template writes for an image, which image_prompt expands (NULL = VLM_IMAGE_PLACEHOLDER). */
    const char *image_placeholder;
    /* Optional: frees the family's own parts (m->priv, m->tower). */
    void (*free)(vlm_model *m);
    /* M-RoPE families (Qwen2-VL; NULL otherwise): transformers' get_rope_index for B prompts of T tokens (ids, mask
     * [B, T], mask NULL = all 1) whose images, in reading order over the batch, have the patch grids grid_thw
     * [n_images, 3]: pos [B, T, 3] (t, h, w per token; padding 1) and deltas [B] (may be NULL). */
    vlmc_status (*rope_index)(const vlm_model *m, const int32_t *ids, const int32_t *mask, int B, int T,
                              const int32_t *grid_thw, int n_images, int32_t *pos, int32_t *deltas, vlmc_error *err);
    /* Optional, for folders without a chat template (PaliGemma's): the prompt of one user message with n_images
     * images as the family's processor lays it out, "<image>" standing for each image, bos the tokenizer's BOS
     * text. The tokenizer adds no special tokens to it. */
    vlmc_status (*plain_prompt)(const vlm_model *m, int n_images, const char *text, const char *bos, strbuf *out,
                                vlmc_error *err);
    /* Optional: the family's own image processing (its original code's transform: Yi-VL, Qwen-VL, moondream2's
     * crops) instead of the folder's preprocessor_config.json, on a decoded RGB image [height, width, 3] (the
     * dump's image_raw); its steps go to steps (may be NULL) under the reference's names. */
    vlmc_status (*preprocess)(const vlm_model *m, const uint8_t *rgb, int height, int width, vlm_prepared *out,
                              vlm_dump_out *steps, vlmc_error *err);
    /* Optional: the family runs `vlmc dump` itself, on the inputs its original-code fixtures name (in_dir names
     * the folder in messages), appending every array it computes to out (with generate_n > 0 also
     * generated_ids and generation_step_logits). An input it cannot use is an error. */
    vlmc_status (*dump)(const vlm_model *m, const array_set *in, const char *in_dir, int generate_n, vlm_dump_out *out,
                        vlmc_error *err);
    /* The dump takes DeepSeek-VL's original inputs (images_seq_mask, images_emb_mask, image_raw; pixel_values
     * [B, n_images, C, S, S]). */
    bool original_inputs;
    /* Families whose reference is their original code rather than transformers (moondream2), false otherwise:
     * the dump writes encode's own_out instead of the generic vision outputs, the merged input embeddings under
     * embeds_name (when not NULL), and text hidden states with the last layer's output before the final norm
     * (llama_output.hidden_states_all) */
    bool own_dump_names;
    const char *embeds_name;
    /* the model's own prompt format instead of a chat template: the whole conversation (HF messages, content lists of
     * {"type": "image"} / {"type": "text", "text"}) as token ids, image slots (image_token_id) included; ids malloc'ed */
    vlmc_status (*conversation_ids)(const vlm_model *m, const cJSON *messages, int n_images, vlm_tokenize_fn tokenize,
                                    void *user, int32_t **ids, size_t *n, vlmc_error *err);
};

/* Fuyu (fuyu.c): FuyuImageProcessor.patchify_image on one processed image [C, H, W], keeping the rows × cols grid
 * of patch × patch squares that covers the unpadded image (preprocess_with_tokenizer_info): out [rows·cols,
 * patch·patch·C], patches row by row, each flattened as (y, x, channel). */
void fuyu_patchify(const float *image, int C, int H, int W, int rows, int cols, int patch, float *out);
/* The patch grid of an unpadded uh × uw image inside the processed H × W one: ceil(u / patch), at most H / patch. */
void fuyu_grid(int uh, int uw, int H, int W, int patch, int *rows, int *cols);

/* Appends an array (data is taken over: freed by vlm_dump_out_free, also on failure). */
vlmc_status vlm_dump_add(vlm_dump_out *o, const char *name, array_dtype dtype, int ndim, const int64_t *shape,
                         void *data, const char *note, vlmc_error *err);
void vlm_dump_out_free(vlm_dump_out *o);
/* Appends a copy of data [shape] (dtype dt); o may be NULL (nothing to do). */
vlmc_status vlm_dump_add_copy(vlm_dump_out *o, const char *name, array_dtype dt, int ndim, const int64_t *shape,
                              const void *data, const char *note, vlmc_error *err);
/* The inputs of an original-code family's dump (one sequence): input_ids [1, T], attention_mask [1, T] of ones
 * (may be absent), pixel_values [N, C, H, W] and / or image_raw [H, W, 3] uint8. Any other array is
 * an error naming it and the family. */
typedef struct vlm_dump_inputs {
    const named_array *ids, *mask, *pixels, *image_raw;
    int T;
} vlm_dump_inputs;
vlmc_status vlm_dump_read_inputs(const array_set *in, const char *dir, const char *family, vlm_dump_inputs *out,
                                 vlmc_error *err);
/* The decoder half of a family's dump on one sequence of input embeddings [1, T, D]: the full pass (logits
 * [1, T, V], text_hidden_states [L+1, 1, T, D], and for Qwen's dynamic NTK rope_inv_freq_prefill), then with
 * generate_n > 0 greedy generation through the KV cache (generated_ids, generation_step_logits). */
vlmc_status vlm_dump_decoder(const vlm_model *m, const float *embeds, int T, int generate_n, vlm_dump_out *out,
                             vlmc_error *err);

/* registry.c: the family of a parsed config.json (detect hooks first, then model_type), or NULL. */
const vlm_family *vlm_family_find(const hf_config *cfg);
/* "llama, mistral, ..." for messages (static). */
const char *vlm_family_names(void);

/* Loads a model folder (config.json + *.safetensors or vlmc quantize's model.gguf), or llama.cpp's GGUF pair:
 * a folder with model.gguf + mmproj.gguf and no config.json, or a .gguf text model with mmproj.gguf beside it. */
vlmc_status vlm_load(const char *dir, vlm_model *m, vlmc_error *err);

/* gguf_model.c: llama.cpp's GGUF pair (text model + mmproj) for LLaVA and Idefics3 */
vlmc_status vlm_load_gguf(const char *text_path, const char *mmproj_path, vlm_model *m, vlmc_error *err);
/* Writes OUT/model.gguf and OUT/mmproj.gguf (llama.cpp's names and keys) plus the folder's tokenizer and
 * processor files. */
vlmc_status vlm_convert_gguf(const char *model_dir, const char *out_dir, vlmc_error *err);
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
/* The same with the image positions given by image_mask[n] (1 = a feature row goes there) instead of the image
 * token id: Kosmos-2's image_embeds_position_mask. image_mask NULL = vlm_embed. */
vlmc_status vlm_embed_at(const vlm_model *m, const int32_t *ids, size_t n, const int32_t *image_mask,
                         const float *features, size_t n_features, size_t first, bool exact, float *embeds,
                         size_t *used, vlmc_error *err);

/* DeepSeek-VL's prepare_inputs_embeds: token embeddings of ids[n] with the rows where seq_mask[n] is set replaced,
 * in order, by the feature rows (n_features of them) where emb_mask[n_features] is set; the two counts must be
 * equal. */
vlmc_status vlm_embed_masked(const vlm_model *m, const int32_t *ids, size_t n, const uint8_t *seq_mask,
                             const float *features, const uint8_t *emb_mask, size_t n_features, float *embeds,
                             vlmc_error *err);

/* Loads the decoder (tensors under text_prefix, LM head lm_head_name), the vision tower and the projector,
 * and checks the image token id against the vocabulary. */
vlmc_status vlm_load_parts(vlm_model *m, const char *text_prefix, const char *lm_head_name, vlmc_error *err);

/* Shared by the LLaVA-style families: the decoder with 4.47's names (language_model.model.*,
 * language_model.lm_head.weight) or those of transformers >= 4.52 (model.language_model.*, lm_head.weight),
 * plus vision tower and projector. */
vlmc_status vlm_load_llava_parts(vlm_model *m, vlmc_error *err);
/* Runs the tower on all tiles and keeps LLaVA's selected features ([n, sel_tokens, sel_features], malloc'ed into
 * *selected unless out->selected is given) and the hidden states when asked. */
/* LLaVA's feature rows for these images: tiles × selected tokens (vision_feature_layer / strategy of m->cfg). */
vlmc_status vlm_llava_features_len(const vlm_model *m, const vlm_images *im, size_t *n, vlmc_error *err);
vlmc_status vlm_llava_select(const vlm_model *m, const vlm_images *im, vlm_vision_out *out, float **selected,
                             vlmc_error *err);

#endif
