/* The machine's own bounds, measured (for `vlmc bench`): memory bandwidth by a threaded copy,
 * and f32 peak by a tight loop of independent FMAs. */
#ifndef VLMC_KERNELS_ROOFLINE_H
#define VLMC_KERNELS_ROOFLINE_H

#include <stddef.h>

/* GB/s (1e9 bytes) of copying `bytes` between two buffers on all OpenMP threads, read and written bytes
 * both counted (as STREAM's copy does); the best of reps passes. 0 when the buffers cannot be allocated. */
double roofline_copy_gbps(size_t bytes, int reps);
/* GFLOPS (an FMA = 2 flops) of a tight loop of independent f32 vector FMAs on all OpenMP threads
 * (AVX2+FMA when the CPU has them, else plain C the compiler vectorises as it can). */
double roofline_fma_gflops(double seconds);

#endif
