#include <stdlib.h>
#include <string.h>

#include "core/error.h"

vlmc_status vlmc_info_json(const char *path, char **json_out, vlmc_error *err) {
    *json_out = NULL;
    return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: info is being written", path);
}

vlmc_status vlmc_info_text(const char *path, char **text_out, vlmc_error *err) {
    return vlmc_info_json(path, text_out, err);
}

void vlmc_free(void *p) { free(p); }
