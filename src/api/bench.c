/* `vlmc bench`: image-encode seconds per tile, prompt-processing and generation tokens/s, peak RSS,
 * next to the machine's bandwidth (copy kernel) and f32 FMA peak measured in the same run, so that
 * each figure can be read as a fraction of its bound:
 *   generation: tokens/s over copy_GB/s / (decoder weight bytes per token)
 *   prefill / image encoding: achieved GFLOPS (2 per weight per token + attention) over the FMA peak.
 * Token ids are random (no tokenizer needed), the image random pixels of one tile. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <omp.h>

#include "vlmc.h"
#include "core/rng.h"
#include "kernels/roofline.h"
#include "models/vlm.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Bytes of the decoder weights one generated token reads: every layer matrix and the LM head. */
static double decoder_weight_bytes(const llama_model *m) {
    double b = (double)tensor_nbytes(&m->lm_head) + (double)tensor_nbytes(&m->final_norm);
    for (int l = 0; l < m->n_layers; l++) {
        const llama_layer *L = &m->layers[l];
        const tensor *ts[] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->wo, &L->ffn_norm, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) b += (double)tensor_nbytes(ts[i]);
    }
    return b;
}

/* Flops of a prefill of T tokens: 2 per layer weight per token, attention's two products over the
 * causal half of the keys, the LM head for the last token only. */
static double prefill_flops(const llama_model *m, int T) {
    const double D = m->dim, QD = (double)m->n_heads * m->head_dim, KD = (double)m->n_kv_heads * m->head_dim,
                 I = m->ffn_dim;
    const double per_layer = 2.0 * T * (D * QD + 2 * D * KD + QD * D + 3 * D * I) + 2.0 * 2.0 * QD * T * (T + 1) / 2.0;
    return m->n_layers * per_layer + 2.0 * D * m->vocab;
}

/* Flops of one tile through the tower (patch embedding, layers) and the projector. */
static double image_flops(const vlm_model *vm) {
    const hf_vision_config *v = &vm->cfg.vision;
    const double P = v->patch_size, Dv = v->hidden_size, I = v->intermediate_size, D = vm->cfg.text.hidden_size;
    const double n = (double)(v->image_size / v->patch_size) * (v->image_size / v->patch_size);
    double f = 2.0 * n * v->num_channels * P * P * Dv;
    f += v->num_hidden_layers * (2.0 * n * (4 * Dv * Dv + 2 * Dv * I) + 2.0 * 2.0 * n * n * Dv);
    if (!strcmp(vm->cfg.model_type, "idefics3")) f += 2.0 * n * Dv * D;
    else f += 2.0 * n * (Dv * D + D * D);
    return f;
}

static vlmc_status bench_image(const vlm_model *vm, int reps, double *seconds, vlmc_error *err) {
    const int S = vm->cfg.vision.image_size, C = vm->cfg.vision.num_channels;
    const int tiles[1] = {1};
    const int32_t sizes[2] = {S, S};
    float *pixels = malloc((size_t)C * S * S * sizeof *pixels), *features = NULL;
    if (!pixels) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    rng r;
    rng_seed(&r, 1);
    for (size_t i = 0; i < (size_t)C * S * S; i++) pixels[i] = (float)(2.0 * rng_uniform(&r) - 1.0);
    vlm_images im = {.n_images = 1, .pixels = pixels, .n_tiles = 1, .height = S, .width = S, .tiles = tiles,
                     .image_sizes = sizes};
    size_t nf = 0;
    vlmc_status s = vm->fam->features_len(vm, &im, &nf, err);
    if (!s && !(features = malloc((nf ? nf : 1) * (size_t)vm->cfg.text.hidden_size * sizeof *features)))
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    *seconds = INFINITY;
    for (int i = 0; i < reps && !s; i++) {
        vlm_vision_out out = {.features = features};
        double t0 = now();
        s = vm->fam->encode(vm, &im, &out, err);
        double dt = now() - t0;
        if (dt < *seconds) *seconds = dt;
    }
    free(pixels);
    free(features);
    return s;
}

static vlmc_status bench_decoder(const llama_model *m, int n_prompt, int n_gen, int reps, double *prompt_s,
                                 double *gen_s, vlmc_error *err) {
    llama_ctx c;
    vlmc_status s = llama_ctx_init(&c, m, 1, n_prompt + n_gen + 1, n_prompt, err);
    if (s) return s;
    int32_t *ids = malloc((size_t)n_prompt * sizeof *ids);
    float *logits = malloc((size_t)m->vocab * sizeof *logits);
    if (!ids || !logits) s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    rng r;
    rng_seed(&r, 2);
    for (int i = 0; !s && i < n_prompt; i++) ids[i] = (int32_t)rng_below(&r, (uint32_t)m->vocab);
    *prompt_s = *gen_s = INFINITY;
    const llama_output out = {.logits = logits, .logits_last_only = true};
    for (int rep = 0; rep < reps && !s; rep++) {
        llama_ctx_reset(&c);
        double t0 = now();
        s = llama_forward(&c, &(llama_input){.n_tokens = n_prompt, .tokens = ids}, &out, err);
        double t1 = now();
        for (int i = 0; i < n_gen && !s; i++) {
            int32_t next = 0; /* greedy, as generation would */
            for (int v = 1; v < m->vocab; v++) next = logits[v] > logits[next] ? v : next;
            s = llama_forward(&c, &(llama_input){.n_tokens = 1, .tokens = &next}, &out, err);
        }
        double t2 = now();
        if (t1 - t0 < *prompt_s) *prompt_s = t1 - t0;
        if (t2 - t1 < *gen_s) *gen_s = t2 - t1;
    }
    free(ids);
    free(logits);
    llama_ctx_free(&c);
    return s;
}

vlmc_status vlmc_bench(const char *model_dir, const vlmc_bench_params *p, vlmc_bench_result *r, vlmc_error *err) {
    memset(r, 0, sizeof *r);
    const int n_prompt = p && p->n_prompt > 0 ? p->n_prompt : 512, n_gen = p && p->n_gen > 0 ? p->n_gen : 128;
    const int reps = p && p->reps > 0 ? p->reps : 1;
    if (p && p->n_threads > 0) omp_set_num_threads(p->n_threads);
    r->n_threads = omp_get_max_threads();
    vlm_model vm;
    vlmc_status s = vlm_load(model_dir, &vm, err);
    if (s) return s;
    const int max_pos = vm.lm.cfg.max_position_embeddings;
    if (max_pos > 0 && n_prompt + n_gen + 1 > max_pos) {
        vlm_free(&vm);
        return vlmc_fail(err, VLMC_ERR_ARG, "%s: %d prompt + %d generated tokens exceed max_position_embeddings %d",
                         model_dir, n_prompt, n_gen, max_pos);
    }
    if (vm.has_vision && vm.fam->encode) {
        s = bench_image(&vm, reps, &r->image_encode_s, err);
        if (!s) r->image_gflops = image_flops(&vm) / r->image_encode_s / 1e9;
    }
    double prompt_s = 0, gen_s = 0;
    if (!s) s = bench_decoder(&vm.lm, n_prompt, n_gen, reps, &prompt_s, &gen_s, err);
    if (!s) {
        r->prompt_tokens_per_s = n_prompt / prompt_s;
        r->gen_tokens_per_s = n_gen / gen_s;
        r->prompt_gflops = prefill_flops(&vm.lm, n_prompt) / prompt_s / 1e9;
        r->weight_bytes_per_token = decoder_weight_bytes(&vm.lm);
        /* the model's peak, before the bandwidth test's buffers */
        struct rusage ru;
        if (getrusage(RUSAGE_SELF, &ru) == 0) r->peak_rss_bytes = (int64_t)ru.ru_maxrss * 1024;
        r->copy_gb_per_s = roofline_copy_gbps((size_t)256 << 20, 5);
        r->fma_gflops = roofline_fma_gflops(0.5);
        r->gen_bound_tokens_per_s = r->copy_gb_per_s * 1e9 / r->weight_bytes_per_token;
    }
    vlm_free(&vm);
    return s;
}

char *vlmc_bench_json(const vlmc_bench_result *r) {
    char *out = malloc(1024);
    if (!out) return NULL;
    const double fma = r->fma_gflops > 0 ? r->fma_gflops : 1, bound = r->gen_bound_tokens_per_s > 0 ? r->gen_bound_tokens_per_s : 1;
    snprintf(out, 1024,
             "{\"image_encode_s\": %.6g, \"prompt_tokens_per_s\": %.6g, \"gen_tokens_per_s\": %.6g, \"peak_rss_bytes\": %lld, "
             "\"threads\": %d, \"copy_gb_per_s\": %.6g, \"fma_gflops\": %.6g, \"weight_bytes_per_token\": %.6g, "
             "\"gen_bound_tokens_per_s\": %.6g, \"gen_fraction_of_bound\": %.4f, \"prompt_gflops\": %.6g, "
             "\"prompt_fraction_of_peak\": %.4f, \"image_gflops\": %.6g, \"image_fraction_of_peak\": %.4f}",
             r->image_encode_s, r->prompt_tokens_per_s, r->gen_tokens_per_s, (long long)r->peak_rss_bytes, r->n_threads,
             r->copy_gb_per_s, r->fma_gflops, r->weight_bytes_per_token, r->gen_bound_tokens_per_s,
             r->gen_tokens_per_s / bound, r->prompt_gflops, r->prompt_gflops / fma, r->image_gflops, r->image_gflops / fma);
    return out;
}
