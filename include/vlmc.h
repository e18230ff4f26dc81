/* vlmc — vision-language models in C. The one public header.
 *
 * Conventions (as SQLite / zstd): handles are opaque; every call that can fail
 * returns a vlmc_status and, when given a vlmc_error, fills it with a message
 * naming the file and the problem. Nothing here exits the process or keeps
 * global state. */
#ifndef VLMC_H
#define VLMC_H

#include <signal.h>
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

/* A Hugging Face tokenizer: tokenizer.json (BPE model with its normalizer,
 * pre-tokenizer, added tokens, post-processor and decoder), plus the flags of
 * tokenizer_config.json next to it (clean_up_tokenization_spaces,
 * added_tokens_decoder, bos/eos/pad tokens). A loaded tokenizer is immutable
 * apart from an internal, locked word cache: one may be shared by threads. */
typedef struct vlmc_tokenizer vlmc_tokenizer;

/* path: a folder holding tokenizer.json (or GPT-2 style vocab.json + merges.txt),
 * or a tokenizer.json file. */
vlmc_status vlmc_tokenizer_load(const char *path, vlmc_tokenizer **out, vlmc_error *err);
void vlmc_tokenizer_free(vlmc_tokenizer *tok);

/* Encodes text[0..len) (UTF-8; VLMC_ERR_ARG otherwise) into *ids (malloc'ed,
 * free with vlmc_free; *n_ids may be 0). add_special applies the
 * post-processor (e.g. a leading <s>), as HF's add_special_tokens=True. */
vlmc_status vlmc_tokenizer_encode(const vlmc_tokenizer *tok, const char *text, size_t len, int add_special,
                                  int32_t **ids, size_t *n_ids, vlmc_error *err);
/* Decodes ids into *text (malloc'ed, NUL-terminated, valid UTF-8; *len, if
 * non-NULL, is its length, as the text may hold NUL bytes). skip_special drops
 * special added tokens. Ids outside the vocabulary are skipped, as HF does.
 * transformers' clean_up_tokenization is applied when tokenizer_config.json sets
 * clean_up_tokenization_spaces. */
vlmc_status vlmc_tokenizer_decode(const vlmc_tokenizer *tok, const int32_t *ids, size_t n_ids, int skip_special,
                                  char **text, size_t *len, vlmc_error *err);

/* Number of ids: the largest id of the model or an added token, plus one. */
size_t vlmc_tokenizer_vocab_size(const vlmc_tokenizer *tok);
/* The vocabulary string of an id (byte-level 'Ġ' forms, '<0x0A>' pieces), or
 * NULL when the id is unknown. Owned by the tokenizer. */
const char *vlmc_tokenizer_id_to_token(const vlmc_tokenizer *tok, int32_t id);
/* The id of a vocabulary string or added token, or -1. */
int32_t vlmc_tokenizer_token_to_id(const vlmc_tokenizer *tok, const char *token);
/* Special token ids from tokenizer_config.json, -1 when not defined. */
int32_t vlmc_tokenizer_bos_id(const vlmc_tokenizer *tok);
int32_t vlmc_tokenizer_eos_id(const vlmc_tokenizer *tok);
int32_t vlmc_tokenizer_pad_id(const vlmc_tokenizer *tok);
/* 1 when id is a special added token (dropped by skip_special), else 0. */
int vlmc_tokenizer_is_special(const vlmc_tokenizer *tok, int32_t id);

/* Streaming decode: feed ids one at a time; each call yields the text that is
 * now final (complete UTF-8, never revised later). Together with the flush,
 * the pieces are exactly vlmc_tokenizer_decode of all the ids. *text points
 * into the stream and stays valid until the next call; *len may be NULL. */
typedef struct vlmc_decode_stream vlmc_decode_stream;
vlmc_status vlmc_decode_stream_new(const vlmc_tokenizer *tok, int skip_special, vlmc_decode_stream **out,
                                   vlmc_error *err);
vlmc_status vlmc_decode_stream_push(vlmc_decode_stream *s, int32_t id, const char **text, size_t *len,
                                    vlmc_error *err);
/* Emits what is held back and resets the stream for a new sequence. */
vlmc_status vlmc_decode_stream_flush(vlmc_decode_stream *s, const char **text, size_t *len, vlmc_error *err);
void vlmc_decode_stream_free(vlmc_decode_stream *s);

/* The `vlmc tokenize --jsonl` seam: line is one JSON string; *json_out (malloc'ed,
 * no newline) is {"ids": [...], "tokens": [...], "decoded": "...",
 * "decoded_skip_special": "..."} for it (decodes of the ids printed). */
vlmc_status vlmc_tokenizer_jsonl(const vlmc_tokenizer *tok, const char *line, size_t len, int add_special,
                                 char **json_out, vlmc_error *err);

/* ---- chat templates (Jinja) -------------------------------------------------- */

/* Chat templates render a conversation into the model's prompt text exactly as
 * transformers' apply_chat_template does (Jinja2 with trim_blocks, lstrip_blocks,
 * loop controls, raise_exception, strftime_now, tojson).
 *
 * context_json is one JSON object:
 *   {"messages": [...], "add_generation_prompt": bool, "bos_token": "...", "eos_token": "...",
 *    "extra_context": {...}, ...any other variables...}
 * Variables: messages, tools=None and documents=None unless given, add_generation_prompt
 * (default false), the special tokens (null ones are left undefined), every other top-level key,
 * then extra_context's keys on top. The reserved key "vlmc_now" ("YYYY-MM-DD HH:MM:SS") freezes
 * strftime_now (default: the current local time). Outputs are malloc'ed; free them with vlmc_free.
 * Template errors (syntax, raise_exception, type errors) name the template line. */
typedef struct vlmc_chat_template vlmc_chat_template;

/* Renders the Jinja source template_src with context_json (see above). */
vlmc_status vlmc_template_render(const char *template_src, const char *context_json, char **out, vlmc_error *err);

/* Loads a model folder's template: chat_template.jinja, else chat_template.json, else
 * tokenizer_config.json "chat_template" (a string, or a list of {name, template}: "default" is
 * used), with the special tokens of tokenizer_config.json (bos/eos/unk/pad/sep/cls/mask) as
 * defaults for the render. */
vlmc_status vlmc_chat_template_load(const char *model_dir, vlmc_chat_template **out, vlmc_error *err);
/* A template from its Jinja source text (no default special tokens). */
vlmc_status vlmc_chat_template_from_string(const char *template_src, vlmc_chat_template **out, vlmc_error *err);
/* A template from a .jinja file (errors name the file). */
vlmc_status vlmc_chat_template_from_file(const char *path, vlmc_chat_template **out, vlmc_error *err);
/* Renders context_json (see above) with a loaded template. */
vlmc_status vlmc_chat_template_render(const vlmc_chat_template *t, const char *context_json, char **out,
                                      vlmc_error *err);
void vlmc_chat_template_free(vlmc_chat_template *t);

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
 * SiglipImageProcessor, LlavaNextImageProcessor, Idefics3ImageProcessor or Qwen2VLImageProcessor
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
    int ndim;                      /* 4: [1, 3, H, W] (CLIP, SigLIP); 5: [1, N, 3, H, W] (LLaVA-NeXT, Idefics3);
                                      2: [patches, 3·temporal·P·P] (Qwen2-VL) */
    int64_t shape[6];
    uint8_t *pixels_u8;            /* the same values before rescale/normalize (same layout) */
    int has_image_sizes;
    int32_t image_sizes[2];        /* LLaVA-NeXT: original (height, width) */
    int32_t *pixel_attention_mask; /* Idefics3: [1, N, H, W] (1 = real pixel), else NULL */
    int mask_ndim;
    int64_t mask_shape[4];
    int has_rows_cols;
    int32_t rows, cols;            /* Idefics3 tile grid (0, 0 when not split) */
    int has_grid_thw;
    int32_t image_grid_thw[3];     /* Qwen2-VL: (t, h, w) in patches */
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
 * [1] (int32) when known, image_grid_thw [1,3] (Qwen2-VL). meta names the processor and repeats the counts. */
vlmc_status vlmc_preprocessed_save(const vlmc_image_processor *p, const vlmc_image *im, const vlmc_preprocessed *pp,
                                   const char *out_dir, vlmc_error *err);

/* ---- models: load, forward, dump --------------------------------------------- */

/* A loaded model folder: config.json + *.safetensors of a family found by config.json's model_type:
 * llama, mistral, qwen2 (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM), llava
 * (LlavaForConditionalGeneration), llava_next (LlavaNextForConditionalGeneration), idefics3
 * (Idefics3ForConditionalGeneration, SmolVLM), kosmos-2 (Kosmos2ForConditionalGeneration; through vlmc_dump),
 * qwen2_vl (Qwen2VLForConditionalGeneration). When the folder has them, also: tokenizer.json (+
 * tokenizer_config.json), the chat template, preprocessor_config.json (VLMs) and generation_config.json
 * (eos_token_id, an id or a list). Weights stay memory-mapped. A loaded model is not modified by use:
 * all run state (KV cache, conversation) lives in sessions. */
typedef struct vlmc_model vlmc_model;

typedef struct vlmc_model_params {
    int n_ctx;     /* default KV cache slots of a session; 0 = min(max_position_embeddings, 4096) */
    int n_batch;   /* most prompt tokens per decoder pass in sessions (llama.cpp's -b); 0 = 512. Bounds
                      the activation buffers: a long prompt runs in several passes */
    int n_threads; /* > 0: OpenMP threads (omp_set_num_threads, process-wide); 0 = OpenMP's default */
} vlmc_model_params;

/* Loads dir; p may be NULL (defaults). Errors name the file and, for weights, the tensor. */
vlmc_status vlmc_model_load(const char *dir, const vlmc_model_params *p, vlmc_model **out, vlmc_error *err);
void vlmc_model_free(vlmc_model *m);
/* config.json's model_type ("llava", ...). */
const char *vlmc_model_type(const vlmc_model *m);
/* 1 when the model takes images. */
int vlmc_model_has_vision(const vlmc_model *m);
/* The folder's tokenizer, or NULL when it has none. Owned by the model. */
const vlmc_tokenizer *vlmc_model_tokenizer(const vlmc_model *m);

/* The `vlmc dump` seam (../shared/CHECKS.md): runs the model of model_dir on the arrays of
 * IN_DIR/manifest.json (fixture format) and writes OUT_DIR/manifest.json plus one raw little-endian .bin
 * per output. Inputs: input_ids [B, T] (int32), attention_mask [B, T] (0 = left padding; position ids
 * are derived from it as generate() does, unless position_ids [B, T] is given), and for VLMs
 * pixel_values (llava: [N, 3, H, W]; llava_next: [N, tiles, 3, H, W] with image_sizes [N, 2]; idefics3:
 * [B, N, 3, H, W] with pixel_attention_mask [B, N, H, W]; all-zero padding images are dropped; kosmos-2:
 * [N, 3, H, W] with image_embeds_position_mask [B, T], the positions its image embeddings replace; paligemma:
 * [N, 3, H, W], with token_type_ids [B, T] for its training mask), or for fuyu image_patches [B, n, P·P·C] and
 * image_patches_indices [B, T]. The image features fill the image-token positions in reading order (fuyu: the
 * positions image_patches_indices names). labels [B, T] (-100 ignored, HF's shift) add the output loss [1]
 * (through the training graph: decoder-only models and LLaVA; paligemma and fuyu from the logits), and with grads != 0
 * OUT_DIR/grads.safetensors (d loss / d parameter, checkpoint names). Any other input is an error. Outputs: logits [B, T, V]; hidden_states (decoder-only) or text_hidden_states
 * (VLMs) [L+1, B, T, D]; VLMs: vision_hidden_states [Lv+1, tiles, tokens, Dv], projector_output, and per
 * family vision_selected_features (llava, llava_next), packed_image_features (llava_next),
 * vision_last_hidden_state (idefics3, paligemma), image_features (paligemma, instead of projector_output),
 * patch_embeddings (fuyu), vision_post_layernorm, vision_normalized and image_embeds instead of
 * projector_output (kosmos-2); with generate_n > 0, generated_ids [B, n] and
 * generation_step_logits [B, n, V] (greedy, no EOS stop, KV-cache path). */
vlmc_status vlmc_dump(const char *model_dir, const char *inputs_dir, const char *out_dir, int generate_n, int grads,
                      vlmc_error *err);

/* ---- generation ---------------------------------------------------------------- */

/* How to choose tokens and when to stop. The logits processors run in transformers' order: repetition
 * penalty, temperature, top-k, top-p, min-p. */
typedef struct vlmc_gen_params {
    int max_new_tokens;       /* 0 = until EOS, a stop or the context is full */
    float temperature;        /* 0 = greedy (argmax) */
    int top_k;                /* 0 = off */
    float top_p;              /* 1 = off */
    float min_p;              /* 0 = off */
    float repetition_penalty; /* 1 = off */
    uint64_t seed;            /* same seed, same prompt, same params: same tokens */
    const char *const *stop;  /* n_stop stop strings: the answer ends before the first one produced */
    int n_stop;
    int ignore_eos;           /* 1: EOS ids do not stop generation */
    /* Checked before every token: non-zero stops the answer (VLMC_STOP_CANCEL). Meant to be set from a
     * signal handler (Ctrl-C). May be NULL. */
    volatile sig_atomic_t *cancel;
} vlmc_gen_params;

/* max_new_tokens 256, greedy, every filter off, seed 0, no stop strings. */
vlmc_gen_params vlmc_gen_default_params(void);

typedef enum vlmc_stop_reason {
    VLMC_STOP_EOS = 0,  /* an EOS id (it is the last of the ids; its text is not in the answer) */
    VLMC_STOP_STRING,   /* a stop string (cut from the text) */
    VLMC_STOP_LENGTH,   /* max_new_tokens, or the context is full */
    VLMC_STOP_CANCEL,   /* *cancel was set */
    VLMC_STOP_CALLBACK, /* the stream callback returned non-zero */
} vlmc_stop_reason;
const char *vlmc_stop_reason_name(vlmc_stop_reason r);

/* Streaming: called once per generated token with the text that became final with it (complete UTF-8,
 * possibly empty: text that could still be a stop string or an incomplete character is held back; all
 * pieces together are exactly the answer's text). Return non-zero to stop. */
typedef int (*vlmc_stream_fn)(const char *text, size_t len, int32_t id, void *user);

typedef struct vlmc_timings {
    double image_encode_s; /* preprocessing and encoding of the images attached since the last answer */
    double prefill_s;      /* the prompt tokens run through the decoder */
    double decode_s;       /* the generated tokens */
    int n_prompt_tokens;   /* the whole prompt */
    int n_prefill_tokens;  /* those run now (the others were in the KV cache from earlier turns) */
    int n_generated;
    double prefill_tok_s, decode_tok_s;
} vlmc_timings;

typedef struct vlmc_result {
    int32_t *ids;  /* generated ids (malloc'ed) */
    size_t n_ids;
    char *text;    /* the answer (malloc'ed, NUL-terminated): the ids decoded without special tokens */
    size_t text_len;
    vlmc_stop_reason stop;
    vlmc_timings timings;
} vlmc_result;
void vlmc_result_free(vlmc_result *r);

/* A conversation with a model: messages, attached images and a KV cache (n_ctx slots). Each generate
 * renders the whole conversation with the chat template and runs only the tokens after the longest
 * prefix already in the KV cache (normally the new user turn): earlier turns and their images are not
 * recomputed. Images are preprocessed and encoded when attached. One session is used by one thread at
 * a time; sessions of one model may run in parallel. */
typedef struct vlmc_session vlmc_session;

/* n_ctx 0 = the model's default. */
vlmc_status vlmc_session_new(const vlmc_model *m, int n_ctx, vlmc_session **out, vlmc_error *err);
void vlmc_session_free(vlmc_session *s);
/* Forgets the messages, images and KV cache. */
void vlmc_session_reset(vlmc_session *s);
/* Attaches an image to the next message added (the image is preprocessed and encoded now; im may be
 * freed afterwards). VLMC_ERR_UNSUPPORTED for a text-only model. */
vlmc_status vlmc_session_add_image(vlmc_session *s, const vlmc_image *im, vlmc_error *err);
/* Appends a message ("system", "user", "assistant") with the images attached since the last one, as
 * the chat template expects them: content = [{"type": "image"}..., {"type": "text", "text": text}]. */
vlmc_status vlmc_session_add_message(vlmc_session *s, const char *role, const char *text, vlmc_error *err);
/* Renders the conversation (add_generation_prompt), expands each image placeholder as the model's HF
 * processor does, generates the answer (p may be NULL: defaults), streaming it through fn (may be
 * NULL), and appends it as an "assistant" message. *out (may be NULL) gets ids, text and timings; free
 * it with vlmc_result_free. Errors: images attached after the last message, a template that does not
 * write one placeholder per image, a conversation longer than the context (VLMC_ERR_LIMIT). The stream
 * callback gets one last call with id -1 for text held back until the end. */
vlmc_status vlmc_session_generate(vlmc_session *s, const vlmc_gen_params *p, vlmc_stream_fn fn, void *user,
                                  vlmc_result *out, vlmc_error *err);
/* The log-probability of `continuation` as the start of the assistant's answer to the conversation so far
 * (rendered as generate renders it; the continuation tokenized without special tokens), summed over its
 * tokens in double precision, and whether each of its tokens is the most likely one (*is_greedy, may be
 * NULL). The conversation is not changed; the prompt stays in the KV cache, so scoring several options
 * of one question runs the prompt once. lmms-eval's loglikelihood request. */
vlmc_status vlmc_session_loglikelihood(vlmc_session *s, const char *continuation, double *logprob, int *is_greedy,
                                       vlmc_error *err);
/* The prompt ids of the last generate (owned by the session; valid until the next call). */
void vlmc_session_prompt_ids(const vlmc_session *s, const int32_t **ids, size_t *n);

/* ---- grounded answers ---------------------------------------------------------- */

/* A box an answer names: x to the right and y down from the image's top-left corner. */
typedef struct vlmc_box {
    char *label;           /* the phrase it belongs to (KOSMOS-2 <phrase>, Qwen <ref>), or NULL */
    double x1, y1, x2, y2; /* pixels of the image the answer is about (or 0..1 when width or height is 0) */
} vlmc_box;

/* The boxes in a model's answer text[0..len) (UTF-8): KOSMOS-2 markup (<phrase>..</phrase><object><patch_index_A>
 * <patch_index_B></object>, read as transformers' Kosmos2Processor.post_process_generation does), Qwen-VL
 * (<ref>..</ref><box>(x1,y1),(x2,y2)</box>) and Qwen2-VL (<|object_ref_start|>..<|box_start|>(x1,y1),(x2,y2)
 * <|box_end|>) boxes on 0..1000, and "[x1, y1, x2, y2]" on 0..1000 (vlmc's synthetic data). Coordinates are scaled
 * to a width × height image. *boxes is malloc'ed (NULL when none); free it with vlmc_boxes_free. */
vlmc_status vlmc_answer_boxes(const char *text, size_t len, int width, int height, vlmc_box **boxes, size_t *n,
                              vlmc_error *err);
void vlmc_boxes_free(vlmc_box *boxes, size_t n);
/* Writes im with the outlines of the boxes (pixel coordinates; a colour per box, clipped to the image) as a PNG
 * file. im is not modified. */
vlmc_status vlmc_image_save_png_with_boxes(const vlmc_image *im, const vlmc_box *boxes, size_t n, const char *path,
                                           vlmc_error *err);

/* ---- synthetic dataset -------------------------------------------------------- */

/* `vlmc synth`: a synthetic visual world (shapes, colours, sizes, words over
 * plain or textured backgrounds) with training conversations in the Hugging
 * Face messages format. See docs/SYNTH.md for the files and their fields. */
typedef struct vlmc_synth_params {
    uint64_t seed;        /* everything written is a function of the parameters, seed included */
    int n;                /* images over all splits, 1..10,000,000 */
    int image_size;       /* square side in pixels, 64..512 (default 128) */
    int min_objects;      /* shapes per image, 1..max_objects (default 1) */
    int max_objects;      /* ..6 (default 6) */
    int questions;        /* question/answer turns per conversation, 1..32 (default 8) */
    int text_percent;     /* share of images with a written word, 0..100 (default 50) */
    double val_fraction;  /* share of images in the validation split (default 0.05) */
    double test_fraction; /* share in the test split (default 0.05); train has the rest */
    int threads;          /* OpenMP threads; 0 for the default. The output does not depend on it. */
    const char *tasks;    /* comma-separated task names to ask (docs/SYNTH.md), e.g. "caption"; NULL or "": all.
                           * The images do not depend on it, only the questions. */
} vlmc_synth_params;

/* Fills p with the defaults above (seed 0, n 1000). */
void vlmc_synth_default_params(vlmc_synth_params *p);
/* Writes the dataset into out_dir (created if needed; files already there with
 * the same names are overwritten, others are left alone): images/<split>/<id>.png,
 * <split>.jsonl (conversations), <split>_qa.jsonl (one row per question) for
 * split in train, val, test, and meta.json. Equal parameters give byte-identical files. */
vlmc_status vlmc_synth_generate(const vlmc_synth_params *p, const char *out_dir, vlmc_error *err);

/* ---- evaluation ---------------------------------------------------------------- */

/* `vlmc eval` (docs/EVAL.md): runs benchmark tasks, each described by a task
 * file (JSON: data, format, prompt template, metrics), against a model and
 * writes OUTPUT/results.json in lmms-eval's layout plus one sample log per task,
 * OUTPUT/samples_<task>.jsonl (task, doc_id, prompt, target, response, parsed,
 * score, ...). A run that finds a sample log of the same settings resumes
 * from it: logged samples are not asked again, and the metrics are computed
 * over the whole log. */
typedef struct vlmc_eval_params {
    const char *model;        /* "oracle" (answers the targets), "replay:FILE" (answers from a JSONL of
                                 {task, doc_id, response}), or a model folder (answered through a vlmc_session) */
    const char *model_args;   /* passed to the model backend; may be NULL */
    const char *const *tasks; /* task names (TASKS_DIR/<name>.json) or paths of task files */
    size_t n_tasks;
    const char *tasks_dir;    /* NULL: "tasks" */
    const char *data_dir;     /* value of ${data} in task files; NULL: unset (tasks that use it fail) */
    const char *image_dir;    /* value of ${image_dir}; NULL: unset */
    const char *output_dir;   /* created when missing */
    long limit;               /* questions per task (all rotations of each); 0 = all */
    int batch_size;           /* requests per backend call; 0 = 1 */
    int log_samples;          /* keep the sample logs after a complete run (they exist during it anyway) */
    /* called after every batch (may be NULL): done of total samples of the task, `resumed` of
     * them read from an earlier run's log, seconds since the task started */
    void (*progress)(void *user, const char *task, size_t done, size_t total, size_t resumed, double seconds);
    void *progress_user;
} vlmc_eval_params;

void vlmc_eval_default_params(vlmc_eval_params *p);
/* Runs the tasks; *results_json (may be NULL; free with vlmc_free) gets the text of
 * OUTPUT/results.json. Errors name the task file and key, the data file and line, or
 * the sample log. */
vlmc_status vlmc_eval_run(const vlmc_eval_params *p, char **results_json, vlmc_error *err);
/* The task names in tasks_dir (NULL: "tasks"): *names_out gets them, one per line,
 * sorted (malloc'ed; free with vlmc_free). */
vlmc_status vlmc_eval_list_tasks(const char *tasks_dir, char **names_out, vlmc_error *err);
/* ---- server -------------------------------------------------------------------- */

/* `vlmc serve`: an OpenAI-compatible HTTP server (libmicrohttpd) with
 * POST /v1/chat/completions (text + images, streaming with Server-Sent Events),
 * GET /v1/models, GET /health and a chat page at / (docs/SERVER.md). */
typedef struct vlmc_server vlmc_server;

typedef struct vlmc_server_params {
    const char *model;           /* model folder, or "echo" / "echo:DELAY_MS" (the test backend) */
    const char *host;            /* address to listen on; NULL = "127.0.0.1" */
    int port;                    /* 0 = any free port (see vlmc_server_port) */
    int parallel;                /* requests generating at once (slots); 0 = 1 */
    int max_queue;               /* requests waiting for a slot before HTTP 503; -1 = none wait, 0 = 16 */
    int max_connections;         /* open HTTP connections; 0 = 256 */
    const char *api_key;         /* when set, /v1/ routes need "Authorization: Bearer KEY" */
    const char *allow_path;      /* directory whose files file:// image URLs may name; NULL = file:// refused */
    const char *web_dir;         /* folder of the chat page (index.html, app.js, style.css); NULL = no page */
    size_t max_body_bytes;       /* request body; 0 = 32 MiB (HTTP 413 above) */
    int max_images;              /* images per request; 0 = 8 */
    uint64_t max_image_pixels;   /* width*height per image; 0 = 33554432 */
    uint64_t max_request_pixels; /* sum over a request's images; 0 = 4 * max_image_pixels */
    int n_ctx;                   /* context length in tokens; 0 = the model's (echo: 4096) */
    int max_tokens_cap;          /* largest max_tokens accepted; 0 = no cap beyond the context */
    int image_cache_mb;          /* decoded-image cache; 0 = 256, -1 = off */
    int timeout_s;               /* idle connection timeout; 0 = 60 */
    /* One line per request and per server event (no newline); NULL = silent.
     * Called from several threads at once. */
    void (*log)(void *ud, const char *line);
    void *log_ud;
    int log_requests;            /* 1: a line per request, 0: only errors and events */
} vlmc_server_params;

/* Zeroes p, then sets log_requests = 1 (every other field's 0 means its default). */
void vlmc_server_default_params(vlmc_server_params *p);
/* Loads the backend and starts listening; serving happens on the server's own
 * threads until vlmc_server_stop. The params' strings are copied. */
vlmc_status vlmc_server_start(const vlmc_server_params *p, vlmc_server **out, vlmc_error *err);
/* The port listened on (the one chosen when params.port was 0). */
int vlmc_server_port(const vlmc_server *s);
const char *vlmc_server_model_id(const vlmc_server *s);
/* Stops accepting, ends requests in flight (streams get an error event, waiting
 * requests HTTP 503), joins every thread and frees s. */
void vlmc_server_stop(vlmc_server *s);

/* ---- training ---------------------------------------------------------------- */

/* Fine-tuning of a llama / mistral / qwen2 or llava model folder on a conversation dataset (JSONL or JSON:
 * HF messages or LLaVA conversations, see docs/TRAINING.md), in f32 on the CPU, with Hugging Face Trainer's
 * semantics: AdamW (no weight decay on biases and norm weights), linear warmup then a linear / cosine /
 * constant schedule, clipping by global norm, gradient accumulation with the loss averaged over every
 * target token of the accumulated batch, labels -100 on padding, image tokens and (unless train_on_prompt)
 * everything but the assistant turns. Deterministic for a given seed and thread count. */
typedef struct vlmc_train_params {
    const char *model_dir;          /* required */
    const char *data_path;          /* required: .jsonl or .json */
    const char *eval_data_path;     /* NULL = no evaluation; else eval loss after every epoch */
    const char *image_root;         /* NULL = the data file's folder */
    const char *out_dir;            /* required: metrics.jsonl, loss.svg, checkpoint-N/, the exported model */
    const char *stage;              /* "full" (default), "lora", "projector", "projector+decoder" */
    double lr;                      /* 0 = 2e-5 full, 2e-4 lora, 1e-3 projector stages */
    int epochs;                     /* default 1 */
    int max_steps;                  /* > 0: this many optimizer steps instead of epochs */
    int batch_size;                 /* sequences per micro-batch, default 1 */
    int grad_accum;                 /* micro-batches per optimizer step, default 1 */
    int warmup_steps;
    const char *lr_scheduler_type;  /* "linear" (default), "cosine", "constant" */
    double max_grad_norm;           /* default 1.0; <= 0 = no clipping */
    double weight_decay;            /* default 0 */
    double adam_beta1, adam_beta2, adam_eps; /* 0 = 0.9, 0.999, 1e-8 */
    uint64_t seed;                  /* shuffling, LoRA init and dropout; default 42 */
    int lora_r;                     /* default 8 */
    double lora_alpha;              /* default 16 */
    double lora_dropout;            /* default 0.05 */
    const char *lora_targets;       /* default "q,k,v,o,gate,up,down" */
    int save_steps;                 /* > 0: OUT/checkpoint-<step>/ every that many steps */
    const char *resume_from;        /* a checkpoint-<step> folder, or NULL */
    int train_on_prompt;            /* 1: loss on every text token */
    int max_length;                 /* tokens per example (longer ones are cut), default 2048 */
    int n_threads;                  /* 0 = OpenMP's default */
    int no_export;                  /* 1: do not write the final model */
    int quiet;                      /* 1: no progress line on stderr */
} vlmc_train_params;

/* Fills p with the defaults above (NULL strings). */
void vlmc_train_params_default(vlmc_train_params *p);

typedef struct vlmc_train_progress {
    int64_t step, total_steps;      /* optimizer steps done (1-based after a step) / planned */
    double epoch;                   /* fractional epoch */
    double loss;                    /* mean loss of this step */
    double lr, grad_norm;           /* lr used by this step, gradient norm before clipping */
    double tokens_per_s, elapsed_s, eta_s;
    int is_eval;                    /* 1: an evaluation report (eval_loss set, the rest as of this step) */
    double eval_loss;
} vlmc_train_progress;

/* Called after every optimizer step and every evaluation; a nonzero return stops training (after a
 * checkpoint when save_steps > 0). */
typedef int (*vlmc_train_callback)(const vlmc_train_progress *p, void *user_data);

vlmc_status vlmc_train(const vlmc_train_params *p, vlmc_train_callback cb, void *user_data, vlmc_error *err);

/* Loss and gradients of a model folder on the inputs of IN_DIR/manifest.json (the fixtures' format:
 * input_ids [B, T], optional attention_mask, labels [B, T] (-100 ignored, HF's shift), pixel_values for
 * llava): every parameter on the loss path gets d loss / d parameter, written to grads_path as safetensors
 * with the checkpoint's tensor names (as `vlmc dump --grads` wants). loss may be NULL. */
vlmc_status vlmc_compute_grads(const char *model_dir, const char *inputs_dir, const char *grads_path, float *loss,
                               vlmc_error *err);

/* ---- speed: random models, quantization, benchmarks ---- */

/* `vlmc init`: writes out_dir/{config.json, model.safetensors, preprocessor_config.json}, a model with
 * random weights and the shapes of a published architecture (vlmc_init_arch_names). */
typedef struct vlmc_init_params {
    const char *arch;        /* "smolvlm-256m", "llava-1.5-7b", "tiny-llava" ("llava"), "tiny-idefics3" ("idefics3") */
    const char *const *sets; /* n_sets "KEY=VALUE" config.json overrides (dotted keys reach text_config / vision_config) */
    int n_sets;
    uint64_t seed;
    const char *dtype; /* "f32" (NULL) or "bf16" */
} vlmc_init_params;
vlmc_status vlmc_init_random(const vlmc_init_params *p, const char *out_dir, vlmc_error *err);
const char *vlmc_init_arch_names(void);

/* `vlmc quantize`: copies model_dir's small files (config, tokenizer, processor, template) to out_dir and
 * writes its weights to out_dir/model.gguf under their checkpoint names: every 2-D weight matrix of the
 * decoder, projector and vision tower (not embeddings of positions / patches) in type ("q8_0", "q4_0",
 * "q4_k", "q6_k", "f32", "bf16"), the rest in f32. K-quants need rows of multiples of 256 values; other rows
 * fall back as llama.cpp does (q4_k -> q4_0 here, q6_k -> q8_0). vlmc_model_load reads such a folder. */
vlmc_status vlmc_quantize(const char *model_dir, const char *type, const char *out_dir, vlmc_error *err);

/* `vlmc convert --to gguf`: writes out_dir/model.gguf (the decoder, general.architecture "llama") and
 * out_dir/mmproj.gguf (vision tower + projector, clip.projector_type "mlp" or "idefics3") with llama.cpp's
 * tensor names and metadata keys, plus the folder's tokenizer / processor files, for LLaVA and Idefics3 models
 * (weights keep their dtype, quantized ones included). vlmc_model_load reads such a folder (or X.gguf with
 * mmproj.gguf beside it) back. */
vlmc_status vlmc_convert(const char *model_dir, const char *to, const char *out_dir, vlmc_error *err);

/* `vlmc bench`: speed of a model folder on this machine, plus the machine's own bounds measured in
 * the same run. */
typedef struct vlmc_bench_params {
    int n_threads; /* 0 = OpenMP's default */
    int n_prompt;  /* prompt tokens (0 = 512) */
    int n_gen;     /* generated tokens (0 = 128) */
    int reps;      /* repetitions of each measurement, the best kept (0 = 1) */
} vlmc_bench_params;

typedef struct vlmc_bench_result {
    double image_encode_s;       /* one tile through the vision tower + projector (0 without vision) */
    double prompt_tokens_per_s;  /* n_prompt tokens in one prefill */
    double gen_tokens_per_s;     /* n_gen tokens one at a time after the prompt */
    int64_t peak_rss_bytes;      /* of this process */
    double copy_gb_per_s;        /* memory bandwidth: a threaded copy of 256 MiB, read + write bytes counted */
    double fma_gflops;           /* f32 FMA peak: a tight loop of independent vector FMAs on every thread */
    double weight_bytes_per_token; /* decoder weights read per generated token (layers + LM head) */
    double gen_bound_tokens_per_s; /* copy_gb_per_s / weight_bytes_per_token */
    double prompt_gflops;        /* achieved in prefill (2 flops per weight per token + attention) */
    double image_gflops;         /* achieved in image encoding */
    int n_threads;
} vlmc_bench_result;

vlmc_status vlmc_bench(const char *model_dir, const vlmc_bench_params *p, vlmc_bench_result *r, vlmc_error *err);
/* The result as one JSON object (keys image_encode_s, prompt_tokens_per_s, gen_tokens_per_s,
 * peak_rss_bytes, and the bounds); malloc'ed, vlmc_free it. */
char *vlmc_bench_json(const vlmc_bench_result *r);

#ifdef __cplusplus
}
#endif
#endif
