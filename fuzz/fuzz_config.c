/* Fuzz target: arbitrary bytes as a config.json. */
#include <stddef.h>
#include <stdint.h>

#include "formats/hf_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cJSON *root = NULL;
    vlmc_error err;
    if (json_parse((const char *)data, size, "fuzz config.json", &root, &err) != VLMC_OK) return 0;
    hf_config cfg;
    (void)hf_config_parse(root, "fuzz config.json", &cfg, &err);
    cJSON_Delete(root);
    return 0;
}
