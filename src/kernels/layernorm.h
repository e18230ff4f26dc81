/* LayerNorm (torch.nn.LayerNorm over the last dimension), f32. */
#ifndef VLMC_KERNELS_LAYERNORM_H
#define VLMC_KERNELS_LAYERNORM_H

#include <stddef.h>

/* out[n, :] = (inp[n, :] - mean) / sqrt(var + eps) * weight + bias for each of the N rows of C values;
 * var is the biased variance, as PyTorch computes it. bias may be NULL; out may equal inp.
 * Rows are split over OpenMP threads; mean and variance accumulate in double. */
void layernorm_forward(float *out, const float *inp, const float *weight, const float *bias, size_t N, size_t C,
                       float eps);

#endif
