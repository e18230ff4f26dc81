/* The trainer's internal pieces (vlmc_train in include/vlmc.h is the public face): turning a conversation
 * into token ids and labels with the model's chat template, and exporting a trained model. */
#ifndef VLMC_TRAIN_TRAINER_H
#define VLMC_TRAIN_TRAINER_H

#include <stdbool.h>
#include <stdint.h>

#include "text/chat_template.h"
#include "train/dataset.h"
#include "train/train_model.h"
#include "vlmc.h"

typedef struct tr_example {
    int32_t *ids, *labels; /* [n] */
    int n;
    int64_t n_targets;     /* labels[t+1] != -100 for t < n-1 */
    char **images;         /* borrowed from the dataset */
    int n_images;
} tr_example;

/* The token ids that stand for one image in the prompt (the processor's expansion of "<image>"). */
typedef struct tr_image_ids {
    int32_t *ids;
    size_t n;
} tr_image_ids;

typedef struct tr_text_opts {
    bool train_on_prompt;
    bool content_as_string; /* text-only models: a message's text parts joined into one string */
    int max_length;
    int image_token;        /* -1: no images */
    int image_tokens;       /* copies of the image token per image (LLaVA) ... */
    const tr_image_ids *expansions; /* ... or, when set, these ids for image k of the sample (LLaVA-NeXT,
                                       Idefics3); their image tokens are never targets */
} tr_text_opts;

/* Renders the sample with the chat template and tokenizes it. Labels: the token ids inside the assistant
 * turns (each turn's text = render(messages[:i+1]) minus render(messages[:i], add_generation_prompt=true),
 * so the end-of-turn marker is learned), -100 elsewhere and on image tokens; every text token with
 * train_on_prompt. Each image token of the text becomes image_tokens copies or expansions[k]. Segments are tokenized one by one (without special tokens: the template writes them)
 * and concatenated, as LLaMA-Factory does. */
vlmc_status tr_build_example(const conv_sample *s, const chat_template *ct, const vlmc_tokenizer *tok,
                             const tr_text_opts *o, tr_example *out, vlmc_error *err);
void tr_example_free(tr_example *e);

/* The ids that stand for the image at path in the prompt: the family's expansion of "<image>"
 * (vlm_family.image_prompt: LLaVA-NeXT's per-image feature count, Idefics3's <fake_token_around_image>
 * <row_r_col_c> tile layout) for proc's output on the image, tokenized without special tokens. out->ids is
 * malloc'ed. */
vlmc_status tr_image_expansion(const train_model *m, const vlmc_image_processor *proc, const vlmc_tokenizer *tok,
                               const char *path, tr_image_ids *out, vlmc_error *err);

/* Writes the model as a Hugging Face folder: config.json and the tokenizer / processor files copied from
 * src_dir, model.safetensors with every tensor of src_dir's checkpoint (the trained ones replaced, LoRA
 * merged into its base weights). */
vlmc_status tr_export_model(const train_model *m, const char *src_dir, const char *out_dir, vlmc_error *err);
/* PEFT's adapter layout: adapter_config.json + adapter_model.safetensors (LoRA tensors only). */
vlmc_status tr_export_adapter(const train_model *m, const char *src_dir, const char *out_dir, vlmc_error *err);

#endif
