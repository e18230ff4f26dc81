#include "testlib.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <math.h>
#include <sys/stat.h>

static const char *suite_name;
static int n_pass, n_fail, n_skip;
static int case_failed, case_skipped;
static char skip_reason[512];
static char tmpdir[256];

void tests_begin(const char *suite) {
    suite_name = suite;
    setvbuf(stdout, NULL, _IOLBF, 0);
}

int tests_end(void) {
    if (tmpdir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    }
    printf("RESULT %d %d %d\n", n_pass, n_fail, n_skip);
    return n_fail ? 1 : 0;
}

void test_run(const char *name, void (*fn)(void)) {
    case_failed = 0;
    case_skipped = 0;
    fn();
    if (case_failed) {
        n_fail++;
        printf("FAIL %s/%s\n", suite_name, name);
    } else if (case_skipped) {
        n_skip++;
        printf("skip %s/%s: %s\n", suite_name, name, skip_reason);
    } else {
        n_pass++;
        printf("ok   %s/%s\n", suite_name, name);
    }
}

bool check_at(bool cond, const char *file, int line, const char *fmt, ...) {
    if (cond) return true;
    case_failed = 1;
    va_list ap;
    va_start(ap, fmt);
    printf("    %s:%d: ", file, line);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    return false;
}

void test_skip(const char *fmt, ...) {
    case_skipped = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(skip_reason, sizeof skip_reason, fmt, ap);
    va_end(ap);
}

const char *shared_dir(void) {
    const char *env = getenv("VLMC_SHARED");
    const char *d = env ? env : "../shared";
    struct stat st;
    if (stat(d, &st) != 0 || !S_ISDIR(st.st_mode)) {
        test_skip("%s is absent", d);
        return NULL;
    }
    return d;
}

const char *shared_path(const char *rel) {
    static char buf[4096];
    const char *d = shared_dir();
    if (!d) return NULL;
    snprintf(buf, sizeof buf, "%s/%s", d, rel);
    return buf;
}

const char *test_tmpdir(void) {
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/vlmc-test-%s-XXXXXX", suite_name ? suite_name : "x");
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            abort();
        }
    }
    return tmpdir;
}

char *test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        if (len) *len = (size_t)n;
    }
    return buf;
}

float max_abs_diff(const float *a, const float *b, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (!(d <= m)) m = d; /* NaN propagates */
    }
    return m;
}

float max_abs(const float *a, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabsf(a[i]) > m) m = fabsf(a[i]);
    return m;
}
