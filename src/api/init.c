/* `vlmc init --arch NAME --random --out DIR`: a Hugging Face model folder (config.json,
 * model.safetensors, preprocessor_config.json) with random weights and the shapes of a
 * published architecture, for benchmarks and tests where real weights cannot be downloaded.
 *
 * The presets copy the shape-defining fields of the published config.json files:
 *   smolvlm-256m  HuggingFaceTB/SmolVLM-256M-Instruct (Idefics3ForConditionalGeneration):
 *                 vision SigLIP-style 512 px / 16 px patches, 12 layers of 768 (MLP 3072, 12 heads);
 *                 scale_factor 4 (64 tokens per tile); decoder SmolLM2-135M: 30 layers, hidden 576,
 *                 MLP 1536, 9 heads / 3 KV heads (head_dim 64), vocab 49280, rope_theta 100000,
 *                 image_token_id 49190; preprocessor: Idefics3ImageProcessor, tiles of 512, longest
 *                 edge 2048.
 *   llava-1.5-7b  llava-hf/llava-1.5-7b-hf (LlavaForConditionalGeneration): CLIP ViT-L/14-336
 *                 (24 layers of 1024, MLP 4096, 16 heads), feature layer -2, "default" selection,
 *                 gelu projector; decoder Vicuna-7B: 32 layers, hidden 4096, MLP 11008, 32 heads,
 *                 vocab 32064, image_token_index 32000; CLIPImageProcessor 336.
 *   tiny-llava, tiny-idefics3 (also "llava", "idefics3"): the fixtures' small shapes, meant to be
 *                 resized with --set.
 * --set KEY=VALUE overrides a config.json field: "text_config.hidden_size", "vision_config.patch_size",
 * or a bare key, looked up at the top level, then in text_config, then in vision_config.
 * Weights: uniform with standard deviation 0.02 (norm weights 1, biases 0), from --seed. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlmc.h"
#include "core/file.h"
#include "core/rng.h"
#include "core/strbuf.h"
#include "formats/hf_config.h"
#include "formats/json.h"
#include "formats/safetensors.h"

typedef struct init_preset {
    const char *name;
    const char *config; /* config.json */
} init_preset;

static const init_preset PRESETS[] = {
    {"smolvlm-256m",
     "{\"architectures\": [\"Idefics3ForConditionalGeneration\"], \"model_type\": \"idefics3\", \"image_token_id\": 49190,"
     " \"scale_factor\": 4, \"tie_word_embeddings\": false, \"torch_dtype\": \"float32\","
     " \"text_config\": {\"model_type\": \"llama\", \"vocab_size\": 49280, \"hidden_size\": 576, \"intermediate_size\": 1536,"
     " \"num_hidden_layers\": 30, \"num_attention_heads\": 9, \"num_key_value_heads\": 3, \"head_dim\": 64,"
     " \"max_position_embeddings\": 8192, \"rms_norm_eps\": 1e-05, \"rope_theta\": 100000.0, \"hidden_act\": \"silu\","
     " \"pad_token_id\": 2, \"bos_token_id\": 1, \"eos_token_id\": 2, \"tie_word_embeddings\": false},"
     " \"vision_config\": {\"model_type\": \"idefics3_vision\", \"hidden_size\": 768, \"intermediate_size\": 3072,"
     " \"num_hidden_layers\": 12, \"num_attention_heads\": 12, \"image_size\": 512, \"patch_size\": 16,"
     " \"layer_norm_eps\": 1e-06, \"hidden_act\": \"gelu_pytorch_tanh\"}}"},
    {"llava-1.5-7b",
     "{\"architectures\": [\"LlavaForConditionalGeneration\"], \"model_type\": \"llava\", \"image_token_index\": 32000,"
     " \"projector_hidden_act\": \"gelu\", \"vision_feature_layer\": -2, \"vision_feature_select_strategy\": \"default\","
     " \"image_seq_length\": 576, \"torch_dtype\": \"float32\", \"tie_word_embeddings\": false,"
     " \"text_config\": {\"model_type\": \"llama\", \"vocab_size\": 32064, \"hidden_size\": 4096, \"intermediate_size\": 11008,"
     " \"num_hidden_layers\": 32, \"num_attention_heads\": 32, \"num_key_value_heads\": 32, \"max_position_embeddings\": 4096,"
     " \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"pad_token_id\": 0},"
     " \"vision_config\": {\"model_type\": \"clip_vision_model\", \"hidden_size\": 1024, \"intermediate_size\": 4096,"
     " \"num_hidden_layers\": 24, \"num_attention_heads\": 16, \"image_size\": 336, \"patch_size\": 14,"
     " \"projection_dim\": 768, \"hidden_act\": \"quick_gelu\", \"layer_norm_eps\": 1e-05}}"},
    {"tiny-llava",
     "{\"architectures\": [\"LlavaForConditionalGeneration\"], \"model_type\": \"llava\", \"image_token_index\": 1000,"
     " \"projector_hidden_act\": \"gelu\", \"vision_feature_layer\": -2, \"vision_feature_select_strategy\": \"default\","
     " \"image_seq_length\": 16, \"torch_dtype\": \"float32\","
     " \"text_config\": {\"model_type\": \"llama\", \"vocab_size\": 1024, \"hidden_size\": 64, \"intermediate_size\": 160,"
     " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 16,"
     " \"max_position_embeddings\": 1024, \"rms_norm_eps\": 1e-05, \"pad_token_id\": 0},"
     " \"vision_config\": {\"model_type\": \"clip_vision_model\", \"hidden_size\": 32, \"intermediate_size\": 64,"
     " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"image_size\": 56, \"patch_size\": 14, \"projection_dim\": 32}}"},
    {"tiny-idefics3",
     "{\"architectures\": [\"Idefics3ForConditionalGeneration\"], \"model_type\": \"idefics3\", \"image_token_id\": 1000,"
     " \"scale_factor\": 2, \"tie_word_embeddings\": false, \"torch_dtype\": \"float32\","
     " \"text_config\": {\"model_type\": \"llama\", \"vocab_size\": 1024, \"hidden_size\": 64, \"intermediate_size\": 160,"
     " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 16,"
     " \"max_position_embeddings\": 1024, \"rms_norm_eps\": 1e-05, \"rope_theta\": 100000.0, \"pad_token_id\": 0},"
     " \"vision_config\": {\"model_type\": \"idefics3_vision\", \"hidden_size\": 32, \"intermediate_size\": 64,"
     " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"image_size\": 56, \"patch_size\": 14}}"},
};

const char *vlmc_init_arch_names(void) { return "smolvlm-256m, llava-1.5-7b, tiny-llava (llava), tiny-idefics3 (idefics3)"; }

static const init_preset *find_preset(const char *name) {
    if (!strcmp(name, "llava")) name = "tiny-llava";
    if (!strcmp(name, "idefics3")) name = "tiny-idefics3";
    for (size_t i = 0; i < sizeof PRESETS / sizeof PRESETS[0]; i++)
        if (!strcmp(PRESETS[i].name, name)) return &PRESETS[i];
    return NULL;
}

/* KEY=VALUE into the config (VALUE as JSON when it parses, else as a string). */
static vlmc_status apply_set(cJSON *root, const char *set, vlmc_error *err) {
    const char *eq = strchr(set, '=');
    if (!eq || eq == set) return vlmc_fail(err, VLMC_ERR_ARG, "--set %s: expected KEY=VALUE", set);
    char key[128];
    if ((size_t)(eq - set) >= sizeof key) return vlmc_fail(err, VLMC_ERR_ARG, "--set %s: key too long", set);
    memcpy(key, set, (size_t)(eq - set));
    key[eq - set] = 0;
    cJSON *obj = root;
    char *leaf = key, *dot = strchr(key, '.');
    if (dot) {
        *dot = 0;
        leaf = dot + 1;
        obj = cJSON_GetObjectItemCaseSensitive(root, key);
        if (!cJSON_IsObject(obj)) return vlmc_fail(err, VLMC_ERR_ARG, "--set %s: the config has no object \"%s\"", set, key);
    } else if (!cJSON_GetObjectItemCaseSensitive(root, leaf)) {
        const char *subs[] = {"text_config", "vision_config"};
        for (int i = 0; i < 2; i++) {
            cJSON *sub = cJSON_GetObjectItemCaseSensitive(root, subs[i]);
            if (cJSON_IsObject(sub) && cJSON_GetObjectItemCaseSensitive(sub, leaf)) {
                obj = sub;
                break;
            }
        }
    }
    cJSON *val = cJSON_Parse(eq + 1);
    if (!val) val = cJSON_CreateString(eq + 1);
    if (!val) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    if (cJSON_GetObjectItemCaseSensitive(obj, leaf)) cJSON_ReplaceItemInObjectCaseSensitive(obj, leaf, val);
    else cJSON_AddItemToObject(obj, leaf, val);
    return VLMC_OK;
}

/* ---- the tensor list ---- */

typedef enum init_kind { INIT_RANDOM, INIT_ONES, INIT_ZEROS } init_kind;

typedef struct init_list {
    char **names;
    tensor *t;
    init_kind *kind;
    size_t n, cap;
    dtype type;
    vlmc_status status;
} init_list;

static void add(init_list *L, init_kind kind, int64_t d0, int64_t d1, int64_t d2, int64_t d3, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static void add(init_list *L, init_kind kind, int64_t d0, int64_t d1, int64_t d2, int64_t d3, const char *fmt, ...) {
    if (L->status) return;
    if (L->n == L->cap) {
        size_t cap = L->cap ? 2 * L->cap : 256;
        char **nn = realloc(L->names, cap * sizeof *nn);
        if (nn) L->names = nn;
        tensor *nt = realloc(L->t, cap * sizeof *nt);
        if (nt) L->t = nt;
        init_kind *nk = realloc(L->kind, cap * sizeof *nk);
        if (nk) L->kind = nk;
        if (!nn || !nt || !nk) { L->status = VLMC_ERR_NOMEM; return; }
        L->cap = cap;
    }
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (!(L->names[L->n] = strdup(name))) { L->status = VLMC_ERR_NOMEM; return; }
    const int64_t shape[4] = {d0, d1, d2, d3};
    const int ndim = d3 ? 4 : d1 ? 2 : 1;
    /* every tensor in the checkpoint's dtype, as transformers saves them (norms included) */
    L->t[L->n] = tensor_view(L->type, NULL, ndim, shape);
    L->kind[L->n] = kind;
    L->n++;
}

static void add_decoder(init_list *L, const hf_text_config *c, const char *prefix, const char *lm_head) {
    const int64_t D = c->hidden_size, QD = (int64_t)c->num_attention_heads * c->head_dim,
                  KD = (int64_t)c->num_key_value_heads * c->head_dim, I = c->intermediate_size, V = c->vocab_size;
    add(L, INIT_RANDOM, V, D, 0, 0, "%sembed_tokens.weight", prefix);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        add(L, INIT_ONES, D, 0, 0, 0, "%slayers.%d.input_layernorm.weight", prefix, l);
        add(L, INIT_RANDOM, QD, D, 0, 0, "%slayers.%d.self_attn.q_proj.weight", prefix, l);
        add(L, INIT_RANDOM, KD, D, 0, 0, "%slayers.%d.self_attn.k_proj.weight", prefix, l);
        add(L, INIT_RANDOM, KD, D, 0, 0, "%slayers.%d.self_attn.v_proj.weight", prefix, l);
        add(L, INIT_RANDOM, D, QD, 0, 0, "%slayers.%d.self_attn.o_proj.weight", prefix, l);
        add(L, INIT_ONES, D, 0, 0, 0, "%slayers.%d.post_attention_layernorm.weight", prefix, l);
        add(L, INIT_RANDOM, I, D, 0, 0, "%slayers.%d.mlp.gate_proj.weight", prefix, l);
        add(L, INIT_RANDOM, I, D, 0, 0, "%slayers.%d.mlp.up_proj.weight", prefix, l);
        add(L, INIT_RANDOM, D, I, 0, 0, "%slayers.%d.mlp.down_proj.weight", prefix, l);
    }
    add(L, INIT_ONES, D, 0, 0, 0, "%snorm.weight", prefix);
    if (!c->tie_word_embeddings) add(L, INIT_RANDOM, V, D, 0, 0, "%s", lm_head);
}

/* CLIP (with class embedding and pre-layernorm) or SigLIP / Idefics3 vision transformer. */
static void add_vit(init_list *L, const hf_vision_config *c, const char *prefix, bool clip) {
    const int64_t Dv = c->hidden_size, I = c->intermediate_size, P = c->patch_size, np = (c->image_size / P) * (c->image_size / P);
    if (clip) add(L, INIT_RANDOM, Dv, 0, 0, 0, "%sembeddings.class_embedding", prefix);
    add(L, INIT_RANDOM, Dv, c->num_channels, P, P, "%sembeddings.patch_embedding.weight", prefix);
    if (!clip) add(L, INIT_ZEROS, Dv, 0, 0, 0, "%sembeddings.patch_embedding.bias", prefix);
    add(L, INIT_RANDOM, np + (clip ? 1 : 0), Dv, 0, 0, "%sembeddings.position_embedding.weight", prefix);
    if (clip) {
        add(L, INIT_ONES, Dv, 0, 0, 0, "%spre_layrnorm.weight", prefix);
        add(L, INIT_ZEROS, Dv, 0, 0, 0, "%spre_layrnorm.bias", prefix);
    }
    const char *proj[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
    for (int l = 0; l < c->num_hidden_layers; l++) {
        for (int k = 0; k < 2; k++) {
            add(L, INIT_ONES, Dv, 0, 0, 0, "%sencoder.layers.%d.layer_norm%d.weight", prefix, l, k + 1);
            add(L, INIT_ZEROS, Dv, 0, 0, 0, "%sencoder.layers.%d.layer_norm%d.bias", prefix, l, k + 1);
        }
        for (int k = 0; k < 4; k++) {
            add(L, INIT_RANDOM, Dv, Dv, 0, 0, "%sencoder.layers.%d.self_attn.%s.weight", prefix, l, proj[k]);
            add(L, INIT_ZEROS, Dv, 0, 0, 0, "%sencoder.layers.%d.self_attn.%s.bias", prefix, l, proj[k]);
        }
        add(L, INIT_RANDOM, I, Dv, 0, 0, "%sencoder.layers.%d.mlp.fc1.weight", prefix, l);
        add(L, INIT_ZEROS, I, 0, 0, 0, "%sencoder.layers.%d.mlp.fc1.bias", prefix, l);
        add(L, INIT_RANDOM, Dv, I, 0, 0, "%sencoder.layers.%d.mlp.fc2.weight", prefix, l);
        add(L, INIT_ZEROS, Dv, 0, 0, 0, "%sencoder.layers.%d.mlp.fc2.bias", prefix, l);
    }
    add(L, INIT_ONES, Dv, 0, 0, 0, "%spost_layernorm.weight", prefix);
    add(L, INIT_ZEROS, Dv, 0, 0, 0, "%spost_layernorm.bias", prefix);
}

typedef struct fill_ctx {
    const init_list *L;
    uint64_t seed;
} fill_ctx;

/* Tensor i's values: its own stream of the seed (so any tensor can be made alone). */
static vlmc_status fill_tensor(size_t i, void *buf, void *user, vlmc_error *err) {
    const fill_ctx *f = user;
    const tensor *t = &f->L->t[i];
    const size_t n = (size_t)tensor_numel(t);
    const init_kind kind = f->L->kind[i];
    const float a = 0.02f * sqrtf(3.0f); /* uniform [-a, a] has standard deviation 0.02 */
    uint64_t s = f->seed * 0x9E3779B97F4A7C15ull + i;
    rng r;
    rng_seed(&r, splitmix64(&s));
    for (size_t k = 0; k < n; k++) {
        float v = kind == INIT_ONES ? 1.0f : kind == INIT_ZEROS ? 0.0f : a * (float)(2.0 * rng_uniform(&r) - 1.0);
        if (t->type == DT_BF16) ((uint16_t *)buf)[k] = f32_to_bf16(v);
        else ((float *)buf)[k] = v;
    }
    (void)err;
    return VLMC_OK;
}

static char *preprocessor_json(const hf_config *cfg) {
    const int S = cfg->vision.image_size;
    char *out = malloc(1024);
    if (!out) return NULL;
    if (!strcmp(cfg->model_type, "idefics3"))
        snprintf(out, 1024,
                 "{\"image_processor_type\": \"Idefics3ImageProcessor\", \"do_convert_rgb\": true, \"do_image_splitting\": true,"
                 " \"do_normalize\": true, \"do_pad\": true, \"do_rescale\": true, \"do_resize\": true,"
                 " \"image_mean\": [0.5, 0.5, 0.5], \"image_std\": [0.5, 0.5, 0.5], \"max_image_size\": {\"longest_edge\": %d},"
                 " \"resample\": 1, \"rescale_factor\": 0.00392156862745098, \"size\": {\"longest_edge\": %d}}\n",
                 S, 4 * S);
    else
        snprintf(out, 1024,
                 "{\"image_processor_type\": \"CLIPImageProcessor\", \"crop_size\": {\"height\": %d, \"width\": %d},"
                 " \"do_center_crop\": true, \"do_convert_rgb\": true, \"do_normalize\": true, \"do_rescale\": true,"
                 " \"do_resize\": true, \"image_mean\": [0.48145466, 0.4578275, 0.40821073],"
                 " \"image_std\": [0.26862954, 0.26130258, 0.27577711], \"resample\": 3,"
                 " \"rescale_factor\": 0.00392156862745098, \"size\": {\"shortest_edge\": %d}}\n",
                 S, S, S);
    return out;
}

vlmc_status vlmc_init_random(const vlmc_init_params *p, const char *out_dir, vlmc_error *err) {
    const init_preset *pre = p->arch ? find_preset(p->arch) : NULL;
    if (!pre)
        return vlmc_fail(err, VLMC_ERR_ARG, "unknown architecture '%s' (known: %s)", p->arch ? p->arch : "",
                         vlmc_init_arch_names());
    dtype type = DT_F32;
    if (p->dtype && !strcmp(p->dtype, "bf16")) type = DT_BF16;
    else if (p->dtype && strcmp(p->dtype, "f32"))
        return vlmc_fail(err, VLMC_ERR_ARG, "--dtype %s: expected f32 or bf16", p->dtype);
    cJSON *root = cJSON_Parse(pre->config);
    if (!root) return vlmc_fail(err, VLMC_ERR_INTERNAL, "preset %s: bad config", pre->name);
    vlmc_status s = VLMC_OK;
    for (int i = 0; i < p->n_sets && !s; i++) s = apply_set(root, p->sets[i], err);
    if (!s && type == DT_BF16) cJSON_ReplaceItemInObjectCaseSensitive(root, "torch_dtype", cJSON_CreateString("bfloat16"));
    char *cfg_txt = s ? NULL : cJSON_Print(root);
    hf_config cfg;
    char *config_path = path_join(out_dir, "config.json"), *st_path = path_join(out_dir, "model.safetensors"),
         *pp_path = path_join(out_dir, "preprocessor_config.json"), *pp = NULL;
    init_list L = {.type = type};
    if (!s && (!cfg_txt || !config_path || !st_path || !pp_path)) s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    if (!s) s = hf_config_parse(root, config_path, &cfg, err);
    if (!s && (!cfg.has_text || !cfg.has_vision))
        s = vlmc_fail(err, VLMC_ERR_ARG, "%s: the config has no decoder or no vision tower", config_path);
    if (!s) s = file_mkdirs(out_dir, err);
    if (!s) s = file_write_all(config_path, cfg_txt, strlen(cfg_txt), err);
    if (!s) {
        bool idefics = !strcmp(cfg.model_type, "idefics3");
        const int64_t D = cfg.text.hidden_size, Dv = cfg.vision.hidden_size;
        if (idefics) {
            add_decoder(&L, &cfg.text, "model.text_model.", "lm_head.weight");
            add_vit(&L, &cfg.vision, "model.vision_model.", false);
            add(&L, INIT_RANDOM, D, Dv * cfg.scale_factor * cfg.scale_factor, 0, 0, "model.connector.modality_projection.proj.weight");
        } else {
            add_decoder(&L, &cfg.text, "language_model.model.", "language_model.lm_head.weight");
            add_vit(&L, &cfg.vision, "vision_tower.vision_model.", true);
            add(&L, INIT_RANDOM, D, Dv, 0, 0, "multi_modal_projector.linear_1.weight");
            add(&L, INIT_ZEROS, D, 0, 0, 0, "multi_modal_projector.linear_1.bias");
            add(&L, INIT_RANDOM, D, D, 0, 0, "multi_modal_projector.linear_2.weight");
            add(&L, INIT_ZEROS, D, 0, 0, 0, "multi_modal_projector.linear_2.bias");
        }
        if (L.status) s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    }
    if (!s) {
        fill_ctx f = {&L, p->seed};
        s = safetensors_write_fill(st_path, L.n, (const char *const *)L.names, L.t, "{\"format\": \"pt\"}", fill_tensor, &f, err);
    }
    if (!s && !(pp = preprocessor_json(&cfg))) s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    if (!s) s = file_write_all(pp_path, pp, strlen(pp), err);
    for (size_t i = 0; i < L.n; i++) free(L.names[i]);
    free(L.names), free(L.t), free(L.kind);
    free(pp), free(config_path), free(st_path), free(pp_path), free(cfg_txt);
    cJSON_Delete(root);
    return s;
}
