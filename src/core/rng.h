/* Random numbers that are the same on every machine: xoshiro256** seeded
 * through splitmix64. Each user keeps its own state (no global generator). */
#ifndef VLMC_CORE_RNG_H
#define VLMC_CORE_RNG_H

#include <stdint.h>

typedef struct rng {
    uint64_t s[4];
} rng;

/* Advances *x and returns the next splitmix64 output (also a good 64-bit mixer). */
uint64_t splitmix64(uint64_t *x);
/* Fills the state from one 64-bit seed. */
void rng_seed(rng *r, uint64_t seed);
uint64_t rng_next(rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double rng_uniform(rng *r);
/* Uniform in [0, n) without modulo bias; n > 0. */
uint32_t rng_below(rng *r, uint32_t n);

#endif
