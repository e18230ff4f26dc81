#include "fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "formats/arrays.h"

int fx_open(fixture *f, const char *ref_dir) {
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "%s", ref_dir);
    char path[1200];
    snprintf(path, sizeof path, "%s/manifest.json", ref_dir);
    size_t len;
    char *text = test_read_file(path, &len);
    if (!text) return -1;
    f->manifest = cJSON_Parse(text);
    free(text);
    return f->manifest ? 0 : -1;
}

void fx_close(fixture *f) {
    cJSON_Delete(f->manifest);
    f->manifest = NULL;
}

const cJSON *fx_meta(const fixture *f, const char *key) {
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(f->manifest, "meta");
    return meta ? cJSON_GetObjectItemCaseSensitive(meta, key) : NULL;
}

static size_t dtype_size(const char *d) {
    if (!strcmp(d, "float32") || !strcmp(d, "int32")) return 4;
    if (!strcmp(d, "uint8")) return 1;
    return 0;
}

fx_array *fx_read(const fixture *f, const char *name) {
    const cJSON *arrays = cJSON_GetObjectItemCaseSensitive(f->manifest, "arrays");
    const cJSON *a;
    cJSON_ArrayForEach(a, arrays) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(a, "name");
        if (!cJSON_IsString(nm) || strcmp(nm->valuestring, name)) continue;
        const cJSON *file = cJSON_GetObjectItemCaseSensitive(a, "file");
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(a, "dtype");
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(a, "shape");
        if (!cJSON_IsString(file) || !cJSON_IsString(dt) || !cJSON_IsArray(shape)) return NULL;
        fx_array *r = calloc(1, sizeof *r);
        if (!r) return NULL;
        snprintf(r->dtype, sizeof r->dtype, "%s", dt->valuestring);
        r->n = 1;
        const cJSON *d;
        cJSON_ArrayForEach(d, shape) {
            if (r->ndim == FX_MAX_DIMS) { free(r); return NULL; }
            r->shape[r->ndim++] = (int64_t)d->valuedouble;
            r->n *= (size_t)d->valuedouble;
        }
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", f->dir, file->valuestring);
        size_t len;
        r->data = test_read_file(path, &len);
        size_t es = dtype_size(r->dtype);
        if (!r->data || !es || len != r->n * es) {
            fx_free(r);
            return NULL;
        }
        return r;
    }
    return NULL;
}

void fx_free(fx_array *a) {
    if (!a) return;
    free(a->data);
    free(a);
}

bool fx_copy_arrays(const char *ref_dir, const char *const *names, const char *out_dir) {
    array_set set = {0};
    vlmc_error err = {0};
    if (!CHECK(arrays_read_dir(ref_dir, 1, &set, &err) == VLMC_OK, "%s", err.message)) return false;
    named_array keep[16];
    int n = 0;
    for (int i = 0; i < set.count && n < 16; i++)
        for (const char *const *p = names; *p; p++)
            if (!strcmp(*p, set.arrays[i].name)) {
                keep[n] = set.arrays[i];
                keep[n].file = NULL;
                keep[n].note = NULL;
                n++;
                break;
            }
    bool ok = CHECK(arrays_write_dir(out_dir, NULL, NULL, keep, n, &err) == VLMC_OK, "%s", err.message);
    array_set_free(&set);
    return ok;
}
