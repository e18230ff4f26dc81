#include "core/tensor.h"

#include "core/quant.h"

#include <string.h>

static const struct {
    const char *name;
    int block_size;
    size_t block_bytes;
} dtype_info[DT_COUNT] = {
    [DT_F32] = {"F32", 1, 4},     [DT_F16] = {"F16", 1, 2},   [DT_BF16] = {"BF16", 1, 2},
    [DT_I32] = {"I32", 1, 4},     [DT_I64] = {"I64", 1, 8},   [DT_U8] = {"U8", 1, 1},
    [DT_I8] = {"I8", 1, 1},       [DT_F64] = {"F64", 1, 8},   [DT_BOOL] = {"BOOL", 1, 1},
    [DT_I16] = {"I16", 1, 2},     [DT_U16] = {"U16", 1, 2},   [DT_U32] = {"U32", 1, 4},
    [DT_U64] = {"U64", 1, 8},     [DT_F8_E4M3] = {"F8_E4M3", 1, 1}, [DT_F8_E5M2] = {"F8_E5M2", 1, 1},
    /* ggml's layouts: Q8_0 = f16 scale + 32 int8; Q4_0 = f16 scale + 16 bytes of nibbles;
     * Q4_K = 256-element super-block of 144 bytes; Q6_K = 256 elements in 210 bytes. */
    [DT_Q8_0] = {"Q8_0", 32, 34}, [DT_Q4_0] = {"Q4_0", 32, 18}, [DT_Q4_K] = {"Q4_K", 256, 144},
    [DT_Q6_K] = {"Q6_K", 256, 210},
};

const char *dtype_name(dtype t) { return (t >= 0 && t < DT_COUNT) ? dtype_info[t].name : "?"; }
int dtype_block_size(dtype t) { return (t >= 0 && t < DT_COUNT) ? dtype_info[t].block_size : 0; }
size_t dtype_block_bytes(dtype t) { return (t >= 0 && t < DT_COUNT) ? dtype_info[t].block_bytes : 0; }

int64_t tensor_numel(const tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

int64_t tensor_rows(const tensor *t) {
    int64_t n = 1;
    for (int i = 0; i + 1 < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t tensor_nbytes(const tensor *t) {
    int bs = dtype_block_size(t->type);
    size_t bb = dtype_block_bytes(t->type);
    if (bs <= 0) return (size_t)-1;
    int64_t row = t->ndim > 0 ? t->shape[t->ndim - 1] : 1;
    if (row < 0 || row % bs != 0) return (size_t)-1;
    uint64_t total = (uint64_t)(row / bs) * bb;
    for (int i = 0; i + 1 < t->ndim; i++) {
        if (t->shape[i] < 0 || __builtin_mul_overflow(total, (uint64_t)t->shape[i], &total)) return (size_t)-1;
    }
    if (total > SIZE_MAX / 2) return (size_t)-1;
    return (size_t)total;
}

tensor tensor_view(dtype type, void *data, int ndim, const int64_t *shape) {
    tensor t;
    memset(&t, 0, sizeof t);
    t.type = type;
    t.ndim = ndim;
    for (int i = 0; i < ndim && i < TENSOR_MAX_DIMS; i++) t.shape[i] = shape[i];
    t.data = data;
    return t;
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    union { uint32_t u; float f; } v;
    if (exp == 0) {
        if (mant == 0) {
            v.u = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do { e++; mant <<= 1; } while (!(mant & 0x400));
            v.u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        v.u = sign | 0x7f800000u | (mant << 13);
    } else {
        v.u = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    return v.f;
}

uint16_t f32_to_f16(float f) {
    union { uint32_t u; float f; } v;
    v.f = f;
    uint32_t sign = (v.u >> 16) & 0x8000;
    uint32_t a = v.u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00); /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* overflow (after rounding) -> inf */
    if (a < 0x38800000u) { /* subnormal or zero in f16: round to nearest even */
        if (a < 0x33000000u) return (uint16_t)sign;
        uint32_t e = a >> 23, m = (a & 0x7fffff) | 0x800000;
        int shift = (int)(126 - e); /* f16 subnormals count units of 2^-24 */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1); /* round to nearest even at bit 13 */
    return (uint16_t)(sign | (((r >> 23) - 112) << 10) | ((r >> 13) & 0x3ff));
}

vlmc_status convert_to_f32(float *dst, const void *src, dtype type, size_t n, vlmc_error *err) {
    switch (type) {
    case DT_F32: memcpy(dst, src, n * 4); return VLMC_OK;
    case DT_F16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32(s[i]);
        return VLMC_OK;
    }
    case DT_BF16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32(s[i]);
        return VLMC_OK;
    }
    case DT_F64: {
        const double *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
        return VLMC_OK;
    }
    case DT_I32: {
        const int32_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
        return VLMC_OK;
    }
    case DT_I64: {
        const int64_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
        return VLMC_OK;
    }
    case DT_U8: case DT_BOOL: {
        const uint8_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
        return VLMC_OK;
    }
    case DT_I8: {
        const int8_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
        return VLMC_OK;
    }
    case DT_Q8_0: case DT_Q4_0: case DT_Q4_K: case DT_Q6_K:
        if (n % (size_t)dtype_block_size(type))
            return vlmc_fail(err, VLMC_ERR_ARG, "%zu values are not a whole number of %s blocks", n, dtype_name(type));
        dequantize_row(type, src, dst, (int64_t)n);
        return VLMC_OK;
    default:
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "conversion of %s to F32 is not implemented", dtype_name(type));
    }
}

vlmc_status tensor_row_to_f32(float *dst, const tensor *t, int64_t row, vlmc_error *err) {
    if (t->ndim != 2 || row < 0 || row >= t->shape[0])
        return vlmc_fail(err, VLMC_ERR_ARG, "row %lld out of range", (long long)row);
    size_t n = (size_t)t->shape[1];
    size_t bs = (size_t)dtype_block_size(t->type);
    if (bs == 0 || n % bs)
        return vlmc_fail(err, VLMC_ERR_ARG, "row of %zu values is not a whole number of %s blocks", n, dtype_name(t->type));
    size_t row_bytes = n / bs * dtype_block_bytes(t->type);
    return convert_to_f32(dst, (const char *)t->data + (size_t)row * row_bytes, t->type, n, err);
}
