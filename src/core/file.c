#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

vlmc_status file_map(const char *path, mapped_file *out, vlmc_error *err) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return vlmc_fail(err, VLMC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return vlmc_fail(err, VLMC_ERR_IO, "%s: not a regular file", path);
    }
    out->size = (size_t)st.st_size;
    if (out->size > 0) {
        void *p = mmap(NULL, out->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return vlmc_fail(err, VLMC_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
        }
        out->data = p;
    }
    close(fd);
    out->path = strdup(path);
    if (!out->path) {
        file_unmap(out);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", path);
    }
    return VLMC_OK;
}

void file_unmap(mapped_file *f) {
    if (f->data) munmap((void *)f->data, f->size);
    free(f->path);
    memset(f, 0, sizeof *f);
}

vlmc_status file_read_all(const char *path, size_t max_bytes, char **out, size_t *len, vlmc_error *err) {
    *out = NULL;
    if (len) *len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return vlmc_fail(err, VLMC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return vlmc_fail(err, VLMC_ERR_IO, "%s: not a regular file", path);
    }
    if ((size_t)st.st_size > max_bytes) {
        fclose(fp);
        return vlmc_fail(err, VLMC_ERR_LIMIT, "%s: file is %lld bytes, more than the limit of %zu", path,
                         (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(fp);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t got = fread(buf, 1, n, fp);
    fclose(fp);
    if (got != n) {
        free(buf);
        return vlmc_fail(err, VLMC_ERR_IO, "%s: short read", path);
    }
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return VLMC_OK;
}

vlmc_status file_write_all(const char *path, const void *data, size_t len, vlmc_error *err) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return vlmc_fail(err, VLMC_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    size_t put = len ? fwrite(data, 1, len, fp) : 0;
    int rc = fclose(fp);
    if (put != len || rc != 0) return vlmc_fail(err, VLMC_ERR_IO, "%s: write failed", path);
    return VLMC_OK;
}

bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

bool file_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

vlmc_status file_mkdirs(const char *path, vlmc_error *err) {
    char *p = strdup(path);
    if (!p) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    for (char *s = p + 1; *s; s++) {
        if (*s == '/') {
            *s = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST) goto fail;
            *s = '/';
        }
    }
    if (mkdir(p, 0777) != 0 && errno != EEXIST) goto fail;
    free(p);
    if (!file_is_dir(path)) return vlmc_fail(err, VLMC_ERR_IO, "%s: exists and is not a directory", path);
    return VLMC_OK;
fail:
    vlmc_fail(err, VLMC_ERR_IO, "%s: cannot create directory: %s", path, strerror(errno));
    free(p);
    return VLMC_ERR_IO;
}

char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *s = malloc(a + b + 2);
    if (!s) return NULL;
    memcpy(s, dir, a);
    size_t n = a;
    if (n > 0 && s[n - 1] != '/') s[n++] = '/';
    memcpy(s + n, name, b + 1);
    return s;
}

char *path_dirname(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}
