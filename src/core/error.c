#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

vlmc_status vlmc_fail(vlmc_error *err, vlmc_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

vlmc_status vlmc_fail_prefix(vlmc_error *err, const char *fmt, ...) {
    if (!err) return VLMC_ERR_INTERNAL;
    char prefix[512], old[sizeof err->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->message, sizeof old);
    size_t n = strlen(prefix);
    if (n > sizeof err->message - 3) n = sizeof err->message - 3;
    memcpy(err->message, prefix, n);
    memcpy(err->message + n, ": ", 2);
    size_t rest = sizeof err->message - n - 3;
    size_t m = strnlen(old, rest);
    memcpy(err->message + n + 2, old, m);
    err->message[n + 2 + m] = '\0';
    return err->code;
}

void vlmc_error_clear(vlmc_error *err) {
    if (err) {
        err->code = VLMC_OK;
        err->message[0] = '\0';
    }
}

const char *vlmc_status_name(vlmc_status s) {
    switch (s) {
    case VLMC_OK: return "ok";
    case VLMC_ERR_IO: return "I/O error";
    case VLMC_ERR_FORMAT: return "format error";
    case VLMC_ERR_UNSUPPORTED: return "unsupported";
    case VLMC_ERR_ARG: return "invalid argument";
    case VLMC_ERR_NOMEM: return "out of memory";
    case VLMC_ERR_LIMIT: return "limit exceeded";
    case VLMC_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

const char *vlmc_version(void) { return "0.1.0"; }
