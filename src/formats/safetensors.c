#include "formats/safetensors.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "formats/gguf.h"
#include "formats/json.h"

/* The reference library refuses headers over 100 MB; so do we. */
enum { ST_MAX_HEADER = 100 * 1000 * 1000 };

typedef struct st_file {
    mapped_file map;      /* unused (data NULL) for memory-opened sets */
    const unsigned char *base;
    size_t size;
    const unsigned char *data; /* start of the data section */
    size_t data_size;
    char *path;
    cJSON *metadata; /* __metadata__ (a detached copy) or NULL */
} st_file;

struct safetensors {
    st_file *files;
    int n_files;
    st_entry *entries;
    size_t n_entries;
    char *names; /* all entry names, NUL-separated */
    gguf **ggs;  /* GGUF files whose tensors are entries (model.gguf of vlmc quantize, llama.cpp pairs) */
    int n_ggs;
    void **owned; /* tensor data the set owns (safetensors_put_owned) */
    size_t n_owned;
};

static const struct { const char *name; dtype type; } st_dtypes[] = {
    {"F64", DT_F64}, {"F32", DT_F32}, {"F16", DT_F16}, {"BF16", DT_BF16}, {"I64", DT_I64},
    {"I32", DT_I32}, {"I16", DT_I16}, {"I8", DT_I8},   {"U8", DT_U8},     {"BOOL", DT_BOOL},
    {"U16", DT_U16}, {"U32", DT_U32}, {"U64", DT_U64}, {"F8_E4M3", DT_F8_E4M3}, {"F8_E5M2", DT_F8_E5M2},
};

static int st_dtype_from_name(const char *s, dtype *out) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (!strcmp(s, st_dtypes[i].name)) {
            *out = st_dtypes[i].type;
            return 1;
        }
    return 0;
}

static const char *st_dtype_name(dtype t) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (st_dtypes[i].type == t) return st_dtypes[i].name;
    return NULL;
}

static int cmp_entry_name(const void *a, const void *b) {
    return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name);
}

static int cmp_entry_begin(const void *a, const void *b) {
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Reads a JSON number that must be a non-negative integer exactly representable. */
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d) return 0;
    *out = (uint64_t)d;
    return 1;
}

/* Parses and validates one file's header; appends its tensors to a growing list. */
static vlmc_status parse_file(st_file *f, int file_index, st_entry **entries, size_t *n, size_t *cap,
                              vlmc_error *err) {
    const char *path = f->path;
    if (f->size < 8) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: file of %zu bytes is too small for a safetensors header", path, f->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->base[i];
    if (hlen > ST_MAX_HEADER)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: header length %llu exceeds the limit of %d bytes", path,
                         (unsigned long long)hlen, ST_MAX_HEADER);
    if (hlen > f->size - 8)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: header length %llu is larger than the file (%zu bytes)", path,
                         (unsigned long long)hlen, f->size);
    if (hlen < 2 || f->base[8] != '{')
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: header is not a JSON object", path);
    f->data = f->base + 8 + hlen;
    f->data_size = f->size - 8 - (size_t)hlen;

    cJSON *root = NULL;
    char what[600];
    snprintf(what, sizeof what, "%s: header", path);
    vlmc_status s = json_parse((const char *)f->base + 8, (size_t)hlen, what, &root, err);
    if (s) return s;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: header is not a JSON object", path);
    }
    size_t first = *n;
    s = VLMC_OK;
    for (cJSON *it = root->child; it; it = it->next) {
        const char *name = it->string;
        if (!strcmp(name, "__metadata__")) {
            if (!cJSON_IsObject(it)) {
                s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: __metadata__ is not an object", path);
                break;
            }
            for (cJSON *m = it->child; m; m = m->next)
                if (!cJSON_IsString(m)) {
                    s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: __metadata__ value of '%s' is not a string", path, m->string);
                    goto done;
                }
            if (f->metadata) {
                s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: __metadata__ appears twice", path);
                break;
            }
            f->metadata = cJSON_Duplicate(it, 1);
            continue;
        }
        if (!cJSON_IsObject(it)) {
            s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor '%s': entry is not an object", path, name);
            break;
        }
        const cJSON *jd = cJSON_GetObjectItemCaseSensitive(it, "dtype");
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(it, "shape");
        const cJSON *jo = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
        dtype type;
        if (!cJSON_IsString(jd)) {
            s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor '%s': missing or non-string dtype", path, name);
            break;
        }
        if (!st_dtype_from_name(jd->valuestring, &type)) {
            s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", path, name, jd->valuestring);
            break;
        }
        if (!cJSON_IsArray(js)) {
            s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor '%s': missing or non-array shape", path, name);
            break;
        }
        int ndim = cJSON_GetArraySize(js);
        if (ndim > TENSOR_MAX_DIMS) {
            s = vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: tensor '%s': %d dimensions (at most %d supported)", path,
                          name, ndim, TENSOR_MAX_DIMS);
            break;
        }
        int64_t shape[TENSOR_MAX_DIMS];
        int k = 0;
        for (cJSON *d = js->child; d; d = d->next, k++) {
            uint64_t v;
            if (!json_uint(d, &v) || v > (1ull << 48)) {
                s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor '%s': shape[%d] is not a valid dimension", path, name, k);
                goto done;
            }
            shape[k] = (int64_t)v;
        }
        uint64_t begin, end;
        if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2 || !json_uint(jo->child, &begin) ||
            !json_uint(jo->child->next, &end)) {
            s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor '%s': data_offsets must be [begin, end] non-negative integers", path, name);
            break;
        }
        if (begin > end) {
            s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor '%s': data_offsets begin %llu > end %llu", path, name,
                          (unsigned long long)begin, (unsigned long long)end);
            break;
        }
        if (end > f->data_size) {
            s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor '%s': data_offsets end %llu is past the data section (%zu bytes)",
                          path, name, (unsigned long long)end, f->data_size);
            break;
        }
        tensor t = tensor_view(type, (void *)(f->data + begin), ndim, shape);
        size_t nbytes = tensor_nbytes(&t);
        if (nbytes == (size_t)-1 || nbytes != end - begin) {
            s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor '%s': shape and dtype %s need %s%zu bytes but data_offsets span %llu",
                          path, name, jd->valuestring, nbytes == (size_t)-1 ? "more than " : "",
                          nbytes == (size_t)-1 ? SIZE_MAX / 2 : nbytes, (unsigned long long)(end - begin));
            break;
        }
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 64;
            st_entry *ne = realloc(*entries, nc * sizeof *ne);
            if (!ne) {
                s = vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
            *entries = ne;
            *cap = nc;
        }
        st_entry *e = &(*entries)[(*n)++];
        e->name = name; /* replaced by a stable copy in finish_set */
        e->t = t;
        e->begin = (size_t)begin;
        e->end = (size_t)end;
        e->file = file_index;
    }
done:
    if (s == VLMC_OK) {
        /* No two tensors may share bytes; the data section must be exactly covered. */
        size_t cnt = *n - first;
        const st_entry **byoff = malloc((cnt ? cnt : 1) * sizeof *byoff);
        if (!byoff) s = vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", path);
        for (size_t i = 0; s == VLMC_OK && i < cnt; i++) byoff[i] = &(*entries)[first + i];
        if (s == VLMC_OK) qsort(byoff, cnt, sizeof *byoff, cmp_entry_begin);
        size_t pos = 0;
        for (size_t i = 0; s == VLMC_OK && i < cnt; i++) {
            if (byoff[i]->begin < pos)
                s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor '%s' overlaps tensor '%s' (bytes %zu..%zu)", path,
                              byoff[i]->name, byoff[i - 1]->name, byoff[i]->begin, pos);
            else if (byoff[i]->begin > pos)
                s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %zu unused bytes before tensor '%s' in the data section", path,
                              byoff[i]->begin - pos, byoff[i]->name);
            else if (byoff[i]->end > pos)
                pos = byoff[i]->end;
        }
        if (s == VLMC_OK && pos != f->data_size)
            s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: data section has %zu bytes but tensors cover %zu", path, f->data_size, pos);
        free(byoff);
    }
    if (s != VLMC_OK) {
        *n = first;
        cJSON_Delete(root);
        return s;
    }
    /* Copy names out of the JSON tree before freeing it. */
    for (size_t i = first; i < *n; i++) {
        char *c = strdup((*entries)[i].name);
        if (!c) {
            for (size_t j = first; j < i; j++) free((char *)(*entries)[j].name);
            *n = first;
            cJSON_Delete(root);
            return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", path);
        }
        (*entries)[i].name = c;
    }
    cJSON_Delete(root);
    return VLMC_OK;
}

static void free_set(safetensors *st, size_t n_named) {
    if (!st) return;
    for (size_t i = 0; i < n_named; i++) free((char *)st->entries[i].name);
    free(st->entries);
    for (int i = 0; i < st->n_files; i++) {
        if (st->files[i].map.path) file_unmap(&st->files[i].map);
        free(st->files[i].path);
        cJSON_Delete(st->files[i].metadata);
    }
    free(st->files);
    for (int i = 0; i < st->n_ggs; i++) gguf_close(st->ggs[i]);
    free(st->ggs);
    for (size_t i = 0; i < st->n_owned; i++) free(st->owned[i]);
    free(st->owned);
    free(st);
}

void safetensors_close(safetensors *st) { free_set(st, st ? st->n_entries : 0); }

/* Parses every file of the set, sorts the entries by name and rejects duplicates. */
static vlmc_status finish_set(safetensors *st, vlmc_error *err) {
    size_t cap = 0;
    for (int i = 0; i < st->n_files; i++) {
        vlmc_status s = parse_file(&st->files[i], i, &st->entries, &st->n_entries, &cap, err);
        if (s) return s;
    }
    if (st->n_entries > 1) qsort(st->entries, st->n_entries, sizeof *st->entries, cmp_entry_name);
    for (size_t i = 1; i < st->n_entries; i++)
        if (!strcmp(st->entries[i].name, st->entries[i - 1].name))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor '%s' is defined twice (also in %s)",
                             st->files[st->entries[i].file].path, st->entries[i].name,
                             st->files[st->entries[i - 1].file].path);
    return VLMC_OK;
}

static vlmc_status add_file(safetensors *st, const char *path, vlmc_error *err) {
    st_file *nf = realloc(st->files, (size_t)(st->n_files + 1) * sizeof *nf);
    if (!nf) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    st->files = nf;
    st_file *f = &st->files[st->n_files];
    memset(f, 0, sizeof *f);
    vlmc_status s = file_map(path, &f->map, err);
    if (s) return s;
    st->n_files++;
    f->base = f->map.data;
    f->size = f->map.size;
    f->path = strdup(path);
    if (!f->path) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    return VLMC_OK;
}

/* The tensors of a GGUF file as entries of the set, under the names rename gives them (NULL: the
 * file's own names, as vlmc quantize writes them; rename returning false skips a tensor). */
static vlmc_status add_gguf(safetensors *st, const char *path, safetensors_rename_fn rename, void *user, vlmc_error *err) {
    gguf **ng = realloc(st->ggs, (size_t)(st->n_ggs + 1) * sizeof *ng);
    st_file *nf = realloc(st->files, (size_t)(st->n_files + 1) * sizeof *nf);
    if (ng) st->ggs = ng;
    if (nf) st->files = nf;
    if (!ng || !nf) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    memset(&st->files[st->n_files], 0, sizeof *st->files);
    if (!(st->files[st->n_files].path = strdup(path))) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    const int file = st->n_files++;
    gguf *g = NULL;
    vlmc_status s = gguf_open(path, &g, err);
    if (s) return s;
    st->ggs[st->n_ggs++] = g;
    const size_t n = gguf_tensor_count(g);
    st_entry *ne = realloc(st->entries, (st->n_entries + n + 1) * sizeof *ne);
    if (!ne) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    st->entries = ne;
    for (size_t i = 0; i < n; i++) {
        const gguf_tensor *gt = gguf_tensor_at(g, i);
        char name[512];
        if (!rename) snprintf(name, sizeof name, "%s", gt->name);
        else if (!rename(gt->name, file, name, sizeof name, user)) continue;
        if (gt->t.type == DT_COUNT)
            return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: tensor '%s' has GGML type %s, which vlmc does not read", path,
                             gt->name, gguf_ggml_type_name(gt->ggml_type));
        st_entry *e = &st->entries[st->n_entries];
        memset(e, 0, sizeof *e);
        if (!(e->name = strdup(name))) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        st->n_entries++;
        e->t = gt->t;
        e->begin = (size_t)gt->offset;
        e->end = (size_t)gt->offset + gt->nbytes;
        e->file = file;
    }
    if (st->n_entries > 1) qsort(st->entries, st->n_entries, sizeof *st->entries, cmp_entry_name);
    for (size_t i = 1; i < st->n_entries; i++)
        if (!strcmp(st->entries[i].name, st->entries[i - 1].name))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor '%s' is defined twice", path, st->entries[i].name);
    return VLMC_OK;
}

vlmc_status safetensors_open_gguf(const char *const *paths, int n, safetensors_rename_fn rename, void *user,
                                  safetensors **out, vlmc_error *err) {
    *out = NULL;
    safetensors *st = calloc(1, sizeof *st);
    if (!st) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    vlmc_status s = VLMC_OK;
    for (int i = 0; i < n && !s; i++) s = add_gguf(st, paths[i], rename, user, err);
    if (s) {
        safetensors_close(st);
        return s;
    }
    *out = st;
    return VLMC_OK;
}

vlmc_status safetensors_put_owned(safetensors *st, const char *name, const tensor *t, void *owned, vlmc_error *err) {
    void **no = realloc(st->owned, (st->n_owned + 1) * sizeof *no);
    if (!no) {
        free(owned);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    }
    st->owned = no;
    st->owned[st->n_owned++] = owned;
    st_entry *e = (st_entry *)safetensors_find(st, name);
    if (!e) {
        st_entry *ne = realloc(st->entries, (st->n_entries + 1) * sizeof *ne);
        if (!ne) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        st->entries = ne;
        e = &st->entries[st->n_entries];
        memset(e, 0, sizeof *e);
        if (!(e->name = strdup(name))) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        st->n_entries++;
    }
    e->t = *t;
    e->t.data = owned;
    e->begin = e->end = 0;
    qsort(st->entries, st->n_entries, sizeof *st->entries, cmp_entry_name);
    return VLMC_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Opens the shards named by an index file and checks its weight_map against them. */
static vlmc_status open_index(safetensors *st, const char *index_path, vlmc_error *err) {
    cJSON *idx = NULL;
    vlmc_status s = json_parse_file(index_path, 64u << 20, &idx, err);
    if (s) return s;
    const cJSON *wm = json_get(idx, "weight_map");
    char *dir = path_dirname(index_path);
    char **shards = NULL;
    size_t n_shards = 0;
    if (!cJSON_IsObject(wm) || !dir) {
        s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: no \"weight_map\" object", index_path);
        goto out;
    }
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e) || strchr(e->valuestring, '/') || !e->valuestring[0]) {
            s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: weight_map entry '%s' is not a plain file name", index_path, e->string);
            goto out;
        }
        size_t k;
        for (k = 0; k < n_shards; k++)
            if (!strcmp(shards[k], e->valuestring)) break;
        if (k == n_shards) {
            char **ns = realloc(shards, (n_shards + 1) * sizeof *ns);
            if (!ns) { s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory"); goto out; }
            shards = ns;
            shards[n_shards++] = e->valuestring;
        }
    }
    if (n_shards == 0) {
        s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: weight_map is empty", index_path);
        goto out;
    }
    qsort(shards, n_shards, sizeof *shards, cmp_str);
    for (size_t k = 0; k < n_shards && s == VLMC_OK; k++) {
        char *p = path_join(dir, shards[k]);
        s = p ? add_file(st, p, err) : vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        free(p);
    }
    if (s == VLMC_OK) s = finish_set(st, err);
    /* Every tensor the index names must be in the shard it names. */
    for (const cJSON *e = wm->child; s == VLMC_OK && e; e = e->next) {
        const st_entry *t = safetensors_find(st, e->string);
        if (!t)
            s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor '%s' is listed in the index but missing from %s", index_path,
                          e->string, e->valuestring);
        else if (strcmp(strrchr(st->files[t->file].path, '/') + 1, e->valuestring))
            s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor '%s' is in %s, not in %s as the index says", index_path,
                          e->string, st->files[t->file].path, e->valuestring);
    }
out:
    free(shards);
    free(dir);
    cJSON_Delete(idx);
    return s;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static vlmc_status open_dir(safetensors *st, const char *dir, vlmc_error *err) {
    char *single = path_join(dir, "model.safetensors");
    char *index = path_join(dir, "model.safetensors.index.json");
    char *gguf_path = path_join(dir, "model.gguf");
    vlmc_status s;
    if (!single || !index || !gguf_path) s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    else if (file_exists(single)) {
        s = add_file(st, single, err);
        if (!s) s = finish_set(st, err);
    } else if (file_exists(index)) {
        s = open_index(st, index, err);
    } else if (file_exists(gguf_path)) {
        s = add_gguf(st, gguf_path, NULL, NULL, err);
    } else {
        DIR *d = opendir(dir);
        char **names = NULL;
        size_t n = 0;
        s = d ? VLMC_OK : vlmc_fail(err, VLMC_ERR_IO, "%s: cannot list the folder", dir);
        for (struct dirent *de; s == VLMC_OK && d && (de = readdir(d));) {
            if (!ends_with(de->d_name, ".safetensors")) continue;
            char **nn = realloc(names, (n + 1) * sizeof *nn);
            if (!nn || !(nn[n] = strdup(de->d_name))) {
                if (nn) names = nn;
                s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
                break;
            }
            names = nn;
            n++;
        }
        if (d) closedir(d);
        if (s == VLMC_OK && n == 0) s = vlmc_fail(err, VLMC_ERR_IO, "%s: no .safetensors file in the folder", dir);
        if (s == VLMC_OK) qsort(names, n, sizeof *names, cmp_str);
        for (size_t i = 0; i < n && s == VLMC_OK; i++) {
            char *p = path_join(dir, names[i]);
            s = p ? add_file(st, p, err) : vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
            free(p);
        }
        for (size_t i = 0; i < n; i++) free(names[i]);
        free(names);
        if (s == VLMC_OK) s = finish_set(st, err);
    }
    free(single);
    free(index);
    free(gguf_path);
    return s;
}

vlmc_status safetensors_open(const char *path, safetensors **out, vlmc_error *err) {
    *out = NULL;
    safetensors *st = calloc(1, sizeof *st);
    if (!st) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    vlmc_status s;
    if (file_is_dir(path)) s = open_dir(st, path, err);
    else if (ends_with(path, ".json")) s = open_index(st, path, err);
    else if (ends_with(path, ".gguf")) s = add_gguf(st, path, NULL, NULL, err);
    else {
        s = add_file(st, path, err);
        if (!s) s = finish_set(st, err);
    }
    if (s) {
        safetensors_close(st);
        return s;
    }
    *out = st;
    return VLMC_OK;
}

vlmc_status safetensors_open_memory(const void *data, size_t size, const char *name, safetensors **out,
                                    vlmc_error *err) {
    *out = NULL;
    safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->files = calloc(1, sizeof *st->files))) {
        free(st);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    }
    st->n_files = 1;
    st->files[0].base = data;
    st->files[0].size = size;
    st->files[0].path = strdup(name);
    vlmc_status s = st->files[0].path ? finish_set(st, err) : vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    if (s) {
        safetensors_close(st);
        return s;
    }
    *out = st;
    return VLMC_OK;
}

size_t safetensors_count(const safetensors *st) { return st->n_entries; }
const st_entry *safetensors_at(const safetensors *st, size_t i) { return i < st->n_entries ? &st->entries[i] : NULL; }
const char *safetensors_file_path(const safetensors *st, int file) {
    return file >= 0 && file < st->n_files ? st->files[file].path : "?";
}

const st_entry *safetensors_find(const safetensors *st, const char *name) {
    size_t lo = 0, hi = st->n_entries;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->entries[mid].name, name);
        if (c == 0) return &st->entries[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const char *safetensors_metadata(const safetensors *st, const char *key) {
    if (st->n_files == 0) return NULL;
    return json_string(st->files[0].metadata, key, NULL);
}

vlmc_status safetensors_get(const safetensors *st, const char *name, int expect_ndim, const int64_t *expect_shape,
                            tensor *out, vlmc_error *err) {
    const st_entry *e = safetensors_find(st, name);
    const char *where = st->n_files ? st->files[0].path : "safetensors";
    if (!e) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor '%s' is missing", where, name);
    where = st->files[e->file].path;
    int ok = e->t.ndim == expect_ndim;
    for (int i = 0; ok && i < expect_ndim; i++)
        if (expect_shape[i] >= 0 && expect_shape[i] != e->t.shape[i]) ok = 0;
    if (!ok) {
        char got[128] = "", want[128] = "";
        for (int i = 0; i < e->t.ndim; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "", (long long)e->t.shape[i]);
        for (int i = 0; i < expect_ndim; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? ", " : "", (long long)expect_shape[i]);
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor '%s' has shape [%s], expected [%s]", where, name, got, want);
    }
    *out = e->t;
    return VLMC_OK;
}

vlmc_status safetensors_write(const char *path, size_t n, const char *const *names, const tensor *tensors,
                              const char *metadata_json, vlmc_error *err) {
    return safetensors_write_fill(path, n, names, tensors, metadata_json, NULL, NULL, err);
}

vlmc_status safetensors_write_fill(const char *path, size_t n, const char *const *names, const tensor *tensors,
                                   const char *metadata_json, safetensors_fill_fn fill, void *user, vlmc_error *err) {
    cJSON *hdr = cJSON_CreateObject();
    if (!hdr) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    vlmc_status s = VLMC_OK;
    if (metadata_json) {
        cJSON *m = NULL;
        s = json_parse(metadata_json, strlen(metadata_json), "metadata", &m, err);
        if (s) { cJSON_Delete(hdr); return s; }
        cJSON_AddItemToObject(hdr, "__metadata__", m);
    }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const char *dn = st_dtype_name(tensors[i].type);
        size_t nb = tensor_nbytes(&tensors[i]);
        if (!dn || nb == (size_t)-1) {
            cJSON_Delete(hdr);
            return vlmc_fail(err, VLMC_ERR_ARG, "%s: tensor '%s' has a dtype safetensors cannot store", path, names[i]);
        }
        cJSON *e = cJSON_CreateObject(), *shape = cJSON_CreateArray(), *offs = cJSON_CreateArray();
        cJSON_AddStringToObject(e, "dtype", dn);
        for (int d = 0; d < tensors[i].ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)tensors[i].shape[d]));
        cJSON_AddItemToObject(e, "shape", shape);
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + nb)));
        cJSON_AddItemToObject(e, "data_offsets", offs);
        cJSON_AddItemToObject(hdr, names[i], e);
        off += nb;
    }
    char *txt = cJSON_PrintUnformatted(hdr);
    cJSON_Delete(hdr);
    if (!txt) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    size_t hl = strlen(txt), padded = (hl + 7) & ~(size_t)7; /* pad with spaces to keep data 8-byte aligned */
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        free(txt);
        return vlmc_fail(err, VLMC_ERR_IO, "%s: cannot create", path);
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(txt, 1, hl, fp) == hl;
    for (size_t i = hl; ok && i < padded; i++) ok = fputc(' ', fp) != EOF;
    for (size_t i = 0; ok && s == VLMC_OK && i < n; i++) {
        size_t nb = tensor_nbytes(&tensors[i]);
        if (nb == 0) continue;
        if (!fill) {
            ok = fwrite(tensors[i].data, 1, nb, fp) == nb;
            continue;
        }
        void *buf = malloc(nb);
        if (!buf) s = vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory for tensor '%s'", path, names[i]);
        else if (!(s = fill(i, buf, user, err))) ok = fwrite(buf, 1, nb, fp) == nb;
        free(buf);
    }
    free(txt);
    if ((fclose(fp) != 0 || !ok) && s == VLMC_OK) s = vlmc_fail(err, VLMC_ERR_IO, "%s: write failed", path);
    return s;
}
