/* GGUF (llama.cpp's model files): a validated, memory-mapped reader and a writer.
 *
 * Layout (version 2 and 3): "GGUF", u32 version, u64 tensor count, u64 key-value
 * count; the key-values (gguf strings are u64 length + bytes, not NUL-terminated);
 * tensor infos (name, u32 n_dims, u64 dims innermost first, u32 ggml type, u64
 * offset); padding to `general.alignment` (default 32); the tensor data.
 * Tensors are exposed as views with vlmc's shape order (outermost first). */
#ifndef VLMC_FORMATS_GGUF_H
#define VLMC_FORMATS_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

typedef enum gguf_type {
    GGUF_UINT8 = 0, GGUF_INT8 = 1, GGUF_UINT16 = 2, GGUF_INT16 = 3, GGUF_UINT32 = 4, GGUF_INT32 = 5,
    GGUF_FLOAT32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_UINT64 = 10, GGUF_INT64 = 11,
    GGUF_FLOAT64 = 12, GGUF_TYPE_COUNT
} gguf_type;

/* A string inside the mapped file (not NUL-terminated). */
typedef struct gguf_str {
    const char *ptr;
    uint64_t len;
} gguf_str;

typedef struct gguf_kv {
    char *key; /* NUL-terminated copy */
    gguf_type type;
    union {
        uint64_t u64;
        int64_t i64;
        double f64;
        bool b;
        gguf_str str;
    } v;
    /* Arrays: element type, count, and where the elements start in the file. String
     * arrays also get str_items (an allocated index of every element). */
    gguf_type arr_type;
    uint64_t arr_count;
    const unsigned char *arr_data;
    gguf_str *str_items;
} gguf_kv;

typedef struct gguf_tensor {
    char *name;
    tensor t;        /* shape outermost first; t.data points into the file */
    uint32_t ggml_type;
    uint64_t offset; /* relative to the data section */
    size_t nbytes;
} gguf_tensor;

typedef struct gguf gguf;

vlmc_status gguf_open(const char *path, gguf **out, vlmc_error *err);
/* Parses a buffer the caller keeps alive; `name` labels errors. */
vlmc_status gguf_open_memory(const void *data, size_t size, const char *name, gguf **out, vlmc_error *err);
void gguf_close(gguf *g);

uint32_t gguf_version(const gguf *g);
size_t gguf_kv_count(const gguf *g);
const gguf_kv *gguf_kv_at(const gguf *g, size_t i);
const gguf_kv *gguf_find_kv(const gguf *g, const char *key);
size_t gguf_tensor_count(const gguf *g);
const gguf_tensor *gguf_tensor_at(const gguf *g, size_t i);
const gguf_tensor *gguf_find_tensor(const gguf *g, const char *name);

/* Typed getters: return def when the key is absent or of another type. Integers of
 * any width convert; a string is copied into a malloc'ed NUL-terminated string. */
int64_t gguf_get_int(const gguf *g, const char *key, int64_t def);
double gguf_get_float(const gguf *g, const char *key, double def);
bool gguf_get_bool(const gguf *g, const char *key, bool def);
/* The string value (malloc'ed) or NULL. */
char *gguf_get_string(const gguf *g, const char *key);
/* Element i of a numeric array as double (0 when out of range). */
double gguf_array_number(const gguf_kv *kv, uint64_t i);

/* ggml's type numbers, and vlmc's dtype for them (DT_COUNT when unsupported). */
dtype gguf_ggml_to_dtype(uint32_t ggml_type);
int gguf_dtype_to_ggml(dtype t); /* -1 when GGUF cannot store it */
const char *gguf_ggml_type_name(uint32_t ggml_type);

/* ---- writing ---- */
typedef struct gguf_writer gguf_writer;

vlmc_status gguf_writer_new(gguf_writer **out, vlmc_error *err);
void gguf_writer_free(gguf_writer *w);
/* Key-values, in the order added. Strings and arrays are copied. */
vlmc_status gguf_set_u32(gguf_writer *w, const char *key, uint32_t v, vlmc_error *err);
vlmc_status gguf_set_i32(gguf_writer *w, const char *key, int32_t v, vlmc_error *err);
vlmc_status gguf_set_f32(gguf_writer *w, const char *key, float v, vlmc_error *err);
vlmc_status gguf_set_bool(gguf_writer *w, const char *key, bool v, vlmc_error *err);
vlmc_status gguf_set_string(gguf_writer *w, const char *key, const char *v, vlmc_error *err);
vlmc_status gguf_set_array(gguf_writer *w, const char *key, gguf_type elem, const void *data, size_t n, vlmc_error *err);
vlmc_status gguf_set_string_array(gguf_writer *w, const char *key, const char *const *items, size_t n, vlmc_error *err);
/* A tensor: its data is referenced, not copied, until gguf_writer_write. */
vlmc_status gguf_add_tensor(gguf_writer *w, const char *name, const tensor *t, vlmc_error *err);
vlmc_status gguf_writer_write(gguf_writer *w, const char *path, vlmc_error *err);

#endif
