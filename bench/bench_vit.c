/* Benchmark (not a test): seconds to encode one tile with random-weight towers, f32 weights and compute.
 *   SigLIP-B/16 at 512×512: hidden 768, 12 layers, 12 heads, mlp 3072, patch 16 → 1024 patches
 *   CLIP ViT-L/14-336:      hidden 1024, 24 layers, 16 heads, mlp 4096, patch 14 → 577 tokens
 * The weights are an in-memory safetensors image opened with safetensors_open_memory, so the load path is the real
 * one. Usage: build/bench/bench_vit [threads (default 2)] [reps (default 3)] [tiles per batch (default 1)] [f32|bf16]
 * [siglip|clip]
 * (bf16: the weights are stored as BF16 and converted per GEMM; compute stays f32). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>
#include <cjson/cJSON.h>

#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "models/vit.h"

typedef struct spec {
    char name[160];
    int ndim;
    int64_t shape[4];
    int fill; /* 0 random, 1 ones, 2 zeros */
} spec;

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

static void add(spec *s, int *n, const char *name, int ndim, int64_t a, int64_t b, int64_t c, int64_t d, int fill) {
    spec *e = &s[(*n)++];
    snprintf(e->name, sizeof e->name, "vision_model.%s", name);
    e->ndim = ndim;
    e->shape[0] = a; e->shape[1] = b; e->shape[2] = c; e->shape[3] = d;
    e->fill = fill;
}

/* A safetensors image of a random tower; *size gets its length. */
static char *build(const hf_vision_config *c, bool bf16, size_t *size) {
    int D = c->hidden_size, F = c->intermediate_size, P = c->patch_size, side = c->image_size / P;
    bool clip = !strcmp(c->model_type, "clip_vision_model");
    int cap = 16 + 16 * c->num_hidden_layers, n = 0;
    spec *s = calloc((size_t)cap, sizeof *s);
    add(s, &n, "embeddings.patch_embedding.weight", 4, D, c->num_channels, P, P, 0);
    add(s, &n, "embeddings.position_embedding.weight", 2, side * side + (clip ? 1 : 0), D, 0, 0, 0);
    if (clip) {
        add(s, &n, "embeddings.class_embedding", 1, D, 0, 0, 0, 0);
        add(s, &n, "pre_layrnorm.weight", 1, D, 0, 0, 0, 1);
        add(s, &n, "pre_layrnorm.bias", 1, D, 0, 0, 0, 2);
    } else {
        add(s, &n, "embeddings.patch_embedding.bias", 1, D, 0, 0, 0, 2);
    }
    add(s, &n, "post_layernorm.weight", 1, D, 0, 0, 0, 1);
    add(s, &n, "post_layernorm.bias", 1, D, 0, 0, 0, 2);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        char b[128];
#define L(sub, nd, a0, a1, f) (snprintf(b, sizeof b, "encoder.layers.%d.%s", l, sub), add(s, &n, b, nd, a0, a1, 0, 0, f))
        L("layer_norm1.weight", 1, D, 0, 1); L("layer_norm1.bias", 1, D, 0, 2);
        L("layer_norm2.weight", 1, D, 0, 1); L("layer_norm2.bias", 1, D, 0, 2);
        L("self_attn.q_proj.weight", 2, D, D, 0); L("self_attn.q_proj.bias", 1, D, 0, 2);
        L("self_attn.k_proj.weight", 2, D, D, 0); L("self_attn.k_proj.bias", 1, D, 0, 2);
        L("self_attn.v_proj.weight", 2, D, D, 0); L("self_attn.v_proj.bias", 1, D, 0, 2);
        L("self_attn.out_proj.weight", 2, D, D, 0); L("self_attn.out_proj.bias", 1, D, 0, 2);
        L("mlp.fc1.weight", 2, F, D, 0); L("mlp.fc1.bias", 1, F, 0, 2);
        L("mlp.fc2.weight", 2, D, F, 0); L("mlp.fc2.bias", 1, D, 0, 2);
#undef L
    }
    cJSON *hdr = cJSON_CreateObject();
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_CreateObject(), *sh = cJSON_CreateArray(), *o = cJSON_CreateArray();
        size_t numel = 1;
        for (int k = 0; k < s[i].ndim; k++) {
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)s[i].shape[k]));
            numel *= (size_t)s[i].shape[k];
        }
        cJSON_AddStringToObject(e, "dtype", bf16 ? "BF16" : "F32");
        cJSON_AddItemToObject(e, "shape", sh);
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + numel * (bf16 ? 2 : 4))));
        cJSON_AddItemToObject(e, "data_offsets", o);
        cJSON_AddItemToObject(hdr, s[i].name, e);
        off += numel * (bf16 ? 2 : 4);
    }
    char *json = cJSON_PrintUnformatted(hdr);
    size_t hl = strlen(json), hpad = (hl + 7) / 8 * 8;
    *size = 8 + hpad + off;
    char *buf = malloc(*size);
    uint64_t h64 = hpad;
    memcpy(buf, &h64, 8);
    memcpy(buf + 8, json, hl);
    memset(buf + 8 + hl, ' ', hpad - hl);
    float *data = (float *)(buf + 8 + hpad);
    uint16_t *data16 = (uint16_t *)(buf + 8 + hpad);
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        size_t numel = 1;
        for (int d = 0; d < s[i].ndim; d++) numel *= (size_t)s[i].shape[d];
        float scale = 0.02f * sqrtf(3.0f); /* uniform with std 0.02, as HF's initializer_range */
        for (size_t j = 0; j < numel; j++, k++) {
            float v = s[i].fill == 1 ? 1.0f : s[i].fill == 2 ? 0.0f : scale * frand();
            if (bf16) data16[k] = f32_to_bf16(v);
            else data[k] = v;
        }
    }
    free(json);
    cJSON_Delete(hdr);
    free(s);
    return buf;
}

static double clock_s(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
static double now(void) { return clock_s(CLOCK_MONOTONIC); }
static double cpu_now(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }

/* One big SGEMM right now (the machine's state: other load): GFLOPS per wall second and per CPU second. */
static void calibrate(double *wall_gflops, double *cpu_gflops) {
    int M = 1024, N = 3072, K = 768;
    float *a = calloc((size_t)M * K, 4), *b = calloc((size_t)N * K, 4), *c = calloc((size_t)M * N, 4);
    double best = 1e30, best_cpu = 1e30;
    for (int r = 0; r < 6; r++) {
        double t0 = now(), c0 = cpu_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
        double dt = now() - t0, dc = cpu_now() - c0;
        if (dt < best) best = dt;
        if (dc < best_cpu) best_cpu = dc;
    }
    free(a); free(b); free(c);
    *wall_gflops = 2.0 * M * N * K / best / 1e9;
    *cpu_gflops = 2.0 * M * N * K / best_cpu / 1e9;
}

/* Multiply-adds ×2 of one tile: the patch GEMM, 4 D×D + 2 D×F projections per token, and QK^T, AV. */
static double encoder_flops(const hf_vision_config *c, int T) {
    double D = c->hidden_size, F = c->intermediate_size, P = c->patch_size, Np = T;
    double per_layer = T * (4 * D * D + 2 * D * F) + 2.0 * T * T * D;
    return 2.0 * (c->num_hidden_layers * per_layer + Np * D * c->num_channels * P * P);
}

static int run(const char *label, const hf_vision_config *c, int reps, int tiles, bool bf16, double cal_cpu) {
    size_t size;
    char *buf = build(c, bf16, &size);
    safetensors *st = NULL;
    vlmc_error err = {0};
    vit_model m;
    if (safetensors_open_memory(buf, size, label, &st, &err) || vit_load(st, "vision_model.", c, &m, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    int S = c->image_size, T = vit_tokens(&m, S, S);
    size_t npx = (size_t)tiles * c->num_channels * S * S;
    float *px = malloc(npx * sizeof(float)), *out = malloc((size_t)tiles * T * m.D * sizeof(float));
    for (size_t i = 0; i < npx; i++) px[i] = frand();
    vit_outputs o = {.last_hidden_state = out};
    double best = 1e30, total = 0, cpu = 0;
    for (int r = 0; r <= reps; r++) { /* rep 0 warms up */
        double t0 = now(), c0 = cpu_now();
        if (vit_encode(&m, px, tiles, S, S, NULL, &o, &err)) {
            fprintf(stderr, "%s\n", err.message);
            return 1;
        }
        double dt = now() - t0;
        if (r == 0) continue;
        cpu += cpu_now() - c0;
        total += dt;
        if (dt < best) best = dt;
    }
    double gf = encoder_flops(c, T) / 1e9, cpu_tile = cpu / reps / tiles;
    printf("%-20s %4d tokens, %.0f GFLOP/tile, %d tile(s)/batch: %.3f s/tile best, %.3f mean of %d (%.0f GFLOPS); "
           "CPU %.2f s/tile = %.0f%% of the SGEMM rate per CPU second; weights %.0f MiB\n",
           label, T, gf, tiles, best / tiles, total / reps / tiles, reps, gf * tiles / best, cpu_tile,
           100.0 * gf / cpu_tile / cal_cpu, (double)size / (1 << 20));
    vit_free(&m);
    safetensors_close(st);
    free(buf);
    free(px);
    free(out);
    return 0;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2, reps = argc > 2 ? atoi(argv[2]) : 3, tiles = argc > 3 ? atoi(argv[3]) : 1;
    bool bf16 = argc > 4 && !strcmp(argv[4], "bf16");
    const char *only = argc > 5 ? argv[5] : ""; /* "siglip" or "clip": run just that one */
    if (threads < 1 || reps < 1 || tiles < 1) {
        fprintf(stderr, "usage: bench_vit [threads] [reps] [tiles] [f32|bf16] [siglip|clip]\n");
        return 2;
    }
    omp_set_num_threads(threads);
    printf("threads %d, %s weights, f32 compute; load average now: ", threads, bf16 ? "bf16" : "f32");
    FILE *la = fopen("/proc/loadavg", "r");
    char line[128] = "?";
    if (la) {
        if (!fgets(line, sizeof line, la)) line[0] = 0;
        fclose(la);
    }
    printf("%s", line);
    double cal_wall, cal_cpu;
    calibrate(&cal_wall, &cal_cpu);
    printf("calibration: one 1024x3072x768 SGEMM: %.0f GFLOPS wall, %.0f GFLOPS per CPU second\n", cal_wall, cal_cpu);
    hf_vision_config siglip = {.model_type = "siglip_vision_model", .hidden_size = 768, .intermediate_size = 3072,
                               .num_hidden_layers = 12, .num_attention_heads = 12, .num_channels = 3,
                               .image_size = 512, .patch_size = 16, .layer_norm_eps = 1e-6,
                               .hidden_act = "gelu_pytorch_tanh"};
    hf_vision_config clip = {.model_type = "clip_vision_model", .hidden_size = 1024, .intermediate_size = 4096,
                             .num_hidden_layers = 24, .num_attention_heads = 16, .num_channels = 3, .image_size = 336,
                             .patch_size = 14, .layer_norm_eps = 1e-5, .hidden_act = "quick_gelu"};
    if (strcmp(only, "clip") && run("SigLIP-B/16 512x512", &siglip, reps, tiles, bf16, cal_cpu)) return 1;
    if (strcmp(only, "siglip") && run("CLIP ViT-L/14-336", &clip, reps, tiles, bf16, cal_cpu)) return 1;
    return 0;
}
