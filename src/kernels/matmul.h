/* Matrix products against weights stored as torch Linear does: W is [N, K]
 * (out_features x in_features), row-major, dtype f32, f16, bf16 or a GGUF block type
 * (Q8_0, Q4_0, Q4_K, Q6_K: see core/quant.h), read in place
 * (usually a view into a mmapped safetensors file). Activations are f32.
 *
 *   Y[M, N] = X[M, K] . W^T (+ bias[N])
 *
 * Small M (decoding: one token per sequence) goes through a threaded (OpenMP)
 * matrix-vector kernel that reads the weight rows directly (AVX2+FMA+F16C when
 * the CPU has them, a portable loop otherwise); with block-quantized weights the
 * inputs are first quantized to int8 blocks in the scratch (kernels/qdot.h).
 * Larger M goes through OpenBLAS sgemm; f16/bf16/quantized weights are converted
 * tile by tile into the caller's scratch. */
#ifndef VLMC_KERNELS_MATMUL_H
#define VLMC_KERNELS_MATMUL_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

/* Up to this many rows of X use the matrix-vector kernel (weights streamed once). */
enum { MATMUL_GEMV_MAX_M = 8 };

/* Floats of scratch that matmul_f32 wants for a weight of K columns: a tile of
 * rows converted to f32 (0 needed for f32 weights, but any size works). */
size_t matmul_scratch_floats(int64_t K);

/* True when W's dtype is one the kernels accept (f32, f16, bf16, Q8_0, Q4_0, Q4_K, Q6_K). */
int matmul_dtype_ok(dtype t);

/* Y[M,N] = X[M,K] . W^T + bias. W: [N,K] tensor; bias: NULL or a 1-D [N] float tensor.
 * scratch: scratch_n floats (see matmul_scratch_floats) used for f16/bf16 tiles; if
 * scratch_n < K the f16/bf16 sgemm path falls back to the matrix-vector kernel.
 * Shapes are checked by the caller (at load time); this does not fail. */
void matmul_f32(float *Y, const float *X, int64_t M, const tensor *W, const tensor *bias, float *scratch,
                size_t scratch_n);

/* Several products of the same X: Y[i] = X . W[i]^T + bias[i] for i < n (n <= 4). With small
 * M the rows of all weights share one parallel loop (one fork/join instead of n). */
void matmul_f32_group(int n, float *const *Y, const float *X, int64_t M, const tensor *const *W,
                      const tensor *const *bias, float *scratch, size_t scratch_n);

/* The portable (no SIMD) matrix-vector path, whatever the CPU: for tests. */
void matmul_f32_portable(float *Y, const float *X, int64_t M, const tensor *W, const tensor *bias);

/* Dot product of n floats (vectorized when the CPU allows). */
float dot_f32(const float *a, const float *b, int64_t n);
/* y[i] += a * x[i] */
void axpy_f32(float *y, float a, const float *x, int64_t n);

/* Element i of a 1-D or flattened float tensor as f32 (norm weights, biases). */
static inline float tensor_get_f32(const tensor *t, int64_t i) {
    switch (t->type) {
    case DT_F32: return ((const float *)t->data)[i];
    case DT_BF16: return bf16_to_f32(((const uint16_t *)t->data)[i]);
    case DT_F16: return f16_to_f32(((const uint16_t *)t->data)[i]);
    default: return 0.0f;
    }
}

#endif
