/* Decoder-only models: transformers 4.47 LlamaForCausalLM ("llama"), MistralForCausalLM ("mistral"),
 * Qwen2ForCausalLM ("qwen2"). Config keys: see llama.h. Tensors: model.*, lm_head.weight (absent when tied). */
#include "models/vlm.h"

static vlmc_status decoder_load(vlm_model *m, vlmc_error *err) {
    vlmc_status s = llama_model_load(&m->lm, &m->cfg.text, m->st, "model.", "lm_head.weight", err);
    if (s) m->lm.layers = NULL;
    return s;
}

static const char *const decoder_types[] = {"llama", "mistral", "qwen2", NULL};

const vlm_family vlm_family_llama = {
    .model_types = decoder_types,
    .hf_class = "LlamaForCausalLM",
    .load = decoder_load,
};
