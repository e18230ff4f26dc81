/* The inside of the public vlmc_model handle (for src/api only). */
#ifndef VLMC_API_MODEL_INTERNAL_H
#define VLMC_API_MODEL_INTERNAL_H

#include <stdbool.h>

#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "models/llama.h"

struct vlmc_model {
    hf_config cfg;
    safetensors *st;
    llama_model lm;
    llama_ctx ctx;
    bool have_ctx;
};

#endif
