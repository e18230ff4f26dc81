/* The activations of transformers' ACT2FN that vision towers and projectors use, f32.
 * Named after their config strings (hidden_act, projector_hidden_act):
 *   "gelu"                          x * 0.5 * (1 + erf(x / sqrt 2))            (GELUActivation)
 *   "gelu_pytorch_tanh", "gelu_new" 0.5x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
 *   "gelu_fast"                     0.5x (1 + tanh(0.7978845608 x (1 + 0.044715 x^2)))
 *   "quick_gelu"                    x * sigmoid(1.702 x)                        (CLIP)
 *   "relu", "relu2" (ReLUSquaredActivation: relu(x)^2, Persimmon), "silu" / "swish". */
#ifndef VLMC_KERNELS_GELU_H
#define VLMC_KERNELS_GELU_H

#include <stddef.h>

#include "core/error.h"

typedef enum act_kind { ACT_GELU = 0, ACT_GELU_TANH, ACT_GELU_FAST, ACT_QUICK_GELU, ACT_RELU, ACT_SILU, ACT_RELU2 } act_kind;

/* Maps a config string to an activation; an unknown name is an error naming `where` (the config file). */
vlmc_status act_from_name(const char *name, const char *where, act_kind *out, vlmc_error *err);
const char *act_name(act_kind a);

/* out[i] = act(inp[i]) for N values (out may equal inp); OpenMP over elements. */
void gelu_forward(float *out, const float *inp, size_t N);
void gelu_tanh_forward(float *out, const float *inp, size_t N);
void quick_gelu_forward(float *out, const float *inp, size_t N);
void act_forward(act_kind a, float *out, const float *inp, size_t N);

/* Gated MLP: gate[i] = act(gate[i]) * up[i] (GeGLU with gelu_pytorch_tanh for Gemma). */
void act_mul_forward(act_kind a, float *gate, const float *up, size_t N);

/* Backward of act_forward: dinp[i] = dout[i] * act'(inp[i]) (overwrites; dinp may equal dout). */
void act_backward(act_kind a, float *dinp, const float *dout, const float *inp, size_t N);

#endif
