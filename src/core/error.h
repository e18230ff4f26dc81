/* Error reporting inside the library: every fallible function takes a
 * vlmc_error* (may be NULL) and returns a vlmc_status. */
#ifndef VLMC_CORE_ERROR_H
#define VLMC_CORE_ERROR_H

#include "vlmc.h"

#if defined(__GNUC__)
#define VLMC_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define VLMC_PRINTF(a, b)
#endif

/* Sets err (if non-NULL) to code and the formatted message; returns code. */
vlmc_status vlmc_fail(vlmc_error *err, vlmc_status code, const char *fmt, ...) VLMC_PRINTF(3, 4);
/* Prepends "prefix: " to an existing message, keeping its code; returns the code. */
vlmc_status vlmc_fail_prefix(vlmc_error *err, const char *fmt, ...) VLMC_PRINTF(2, 3);
void vlmc_error_clear(vlmc_error *err);

#endif
