/* Dot products of block-quantized weight rows (core/quant.h) with f32 activations, the way
 * llama.cpp does them: the activation row is quantized once to int8 blocks ("Q8" here:
 * f32 scale + 32 or 256 int8, and for the 256-blocks the sums of each 16), then each weight
 * row is one integer dot product per block, scaled in f32.
 *   Q8_0, Q4_0 weights  <- qact32 activations  (blocks of 32)
 *   Q4_K, Q6_K weights  <- qact256 activations (blocks of 256, with sums per 16 for the
 *                          K-quants' mins / the -32 offset of Q6_K)
 * Kernels: portable C, and AVX2 (maddubs/madd on 32 bytes); the choice is made at run time
 * (qdot_isa_best). Both compute the same integer sums, so they differ only by the order of
 * f32 additions (tests/test_quant.c). This machine's CPUs have no AVX-512, so no AVX-512 /
 * VNNI kernel is built: it could not be tested here. */
#ifndef VLMC_KERNELS_QDOT_H
#define VLMC_KERNELS_QDOT_H

#include <stddef.h>
#include <stdint.h>

#include "core/quant.h"

typedef enum qdot_isa { QDOT_PORTABLE = 0, QDOT_AVX2 = 1 } qdot_isa;

/* The best kernel set this CPU runs (AVX2+FMA+F16C, else portable). */
qdot_isa qdot_isa_best(void);

/* Bytes of one quantized activation row of k values for weights of type wt. */
size_t qdot_act_bytes(dtype wt, int64_t k);
/* Quantizes x[k] for dot products with rows of type wt (k a multiple of its block size).
 * Per value |x - x_q| <= amax/254 with amax the max |x| of its block (32 or 256). */
void qdot_quantize_act(dtype wt, const float *x, void *act, int64_t k);
/* dot(weight row of k values of type wt, quantized activation) */
float qdot_row(dtype wt, const void *wrow, const void *act, int64_t k, qdot_isa isa);

#endif
