#include "paths.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int dir_holding(const char *dir, const char *must_hold) {
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return 0;
    if (!must_hold) return 1;
    char p[PATH_MAX];
    if ((size_t)snprintf(p, sizeof p, "%s/%s", dir, must_hold) >= sizeof p) return 0;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

const char *cli_find_dir(const char *env, const char *rel, const char *must_hold, char *buf, size_t cap) {
    const char *e = env ? getenv(env) : NULL;
    if (e && *e) {
        if ((size_t)snprintf(buf, cap, "%s", e) >= cap) return NULL;
        return buf;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        for (int up = 1; up <= 4; up++) {
            char *slash = strrchr(exe, '/');
            if (!slash) break;
            *slash = '\0';
            if ((size_t)snprintf(buf, cap, "%s/%s", exe, rel) < cap && dir_holding(buf, must_hold)) return buf;
        }
    }
    if ((size_t)snprintf(buf, cap, "%s", rel) < cap && dir_holding(buf, must_hold)) return buf;
    return NULL;
}

const char *cli_default_model(const char *cmd, char *buf, size_t cap) {
    const char *d = cli_find_dir("VLMC_MODEL", CLI_DEFAULT_MODEL, "config.json", buf, cap);
    if (!d)
        fprintf(stderr, "vlmc %s: no model given (-m MODEL_DIR), and the default model %s is not beside this binary "
                        "nor in the current folder (`make model` trains it; VLMC_MODEL names another)\n", cmd,
                CLI_DEFAULT_MODEL);
    return d;
}
