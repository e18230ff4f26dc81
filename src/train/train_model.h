/* The training graph: a Llama-family decoder (LlamaForCausalLM, MistralForCausalLM without sliding
 * window, Qwen2ForCausalLM) or a VLM: LLaVA (LlavaForConditionalGeneration: CLIP or SigLIP vision tower →
 * MLP projector → Llama decoder), LLaVA-NeXT (LlavaNextForConditionalGeneration: the same on every anyres
 * tile, then pack_image_features with image_newline) or Idefics3 / SmolVLM (Idefics3ForConditionalGeneration:
 * SigLIP-like tower with NaViT position ids and post_layernorm → pixel shuffle → modality projection),
 * forward and backward in f32, as transformers 4.47 computes them in training mode.
 *
 * Unlike the inference models (views of the mmapped weights), a train_model OWNS f32 copies of every
 * parameter (one allocation), the gradients of the trainable ones (one allocation, nothing for frozen
 * parameters), AdamW's moments for them (one allocation, made on the first optimizer step), and the
 * activations of one (B, T, images) shape planned once (one allocation), llm.c style.
 *
 * Dimension names, used everywhere below and in llama_train.c / vision_train.c:
 *   B sequences, T tokens each, R = B·T rows; D hidden, H / KVH heads of hd, QD = H·hd, KD = KVH·hd,
 *   I MLP width, V vocabulary, L layers.  Vision: N tiles (LLaVA: one per image), VT tokens per tile
 *   (1 + NP patches for CLIP, NP for SigLIP / Idefics3), VD hidden, VH heads, VF MLP width, VL layers of
 *   which VLR run (LLaVA: up to the selected feature layer); NS selected tokens per tile (VT minus the
 *   dropped first one, strategy "default"), NO connector rows per tile (NS; Idefics3: VT / scale²).
 *
 * Use:
 *   train_model m;  train_model_load(&m, dir, NULL, seed, err);      // NULL: no LoRA adapters
 *   train_model_set_stage(&m, TM_STAGE_FULL, err);                   // which parameters get gradients
 *   train_model_plan(&m, B, T, n_images, err);                       // activations for this shape
 *   train_model_zero_grad(&m);
 *   train_model_forward(&m, &batch, &loss, err);  train_model_backward(&m, 1.0f, err);
 *   train_model_adamw_step(&m, step, lr, &adamw, true, err);
 */
#ifndef VLMC_TRAIN_TRAIN_MODEL_H
#define VLMC_TRAIN_TRAIN_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/hf_config.h"
#include "kernels/gelu.h"
#include "models/projector.h"
#include "train/optim.h"

/* Parts of the model: a parameter belongs to one. */
enum { TM_PART_VISION = 1, TM_PART_PROJECTOR = 2, TM_PART_DECODER = 4, TM_PART_LORA = 8 };

typedef enum tm_stage {
    TM_STAGE_FULL = 0,          /* every parameter on the loss path */
    TM_STAGE_PROJECTOR,         /* LLaVA stage 1: the projector / connector only (+ LLaVA-NeXT's image_newline) */
    TM_STAGE_PROJECTOR_DECODER, /* LLaVA stage 2: projector + decoder, vision tower frozen */
    TM_STAGE_LORA,              /* LoRA adapters only (base frozen) */
} tm_stage;

/* Returns 0 and sets *out for "full", "projector", "projector+decoder", "lora"; -1 otherwise. */
int tm_stage_from_name(const char *name, tm_stage *out);
const char *tm_stage_name(tm_stage s);

/* The decoder's linear modules, in the order of LoRA target names "q,k,v,o,gate,up,down". */
enum { LIN_Q = 0, LIN_K, LIN_V, LIN_O, LIN_GATE, LIN_UP, LIN_DOWN, LIN_COUNT };
extern const char *const tm_linear_names[LIN_COUNT];   /* "q", "k", ... */
extern const char *const tm_linear_modules[LIN_COUNT]; /* "self_attn.q_proj", ... "mlp.down_proj" */

typedef struct tm_lora_config {
    int r;                 /* 0 = no adapters */
    float alpha;           /* scale = alpha / r (PEFT's default, not rsLoRA) */
    float dropout;         /* on the adapter's input, as PEFT's lora_dropout */
    unsigned targets;      /* bit LIN_* set = adapter on that module */
} tm_lora_config;
/* Parses "q,k,v,o,gate,up,down" (also PEFT module names q_proj, ... down_proj, and "all"). */
int tm_lora_targets_parse(const char *s, unsigned *out);

/* One linear module: weight [out, in], bias [out] or NULL, LoRA A [r, in] and B [out, r] or NULL. */
typedef struct tm_linear {
    float *w, *b, *lora_a, *lora_b;
} tm_linear;

typedef struct tm_dec_layer {
    float *attn_norm, *ffn_norm; /* [D] */
    tm_linear lin[LIN_COUNT];
} tm_dec_layer;

typedef struct tm_decoder {
    float *tok_emb;    /* [V, D] */
    float *final_norm; /* [D] */
    float *lm_head;    /* [V, D]; == tok_emb when tied */
    tm_dec_layer *layers;
} tm_decoder;

typedef struct tm_vis_layer {
    float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    float *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b; /* [VD, VD], [VD] */
    float *fc1_w, *fc1_b, *fc2_w, *fc2_b;                 /* [VF, VD], [VF], [VD, VF], [VD] */
} tm_vis_layer;

typedef struct tm_vision {
    float *patch_w;              /* [VD, C·P·P] (Conv2d weight flattened) */
    float *patch_b;              /* [VD] SigLIP / Idefics3; NULL for CLIP */
    float *class_emb;            /* [VD] CLIP */
    float *pos_emb;              /* [NP (+1 for CLIP), VD] */
    float *pre_ln_w, *pre_ln_b;  /* CLIP pre_layrnorm */
    float *post_ln_w, *post_ln_b;/* on the loss path for Idefics3 only */
    tm_vis_layer *layers;
    /* LLaVA: multi_modal_projector.linear_1 [D, VD], linear_2 [D, D]; Idefics3: p1_w = the connector's
     * modality_projection.proj [D, VD·scale²] (no bias), p1_b = p2_w = p2_b = NULL */
    float *p1_w, *p1_b, *p2_w, *p2_b;
    float *newline;              /* LLaVA-NeXT image_newline [D] */
} tm_vision;

/* A parameter tensor as the checkpoint names it. */
typedef struct tm_param {
    char name[256];
    int ndim;
    int64_t shape[4];
    size_t n;          /* elements */
    size_t offset;     /* in the parameter allocation (floats) */
    int part;          /* TM_PART_* */
    bool on_path;      /* can receive a gradient at all (false: unused CLIP layers, post_layernorm) */
    bool trainable;    /* has a gradient in the current stage */
    bool no_decay;     /* biases and norm weights (HF Trainer's rule; the optimizer may ignore it) */
    size_t grad_offset;/* in the gradient allocation, when trainable */
    float **wp, **gp;  /* where the weight / gradient pointer lives in w / g structs */
} tm_param;

typedef struct train_batch {
    int B, T;
    const int32_t *input_ids;      /* [B, T] */
    const int32_t *attention_mask; /* [B, T] or NULL (all 1) */
    const int32_t *labels;         /* [B, T] or NULL (no loss); -100 = ignored; HF shift inside */
    const int32_t *position_ids;   /* [B, T] or NULL: arange(T), as transformers uses in training */
    const float *pixel_values;     /* [n_images, C, S, S] or NULL: tiles (LLaVA: one per image) */
    int n_images;                  /* tiles */
    /* LLaVA-NeXT: n_groups images, image g = image_tiles[g] consecutive tiles (base image first) of original
     * size image_sizes[g] = (height, width); the tiles must be those the size selects. */
    int n_groups;
    const int *image_tiles;
    const int32_t *image_sizes;
    /* Idefics3: pixel_attention_mask [n_images, S, S] (1 = real pixel) or NULL (all real) */
    const int32_t *pixel_mask;
} train_batch;

typedef enum tm_vlm_kind { TM_TEXT = 0, TM_LLAVA, TM_LLAVA_NEXT, TM_IDEFICS3 } tm_vlm_kind;

typedef struct train_model {
    hf_config cfg;
    char dir[1024];
    bool is_vlm;
    tm_vlm_kind vlm;
    /* decoder dims */
    int L, D, H, KVH, hd, rot, I, V;
    float eps, attn_factor;
    bool tied;
    float *inv_freq; /* [rot/2] */
    /* vision dims (is_vlm) */
    int VL, VLR, VD, VH, vhd, VF, VC, VP, VS, VNP, VT, drop_first, image_token;
    int vkind;             /* vit_kind: VIT_CLIP, VIT_SIGLIP, VIT_IDEFICS3 */
    int cls;               /* 1: CLIP's class token first */
    int NS, NO, scale;     /* selected tokens, connector rows per tile; Idefics3's pixel-shuffle factor */
    float veps;
    act_kind vact, pact;
    projector pack;        /* LLaVA-NeXT: the anyres geometry for llava_next_pack (image_newline = vw.newline) */
    /* LoRA */
    tm_lora_config lora;
    float lora_scale;
    uint64_t dropout_seed; /* set per step by the trainer (LoRA dropout masks) */
    bool training;         /* dropout on (default true after set_stage) */

    tm_decoder w, g;       /* weights, gradients (NULL where frozen) */
    tm_vision vw, vg;
    tm_param *params;
    int n_params, cap_params;
    float *param_mem, *grad_mem, *opt_mem;
    size_t n_param_floats, n_grad_floats;
    unsigned trainable_parts;
    bool vision_grads, proj_grads, dec_grads; /* which backward pieces run */

    /* activations, planned by train_model_plan */
    int B, T, N;
    int n_img_rows;        /* feature rows spliced into the current batch */
    int n_groups;          /* LLaVA-NeXT: the last forward's images (as ids / labels, the caller's arrays) */
    const int *img_tiles;
    const int32_t *img_sizes;
    float *act_mem;
    size_t n_act_floats;
    struct tm_acts *a;
    /* the current batch */
    const int32_t *ids, *mask, *labels;
    int64_t n_targets;
    float loss;
} train_model;

/* Loads config.json + the safetensors of a llama / mistral / qwen2 or llava model folder into f32
 * parameters. lora: adapters to add (NULL or r = 0: none); A is initialised as PEFT does (kaiming
 * uniform, a = sqrt(5), from `seed`), B = 0. */
vlmc_status train_model_load(train_model *m, const char *dir, const tm_lora_config *lora, uint64_t seed,
                             vlmc_error *err);
void train_model_free(train_model *m);

/* Chooses the trainable parameters and allocates their gradients (zeroed). */
vlmc_status train_model_set_stage(train_model *m, tm_stage stage, vlmc_error *err);

/* Plans the activations for batches of B sequences of T tokens with n_images tiles (reuses the
 * allocation when it is big enough). */
vlmc_status train_model_plan(train_model *m, int B, int T, int n_images, vlmc_error *err);

/* Forward: logits (train_model_logits, [B, T, V]) and, with labels, the mean loss (*loss, may be NULL).
 * Fails if the batch does not fit the plan, an id is outside the vocabulary, or the image tokens do not
 * match the images. */
vlmc_status train_model_forward(train_model *m, const train_batch *batch, float *loss, vlmc_error *err);
const float *train_model_logits(const train_model *m);
int64_t train_model_n_targets(const train_model *m);

/* Backward of the last forward's mean loss times dloss (1 for plain gradients, 1/k when accumulating k
 * micro-batches): ACCUMULATES into the gradients. Overwrites the logits. */
vlmc_status train_model_backward(train_model *m, float dloss, vlmc_error *err);
void train_model_zero_grad(train_model *m);

/* Gradient buffers of the trainable parameters (for clipping): fills up to cap pointers/sizes. */
int train_model_grad_buffers(train_model *m, float **bufs, size_t *sizes, int cap);

/* One AdamW step on every trainable parameter (moments allocated on first use). honor_no_decay: skip weight
 * decay on biases and norm weights (HF Trainer) rather than decaying everything (plain torch AdamW). */
vlmc_status train_model_adamw_step(train_model *m, int64_t step, float lr, const adamw_params *p,
                                   bool honor_no_decay, vlmc_error *err);

/* The parameter named name, or NULL. */
tm_param *train_model_find(train_model *m, const char *name);
static inline float *tm_param_data(const train_model *m, const tm_param *p) { return m->param_mem + p->offset; }
static inline float *tm_param_grad(const train_model *m, const tm_param *p) {
    return p->trainable ? m->grad_mem + p->grad_offset : NULL;
}

/* Writes the gradients of the trainable parameters (names as in the checkpoint) to a safetensors file. */
vlmc_status train_model_write_grads(const train_model *m, const char *path, vlmc_error *err);

/* ---- internal: the two halves of the graph (llama_train.c, vision_train.c) ---------------- */
struct tm_acts;
void tm_decoder_forward(train_model *m, const float *embeds_or_null);
void tm_decoder_backward(train_model *m, float *d_embeds);
vlmc_status tm_vision_forward(train_model *m, const float *pixels, vlmc_error *err);
/* from the gradient of the spliced rows in a->dimg */
vlmc_status tm_vision_backward(train_model *m, vlmc_error *err);

#endif
