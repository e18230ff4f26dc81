/* SHA-256 (FIPS 180-4), for content hashes (the server's image cache). */
#ifndef VLMC_CORE_SHA256_H
#define VLMC_CORE_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct sha256_ctx {
    uint32_t h[8];
    uint64_t total;
    uint8_t buf[64];
    size_t n;
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t len);
void sha256_final(sha256_ctx *c, uint8_t out[32]);
/* One call: the digest of data[0..len) as 64 lower-case hex digits + NUL. */
void sha256_hex(const void *data, size_t len, char out[65]);

#endif
