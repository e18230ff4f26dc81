/* A tiny test library. Each tests/test_*.c is its own program: it calls
 * tests_begin, runs cases with TEST_RUN, and returns tests_end(). Each case
 * prints "ok", "FAIL" or "skip"; the last line is "RESULT <passed> <failed> <skipped>",
 * which tests/run.sh adds up. */
#ifndef VLMC_TESTLIB_H
#define VLMC_TESTLIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void tests_begin(const char *suite);
int tests_end(void);

/* 1 under AddressSanitizer (slow: long tests shorten their runs), else 0. */
#if defined(__SANITIZE_ADDRESS__)
#define TESTS_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TESTS_UNDER_ASAN 1
#endif
#endif
#ifndef TESTS_UNDER_ASAN
#define TESTS_UNDER_ASAN 0
#endif

/* Runs one case; the case reports failures through check* and may call test_skip. */
void test_run(const char *name, void (*fn)(void));
#define TEST_RUN(fn) test_run(#fn, fn)

/* Records a failure (with file:line) when cond is false; returns cond. */
bool check_at(bool cond, const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#define CHECK(cond, ...) check_at((cond), __FILE__, __LINE__, __VA_ARGS__)
/* Marks the running case skipped with a reason (e.g. ../shared is absent). */
void test_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ../shared, or NULL (and the case skipped) when absent. Paths are built under it. */
const char *shared_dir(void);
/* Joins shared_dir() and rel into a static buffer; NULL when ../shared is absent. */
const char *shared_path(const char *rel);
/* A fresh temporary directory for the running test program. */
const char *test_tmpdir(void);

/* Reads a whole file (malloc'ed, NUL-terminated); NULL on failure. */
char *test_read_file(const char *path, size_t *len);

/* max |a-b| and max |b| over n floats. */
float max_abs_diff(const float *a, const float *b, size_t n);
float max_abs(const float *a, size_t n);

#endif
