/* The inside of the public vlmc_model handle (for src/api only). */
#ifndef VLMC_API_MODEL_INTERNAL_H
#define VLMC_API_MODEL_INTERNAL_H

#include <stdbool.h>

#include "vlmc.h"
#include "models/vlm.h"
#include "text/chat_template.h"

enum { MODEL_MAX_EOS = 16 };

struct vlmc_model {
    char *dir;
    vlm_model vm;
    int n_ctx;                  /* default session context */
    int n_batch;                /* prompt tokens per decoder pass */
    vlmc_tokenizer *tok;        /* NULL when the folder has none */
    chat_template *tpl;         /* NULL when the folder has none */
    vlmc_error tpl_err;         /* why tpl is NULL */
    vlmc_image_processor *proc; /* NULL unless a VLM folder has preprocessor_config.json */
    int32_t eos[MODEL_MAX_EOS]; /* generation_config.json eos_token_id, else config.json's, else the tokenizer's */
    int n_eos;
};

#endif
