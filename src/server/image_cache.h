/* A bounded LRU cache of decoded request images, keyed by the SHA-256 of the
 * encoded bytes, so that an image sent again (the same data: URL or file) is not
 * decoded again. An entry may also carry backend data derived from the image
 * (e.g. its encoded vision features), freed with the entry. Entries are
 * reference-counted: eviction never frees an image a request still uses.
 * Thread-safe. */
#ifndef VLMC_SERVER_IMAGE_CACHE_H
#define VLMC_SERVER_IMAGE_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "vlmc.h"

typedef struct image_cache image_cache;
typedef struct image_cache_entry image_cache_entry;

/* max_bytes: the decoded pixels (plus attached feature bytes) kept; 0 disables caching. */
image_cache *image_cache_new(size_t max_bytes);
void image_cache_free(image_cache *c);

/* The image of hex key, referenced (release it), or NULL. */
image_cache_entry *image_cache_get(image_cache *c, const char *key);
/* Inserts im (the cache takes it) under key and returns a referenced entry. When
 * the key is already there, im is freed and the existing entry returned. NULL
 * only when out of memory (im is then freed). */
image_cache_entry *image_cache_put(image_cache *c, const char *key, vlmc_image *im);
void image_cache_release(image_cache *c, image_cache_entry *e);
const vlmc_image *image_cache_image(const image_cache_entry *e);

/* Backend data attached to an entry (NULL when none). set replaces any previous data
 * (freeing it with its free function); bytes counts toward max_bytes. */
void *image_cache_features(image_cache *c, image_cache_entry *e);
void image_cache_set_features(image_cache *c, image_cache_entry *e, void *features, void (*free_fn)(void *),
                              size_t bytes);

typedef struct image_cache_stats {
    uint64_t hits, misses, evictions;
    size_t entries, bytes;
} image_cache_stats;
void image_cache_get_stats(image_cache *c, image_cache_stats *out);

#endif
