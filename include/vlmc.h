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

/* ---- synthetic dataset -------------------------------------------------------- */

/* `vlmc synth`: a synthetic visual world (shapes, colours, sizes, words over
 * plain or textured backgrounds) with training conversations in the Hugging
 * Face messages format. See docs/SYNTH.md for the files and their fields. */
typedef struct vlmc_synth_params {
    uint64_t seed;        /* everything written is a function of the parameters, seed included */
    int n;                /* images over all splits, 1..10,000,000 */
    int image_size;       /* square side in pixels, 64..512 (default 128) */
    int min_objects;      /* shapes per image, 1..max_objects (default 1) */
    int max_objects;      /* ..6 (default 6) */
    int questions;        /* question/answer turns per conversation, 1..32 (default 8) */
    int text_percent;     /* share of images with a written word, 0..100 (default 50) */
    double val_fraction;  /* share of images in the validation split (default 0.05) */
    double test_fraction; /* share in the test split (default 0.05); train has the rest */
    int threads;          /* OpenMP threads; 0 for the default. The output does not depend on it. */
} vlmc_synth_params;

/* Fills p with the defaults above (seed 0, n 1000). */
void vlmc_synth_default_params(vlmc_synth_params *p);
/* Writes the dataset into out_dir (created if needed; files already there with
 * the same names are overwritten, others are left alone): images/<split>/<id>.png,
 * <split>.jsonl (conversations), <split>_qa.jsonl (one row per question) for
 * split in train, val, test, and meta.json. Equal parameters give byte-identical files. */
vlmc_status vlmc_synth_generate(const vlmc_synth_params *p, const char *out_dir, vlmc_error *err);

#ifdef __cplusplus
}
#endif
#endif
