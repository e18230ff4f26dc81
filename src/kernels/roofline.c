/* See roofline.h. */
#include "kernels/roofline.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define VLMC_X86 1
#else
#define VLMC_X86 0
#endif

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double roofline_copy_gbps(size_t bytes, int reps) {
    const size_t n = bytes / sizeof(float);
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    double best = 0.0;
    if (a && b) {
        #pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) a[i] = (float)(i & 1023), b[i] = 0.0f; /* touch every page first */
        for (int r = 0; r < (reps > 0 ? reps : 1); r++) {
            double t0 = now();
            #pragma omp parallel for schedule(static)
            for (size_t i = 0; i < n; i++) b[i] = a[i];
            double dt = now() - t0, gbps = 2.0 * (double)(n * sizeof(float)) / dt / 1e9;
            if (gbps > best) best = gbps;
        }
    }
    free(a);
    free(b);
    return best;
}

#if VLMC_X86
/* 10 independent accumulators hide the FMA latency (4 cycles) on 2 FMA pipes. Returns a value that
 * depends on every FMA so the loop is not removed. */
__attribute__((target("avx2,fma"))) static float fma_loop_avx2(int64_t iters) {
    __m256 acc[10], x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
    for (int k = 0; k < 10; k++) acc[k] = _mm256_set1_ps((float)k);
    for (int64_t i = 0; i < iters; i++)
        for (int k = 0; k < 10; k++) acc[k] = _mm256_fmadd_ps(acc[k], x, y);
    __m256 s = acc[0];
    for (int k = 1; k < 10; k++) s = _mm256_add_ps(s, acc[k]);
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[7];
}
#endif

static float fma_loop_portable(int64_t iters) {
    float acc[80];
    for (int k = 0; k < 80; k++) acc[k] = (float)k;
    for (int64_t i = 0; i < iters; i++)
        for (int k = 0; k < 80; k++) acc[k] = acc[k] * 0.999999f + 1e-7f;
    float s = 0;
    for (int k = 0; k < 80; k++) s += acc[k];
    return s;
}

/* flops of one iteration of each loop: 80 lanes, 2 flops each */
enum { FMA_FLOPS_PER_ITER = 160 };

static float fma_loop(int64_t iters) {
#if VLMC_X86
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return fma_loop_avx2(iters);
#endif
    return fma_loop_portable(iters);
}

double roofline_fma_gflops(double seconds) {
    /* calibrate on one thread, then run every thread for about `seconds` */
    int64_t iters = 1 << 16;
    double dt = 0;
    volatile float sink = 0;
    for (;;) {
        double t0 = now();
        sink += fma_loop(iters);
        dt = now() - t0;
        if (dt > 0.02 || iters > ((int64_t)1 << 40)) break;
        iters *= 4;
    }
    iters = (int64_t)((double)iters * seconds / dt) + 1;
    int threads = 1;
    double t0 = now();
    #pragma omp parallel
    {
        #pragma omp single
        threads = omp_get_num_threads();
        float v = fma_loop(iters);
        #pragma omp atomic
        sink += v;
    }
    dt = now() - t0;
    (void)sink;
    return (double)iters * FMA_FLOPS_PER_ITER * threads / dt / 1e9;
}
