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

/* A loaded decoder-only model folder (config.json + *.safetensors; model_type llama,
 * mistral or qwen2: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM). Weights
 * stay memory-mapped; the handle also owns a KV cache planned for n_batch x n_ctx. */
typedef struct vlmc_model vlmc_model;

typedef struct vlmc_model_params {
    int n_ctx;   /* KV cache slots per sequence; 0 = min(max_position_embeddings, 4096) */
    int n_batch; /* sequences run together; 0 = 1 */
} vlmc_model_params;

/* Loads dir; p may be NULL (defaults). Errors name the file and, for weights, the tensor. */
vlmc_status vlmc_model_load(const char *dir, const vlmc_model_params *p, vlmc_model **out, vlmc_error *err);
void vlmc_model_free(vlmc_model *m);

/* Runs a decoder-only model on the inputs of IN_DIR/manifest.json (arrays input_ids [B, T]
 * int32, optional attention_mask [B, T] int32, 0 = left padding) and writes OUT_DIR/manifest.json
 * with logits [B, T, vocab], hidden_states [n_layers+1, B, T, hidden] (float32) and, when
 * generate_n > 0, greedy generated_ids [B, n] (int32) and generation_step_logits [B, n, vocab],
 * in the fixtures' format (raw little-endian .bin files). */
vlmc_status vlmc_dump(const char *model_dir, const char *inputs_dir, const char *out_dir, int generate_n,
                      vlmc_error *err);

/* ---- generation --------------------------------------------------------------- */

#ifdef __cplusplus
}
#endif
#endif
