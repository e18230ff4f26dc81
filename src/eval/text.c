#include "eval/text.h"

#include <string.h>
#include <utf8proc.h>

#include "core/utf8.h"

size_t evtext_next(const char *s, size_t n, uint32_t *cp) {
    size_t len = utf8_decode(s, n, cp);
    if (len == 0) {
        *cp = 0x110000u + (uint8_t)s[0];
        return 1;
    }
    return len;
}

bool evtext_is_space(uint32_t cp) { return utf8_is_py_space(cp); }

uint32_t evtext_lower(uint32_t cp) {
    if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    if (cp > 0x10ffff) return cp;
    return (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
}

size_t evtext_cp_count(const char *s, size_t n) {
    size_t count = 0;
    uint32_t cp;
    for (size_t i = 0; i < n; count++) i += evtext_next(s + i, n - i, &cp);
    return count;
}

const char *evtext_strip(const char *s, size_t *n) {
    size_t start = 0, end = *n;
    uint32_t cp;
    while (start < end) {
        size_t l = evtext_next(s + start, end - start, &cp);
        if (!evtext_is_space(cp)) break;
        start += l;
    }
    /* Trailing: step back over whole code points. */
    while (end > start) {
        size_t b = end - 1;
        while (b > start && ((uint8_t)s[b] & 0xc0) == 0x80 && end - b < 4) b--;
        size_t l = evtext_next(s + b, end - b, &cp);
        if (b + l != end) { /* not one whole code point: treat the last byte alone */
            b = end - 1;
            evtext_next(s + b, 1, &cp);
        }
        if (!evtext_is_space(cp)) break;
        end = b;
    }
    *n = end - start;
    return s + start;
}

bool evtext_next_word(const char *s, size_t n, size_t *pos, size_t *word_start, size_t *word_len) {
    size_t i = *pos;
    uint32_t cp;
    while (i < n) {
        size_t l = evtext_next(s + i, n - i, &cp);
        if (!evtext_is_space(cp)) break;
        i += l;
    }
    if (i >= n) {
        *pos = n;
        return false;
    }
    size_t start = i;
    while (i < n) {
        size_t l = evtext_next(s + i, n - i, &cp);
        if (evtext_is_space(cp)) break;
        i += l;
    }
    *word_start = start;
    *word_len = i - start;
    *pos = i;
    return true;
}

/* True when needle matches hay at offset i, case-insensitively. */
static bool ci_match_at(const char *hay, size_t hay_len, size_t i, const char *needle, size_t needle_len) {
    size_t j = 0;
    while (j < needle_len) {
        if (i >= hay_len) return false;
        uint32_t a, b;
        size_t la = evtext_next(hay + i, hay_len - i, &a);
        size_t lb = evtext_next(needle + j, needle_len - j, &b);
        if (a != b && evtext_lower(a) != evtext_lower(b)) return false;
        i += la;
        j += lb;
    }
    return true;
}

ssize_t evtext_ci_find(const char *hay, size_t hay_len, const char *needle, size_t needle_len, bool last) {
    if (needle_len == 0) return last ? (ssize_t)hay_len : 0;
    ssize_t found = -1;
    uint32_t cp;
    for (size_t i = 0; i < hay_len; i += evtext_next(hay + i, hay_len - i, &cp)) {
        if (ci_match_at(hay, hay_len, i, needle, needle_len)) {
            found = (ssize_t)i;
            if (!last) break;
        }
    }
    return found;
}

ssize_t evtext_find(const char *hay, size_t hay_len, const char *needle, size_t needle_len, bool last) {
    if (needle_len == 0) return last ? (ssize_t)hay_len : 0;
    if (needle_len > hay_len) return -1;
    ssize_t found = -1;
    for (size_t i = 0; i + needle_len <= hay_len; i++) {
        if (memcmp(hay + i, needle, needle_len) == 0) {
            found = (ssize_t)i;
            if (!last) break;
        }
    }
    return found;
}
