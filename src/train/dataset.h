/* Conversation datasets for fine-tuning, read into one normalised form: the
 * Hugging Face messages format (each message {"role", "content": [{"type":
 * "image"} | {"type": "text", "text": ...}]}) plus the list of image paths, in
 * the order the image parts appear.
 *
 * Accepted rows, in a JSONL file (one row per line) or a JSON array (.json):
 *  - HF / TRL messages: {"messages": [...], "images": [paths]} (or "image": path);
 *    content may be a string (with "<image>" markers, as LLaMA-Factory writes it)
 *    or a list of parts.
 *  - LLaVA conversations: {"id", "image": path, "conversations": [{"from":
 *    "human"|"gpt"|"system", "value": "<image>\n..."}]}. As LLaVA's
 *    preprocess_multimodal does, the "<image>" marker is removed from the text
 *    and the image placed first in its message.
 * Image paths are resolved against image_root (default: the data file's folder). */
#ifndef VLMC_TRAIN_DATASET_H
#define VLMC_TRAIN_DATASET_H

#include <stddef.h>

#include "formats/json.h"

typedef struct conv_sample {
    cJSON *messages; /* HF messages array (owned) */
    char **images;   /* resolved paths, one per image part */
    int n_images;
    int source_line; /* 1-based line (JSONL) or element index (JSON array) */
} conv_sample;

typedef struct conv_dataset {
    conv_sample *samples;
    size_t n;
    char *path;
} conv_dataset;

/* Loads every row; a malformed row is an error naming the file, the row and the problem. */
vlmc_status conv_dataset_load(const char *path, const char *image_root, conv_dataset *out, vlmc_error *err);
void conv_dataset_free(conv_dataset *d);
/* Converts one row (any accepted format) to a sample; `where` names it in errors. */
vlmc_status conv_sample_from_json(const cJSON *row, const char *image_root, const char *where, conv_sample *out,
                                  vlmc_error *err);
void conv_sample_free(conv_sample *s);

#endif
