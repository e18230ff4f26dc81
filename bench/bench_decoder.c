/* Decoder speed: prefill tokens/s and decode tokens/s for a random-weight Llama of
 * TinyLlama-1.1B shape (hidden 2048, 22 layers, 32 heads, 4 KV heads, MLP 5632,
 * vocab 32000), weights f32 and bf16 built in memory. Not a test.
 *   make bench-decoder [BENCH_ARGS="threads prompt_len n_decode layers"]     */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/llama.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static tensor rand_tensor(dtype t, int64_t d0, int64_t d1, float scale, float offset, uint32_t seed) {
    int64_t shape[2] = {d0, d1};
    size_t n = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    void *p = malloc(n * (t == DT_F32 ? 4 : 2));
    if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        uint32_t x = (uint32_t)i * 2654435761u ^ seed;
        x ^= x >> 15; x *= 2246822519u; x ^= x >> 13;
        float v = offset + scale * ((x >> 8) / 16777216.0f * 2.0f - 1.0f);
        if (t == DT_F32) ((float *)p)[i] = v;
        else ((uint16_t *)p)[i] = f32_to_bf16(v);
    }
    return tensor_view(t, p, d1 ? 2 : 1, shape);
}

static void build(llama_model *m, dtype t, int layers) {
    memset(m, 0, sizeof *m);
    hf_text_config *c = &m->cfg;
    strcpy(c->model_type, "llama");
    strcpy(c->hidden_act, "silu");
    c->vocab_size = 32000; c->hidden_size = 2048; c->intermediate_size = 5632; c->num_hidden_layers = layers;
    c->num_attention_heads = 32; c->num_key_value_heads = 4; c->head_dim = 64; c->max_position_embeddings = 2048;
    c->rms_norm_eps = 1e-5; c->rope_theta = 10000; c->partial_rotary_factor = 1.0;
    m->n_layers = layers; m->dim = 2048; m->n_heads = 32; m->n_kv_heads = 4; m->head_dim = 64; m->rot_dim = 64;
    m->ffn_dim = 5632; m->vocab = 32000; m->eps = 1e-5f;
    const float s = 0.02f;
    m->tok_emb = rand_tensor(t, 32000, 2048, 1.0f, 0, 1);
    m->lm_head = rand_tensor(t, 32000, 2048, s, 0, 2);
    m->final_norm = rand_tensor(t, 2048, 0, 0.1f, 1.0f, 3);
    m->layers = calloc((size_t)layers, sizeof *m->layers);
    for (int l = 0; l < layers; l++) {
        llama_layer *L = &m->layers[l];
        uint32_t k = 100 + 20 * (uint32_t)l;
        L->attn_norm = rand_tensor(t, 2048, 0, 0.1f, 1.0f, k);
        L->ffn_norm = rand_tensor(t, 2048, 0, 0.1f, 1.0f, k + 1);
        L->wq = rand_tensor(t, 2048, 2048, s, 0, k + 2);
        L->wk = rand_tensor(t, 256, 2048, s, 0, k + 3);
        L->wv = rand_tensor(t, 256, 2048, s, 0, k + 4);
        L->wo = rand_tensor(t, 2048, 2048, s, 0, k + 5);
        L->w_gate = rand_tensor(t, 5632, 2048, s, 0, k + 6);
        L->w_up = rand_tensor(t, 5632, 2048, s, 0, k + 7);
        L->w_down = rand_tensor(t, 2048, 5632, s, 0, k + 8);
    }
}

static void destroy(llama_model *m) {
    free(m->tok_emb.data); free(m->lm_head.data); free(m->final_norm.data);
    for (int l = 0; l < m->n_layers; l++) {
        llama_layer *L = &m->layers[l];
        free(L->attn_norm.data); free(L->ffn_norm.data); free(L->wq.data); free(L->wk.data); free(L->wv.data);
        free(L->wo.data); free(L->w_gate.data); free(L->w_up.data); free(L->w_down.data);
    }
    llama_model_free(m);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2, T = argc > 2 ? atoi(argv[2]) : 128;
    int n_dec = argc > 3 ? atoi(argv[3]) : 32, layers = argc > 4 ? atoi(argv[4]) : 22;
    omp_set_num_threads(threads);
    printf("Llama %d layers, hidden 2048, 32 heads / 4 KV heads, MLP 5632, vocab 32000; %d threads; "
           "prompt %d tokens, %d decoded tokens\n", layers, threads, T, n_dec);
    dtype types[2] = {DT_F32, DT_BF16};
    for (int ti = 0; ti < 2; ti++) {
        llama_model m;
        build(&m, types[ti], layers);
        llama_ctx c;
        vlmc_error err = {0};
        if (llama_ctx_init(&c, &m, 1, T + n_dec + 1, 0, &err)) { fprintf(stderr, "%s\n", err.message); return 1; }
        int32_t *ids = malloc((size_t)T * sizeof(int32_t));
        for (int i = 0; i < T; i++) ids[i] = (i * 7919 + 13) % 32000;
        float *logits = malloc(32000 * sizeof(float));
        /* warm-up: touch every weight once */
        llama_forward(&c, &(llama_input){.n_tokens = 1, .tokens = ids}, &(llama_output){.logits = logits}, &err);
        llama_ctx_reset(&c);
        double c0 = cpu_now(), t0 = now();
        vlmc_status s = llama_forward(&c, &(llama_input){.n_tokens = T, .tokens = ids},
                                      &(llama_output){.logits = logits, .logits_last_only = true}, &err);
        double t1 = now(), c1 = cpu_now();
        for (int i = 0; !s && i < n_dec; i++) {
            int32_t next = (int32_t)((i * 31 + 5) % 32000);
            s = llama_forward(&c, &(llama_input){.n_tokens = 1, .tokens = &next},
                              &(llama_output){.logits = logits, .logits_last_only = true}, &err);
        }
        double t2 = now(), c2 = cpu_now();
        if (s) { fprintf(stderr, "%s\n", err.message); return 1; }
        /* cpu = CPU seconds used / wall seconds: below the thread count when other processes
         * share the cores (then the wall-clock figures understate the code's speed) */
        printf("%-5s prefill %7.1f tokens/s (%.2f s, cpu %.2f)   decode %6.2f tokens/s (%.1f ms/token, cpu %.2f)\n",
               types[ti] == DT_F32 ? "f32" : "bf16", T / (t1 - t0), t1 - t0, (c1 - c0) / (t1 - t0),
               n_dec / (t2 - t1), 1000 * (t2 - t1) / n_dec, (c2 - c1) / (t2 - t1));
        /* what the same CPU seconds would give with `threads` cores to ourselves (an
         * estimate: meaningful with OMP_WAIT_POLICY=passive, ignores memory-bandwidth sharing) */
        printf("      per CPU-second: prefill %.1f tokens, decode %.2f tokens (x%d threads if uncontended)\n",
               T / (c1 - c0), n_dec / (c2 - c1), threads);
        free(ids);
        free(logits);
        llama_ctx_free(&c);
        destroy(&m);
    }
    return 0;
}
