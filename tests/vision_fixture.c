#include "vision_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testlib.h"
#include "formats/json.h"

char *vfx_dir(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "fixtures/%s", name);
    const char *p = shared_path(rel);
    if (!p) return NULL;
    struct stat st;
    if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
        test_skip("%s is absent", p);
        return NULL;
    }
    return strdup(p);
}

bool vfx_load(const char *dir, const char *name, vfx_array *out) {
    memset(out, 0, sizeof *out);
    char path[1024];
    snprintf(path, sizeof path, "%s/reference/manifest.json", dir);
    size_t len;
    char *text = test_read_file(path, &len);
    if (!CHECK(text != NULL, "%s: cannot read", path)) return false;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!CHECK(root != NULL, "%s: bad JSON", path)) return false;
    bool ok = false;
    const cJSON *arrays = cJSON_GetObjectItemCaseSensitive(root, "arrays"), *a = NULL;
    cJSON_ArrayForEach(a, arrays) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(a, "name");
        if (cJSON_IsString(n) && !strcmp(n->valuestring, name)) break;
    }
    if (!CHECK(a != NULL, "%s: no array '%s'", path, name)) goto done;
    const cJSON *file = cJSON_GetObjectItemCaseSensitive(a, "file"), *dt = cJSON_GetObjectItemCaseSensitive(a, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(a, "shape"), *d;
    if (!CHECK(cJSON_IsString(file) && cJSON_IsString(dt) && cJSON_IsArray(shape), "%s: bad entry '%s'", path, name))
        goto done;
    size_t esize;
    if (!strcmp(dt->valuestring, "float32")) { out->dtype = VFX_F32; esize = 4; }
    else if (!strcmp(dt->valuestring, "int32")) { out->dtype = VFX_I32; esize = 4; }
    else if (!strcmp(dt->valuestring, "uint8")) { out->dtype = VFX_U8; esize = 1; }
    else { CHECK(0, "%s: '%s' has dtype %s", path, name, dt->valuestring); goto done; }
    out->numel = 1;
    cJSON_ArrayForEach(d, shape) {
        if (!CHECK(out->ndim < VFX_MAX_DIMS && cJSON_IsNumber(d) && d->valuedouble >= 0, "%s: bad shape of '%s'", path, name))
            goto done;
        out->shape[out->ndim++] = (int64_t)d->valuedouble;
        out->numel *= (size_t)d->valuedouble;
    }
    snprintf(path, sizeof path, "%s/reference/%s", dir, file->valuestring);
    char *data = test_read_file(path, &len);
    if (!CHECK(data != NULL, "%s: cannot read", path)) goto done;
    if (!CHECK(len == out->numel * esize, "%s: %zu bytes, expected %zu", path, len, out->numel * esize)) {
        free(data);
        goto done;
    }
    out->data = data;
    ok = true;
done:
    cJSON_Delete(root);
    return ok;
}

void vfx_free(vfx_array *a) {
    free(a->data);
    a->data = NULL;
}

bool vfx_compare(const char *what, const float *got, const vfx_array *ref, float rel) {
    float d = max_abs_diff(got, ref->data, ref->numel), m = max_abs(ref->data, ref->numel);
    printf("    %-28s max|d| %.3g  max|ref| %.3g  rel %.3g\n", what, (double)d, (double)m, m > 0 ? (double)(d / m) : 0.0);
    return CHECK(d <= rel * m, "%s: max|d| %g > %g x max|ref| %g", what, (double)d, (double)rel, (double)m);
}
