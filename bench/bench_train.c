/* Benchmark (not a test): training throughput (forward + backward + AdamW, f32) of random Llama models
 * through the real load path (a model folder written to /tmp).
 *   tiny:  the llama fixture's shape (D 64, 2 layers, 4/2 heads, I 160, V 512), B 8 × T 64
 *   small: D 512, 8 layers, 8/8 heads, I 1408, V 8000 (~33 M parameters), B 4 × T 256
 * Usage: build/bench/bench_train [threads (default 2)] [steps (default 5)] */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/file.h"
#include "formats/safetensors.h"
#include "train/train_model.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int write_model(const char *dir, int V, int D, int L, int H, int KVH, int I) {
    vlmc_error e = {0};
    if (file_mkdirs(dir, &e)) return -1;
    const int hd = D / H;
    char cfg[1024], p[600];
    int n = snprintf(cfg, sizeof cfg,
                     "{\"model_type\": \"llama\", \"vocab_size\": %d, \"hidden_size\": %d, \"intermediate_size\": %d, "
                     "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d, "
                     "\"head_dim\": %d, \"max_position_embeddings\": 4096, \"tie_word_embeddings\": false}",
                     V, D, I, L, H, KVH, hd);
    snprintf(p, sizeof p, "%s/config.json", dir);
    if (file_write_all(p, cfg, (size_t)n, &e)) return -1;
    const int nt = 3 + 9 * L;
    char (*names)[96] = calloc((size_t)nt, sizeof *names);
    const char **np = calloc((size_t)nt, sizeof *np);
    tensor *ts = calloc((size_t)nt, sizeof *ts);
    float **bufs = calloc((size_t)nt, sizeof *bufs);
    int k = 0;
#define ADD(nm, a, b)                                                                   \
    do {                                                                                \
        snprintf(names[k], 96, "%s", nm);                                               \
        int64_t sh[2] = {a, b};                                                         \
        size_t c = (size_t)(a) * (size_t)((b) != 0 ? (b) : 1);                               \
        bufs[k] = malloc(c * sizeof(float));                                            \
        for (size_t j = 0; j < c; j++) bufs[k][j] = (b) != 0 ? 0.05f * frand() : 1.0f;       \
        ts[k] = tensor_view(DT_F32, bufs[k], (b) != 0 ? 2 : 1, sh);                          \
        np[k] = names[k];                                                               \
        k++;                                                                            \
    } while (0)
    ADD("model.embed_tokens.weight", V, D);
    ADD("model.norm.weight", D, 0);
    ADD("lm_head.weight", V, D);
    for (int l = 0; l < L; l++) {
        char s[96];
        snprintf(s, sizeof s, "model.layers.%d.input_layernorm.weight", l); ADD(s, D, 0);
        snprintf(s, sizeof s, "model.layers.%d.post_attention_layernorm.weight", l); ADD(s, D, 0);
        snprintf(s, sizeof s, "model.layers.%d.self_attn.q_proj.weight", l); ADD(s, H * hd, D);
        snprintf(s, sizeof s, "model.layers.%d.self_attn.k_proj.weight", l); ADD(s, KVH * hd, D);
        snprintf(s, sizeof s, "model.layers.%d.self_attn.v_proj.weight", l); ADD(s, KVH * hd, D);
        snprintf(s, sizeof s, "model.layers.%d.self_attn.o_proj.weight", l); ADD(s, D, H * hd);
        snprintf(s, sizeof s, "model.layers.%d.mlp.gate_proj.weight", l); ADD(s, I, D);
        snprintf(s, sizeof s, "model.layers.%d.mlp.up_proj.weight", l); ADD(s, I, D);
        snprintf(s, sizeof s, "model.layers.%d.mlp.down_proj.weight", l); ADD(s, D, I);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    int rc = safetensors_write(p, (size_t)k, np, ts, NULL, &e) ? -1 : 0;
    for (int i = 0; i < k; i++) free(bufs[i]);
    free(bufs), free(ts), free(np), free(names);
    return rc;
}

static void run(const char *name, int V, int D, int L, int H, int KVH, int I, int B, int T, int steps,
                const char *stage_name) {
    char dir[256];
    snprintf(dir, sizeof dir, "/tmp/vlmc-bench-train-%d-%s", (int)getpid(), name);
    if (write_model(dir, V, D, L, H, KVH, I)) {
        fprintf(stderr, "cannot write %s\n", dir);
        return;
    }
    train_model m;
    vlmc_error e = {0};
    tm_stage st;
    tm_stage_from_name(stage_name, &st);
    tm_lora_config lc = {.r = 16, .alpha = 32, .dropout = 0.05f, .targets = 127};
    if (train_model_load(&m, dir, st == TM_STAGE_LORA ? &lc : NULL, 1, &e) || train_model_set_stage(&m, st, &e) ||
        train_model_plan(&m, B, T, 0, &e)) {
        fprintf(stderr, "%s\n", e.message);
        return;
    }
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)B * T);
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)(((uint64_t)i * 2654435761u) % (uint64_t)V);
    train_batch bt = {.B = B, .T = T, .input_ids = ids, .labels = ids};
    adamw_params ap = adamw_default_params();
    double t_fwd = 0, t_bwd = 0, t_opt = 0;
    float loss = 0;
    for (int s = -1; s < steps; s++) { /* step -1 warms up */
        double t0 = now();
        train_model_zero_grad(&m);
        train_model_forward(&m, &bt, &loss, &e);
        double t1 = now();
        train_model_backward(&m, 1.0f, &e);
        double t2 = now();
        train_model_adamw_step(&m, s + 2, 1e-4f, &ap, true, &e);
        double t3 = now();
        if (s >= 0) t_fwd += t1 - t0, t_bwd += t2 - t1, t_opt += t3 - t2;
    }
    size_t np = 0;
    for (int i = 0; i < m.n_params; i++) np += m.params[i].n;
    const double per = (t_fwd + t_bwd + t_opt) / steps;
    printf("%-6s %-5s %6.1f M params, B %d x T %d: %.3f s/step (fwd %.3f, bwd %.3f, adamw %.3f) = %.0f tokens/s, "
           "loss %.3f\n",
           name, stage_name, (double)np / 1e6, B, T, per, t_fwd / steps, t_bwd / steps, t_opt / steps,
           (double)B * T / per, loss);
    train_model_free(&m);
    free(ids);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "cannot remove %s\n", dir);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2, steps = argc > 2 ? atoi(argv[2]) : 5;
    omp_set_num_threads(threads > 0 ? threads : 1);
    printf("threads %d\n", threads);
    run("tiny", 512, 64, 2, 4, 2, 160, 8, 64, steps * 10, "full");
    run("small", 8000, 512, 8, 8, 8, 1408, 4, 256, steps, "full");
    run("small", 8000, 512, 8, 8, 8, 1408, 4, 256, steps, "lora");
    return 0;
}
