/* libFuzzer target: arbitrary bytes as the config.json of a model folder (with an empty model.safetensors and a
 * vit/t/ tower folder beside it), loaded through the family registry: the Yi-VL reader (mm_* keys, the tower
 * folder's path) and the Qwen / Qwen-VL reader (sizes, visual.*) must fail cleanly on anything. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "models/vlm.h"

static char dir[64];

static int write_file(const char *name, const void *data, size_t n) {
    char path[160];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    fclose(f);
    return w == n ? 0 : -1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    snprintf(dir, sizeof dir, "/tmp/vlmc-fuzz-family-XXXXXX");
    if (!mkdtemp(dir)) abort();
    /* an empty safetensors: 8-byte header length, "{}" */
    static const uint8_t empty[10] = {2, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    char sub[128];
    snprintf(sub, sizeof sub, "%s/vit", dir);
    mkdir(sub, 0700);
    snprintf(sub, sizeof sub, "%s/vit/t", dir);
    mkdir(sub, 0700);
    static const char vit_cfg[] = "{\"model_type\": \"clip_vision_model\", \"hidden_size\": 8, \"num_attention_heads\": 2}";
    static const char proc[] = "{\"image_processor_type\": \"CLIPImageProcessor\", \"size\": {\"shortest_edge\": 8}, "
                               "\"crop_size\": {\"height\": 8, \"width\": 8}}";
    if (write_file("model.safetensors", empty, sizeof empty) || write_file("vit/t/model.safetensors", empty, sizeof empty) ||
        write_file("vit/t/config.json", vit_cfg, sizeof vit_cfg - 1) ||
        write_file("vit/t/preprocessor_config.json", proc, sizeof proc - 1))
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (write_file("config.json", data, size)) return 0;
    vlm_model m;
    vlmc_error err;
    if (vlm_load(dir, &m, &err) == VLMC_OK) vlm_free(&m);
    return 0;
}
