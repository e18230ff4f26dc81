/* vlmc — vision-language models in C. The one public header.
 *
 * Conventions (as SQLite / zstd): handles are opaque; every call that can fail
 * returns a vlmc_status and, when given a vlmc_error, fills it with a message
 * naming the file and the problem. Nothing here exits the process or keeps
 * global state. */
#ifndef VLMC_H
#define VLMC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vlmc_status {
    VLMC_OK = 0,
    VLMC_ERR_IO,          /* a file could not be opened, read, written or mapped */
    VLMC_ERR_FORMAT,      /* outside data is malformed */
    VLMC_ERR_UNSUPPORTED, /* well-formed but not something vlmc implements */
    VLMC_ERR_ARG,         /* a caller passed an invalid argument */
    VLMC_ERR_NOMEM,       /* an allocation failed */
    VLMC_ERR_LIMIT,       /* a configured limit was exceeded (pixels, context, sizes) */
    VLMC_ERR_INTERNAL,    /* a bug in vlmc */
} vlmc_status;

typedef struct vlmc_error {
    vlmc_status code;
    char message[1024];
} vlmc_error;

/* A short constant name for a status code ("format error", ...). */
const char *vlmc_status_name(vlmc_status s);
const char *vlmc_version(void);

/* ---- model folders and files ------------------------------------------------ */

/* Describes a model folder (config.json + *.safetensors [+ tokenizer files]) or a
 * single .safetensors file as a JSON object (see docs/CLI.md, `vlmc info --json`).
 * *json_out is malloc'ed; free it with vlmc_free. */
vlmc_status vlmc_info_json(const char *path, char **json_out, vlmc_error *err);
/* The same facts as human-readable text. */
vlmc_status vlmc_info_text(const char *path, char **text_out, vlmc_error *err);

void vlmc_free(void *p);

/* ---- tokenizers (tokenizer.json) -------------------------------------------- */

/* ---- chat templates (Jinja) -------------------------------------------------- */

/* Chat templates render a conversation into the model's prompt text exactly as
 * transformers' apply_chat_template does (Jinja2 with trim_blocks, lstrip_blocks,
 * loop controls, raise_exception, strftime_now, tojson).
 *
 * context_json is one JSON object:
 *   {"messages": [...], "add_generation_prompt": bool, "bos_token": "...", "eos_token": "...",
 *    "extra_context": {...}, ...any other variables...}
 * Variables: messages, tools=None and documents=None unless given, add_generation_prompt
 * (default false), the special tokens (null ones are left undefined), every other top-level key,
 * then extra_context's keys on top. The reserved key "vlmc_now" ("YYYY-MM-DD HH:MM:SS") freezes
 * strftime_now (default: the current local time). Outputs are malloc'ed; free them with vlmc_free.
 * Template errors (syntax, raise_exception, type errors) name the template line. */
typedef struct vlmc_chat_template vlmc_chat_template;

/* Renders the Jinja source template_src with context_json (see above). */
vlmc_status vlmc_template_render(const char *template_src, const char *context_json, char **out, vlmc_error *err);

/* Loads a model folder's template: chat_template.jinja, else chat_template.json, else
 * tokenizer_config.json "chat_template" (a string, or a list of {name, template}: "default" is
 * used), with the special tokens of tokenizer_config.json (bos/eos/unk/pad/sep/cls/mask) as
 * defaults for the render. */
vlmc_status vlmc_chat_template_load(const char *model_dir, vlmc_chat_template **out, vlmc_error *err);
/* A template from its Jinja source text (no default special tokens). */
vlmc_status vlmc_chat_template_from_string(const char *template_src, vlmc_chat_template **out, vlmc_error *err);
/* A template from a .jinja file (errors name the file). */
vlmc_status vlmc_chat_template_from_file(const char *path, vlmc_chat_template **out, vlmc_error *err);
/* Renders context_json (see above) with a loaded template. */
vlmc_status vlmc_chat_template_render(const vlmc_chat_template *t, const char *context_json, char **out,
                                      vlmc_error *err);
void vlmc_chat_template_free(vlmc_chat_template *t);

/* ---- images and image processors --------------------------------------------- */

/* ---- models: load, forward, dump --------------------------------------------- */

/* ---- generation --------------------------------------------------------------- */

#ifdef __cplusplus
}
#endif
#endif
