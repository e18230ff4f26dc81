/* UTF-8 helpers shared by every parser of outside text. */
#ifndef VLMC_CORE_UTF8_H
#define VLMC_CORE_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when s[0..n) is well-formed UTF-8 (no overlongs, surrogates or values
 * above U+10FFFF). */
bool utf8_valid(const char *s, size_t n);
/* Decodes one code point at s (n bytes available); returns its length in bytes,
 * or 0 when the bytes there are not well-formed UTF-8. */
size_t utf8_decode(const char *s, size_t n, uint32_t *cp);
/* Encodes cp into out (at least 4 bytes); returns the length (0 if invalid). */
size_t utf8_encode(uint32_t cp, char *out);
/* The length of the longest prefix of s[0..n) that does not end inside an
 * incomplete multi-byte sequence (for streaming output). */
size_t utf8_complete_prefix(const char *s, size_t n);
/* Python's str.isspace() for one code point: bidirectional type WS, B or S, or category Zs. */
bool utf8_is_py_space(uint32_t cp);

#endif
