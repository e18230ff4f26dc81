#include "server/openai.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/utf8.h"
#include "formats/json.h"

void api_error_set(api_error *e, int status, const char *type, const char *code, const char *param, const char *fmt,
                   ...) {
    e->status = status;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

void json_escape_n(strbuf *b, const char *s, size_t n) {
    strbuf_append(b, "\"", 1);
    size_t i = 0, run = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            i++;
            run++;
            continue;
        }
        if (run) strbuf_append(b, s + i - run, run);
        run = 0;
        if (c < 0x80) {
            char esc[8];
            switch (c) {
            case '"': strbuf_append(b, "\\\"", 2); break;
            case '\\': strbuf_append(b, "\\\\", 2); break;
            case '\n': strbuf_append(b, "\\n", 2); break;
            case '\r': strbuf_append(b, "\\r", 2); break;
            case '\t': strbuf_append(b, "\\t", 2); break;
            default:
                snprintf(esc, sizeof esc, "\\u%04x", c);
                strbuf_append(b, esc, 6);
            }
            i++;
            continue;
        }
        uint32_t cp;
        size_t k = utf8_decode(s + i, n - i, &cp);
        if (k == 0) {
            strbuf_append(b, "\xEF\xBF\xBD", 3);
            i++;
        } else {
            strbuf_append(b, s + i, k);
            i += k;
        }
    }
    if (run) strbuf_append(b, s + i - run, run);
    strbuf_append(b, "\"", 1);
}

static void json_str(strbuf *b, const char *s) { json_escape_n(b, s, strlen(s)); }

char *openai_error_json(const api_error *e) {
    strbuf b = {0};
    strbuf_puts(&b, "{\"error\":{\"message\":");
    json_str(&b, e->message);
    strbuf_puts(&b, ",\"type\":");
    json_str(&b, e->type ? e->type : "server_error");
    strbuf_puts(&b, ",\"param\":");
    if (e->param[0]) json_str(&b, e->param);
    else strbuf_puts(&b, "null");
    strbuf_puts(&b, ",\"code\":");
    if (e->code) json_str(&b, e->code);
    else strbuf_puts(&b, "null");
    strbuf_puts(&b, "}}");
    return strbuf_take(&b);
}

/* ---- request parsing ---- */

static bool bad400(api_error *e, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool bad400(api_error *e, const char *code, const char *param, const char *fmt, ...) {
    char msg[sizeof e->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    api_error_set(e, 400, "invalid_request_error", code, param, "%s", msg);
    return false;
}
#define BAD bad400

static const char *json_type_name(const cJSON *v) {
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    if (cJSON_IsNull(v)) return "null";
    return "an invalid value";
}

static bool bad_type(api_error *e, const char *param, const char *expected, const cJSON *got) {
    return BAD(e, "invalid_type", param, "Invalid type for '%s': expected %s, but got %s instead.", param, expected,
               json_type_name(got));
}

/* The member key of obj, NULL when absent or JSON null. */
static const cJSON *member(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static bool is_integer(const cJSON *v, double lo, double hi) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    return isfinite(d) && d == floor(d) && d >= lo && d <= hi;
}

static bool get_number(const cJSON *root, const char *key, double lo, double hi, double *out, api_error *e) {
    const cJSON *v = member(root, key);
    if (!v) return true;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return bad_type(e, key, "a number", v);
    double d = v->valuedouble;
    if (d < lo)
        return BAD(e, "decimal_below_min_value", key,
                   "Invalid '%s': decimal below minimum value. Expected a value >= %g, but got %g instead.", key, lo, d);
    if (d > hi)
        return BAD(e, "decimal_above_max_value", key,
                   "Invalid '%s': decimal above maximum value. Expected a value <= %g, but got %g instead.", key, hi, d);
    *out = d;
    return true;
}

static bool get_bool(const cJSON *root, const char *key, bool *out, api_error *e) {
    const cJSON *v = member(root, key);
    if (!v) return true;
    if (!cJSON_IsBool(v)) return bad_type(e, key, "a boolean", v);
    *out = cJSON_IsTrue(v);
    return true;
}

static bool parse_max_tokens(const cJSON *root, const openai_limits *lim, openai_request *r, api_error *e) {
    const char *key = "max_completion_tokens";
    const cJSON *v = member(root, key);
    if (!v) {
        key = "max_tokens";
        v = member(root, key);
    }
    if (!v) return true;
    if (!cJSON_IsNumber(v) || !is_integer(v, -1e18, 1e18)) return bad_type(e, key, "an integer", v);
    if (v->valuedouble < 1)
        return BAD(e, "integer_below_min_value", key,
                   "Invalid '%s': integer below minimum value. Expected a value >= 1, but got %.0f instead.", key,
                   v->valuedouble);
    double cap = lim && lim->max_tokens_cap > 0 ? lim->max_tokens_cap : 2147483647.0;
    if (v->valuedouble > cap)
        return BAD(e, "integer_above_max_value", key,
                   "Invalid '%s': integer above maximum value. Expected a value <= %.0f, but got %.0f instead.", key,
                   cap, v->valuedouble);
    r->chat.max_tokens = (int)v->valuedouble;
    r->has_max_tokens = true;
    return true;
}

static bool parse_stop(cJSON *root, const openai_limits *lim, openai_request *r, api_error *e) {
    const cJSON *v = member(root, "stop");
    if (!v) return true;
    int max_stop = lim && lim->max_stop > 0 ? lim->max_stop : 4;
    int n = cJSON_IsString(v) ? 1 : cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
    if (n < 0) return bad_type(e, "stop", "a string or an array of strings", v);
    if (n > max_stop)
        return BAD(e, "array_above_max_length", "stop",
                   "Invalid 'stop': array too long. Expected an array with maximum length %d, but got an array with "
                   "length %d instead.", max_stop, n);
    if (n == 0) return true;
    const char **stops = calloc((size_t)n, sizeof *stops);
    if (!stops) return BAD(e, NULL, "stop", "out of memory");
    r->chat.stop = stops;
    int i = 0;
    const cJSON *it = v;
    if (cJSON_IsArray(v)) it = v->child;
    for (; it && i < n; it = cJSON_IsArray(v) ? it->next : NULL, i++) {
        char param[32];
        snprintf(param, sizeof param, cJSON_IsArray(v) ? "stop[%d]" : "stop", i);
        if (!cJSON_IsString(it)) return bad_type(e, param, "a string", it);
        if (!it->valuestring[0]) return BAD(e, "invalid_value", param, "Invalid '%s': empty stop string.", param);
        stops[i] = it->valuestring;
        r->chat.n_stop = i + 1;
    }
    return true;
}

/* Adds one part to msg (arrays sized by the caller). */
static bool add_image(openai_request *r, const cJSON *url_item, const char *param, const char *role,
                      const openai_limits *lim, server_part *part, api_error *e) {
    char p[160];
    const cJSON *iu = url_item;
    const cJSON *url = NULL;
    if (cJSON_IsString(iu)) {
        url = iu;
        snprintf(p, sizeof p, "%s.image_url", param);
    } else if (cJSON_IsObject(iu)) {
        url = member(iu, "url");
        snprintf(p, sizeof p, "%s.image_url.url", param);
        if (!url) return BAD(e, "missing_required_parameter", p, "Missing required parameter: '%s'.", p);
        const cJSON *detail = member(iu, "detail");
        char pd[160];
        snprintf(pd, sizeof pd, "%s.image_url.detail", param);
        if (detail && !cJSON_IsString(detail)) return bad_type(e, pd, "a string", detail);
        if (detail && strcmp(detail->valuestring, "auto") && strcmp(detail->valuestring, "low") &&
            strcmp(detail->valuestring, "high"))
            return BAD(e, "invalid_value", pd, "Invalid value for '%s': expected one of 'auto', 'low' or 'high'.", pd);
    } else {
        snprintf(p, sizeof p, "%s.image_url", param);
        if (!iu) return BAD(e, "missing_required_parameter", p, "Missing required parameter: '%s'.", p);
        return bad_type(e, p, "an object", iu);
    }
    if (!cJSON_IsString(url)) return bad_type(e, p, "a string", url);
    if (strcmp(role, "user"))
        return BAD(e, "invalid_value", param, "Invalid '%s': image parts are only allowed in user messages.", param);
    const char *s = url->valuestring;
    image_url_kind kind;
    if (!strncasecmp(s, "data:", 5)) kind = IMG_URL_DATA;
    else if (!strncasecmp(s, "file://", 7)) kind = IMG_URL_FILE;
    else if (!strncasecmp(s, "http://", 7) || !strncasecmp(s, "https://", 8))
        return BAD(e, "unsupported_image_url", p,
                   "Invalid '%s': this server does not fetch remote images; send the image as a "
                   "data: URL (base64).", p);
    else
        return BAD(e, "invalid_image_url", p, "Invalid '%s': expected a data: URL (or a file:// path).", p);
    int max_images = lim && lim->max_images > 0 ? lim->max_images : 8;
    int k = r->chat.n_images;
    if (k >= max_images)
        return BAD(e, "too_many_images", "messages", "Too many images in the request: at most %d are allowed.",
                   max_images);
    r->image_urls[k] = (char *)s;
    r->image_kinds[k] = kind;
    r->image_params[k] = strdup(p);
    if (!r->image_params[k]) return BAD(e, NULL, p, "out of memory");
    r->chat.n_images = k + 1;
    part->text = NULL;
    part->text_len = 0;
    part->image = k;
    return true;
}

static bool parse_messages(const cJSON *msgs, const openai_limits *lim, openai_request *r, cJSON *hf,
                           api_error *e) {
    int n = cJSON_GetArraySize(msgs);
    /* Upper bound on images: every part of every message. */
    int total_parts = 0;
    for (const cJSON *m = msgs->child; m; m = m->next) {
        const cJSON *c = cJSON_IsObject(m) ? member(m, "content") : NULL;
        total_parts += c && cJSON_IsArray(c) ? cJSON_GetArraySize(c) : 1;
    }
    r->chat.messages = calloc((size_t)n, sizeof *r->chat.messages);
    r->image_urls = calloc((size_t)total_parts, sizeof *r->image_urls);
    r->image_kinds = calloc((size_t)total_parts, sizeof *r->image_kinds);
    r->image_params = calloc((size_t)total_parts, sizeof *r->image_params);
    r->chat.images = calloc((size_t)total_parts, sizeof *r->chat.images);
    if (!r->chat.messages || !r->image_urls || !r->image_kinds || !r->image_params || !r->chat.images)
        return BAD(e, NULL, "messages", "out of memory");
    int i = 0;
    for (const cJSON *m = msgs->child; m; m = m->next, i++) {
        char param[96];
        snprintf(param, sizeof param, "messages[%d]", i);
        if (!cJSON_IsObject(m)) return bad_type(e, param, "an object", m);
        server_message *msg = &r->chat.messages[i];
        r->chat.n_messages = i + 1;
        char pr[112];
        snprintf(pr, sizeof pr, "%s.role", param);
        const cJSON *role = member(m, "role");
        if (!role) return BAD(e, "missing_required_parameter", pr, "Missing required parameter: '%s'.", pr);
        if (!cJSON_IsString(role)) return bad_type(e, pr, "a string", role);
        const char *rs = role->valuestring;
        if (strcmp(rs, "system") && strcmp(rs, "developer") && strcmp(rs, "user") && strcmp(rs, "assistant")) {
            if (!strcmp(rs, "tool") || !strcmp(rs, "function"))
                return BAD(e, "unsupported_value", pr, "Invalid '%s': role '%s' is not supported by this server.", pr,
                           rs);
            return BAD(e, "invalid_value", pr,
                       "Invalid value for '%s': expected one of 'system', 'developer', 'user' or 'assistant'.", pr);
        }
        msg->role = rs;
        char pc[112];
        snprintf(pc, sizeof pc, "%s.content", param);
        const cJSON *content = member(m, "content");
        cJSON *hm = cJSON_CreateObject(), *hparts = cJSON_CreateArray();
        if (!hm || !hparts || !cJSON_AddItemToArray(hf, hm) || !cJSON_AddStringToObject(hm, "role", rs) ||
            !cJSON_AddItemToObject(hm, "content", hparts))
            return BAD(e, NULL, pc, "out of memory");
        if (!content) {
            if (strcmp(rs, "assistant"))
                return BAD(e, "missing_required_parameter", pc, "Missing required parameter: '%s'.", pc);
            continue;
        }
        if (cJSON_IsString(content)) {
            msg->parts = calloc(1, sizeof *msg->parts);
            if (!msg->parts) return BAD(e, NULL, pc, "out of memory");
            msg->parts[0] = (server_part){content->valuestring, strlen(content->valuestring), -1};
            msg->n_parts = 1;
            cJSON *hp = cJSON_CreateObject();
            if (!hp || !cJSON_AddItemToArray(hparts, hp) || !cJSON_AddStringToObject(hp, "type", "text") ||
                !cJSON_AddStringToObject(hp, "text", content->valuestring))
                return BAD(e, NULL, pc, "out of memory");
            continue;
        }
        if (!cJSON_IsArray(content)) return bad_type(e, pc, "a string or an array of content parts", content);
        int np = cJSON_GetArraySize(content);
        if (np == 0)
            return BAD(e, "empty_array", pc,
                       "Invalid '%s': empty array. Expected an array with minimum length 1, but got an empty array "
                       "instead.", pc);
        msg->parts = calloc((size_t)np, sizeof *msg->parts);
        if (!msg->parts) return BAD(e, NULL, pc, "out of memory");
        int j = 0;
        for (const cJSON *p = content->child; p; p = p->next, j++) {
            char pp[128], pt[144];
            snprintf(pp, sizeof pp, "%s[%d]", pc, j);
            if (!cJSON_IsObject(p)) return bad_type(e, pp, "an object", p);
            snprintf(pt, sizeof pt, "%s.type", pp);
            const cJSON *type = member(p, "type");
            if (!type) return BAD(e, "missing_required_parameter", pt, "Missing required parameter: '%s'.", pt);
            if (!cJSON_IsString(type)) return bad_type(e, pt, "a string", type);
            server_part *part = &msg->parts[j];
            cJSON *hp = cJSON_CreateObject();
            if (!hp || !cJSON_AddItemToArray(hparts, hp)) return BAD(e, NULL, pc, "out of memory");
            if (!strcmp(type->valuestring, "text")) {
                char px[144];
                snprintf(px, sizeof px, "%s.text", pp);
                const cJSON *text = member(p, "text");
                if (!text) return BAD(e, "missing_required_parameter", px, "Missing required parameter: '%s'.", px);
                if (!cJSON_IsString(text)) return bad_type(e, px, "a string", text);
                *part = (server_part){text->valuestring, strlen(text->valuestring), -1};
                if (!cJSON_AddStringToObject(hp, "type", "text") ||
                    !cJSON_AddStringToObject(hp, "text", text->valuestring))
                    return BAD(e, NULL, pc, "out of memory");
            } else if (!strcmp(type->valuestring, "image_url")) {
                if (!add_image(r, member(p, "image_url"), pp, rs, lim, part, e)) return false;
                if (!cJSON_AddStringToObject(hp, "type", "image")) return BAD(e, NULL, pc, "out of memory");
            } else {
                return BAD(e, "invalid_value", pt,
                           "Invalid value for '%s': content part type '%.60s' is not supported (expected 'text' or "
                           "'image_url').", pt, type->valuestring);
            }
            msg->n_parts = j + 1;
        }
    }
    return true;
}

bool openai_parse_chat(const char *body, size_t len, const openai_limits *lim, openai_request *out, api_error *e) {
    memset(out, 0, sizeof *out);
    out->chat.temperature = 1.0;
    out->chat.top_p = 1.0;
    cJSON *root = NULL;
    vlmc_error jerr;
    if (json_parse(body, len, "request body", &root, &jerr) != VLMC_OK)
        return BAD(e, "invalid_json", NULL,
                   "We could not parse the JSON body of your request: %s. The API expects a JSON payload.",
                   jerr.message);
    out->priv = root;
    if (!cJSON_IsObject(root)) {
        bad_type(e, "body", "a JSON object", root);
        e->param[0] = '\0';
        goto fail;
    }
    const cJSON *model = member(root, "model");
    if (model && !cJSON_IsString(model)) {
        bad_type(e, "model", "a string", model);
        goto fail;
    }
    if (model && !(out->model = strdup(model->valuestring))) {
        BAD(e, NULL, "model", "out of memory");
        goto fail;
    }
    const cJSON *msgs = member(root, "messages");
    if (!msgs) {
        BAD(e, "missing_required_parameter", "messages", "Missing required parameter: 'messages'.");
        goto fail;
    }
    if (!cJSON_IsArray(msgs)) {
        bad_type(e, "messages", "an array", msgs);
        goto fail;
    }
    if (cJSON_GetArraySize(msgs) == 0) {
        BAD(e, "empty_array", "messages",
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array "
            "instead.");
        goto fail;
    }
    cJSON *hf = cJSON_CreateArray();
    if (!hf) {
        BAD(e, NULL, "messages", "out of memory");
        goto fail;
    }
    bool ok = parse_messages(msgs, lim, out, hf, e);
    if (ok) {
        out->chat.messages_json = cJSON_PrintUnformatted(hf);
        if (!out->chat.messages_json) ok = BAD(e, NULL, "messages", "out of memory");
    }
    cJSON_Delete(hf);
    if (!ok) goto fail;
    if (!parse_max_tokens(root, lim, out, e)) goto fail;
    if (!get_number(root, "temperature", 0, 2, &out->chat.temperature, e)) goto fail;
    if (!get_number(root, "top_p", 0, 1, &out->chat.top_p, e)) goto fail;
    const cJSON *seed = member(root, "seed");
    if (seed) {
        if (!is_integer(seed, -9223372036854775807.0, 9223372036854775807.0)) {
            bad_type(e, "seed", "an integer", seed);
            goto fail;
        }
        out->chat.has_seed = 1;
        out->chat.seed = (uint64_t)(int64_t)seed->valuedouble;
    }
    if (!parse_stop(root, lim, out, e)) goto fail;
    const cJSON *n = member(root, "n");
    if (n) {
        if (!is_integer(n, -1e9, 1e9)) {
            bad_type(e, "n", "an integer", n);
            goto fail;
        }
        if (n->valuedouble != 1) {
            BAD(e, "unsupported_value", "n", "Invalid 'n': this server generates one choice per request (n=1).");
            goto fail;
        }
    }
    if (!get_bool(root, "stream", &out->stream, e)) goto fail;
    const cJSON *so = member(root, "stream_options");
    if (so) {
        if (!cJSON_IsObject(so)) {
            bad_type(e, "stream_options", "an object", so);
            goto fail;
        }
        if (!out->stream) {
            BAD(e, "invalid_value", "stream_options",
                "Invalid 'stream_options': only allowed when 'stream' is true.");
            goto fail;
        }
        const cJSON *iu = member(so, "include_usage");
        if (iu && !cJSON_IsBool(iu)) {
            bad_type(e, "stream_options.include_usage", "a boolean", iu);
            goto fail;
        }
        out->include_usage = iu && cJSON_IsTrue(iu);
    }
    const cJSON *tools = member(root, "tools");
    if (tools && !(cJSON_IsArray(tools) && cJSON_GetArraySize(tools) == 0)) {
        BAD(e, "unsupported_parameter", "tools", "Unsupported parameter: 'tools' is not supported by this server.");
        goto fail;
    }
    return true;
fail: {
    api_error saved = *e;
    openai_request_free(out);
    *e = saved;
    return false;
}
}

void openai_request_free(openai_request *r) {
    if (!r) return;
    for (int i = 0; i < r->chat.n_messages; i++) free(r->chat.messages[i].parts);
    free(r->chat.messages);
    if (r->image_params)
        for (int i = 0; i < r->chat.n_images; i++) free(r->image_params[i]);
    free(r->image_params);
    free(r->image_urls);
    free(r->image_kinds);
    free(r->chat.images);
    free((void *)r->chat.stop);
    free((void *)r->chat.messages_json);
    free(r->model);
    cJSON_Delete(r->priv);
    memset(r, 0, sizeof *r);
}

/* ---- responses ---- */

static void head(strbuf *b, const char *id, int64_t created, const char *model, const char *object) {
    strbuf_puts(b, "{\"id\":");
    json_str(b, id);
    strbuf_printf(b, ",\"object\":\"%s\",\"created\":%lld,\"model\":", object, (long long)created);
    json_str(b, model);
    strbuf_puts(b, ",\"system_fingerprint\":null");
}

static void usage(strbuf *b, int prompt, int completion) {
    strbuf_printf(b, "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}", prompt,
                  completion, prompt + completion);
}

void openai_sse_chunk(strbuf *b, const char *id, int64_t created, const char *model, const char *role,
                      const char *content, size_t content_len, const char *finish_reason) {
    strbuf_puts(b, "data: ");
    head(b, id, created, model, "chat.completion.chunk");
    strbuf_puts(b, ",\"choices\":[{\"index\":0,\"delta\":{");
    if (role) {
        strbuf_puts(b, "\"role\":");
        json_str(b, role);
    }
    if (content) {
        if (role) strbuf_puts(b, ",");
        strbuf_puts(b, "\"content\":");
        json_escape_n(b, content, content_len);
    }
    strbuf_puts(b, "},\"logprobs\":null,\"finish_reason\":");
    if (finish_reason) json_str(b, finish_reason);
    else strbuf_puts(b, "null");
    strbuf_puts(b, "}]}\n\n");
}

void openai_sse_usage(strbuf *b, const char *id, int64_t created, const char *model, int prompt_tokens,
                      int completion_tokens) {
    strbuf_puts(b, "data: ");
    head(b, id, created, model, "chat.completion.chunk");
    strbuf_puts(b, ",\"choices\":[],");
    usage(b, prompt_tokens, completion_tokens);
    strbuf_puts(b, "}\n\n");
}

void openai_sse_error(strbuf *b, const api_error *e) {
    char *j = openai_error_json(e);
    strbuf_puts(b, "data: ");
    strbuf_puts(b, j ? j : "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\"}}");
    strbuf_puts(b, "\n\n");
    free(j);
}

void openai_sse_done(strbuf *b) { strbuf_puts(b, "data: [DONE]\n\n"); }

char *openai_completion_json(const char *id, int64_t created, const char *model, const char *content,
                             size_t content_len, const char *finish_reason, int prompt_tokens,
                             int completion_tokens) {
    strbuf b = {0};
    head(&b, id, created, model, "chat.completion");
    strbuf_puts(&b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
    json_escape_n(&b, content ? content : "", content ? content_len : 0);
    strbuf_puts(&b, ",\"refusal\":null},\"logprobs\":null,\"finish_reason\":");
    json_str(&b, finish_reason ? finish_reason : "stop");
    strbuf_puts(&b, "}],");
    usage(&b, prompt_tokens, completion_tokens);
    strbuf_puts(&b, "}");
    return strbuf_take(&b);
}

static void model_obj(strbuf *b, const char *model_id, int64_t created) {
    strbuf_puts(b, "{\"id\":");
    json_str(b, model_id);
    strbuf_printf(b, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"vlmc\"}", (long long)created);
}

char *openai_models_json(const char *model_id, int64_t created) {
    strbuf b = {0};
    strbuf_puts(&b, "{\"object\":\"list\",\"data\":[");
    model_obj(&b, model_id, created);
    strbuf_puts(&b, "]}");
    return strbuf_take(&b);
}

char *openai_model_json(const char *model_id, int64_t created) {
    strbuf b = {0};
    model_obj(&b, model_id, created);
    return strbuf_take(&b);
}
