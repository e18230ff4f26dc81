#include "formats/hf_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"

static void copy_name(char *dst, const char *src) {
    if (src == dst) return; /* a default that is the current value */
    snprintf(dst, HF_NAME_MAX, "%s", src ? src : "");
}

/* An int key that must be positive when present. */
static vlmc_status get_pos_int(const cJSON *o, const char *key, int def, const char *path, int *out, vlmc_error *err) {
    const cJSON *v = json_get(o, key);
    if (!v) {
        *out = def;
        return VLMC_OK;
    }
    int64_t x = json_int(o, key, -1);
    if (!cJSON_IsNumber(v) || x <= 0 || x > (1 << 30))
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: \"%s\" must be a positive integer", path, key);
    *out = (int)x;
    return VLMC_OK;
}

static int get_id(const cJSON *o, const char *key, int def) {
    const cJSON *v = json_get(o, key);
    if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0);
    if (!cJSON_IsNumber(v)) return def;
    return (int)json_int(o, key, def);
}

static vlmc_status parse_rope_scaling(const cJSON *o, const char *path, hf_rope_scaling *rs, vlmc_error *err) {
    memset(rs, 0, sizeof *rs);
    rs->factor = 1.0;
    rs->attention_factor = -1.0;
    rs->beta_fast = 32.0;
    rs->beta_slow = 1.0;
    const cJSON *r = json_get(o, "rope_scaling");
    if (!r) return VLMC_OK;
    if (!cJSON_IsObject(r)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: \"rope_scaling\" is not an object", path);
    const char *t = json_string(r, "rope_type", json_string(r, "type", "default"));
    if (!strcmp(t, "default")) rs->type = ROPE_DEFAULT;
    else if (!strcmp(t, "linear")) rs->type = ROPE_LINEAR;
    else if (!strcmp(t, "dynamic")) rs->type = ROPE_DYNAMIC;
    else if (!strcmp(t, "llama3")) rs->type = ROPE_LLAMA3;
    else if (!strcmp(t, "yarn")) rs->type = ROPE_YARN;
    else if (!strcmp(t, "longrope")) rs->type = ROPE_LONGROPE;
    else if (!strcmp(t, "mrope")) rs->type = ROPE_MROPE;
    else return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: rope_scaling type \"%s\" is not supported", path, t);
    rs->factor = json_number(r, "factor", 1.0);
    rs->low_freq_factor = json_number(r, "low_freq_factor", 1.0);
    rs->high_freq_factor = json_number(r, "high_freq_factor", 4.0);
    rs->original_max_position_embeddings = (int)json_int(r, "original_max_position_embeddings", 0);
    rs->attention_factor = json_number(r, "attention_factor", -1.0);
    rs->beta_fast = json_number(r, "beta_fast", 32.0);
    rs->beta_slow = json_number(r, "beta_slow", 1.0);
    const cJSON *ms = json_get(r, "mrope_section");
    if (ms) {
        if (rs->type == ROPE_DEFAULT) rs->type = ROPE_MROPE;
        if (!cJSON_IsArray(ms) || cJSON_GetArraySize(ms) != 3)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: rope_scaling.mrope_section must be a list of 3 ints", path);
        for (int i = 0; i < 3; i++) rs->mrope_section[i] = cJSON_GetArrayItem(ms, i)->valueint;
    }
    if ((rs->type == ROPE_LINEAR || rs->type == ROPE_DYNAMIC || rs->type == ROPE_LLAMA3 || rs->type == ROPE_YARN) &&
        !(rs->factor >= 1.0))
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: rope_scaling.factor must be >= 1", path);
    return VLMC_OK;
}

/* Defaults of each decoder config class in transformers 4.47. */
static void text_defaults(const char *type, hf_text_config *c) {
    memset(c, 0, sizeof *c);
    copy_name(c->model_type, type);
    copy_name(c->hidden_act, "silu");
    c->rms_norm_eps = 1e-6;
    c->rope_theta = 10000.0;
    c->partial_rotary_factor = 1.0;
    c->bos_token_id = 1;
    c->eos_token_ids[0] = 2;
    c->n_eos = 1;
    c->pad_token_id = -1;
    if (!strcmp(type, "qwen2_vl")) { /* Qwen2VLConfig (the decoder keys sit at the top level) */
        c->vocab_size = 152064; c->hidden_size = 8192; c->intermediate_size = 29568; c->num_hidden_layers = 80;
        c->num_attention_heads = 64; c->num_key_value_heads = 8; c->max_position_embeddings = 32768;
        c->rope_theta = 1000000.0; c->rms_norm_eps = 1e-5; c->bos_token_id = -1; c->n_eos = 0; c->qkv_bias = true;
    } else if (!strcmp(type, "qwen2")) {
        c->vocab_size = 151936; c->hidden_size = 4096; c->intermediate_size = 22016; c->num_hidden_layers = 32;
        c->num_attention_heads = 32; c->num_key_value_heads = 32; c->max_position_embeddings = 32768;
        c->bos_token_id = -1; c->n_eos = 0; c->qkv_bias = true;
    } else if (!strcmp(type, "mistral")) {
        c->vocab_size = 32000; c->hidden_size = 4096; c->intermediate_size = 14336; c->num_hidden_layers = 32;
        c->num_attention_heads = 32; c->num_key_value_heads = 8; c->max_position_embeddings = 4096 * 32;
        c->sliding_window = 4096;
    } else if (!strcmp(type, "gemma")) {
        c->vocab_size = 256000; c->hidden_size = 3072; c->intermediate_size = 24576; c->num_hidden_layers = 28;
        c->num_attention_heads = 16; c->num_key_value_heads = 16; c->head_dim = 256; c->max_position_embeddings = 8192;
        c->bos_token_id = 2; c->eos_token_ids[0] = 1; c->pad_token_id = 0; c->tie_word_embeddings = true;
        copy_name(c->hidden_act, "gelu_pytorch_tanh");
    } else if (!strcmp(type, "persimmon")) {
        c->vocab_size = 262144; c->hidden_size = 4096; c->intermediate_size = 16384; c->num_hidden_layers = 36;
        c->num_attention_heads = 64; c->max_position_embeddings = 16384; c->rope_theta = 25000.0;
        c->partial_rotary_factor = 0.5; c->layer_norm_eps = 1e-5; c->qk_layernorm = true;
        copy_name(c->hidden_act, "relu2");
    } else { /* llama and anything Llama-shaped */
        c->vocab_size = 32000; c->hidden_size = 4096; c->intermediate_size = 11008; c->num_hidden_layers = 32;
        c->num_attention_heads = 32; c->num_key_value_heads = 0; c->max_position_embeddings = 2048;
    }
}

vlmc_status hf_text_config_parse(const cJSON *o, const char *default_type, const char *path, hf_text_config *c,
                                 vlmc_error *err) {
    /* A wrapper's own model_type (e.g. Yi-VL's flat "llava") says nothing about the decoder's
     * defaults: only the decoder families themselves pick them. */
    const char *type = json_string(o, "model_type", default_type);
    if (strcmp(type, "llama") && strcmp(type, "qwen2") && strcmp(type, "mistral") && strcmp(type, "qwen2_vl") &&
        strcmp(type, "gemma") && strcmp(type, "persimmon"))
        type = default_type;
    const bool qwen = !strcmp(type, "qwen2") || !strcmp(type, "qwen2_vl"); /* q/k/v biases, optional window */
    text_defaults(type, c);
    vlmc_status s;
    if ((s = get_pos_int(o, "vocab_size", c->vocab_size, path, &c->vocab_size, err)) ||
        (s = get_pos_int(o, "hidden_size", c->hidden_size, path, &c->hidden_size, err)) ||
        (s = get_pos_int(o, "intermediate_size", c->intermediate_size, path, &c->intermediate_size, err)) ||
        (s = get_pos_int(o, "num_hidden_layers", c->num_hidden_layers, path, &c->num_hidden_layers, err)) ||
        (s = get_pos_int(o, "num_attention_heads", c->num_attention_heads, path, &c->num_attention_heads, err)) ||
        (s = get_pos_int(o, "max_position_embeddings", c->max_position_embeddings, path, &c->max_position_embeddings, err)))
        return s;
    int kv_default = c->num_key_value_heads ? c->num_key_value_heads : c->num_attention_heads;
    if ((s = get_pos_int(o, "num_key_value_heads", kv_default, path, &c->num_key_value_heads, err))) return s;
    /* GemmaConfig.head_dim is 256 whatever the hidden size; the others derive it */
    int hd_default = !strcmp(c->model_type, "gemma") ? 256 : c->hidden_size / c->num_attention_heads;
    if ((s = get_pos_int(o, "head_dim", hd_default, path, &c->head_dim, err))) return s;
    if (c->num_attention_heads % c->num_key_value_heads != 0)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                         path, c->num_attention_heads, c->num_key_value_heads);
    c->rms_norm_eps = json_number(o, "rms_norm_eps", c->rms_norm_eps);
    c->rope_theta = json_number(o, "rope_theta", c->rope_theta);
    c->partial_rotary_factor = json_number(o, "partial_rotary_factor", c->partial_rotary_factor);
    if (!(c->partial_rotary_factor > 0.0 && c->partial_rotary_factor <= 1.0))
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: partial_rotary_factor must be in (0, 1]", path);
    copy_name(c->hidden_act, json_string(o, "hidden_act", c->hidden_act));
    /* GemmaConfig.hidden_activation overrides hidden_act when it is not null */
    if (!strcmp(c->model_type, "gemma")) copy_name(c->hidden_act, json_string(o, "hidden_activation", c->hidden_act));
    c->layer_norm_eps = json_number(o, "layer_norm_eps", c->layer_norm_eps);
    c->qk_layernorm = json_bool(o, "qk_layernorm", c->qk_layernorm);
    if (!qwen) c->qkv_bias = c->o_bias = json_bool(o, "attention_bias", false);
    c->mlp_bias = json_bool(o, "mlp_bias", false);
    c->tie_word_embeddings = json_bool(o, "tie_word_embeddings", c->tie_word_embeddings);
    if (qwen) {
        /* Qwen2 uses the window only when use_sliding_window is set. */
        c->sliding_window = json_bool(o, "use_sliding_window", false) ? (int)json_int(o, "sliding_window", 4096) : 0;
    } else if (!strcmp(c->model_type, "mistral")) {
        /* Absent means the class default (4096); an explicit null means no window. */
        bool present = cJSON_GetObjectItemCaseSensitive(o, "sliding_window") != NULL;
        c->sliding_window = (int)json_int(o, "sliding_window", present ? 0 : 4096);
    }
    if (c->sliding_window < 0) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: negative sliding_window", path);
    c->bos_token_id = get_id(o, "bos_token_id", c->bos_token_id);
    c->pad_token_id = get_id(o, "pad_token_id", c->pad_token_id);
    const cJSON *eos = json_get(o, "eos_token_id");
    if (cJSON_IsNumber(eos)) {
        c->eos_token_ids[0] = eos->valueint;
        c->n_eos = 1;
    } else if (cJSON_IsArray(eos)) {
        c->n_eos = 0;
        for (const cJSON *e = eos->child; e && c->n_eos < HF_MAX_EOS; e = e->next)
            if (cJSON_IsNumber(e)) c->eos_token_ids[c->n_eos++] = e->valueint;
    }
    return parse_rope_scaling(o, path, &c->rope_scaling, err);
}

static void vision_defaults(const char *type, hf_vision_config *v) {
    memset(v, 0, sizeof *v);
    copy_name(v->model_type, type);
    v->num_channels = 3;
    v->num_hidden_layers = 12;
    v->num_attention_heads = 12;
    v->hidden_size = 768;
    v->intermediate_size = 3072;
    if (!strcmp(type, "siglip_vision_model")) {
        v->image_size = 224; v->patch_size = 16; v->layer_norm_eps = 1e-6;
        copy_name(v->hidden_act, "gelu_pytorch_tanh");
    } else if (!strcmp(type, "idefics3_vision")) {
        v->hidden_size = 1152; v->num_attention_heads = 16; v->image_size = 224; v->patch_size = 32;
        v->layer_norm_eps = 1e-6;
        copy_name(v->hidden_act, "gelu_pytorch_tanh");
    } else { /* clip_vision_model */
        v->image_size = 224; v->patch_size = 32; v->layer_norm_eps = 1e-5; v->projection_dim = 512;
        copy_name(v->hidden_act, "quick_gelu");
    }
}

vlmc_status hf_vision_config_parse(const cJSON *o, const char *default_type, const char *path, hf_vision_config *v,
                                   vlmc_error *err) {
    const char *type = json_string(o, "model_type", default_type);
    vision_defaults(type, v);
    vlmc_status s;
    if ((s = get_pos_int(o, "hidden_size", v->hidden_size, path, &v->hidden_size, err)) ||
        (s = get_pos_int(o, "intermediate_size", v->intermediate_size, path, &v->intermediate_size, err)) ||
        (s = get_pos_int(o, "num_hidden_layers", v->num_hidden_layers, path, &v->num_hidden_layers, err)) ||
        (s = get_pos_int(o, "num_attention_heads", v->num_attention_heads, path, &v->num_attention_heads, err)) ||
        (s = get_pos_int(o, "num_channels", v->num_channels, path, &v->num_channels, err)) ||
        (s = get_pos_int(o, "image_size", v->image_size, path, &v->image_size, err)) ||
        (s = get_pos_int(o, "patch_size", v->patch_size, path, &v->patch_size, err)) ||
        (s = get_pos_int(o, "projection_dim", v->projection_dim ? v->projection_dim : 512, path, &v->projection_dim, err)))
        return s;
    v->layer_norm_eps = json_number(o, "layer_norm_eps", v->layer_norm_eps);
    copy_name(v->hidden_act, json_string(o, "hidden_act", v->hidden_act));
    if (v->hidden_size % v->num_attention_heads)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: vision hidden_size %d is not a multiple of num_attention_heads %d",
                         path, v->hidden_size, v->num_attention_heads);
    return VLMC_OK;
}

/* Qwen2VLVisionConfig: its own key names, mapped onto hf_vision_config (see hf_config.h). LayerNorm eps is 1e-6
 * in the modeling code, not a config key. */
static vlmc_status qwen2_vl_vision_parse(const cJSON *o, const char *path, hf_vision_config *v, vlmc_error *err) {
    memset(v, 0, sizeof *v);
    copy_name(v->model_type, "qwen2_vl");
    int mlp_ratio = 4;
    vlmc_status s;
    if ((s = get_pos_int(o, "depth", 32, path, &v->num_hidden_layers, err)) ||
        (s = get_pos_int(o, "embed_dim", 1280, path, &v->hidden_size, err)) ||
        (s = get_pos_int(o, "hidden_size", 3584, path, &v->projection_dim, err)) ||
        (s = get_pos_int(o, "num_heads", 16, path, &v->num_attention_heads, err)) ||
        (s = get_pos_int(o, "in_channels", 3, path, &v->num_channels, err)) ||
        (s = get_pos_int(o, "patch_size", 14, path, &v->patch_size, err)) ||
        (s = get_pos_int(o, "spatial_merge_size", 2, path, &v->spatial_merge_size, err)) ||
        (s = get_pos_int(o, "temporal_patch_size", 2, path, &v->temporal_patch_size, err)))
        return s;
    const cJSON *mr = json_get(o, "mlp_ratio");
    if (mr && (!cJSON_IsNumber(mr) || !(mr->valuedouble > 0) || mr->valuedouble > 64))
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: vision_config.mlp_ratio must be a positive number", path);
    /* int(embed_dim * mlp_ratio) */
    double inter = mr ? v->hidden_size * mr->valuedouble : (double)v->hidden_size * mlp_ratio;
    if (!(inter >= 1) || inter > (1 << 30))
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: vision_config embed_dim * mlp_ratio is out of range", path);
    v->intermediate_size = (int)inter;
    v->layer_norm_eps = 1e-6;
    copy_name(v->hidden_act, json_string(o, "hidden_act", "quick_gelu"));
    if (v->hidden_size % v->num_attention_heads || (v->hidden_size / v->num_attention_heads) % 4)
        return vlmc_fail(err, VLMC_ERR_FORMAT,
                         "%s: vision embed_dim %d over num_heads %d must give a head size that is a multiple of 4", path,
                         v->hidden_size, v->num_attention_heads);
    return VLMC_OK;
}

/* Qwen2VLConfig: a flat Qwen2 decoder config (transformers >= 4.53 nests it as text_config) plus vision_config and
 * the vision token ids. */
static vlmc_status parse_qwen2_vl(const cJSON *root, const char *path, hf_config *c, vlmc_error *err) {
    c->has_vision = c->has_text = true;
    const cJSON *tc = json_get(root, "text_config");
    vlmc_status s = hf_text_config_parse(cJSON_IsObject(tc) ? tc : root, "qwen2_vl", path, &c->text, err);
    if (s) return s;
    const cJSON *vc = json_get(root, "vision_config");
    if (vc && !cJSON_IsObject(vc)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: vision_config is not an object", path);
    if ((s = qwen2_vl_vision_parse(vc, path, &c->vision, err))) return s;
    if (c->text.rope_scaling.type != ROPE_MROPE)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: qwen2_vl needs rope_scaling.mrope_section (M-RoPE)", path);
    int64_t sum = 0; /* in 64 bits: each section is an int from the file */
    for (int i = 0; i < 3; i++) {
        if (c->text.rope_scaling.mrope_section[i] < 0) sum = -(1 << 20);
        sum += c->text.rope_scaling.mrope_section[i];
    }
    if (sum * 2 != c->text.head_dim)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: rope_scaling.mrope_section must add up to head_dim / 2 = %d", path,
                         c->text.head_dim / 2);
    c->image_token_index = get_id(root, "image_token_id", 151655);
    c->video_token_id = get_id(root, "video_token_id", 151656);
    c->vision_start_token_id = get_id(root, "vision_start_token_id", 151652);
    c->vision_end_token_id = get_id(root, "vision_end_token_id", 151653);
    return VLMC_OK;
}

/* transformers' LLaVA defaults: a CLIP ViT-L/14-336 tower. */
static void llava_vision_defaults(hf_vision_config *v) {
    vision_defaults("clip_vision_model", v);
    v->intermediate_size = 4096; v->hidden_size = 1024; v->patch_size = 14; v->image_size = 336;
    v->num_hidden_layers = 24; v->num_attention_heads = 16; v->projection_dim = 768;
}

static vlmc_status parse_vlm(const cJSON *root, const char *path, hf_config *c, vlmc_error *err) {
    const char *mt = c->model_type;
    bool is_llava = !strcmp(mt, "llava") || !strcmp(mt, "llava_next");
    const cJSON *vc = json_get(root, "vision_config"), *tc = json_get(root, "text_config");
    vlmc_status s;
    c->has_vision = c->has_text = true;
    if (is_llava) {
        if (vc) {
            if ((s = hf_vision_config_parse(vc, "clip_vision_model", path, &c->vision, err))) return s;
        } else llava_vision_defaults(&c->vision);
    } else if ((s = hf_vision_config_parse(vc, "idefics3_vision", path, &c->vision, err))) return s;
    if ((s = hf_text_config_parse(tc, "llama", path, &c->text, err))) return s;
    /* The outer config's tie_word_embeddings wins for these wrappers. */
    c->text.tie_word_embeddings = json_bool(root, "tie_word_embeddings", false);
    copy_name(c->projector_hidden_act, json_string(root, "projector_hidden_act", "gelu"));
    c->multimodal_projector_bias = json_bool(root, "multimodal_projector_bias", true);
    if (is_llava) {
        c->image_token_index = (int)json_int(root, "image_token_index", 32000);
        c->image_seq_length = (int)json_int(root, "image_seq_length", 576);
        copy_name(c->vision_feature_select_strategy, json_string(root, "vision_feature_select_strategy", "default"));
        if (strcmp(c->vision_feature_select_strategy, "default") && strcmp(c->vision_feature_select_strategy, "full"))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: vision_feature_select_strategy \"%s\" is neither default nor full",
                             path, c->vision_feature_select_strategy);
        const cJSON *fl = json_get(root, "vision_feature_layer");
        c->n_vision_feature_layers = 1;
        c->vision_feature_layers[0] = -2;
        if (cJSON_IsNumber(fl)) c->vision_feature_layers[0] = fl->valueint;
        else if (cJSON_IsArray(fl)) {
            c->n_vision_feature_layers = 0;
            for (const cJSON *e = fl->child; e; e = e->next) {
                if (!cJSON_IsNumber(e) || c->n_vision_feature_layers == HF_MAX_FEATURE_LAYERS)
                    return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: bad vision_feature_layer list", path);
                c->vision_feature_layers[c->n_vision_feature_layers++] = e->valueint;
            }
        }
        for (int i = 0; i < c->n_vision_feature_layers; i++) {
            int l = c->vision_feature_layers[i], n = c->vision.num_hidden_layers;
            if (l < -(n + 1) || l > n)
                return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: vision_feature_layer %d is outside the %d-layer tower", path, l, n);
        }
    } else {
        c->image_token_index = (int)json_int(root, "image_token_id", 128257);
        c->scale_factor = (int)json_int(root, "scale_factor", 2);
        if (c->scale_factor <= 0) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: scale_factor must be positive", path);
    }
    if (!strcmp(mt, "llava_next")) {
        static const int def[5][2] = {{336, 672}, {672, 336}, {672, 672}, {1008, 336}, {336, 1008}};
        const cJSON *gp = json_get(root, "image_grid_pinpoints");
        if (!gp) {
            c->n_image_grid_pinpoints = 5;
            memcpy(c->image_grid_pinpoints, def, sizeof def);
        } else {
            if (!cJSON_IsArray(gp)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: image_grid_pinpoints is not a list", path);
            for (const cJSON *e = gp->child; e; e = e->next) {
                if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 2 || !cJSON_IsNumber(e->child) ||
                    !cJSON_IsNumber(e->child->next) || e->child->valueint <= 0 || e->child->next->valueint <= 0 ||
                    c->n_image_grid_pinpoints == HF_MAX_PINPOINTS)
                    return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: image_grid_pinpoints entries must be [height, width]", path);
                c->image_grid_pinpoints[c->n_image_grid_pinpoints][0] = e->child->valueint;
                c->image_grid_pinpoints[c->n_image_grid_pinpoints][1] = e->child->next->valueint;
                c->n_image_grid_pinpoints++;
            }
        }
    }
    return VLMC_OK;
}

/* Kosmos2Config (model_type "kosmos-2"): Kosmos2TextConfig's keys (embed_dim, layers, ffn_dim, attention_heads,
 * activation_function, layer_norm_eps, scale_embedding) map onto hf_text_config; the vision tower is CLIP's. */
static vlmc_status parse_kosmos2(const cJSON *root, const char *path, hf_config *c, vlmc_error *err) {
    const cJSON *tc = json_get(root, "text_config"), *vc = json_get(root, "vision_config");
    hf_text_config *t = &c->text;
    vlmc_status s;
    c->has_text = c->has_vision = true;
    memset(t, 0, sizeof *t);
    copy_name(t->model_type, "kosmos_2_text_model");
    if ((s = get_pos_int(tc, "vocab_size", 65037, path, &t->vocab_size, err)) ||
        (s = get_pos_int(tc, "embed_dim", 2048, path, &t->hidden_size, err)) ||
        (s = get_pos_int(tc, "ffn_dim", 8192, path, &t->intermediate_size, err)) ||
        (s = get_pos_int(tc, "layers", 24, path, &t->num_hidden_layers, err)) ||
        (s = get_pos_int(tc, "attention_heads", 32, path, &t->num_attention_heads, err)) ||
        (s = get_pos_int(tc, "max_position_embeddings", 2048, path, &t->max_position_embeddings, err)) ||
        (s = get_pos_int(root, "latent_query_num", 64, path, &c->latent_query_num, err)))
        return s;
    if (t->hidden_size % t->num_attention_heads)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: text_config.embed_dim %d is not a multiple of attention_heads %d",
                         path, t->hidden_size, t->num_attention_heads);
    t->num_key_value_heads = t->num_attention_heads;
    t->head_dim = t->hidden_size / t->num_attention_heads;
    t->layer_norm_eps = json_number(tc, "layer_norm_eps", 1e-5);
    t->scale_embedding = json_bool(tc, "scale_embedding", true);
    copy_name(t->hidden_act, json_string(tc, "activation_function", "gelu"));
    t->qkv_bias = t->o_bias = t->mlp_bias = true;
    t->tie_word_embeddings = json_bool(tc, "tie_word_embeddings", true); /* PretrainedConfig's default */
    t->rope_theta = 10000.0; /* unused: the positions are sinusoidal embeddings */
    t->partial_rotary_factor = 1.0;
    t->pad_token_id = get_id(tc, "pad_token_id", 1);
    t->bos_token_id = get_id(tc, "bos_token_id", 0);
    t->eos_token_ids[0] = get_id(tc, "eos_token_id", 2);
    t->n_eos = t->eos_token_ids[0] >= 0;
    if (json_bool(tc, "add_cross_attention", false))
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: text_config.add_cross_attention is not supported", path);
    if ((s = hf_vision_config_parse(vc, "clip_vision_model", path, &c->vision, err))) return s;
    /* Kosmos2VisionConfig's defaults where CLIP's differ */
    c->vision.patch_size = (int)json_int(vc, "patch_size", 14);
    if (!json_get(vc, "image_size")) c->vision.image_size = 224;
    if (!json_get(vc, "hidden_size")) c->vision.hidden_size = 1024;
    if (!json_get(vc, "intermediate_size")) c->vision.intermediate_size = 4096;
    if (!json_get(vc, "num_hidden_layers")) c->vision.num_hidden_layers = 24;
    if (!json_get(vc, "num_attention_heads")) c->vision.num_attention_heads = 16;
    if (c->vision.patch_size <= 0 || c->vision.hidden_size % c->vision.num_attention_heads)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: bad vision_config (patch_size, hidden_size / heads)", path);
    return VLMC_OK;
}

/* PaliGemmaConfig: a SigLIP tower (vision_config), a Gemma decoder (text_config), defaults of PaliGemma-3B. */
static vlmc_status parse_paligemma(const cJSON *root, const char *path, hf_config *c, vlmc_error *err) {
    const cJSON *vc = json_get(root, "vision_config"), *tc = json_get(root, "text_config");
    vlmc_status s;
    c->has_vision = c->has_text = true;
    if (vc) {
        if ((s = hf_vision_config_parse(vc, "siglip_vision_model", path, &c->vision, err))) return s;
    } else {
        vision_defaults("siglip_vision_model", &c->vision);
        c->vision.intermediate_size = 4096; c->vision.hidden_size = 1152; c->vision.patch_size = 14;
        c->vision.image_size = 224; c->vision.num_hidden_layers = 27; c->vision.num_attention_heads = 16;
    }
    if (strcmp(c->vision.model_type, "siglip_vision_model"))
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: paligemma vision_config model_type \"%s\" is not supported "
                         "(siglip_vision_model is)", path, c->vision.model_type);
    const char *tt = json_string(tc, "model_type", "gemma");
    if (strcmp(tt, "gemma"))
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: paligemma text_config model_type \"%s\" is not supported "
                         "(gemma is)", path, tt);
    if (tc) {
        if ((s = hf_text_config_parse(tc, "gemma", path, &c->text, err))) return s;
    } else {
        text_defaults("gemma", &c->text);
        c->text.hidden_size = 2048; c->text.num_hidden_layers = 18; c->text.intermediate_size = 16384;
        c->text.num_attention_heads = 8; c->text.num_key_value_heads = 1;
        c->text.vocab_size = (int)json_int(root, "vocab_size", 257152);
    }
    c->text.tie_word_embeddings = json_bool(root, "tie_word_embeddings", c->text.tie_word_embeddings);
    c->image_token_index = (int)json_int(root, "image_token_index", 256000);
    c->projection_dim = (int)json_int(root, "projection_dim", 2048);
    if (c->projection_dim != c->text.hidden_size)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: projection_dim %d differs from the text hidden_size %d", path,
                         c->projection_dim, c->text.hidden_size);
    return VLMC_OK;
}

/* FuyuConfig: no vision tower (image patches go through one linear layer); the Persimmon decoder is text_config,
 * or, without one, the top-level keys. patch_size, num_channels and image_size are top-level keys. */
static vlmc_status parse_fuyu(const cJSON *root, const char *path, hf_config *c, vlmc_error *err) {
    const cJSON *tc = json_get(root, "text_config");
    vlmc_status s;
    c->has_vision = c->has_text = true;
    const char *tt = json_string(tc ? tc : root, "model_type", "persimmon");
    if (tc && strcmp(tt, "persimmon"))
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: fuyu text_config model_type \"%s\" is not supported "
                         "(persimmon is)", path, tt);
    if ((s = hf_text_config_parse(tc ? tc : root, "persimmon", path, &c->text, err))) return s;
    hf_vision_config *v = &c->vision;
    memset(v, 0, sizeof *v);
    copy_name(v->model_type, "fuyu");
    v->hidden_size = c->text.hidden_size;
    if ((s = get_pos_int(root, "patch_size", 30, path, &v->patch_size, err)) ||
        (s = get_pos_int(root, "num_channels", 3, path, &v->num_channels, err)) ||
        (s = get_pos_int(root, "image_size", 300, path, &v->image_size, err)))
        return s;
    if (v->patch_size > 1024 || v->num_channels > 16)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: patch_size %d / num_channels %d out of range", path, v->patch_size,
                         v->num_channels);
    c->image_token_index = (int)json_int(root, "image_token_id", 71011); /* |SPEAKER| in fuyu-8b's vocabulary */
    return VLMC_OK;
}

/* A list of token ids (a template) of at most HF_MAX_TEMPLATE_IDS entries. */
static vlmc_status get_ids(const cJSON *arr, const char *key, const char *path, int *ids, int *n, vlmc_error *err) {
    *n = 0;
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) > HF_MAX_TEMPLATE_IDS)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: \"%s\" must be a list of at most %d token ids", path, key,
                         HF_MAX_TEMPLATE_IDS);
    for (const cJSON *e = arr->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > (1 << 30))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: \"%s\" holds something that is not a token id", path, key);
        ids[(*n)++] = (int)e->valuedouble;
    }
    return VLMC_OK;
}

/* moondream2's HfConfig: {"model_type": "moondream1", "config": {"text": {...}, "vision": {...}, "region": {...},
 * "tokenizer": {...}}}; an absent key takes MoondreamConfig's default (moondream/torch/config.py), so the published
 * "config": {} is the full-size model. The decoder and the tower are described in the usual structs. */
static vlmc_status parse_moondream(const cJSON *root, const char *path, hf_config *c, vlmc_error *err) {
    const cJSON *cfg = json_get(root, "config");
    const cJSON *t = json_get(cfg, "text"), *v = json_get(cfg, "vision"), *tok = json_get(cfg, "tokenizer");
    if ((t && !cJSON_IsObject(t)) || (v && !cJSON_IsObject(v)) || (tok && !cJSON_IsObject(tok)))
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: config.text / config.vision / config.tokenizer must be objects", path);
    hf_text_config *tc = &c->text;
    hf_vision_config *vc = &c->vision;
    hf_moondream_config *md = &c->moondream;
    memset(tc, 0, sizeof *tc);
    memset(vc, 0, sizeof *vc);
    copy_name(tc->model_type, "moondream1");
    copy_name(vc->model_type, "moondream1");
    vlmc_status s;
    int dim, n_heads;
    if ((s = get_pos_int(t, "dim", 2048, path, &dim, err)) ||
        (s = get_pos_int(t, "ff_dim", 8192, path, &tc->intermediate_size, err)) ||
        (s = get_pos_int(t, "n_layers", 24, path, &tc->num_hidden_layers, err)) ||
        (s = get_pos_int(t, "vocab_size", 51200, path, &tc->vocab_size, err)) ||
        (s = get_pos_int(t, "max_context", 2048, path, &tc->max_position_embeddings, err)) ||
        (s = get_pos_int(t, "n_heads", 32, path, &n_heads, err)) ||
        (s = get_pos_int(t, "n_kv_heads", 32, path, &tc->num_key_value_heads, err)))
        return s;
    if (dim % n_heads || n_heads % tc->num_key_value_heads)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: config.text: dim %d, n_heads %d and n_kv_heads %d do not divide", path,
                         dim, n_heads, tc->num_key_value_heads);
    tc->hidden_size = dim;
    tc->num_attention_heads = n_heads;
    tc->head_dim = dim / n_heads;
    tc->layer_norm_eps = 1e-5; /* F.layer_norm's default eps */
    tc->rope_theta = 10000.0;
    tc->partial_rotary_factor = 0.5; /* rope.py rotates head_dim / 2 dimensions */
    copy_name(tc->hidden_act, "gelu_pytorch_tanh");
    tc->qkv_bias = tc->o_bias = tc->mlp_bias = true;
    tc->pad_token_id = -1;
    if ((s = get_pos_int(v, "enc_dim", 1152, path, &vc->hidden_size, err)) ||
        (s = get_pos_int(v, "enc_patch_size", 14, path, &vc->patch_size, err)) ||
        (s = get_pos_int(v, "enc_n_layers", 27, path, &vc->num_hidden_layers, err)) ||
        (s = get_pos_int(v, "enc_ff_dim", 4304, path, &vc->intermediate_size, err)) ||
        (s = get_pos_int(v, "enc_n_heads", 16, path, &vc->num_attention_heads, err)) ||
        (s = get_pos_int(v, "proj_out_dim", 2048, path, &md->proj_out_dim, err)) ||
        (s = get_pos_int(v, "crop_size", 378, path, &vc->image_size, err)) ||
        (s = get_pos_int(v, "in_channels", 3, path, &vc->num_channels, err)) ||
        (s = get_pos_int(v, "max_crops", 12, path, &md->max_crops, err)) ||
        (s = get_pos_int(v, "proj_inner_dim", 8192, path, &md->proj_inner_dim, err)))
        return s;
    md->overlap_margin = (int)json_int(v, "overlap_margin", 4);
    if (md->overlap_margin < 0 || md->overlap_margin > 1 << 16)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: config.vision.overlap_margin must be >= 0", path);
    vc->layer_norm_eps = 1e-5;
    copy_name(vc->hidden_act, "gelu_pytorch_tanh");
    int bos, eos;
    if ((s = get_pos_int(tok, "bos_id", 50256, path, &bos, err)) || (s = get_pos_int(tok, "eos_id", 50256, path, &eos, err)))
        return s;
    tc->bos_token_id = bos;
    tc->eos_token_ids[0] = eos;
    tc->n_eos = 1;
    md->n_query_prefix = md->n_query_suffix = -1;
    const cJSON *templates = json_get(tok, "templates");
    if (!templates) { /* TokenizerConfig's default query template (GPT-2 ids of "\n\nQuestion:", "\n\nAnswer:") */
        static const int prefix[4] = {198, 198, 24361, 25}, suffix[4] = {198, 198, 33706, 25};
        memcpy(md->query_prefix, prefix, sizeof prefix);
        memcpy(md->query_suffix, suffix, sizeof suffix);
        md->n_query_prefix = md->n_query_suffix = 4;
    } else {
        const cJSON *q = json_get(templates, "query");
        if (cJSON_IsObject(q) &&
            ((s = get_ids(json_get(q, "prefix"), "templates.query.prefix", path, md->query_prefix, &md->n_query_prefix, err)) ||
             (s = get_ids(json_get(q, "suffix"), "templates.query.suffix", path, md->query_suffix, &md->n_query_suffix, err))))
            return s;
    }
    c->has_text = c->has_vision = c->moondream_layout = true;
    return VLMC_OK;
}

vlmc_status hf_config_parse(const cJSON *root, const char *path, hf_config *c, vlmc_error *err) {
    memset(c, 0, sizeof *c);
    if (!cJSON_IsObject(root)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: not a JSON object", path);
    const char *mt = json_string(root, "model_type", NULL);
    if (!mt) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: no \"model_type\"", path);
    copy_name(c->model_type, mt);
    const cJSON *arch = json_get(root, "architectures");
    if (cJSON_IsArray(arch) && cJSON_IsString(arch->child)) copy_name(c->architecture, arch->child->valuestring);
    if (!strcmp(mt, "llama") || !strcmp(mt, "mistral") || !strcmp(mt, "qwen2")) {
        c->has_text = true;
        return hf_text_config_parse(root, mt, path, &c->text, err);
    }
    if (!strcmp(mt, "clip_vision_model") || !strcmp(mt, "siglip_vision_model") || !strcmp(mt, "idefics3_vision")) {
        c->has_vision = true;
        return hf_vision_config_parse(root, mt, path, &c->vision, err);
    }
    /* The original LLaVA repo's layout (LlavaLlamaForCausalLM, used by Yi-VL): a flat Llama config with mm_* keys
     * and the vision tower in a folder of its own. */
    if (!strcmp(mt, "llava") && !json_has(root, "text_config") && json_has(root, "hidden_size")) {
        c->has_text = true;
        c->original_llava_layout = true;
        return hf_text_config_parse(root, "llama", path, &c->text, err);
    }
    if (!strcmp(mt, "llava") || !strcmp(mt, "llava_next") || !strcmp(mt, "idefics3")) return parse_vlm(root, path, c, err);
    if (!strcmp(mt, "kosmos-2")) return parse_kosmos2(root, path, c, err);
    if (!strcmp(mt, "qwen2_vl")) return parse_qwen2_vl(root, path, c, err);
    if (!strcmp(mt, "paligemma")) return parse_paligemma(root, path, c, err);
    if (!strcmp(mt, "fuyu")) return parse_fuyu(root, path, c, err);
    /* DeepSeek-VL's MultiModalityConfig: the decoder is language_config (a LlamaConfig diff); vision_config and
     * aligner_config (cls + params) are read by src/models/deepseek_vl.c. */
    if (!strcmp(mt, "multi_modality")) {
        const cJSON *lc = json_get(root, "language_config");
        if (!cJSON_IsObject(lc)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: no \"language_config\" object", path);
        c->has_text = true;
        return hf_text_config_parse(lc, "llama", path, &c->text, err);
    }
    /* moondream2 since 2025-01 (HfMoondream); its 2024 revisions (architectures "Moondream", phi_config) are not
     * this layout and stay unparsed. */
    if (!strcmp(mt, "moondream1") && cJSON_IsObject(json_get(root, "config"))) return parse_moondream(root, path, c, err);
    /* Other families are recognised by their own model files; the generic facts still parse. */
    return VLMC_OK;
}

vlmc_status hf_config_load(const char *dir_or_file, hf_config *out, vlmc_error *err) {
    char *path = file_is_dir(dir_or_file) ? path_join(dir_or_file, "config.json") : strdup(dir_or_file);
    if (!path) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    cJSON *root = NULL;
    vlmc_status s = json_parse_file(path, 16u << 20, &root, err);
    if (!s) s = hf_config_parse(root, path, out, err);
    cJSON_Delete(root);
    free(path);
    return s;
}
