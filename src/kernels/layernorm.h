/* LayerNorm (torch.nn.LayerNorm over the last dimension), f32. */
#ifndef VLMC_KERNELS_LAYERNORM_H
#define VLMC_KERNELS_LAYERNORM_H

#include <stddef.h>

/* out[n, :] = (inp[n, :] - mean) / sqrt(var + eps) * weight + bias for each of the N rows of C values;
 * var is the biased variance, as PyTorch computes it. weight may be NULL (= ones), bias may be NULL; out may equal inp.
 * Rows are split over OpenMP threads; mean and variance accumulate in double. */
void layernorm_forward(float *out, const float *inp, const float *weight, const float *bias, size_t N, size_t C,
                       float eps);

/* The training pair (llm.c's argument order): the forward also keeps each row's mean and 1/std (mean, rstd may be NULL),
 * the backward accumulates (+=) into dinp, dweight and dbias (each may be NULL = not wanted). */
void layernorm_forward_train(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                             const float *bias, size_t N, size_t C, float eps);
void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *weight, const float *mean, const float *rstd, size_t N, size_t C);

#endif
