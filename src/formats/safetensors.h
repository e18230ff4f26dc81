/* safetensors: memory-mapped, zero-copy, validated before use.
 *
 * Layout of a file: 8-byte little-endian header length N, N bytes of UTF-8 JSON
 * {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {..}},
 * then the data section; offsets are relative to the data section.
 *
 * A `safetensors` set is one file, or the shards of a sharded checkpoint listed by
 * model.safetensors.index.json. Tensors are views into the mapped files. */
#ifndef VLMC_FORMATS_SAFETENSORS_H
#define VLMC_FORMATS_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

typedef struct st_entry {
    const char *name;
    tensor t;          /* t.data points into the mapped file */
    size_t begin, end; /* byte range inside the data section */
    int file;          /* index of the shard that holds it */
} st_entry;

typedef struct safetensors safetensors;

/* Opens path: a .safetensors file, a model.safetensors.index.json, a .gguf file whose
 * tensors carry the checkpoint's own names (what `vlmc quantize` writes; they may be
 * block-quantized), or a folder (model.safetensors, else the index, else model.gguf,
 * else every *.safetensors in it). */
vlmc_status safetensors_open(const char *path, safetensors **out, vlmc_error *err);
/* A set made of the tensors of GGUF files (e.g. llama.cpp's model + mmproj pair), renamed by rename
 * (write the set's name for tensor `name` of paths[file] into out; false = leave it out). */
typedef bool (*safetensors_rename_fn)(const char *name, int file, char *out, size_t cap, void *user);
vlmc_status safetensors_open_gguf(const char *const *paths, int n, safetensors_rename_fn rename, void *user,
                                  safetensors **out, vlmc_error *err);
/* Gives the set a tensor whose data (malloc'ed) it owns and frees on close: a new entry, or new data for
 * an existing one (e.g. rows reordered). owned is freed on failure too. */
vlmc_status safetensors_put_owned(safetensors *st, const char *name, const tensor *t, void *owned, vlmc_error *err);

/* Opens one file from memory that the caller keeps alive (fuzzing, tests). */
vlmc_status safetensors_open_memory(const void *data, size_t size, const char *name, safetensors **out,
                                    vlmc_error *err);
void safetensors_close(safetensors *st);

size_t safetensors_count(const safetensors *st);
/* Entries sorted by name. */
const st_entry *safetensors_at(const safetensors *st, size_t i);
const st_entry *safetensors_find(const safetensors *st, const char *name);
/* The file that holds an entry (for error messages). */
const char *safetensors_file_path(const safetensors *st, int file);
/* The __metadata__ value for key in the first file, or NULL. */
const char *safetensors_metadata(const safetensors *st, const char *key);

/* Looks a tensor up and checks its shape: expect_ndim dims equal to expect_shape
 * (an entry < 0 matches any size). A missing tensor or a wrong shape is an error
 * naming the file and the tensor. */
vlmc_status safetensors_get(const safetensors *st, const char *name, int expect_ndim, const int64_t *expect_shape,
                            tensor *out, vlmc_error *err);

/* Writes tensors to a new file; metadata_json is a JSON object of string values or NULL.
 * Tensors are written in the order given, 8-byte aligned as the reference library does. */
vlmc_status safetensors_write(const char *path, size_t n, const char *const *names, const tensor *tensors,
                              const char *metadata_json, vlmc_error *err);
/* The same, with each tensor's bytes made by fill(i, buf) into a buffer of its size, one tensor at
 * a time (tensors[i].data is not read): files larger than memory. */
typedef vlmc_status (*safetensors_fill_fn)(size_t i, void *buf, void *user, vlmc_error *err);
vlmc_status safetensors_write_fill(const char *path, size_t n, const char *const *names, const tensor *tensors,
                                   const char *metadata_json, safetensors_fill_fn fill, void *user, vlmc_error *err);

#endif
