#include "formats/json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/utf8.h"

vlmc_status json_parse(const char *text, size_t len, const char *what, cJSON **out, vlmc_error *err) {
    *out = NULL;
    if (!utf8_valid(text, len)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: not valid UTF-8", what);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t at = end && end >= text ? (size_t)(end - text) : 0;
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: invalid JSON near byte %zu", what, at);
    }
    /* Only whitespace (or NULs used as padding) may follow the value. */
    for (const char *p = end; p && p < text + len; p++) {
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t' && *p != '\0') {
            cJSON_Delete(root);
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: trailing data after JSON value at byte %zu", what,
                             (size_t)(p - text));
        }
    }
    *out = root;
    return VLMC_OK;
}

vlmc_status json_parse_file(const char *path, size_t max_bytes, cJSON **out, vlmc_error *err) {
    char *buf;
    size_t len;
    *out = NULL;
    vlmc_status s = file_read_all(path, max_bytes, &buf, &len, err);
    if (s) return s;
    s = json_parse(buf, len, path, out, err);
    free(buf);
    return s;
}

const cJSON *json_get(const cJSON *obj, const char *key) {
    if (!obj || !cJSON_IsObject(obj)) return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) return NULL;
    return v;
}

bool json_has(const cJSON *obj, const char *key) { return json_get(obj, key) != NULL; }

double json_number(const cJSON *obj, const char *key, double def) {
    const cJSON *v = json_get(obj, key);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

int64_t json_int(const cJSON *obj, const char *key, int64_t def) {
    const cJSON *v = json_get(obj, key);
    if (!cJSON_IsNumber(v)) return def;
    double d = v->valuedouble;
    if (!(d >= -9.0e18 && d <= 9.0e18) || d != floor(d)) return def;
    return (int64_t)d;
}

bool json_bool(const cJSON *obj, const char *key, bool def) {
    const cJSON *v = json_get(obj, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

const char *json_string(const cJSON *obj, const char *key, const char *def) {
    const cJSON *v = json_get(obj, key);
    return cJSON_IsString(v) ? v->valuestring : def;
}
