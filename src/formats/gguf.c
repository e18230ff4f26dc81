#include "formats/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"

enum { GGUF_DEFAULT_ALIGNMENT = 32, GGUF_MAX_ARRAY_DEPTH = 4, GGUF_MAX_DIMS = 4 };

/* ggml's types: name, elements per block, bytes per block, and vlmc's dtype. */
static const struct {
    const char *name;
    int block;
    int bytes;
    dtype type;
} ggml_types[] = {
    [0] = {"F32", 1, 4, DT_F32},          [1] = {"F16", 1, 2, DT_F16},        [2] = {"Q4_0", 32, 18, DT_Q4_0},
    [3] = {"Q4_1", 32, 20, DT_COUNT},     [6] = {"Q5_0", 32, 22, DT_COUNT},   [7] = {"Q5_1", 32, 24, DT_COUNT},
    [8] = {"Q8_0", 32, 34, DT_Q8_0},      [9] = {"Q8_1", 32, 36, DT_COUNT},   [10] = {"Q2_K", 256, 84, DT_COUNT},
    [11] = {"Q3_K", 256, 110, DT_COUNT},  [12] = {"Q4_K", 256, 144, DT_Q4_K}, [13] = {"Q5_K", 256, 176, DT_COUNT},
    [14] = {"Q6_K", 256, 210, DT_Q6_K},   [15] = {"Q8_K", 256, 292, DT_COUNT}, [16] = {"IQ2_XXS", 256, 66, DT_COUNT},
    [17] = {"IQ2_XS", 256, 74, DT_COUNT}, [18] = {"IQ3_XXS", 256, 98, DT_COUNT}, [19] = {"IQ1_S", 256, 50, DT_COUNT},
    [20] = {"IQ4_NL", 32, 18, DT_COUNT},  [21] = {"IQ3_S", 256, 110, DT_COUNT}, [22] = {"IQ2_S", 256, 82, DT_COUNT},
    [23] = {"IQ4_XS", 256, 136, DT_COUNT}, [24] = {"I8", 1, 1, DT_I8},       [25] = {"I16", 1, 2, DT_I16},
    [26] = {"I32", 1, 4, DT_I32},         [27] = {"I64", 1, 8, DT_I64},      [28] = {"F64", 1, 8, DT_F64},
    [29] = {"IQ1_M", 256, 56, DT_COUNT},  [30] = {"BF16", 1, 2, DT_BF16},
};
enum { N_GGML_TYPES = sizeof ggml_types / sizeof ggml_types[0] };

static bool ggml_type_known(uint32_t t) { return t < N_GGML_TYPES && ggml_types[t].name != NULL; }

const char *gguf_ggml_type_name(uint32_t t) { return ggml_type_known(t) ? ggml_types[t].name : "unknown"; }
dtype gguf_ggml_to_dtype(uint32_t t) { return ggml_type_known(t) ? ggml_types[t].type : DT_COUNT; }
int gguf_dtype_to_ggml(dtype d) {
    for (uint32_t i = 0; i < N_GGML_TYPES; i++)
        if (ggml_types[i].name && ggml_types[i].type == d) return (int)i;
    return -1;
}

static const int scalar_size[GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

struct gguf {
    mapped_file map;
    const unsigned char *base;
    size_t size;
    char *path;
    uint32_t version;
    gguf_kv *kv;
    size_t n_kv;
    gguf_tensor *tensors;
    size_t n_tensors;
    size_t alignment;
    const unsigned char *data;
    size_t data_size;
};

/* A bounds-checked cursor over the file. */
typedef struct cursor {
    const unsigned char *base, *p, *end;
    const char *path;
    vlmc_error *err;
} cursor;

static vlmc_status need(cursor *c, uint64_t n, const char *what) {
    if ((uint64_t)(c->end - c->p) < n)
        return vlmc_fail(c->err, VLMC_ERR_FORMAT, "%s: truncated while reading %s (at byte %zu)", c->path, what,
                         (size_t)(c->p - c->base));
    return VLMC_OK;
}

static vlmc_status rd_u32(cursor *c, uint32_t *v, const char *what) {
    if (need(c, 4, what)) return VLMC_ERR_FORMAT;
    memcpy(v, c->p, 4);
    c->p += 4;
    return VLMC_OK;
}

static vlmc_status rd_u64(cursor *c, uint64_t *v, const char *what) {
    if (need(c, 8, what)) return VLMC_ERR_FORMAT;
    memcpy(v, c->p, 8);
    c->p += 8;
    return VLMC_OK;
}

static vlmc_status rd_str(cursor *c, gguf_str *s, const char *what) {
    uint64_t n;
    if (rd_u64(c, &n, what)) return VLMC_ERR_FORMAT;
    if (need(c, n, what)) return VLMC_ERR_FORMAT;
    s->ptr = (const char *)c->p;
    s->len = n;
    c->p += n;
    return VLMC_OK;
}

/* Skips one value of type t (used for nested arrays), bounded in depth. */
static vlmc_status skip_value(cursor *c, gguf_type t, int depth, const char *key) {
    if (t >= GGUF_TYPE_COUNT)
        return vlmc_fail(c->err, VLMC_ERR_FORMAT, "%s: key '%s': unknown value type %u", c->path, key, (unsigned)t);
    if (t == GGUF_STRING) {
        gguf_str s;
        return rd_str(c, &s, key);
    }
    if (t == GGUF_ARRAY) {
        if (depth >= GGUF_MAX_ARRAY_DEPTH)
            return vlmc_fail(c->err, VLMC_ERR_FORMAT, "%s: key '%s': arrays nested too deeply", c->path, key);
        uint32_t et;
        uint64_t n;
        if (rd_u32(c, &et, key) || rd_u64(c, &n, key)) return VLMC_ERR_FORMAT;
        if (et >= GGUF_TYPE_COUNT)
            return vlmc_fail(c->err, VLMC_ERR_FORMAT, "%s: key '%s': unknown array element type %u", c->path, key, et);
        if (et != GGUF_STRING && et != GGUF_ARRAY) {
            uint64_t sz = (uint64_t)scalar_size[et];
            if (n > (uint64_t)(c->end - c->p) / sz) return need(c, UINT64_MAX, key);
            c->p += n * sz;
            return VLMC_OK;
        }
        if (n > (uint64_t)(c->end - c->p) / 8) return need(c, UINT64_MAX, key); /* each element needs >= 8 bytes */
        for (uint64_t i = 0; i < n; i++)
            if (skip_value(c, (gguf_type)et, depth + 1, key)) return VLMC_ERR_FORMAT;
        return VLMC_OK;
    }
    if (need(c, (uint64_t)scalar_size[t], key)) return VLMC_ERR_FORMAT;
    c->p += scalar_size[t];
    return VLMC_OK;
}

static vlmc_status read_kv(cursor *c, gguf_kv *kv) {
    gguf_str key;
    uint32_t t;
    if (rd_str(c, &key, "a key")) return VLMC_ERR_FORMAT;
    kv->key = strndup(key.ptr, (size_t)key.len);
    if (!kv->key) return vlmc_fail(c->err, VLMC_ERR_NOMEM, "%s: out of memory", c->path);
    if (strlen(kv->key) != key.len)
        return vlmc_fail(c->err, VLMC_ERR_FORMAT, "%s: a key contains a NUL byte", c->path);
    if (rd_u32(c, &t, kv->key)) return VLMC_ERR_FORMAT;
    if (t >= GGUF_TYPE_COUNT)
        return vlmc_fail(c->err, VLMC_ERR_FORMAT, "%s: key '%s': unknown value type %u", c->path, kv->key, t);
    kv->type = (gguf_type)t;
    const unsigned char *start = c->p;
    switch (kv->type) {
    case GGUF_STRING: return rd_str(c, &kv->v.str, kv->key);
    case GGUF_ARRAY: {
        uint32_t et;
        if (rd_u32(c, &et, kv->key) || rd_u64(c, &kv->arr_count, kv->key)) return VLMC_ERR_FORMAT;
        if (et >= GGUF_TYPE_COUNT)
            return vlmc_fail(c->err, VLMC_ERR_FORMAT, "%s: key '%s': unknown array element type %u", c->path, kv->key, et);
        kv->arr_type = (gguf_type)et;
        kv->arr_data = c->p;
        c->p = start; /* re-read the whole array through the skipper, which bounds it */
        if (skip_value(c, GGUF_ARRAY, 0, kv->key)) return VLMC_ERR_FORMAT;
        if (et == GGUF_STRING) {
            kv->str_items = malloc((size_t)(kv->arr_count ? kv->arr_count : 1) * sizeof *kv->str_items);
            if (!kv->str_items) return vlmc_fail(c->err, VLMC_ERR_NOMEM, "%s: out of memory", c->path);
            cursor a = {c->base, kv->arr_data, c->end, c->path, c->err};
            for (uint64_t i = 0; i < kv->arr_count; i++)
                if (rd_str(&a, &kv->str_items[i], kv->key)) return VLMC_ERR_FORMAT;
        }
        return VLMC_OK;
    }
    default: {
        int sz = scalar_size[kv->type];
        if (need(c, (uint64_t)sz, kv->key)) return VLMC_ERR_FORMAT;
        const unsigned char *p = c->p;
        c->p += sz;
        switch (kv->type) {
        case GGUF_UINT8: kv->v.u64 = p[0]; break;
        case GGUF_INT8: kv->v.i64 = (int8_t)p[0]; break;
        case GGUF_BOOL:
            if (p[0] > 1) return vlmc_fail(c->err, VLMC_ERR_FORMAT, "%s: key '%s': bool is %u", c->path, kv->key, p[0]);
            kv->v.b = p[0];
            break;
        case GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); kv->v.u64 = x; break; }
        case GGUF_INT16: { int16_t x; memcpy(&x, p, 2); kv->v.i64 = x; break; }
        case GGUF_UINT32: { uint32_t x; memcpy(&x, p, 4); kv->v.u64 = x; break; }
        case GGUF_INT32: { int32_t x; memcpy(&x, p, 4); kv->v.i64 = x; break; }
        case GGUF_FLOAT32: { float x; memcpy(&x, p, 4); kv->v.f64 = x; break; }
        case GGUF_UINT64: memcpy(&kv->v.u64, p, 8); break;
        case GGUF_INT64: memcpy(&kv->v.i64, p, 8); break;
        case GGUF_FLOAT64: memcpy(&kv->v.f64, p, 8); break;
        default: break;
        }
        return VLMC_OK;
    }
    }
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static vlmc_status parse(gguf *g, vlmc_error *err) {
    /* an empty file maps to no memory at all: checked before any pointer arithmetic on it */
    if (!g->base || g->size < 4 || memcmp(g->base, "GGUF", 4) != 0)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: not a GGUF file (bad magic)", g->path);
    cursor c = {g->base, g->base, g->base + g->size, g->path, err};
    uint64_t n_tensors, n_kv;
    c.p += 4;
    if (rd_u32(&c, &g->version, "the version")) return VLMC_ERR_FORMAT;
    if (g->version != 2 && g->version != 3)
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: GGUF version %u (2 and 3 are supported)", g->path, g->version);
    if (rd_u64(&c, &n_tensors, "the tensor count") || rd_u64(&c, &n_kv, "the key-value count")) return VLMC_ERR_FORMAT;
    /* Every key-value needs >= 12 bytes and every tensor info >= 24: bound the counts by the file. */
    if (n_kv > g->size / 12 || n_tensors > g->size / 24)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %llu tensors / %llu key-values cannot fit in %zu bytes", g->path,
                         (unsigned long long)n_tensors, (unsigned long long)n_kv, g->size);
    g->kv = calloc((size_t)(n_kv ? n_kv : 1), sizeof *g->kv);
    g->tensors = calloc((size_t)(n_tensors ? n_tensors : 1), sizeof *g->tensors);
    if (!g->kv || !g->tensors) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", g->path);
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv++;
        if (read_kv(&c, &g->kv[i])) return err ? err->code : VLMC_ERR_FORMAT;
        for (uint64_t j = 0; j < i; j++)
            if (!strcmp(g->kv[j].key, g->kv[i].key))
                return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: key '%s' appears twice", g->path, g->kv[i].key);
    }
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *al = gguf_find_kv(g, "general.alignment");
    if (al) {
        if (al->type != GGUF_UINT32 || al->v.u64 == 0 || (al->v.u64 & (al->v.u64 - 1)) || al->v.u64 > 65536)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: general.alignment must be a power of two u32", g->path);
        g->alignment = (size_t)al->v.u64;
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        gguf_str name;
        uint32_t nd, type;
        if (rd_str(&c, &name, "a tensor name")) return VLMC_ERR_FORMAT;
        g->n_tensors++;
        t->name = strndup(name.ptr, (size_t)name.len);
        if (!t->name) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", g->path);
        if (rd_u32(&c, &nd, t->name)) return VLMC_ERR_FORMAT;
        if (nd == 0 || nd > GGUF_MAX_DIMS)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor '%s': %u dimensions (1 to %d allowed)", g->path, t->name, nd, GGUF_MAX_DIMS);
        uint64_t ne[GGUF_MAX_DIMS];
        uint64_t numel = 1;
        for (uint32_t d = 0; d < nd; d++) {
            if (rd_u64(&c, &ne[d], t->name)) return VLMC_ERR_FORMAT;
            if (ne[d] > (1ull << 48) || (ne[d] && numel > (1ull << 62) / ne[d]))
                return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor '%s': dimension %u is too large", g->path, t->name, d);
            numel *= ne[d];
        }
        if (rd_u32(&c, &type, t->name) || rd_u64(&c, &t->offset, t->name)) return VLMC_ERR_FORMAT;
        if (!ggml_type_known(type))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor '%s': unknown ggml type %u", g->path, t->name, type);
        t->ggml_type = type;
        if (ne[0] % (uint64_t)ggml_types[type].block)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor '%s': row of %llu is not a whole number of %s blocks",
                             g->path, t->name, (unsigned long long)ne[0], ggml_types[type].name);
        t->nbytes = (size_t)(numel / (uint64_t)ggml_types[type].block * (uint64_t)ggml_types[type].bytes);
        if (t->offset % g->alignment)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor '%s': offset %llu is not aligned to %zu", g->path, t->name,
                             (unsigned long long)t->offset, g->alignment);
        t->t.type = ggml_types[type].type;
        t->t.ndim = (int)nd;
        for (uint32_t d = 0; d < nd; d++) t->t.shape[d] = (int64_t)ne[nd - 1 - d];
        for (uint64_t j = 0; j < i; j++)
            if (!strcmp(g->tensors[j].name, t->name))
                return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor '%s' appears twice", g->path, t->name);
    }
    size_t header = (size_t)(c.p - g->base);
    size_t data_start = (header + g->alignment - 1) / g->alignment * g->alignment;
    if (n_tensors > 0 && data_start > g->size)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: data section starts past the end of the file", g->path);
    g->data = g->base + (data_start < g->size ? data_start : g->size);
    g->data_size = data_start < g->size ? g->size - data_start : 0;
    /* Every tensor inside the data section, none overlapping. */
    gguf_tensor **by = malloc((size_t)(n_tensors ? n_tensors : 1) * sizeof *by);
    if (!by) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", g->path);
    for (uint64_t i = 0; i < n_tensors; i++) by[i] = &g->tensors[i];
    qsort(by, (size_t)n_tensors, sizeof *by, cmp_tensor_offset);
    vlmc_status s = VLMC_OK;
    uint64_t pos = 0;
    for (uint64_t i = 0; i < n_tensors && !s; i++) {
        gguf_tensor *t = by[i];
        if (t->offset > g->data_size || t->nbytes > g->data_size - t->offset)
            s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor '%s': bytes %llu..%llu are past the end of the data (%zu bytes)",
                          g->path, t->name, (unsigned long long)t->offset, (unsigned long long)(t->offset + t->nbytes),
                          g->data_size);
        else if (t->offset < pos)
            s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor '%s' overlaps tensor '%s'", g->path, t->name, by[i - 1]->name);
        else {
            pos = t->offset + t->nbytes;
            t->t.data = (void *)(g->data + t->offset);
        }
    }
    free(by);
    return s;
}

static void gguf_free_parts(gguf *g) {
    for (size_t i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].str_items);
    }
    free(g->kv);
    for (size_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->tensors);
}

void gguf_close(gguf *g) {
    if (!g) return;
    gguf_free_parts(g);
    if (g->map.path) file_unmap(&g->map);
    free(g->path);
    free(g);
}

vlmc_status gguf_open_memory(const void *data, size_t size, const char *name, gguf **out, vlmc_error *err) {
    *out = NULL;
    gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup(name))) {
        free(g);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    }
    g->base = data;
    g->size = size;
    vlmc_status s = parse(g, err);
    if (s) {
        gguf_close(g);
        return s;
    }
    *out = g;
    return VLMC_OK;
}

vlmc_status gguf_open(const char *path, gguf **out, vlmc_error *err) {
    *out = NULL;
    mapped_file m;
    vlmc_status s = file_map(path, &m, err);
    if (s) return s;
    s = gguf_open_memory(m.data, m.size, path, out, err);
    if (s) {
        file_unmap(&m);
        return s;
    }
    (*out)->map = m;
    return VLMC_OK;
}

uint32_t gguf_version(const gguf *g) { return g->version; }
size_t gguf_kv_count(const gguf *g) { return g->n_kv; }
const gguf_kv *gguf_kv_at(const gguf *g, size_t i) { return i < g->n_kv ? &g->kv[i] : NULL; }
size_t gguf_tensor_count(const gguf *g) { return g->n_tensors; }
const gguf_tensor *gguf_tensor_at(const gguf *g, size_t i) { return i < g->n_tensors ? &g->tensors[i] : NULL; }

const gguf_kv *gguf_find_kv(const gguf *g, const char *key) {
    for (size_t i = 0; i < g->n_kv; i++)
        if (!strcmp(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf *g, const char *name) {
    for (size_t i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

static bool is_signed(gguf_type t) { return t == GGUF_INT8 || t == GGUF_INT16 || t == GGUF_INT32 || t == GGUF_INT64; }
static bool is_unsigned(gguf_type t) { return t == GGUF_UINT8 || t == GGUF_UINT16 || t == GGUF_UINT32 || t == GGUF_UINT64; }

int64_t gguf_get_int(const gguf *g, const char *key, int64_t def) {
    const gguf_kv *kv = gguf_find_kv(g, key);
    if (!kv) return def;
    if (is_signed(kv->type)) return kv->v.i64;
    if (is_unsigned(kv->type)) return kv->v.u64 > INT64_MAX ? def : (int64_t)kv->v.u64;
    return def;
}

double gguf_get_float(const gguf *g, const char *key, double def) {
    const gguf_kv *kv = gguf_find_kv(g, key);
    if (!kv) return def;
    if (kv->type == GGUF_FLOAT32 || kv->type == GGUF_FLOAT64) return kv->v.f64;
    if (is_signed(kv->type)) return (double)kv->v.i64;
    if (is_unsigned(kv->type)) return (double)kv->v.u64;
    return def;
}

bool gguf_get_bool(const gguf *g, const char *key, bool def) {
    const gguf_kv *kv = gguf_find_kv(g, key);
    return kv && kv->type == GGUF_BOOL ? kv->v.b : def;
}

char *gguf_get_string(const gguf *g, const char *key) {
    const gguf_kv *kv = gguf_find_kv(g, key);
    if (!kv || kv->type != GGUF_STRING) return NULL;
    return strndup(kv->v.str.ptr, (size_t)kv->v.str.len);
}

double gguf_array_number(const gguf_kv *kv, uint64_t i) {
    if (kv->type != GGUF_ARRAY || i >= kv->arr_count || kv->arr_type == GGUF_STRING || kv->arr_type == GGUF_ARRAY) return 0;
    const unsigned char *p = kv->arr_data + i * (uint64_t)scalar_size[kv->arr_type];
    switch (kv->arr_type) {
    case GGUF_UINT8: case GGUF_BOOL: return p[0];
    case GGUF_INT8: return (int8_t)p[0];
    case GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); return x; }
    case GGUF_INT16: { int16_t x; memcpy(&x, p, 2); return x; }
    case GGUF_UINT32: { uint32_t x; memcpy(&x, p, 4); return x; }
    case GGUF_INT32: { int32_t x; memcpy(&x, p, 4); return x; }
    case GGUF_FLOAT32: { float x; memcpy(&x, p, 4); return x; }
    case GGUF_UINT64: { uint64_t x; memcpy(&x, p, 8); return (double)x; }
    case GGUF_INT64: { int64_t x; memcpy(&x, p, 8); return (double)x; }
    case GGUF_FLOAT64: { double x; memcpy(&x, p, 8); return x; }
    default: return 0;
    }
}

/* ---- writer ---- */

typedef struct wkv {
    char *key;
    gguf_type type, arr_type;
    unsigned char *blob; /* the encoded value, after the type field */
    size_t blob_len;
} wkv;

typedef struct wtensor {
    char *name;
    tensor t;
    uint32_t ggml_type;
    size_t nbytes;
} wtensor;

struct gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *tensors;
    size_t n_tensors, cap_tensors;
};

vlmc_status gguf_writer_new(gguf_writer **out, vlmc_error *err) {
    *out = calloc(1, sizeof **out);
    return *out ? VLMC_OK : vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].blob);
    }
    for (size_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->kv);
    free(w->tensors);
    free(w);
}

static vlmc_status add_kv(gguf_writer *w, const char *key, gguf_type type, const void *blob, size_t len, vlmc_error *err) {
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) return vlmc_fail(err, VLMC_ERR_ARG, "gguf: key '%s' set twice", key);
    if (w->n_kv == w->cap_kv) {
        size_t nc = w->cap_kv ? 2 * w->cap_kv : 16;
        wkv *n = realloc(w->kv, nc * sizeof *n);
        if (!n) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        w->kv = n;
        w->cap_kv = nc;
    }
    wkv *k = &w->kv[w->n_kv];
    k->key = strdup(key);
    k->blob = malloc(len ? len : 1);
    if (!k->key || !k->blob) {
        free(k->key);
        free(k->blob);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    }
    memcpy(k->blob, blob, len);
    k->blob_len = len;
    k->type = type;
    w->n_kv++;
    return VLMC_OK;
}

vlmc_status gguf_set_u32(gguf_writer *w, const char *key, uint32_t v, vlmc_error *err) { return add_kv(w, key, GGUF_UINT32, &v, 4, err); }
vlmc_status gguf_set_i32(gguf_writer *w, const char *key, int32_t v, vlmc_error *err) { return add_kv(w, key, GGUF_INT32, &v, 4, err); }
vlmc_status gguf_set_f32(gguf_writer *w, const char *key, float v, vlmc_error *err) { return add_kv(w, key, GGUF_FLOAT32, &v, 4, err); }
vlmc_status gguf_set_bool(gguf_writer *w, const char *key, bool v, vlmc_error *err) {
    unsigned char b = v ? 1 : 0;
    return add_kv(w, key, GGUF_BOOL, &b, 1, err);
}

vlmc_status gguf_set_string(gguf_writer *w, const char *key, const char *v, vlmc_error *err) {
    uint64_t n = strlen(v);
    unsigned char *b = malloc(8 + n);
    if (!b) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    memcpy(b, &n, 8);
    memcpy(b + 8, v, n);
    vlmc_status s = add_kv(w, key, GGUF_STRING, b, 8 + n, err);
    free(b);
    return s;
}

vlmc_status gguf_set_array(gguf_writer *w, const char *key, gguf_type elem, const void *data, size_t n, vlmc_error *err) {
    if (elem >= GGUF_TYPE_COUNT || elem == GGUF_STRING || elem == GGUF_ARRAY)
        return vlmc_fail(err, VLMC_ERR_ARG, "gguf: key '%s': use gguf_set_string_array for strings", key);
    size_t len = 12 + n * (size_t)scalar_size[elem];
    unsigned char *b = malloc(len);
    if (!b) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    uint32_t et = elem;
    uint64_t cnt = n;
    memcpy(b, &et, 4);
    memcpy(b + 4, &cnt, 8);
    memcpy(b + 12, data, n * (size_t)scalar_size[elem]);
    vlmc_status s = add_kv(w, key, GGUF_ARRAY, b, len, err);
    free(b);
    return s;
}

vlmc_status gguf_set_string_array(gguf_writer *w, const char *key, const char *const *items, size_t n, vlmc_error *err) {
    size_t len = 12;
    for (size_t i = 0; i < n; i++) len += 8 + strlen(items[i]);
    unsigned char *b = malloc(len), *p = b;
    if (!b) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    uint32_t et = GGUF_STRING;
    uint64_t cnt = n;
    memcpy(p, &et, 4);
    memcpy(p + 4, &cnt, 8);
    p += 12;
    for (size_t i = 0; i < n; i++) {
        uint64_t l = strlen(items[i]);
        memcpy(p, &l, 8);
        memcpy(p + 8, items[i], l);
        p += 8 + l;
    }
    vlmc_status s = add_kv(w, key, GGUF_ARRAY, b, len, err);
    free(b);
    return s;
}

vlmc_status gguf_add_tensor(gguf_writer *w, const char *name, const tensor *t, vlmc_error *err) {
    int gt = gguf_dtype_to_ggml(t->type);
    size_t nb = tensor_nbytes(t);
    if (gt < 0 || nb == (size_t)-1 || t->ndim < 1 || t->ndim > GGUF_MAX_DIMS)
        return vlmc_fail(err, VLMC_ERR_ARG, "gguf: tensor '%s' (%s, %d dims) cannot be stored", name, dtype_name(t->type), t->ndim);
    if (w->n_tensors == w->cap_tensors) {
        size_t nc = w->cap_tensors ? 2 * w->cap_tensors : 64;
        wtensor *n = realloc(w->tensors, nc * sizeof *n);
        if (!n) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        w->tensors = n;
        w->cap_tensors = nc;
    }
    wtensor *x = &w->tensors[w->n_tensors];
    x->name = strdup(name);
    if (!x->name) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    x->t = *t;
    x->ggml_type = (uint32_t)gt;
    x->nbytes = nb;
    w->n_tensors++;
    return VLMC_OK;
}

static bool put(FILE *f, const void *p, size_t n) { return n == 0 || fwrite(p, 1, n, f) == n; }

static bool put_pad(FILE *f, long pos, size_t align) {
    static const unsigned char zeros[64] = {0};
    size_t pad = (align - (size_t)pos % align) % align;
    while (pad) {
        size_t k = pad < sizeof zeros ? pad : sizeof zeros;
        if (!put(f, zeros, k)) return false;
        pad -= k;
    }
    return true;
}

vlmc_status gguf_writer_write(gguf_writer *w, const char *path, vlmc_error *err) {
    const size_t align = GGUF_DEFAULT_ALIGNMENT;
    FILE *f = fopen(path, "wb");
    if (!f) return vlmc_fail(err, VLMC_ERR_IO, "%s: cannot create", path);
    uint32_t version = 3;
    uint64_t nt = w->n_tensors, nk = w->n_kv;
    bool ok = put(f, "GGUF", 4) && put(f, &version, 4) && put(f, &nt, 8) && put(f, &nk, 8);
    for (size_t i = 0; ok && i < w->n_kv; i++) {
        uint64_t kl = strlen(w->kv[i].key);
        uint32_t t = w->kv[i].type;
        ok = put(f, &kl, 8) && put(f, w->kv[i].key, kl) && put(f, &t, 4) && put(f, w->kv[i].blob, w->kv[i].blob_len);
    }
    uint64_t off = 0;
    for (size_t i = 0; ok && i < w->n_tensors; i++) {
        const wtensor *x = &w->tensors[i];
        uint64_t nl = strlen(x->name);
        uint32_t nd = (uint32_t)x->t.ndim;
        ok = put(f, &nl, 8) && put(f, x->name, nl) && put(f, &nd, 4);
        for (int d = x->t.ndim - 1; ok && d >= 0; d--) {
            uint64_t ne = (uint64_t)x->t.shape[d];
            ok = put(f, &ne, 8);
        }
        ok = ok && put(f, &x->ggml_type, 4) && put(f, &off, 8);
        off += (x->nbytes + align - 1) / align * align;
    }
    ok = ok && put_pad(f, ftell(f), align);
    for (size_t i = 0; ok && i < w->n_tensors; i++) {
        ok = put(f, w->tensors[i].t.data, w->tensors[i].nbytes) && put_pad(f, ftell(f), align);
    }
    if (fclose(f) != 0 || !ok) return vlmc_fail(err, VLMC_ERR_IO, "%s: write failed", path);
    return VLMC_OK;
}
