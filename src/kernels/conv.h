/* Convolution and resampling of f32 feature maps, as PyTorch computes them on the CPU:
 *   im2col_nhwc             the unfolded input of torch.nn.Conv2d (zero padding, square kernel and stride), so that
 *                           the convolution is one GEMM against the weight [OC, C·K·K] (vision_linear)
 *   interp_bilinear_nhwc    F.interpolate(mode="bilinear", align_corners=False, antialias=False) to a given size
 *   resize_bilinear_aa_nchw F.interpolate(mode="bilinear", antialias=True) (torchvision Resize on a tensor):
 *                           the separable triangle filter stretched by the downscale factor, width pass first
 * Layouts: NHWC = [H, W, C] rows of channels; NCHW = [C, H, W] planes. */
#ifndef VLMC_KERNELS_CONV_H
#define VLMC_KERNELS_CONV_H

#include <stddef.h>

/* Output side of a K-wide kernel with this stride and padding over n inputs. */
static inline int conv_out_size(int n, int k, int stride, int pad) { return (n + 2 * pad - k) / stride + 1; }

/* col[(oy·OW + ox), c·K·K + ky·K + kx] = in[oy·stride - pad + ky, ox·stride - pad + kx, c] (0 outside), for the
 * OH × OW output positions (conv_out_size). col holds OH·OW·C·K·K floats. OpenMP over output rows. */
void im2col_nhwc(float *col, const float *in, int H, int W, int C, int K, int stride, int pad);

/* out [OH, OW, C] from in [H, W, C]: source coordinate (dst + 0.5)·(in/out) - 0.5 (clamped at 0), the two nearest
 * rows and columns weighted linearly, as upsample_bilinear2d with align_corners=False. */
void interp_bilinear_nhwc(float *out, int OH, int OW, const float *in, int H, int W, int C);

/* out [C, OH, OW] from in [C, H, W]: upsample_bilinear2d_aa. tmp holds C·H·OW floats (the width pass).
 * Returns -1 (nothing written) when a side shrinks more than AA_MAX_SCALE times, else 0. */
enum { AA_MAX_SCALE = 64, AA_MAX_TAPS = 2 * AA_MAX_SCALE + 4 };
int resize_bilinear_aa_nchw(float *out, int OH, int OW, const float *in, int C, int H, int W, float *tmp);

#endif
