#include "formats/arrays.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "formats/json.h"

named_array named_array_make(const char *name, array_dtype dt, int ndim, const int64_t *shape, void *data,
                             const char *note) {
    named_array a;
    memset(&a, 0, sizeof a);
    a.name = (char *)name;
    a.note = (char *)note;
    a.dtype = dt;
    a.ndim = ndim < 0 ? 0 : ndim > ARRAYS_MAX_DIMS ? ARRAYS_MAX_DIMS : ndim;
    memcpy(a.shape, shape, (size_t)a.ndim * sizeof(int64_t));
    a.data = data;
    return a;
}

const char *array_dtype_name(array_dtype t) {
    switch (t) {
    case ARRAY_F32: return "float32";
    case ARRAY_I32: return "int32";
    case ARRAY_U8: return "uint8";
    }
    return "?";
}

size_t array_dtype_size(array_dtype t) { return t == ARRAY_U8 ? 1 : 4; }

int64_t named_array_numel(const named_array *a) {
    int64_t n = 1;
    for (int i = 0; i < a->ndim; i++) {
        if (a->shape[i] < 0) return -1;
        if (a->shape[i] && n > INT64_MAX / a->shape[i]) return -1;
        n *= a->shape[i];
    }
    return n;
}

static vlmc_status write_bin(const char *path, const named_array *a, vlmc_error *err) {
    int64_t n = named_array_numel(a);
    if (n < 0) return vlmc_fail(err, VLMC_ERR_ARG, "%s: invalid shape", path);
    /* Little-endian hosts only write as is (x86-64, aarch64). */
    return file_write_all(path, a->data, (size_t)n * array_dtype_size(a->dtype), err);
}

vlmc_status arrays_write_dir(const char *dir, const char *format, const cJSON *meta, const named_array *arrays,
                             int count, vlmc_error *err) {
    vlmc_status st = file_mkdirs(dir, err);
    if (st) return st;
    cJSON *root = cJSON_CreateObject();
    if (!root) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", dir);
    cJSON_AddStringToObject(root, "format", format ? format : "vlmc arrays v1");
    cJSON *m = meta ? cJSON_Duplicate(meta, 1) : cJSON_CreateObject();
    cJSON_AddItemToObject(root, "meta", m);
    cJSON *list = cJSON_AddArrayToObject(root, "arrays");
    for (int i = 0; i < count && !st; i++) {
        const named_array *a = &arrays[i];
        char fname[512];
        if (a->file) snprintf(fname, sizeof fname, "%s", a->file);
        else snprintf(fname, sizeof fname, "%s.bin", a->name);
        if (strchr(fname, '/') || !strcmp(fname, "..")) {
            st = vlmc_fail(err, VLMC_ERR_ARG, "%s: array file name '%s' must not contain '/'", dir, fname);
            break;
        }
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", a->name);
        cJSON_AddStringToObject(e, "file", fname);
        cJSON_AddStringToObject(e, "dtype", array_dtype_name(a->dtype));
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < a->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)a->shape[d]));
        if (a->note) cJSON_AddStringToObject(e, "note", a->note);
        cJSON_AddItemToArray(list, e);
        char *path = path_join(dir, fname);
        if (!path) st = vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", dir);
        else st = write_bin(path, a, err);
        free(path);
    }
    if (!st) {
        char *text = cJSON_Print(root);
        char *path = path_join(dir, "manifest.json");
        if (!text || !path) st = vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", dir);
        else st = file_write_all(path, text, strlen(text), err);
        free(text);
        free(path);
    }
    cJSON_Delete(root);
    return st;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

vlmc_status arrays_load_data(const char *dir, named_array *a, vlmc_error *err) {
    if (a->data) return VLMC_OK;
    char *path = path_join(dir, a->file ? a->file : a->name);
    if (!path) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", dir);
    int64_t n = named_array_numel(a);
    size_t want = (size_t)n * array_dtype_size(a->dtype);
    char *buf = NULL;
    size_t len = 0;
    vlmc_status st = n < 0 ? vlmc_fail(err, VLMC_ERR_FORMAT, "%s: invalid shape", path)
                           : file_read_all(path, want, &buf, &len, err);
    if (!st && len != want) {
        st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %zu bytes, but %s %s needs %zu", path, len,
                       array_dtype_name(a->dtype), a->name, want);
        free(buf);
        buf = NULL;
    }
    if (!st) a->data = buf;
    free(path);
    return st;
}

static vlmc_status parse_root(const cJSON *root, const char *mpath, array_set *out, vlmc_error *err) {
    vlmc_status st = VLMC_OK;
    const cJSON *list = json_get(root, "arrays");
    if (!cJSON_IsObject(root) || !cJSON_IsArray(list))
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: no \"arrays\" list", mpath);
    int n = cJSON_GetArraySize(list);
    out->arrays = calloc(n > 0 ? (size_t)n : 1, sizeof(named_array));
    if (!out->arrays) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", mpath);
    out->format = dup_or_null(json_string(root, "format", NULL));
    const cJSON *meta = json_get(root, "meta");
    if (meta) out->meta = cJSON_Duplicate(meta, 1);
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(list, i);
        named_array *a = &out->arrays[out->count];
        const char *name = json_string(e, "name", NULL), *file = json_string(e, "file", NULL);
        const char *dt = json_string(e, "dtype", NULL);
        const cJSON *shape = json_get(e, "shape");
        if (!cJSON_IsObject(e) || !name || !dt || !cJSON_IsArray(shape))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: array %d lacks name, dtype or shape", mpath, i);
        if (file && (!*file || strchr(file, '/') || !strcmp(file, "..") || !strcmp(file, ".")))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: array %s: file '%s' is outside the folder", mpath, name, file);
        if (!file && (!*name || strchr(name, '/') || strlen(name) > 250))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: array name '%s' cannot name a file", mpath, name);
        if (!strcmp(dt, "float32")) a->dtype = ARRAY_F32;
        else if (!strcmp(dt, "int32")) a->dtype = ARRAY_I32;
        else if (!strcmp(dt, "uint8")) a->dtype = ARRAY_U8;
        else return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: array %s has dtype %s", mpath, name, dt);
        int nd = cJSON_GetArraySize(shape);
        if (nd > ARRAYS_MAX_DIMS)
            return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: array %s has %d dimensions (max %d)", mpath, name, nd,
                             ARRAYS_MAX_DIMS);
        a->ndim = nd;
        for (int d = 0; d < nd; d++) {
            const cJSON *v = cJSON_GetArrayItem(shape, d);
            if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble > 9.0e15 ||
                v->valuedouble != (double)(int64_t)v->valuedouble)
                return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: array %s: bad dimension %d", mpath, name, d);
            a->shape[d] = (int64_t)v->valuedouble;
        }
        a->name = strdup(name);
        if (file) a->file = strdup(file);
        else {
            size_t L = strlen(name) + 5;
            a->file = malloc(L);
            if (a->file) snprintf(a->file, L, "%s.bin", name);
        }
        a->note = dup_or_null(json_string(e, "note", NULL));
        out->count++;
        if (!a->name || !a->file) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", mpath);
        int64_t numel = named_array_numel(a);
        if (numel < 0 || (uint64_t)numel > (UINT64_MAX >> 3))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: array %s: shape overflows", mpath, name);
    }
    return st;
}

vlmc_status arrays_parse_manifest(const char *text, size_t len, const char *what, array_set *out, vlmc_error *err) {
    memset(out, 0, sizeof *out);
    cJSON *root = NULL;
    vlmc_status st = json_parse(text, len, what, &root, err);
    if (st) return st;
    st = parse_root(root, what, out, err);
    cJSON_Delete(root);
    if (st) array_set_free(out);
    return st;
}

vlmc_status arrays_read_dir(const char *dir, int load_data, array_set *out, vlmc_error *err) {
    memset(out, 0, sizeof *out);
    char *mpath = path_join(dir, "manifest.json");
    if (!mpath) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", dir);
    char *text = NULL;
    size_t len = 0;
    vlmc_status st = file_read_all(mpath, 64u << 20, &text, &len, err);
    if (!st) st = arrays_parse_manifest(text, len, mpath, out, err);
    for (int i = 0; !st && load_data && i < out->count; i++) st = arrays_load_data(dir, &out->arrays[i], err);
    if (st) array_set_free(out);
    free(text);
    free(mpath);
    return st;
}

named_array *array_set_find(const array_set *s, const char *name) {
    for (int i = 0; i < s->count; i++)
        if (!strcmp(s->arrays[i].name, name)) return &s->arrays[i];
    return NULL;
}

void array_set_free(array_set *s) {
    if (!s) return;
    for (int i = 0; i < s->count; i++) {
        free(s->arrays[i].name);
        free(s->arrays[i].file);
        free(s->arrays[i].note);
        free(s->arrays[i].data);
    }
    free(s->arrays);
    free(s->format);
    cJSON_Delete(s->meta);
    memset(s, 0, sizeof *s);
}
