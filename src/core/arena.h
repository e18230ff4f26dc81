/* An arena: one growing list of big blocks, bump allocation, freed all at once.
 * Used for everything whose lifetime is a load or a forward pass, so that the hot
 * path never calls malloc. */
#ifndef VLMC_CORE_ARENA_H
#define VLMC_CORE_ARENA_H

#include <stddef.h>

typedef struct arena_block arena_block;

typedef struct arena {
    arena_block *head;
    size_t block_size; /* default size of a new block */
    size_t used_total; /* bytes handed out since the last reset */
    size_t peak;       /* largest used_total seen */
} arena;

void arena_init(arena *a, size_t block_size);
/* 64-byte aligned, zero-filled memory, or NULL when out of memory. */
void *arena_alloc(arena *a, size_t n);
char *arena_strdup(arena *a, const char *s);
char *arena_strndup(arena *a, const char *s, size_t n);
/* Marks every block empty, keeping the memory for reuse. */
void arena_reset(arena *a);
void arena_free(arena *a);

#endif
