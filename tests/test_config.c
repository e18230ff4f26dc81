/* config.json parsing: every fixture's config (as saved, with defaults omitted)
 * must parse to the values of its config_full.json (every field as transformers
 * resolved it). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testlib.h"
#include "formats/hf_config.h"

static void cmp_int(const char *fx, const cJSON *full, const char *key, int got) {
    if (!json_has(full, key)) return;
    CHECK(json_int(full, key, -999) == got, "%s: %s = %d, reference %lld", fx, key, got, (long long)json_int(full, key, -999));
}

static void cmp_num(const char *fx, const cJSON *full, const char *key, double got) {
    if (!json_has(full, key)) return;
    double want = json_number(full, key, NAN);
    CHECK(fabs(want - got) <= 1e-12 * fabs(want), "%s: %s = %g, reference %g", fx, key, got, want);
}

static void cmp_str(const char *fx, const cJSON *full, const char *key, const char *got) {
    if (!json_has(full, key)) return;
    CHECK(!strcmp(json_string(full, key, ""), got), "%s: %s = %s, reference %s", fx, key, got, json_string(full, key, ""));
}

static void check_text(const char *fx, const cJSON *t, const hf_text_config *c) {
    cmp_int(fx, t, "vocab_size", c->vocab_size);
    cmp_int(fx, t, "hidden_size", c->hidden_size);
    cmp_int(fx, t, "intermediate_size", c->intermediate_size);
    cmp_int(fx, t, "num_hidden_layers", c->num_hidden_layers);
    cmp_int(fx, t, "num_attention_heads", c->num_attention_heads);
    cmp_int(fx, t, "num_key_value_heads", c->num_key_value_heads);
    cmp_int(fx, t, "head_dim", c->head_dim);
    cmp_int(fx, t, "max_position_embeddings", c->max_position_embeddings);
    cmp_num(fx, t, "rms_norm_eps", c->rms_norm_eps);
    cmp_num(fx, t, "rope_theta", c->rope_theta);
    cmp_str(fx, t, "hidden_act", c->hidden_act);
    if (json_has(t, "attention_bias")) CHECK(json_bool(t, "attention_bias", 0) == c->o_bias, "%s: attention_bias", fx);
    const cJSON *rs = json_get(t, "rope_scaling");
    if (rs) cmp_num(fx, rs, "factor", c->rope_scaling.factor);
    CHECK((rs != NULL) == (c->rope_scaling.type != ROPE_DEFAULT), "%s: rope_scaling presence", fx);
}

static void check_vision(const char *fx, const cJSON *v, const hf_vision_config *c) {
    cmp_int(fx, v, "hidden_size", c->hidden_size);
    cmp_int(fx, v, "intermediate_size", c->intermediate_size);
    cmp_int(fx, v, "num_hidden_layers", c->num_hidden_layers);
    cmp_int(fx, v, "num_attention_heads", c->num_attention_heads);
    cmp_int(fx, v, "image_size", c->image_size);
    cmp_int(fx, v, "patch_size", c->patch_size);
    cmp_int(fx, v, "num_channels", c->num_channels);
    cmp_num(fx, v, "layer_norm_eps", c->layer_norm_eps);
    cmp_str(fx, v, "hidden_act", c->hidden_act);
    cmp_str(fx, v, "model_type", c->model_type);
}

static void test_fixture_configs(void) {
    const char *fixtures[] = {"llama", "llama_bf16", "llama_rope_scaling", "llama_train_batch", "qwen2", "mistral",
                              "llava", "llava_batch", "llava_multi_image", "llava_next", "llava_train", "idefics3",
                              "clip_vision", "siglip_vision"};
    int checked = 0;
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "fixtures/%s", fixtures[i]);
        const char *dir = shared_path(rel);
        if (!dir) return;
        char dirbuf[512], fullp[600];
        snprintf(dirbuf, sizeof dirbuf, "%s", dir);
        snprintf(fullp, sizeof fullp, "%s/reference/config_full.json", dirbuf);
        hf_config cfg;
        vlmc_error err = {0};
        cJSON *full = NULL;
        if (!CHECK(hf_config_load(dirbuf, &cfg, &err) == VLMC_OK, "%s: %s", fixtures[i], err.message)) continue;
        if (!CHECK(json_parse_file(fullp, 1 << 24, &full, &err) == VLMC_OK, "%s: %s", fixtures[i], err.message)) continue;
        cmp_str(fixtures[i], full, "model_type", cfg.model_type);
        const cJSON *tc = json_get(full, "text_config"), *vc = json_get(full, "vision_config");
        if (cfg.has_text) check_text(fixtures[i], tc ? tc : full, &cfg.text);
        if (cfg.has_vision) check_vision(fixtures[i], vc ? vc : full, &cfg.vision);
        if (!strcmp(cfg.model_type, "llava") || !strcmp(cfg.model_type, "llava_next")) {
            cmp_int(fixtures[i], full, "image_token_index", cfg.image_token_index);
            cmp_int(fixtures[i], full, "vision_feature_layer", cfg.vision_feature_layers[0]);
            cmp_str(fixtures[i], full, "vision_feature_select_strategy", cfg.vision_feature_select_strategy);
            cmp_str(fixtures[i], full, "projector_hidden_act", cfg.projector_hidden_act);
        }
        if (!strcmp(cfg.model_type, "idefics3")) {
            cmp_int(fixtures[i], full, "image_token_id", cfg.image_token_index);
            cmp_int(fixtures[i], full, "scale_factor", cfg.scale_factor);
        }
        if (!strcmp(cfg.model_type, "mistral")) cmp_int(fixtures[i], full, "sliding_window", cfg.text.sliding_window);
        cJSON_Delete(full);
        checked++;
    }
    CHECK(checked == (int)(sizeof fixtures / sizeof fixtures[0]), "checked %d configs", checked);
}

static void test_defaults_and_errors(void) {
    cJSON *j = NULL;
    hf_config c;
    vlmc_error err = {0};
    const char *llava = "{\"model_type\":\"llava\"}";
    json_parse(llava, strlen(llava), "t", &j, &err);
    CHECK(hf_config_parse(j, "t", &c, &err) == VLMC_OK, "llava defaults: %s", err.message);
    CHECK(c.vision.image_size == 336 && c.vision.patch_size == 14 && c.vision.hidden_size == 1024, "CLIP-L/336 tower");
    CHECK(c.text.hidden_size == 4096 && c.text.num_key_value_heads == 32 && c.image_token_index == 32000, "llama text");
    CHECK(c.vision_feature_layers[0] == -2 && !strcmp(c.vision_feature_select_strategy, "default"), "feature layer");
    cJSON_Delete(j);
    const char *bad[] = {"{\"model_type\":\"llama\",\"hidden_size\":-3}", "{\"model_type\":\"llama\",\"num_attention_heads\":3,\"num_key_value_heads\":2}",
                         "{\"hidden_size\":4}", "{\"model_type\":\"llama\",\"rope_scaling\":{\"rope_type\":\"bogus\"}}",
                         "{\"model_type\":\"llava\",\"vision_feature_layer\":99}",
                         "{\"model_type\":\"llava_next\",\"image_grid_pinpoints\":[[1]]}"};
    const char *want[] = {"hidden_size", "multiple", "model_type", "bogus", "vision_feature_layer 99", "image_grid_pinpoints"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_parse(bad[i], strlen(bad[i]), "t", &j, &err);
        vlmc_status s = hf_config_parse(j, "cfg.json", &c, &err);
        CHECK(s != VLMC_OK && strstr(err.message, want[i]) && strstr(err.message, "cfg.json"), "case %zu: %s", i, err.message);
        cJSON_Delete(j);
    }
    const char *vf = "{\"model_type\":\"llava\",\"vision_feature_layer\":[-2,-5,3]}";
    json_parse(vf, strlen(vf), "t", &j, &err);
    CHECK(hf_config_parse(j, "t", &c, &err) == VLMC_OK && c.n_vision_feature_layers == 3 && c.vision_feature_layers[1] == -5,
          "feature layer list");
    cJSON_Delete(j);
}

int main(void) {
    tests_begin("config");
    TEST_RUN(test_fixture_configs);
    TEST_RUN(test_defaults_and_errors);
    return tests_end();
}
