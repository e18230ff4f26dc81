/* GEMV speed per weight format (f32, bf16, f16, Q8_0, Q4_0, Q4_K, Q6_K): y = W x for one token
 * through matmul_f32, as GB/s of weights streamed and as a fraction of the copy bandwidth measured
 * in the same run. Not a test.
 *   make bench-gemv [BENCH_ARGS="threads rows cols reps"]      (default: all threads, 16384 4096 20) */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/quant.h"
#include "kernels/matmul.h"
#include "kernels/roofline.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc > 1) omp_set_num_threads(atoi(argv[1]));
    const int64_t N = argc > 2 ? atoll(argv[2]) : 16384, K = argc > 3 ? atoll(argv[3]) : 4096;
    const int reps = argc > 4 ? atoi(argv[4]) : 20;
    float *w = malloc((size_t)(N * K) * sizeof *w), *x = malloc((size_t)K * sizeof *x), *y = malloc((size_t)N * sizeof *y);
    size_t sn = matmul_scratch_floats(K);
    float *scratch = malloc(sn * sizeof *scratch);
    void *q = malloc((size_t)(N * K) * sizeof(float));
    if (!w || !x || !y || !scratch || !q) return 1;
    #pragma omp parallel for
    for (int64_t i = 0; i < N * K; i++) w[i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
    for (int64_t i = 0; i < K; i++) x[i] = (float)(i % 17) / 17.0f;
    const double bw = roofline_copy_gbps((size_t)256 << 20, 5);
    printf("threads %d, W [%lld, %lld], copy bandwidth %.2f GB/s\n", omp_get_max_threads(), (long long)N, (long long)K, bw);
    const dtype types[] = {DT_F32, DT_BF16, DT_F16, DT_Q8_0, DT_Q4_0, DT_Q4_K, DT_Q6_K};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const dtype t = types[ti];
        const int64_t shape[2] = {N, K};
        tensor W = tensor_view(t, q, 2, shape);
        const size_t rb = tensor_nbytes(&W) / (size_t)N;
        #pragma omp parallel for
        for (int64_t r = 0; r < N; r++) {
            char *dst = (char *)q + (size_t)r * rb;
            const float *src = w + r * K;
            if (t == DT_F32) for (int64_t k = 0; k < K; k++) ((float *)dst)[k] = src[k];
            else if (t == DT_BF16) for (int64_t k = 0; k < K; k++) ((uint16_t *)dst)[k] = f32_to_bf16(src[k]);
            else if (t == DT_F16) for (int64_t k = 0; k < K; k++) ((uint16_t *)dst)[k] = f32_to_f16(src[k]);
            else quantize_row(t, src, dst, K);
        }
        matmul_f32(y, x, 1, &W, NULL, scratch, sn); /* warm up */
        double best = 1e30;
        for (int r = 0; r < reps; r++) {
            double t0 = now();
            matmul_f32(y, x, 1, &W, NULL, scratch, sn);
            double dt = now() - t0;
            if (dt < best) best = dt;
        }
        const double gbs = (double)tensor_nbytes(&W) / best / 1e9;
        /* the copy moves 2 bytes of traffic per byte copied; a GEMV reads its weights once */
        printf("%-5s %8.3f ms  %6.2f GB/s of weights  %5.1f%% of copy bandwidth  %6.2f GFLOPS\n", dtype_name(t),
               best * 1e3, gbs, 100 * gbs / bw, 2.0 * N * K / best / 1e9);
    }
    free(w), free(x), free(y), free(scratch), free(q);
    return 0;
}
