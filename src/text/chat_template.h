/* Chat templates of Hugging Face checkpoints: where a model folder keeps its
 * template, which special tokens it passes, and how a conversation becomes the
 * template's variables (as transformers' apply_chat_template does). */
#ifndef VLMC_TEXT_CHAT_TEMPLATE_H
#define VLMC_TEXT_CHAT_TEMPLATE_H

#include <cjson/cJSON.h>

#include "core/error.h"
#include "text/jinja.h"

typedef struct chat_template {
    jinja_template *tpl;
    char *source_path; /* the file the template came from (or "<string>") */
    /* Special tokens read from tokenizer_config.json (NULL when absent), passed
     * to the template unless the request names them itself. */
    char *bos_token, *eos_token, *unk_token, *pad_token, *sep_token, *cls_token, *mask_token;
} chat_template;

/* Finds the template of a model folder: chat_template.jinja, else
 * chat_template.json {"chat_template": ...}, else tokenizer_config.json
 * `chat_template` (a string, or a list of {name, template} from which
 * "default" is used). Special tokens come from tokenizer_config.json (plain
 * strings or AddedToken dicts {"content": ...}). */
vlmc_status chat_template_load(const char *model_dir, chat_template **out, vlmc_error *err);
/* A template from its source text, with no special tokens. */
vlmc_status chat_template_from_source(const char *src, size_t len, const char *name, chat_template **out, vlmc_error *err);
void chat_template_free(chat_template *ct);

/* Builds the template variables from a request object
 *   {"messages": [...], "add_generation_prompt": bool, "bos_token": "...", "eos_token": "...",
 *    "extra_context": {...}, other keys...}
 * as transformers renders: messages, tools=None, documents=None, add_generation_prompt
 * (default false), the special tokens (a null token is left undefined), every
 * other top-level key, and extra_context's keys on top. The key "vlmc_now"
 * ("YYYY-MM-DD HH:MM:SS") is not a variable: it freezes strftime_now and is
 * returned in *now (pointing into request; may be NULL). */
vlmc_status chat_template_vars(const chat_template *ct, const cJSON *request, cJSON **vars, const char **now,
                               vlmc_error *err);

/* Renders a request (see chat_template_vars). *out is malloc'ed. */
vlmc_status chat_template_render(const chat_template *ct, const cJSON *request, char **out, vlmc_error *err);

#endif
