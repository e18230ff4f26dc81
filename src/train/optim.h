/* Optimisation: AdamW as torch.optim.AdamW computes it (decoupled weight decay,
 * bias correction), gradient clipping by global norm as
 * torch.nn.utils.clip_grad_norm_, and the learning-rate schedules of
 * transformers' get_scheduler (linear warmup, then linear / cosine / constant). */
#ifndef VLMC_TRAIN_OPTIM_H
#define VLMC_TRAIN_OPTIM_H

#include <stddef.h>
#include <stdint.h>

typedef struct adamw_params {
    float lr;
    float beta1, beta2; /* transformers' defaults: 0.9, 0.999 */
    float eps;          /* 1e-8 */
    float weight_decay; /* 0.0 in TrainingArguments, 0.01 in torch's AdamW */
} adamw_params;

adamw_params adamw_default_params(void);

/* One AdamW update of n parameters. m and v are the moment buffers (zero at the
 * start); step counts from 1. lr is passed separately so that schedules can
 * change it. Single-tensor torch semantics, in float32. */
void adamw_update(float *param, const float *grad, float *m, float *v, size_t n, int64_t step, float lr,
                  const adamw_params *p);

/* The global L2 norm of a set of gradient buffers. */
double grad_global_norm(float *const *grads, const size_t *sizes, size_t n_bufs);
/* Scales the gradients so that their global norm is at most max_norm (torch's
 * rule: coef = max_norm / (norm + 1e-6), applied only when < 1). Returns the norm
 * before clipping. */
double grad_clip_global_norm(float *const *grads, const size_t *sizes, size_t n_bufs, double max_norm);

typedef enum lr_schedule { LR_CONSTANT = 0, LR_LINEAR, LR_COSINE } lr_schedule;

/* The multiplier of the base learning rate at optimizer step `step` (0-based, the
 * number of steps already taken), as transformers' schedulers compute it. */
double lr_schedule_factor(lr_schedule kind, int64_t step, int64_t warmup_steps, int64_t total_steps);

#endif
