/* Test-side reader of the reference fixtures (../shared/fixtures/<name>/reference): manifest.json lists raw
 * little-endian C-order .bin arrays with their dtype (float32, int32, uint8) and shape; see fixtures/FORMAT.md. */
#ifndef VLMC_TESTS_VISION_FIXTURE_H
#define VLMC_TESTS_VISION_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { VFX_MAX_DIMS = 8 };

typedef enum vfx_dtype { VFX_F32 = 0, VFX_I32, VFX_U8 } vfx_dtype;

typedef struct vfx_array {
    vfx_dtype dtype;
    int ndim;
    int64_t shape[VFX_MAX_DIMS];
    size_t numel;
    void *data; /* malloc'ed */
} vfx_array;

/* The fixture folder ../shared/fixtures/<name> (malloc'ed), or NULL with the running case skipped when ../shared
 * or the fixture is absent. */
char *vfx_dir(const char *name);

/* Loads array `name` listed in <dir>/reference/manifest.json; on any problem records a CHECK failure naming the
 * file and returns false. */
bool vfx_load(const char *dir, const char *name, vfx_array *out);
void vfx_free(vfx_array *a);

/* Compares got against the reference within max|Δ| <= rel · max|ref| (a CHECK); prints the figures. */
bool vfx_compare(const char *what, const float *got, const vfx_array *ref, float rel);

#endif
