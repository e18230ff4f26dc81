/* GGUF's block-quantized weight formats, byte for byte as llama.cpp's ggml-common.h
 * lays them out (all little-endian, `half` = IEEE f16), with their dequantization as
 * ggml-quants.c defines it and a quantizer for each (f32 -> blocks).
 *
 *   Q8_0  32 values in 34 bytes: half d; int8 qs[32].               x = d * qs[i]
 *   Q4_0  32 values in 18 bytes: half d; u8 qs[16].   x[i] = d * ((qs[i] & 15) - 8),
 *         x[i + 16] = d * ((qs[i] >> 4) - 8)                         (i < 16)
 *   Q4_K 256 values in 144 bytes: half d, dmin; u8 scales[12]; u8 qs[128]. Eight
 *         sub-blocks of 32 with a 6-bit scale sc_j and a 6-bit min m_j packed in
 *         scales[12] (see quant_q4k_scale_min); 64 values per 32 bytes of qs: the low
 *         nibbles are sub-block 2c, the high nibbles sub-block 2c+1:
 *         x = d*sc_j * q - dmin*m_j.
 *   Q6_K 256 values in 210 bytes: u8 ql[128] (low 4 bits); u8 qh[64] (high 2 bits);
 *         int8 scales[16] (one per 16 values); half d. Per half of 128 values
 *         (ql += 64, qh += 32, scales += 8), for l < 32 with is = l / 16:
 *         x[l]      = d*sc[is]   * ((ql[l] & 15 | (qh[l] >> 0 & 3) << 4) - 32)
 *         x[l + 32] = d*sc[is+2] * ((ql[l+32] & 15 | (qh[l] >> 2 & 3) << 4) - 32)
 *         x[l + 64] = d*sc[is+4] * ((ql[l] >> 4 | (qh[l] >> 4 & 3) << 4) - 32)
 *         x[l + 96] = d*sc[is+6] * ((ql[l+32] >> 4 | (qh[l] >> 6 & 3) << 4) - 32)
 *
 * The Q8_0 and Q4_0 quantizers are llama.cpp's reference ones (quantize_row_*_ref).
 * The K-quant quantizers are simpler than llama.cpp's (no iterative scale search): they
 * round each sub-block's scale up so that no value is clamped, which gives the error
 * bounds stated at quantize_row (tests/test_quant.c checks them). Files they write are
 * valid for llama.cpp, which only defines the dequantization. */
#ifndef VLMC_CORE_QUANT_H
#define VLMC_CORE_QUANT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/tensor.h"

enum { QK8_0 = 32, QK4_0 = 32, QK_K = 256 };

typedef struct block_q8_0 {
    uint16_t d;
    int8_t qs[QK8_0];
} block_q8_0;

typedef struct block_q4_0 {
    uint16_t d;
    uint8_t qs[QK4_0 / 2];
} block_q4_0;

typedef struct block_q4_k {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qs[QK_K / 2];
} block_q4_k;

typedef struct block_q6_k {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    uint16_t d;
} block_q6_k;

_Static_assert(sizeof(block_q8_0) == 34, "Q8_0 block is 34 bytes");
_Static_assert(sizeof(block_q4_0) == 18, "Q4_0 block is 18 bytes");
_Static_assert(sizeof(block_q4_k) == 144, "Q4_K block is 144 bytes");
_Static_assert(sizeof(block_q6_k) == 210, "Q6_K block is 210 bytes");

/* True for the four block types above. */
bool dtype_is_quantized(dtype t);

/* Scale and min (6 bits each) of sub-block j < 8 of a Q4_K block (ggml's get_scale_min_k4). */
static inline void quant_q4k_scale_min(const uint8_t *scales, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = scales[j] & 63;
        *m = scales[j + 4] & 63;
    } else {
        *sc = (scales[j + 4] & 15) | ((scales[j - 4] >> 6) << 4);
        *m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
    }
}

/* n values (a multiple of the type's block size) of x into blocks at dst.
 * Bounds on |x - dequantize(quantize(x))| per value (h = f16 rounding, ~2^-11):
 *   Q8_0: amax/127 * (0.5 + 127 h)       (amax: max |x| of its block of 32)
 *   Q4_0: amax/8 * (1 + 8 h)             (the side opposite the max reaches only 7 steps)
 *   Q4_K: (range_j/15 + d)/2 + dmin/2    range_j = max(x,0) - min(x,0) of its sub-block of 32,
 *                                        d ~ max_j range_j / (15*62), dmin ~ max_j -min_j / 63
 *   Q6_K: (amax_j/31 + d)/2              amax_j of its sub-block of 16, d ~ max_j amax_j / (31*126) */
void quantize_row(dtype t, const float *x, void *dst, int64_t n);
/* n values from blocks at src into f32. */
void dequantize_row(dtype t, const void *src, float *dst, int64_t n);

#endif
