/* libFuzzer target: arbitrary bytes as a safetensors file holding the weights of a tiny decoder (fixed configs:
 * Llama, Gemma, Persimmon with its fused qkv / qk-LayerNorm names); each loader must fail cleanly or give a model
 * that runs (Gemma also through a prefix-LM prompt). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/hf_config.h"
#include "formats/json.h"
#include "formats/safetensors.h"
#include "models/llama.h"

static const char *const CFGS[] = {
    "{\"model_type\":\"llama\",\"vocab_size\":8,\"hidden_size\":8,\"intermediate_size\":8,"
    "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"num_key_value_heads\":1,\"tie_word_embeddings\":true}",
    "{\"model_type\":\"gemma\",\"vocab_size\":8,\"hidden_size\":8,\"intermediate_size\":8,\"head_dim\":4,"
    "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"num_key_value_heads\":1}",
    "{\"model_type\":\"persimmon\",\"vocab_size\":8,\"hidden_size\":8,\"intermediate_size\":8,"
    "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"tie_word_embeddings\":true}",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vlmc_error err;
    safetensors *st = NULL;
    if (safetensors_open_memory(data, size, "fuzz.safetensors", &st, &err)) return 0;
    for (size_t k = 0; k < sizeof CFGS / sizeof CFGS[0]; k++) {
        cJSON *o = cJSON_Parse(CFGS[k]);
        hf_text_config cfg;
        vlmc_status s = hf_text_config_parse(o, "llama", "fuzz", &cfg, &err);
        cJSON_Delete(o);
        if (s) continue;
        llama_model m;
        s = k == 2 ? persimmon_model_load(&m, &cfg, st, "model.", NULL, &err)
                   : llama_model_load(&m, &cfg, st, "model.", NULL, &err);
        if (s) continue;
        llama_ctx c;
        if (!llama_ctx_init(&c, &m, 1, 4, 0, &err)) {
            int32_t ids[3] = {1, 2, 7}, prefix[3] = {1, 1, 0};
            float logits[3 * 8];
            llama_forward(&c, &(llama_input){.n_tokens = 3, .tokens = ids, .prefix_mask = k == 1 ? prefix : NULL},
                          &(llama_output){.logits = logits}, &err);
            llama_forward(&c, &(llama_input){.n_tokens = 2, .tokens = ids}, &(llama_output){.logits = logits}, &err);
            llama_ctx_free(&c);
        }
        llama_model_free(&m);
    }
    safetensors_close(st);
    return 0;
}
