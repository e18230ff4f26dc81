/* vlmc_info_json / vlmc_info_text: what a model folder holds, without running it.
 * Components are recognised by tensor-name patterns that cover the published
 * layouts of the supported families (transformers and original-code names). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/file.h"
#include "core/strbuf.h"
#include "formats/hf_config.h"
#include "formats/json.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "models/vlm.h"

typedef enum component { COMP_VISION = 0, COMP_PROJECTOR, COMP_DECODER, COMP_COUNT } component;
static const char *const component_names[COMP_COUNT] = {"vision_tower", "projector", "decoder"};

/* Checked in order: projector patterns first, since some live inside a vision prefix. */
static component classify(const char *name) {
    static const char *const projector[] = {"multi_modal_projector.", "connector.", "mm_projector.", "image_newline",
                                            "aligner.", "image_to_text_projection.", "vision_embed_tokens.",
                                            "visual.merger.", "visual.attn_pool.", "visual.proj", "visual.ln_post.",
                                            "vision.proj_mlp.", "region_"};
    static const char *const vision[] = {"vision_tower", "vision_model.", "visual.", "vision_encoder.", "vit.",
                                         "image_encoder.", "vision.", "patch_embed"};
    for (size_t i = 0; i < sizeof projector / sizeof projector[0]; i++)
        if (strstr(name, projector[i])) return COMP_PROJECTOR;
    for (size_t i = 0; i < sizeof vision / sizeof vision[0]; i++)
        if (strstr(name, vision[i])) return COMP_VISION;
    return COMP_DECODER;
}

typedef struct info {
    const char *path;
    hf_config cfg;
    bool have_config;
    safetensors *st;       /* main weights */
    safetensors *st_extra; /* a separately stored vision tower (Yi-VL's vit/<name>/) */
    char *extra_dir;
    long long params[COMP_COUNT];
    long long dtype_params[DT_COUNT];
    int dtype_tensors[DT_COUNT];
    long long total_params, total_bytes;
    bool tokenizer_json, tokenizer_model, vocab_json, chat_template, preprocessor;
} info;

static bool has_file(const char *dir, const char *name) {
    char *p = path_join(dir, name);
    bool r = p && file_exists(p);
    free(p);
    return r;
}

/* tokenizer_config.json holds the chat template in most published folders. */
static bool config_has_chat_template(const char *dir) {
    char *p = path_join(dir, "tokenizer_config.json");
    cJSON *j = NULL;
    bool r = false;
    if (p && file_exists(p) && json_parse_file(p, 64u << 20, &j, NULL) == VLMC_OK) r = json_has(j, "chat_template");
    cJSON_Delete(j);
    free(p);
    return r;
}

static void count_set(info *in, const safetensors *st, bool all_vision) {
    for (size_t i = 0; i < safetensors_count(st); i++) {
        const st_entry *e = safetensors_at(st, i);
        long long n = tensor_numel(&e->t);
        component c = all_vision ? COMP_VISION : classify(e->name);
        in->params[c] += n;
        in->total_params += n;
        in->dtype_params[e->t.type] += n;
        in->dtype_tensors[e->t.type]++;
        in->total_bytes += (long long)(e->end - e->begin);
    }
}

static void info_free(info *in) {
    if (in->st) safetensors_close(in->st);
    if (in->st_extra) safetensors_close(in->st_extra);
    free(in->extra_dir);
}

static vlmc_status info_gather(const char *path, info *in, vlmc_error *err) {
    memset(in, 0, sizeof *in);
    in->path = path;
    bool dir = file_is_dir(path);
    if (!dir && !file_exists(path)) return vlmc_fail(err, VLMC_ERR_IO, "%s: no such file or folder", path);
    if (dir) {
        char *cp = path_join(path, "config.json");
        if (!cp) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        if (file_exists(cp)) {
            cJSON *root = NULL;
            vlmc_status s = json_parse_file(cp, 16u << 20, &root, err);
            if (!s) s = hf_config_parse(root, cp, &in->cfg, err);
            /* Yi-VL keeps its CLIP tower in a folder named by mm_vision_tower. */
            const char *vt = s ? NULL : json_string(root, "mm_vision_tower", NULL);
            if (vt && !strstr(vt, "..")) {
                char *vd = path_join(path, vt);
                if (vd && file_is_dir(vd)) in->extra_dir = vd;
                else free(vd);
            }
            cJSON_Delete(root);
            free(cp);
            if (s) return s;
            in->have_config = true;
        } else free(cp);
        in->tokenizer_json = has_file(path, "tokenizer.json");
        in->tokenizer_model = has_file(path, "tokenizer.model");
        in->vocab_json = has_file(path, "vocab.json");
        in->chat_template = has_file(path, "chat_template.json") || has_file(path, "chat_template.jinja") ||
                            config_has_chat_template(path);
        in->preprocessor = has_file(path, "preprocessor_config.json");
    }
    vlmc_status s = safetensors_open(path, &in->st, err);
    if (s) return s;
    count_set(in, in->st, false);
    if (in->extra_dir) {
        s = safetensors_open(in->extra_dir, &in->st_extra, err);
        if (s) return s;
        count_set(in, in->st_extra, true);
    }
    return VLMC_OK;
}

static void json_tensors(strbuf *b, const safetensors *st, bool all_vision, bool *first) {
    for (size_t i = 0; i < safetensors_count(st); i++) {
        const st_entry *e = safetensors_at(st, i);
        strbuf_puts(b, *first ? "\n    {\"name\": " : ",\n    {\"name\": ");
        *first = false;
        strbuf_json_string(b, e->name);
        strbuf_printf(b, ", \"dtype\": \"%s\", \"shape\": [", dtype_name(e->t.type));
        for (int d = 0; d < e->t.ndim; d++) strbuf_printf(b, "%s%lld", d ? ", " : "", (long long)e->t.shape[d]);
        strbuf_printf(b, "], \"parameters\": %lld, \"component\": \"%s\"}", (long long)tensor_numel(&e->t),
                      component_names[all_vision ? COMP_VISION : classify(e->name)]);
    }
}

static bool is_gguf_path(const char *path) {
    size_t n = strlen(path);
    return n > 5 && !strcmp(path + n - 5, ".gguf") && !file_is_dir(path);
}

/* A GGUF file (llama.cpp): its architecture, key-values and tensors. */
static vlmc_status info_gguf(const char *path, bool as_json, char **out, vlmc_error *err) {
    gguf *g = NULL;
    vlmc_status s = gguf_open(path, &g, err);
    if (s) return s;
    long long params = 0, bytes = 0, comp[COMP_COUNT] = {0};
    for (size_t i = 0; i < gguf_tensor_count(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        long long n = tensor_numel(&t->t);
        params += n;
        bytes += (long long)t->nbytes;
        /* mmproj files hold the vision tower ("v.") and projector ("mm."); model files the decoder. */
        component c = !strncmp(t->name, "mm.", 3) || strstr(t->name, "mm_") ? COMP_PROJECTOR
                      : !strncmp(t->name, "v.", 2)                        ? COMP_VISION
                                                                          : COMP_DECODER;
        comp[c] += n;
    }
    char *arch = gguf_get_string(g, "general.architecture");
    strbuf b = {0};
    if (as_json) {
        strbuf_puts(&b, "{\n  \"path\": ");
        strbuf_json_string(&b, path);
        strbuf_puts(&b, ",\n  \"format\": \"gguf\",\n  \"architecture\": ");
        strbuf_json_string(&b, arch ? arch : "");
        strbuf_printf(&b, ",\n  \"gguf_version\": %u,\n  \"parameters\": %lld,\n  \"components\": {", gguf_version(g), params);
        for (int c = 0; c < COMP_COUNT; c++) strbuf_printf(&b, "%s\"%s\": %lld", c ? ", " : "", component_names[c], comp[c]);
        strbuf_printf(&b, "},\n  \"bytes\": %lld,\n  \"metadata_keys\": %zu,\n  \"tensors\": [", bytes, gguf_kv_count(g));
        for (size_t i = 0; i < gguf_tensor_count(g); i++) {
            const gguf_tensor *t = gguf_tensor_at(g, i);
            strbuf_puts(&b, i ? ",\n    {\"name\": " : "\n    {\"name\": ");
            strbuf_json_string(&b, t->name);
            strbuf_printf(&b, ", \"dtype\": \"%s\", \"shape\": [", gguf_ggml_type_name(t->ggml_type));
            for (int d = 0; d < t->t.ndim; d++) strbuf_printf(&b, "%s%lld", d ? ", " : "", (long long)t->t.shape[d]);
            strbuf_printf(&b, "], \"parameters\": %lld}", (long long)tensor_numel(&t->t));
        }
        strbuf_puts(&b, "\n  ]\n}\n");
    } else {
        strbuf_printf(&b, "path           %s\nformat         GGUF v%u\narchitecture   %s\nparameters     %lld\n", path,
                      gguf_version(g), arch ? arch : "?", params);
        for (int c = 0; c < COMP_COUNT; c++) strbuf_printf(&b, "  %-13s%lld\n", component_names[c], comp[c]);
        strbuf_printf(&b, "weights        %.2f MB in %zu tensors\nmetadata       %zu keys\n", bytes / 1e6,
                      gguf_tensor_count(g), gguf_kv_count(g));
    }
    free(arch);
    gguf_close(g);
    *out = strbuf_take(&b);
    return *out ? VLMC_OK : vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
}

vlmc_status vlmc_info_json(const char *path, char **json_out, vlmc_error *err) {
    *json_out = NULL;
    if (is_gguf_path(path)) return info_gguf(path, true, json_out, err);
    info in;
    vlmc_status s = info_gather(path, &in, err);
    if (s) {
        info_free(&in);
        return s;
    }
    strbuf b = {0};
    strbuf_puts(&b, "{\n  \"path\": ");
    strbuf_json_string(&b, path);
    strbuf_puts(&b, ",\n  \"architecture\": ");
    strbuf_json_string(&b, in.cfg.architecture[0] ? in.cfg.architecture : in.cfg.model_type);
    strbuf_puts(&b, ",\n  \"model_type\": ");
    strbuf_json_string(&b, in.cfg.model_type);
    const vlm_family *fam = in.have_config ? vlm_family_find(&in.cfg) : NULL;
    strbuf_puts(&b, ",\n  \"family\": ");
    if (fam) strbuf_json_string(&b, fam->hf_class);
    else strbuf_puts(&b, "null");
    strbuf_printf(&b, ",\n  \"parameters\": %lld,\n  \"components\": {", in.total_params);
    for (int c = 0; c < COMP_COUNT; c++)
        strbuf_printf(&b, "%s\"%s\": %lld", c ? ", " : "", component_names[c], in.params[c]);
    strbuf_puts(&b, "},\n  \"dtypes\": {");
    bool first = true;
    for (int t = 0; t < DT_COUNT; t++) {
        if (!in.dtype_tensors[t]) continue;
        strbuf_printf(&b, "%s\"%s\": {\"tensors\": %d, \"parameters\": %lld}", first ? "" : ", ", dtype_name((dtype)t),
                      in.dtype_tensors[t], in.dtype_params[t]);
        first = false;
    }
    strbuf_printf(&b, "},\n  \"bytes\": %lld,\n  \"tensor_count\": %zu,\n", in.total_bytes,
                  safetensors_count(in.st) + (in.st_extra ? safetensors_count(in.st_extra) : 0));
    strbuf_printf(&b, "  \"tokenizer\": %s,\n  \"tokenizer_files\": {\"tokenizer.json\": %s, \"tokenizer.model\": %s, \"vocab.json\": %s},\n",
                  in.tokenizer_json || in.tokenizer_model || in.vocab_json ? "true" : "false",
                  in.tokenizer_json ? "true" : "false", in.tokenizer_model ? "true" : "false",
                  in.vocab_json ? "true" : "false");
    strbuf_printf(&b, "  \"chat_template\": %s,\n  \"preprocessor_config\": %s,\n", in.chat_template ? "true" : "false",
                  in.preprocessor ? "true" : "false");
    if (in.cfg.has_text) {
        const hf_text_config *t = &in.cfg.text;
        strbuf_printf(&b, "  \"text_config\": {\"model_type\": \"%s\", \"layers\": %d, \"hidden_size\": %d, "
                          "\"intermediate_size\": %d, \"heads\": %d, \"kv_heads\": %d, \"head_dim\": %d, "
                          "\"vocab_size\": %d, \"max_position_embeddings\": %d},\n",
                      t->model_type, t->num_hidden_layers, t->hidden_size, t->intermediate_size, t->num_attention_heads,
                      t->num_key_value_heads, t->head_dim, t->vocab_size, t->max_position_embeddings);
    }
    if (in.cfg.has_vision) {
        const hf_vision_config *v = &in.cfg.vision;
        strbuf_printf(&b, "  \"vision_config\": {\"model_type\": \"%s\", \"layers\": %d, \"hidden_size\": %d, "
                          "\"heads\": %d, \"image_size\": %d, \"patch_size\": %d},\n",
                      v->model_type, v->num_hidden_layers, v->hidden_size, v->num_attention_heads, v->image_size,
                      v->patch_size);
    }
    strbuf_puts(&b, "  \"tensors\": [");
    first = true;
    json_tensors(&b, in.st, false, &first);
    if (in.st_extra) json_tensors(&b, in.st_extra, true, &first);
    strbuf_puts(&b, "\n  ]\n}\n");
    info_free(&in);
    *json_out = strbuf_take(&b);
    if (!*json_out) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    return VLMC_OK;
}

static void human_count(char *buf, size_t n, long long v) {
    if (v >= 1000000000LL) snprintf(buf, n, "%.2f B", v / 1e9);
    else if (v >= 1000000LL) snprintf(buf, n, "%.2f M", v / 1e6);
    else if (v >= 1000LL) snprintf(buf, n, "%.2f K", v / 1e3);
    else snprintf(buf, n, "%lld", v);
}

vlmc_status vlmc_info_text(const char *path, char **text_out, vlmc_error *err) {
    *text_out = NULL;
    if (is_gguf_path(path)) return info_gguf(path, false, text_out, err);
    info in;
    vlmc_status s = info_gather(path, &in, err);
    if (s) {
        info_free(&in);
        return s;
    }
    strbuf b = {0};
    char h[32];
    strbuf_printf(&b, "path           %s\n", path);
    if (in.have_config)
        strbuf_printf(&b, "architecture   %s (model_type %s)\n", in.cfg.architecture[0] ? in.cfg.architecture : "?",
                      in.cfg.model_type);
    const vlm_family *fam = in.have_config ? vlm_family_find(&in.cfg) : NULL;
    if (in.have_config) strbuf_printf(&b, "family         %s\n", fam ? fam->hf_class : "not supported by vlmc run");
    human_count(h, sizeof h, in.total_params);
    strbuf_printf(&b, "parameters     %lld (%s)\n", in.total_params, h);
    for (int c = 0; c < COMP_COUNT; c++) {
        human_count(h, sizeof h, in.params[c]);
        strbuf_printf(&b, "  %-13s%lld (%s)\n", component_names[c], in.params[c], h);
    }
    strbuf_puts(&b, "dtypes        ");
    for (int t = 0; t < DT_COUNT; t++)
        if (in.dtype_tensors[t]) strbuf_printf(&b, " %s (%d tensors)", dtype_name((dtype)t), in.dtype_tensors[t]);
    strbuf_printf(&b, "\nweights        %.2f MB in %zu tensors\n", in.total_bytes / 1e6,
                  safetensors_count(in.st) + (in.st_extra ? safetensors_count(in.st_extra) : 0));
    if (in.cfg.has_text) {
        const hf_text_config *t = &in.cfg.text;
        strbuf_printf(&b, "decoder        %s: %d layers, hidden %d, mlp %d, heads %d (kv %d, dim %d), vocab %d, ctx %d\n",
                      t->model_type, t->num_hidden_layers, t->hidden_size, t->intermediate_size, t->num_attention_heads,
                      t->num_key_value_heads, t->head_dim, t->vocab_size, t->max_position_embeddings);
    }
    if (in.cfg.has_vision && !in.cfg.vision.num_hidden_layers) { /* Fuyu: patches go straight to a linear layer */
        const hf_vision_config *v = &in.cfg.vision;
        strbuf_printf(&b, "vision         %s: no tower, %d×%d patches → linear, image %d\n", v->model_type, v->patch_size,
                      v->patch_size, v->image_size);
    } else if (in.cfg.has_vision) {
        const hf_vision_config *v = &in.cfg.vision;
        if (v->spatial_merge_size) /* Qwen2-VL: any image size, patches merged m × m */
            strbuf_printf(&b, "vision         %s: %d layers, hidden %d, heads %d, patch %d (temporal %d), merge %d\n",
                          v->model_type, v->num_hidden_layers, v->hidden_size, v->num_attention_heads, v->patch_size,
                          v->temporal_patch_size, v->spatial_merge_size);
        else
            strbuf_printf(&b, "vision         %s: %d layers, hidden %d, heads %d, image %d, patch %d\n", v->model_type,
                          v->num_hidden_layers, v->hidden_size, v->num_attention_heads, v->image_size, v->patch_size);
    }
    if (file_is_dir(path)) {
        strbuf_printf(&b, "tokenizer      %s\n", in.tokenizer_json ? "tokenizer.json" : in.tokenizer_model ? "tokenizer.model"
                                                   : in.vocab_json ? "vocab.json + merges.txt" : "none");
        strbuf_printf(&b, "chat template  %s\n", in.chat_template ? "yes" : "none");
        strbuf_printf(&b, "preprocessor   %s\n", in.preprocessor ? "preprocessor_config.json" : "none");
    }
    info_free(&in);
    *text_out = strbuf_take(&b);
    if (!*text_out) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    return VLMC_OK;
}

void vlmc_free(void *p) { free(p); }
