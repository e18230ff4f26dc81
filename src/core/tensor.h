/* Tensors: a dtype, up to 6 dimensions (outermost first, row-major / C order)
 * and a pointer to the elements. A tensor does not own its memory: it points
 * into an mmapped weight file (a zero-copy view), an arena, or a buffer its
 * creator frees. Block-quantized dtypes (GGUF's Q8_0, Q4_0, Q4_K, Q6_K) store
 * shape[ndim-1] elements per row in blocks; tensor_nbytes accounts for that. */
#ifndef VLMC_CORE_TENSOR_H
#define VLMC_CORE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef enum dtype {
    DT_F32 = 0,
    DT_F16,
    DT_BF16,
    DT_I32,
    DT_I64,
    DT_U8,
    DT_I8,
    DT_F64,
    DT_BOOL,
    DT_I16,
    DT_U16,
    DT_U32,
    DT_U64,
    DT_F8_E4M3,
    DT_F8_E5M2,
    /* llama.cpp block-quantized types: elements come in blocks of block_size */
    DT_Q8_0,
    DT_Q4_0,
    DT_Q4_K,
    DT_Q6_K,
    DT_COUNT
} dtype;

enum { TENSOR_MAX_DIMS = 6 }; /* 5-D for Conv3d patch embeddings (Qwen2-VL) */

typedef struct tensor {
    dtype type;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    void *data;
} tensor;

const char *dtype_name(dtype t);
/* Elements per block (1 for plain types) and bytes per block. */
int dtype_block_size(dtype t);
size_t dtype_block_bytes(dtype t);

int64_t tensor_numel(const tensor *t);
/* Bytes the elements occupy; (size_t)-1 when a row is not a whole number of blocks
 * or the size overflows. */
size_t tensor_nbytes(const tensor *t);
/* Number of rows = product of all but the last dimension. */
int64_t tensor_rows(const tensor *t);

tensor tensor_view(dtype type, void *data, int ndim, const int64_t *shape);

/* Conversions between storage types and f32. */
static inline float bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v;
    v.u = (uint32_t)h << 16;
    return v.f;
}
/* Round to nearest even, as PyTorch does; NaN stays NaN. */
static inline uint16_t f32_to_bf16(float f) {
    union { uint32_t u; float f; } v;
    v.f = f;
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40);
    uint32_t rounding = 0x7fffu + ((v.u >> 16) & 1u);
    return (uint16_t)((v.u + rounding) >> 16);
}
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

/* Converts n elements of a plain (non-quantized) float or int type to f32. */
vlmc_status convert_to_f32(float *dst, const void *src, dtype type, size_t n, vlmc_error *err);
/* Converts row `row` of a 2-D tensor of any float type to f32 (n = shape[1] values). */
vlmc_status tensor_row_to_f32(float *dst, const tensor *t, int64_t row, vlmc_error *err);

#endif
