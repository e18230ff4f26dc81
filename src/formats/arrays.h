/* Named raw arrays in a folder: the fixtures' reference/ format.
 *   DIR/manifest.json = {"format": ..., "meta": {...},
 *                        "arrays": [{"name", "file", "dtype", "shape", ["note"]}]}
 *   DIR/<file>        = headerless little-endian C-order elements.
 * dtype is "float32", "int32" or "uint8"; up to ARRAYS_MAX_DIMS dimensions. */
#ifndef VLMC_FORMATS_ARRAYS_H
#define VLMC_FORMATS_ARRAYS_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/error.h"

enum { ARRAYS_MAX_DIMS = 6 };

typedef enum array_dtype { ARRAY_F32 = 0, ARRAY_I32, ARRAY_U8 } array_dtype;

typedef struct named_array {
    char *name;  /* malloc'ed */
    char *file;  /* file name inside the folder (malloc'ed); NULL = "<name>.bin" when writing */
    char *note;  /* malloc'ed or NULL */
    array_dtype dtype;
    int ndim;
    int64_t shape[ARRAYS_MAX_DIMS];
    void *data;  /* malloc'ed by the reader; the writer only reads it */
} named_array;

typedef struct array_set {
    char *format; /* malloc'ed or NULL */
    cJSON *meta;  /* owned, or NULL */
    int count;
    named_array *arrays;
} array_set;

const char *array_dtype_name(array_dtype t);
/* An array description for arrays_write_dir: name, note (may be NULL) and data are used as they are (not copied);
 * ndim <= ARRAYS_MAX_DIMS. */
named_array named_array_make(const char *name, array_dtype dt, int ndim, const int64_t *shape, void *data,
                             const char *note);
size_t array_dtype_size(array_dtype t);
/* Number of elements; -1 on overflow or a negative dimension. */
int64_t named_array_numel(const named_array *a);

/* Writes DIR/manifest.json and one .bin per array (creates DIR). meta may be NULL;
 * it is not taken over. */
vlmc_status arrays_write_dir(const char *dir, const char *format, const cJSON *meta, const named_array *arrays,
                             int count, vlmc_error *err);

/* Reads DIR/manifest.json; with load_data, also every array's data (each file's
 * size must equal numel * dtype size). Arrays of other dtypes fail with
 * VLMC_ERR_UNSUPPORTED. */
vlmc_status arrays_read_dir(const char *dir, int load_data, array_set *out, vlmc_error *err);
/* Parses manifest.json text (no data is read); `what` names it in errors. */
vlmc_status arrays_parse_manifest(const char *text, size_t len, const char *what, array_set *out, vlmc_error *err);
/* The array called name, or NULL. */
named_array *array_set_find(const array_set *s, const char *name);
/* Loads one array's data (when read without load_data). */
vlmc_status arrays_load_data(const char *dir, named_array *a, vlmc_error *err);
void array_set_free(array_set *s);

#endif
