#include "core/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct arena_block {
    arena_block *next;
    size_t size, used;
    _Alignas(64) unsigned char data[];
};

void arena_init(arena *a, size_t block_size) {
    a->head = NULL;
    a->block_size = block_size ? block_size : (1u << 20);
    a->used_total = 0;
    a->peak = 0;
}

void *arena_alloc(arena *a, size_t n) {
    size_t need = (n + 63) & ~(size_t)63;
    if (need < n) return NULL;
    for (arena_block *b = a->head; b; b = b->next) {
        if (b->size - b->used >= need) {
            void *p = b->data + b->used;
            b->used += need;
            a->used_total += need;
            if (a->used_total > a->peak) a->peak = a->used_total;
            memset(p, 0, n);
            return p;
        }
    }
    size_t size = need > a->block_size ? need : a->block_size;
    if (size > SIZE_MAX - sizeof(arena_block) - 64) return NULL;
    arena_block *b = aligned_alloc(64, (sizeof(arena_block) + size + 63) & ~(size_t)63);
    if (!b) return NULL;
    b->size = size;
    b->used = need;
    b->next = a->head;
    a->head = b;
    a->used_total += need;
    if (a->used_total > a->peak) a->peak = a->used_total;
    memset(b->data, 0, n);
    return b->data;
}

char *arena_strndup(arena *a, const char *s, size_t n) {
    char *p = arena_alloc(a, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

char *arena_strdup(arena *a, const char *s) { return arena_strndup(a, s, strlen(s)); }

void arena_reset(arena *a) {
    for (arena_block *b = a->head; b; b = b->next) b->used = 0;
    a->used_total = 0;
}

void arena_free(arena *a) {
    arena_block *b = a->head;
    while (b) {
        arena_block *n = b->next;
        free(b);
        b = n;
    }
    a->head = NULL;
    a->used_total = 0;
}
