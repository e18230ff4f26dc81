/* Test-side reader of the fixtures' reference format (see ../shared/fixtures/FORMAT.md):
 * reference/manifest.json lists raw little-endian C-order .bin arrays. */
#ifndef VLMC_TESTS_FIXTURE_H
#define VLMC_TESTS_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

enum { FX_MAX_DIMS = 8 };

typedef struct fx_array {
    char dtype[16]; /* "float32", "int32", "uint8" */
    int ndim;
    int64_t shape[FX_MAX_DIMS];
    size_t n;       /* elements */
    void *data;     /* malloc'ed */
} fx_array;

typedef struct fixture {
    char dir[1024]; /* the reference/ folder */
    cJSON *manifest;
} fixture;

/* Opens DIR/manifest.json (dir = a fixture's reference folder). Returns 0 on success. */
int fx_open(fixture *f, const char *ref_dir);
void fx_close(fixture *f);
/* Reads the array `name`; NULL when absent or its file has the wrong size. Free with fx_free. */
fx_array *fx_read(const fixture *f, const char *name);
void fx_free(fx_array *a);
/* Writes the arrays of a fixture's reference folder whose names are in names (NULL-terminated) into a new folder
 * out_dir in the same format (a dump's inputs), failing the running test on an error. */
bool fx_copy_arrays(const char *ref_dir, const char *const *names, const char *out_dir);

/* meta.<key> or NULL */
const cJSON *fx_meta(const fixture *f, const char *key);

#endif
