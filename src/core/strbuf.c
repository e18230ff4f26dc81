#include "core/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool reserve(strbuf *b, size_t extra) {
    if (b->failed) return false;
    if (b->len + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) {
        if (cap > (size_t)-1 / 2) {
            b->failed = true;
            return false;
        }
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

void strbuf_append(strbuf *b, const char *s, size_t n) {
    if (!reserve(b, n)) return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void strbuf_puts(strbuf *b, const char *s) { strbuf_append(b, s, strlen(s)); }

void strbuf_printf(strbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !reserve(b, (size_t)n)) {
        b->failed = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void strbuf_json_string(strbuf *b, const char *s) {
    strbuf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': strbuf_append(b, "\\\"", 2); break;
        case '\\': strbuf_append(b, "\\\\", 2); break;
        case '\n': strbuf_append(b, "\\n", 2); break;
        case '\r': strbuf_append(b, "\\r", 2); break;
        case '\t': strbuf_append(b, "\\t", 2); break;
        case '\b': strbuf_append(b, "\\b", 2); break;
        case '\f': strbuf_append(b, "\\f", 2); break;
        default:
            if (*p < 0x20) strbuf_printf(b, "\\u%04x", *p);
            else strbuf_append(b, (const char *)p, 1);
        }
    }
    strbuf_append(b, "\"", 1);
}

const char *strbuf_cstr(strbuf *b) {
    if (b->failed) return NULL;
    if (!b->data) return "";
    return b->data;
}

char *strbuf_take(strbuf *b) {
    char *s = NULL;
    if (!b->failed) s = b->data ? b->data : calloc(1, 1);
    else free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = false;
    return s;
}

void strbuf_free(strbuf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = false;
}
