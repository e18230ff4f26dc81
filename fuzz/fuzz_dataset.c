/* Fuzz target: arbitrary bytes as one training-data row (HF messages or LLaVA conversations). */
#include <stddef.h>
#include <stdint.h>

#include "train/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cJSON *row = NULL;
    vlmc_error err;
    if (json_parse((const char *)data, size, "fuzz row", &row, &err) != VLMC_OK) return 0;
    conv_sample s;
    if (conv_sample_from_json(row, "/data", "fuzz row", &s, &err) == VLMC_OK) conv_sample_free(&s);
    cJSON_Delete(row);
    return 0;
}
