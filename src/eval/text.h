/* Internal helpers of src/eval: the pieces of Python's str semantics that the
 * reference scorers rely on (isspace, split, strip, lower, find), on UTF-8. */
#ifndef VLMC_EVAL_TEXT_H
#define VLMC_EVAL_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Decodes one code point at s[0..n) (n > 0); a byte that does not start a
 * well-formed sequence decodes as 0x110000 + byte, length 1. */
size_t evtext_next(const char *s, size_t n, uint32_t *cp);
/* Python str.isspace() for one code point. */
bool evtext_is_space(uint32_t cp);
/* Simple lower-case mapping (utf8proc); non-code-points map to themselves. */
uint32_t evtext_lower(uint32_t cp);
/* Number of code points (as evtext_next counts them). */
size_t evtext_cp_count(const char *s, size_t n);
/* Python strip(): trims whitespace from both ends of s[0..*n); returns the new start. */
const char *evtext_strip(const char *s, size_t *n);

/* Python split(): the next whitespace-separated word at or after *pos in
 * s[0..n); false when none. */
bool evtext_next_word(const char *s, size_t n, size_t *pos, size_t *word_start, size_t *word_len);

/* Case-insensitive (per code point) search of needle in hay; the byte offset of
 * the first (last when `last`) match, or -1. An empty needle matches at 0 (at
 * hay_len when last), as Python's find/rfind. */
ssize_t evtext_ci_find(const char *hay, size_t hay_len, const char *needle, size_t needle_len, bool last);
/* Byte-exact search (memmem), first or last; -1 when absent. */
ssize_t evtext_find(const char *hay, size_t hay_len, const char *needle, size_t needle_len, bool last);

#endif
