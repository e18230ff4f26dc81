/* Forward / backward pairs of the training graph, f32, llm.c style: one pair per layer with the same
 * argument order, dimensions last. R = rows (B·T tokens), C = input features, OC = output features,
 * B = batch, T = tokens per sequence, H / KVH = query / key-value heads of hd values.
 * Backward functions ACCUMULATE (+=) into parameter gradients (so that gradient accumulation is a
 * matter of not zeroing), and into input gradients unless said otherwise; a NULL gradient pointer means
 * "not wanted" (a frozen parameter) and skips that work. Loops split over OpenMP threads so that every
 * output element is summed by one thread in a fixed order: results do not depend on the thread count
 * except through OpenBLAS's sgemm. */
#ifndef VLMC_KERNELS_TRAIN_OPS_H
#define VLMC_KERNELS_TRAIN_OPS_H

#include <stddef.h>
#include <stdint.h>

/* out[R, OC] = inp[R, C] · weight[OC, C]^T (+ bias[OC]) */
void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int64_t R, int64_t C,
                    int64_t OC);
/* dinp[R, C] += dout · weight;  dweight[OC, C] += dout^T · inp;  dbias[OC] += Σ_rows dout. */
void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int64_t R, int64_t C, int64_t OC);

/* out[r] = inp[r] · rstd[r] · weight, rstd[r] = 1 / sqrt(mean(inp[r]²) + eps) (LlamaRMSNorm) */
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int64_t R, int64_t C, float eps);
void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                      const float *rstd, int64_t R, int64_t C);

/* Rotary embedding (rotate_half layout) of x[R, n_heads·hd] in place, and its backward (the inverse
 * rotation of the gradient, in place). cos_t / sin_t: [R, rot/2]. */
void rope_forward(float *x, const float *cos_t, const float *sin_t, int64_t R, int n_heads, int hd, int rot);
void rope_backward(float *dx, const float *cos_t, const float *sin_t, int64_t R, int n_heads, int hd, int rot);

/* out = silu(gate) · up;  backward overwrites dgate and dup. */
void swiglu_forward(float *out, const float *gate, const float *up, int64_t N);
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t N);

/* Multi-head attention of T tokens per sequence, q [B, T, H·hd], k, v [B, T, KVH·hd] (GQA: query head h
 * reads kv head h / (H / KVH)), out [B, T, H·hd], probs [B, H, T, T] kept for the backward.
 * causal: query t sees keys j <= t. key_mask [B, T] (NULL = all visible): 0 = padding, never seen.
 * A query that sees no key gets zeros (its output cannot reach a loss: under a causal mask it is
 * never a key of anyone either). */
void attention_forward(float *out, float *probs, const float *q, const float *k, const float *v,
                       const int32_t *key_mask, int causal, int B, int T, int H, int KVH, int hd, float scale);
/* Overwrites dq, dk, dv. */
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *probs, const float *q,
                        const float *k, const float *v, int B, int T, int H, int KVH, int hd, float scale);

/* out[r] = wte[ids[r]]; backward: dwte[ids[r]] += dout[r] for rows with skip[r] == 0 (skip may be NULL). */
void embedding_forward(float *out, const int32_t *ids, const float *wte, int64_t R, int64_t C);
void embedding_backward(float *dwte, const float *dout, const int32_t *ids, const uint8_t *skip, int64_t R,
                        int64_t C, int64_t V);

/* HF's causal-LM loss: logits [B, T, V] at t predict labels[b, t+1]; labels -100 are ignored.
 * Returns the SUM of -log softmax over the targets (double) and their count in *n_targets. */
double cross_entropy_forward(const float *logits, const int32_t *labels, int B, int T, int64_t V,
                             int64_t *n_targets);
/* dlogits (may alias logits) = scale · (softmax(logits) - onehot(target)) for every row with a target,
 * 0 elsewhere (rows without target and the last position). scale = dloss / n_targets for the mean. */
void cross_entropy_backward(float *dlogits, const float *logits, const int32_t *labels, int B, int T, int64_t V,
                            float scale);

#endif
