/* Hugging Face config.json → typed structs, with transformers' (4.47) defaults
 * wherever a key is absent. Nested configs (`text_config`, `vision_config`) get
 * the defaults of their own model_type, as transformers builds them. */
#ifndef VLMC_FORMATS_HF_CONFIG_H
#define VLMC_FORMATS_HF_CONFIG_H

#include <stdbool.h>

#include "formats/json.h"

enum { HF_NAME_MAX = 64, HF_MAX_EOS = 8, HF_MAX_PINPOINTS = 64, HF_MAX_FEATURE_LAYERS = 8, HF_MAX_TEMPLATE_IDS = 32 };

typedef enum rope_type {
    ROPE_DEFAULT = 0,
    ROPE_LINEAR,
    ROPE_DYNAMIC,
    ROPE_LLAMA3,
    ROPE_YARN,
    ROPE_LONGROPE,
    ROPE_MROPE, /* Qwen2-VL's multimodal rotary sections */
} rope_type;

typedef struct hf_rope_scaling {
    rope_type type;
    double factor;
    /* llama3 */
    double low_freq_factor, high_freq_factor;
    int original_max_position_embeddings; /* 0 = absent */
    /* yarn */
    double attention_factor; /* < 0 = absent */
    double beta_fast, beta_slow;
    /* mrope (Qwen2-VL) */
    int mrope_section[3];
} hf_rope_scaling;

/* A Llama-family decoder (llama, mistral, qwen2, gemma, persimmon, and the text models of the VLMs). */
typedef struct hf_text_config {
    char model_type[HF_NAME_MAX];
    int vocab_size;
    int hidden_size;
    int intermediate_size;
    int num_hidden_layers;
    int num_attention_heads;
    int num_key_value_heads;
    int head_dim;
    int max_position_embeddings;
    double rms_norm_eps;
    double rope_theta;
    double partial_rotary_factor; /* 1.0 unless the config says otherwise */
    hf_rope_scaling rope_scaling;
    char hidden_act[HF_NAME_MAX]; /* gemma: hidden_activation when set */
    double layer_norm_eps; /* LayerNorm decoders: persimmon, kosmos-2, moondream2 */
    bool qk_layernorm;     /* persimmon */
    bool qkv_bias;         /* attention_bias (llama) or always (qwen2) */
    bool o_bias;           /* attention_bias (llama) */
    bool mlp_bias;
    bool tie_word_embeddings;
    int sliding_window;    /* 0 = full attention */
    int bos_token_id;      /* -1 = none */
    int eos_token_ids[HF_MAX_EOS];
    int n_eos;
    int pad_token_id;      /* -1 = none */
    /* Kosmos-2's text model (LayerNorm decoder with absolute sinusoidal positions) */
    bool scale_embedding;  /* embeddings times sqrt(hidden_size) */
} hf_text_config;

/* A ViT image encoder (clip_vision_model, siglip_vision_model, idefics3_vision). Fuyu has no tower: its
 * model_type is "fuyu" and only num_channels, image_size and patch_size are set (num_hidden_layers = 0). */
typedef struct hf_vision_config {
    char model_type[HF_NAME_MAX];
    int hidden_size;
    int intermediate_size;
    int num_hidden_layers;
    int num_attention_heads;
    int num_channels;
    int image_size;
    int patch_size;
    int projection_dim;
    double layer_norm_eps;
    char hidden_act[HF_NAME_MAX];
    /* Qwen2-VL (qwen2_vl vision_config): depth, embed_dim, num_heads, mlp_ratio and in_channels land in the fields
     * above (num_hidden_layers, hidden_size, num_attention_heads, intermediate_size = embed_dim * mlp_ratio,
     * num_channels); its hidden_size (the merger's output width) in projection_dim. */
    int spatial_merge_size, temporal_patch_size;
} hf_vision_config;

/* moondream2 (model_type "moondream1", architectures HfMoondream): the keys of its "config" dict (MoondreamConfig,
 * defaults = the full-size model) that have no place in the text / vision structs. */
typedef struct hf_moondream_config {
    int max_crops, overlap_margin;  /* vision: overlap_crop_image's crop budget and margin (patches) */
    int proj_inner_dim, proj_out_dim; /* vision proj_mlp */
    int n_query_prefix, n_query_suffix; /* tokenizer.templates.query; -1 = null (the model takes no queries) */
    int query_prefix[HF_MAX_TEMPLATE_IDS], query_suffix[HF_MAX_TEMPLATE_IDS];
} hf_moondream_config;

/* The whole model: a decoder-only LM, a vision tower alone, or a VLM with both. */
typedef struct hf_config {
    char model_type[HF_NAME_MAX];
    char architecture[HF_NAME_MAX]; /* architectures[0], or "" */
    bool has_text, has_vision;
    bool original_llava_layout; /* LlavaLlamaForCausalLM: flat Llama config + mm_* keys (Yi-VL) */
    hf_text_config text;
    hf_vision_config vision;
    /* VLM keys (llava, llava_next, idefics3) */
    int image_token_index;
    char projector_hidden_act[HF_NAME_MAX];
    bool multimodal_projector_bias;
    int vision_feature_layers[HF_MAX_FEATURE_LAYERS]; /* vision_feature_layer: an int or a list */
    int n_vision_feature_layers;
    char vision_feature_select_strategy[HF_NAME_MAX]; /* "default" or "full" */
    int image_seq_length;
    int image_grid_pinpoints[HF_MAX_PINPOINTS][2]; /* llava_next: [height, width] */
    int n_image_grid_pinpoints;
    int scale_factor; /* idefics3 */
    int latent_query_num; /* kosmos-2: image embeddings per image */
    int video_token_id, vision_start_token_id, vision_end_token_id; /* qwen2_vl */
    int projection_dim; /* paligemma: the projector's output width */
    bool moondream_layout; /* model_type moondream1 with the HfMoondream "config" dict: text, vision, moondream set */
    hf_moondream_config moondream;
} hf_config;

/* Parses a decoder config object; default_type picks the defaults when the object has no model_type. */
vlmc_status hf_text_config_parse(const cJSON *obj, const char *default_type, const char *path, hf_text_config *out,
                                 vlmc_error *err);
vlmc_status hf_vision_config_parse(const cJSON *obj, const char *default_type, const char *path, hf_vision_config *out,
                                   vlmc_error *err);
/* Parses a whole config.json object (path names it in errors). */
vlmc_status hf_config_parse(const cJSON *root, const char *path, hf_config *out, vlmc_error *err);
/* Reads and parses DIR/config.json (or a config file path). */
vlmc_status hf_config_load(const char *dir_or_file, hf_config *out, vlmc_error *err);

#endif
