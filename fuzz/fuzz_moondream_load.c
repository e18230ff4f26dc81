/* libFuzzer target: arbitrary bytes as the model.safetensors of a tiny moondream2 (fixed config: 28-pixel crops of
 * 2×2 patches, a 2-layer tower, a 1-layer text model of one 64-wide head); loading must fail cleanly or give a model
 * whose image encoding and decoder run. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/hf_config.h"
#include "formats/json.h"
#include "formats/safetensors.h"
#include "models/vlm.h"

static const char *CFG =
    "{\"model_type\":\"moondream1\",\"architectures\":[\"HfMoondream\"],\"config\":{"
    "\"text\":{\"dim\":64,\"ff_dim\":8,\"n_layers\":1,\"vocab_size\":8,\"max_context\":16,\"n_heads\":1,\"n_kv_heads\":1},"
    "\"vision\":{\"enc_dim\":4,\"enc_patch_size\":14,\"enc_n_layers\":2,\"enc_ff_dim\":8,\"enc_n_heads\":1,"
    "\"proj_out_dim\":64,\"crop_size\":28,\"in_channels\":3,\"max_crops\":2,\"overlap_margin\":0,\"proj_inner_dim\":4},"
    "\"tokenizer\":{\"bos_id\":1,\"eos_id\":2}}}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cJSON *o = cJSON_Parse(CFG);
    vlm_model m;
    memset(&m, 0, sizeof m);
    vlmc_error err;
    vlmc_status s = hf_config_parse(o, "fuzz config.json", &m.cfg, &err);
    cJSON_Delete(o);
    if (s || !(m.fam = vlm_family_find(&m.cfg))) return 0;
    if (safetensors_open_memory(data, size, "fuzz.safetensors", &m.st, &err)) return 0;
    if (m.fam->load(&m, &err)) {
        vlm_free(&m); /* the parts loaded before the failure too */
        return 0;
    }
    /* a 40×60 image: 1 + 1×2 crops of 28×28 → 4 feature rows; prompt [bos, 4 slots, 3] */
    uint8_t rgb[40 * 60 * 3];
    for (size_t i = 0; i < sizeof rgb; i++) rgb[i] = (uint8_t)(i * 7);
    vlm_prepared p = {0};
    if (!m.fam->preprocess(&m, rgb, 40, 60, &p, NULL, &err)) {
        int tiles = p.n_tiles;
        vlm_images vi = {.n_images = 1, .pixels = p.pixels, .n_tiles = tiles, .tiles = &tiles, .height = p.height,
                         .width = p.width, .image_sizes = p.image_size};
        float feat[4 * 64], embeds[6 * 64], logits[6 * 8];
        vlm_vision_out vo = {.features = feat};
        int32_t ids[6] = {1, -1, -1, -1, -1, 3};
        llama_ctx c;
        if (!m.fam->encode(&m, &vi, &vo, &err) && !vlm_embed(&m, ids, 6, feat, vo.n_features, 0, true, embeds, NULL, &err) &&
            !llama_ctx_init(&c, &m.lm, 1, 8, 0, &err)) {
            llama_forward(&c, &(llama_input){.n_tokens = 6, .embeds = embeds}, &(llama_output){.logits = logits}, &err);
            llama_forward(&c, &(llama_input){.n_tokens = 1, .tokens = ids + 5}, &(llama_output){.logits = logits}, &err);
            llama_ctx_free(&c);
        }
        vlm_prepared_free(&p);
    }
    vlm_free(&m);
    return 0;
}
