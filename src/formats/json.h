/* JSON through Debian's cJSON, with the typed, defaulted accessors that config
 * and manifest parsing need. Parsing rejects files that are not UTF-8. */
#ifndef VLMC_FORMATS_JSON_H
#define VLMC_FORMATS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/error.h"

/* Parses text[0..len) (need not be NUL-terminated); `what` names the source in errors. */
vlmc_status json_parse(const char *text, size_t len, const char *what, cJSON **out, vlmc_error *err);
/* Reads and parses a file of at most max_bytes. */
vlmc_status json_parse_file(const char *path, size_t max_bytes, cJSON **out, vlmc_error *err);

/* Accessors: return the default when the key is absent or JSON null. */
const cJSON *json_get(const cJSON *obj, const char *key);
bool json_has(const cJSON *obj, const char *key);
double json_number(const cJSON *obj, const char *key, double def);
int64_t json_int(const cJSON *obj, const char *key, int64_t def);
bool json_bool(const cJSON *obj, const char *key, bool def);
const char *json_string(const cJSON *obj, const char *key, const char *def);

#endif
