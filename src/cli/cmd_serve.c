/* vlmc serve: the OpenAI-compatible HTTP server (see docs/SERVER.md). */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "paths.h"
#include "vlmc.h"
#include "commands.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: vlmc serve [-m MODEL] [--host 127.0.0.1] [--port 8080] [--parallel N] [--api-key KEY] [options]\n\n"
            "An OpenAI-compatible server: POST /v1/chat/completions (text and images, streaming),\n"
            "GET /v1/models, GET /health, and a chat page at /. MODEL is a model folder, or\n"
            "'echo' / 'echo:DELAY_MS' for the deterministic test backend. Ctrl-C stops it.\n\n"
            "  -m, --model MODEL        model folder, or echo[:DELAY_MS] (default: models/vlmc-tiny)\n"
            "  --host ADDR              address to listen on (default 127.0.0.1)\n"
            "  --port P                 port, 0 = any free port (default 8080)\n"
            "  --port-file FILE         write the port listened on to FILE once ready\n"
            "  --parallel N             requests generating at once (default 1)\n"
            "  --queue N                requests waiting for a slot before HTTP 503 (default 16, 0 = none)\n"
            "  --api-key KEY            require 'Authorization: Bearer KEY' on /v1/ (or env VLMC_API_KEY)\n"
            "  --allow-path DIR         allow file:// image URLs naming files under DIR\n"
            "  --web DIR                folder of the chat page (default: the repository's web/)\n"
            "  --ctx N                  context length in tokens (default: the model's; echo 4096)\n"
            "  --max-body BYTES         largest request body (default 33554432)\n"
            "  --max-images N           images per request (default 8)\n"
            "  --max-image-pixels N     width*height per image (default 33554432)\n"
            "  --max-request-pixels N   pixels over a request's images (default 4x the above)\n"
            "  --max-tokens-cap N       largest max_tokens accepted (default: the context)\n"
            "  --max-connections N      open connections (default 256)\n"
            "  --image-cache-mb N       decoded-image cache, 0 = off (default 256)\n"
            "  --timeout S              idle connection timeout in seconds (default 60)\n"
            "  --quiet                  log only errors and cancellations, not every request\n");
}

static int parse_u64(const char *opt, const char *s, unsigned long long lo, unsigned long long hi,
                     unsigned long long *out) {
    char *end;
    errno = 0;
    if (*s == '-') goto bad;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) goto bad;
    *out = v;
    return 1;
bad:
    fprintf(stderr, "vlmc serve: %s wants an integer in %llu..%llu, not '%s'\n", opt, lo, hi, s);
    return 0;
}

static volatile sig_atomic_t g_stop; /* the CLI's signal flag (not the library's) */
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static void log_line(void *ud, const char *line) {
    (void)ud;
    char ts[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof ts, "%H:%M:%S", &tm);
    flockfile(stderr);
    fprintf(stderr, "[%s] %s\n", ts, line);
    fflush(stderr);
    funlockfile(stderr);
}

/* The chat page's folder: $VLMC_WEB_DIR, else web/ of the source tree holding the binary, or ./web. */
static const char *default_web_dir(char *buf, size_t n) {
    return cli_find_dir("VLMC_WEB_DIR", "web", "index.html", buf, n);
}

int cmd_serve(int argc, char **argv) {
    vlmc_server_params p;
    vlmc_server_default_params(&p);
    p.port = 8080;
    p.log = log_line;
    const char *port_file = NULL, *web = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--quiet")) {
            p.log_requests = 0;
            continue;
        }
        if (a[0] != '-') {
            fprintf(stderr, "vlmc serve: unexpected argument '%s' (see vlmc serve --help)\n", a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "vlmc serve: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        unsigned long long u = 0;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) p.model = v;
        else if (!strcmp(a, "--host")) p.host = v;
        else if (!strcmp(a, "--port")) {
            if (!parse_u64(a, v, 0, 65535, &u)) return 2;
            p.port = (int)u;
        } else if (!strcmp(a, "--port-file")) port_file = v;
        else if (!strcmp(a, "--parallel")) {
            if (!parse_u64(a, v, 1, 256, &u)) return 2;
            p.parallel = (int)u;
        } else if (!strcmp(a, "--queue")) {
            if (!parse_u64(a, v, 0, 100000, &u)) return 2;
            p.max_queue = u ? (int)u : -1;
        } else if (!strcmp(a, "--api-key")) p.api_key = v;
        else if (!strcmp(a, "--allow-path")) p.allow_path = v;
        else if (!strcmp(a, "--web")) web = v;
        else if (!strcmp(a, "--ctx")) {
            if (!parse_u64(a, v, 1, 1 << 24, &u)) return 2;
            p.n_ctx = (int)u;
        } else if (!strcmp(a, "--max-body")) {
            if (!parse_u64(a, v, 1024, 1ull << 32, &u)) return 2;
            p.max_body_bytes = (size_t)u;
        } else if (!strcmp(a, "--max-images")) {
            if (!parse_u64(a, v, 1, 1000, &u)) return 2;
            p.max_images = (int)u;
        } else if (!strcmp(a, "--max-image-pixels")) {
            if (!parse_u64(a, v, 1, 1ull << 40, &u)) return 2;
            p.max_image_pixels = u;
        } else if (!strcmp(a, "--max-request-pixels")) {
            if (!parse_u64(a, v, 1, 1ull << 42, &u)) return 2;
            p.max_request_pixels = u;
        } else if (!strcmp(a, "--max-tokens-cap")) {
            if (!parse_u64(a, v, 1, 1 << 24, &u)) return 2;
            p.max_tokens_cap = (int)u;
        } else if (!strcmp(a, "--max-connections")) {
            if (!parse_u64(a, v, 1, 100000, &u)) return 2;
            p.max_connections = (int)u;
        } else if (!strcmp(a, "--image-cache-mb")) {
            if (!parse_u64(a, v, 0, 1 << 20, &u)) return 2;
            p.image_cache_mb = u ? (int)u : -1;
        } else if (!strcmp(a, "--timeout")) {
            if (!parse_u64(a, v, 1, 86400, &u)) return 2;
            p.timeout_s = (int)u;
        } else {
            fprintf(stderr, "vlmc serve: unknown option '%s' (see vlmc serve --help)\n", a);
            return 2;
        }
    }
    char modelbuf[PATH_MAX];
    if (!p.model && !(p.model = cli_default_model("serve", modelbuf, sizeof modelbuf))) return 2;
    if (!p.api_key) p.api_key = getenv("VLMC_API_KEY");
    char webbuf[PATH_MAX];
    p.web_dir = web ? web : default_web_dir(webbuf, sizeof webbuf);

    /* Signals go to this thread only: block them before the server's threads start. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    vlmc_server *srv = NULL;
    vlmc_error err;
    if (vlmc_server_start(&p, &srv, &err) != VLMC_OK) {
        fprintf(stderr, "vlmc serve: %s\n", err.message);
        return 1;
    }
    int port = vlmc_server_port(srv);
    const char *host = p.host ? p.host : "127.0.0.1";
    int v6 = strchr(host, ':') != NULL;
    fprintf(stderr, "vlmc serve: model %s, listening on http://%s%s%s:%d/ (%d slot%s%s)\n", vlmc_server_model_id(srv),
            v6 ? "[" : "", host, v6 ? "]" : "", port, p.parallel > 1 ? p.parallel : 1, p.parallel > 1 ? "s" : "",
            p.web_dir ? "" : ", no chat page: --web DIR");
    fflush(stderr);
    if (port_file) {
        char tmp[PATH_MAX + 8];
        snprintf(tmp, sizeof tmp, "%.*s.tmp", PATH_MAX - 1, port_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) || rename(tmp, port_file)) {
            fprintf(stderr, "vlmc serve: cannot write %s\n", port_file);
            vlmc_server_stop(srv);
            return 1;
        }
    }
    while (!g_stop) sigsuspend(&old);
    fprintf(stderr, "vlmc serve: stopping\n");
    vlmc_server_stop(srv);
    fprintf(stderr, "vlmc serve: stopped\n");
    return 0;
}
