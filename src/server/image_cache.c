#include "server/image_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct image_cache_entry {
    char key[65];
    vlmc_image *image;
    void *features;
    void (*features_free)(void *);
    size_t bytes, feature_bytes;
    int refs;     /* requests using it, plus 1 while it is in the list */
    int in_list;
    image_cache_entry *prev, *next; /* LRU list: head = most recent */
};

struct image_cache {
    pthread_mutex_t mu;
    size_t max_bytes, bytes, entries;
    uint64_t hits, misses, evictions;
    image_cache_entry *head, *tail;
};

image_cache *image_cache_new(size_t max_bytes) {
    image_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    pthread_mutex_init(&c->mu, NULL);
    c->max_bytes = max_bytes;
    return c;
}

static void entry_destroy(image_cache_entry *e) {
    if (e->features && e->features_free) e->features_free(e->features);
    vlmc_image_free(e->image);
    free(e);
}

static void unlink_entry(image_cache *c, image_cache_entry *e) {
    if (e->prev) e->prev->next = e->next;
    else c->head = e->next;
    if (e->next) e->next->prev = e->prev;
    else c->tail = e->prev;
    e->prev = e->next = NULL;
    e->in_list = 0;
    c->bytes -= e->bytes + e->feature_bytes;
    c->entries--;
}

static void push_front(image_cache *c, image_cache_entry *e) {
    e->prev = NULL;
    e->next = c->head;
    if (c->head) c->head->prev = e;
    c->head = e;
    if (!c->tail) c->tail = e;
    e->in_list = 1;
    c->bytes += e->bytes + e->feature_bytes;
    c->entries++;
}

/* Drops least-recently-used entries until the cache fits; called with mu held.
 * Returns entries whose last reference went away (to destroy outside the lock). */
static image_cache_entry *evict(image_cache *c) {
    image_cache_entry *dead = NULL;
    while (c->bytes > c->max_bytes && c->tail) {
        image_cache_entry *e = c->tail;
        unlink_entry(c, e);
        c->evictions++;
        if (--e->refs == 0) {
            e->next = dead;
            dead = e;
        }
    }
    return dead;
}

static void destroy_list(image_cache_entry *e) {
    while (e) {
        image_cache_entry *n = e->next;
        entry_destroy(e);
        e = n;
    }
}

void image_cache_free(image_cache *c) {
    if (!c) return;
    image_cache_entry *e = c->head;
    while (e) {
        image_cache_entry *n = e->next;
        if (--e->refs == 0) entry_destroy(e); /* entries still referenced belong to their users */
        else e->in_list = 0, e->prev = e->next = NULL;
        e = n;
    }
    pthread_mutex_destroy(&c->mu);
    free(c);
}

image_cache_entry *image_cache_get(image_cache *c, const char *key) {
    pthread_mutex_lock(&c->mu);
    image_cache_entry *e = c->head;
    while (e && strcmp(e->key, key)) e = e->next;
    if (e) {
        unlink_entry(c, e);
        push_front(c, e);
        e->refs++;
        c->hits++;
    } else {
        c->misses++;
    }
    pthread_mutex_unlock(&c->mu);
    return e;
}

image_cache_entry *image_cache_put(image_cache *c, const char *key, vlmc_image *im) {
    pthread_mutex_lock(&c->mu);
    for (image_cache_entry *e = c->head; e; e = e->next)
        if (!strcmp(e->key, key)) {
            e->refs++;
            pthread_mutex_unlock(&c->mu);
            vlmc_image_free(im);
            return e;
        }
    image_cache_entry *e = calloc(1, sizeof *e);
    if (!e) {
        pthread_mutex_unlock(&c->mu);
        vlmc_image_free(im);
        return NULL;
    }
    strncpy(e->key, key, sizeof e->key - 1);
    e->image = im;
    e->bytes = (size_t)vlmc_image_width(im) * (size_t)vlmc_image_height(im) * 3 + sizeof *e;
    e->refs = 1; /* the caller's */
    image_cache_entry *dead = NULL;
    if (e->bytes <= c->max_bytes) {
        e->refs++;
        push_front(c, e);
        dead = evict(c);
    }
    pthread_mutex_unlock(&c->mu);
    destroy_list(dead);
    return e;
}

void image_cache_release(image_cache *c, image_cache_entry *e) {
    if (!e) return;
    pthread_mutex_lock(&c->mu);
    int last = --e->refs == 0;
    pthread_mutex_unlock(&c->mu);
    if (last) entry_destroy(e);
}

const vlmc_image *image_cache_image(const image_cache_entry *e) { return e->image; }

void *image_cache_features(image_cache *c, image_cache_entry *e) {
    pthread_mutex_lock(&c->mu);
    void *f = e->features;
    pthread_mutex_unlock(&c->mu);
    return f;
}

void image_cache_set_features(image_cache *c, image_cache_entry *e, void *features, void (*free_fn)(void *),
                              size_t bytes) {
    pthread_mutex_lock(&c->mu);
    void *old = e->features;
    void (*old_free)(void *) = e->features_free;
    if (e->in_list) c->bytes -= e->feature_bytes;
    e->features = features;
    e->features_free = free_fn;
    e->feature_bytes = bytes;
    image_cache_entry *dead = NULL;
    if (e->in_list) {
        c->bytes += bytes;
        dead = evict(c);
    }
    pthread_mutex_unlock(&c->mu);
    if (old && old_free && old != features) old_free(old);
    destroy_list(dead);
}

void image_cache_get_stats(image_cache *c, image_cache_stats *out) {
    pthread_mutex_lock(&c->mu);
    out->hits = c->hits;
    out->misses = c->misses;
    out->evictions = c->evictions;
    out->entries = c->entries;
    out->bytes = c->bytes;
    pthread_mutex_unlock(&c->mu);
}
