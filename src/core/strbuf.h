/* A growable string. On allocation failure it sets `failed` and ignores
 * further appends, so that callers check once at the end. */
#ifndef VLMC_CORE_STRBUF_H
#define VLMC_CORE_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

typedef struct strbuf {
    char *data; /* NUL-terminated when len > 0 or after strbuf_cstr */
    size_t len, cap;
    bool failed;
} strbuf;

void strbuf_append(strbuf *b, const char *s, size_t n);
void strbuf_puts(strbuf *b, const char *s);
void strbuf_printf(strbuf *b, const char *fmt, ...) VLMC_PRINTF(2, 3);
/* Appends s as a JSON string literal (quotes and escapes). */
void strbuf_json_string(strbuf *b, const char *s);
/* The NUL-terminated contents ("" for an empty buffer); NULL if an append failed. */
const char *strbuf_cstr(strbuf *b);
/* Hands the malloc'ed string to the caller (NULL if an append failed) and resets b. */
char *strbuf_take(strbuf *b);
void strbuf_free(strbuf *b);

#endif
