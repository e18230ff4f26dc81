/* `vlmc serve`: the HTTP side, on libmicrohttpd (thread per connection, so a
 * connection thread may block while its request waits for a slot or streams).
 * Routing, authentication, body accumulation with a size limit, image loading
 * through the cache, admission into the bounded queue, the worker threads (one
 * per slot) and the streaming responses. */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "core/error.h"
#include "core/sha256.h"
#include "core/strbuf.h"
#include "server/backend.h"
#include "server/image_cache.h"
#include "server/openai.h"
#include "server/queue.h"
#include "vision/image.h"

#define DEFAULT_MAX_BODY (32u << 20)

struct vlmc_server {
    vlmc_server_params p;
    char *model, *host, *api_key, *allow_real, *web_dir; /* owned copies */
    server_backend be;
    int have_backend;
    struct MHD_Daemon *d;
    MHD_socket quiesced_fd;
    int port;
    int64_t started;
    image_cache *cache;
    job_queue q;
    atomic_int stopping;
    atomic_int inflight; /* chat requests admitted whose response is not finished */
    pthread_t *workers;
    int n_workers;
    struct worker_arg *wargs;
    atomic_uint_fast64_t n_requests, n_chat, n_completed, n_cancelled, n_rejected, n_client_errors, n_server_errors,
        next_id;
};

struct worker_arg {
    vlmc_server *s;
    int slot;
};

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void slog(vlmc_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void slog(vlmc_server *s, const char *fmt, ...) {
    if (!s->p.log) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    s->p.log(s->p.log_ud, line);
}

static void mhd_logger(void *cls, const char *fmt, va_list ap) {
    vlmc_server *s = cls;
    if (!s->p.log) return;
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    slog(s, "microhttpd: %s", line);
}

/* ---- per-request state ---- */

enum route { R_NONE, R_CHAT };

typedef struct req_state {
    enum route route;
    strbuf body;
    bool too_big;
    int status;
    int64_t t0;
    char method[8];
    char path[96];
    job *job;          /* the chat job, when admitted */
    bool stream;
} req_state;

static bool conn_alive(int fd) {
    if (fd < 0) return true;
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return true;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return false;
    if (p.revents & POLLIN) {
        char c;
        ssize_t k = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (k == 0) return false;
        if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return false;
    }
    return true;
}

static int conn_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? (int)ci->connect_fd : -1;
}

/* The client is gone (or the connection ended): the job stops at its next piece,
 * or leaves the queue now. */
static void job_cancel(vlmc_server *s, job *j) {
    pthread_mutex_lock(&j->mu);
    bool done = j->done;
    pthread_mutex_unlock(&j->mu);
    if (done) return;
    if (!atomic_exchange(&j->cancelled, 1)) atomic_fetch_add(&s->n_cancelled, 1);
    if (jq_remove(&s->q, j)) {
        job_finish(j, VLMC_OK, NULL, NULL);
        jq_done(&s->q);
        job_unref(j);
    }
}

static enum MHD_Result respond(struct MHD_Connection *c, req_state *rs, int status, const char *ctype, char *body,
                               size_t len) {
    if (!body) {
        status = 500;
        body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,"
                      "\"code\":null}}");
        if (!body) return MHD_NO;
        len = strlen(body);
        ctype = "application/json";
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (status == 401) MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (status == 503) MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (status == 405)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, rs->route == R_CHAT ? "POST" : "GET, HEAD");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    rs->status = status;
    return ret;
}

static enum MHD_Result respond_error(vlmc_server *s, struct MHD_Connection *c, req_state *rs, const api_error *e) {
    /* a 503 is the intended answer of a full queue: counted as rejected, not as a server error */
    if (e->status == 503) atomic_fetch_add(&s->n_rejected, 1);
    else if (e->status >= 500) atomic_fetch_add(&s->n_server_errors, 1);
    else atomic_fetch_add(&s->n_client_errors, 1);
    if (!s->p.log_requests && e->status != 503)
        slog(s, "%s %s -> %d %s", rs->method, rs->path, e->status, e->message);
    char *j = openai_error_json(e);
    return respond(c, rs, e->status, "application/json", j, j ? strlen(j) : 0);
}

static enum MHD_Result respond_json(struct MHD_Connection *c, req_state *rs, int status, char *json) {
    return respond(c, rs, status, "application/json", json, json ? strlen(json) : 0);
}

/* ---- images ---- */

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The encoded bytes an image URL names (malloc'ed), or false with e set. */
static bool image_bytes(vlmc_server *s, const char *url, image_url_kind kind, const char *param, uint8_t **data,
                        size_t *len, api_error *e) {
    vlmc_error err;
    if (kind == IMG_URL_DATA) {
        const char *comma = strchr(url, ',');
        if (!comma) {
            api_error_set(e, 400, "invalid_request_error", "invalid_image_url", param,
                          "Invalid '%s': a data: URL needs a ',' before its payload.", param);
            return false;
        }
        size_t hl = (size_t)(comma - url);
        if (hl < 7 || strncmp(comma - 7, ";base64", 7)) {
            api_error_set(e, 400, "invalid_request_error", "invalid_image_url", param,
                          "Invalid '%s': only base64 data: URLs are accepted (data:image/png;base64,...).", param);
            return false;
        }
        if (base64_decode(comma + 1, strlen(comma + 1), data, len, &err) != VLMC_OK) {
            api_error_set(e, 400, "invalid_request_error", "invalid_image_url", param, "Invalid '%s': %s", param,
                          err.message);
            return false;
        }
        return true;
    }
    /* file://[localhost]/path, percent-decoded, under --allow-path. */
    if (!s->allow_real) {
        api_error_set(e, 403, "permission_error", "file_url_not_allowed", param,
                      "Invalid '%s': file:// image URLs are disabled on this server (start it with --allow-path DIR).",
                      param);
        return false;
    }
    const char *p = url + 7;
    if (!strncasecmp(p, "localhost/", 10)) p += 9;
    if (*p != '/') {
        api_error_set(e, 400, "invalid_request_error", "invalid_image_url", param,
                      "Invalid '%s': a file:// URL needs an absolute path (file:///dir/image.png).", param);
        return false;
    }
    size_t n = strlen(p);
    char *path = malloc(n + 1);
    if (!path) {
        api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    size_t k = 0;
    bool nul = false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '%' && i + 2 < n && hexval(p[i + 1]) >= 0 && hexval(p[i + 2]) >= 0) {
            path[k] = (char)(hexval(p[i + 1]) * 16 + hexval(p[i + 2]));
            nul |= path[k] == '\0';
            k++;
            i += 2;
        } else {
            path[k++] = p[i];
        }
    }
    path[k] = '\0';
    char real[PATH_MAX];
    bool inside = false;
    if (!nul && realpath(path, real)) {
        size_t al = strlen(s->allow_real);
        inside = !strncmp(real, s->allow_real, al) && (real[al] == '/' || !strcmp(s->allow_real, "/"));
    }
    free(path);
    if (!inside) {
        api_error_set(e, 403, "permission_error", "file_url_not_allowed", param,
                      "Invalid '%s': the file does not exist or is outside the directory this server allows.", param);
        return false;
    }
    FILE *f = fopen(real, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        if (f) fclose(f);
        api_error_set(e, 400, "invalid_request_error", "invalid_image_url", param,
                      "Invalid '%s': cannot read the file.", param);
        return false;
    }
    size_t max = s->p.max_body_bytes;
    if ((uint64_t)st.st_size > max) {
        fclose(f);
        api_error_set(e, 400, "invalid_request_error", "image_too_large", param,
                      "Invalid '%s': the file is larger than %zu bytes.", param, max);
        return false;
    }
    *len = (size_t)st.st_size;
    *data = malloc(*len ? *len : 1);
    if (!*data || fread(*data, 1, *len, f) != *len) {
        fclose(f);
        free(*data);
        *data = NULL;
        api_error_set(e, 400, "invalid_request_error", "invalid_image_url", param,
                      "Invalid '%s': cannot read the file.", param);
        return false;
    }
    fclose(f);
    return true;
}

static bool load_images(vlmc_server *s, openai_request *r, api_error *e) {
    uint64_t total = 0;
    for (int k = 0; k < r->chat.n_images; k++) {
        const char *param = r->image_params[k];
        uint8_t *data = NULL;
        size_t len = 0;
        if (!image_bytes(s, r->image_urls[k], r->image_kinds[k], param, &data, &len, e)) return false;
        server_image *si = &r->chat.images[k];
        sha256_hex(data, len, si->sha256);
        image_cache_entry *ce = image_cache_get(s->cache, si->sha256);
        if (!ce) {
            vlmc_image_limits lim = {s->p.max_image_pixels, s->p.max_body_bytes};
            vlmc_image *im = NULL;
            vlmc_error err;
            vlmc_status st = vlmc_image_load_memory(data, len, param, &lim, &im, &err);
            if (st != VLMC_OK) {
                free(data);
                if (st == VLMC_ERR_LIMIT)
                    api_error_set(e, 400, "invalid_request_error", "image_too_large", param,
                                  "Invalid '%s': %s (at most %llu pixels per image)", param, err.message,
                                  (unsigned long long)s->p.max_image_pixels);
                else
                    api_error_set(e, 400, "invalid_request_error", "invalid_image", param,
                                  "Invalid '%s': the image could not be decoded: %s", param, err.message);
                return false;
            }
            ce = image_cache_put(s->cache, si->sha256, im);
            if (!ce) {
                free(data);
                api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
                return false;
            }
        }
        free(data);
        si->cache_entry = ce;
        si->image = image_cache_image(ce);
        uint64_t px = (uint64_t)vlmc_image_width(si->image) * (uint64_t)vlmc_image_height(si->image);
        if (px > s->p.max_image_pixels) {
            api_error_set(e, 400, "invalid_request_error", "image_too_large", param,
                          "Invalid '%s': the image has %llu pixels, more than the %llu allowed.", param,
                          (unsigned long long)px, (unsigned long long)s->p.max_image_pixels);
            return false;
        }
        total += px;
        if (total > s->p.max_request_pixels) {
            api_error_set(e, 400, "invalid_request_error", "image_too_large", "messages",
                          "The request's images have more than the %llu pixels allowed per request.",
                          (unsigned long long)s->p.max_request_pixels);
            return false;
        }
    }
    return true;
}

static void release_images(vlmc_server *s, openai_request *r) {
    for (int k = 0; k < r->chat.n_images; k++)
        if (r->chat.images[k].cache_entry) {
            image_cache_release(s->cache, r->chat.images[k].cache_entry);
            r->chat.images[k].cache_entry = NULL;
            r->chat.images[k].image = NULL;
        }
}

/* ---- workers ---- */

static void *worker_main(void *arg) {
    struct worker_arg *wa = arg;
    vlmc_server *s = wa->s;
    for (;;) {
        job *j = jq_pop(&s->q);
        if (!j) break;
        pthread_mutex_lock(&j->mu);
        j->started = true;
        pthread_mutex_unlock(&j->mu);
        if (atomic_load(&j->cancelled)) {
            job_finish(j, VLMC_OK, NULL, NULL);
        } else {
            server_chat_result res = {"stop", 0, 0};
            vlmc_error err;
            vlmc_error_clear(&err);
            vlmc_status st = s->be.chat(s->be.ctx, wa->slot, &j->req.chat, job_on_text, j, &res, &err);
            if (st != VLMC_OK && !err.message[0]) vlmc_fail(&err, st, "generation failed (%s)", vlmc_status_name(st));
            job_finish(j, st, &err, &res);
            if (st == VLMC_OK && !atomic_load(&j->cancelled)) atomic_fetch_add(&s->n_completed, 1);
        }
        jq_done(&s->q);
        job_unref(j);
    }
    return NULL;
}

/* ---- chat completions ---- */

struct stream_ctx {
    vlmc_server *s;
    job *j;
    int fd;
};

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    struct stream_ctx *sc = cls;
    job *j = sc->j;
    pthread_mutex_lock(&j->mu);
    for (;;) {
        if (j->out.len > 0) {
            size_t n = j->out.len < max ? j->out.len : max;
            memcpy(buf, j->out.data, n);
            memmove(j->out.data, j->out.data + n, j->out.len - n);
            j->out.len -= n;
            pthread_mutex_unlock(&j->mu);
            return (ssize_t)n;
        }
        if (j->done) {
            pthread_mutex_unlock(&j->mu);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        if (pthread_cond_timedwait(&j->cv, &j->mu, &ts) == ETIMEDOUT && !conn_alive(sc->fd)) {
            pthread_mutex_unlock(&j->mu);
            job_cancel(sc->s, j);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
}

static void stream_free(void *cls) {
    struct stream_ctx *sc = cls;
    job_cancel(sc->s, sc->j); /* no-op when it finished */
    job_unref(sc->j);
    free(sc);
}

static void make_id(vlmc_server *s, char *out, size_t n) {
    uint64_t k = atomic_fetch_add(&s->next_id, 1);
    snprintf(out, n, "chatcmpl-%08llx%016llx", (unsigned long long)(s->started & 0xffffffff),
             (unsigned long long)((k + 1) * 0x9E3779B97F4A7C15ull));
}

static enum MHD_Result handle_chat(vlmc_server *s, struct MHD_Connection *c, req_state *rs) {
    atomic_fetch_add(&s->n_chat, 1);
    api_error e;
    openai_request req;
    openai_limits lim = {s->p.max_images, 4, s->p.max_tokens_cap};
    if (!openai_parse_chat(rs->body.data ? rs->body.data : "", rs->body.len, &lim, &req, &e))
        return respond_error(s, c, rs, &e);
    strbuf_free(&rs->body);
    if (!load_images(s, &req, &e)) {
        release_images(s, &req);
        openai_request_free(&req);
        return respond_error(s, c, rs, &e);
    }
    int n_ctx = s->be.n_ctx > 0 ? s->be.n_ctx : 4096;
    int prompt = -1;
    if (s->be.count_prompt_tokens) {
        vlmc_error err;
        vlmc_error_clear(&err);
        vlmc_status st = s->be.count_prompt_tokens(s->be.ctx, &req.chat, &prompt, &err);
        if (st != VLMC_OK) {
            if (st == VLMC_ERR_LIMIT || st == VLMC_ERR_ARG || st == VLMC_ERR_FORMAT)
                api_error_set(&e, 400, "invalid_request_error", NULL, "messages", "%s", err.message);
            else
                api_error_set(&e, 500, "server_error", NULL, NULL, "%s", err.message);
            release_images(s, &req);
            openai_request_free(&req);
            return respond_error(s, c, rs, &e);
        }
        if (prompt >= n_ctx) {
            api_error_set(&e, 400, "invalid_request_error", "context_length_exceeded", "messages",
                          "This model's maximum context length is %d tokens. However, your messages resulted in %d "
                          "tokens. Please reduce the length of the messages.", n_ctx, prompt);
            release_images(s, &req);
            openai_request_free(&req);
            return respond_error(s, c, rs, &e);
        }
    }
    int room = prompt >= 0 ? n_ctx - prompt : n_ctx;
    if (!req.has_max_tokens || req.chat.max_tokens > room) req.chat.max_tokens = room;
    char id[48];
    make_id(s, id, sizeof id);
    bool stream = req.stream;
    job *j = job_new(&req, s->cache, id, (int64_t)time(NULL), s->be.model_id, &s->stopping);
    if (!j) {
        release_images(s, &req);
        openai_request_free(&req);
        api_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
        return respond_error(s, c, rs, &e);
    }
    int rc = jq_push(&s->q, j);
    if (rc) {
        job_unref(j);
        if (rc == -1)
            api_error_set(&e, 503, "server_error", "server_overloaded", NULL,
                          "The server is busy: all %d slots are generating and the queue is full. Retry later.",
                          s->n_workers);
        else
            api_error_set(&e, 503, "server_error", "server_shutting_down", NULL, "The server is shutting down.");
        return respond_error(s, c, rs, &e);
    }
    rs->job = j; /* the connection's reference */
    atomic_fetch_add(&s->inflight, 1);
    rs->stream = stream;
    int fd = conn_fd(c);
    if (stream) {
        struct stream_ctx *sc = malloc(sizeof *sc);
        if (!sc) return MHD_NO;
        sc->s = s;
        sc->j = j;
        sc->fd = fd;
        job_ref(j);
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_reader, sc,
                                                                   stream_free);
        if (!r) {
            stream_free(sc);
            return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(r, "X-Accel-Buffering", "no");
        enum MHD_Result ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        rs->status = 200;
        return ret;
    }
    /* Not streaming: wait here (this connection's own thread) for the answer. */
    pthread_mutex_lock(&j->mu);
    while (!j->done) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        if (pthread_cond_timedwait(&j->cv, &j->mu, &ts) == ETIMEDOUT && !conn_alive(fd)) {
            pthread_mutex_unlock(&j->mu);
            job_cancel(s, j);
            rs->status = 499;
            return MHD_NO; /* closes the connection */
        }
    }
    pthread_mutex_unlock(&j->mu);
    if (atomic_load(&j->cancelled)) {
        api_error_set(&e, 503, "server_error", "server_shutting_down", NULL, "The server is shutting down.");
        return respond_error(s, c, rs, &e);
    }
    if (j->status != VLMC_OK) {
        bool client = (j->status == VLMC_ERR_LIMIT || j->status == VLMC_ERR_ARG) && j->out.len == 0;
        api_error_set(&e, client ? 400 : 500, client ? "invalid_request_error" : "server_error", NULL, NULL, "%s",
                      j->err.message);
        return respond_error(s, c, rs, &e);
    }
    char *body = openai_completion_json(j->id, j->created, j->model_id, j->out.data, j->out.len,
                                        j->res.finish_reason, j->res.prompt_tokens, j->res.completion_tokens);
    return respond_json(c, rs, 200, body);
}

/* ---- other routes ---- */

static char *health_json(vlmc_server *s) {
    int queued = 0, admitted = 0;
    jq_counts(&s->q, &queued, &admitted);
    image_cache_stats cs;
    image_cache_get_stats(s->cache, &cs);
    strbuf b = {0};
    strbuf_printf(&b,
                  "{\"status\":\"%s\",\"model\":\"%s\",\"slots\":%d,\"slots_busy\":%d,\"queued\":%d,"
                  "\"queue_capacity\":%d,\"requests\":%llu,\"chat_requests\":%llu,\"completed\":%llu,"
                  "\"cancelled\":%llu,\"rejected\":%llu,\"client_errors\":%llu,\"server_errors\":%llu,"
                  "\"image_cache\":{\"hits\":%llu,\"misses\":%llu,\"evictions\":%llu,\"entries\":%zu,\"bytes\":%zu}}",
                  atomic_load(&s->stopping) ? "shutting_down" : "ok", s->be.model_id, s->n_workers,
                  admitted - queued, queued, s->q.capacity - s->n_workers,
                  (unsigned long long)atomic_load(&s->n_requests), (unsigned long long)atomic_load(&s->n_chat),
                  (unsigned long long)atomic_load(&s->n_completed), (unsigned long long)atomic_load(&s->n_cancelled),
                  (unsigned long long)atomic_load(&s->n_rejected),
                  (unsigned long long)atomic_load(&s->n_client_errors),
                  (unsigned long long)atomic_load(&s->n_server_errors), (unsigned long long)cs.hits,
                  (unsigned long long)cs.misses, (unsigned long long)cs.evictions, cs.entries, cs.bytes);
    return strbuf_take(&b);
}

static enum MHD_Result serve_static(vlmc_server *s, struct MHD_Connection *c, req_state *rs, const char *name,
                                    const char *ctype) {
    api_error e;
    if (!s->web_dir) {
        api_error_set(&e, 404, "invalid_request_error", "not_found", NULL,
                      "The chat page is not available: start the server with --web DIR.");
        return respond_error(s, c, rs, &e);
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", s->web_dir, name);
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) || !S_ISREG(st.st_mode) || st.st_size > (16 << 20)) {
        if (f) fclose(f);
        api_error_set(&e, 404, "invalid_request_error", "not_found", NULL, "%s is missing from the web folder.",
                      name);
        return respond_error(s, c, rs, &e);
    }
    size_t n = (size_t)st.st_size;
    char *data = malloc(n ? n : 1);
    if (!data || fread(data, 1, n, f) != n) {
        fclose(f);
        free(data);
        api_error_set(&e, 500, "server_error", NULL, NULL, "cannot read %s", name);
        return respond_error(s, c, rs, &e);
    }
    fclose(f);
    return respond(c, rs, 200, ctype, data, n);
}

static bool auth_ok(vlmc_server *s, struct MHD_Connection *c, api_error *e) {
    if (!s->api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h) {
        api_error_set(e, 401, "invalid_request_error", "missing_api_key", NULL,
                      "You didn't provide an API key. Send it in the Authorization header: \"Bearer KEY\".");
        return false;
    }
    size_t kl = strlen(s->api_key), hl = strlen(h);
    unsigned diff = (hl != kl + 7) | (strncasecmp(h, "Bearer ", 7 < hl ? 7 : hl) != 0);
    for (size_t i = 0; i < kl; i++) diff |= (unsigned char)(i + 7 < hl ? h[i + 7] : 0) ^ (unsigned char)s->api_key[i];
    if (diff) {
        api_error_set(e, 401, "invalid_request_error", "invalid_api_key", NULL, "Incorrect API key provided.");
        return false;
    }
    return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    (void)version;
    vlmc_server *s = cls;
    req_state *rs = *con_cls;
    api_error e;
    if (!rs) {
        rs = calloc(1, sizeof *rs);
        if (!rs) return MHD_NO;
        *con_cls = rs;
        rs->t0 = now_ms();
        snprintf(rs->method, sizeof rs->method, "%s", method);
        snprintf(rs->path, sizeof rs->path, "%s", url);
        atomic_fetch_add(&s->n_requests, 1);
        bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
        if (!strcmp(url, "/v1/chat/completions")) {
            rs->route = R_CHAT;
            if (strcmp(method, "POST")) {
                api_error_set(&e, 405, "invalid_request_error", "method_not_allowed", NULL,
                              "Method %s is not allowed on %s (use POST).", method, url);
                return respond_error(s, c, rs, &e);
            }
            if (!auth_ok(s, c, &e)) return respond_error(s, c, rs, &e);
            const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
            if (cl && strtoull(cl, NULL, 10) > s->p.max_body_bytes) {
                api_error_set(&e, 413, "invalid_request_error", "request_too_large", NULL,
                              "The request body is larger than the %zu bytes this server accepts.",
                              s->p.max_body_bytes);
                return respond_error(s, c, rs, &e);
            }
            return MHD_YES; /* the body follows */
        }
        bool api = !strncmp(url, "/v1/", 4);
        if (!strcmp(url, "/health") || !strcmp(url, "/v1/models") || !strncmp(url, "/v1/models/", 11) ||
            !strcmp(url, "/") || !strcmp(url, "/index.html") || !strcmp(url, "/app.js") ||
            !strcmp(url, "/style.css")) {
            if (!get) {
                api_error_set(&e, 405, "invalid_request_error", "method_not_allowed", NULL,
                              "Method %s is not allowed on %s (use GET).", method, url);
                return respond_error(s, c, rs, &e);
            }
            if (api && !auth_ok(s, c, &e)) return respond_error(s, c, rs, &e);
            if (!strcmp(url, "/health")) return respond_json(c, rs, atomic_load(&s->stopping) ? 503 : 200,
                                                             health_json(s));
            if (!strcmp(url, "/v1/models")) return respond_json(c, rs, 200, openai_models_json(s->be.model_id,
                                                                                               s->started / 1000));
            if (!strncmp(url, "/v1/models/", 11)) {
                if (strcmp(url + 11, s->be.model_id)) {
                    api_error_set(&e, 404, "invalid_request_error", "model_not_found", "model",
                                  "The model '%.100s' does not exist.", url + 11);
                    return respond_error(s, c, rs, &e);
                }
                return respond_json(c, rs, 200, openai_model_json(s->be.model_id, s->started / 1000));
            }
            if (!strcmp(url, "/app.js")) return serve_static(s, c, rs, "app.js", "text/javascript; charset=utf-8");
            if (!strcmp(url, "/style.css")) return serve_static(s, c, rs, "style.css", "text/css; charset=utf-8");
            return serve_static(s, c, rs, "index.html", "text/html; charset=utf-8");
        }
        api_error_set(&e, 404, "invalid_request_error", "not_found", NULL, "Unknown route: %s %.80s", method, url);
        return respond_error(s, c, rs, &e);
    }
    if (rs->route != R_CHAT) { /* a body on a request already answered: drop it */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!rs->too_big && rs->body.len + *upload_data_size > s->p.max_body_bytes) {
            rs->too_big = true;
            strbuf_free(&rs->body);
        }
        if (!rs->too_big) strbuf_append(&rs->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (rs->status) return MHD_YES; /* already answered */
    if (rs->too_big) {
        api_error_set(&e, 413, "invalid_request_error", "request_too_large", NULL,
                      "The request body is larger than the %zu bytes this server accepts.", s->p.max_body_bytes);
        return respond_error(s, c, rs, &e);
    }
    if (rs->body.failed) {
        api_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
        return respond_error(s, c, rs, &e);
    }
    return handle_chat(s, c, rs);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)c;
    vlmc_server *s = cls;
    req_state *rs = *con_cls;
    if (!rs) return;
    *con_cls = NULL;
    bool cancelled = false;
    if (rs->job) {
        cancelled = atomic_load(&rs->job->cancelled) != 0;
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
            job_cancel(s, rs->job);
            cancelled = true;
        }
    }
    if (s->p.log_requests || cancelled) {
        if (rs->job) {
            job *j = rs->job;
            pthread_mutex_lock(&j->mu);
            server_chat_result res = j->res;
            bool done = j->done;
            pthread_mutex_unlock(&j->mu);
            slog(s, "%s %s %d %lldms %s prompt=%d completion=%d finish=%s%s", rs->method, rs->path, rs->status,
                 (long long)(now_ms() - rs->t0), rs->stream ? "stream" : "json", res.prompt_tokens,
                 res.completion_tokens, done && res.finish_reason ? res.finish_reason : "-",
                 cancelled ? " cancelled (client gone)" : "");
        } else if (s->p.log_requests) {
            slog(s, "%s %s %d %lldms", rs->method, rs->path, rs->status, (long long)(now_ms() - rs->t0));
        }
    }
    if (rs->job) atomic_fetch_sub(&s->inflight, 1);
    job_unref(rs->job);
    strbuf_free(&rs->body);
    free(rs);
}

/* ---- start / stop ---- */

void vlmc_server_default_params(vlmc_server_params *p) {
    memset(p, 0, sizeof *p);
    p->log_requests = 1;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static void server_free(vlmc_server *s) {
    if (s->have_backend && s->be.destroy) s->be.destroy(s->be.ctx);
    image_cache_free(s->cache);
    jq_destroy(&s->q);
    free(s->workers);
    free(s->wargs);
    free(s->model);
    free(s->host);
    free(s->api_key);
    free(s->allow_real);
    free(s->web_dir);
    free(s);
}

vlmc_status vlmc_server_start(const vlmc_server_params *p, vlmc_server **out, vlmc_error *err) {
    if (!p || !out || !p->model) return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_server_start: no model given");
    *out = NULL;
    if (p->port < 0 || p->port > 65535)
        return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_server_start: port %d is not 0..65535", p->port);
    vlmc_server *s = calloc(1, sizeof *s);
    if (!s) return vlmc_fail(err, VLMC_ERR_NOMEM, "vlmc_server_start: out of memory");
    s->p = *p;
    s->quiesced_fd = MHD_INVALID_SOCKET;
    if (s->p.parallel <= 0) s->p.parallel = 1;
    if (s->p.parallel > 256) s->p.parallel = 256;
    if (s->p.max_queue == 0) s->p.max_queue = 16;
    if (s->p.max_queue < 0) s->p.max_queue = 0;
    if (s->p.max_connections <= 0) s->p.max_connections = 256;
    if (s->p.max_body_bytes == 0) s->p.max_body_bytes = DEFAULT_MAX_BODY;
    if (s->p.max_images <= 0) s->p.max_images = 8;
    if (s->p.max_image_pixels == 0) s->p.max_image_pixels = 33554432;
    if (s->p.max_request_pixels == 0) s->p.max_request_pixels = 4 * s->p.max_image_pixels;
    if (s->p.timeout_s <= 0) s->p.timeout_s = 60;
    size_t cache_bytes = s->p.image_cache_mb < 0 ? 0 : (size_t)(s->p.image_cache_mb ? s->p.image_cache_mb : 256) << 20;
    s->model = strdup(p->model);
    s->host = strdup(p->host ? p->host : "127.0.0.1");
    s->api_key = p->api_key && p->api_key[0] ? strdup(p->api_key) : NULL;
    s->web_dir = dup_or_null(p->web_dir);
    s->cache = image_cache_new(cache_bytes);
    jq_init(&s->q, s->p.parallel + s->p.max_queue);
    atomic_init(&s->stopping, 0);
    atomic_init(&s->inflight, 0);
    s->started = (int64_t)time(NULL) * 1000;
    if (!s->model || !s->host || !s->cache || (p->api_key && p->api_key[0] && !s->api_key) ||
        (p->web_dir && !s->web_dir)) {
        server_free(s);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "vlmc_server_start: out of memory");
    }
    if (p->allow_path) {
        char real[PATH_MAX];
        struct stat st;
        if (!realpath(p->allow_path, real) || stat(real, &st) || !S_ISDIR(st.st_mode)) {
            server_free(s);
            return vlmc_fail(err, VLMC_ERR_ARG, "%s: --allow-path is not an existing directory", p->allow_path);
        }
        size_t n = strlen(real);
        while (n > 1 && real[n - 1] == '/') real[--n] = '\0';
        if (!(s->allow_real = strdup(real))) {
            server_free(s);
            return vlmc_fail(err, VLMC_ERR_NOMEM, "vlmc_server_start: out of memory");
        }
    }
    vlmc_status st;
    if (!strcmp(p->model, "echo") || !strncmp(p->model, "echo:", 5))
        st = server_backend_echo_open(p->model, p->n_ctx, &s->be, err);
    else
        st = server_backend_model_open(p->model, p->n_ctx, s->p.parallel, &s->be, err);
    if (st != VLMC_OK) {
        server_free(s);
        return st;
    }
    s->have_backend = 1;

    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char port[16];
    snprintf(port, sizeof port, "%d", p->port);
    int gai = getaddrinfo(s->host, port, &hints, &ai);
    if (gai || !ai) {
        server_free(s);
        return vlmc_fail(err, VLMC_ERR_ARG, "%s: cannot resolve the host to listen on: %s", p->host ? p->host : "",
                         gai_strerror(gai));
    }
    s->n_workers = s->p.parallel;
    s->workers = calloc((size_t)s->n_workers, sizeof *s->workers);
    s->wargs = calloc((size_t)s->n_workers, sizeof *s->wargs);
    if (!s->workers || !s->wargs) {
        freeaddrinfo(ai);
        server_free(s);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "vlmc_server_start: out of memory");
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    s->d = MHD_start_daemon(flags, (uint16_t)p->port, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER,
                            mhd_logger, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->p.max_connections,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->p.timeout_s, MHD_OPTION_NOTIFY_COMPLETED,
                            on_completed, s, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->d) {
        server_free(s);
        return vlmc_fail(err, VLMC_ERR_IO, "%s:%d: cannot listen (address in use or not available)",
                         p->host ? p->host : "127.0.0.1", p->port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : p->port;
    for (int i = 0; i < s->n_workers; i++) {
        s->wargs[i].s = s;
        s->wargs[i].slot = i;
        if (pthread_create(&s->workers[i], NULL, worker_main, &s->wargs[i])) {
            s->n_workers = i;
            vlmc_server_stop(s);
            return vlmc_fail(err, VLMC_ERR_INTERNAL, "vlmc_server_start: cannot start worker threads");
        }
    }
    *out = s;
    return VLMC_OK;
}

int vlmc_server_port(const vlmc_server *s) { return s ? s->port : 0; }
const char *vlmc_server_model_id(const vlmc_server *s) { return s ? s->be.model_id : NULL; }

void vlmc_server_stop(vlmc_server *s) {
    if (!s) return;
    if (s->d) s->quiesced_fd = MHD_quiesce_daemon(s->d);
    atomic_store(&s->stopping, 1);
    job *list = jq_stop(&s->q);
    while (list) {
        job *n = list->next;
        atomic_store(&list->cancelled, 1);
        job_finish(list, VLMC_OK, NULL, NULL);
        jq_done(&s->q);
        job_unref(list);
        list = n;
    }
    for (int i = 0; i < s->n_workers; i++) pthread_join(s->workers[i], NULL);
    /* Every job is done now; let the connections write out what is left (the end of the
     * streams, the answers) before the daemon closes them: at most 2 s. */
    for (int i = 0; i < 200 && atomic_load(&s->inflight) > 0; i++) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (s->d) MHD_stop_daemon(s->d);
    if (s->quiesced_fd != MHD_INVALID_SOCKET) close(s->quiesced_fd);
    server_free(s);
}
