/* Files: read-only memory maps for weights, whole-file reads for small text
 * files, and path helpers. */
#ifndef VLMC_CORE_FILE_H
#define VLMC_CORE_FILE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

typedef struct mapped_file {
    const unsigned char *data; /* NULL for an empty file */
    size_t size;
    char *path; /* malloc'ed copy, for error messages */
} mapped_file;

vlmc_status file_map(const char *path, mapped_file *out, vlmc_error *err);
void file_unmap(mapped_file *f);

/* Reads a whole file into a malloc'ed, NUL-terminated buffer. Fails with
 * VLMC_ERR_LIMIT when the file is larger than max_bytes. */
vlmc_status file_read_all(const char *path, size_t max_bytes, char **out, size_t *len, vlmc_error *err);
vlmc_status file_write_all(const char *path, const void *data, size_t len, vlmc_error *err);

bool file_exists(const char *path);
bool file_is_dir(const char *path);
/* Creates a directory (and its parents); succeeds if it exists. */
vlmc_status file_mkdirs(const char *path, vlmc_error *err);

/* Joins dir and name with one '/' into a malloc'ed string (NULL when out of memory). */
char *path_join(const char *dir, const char *name);
/* The directory part of path ("." when there is none), malloc'ed. */
char *path_dirname(const char *path);

#endif
