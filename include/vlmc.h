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

/* ---- images and image processors --------------------------------------------- */

/* ---- models: load, forward, dump --------------------------------------------- */

/* ---- generation --------------------------------------------------------------- */

#ifdef __cplusplus
}
#endif
#endif
