/* `vlmc serve` units: request validation (every 4xx path with its status, type,
 * param and code), response and SSE formatting, stop strings, the bounded queue,
 * the image cache, SHA-256, and server start-up errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "core/sha256.h"
#include "formats/json.h"
#include "server/image_cache.h"
#include "server/openai.h"
#include "server/queue.h"

static const openai_limits LIM = {2, 4, 1000};

/* One rejected request: body -> status, type, param ("" = null), code (NULL = null). */
typedef struct bad_case {
    const char *body;
    int status;
    const char *type, *param, *code;
} bad_case;

static const bad_case BAD_CASES[] = {
    {"", 400, "invalid_request_error", "", "invalid_json"},
    {"{\"messages\": [", 400, "invalid_request_error", "", "invalid_json"},
    {"{\"messages\":\"\xff\"}", 400, "invalid_request_error", "", "invalid_json"},
    {"[]", 400, "invalid_request_error", "", "invalid_type"},
    {"\"hi\"", 400, "invalid_request_error", "", "invalid_type"},
    {"{}", 400, "invalid_request_error", "messages", "missing_required_parameter"},
    {"{\"messages\":null}", 400, "invalid_request_error", "messages", "missing_required_parameter"},
    {"{\"messages\":{}}", 400, "invalid_request_error", "messages", "invalid_type"},
    {"{\"messages\":[]}", 400, "invalid_request_error", "messages", "empty_array"},
    {"{\"model\":5,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 400, "invalid_request_error", "model",
     "invalid_type"},
    {"{\"messages\":[1]}", 400, "invalid_request_error", "messages[0]", "invalid_type"},
    {"{\"messages\":[{\"content\":\"x\"}]}", 400, "invalid_request_error", "messages[0].role",
     "missing_required_parameter"},
    {"{\"messages\":[{\"role\":1,\"content\":\"x\"}]}", 400, "invalid_request_error", "messages[0].role",
     "invalid_type"},
    {"{\"messages\":[{\"role\":\"bot\",\"content\":\"x\"}]}", 400, "invalid_request_error", "messages[0].role",
     "invalid_value"},
    {"{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", 400, "invalid_request_error", "messages[0].role",
     "unsupported_value"},
    {"{\"messages\":[{\"role\":\"user\"}]}", 400, "invalid_request_error", "messages[0].content",
     "missing_required_parameter"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":true}]}", 400, "invalid_request_error", "messages[0].content",
     "invalid_type"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":[]}]}", 400, "invalid_request_error", "messages[0].content",
     "empty_array"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":[\"x\"]}]}", 400, "invalid_request_error",
     "messages[0].content[0]", "invalid_type"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":[{}]}]}", 400, "invalid_request_error",
     "messages[0].content[0].type", "missing_required_parameter"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\"}]}]}", 400, "invalid_request_error",
     "messages[0].content[0].type", "invalid_value"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}", 400, "invalid_request_error",
     "messages[0].content[0].text", "missing_required_parameter"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":3}]}]}", 400,
     "invalid_request_error", "messages[0].content[0].text", "invalid_type"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", 400, "invalid_request_error",
     "messages[0].content[0].image_url", "missing_required_parameter"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{}}]}]}", 400,
     "invalid_request_error", "messages[0].content[0].image_url.url", "missing_required_parameter"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":1}}]}]}", 400,
     "invalid_request_error", "messages[0].content[0].image_url.url", "invalid_type"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:,\","
     "\"detail\":\"max\"}}]}]}", 400, "invalid_request_error", "messages[0].content[0].image_url.detail",
     "invalid_value"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":"
     "{\"url\":\"https://x/y.png\"}}]}]}", 400, "invalid_request_error", "messages[0].content[0].image_url.url",
     "unsupported_image_url"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":"
     "{\"url\":\"ftp://x/y.png\"}}]}]}", 400, "invalid_request_error", "messages[0].content[0].image_url.url",
     "invalid_image_url"},
    {"{\"messages\":[{\"role\":\"system\",\"content\":[{\"type\":\"image_url\",\"image_url\":"
     "{\"url\":\"data:,\"}}]}]}", 400, "invalid_request_error", "messages[0].content[0]", "invalid_value"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":\"data:,\"},"
     "{\"type\":\"image_url\",\"image_url\":\"data:,\"},{\"type\":\"image_url\",\"image_url\":\"data:,\"}]}]}",
     400, "invalid_request_error", "messages", "too_many_images"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":\"5\"}", 400, "invalid_request_error",
     "max_tokens", "invalid_type"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}", 400, "invalid_request_error",
     "max_tokens", "integer_below_min_value"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_completion_tokens\":1001}", 400,
     "invalid_request_error", "max_completion_tokens", "integer_above_max_value"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":null,\"top_p\":[]}", 400,
     "invalid_request_error", "top_p", "invalid_type"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":2.5}", 400, "invalid_request_error",
     "temperature", "decimal_above_max_value"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":-0.1}", 400, "invalid_request_error",
     "temperature", "decimal_below_min_value"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_p\":1.5}", 400, "invalid_request_error", "top_p",
     "decimal_above_max_value"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"seed\":1.5}", 400, "invalid_request_error", "seed",
     "invalid_type"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":5}", 400, "invalid_request_error", "stop",
     "invalid_type"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400,
     "invalid_request_error", "stop", "array_above_max_length"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[\"a\",\"\"]}", 400, "invalid_request_error",
     "stop[1]", "invalid_value"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2}", 400, "invalid_request_error", "n",
     "unsupported_value"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":\"1\"}", 400, "invalid_request_error", "n",
     "invalid_type"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":1}", 400, "invalid_request_error", "stream",
     "invalid_type"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream_options\":{\"include_usage\":true}}", 400,
     "invalid_request_error", "stream_options", "invalid_value"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":true,\"stream_options\":{\"include_usage\":1}}",
     400, "invalid_request_error", "stream_options.include_usage", "invalid_type"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\"}]}", 400,
     "invalid_request_error", "tools", "unsupported_parameter"},
};

static void test_rejections(void) {
    for (size_t i = 0; i < sizeof BAD_CASES / sizeof BAD_CASES[0]; i++) {
        const bad_case *c = &BAD_CASES[i];
        openai_request r;
        api_error e;
        memset(&e, 0, sizeof e);
        bool ok = openai_parse_chat(c->body, strlen(c->body), &LIM, &r, &e);
        CHECK(!ok, "case %zu accepted: %s", i, c->body);
        if (ok) {
            openai_request_free(&r);
            continue;
        }
        CHECK(e.status == c->status && !strcmp(e.type, c->type) && !strcmp(e.param, c->param) &&
                  ((!e.code && !c->code) || (e.code && c->code && !strcmp(e.code, c->code))) && e.message[0],
              "case %zu (%s): got %d %s param '%s' code %s (%s)", i, c->body, e.status, e.type, e.param,
              e.code ? e.code : "null", e.message);
        CHECK(r.priv == NULL && r.chat.messages == NULL, "case %zu: the request is emptied", i);
    }
}

static void test_error_json(void) {
    api_error e;
    api_error_set(&e, 400, "invalid_request_error", "invalid_type", "messages[0].content", "bad \"x\"\n");
    char *j = openai_error_json(&e);
    CHECK(j && !strcmp(j, "{\"error\":{\"message\":\"bad \\\"x\\\"\\n\",\"type\":\"invalid_request_error\","
                          "\"param\":\"messages[0].content\",\"code\":\"invalid_type\"}}"), "%s", j);
    free(j);
    api_error_set(&e, 503, "server_error", NULL, NULL, "busy");
    j = openai_error_json(&e);
    CHECK(j && !strcmp(j, "{\"error\":{\"message\":\"busy\",\"type\":\"server_error\",\"param\":null,\"code\":null}}"),
          "%s", j);
    free(j);
}

static void test_parse_ok(void) {
    const char *body =
        "{\"model\":\"gpt-x\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What is\"},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,AAAA\",\"detail\":\"low\"}},"
        "{\"type\":\"image_url\",\"image_url\":\"file:///tmp/a.png\"}]},"
        "{\"role\":\"assistant\",\"content\":null},{\"role\":\"developer\",\"content\":\"\"}],"
        "\"max_tokens\":7,\"max_completion_tokens\":9,\"temperature\":0,\"top_p\":0.5,\"seed\":-3,"
        "\"stop\":\"END\",\"n\":1,\"stream\":true,\"stream_options\":{\"include_usage\":true},"
        "\"frequency_penalty\":0.5,\"tools\":[]}";
    openai_request r;
    api_error e;
    bool ok = openai_parse_chat(body, strlen(body), &LIM, &r, &e);
    CHECK(ok, "rejected: %s", e.message);
    if (!ok) return;
    CHECK(r.model && !strcmp(r.model, "gpt-x"), "model");
    CHECK(r.chat.n_messages == 4, "messages %d", r.chat.n_messages);
    CHECK(!strcmp(r.chat.messages[0].role, "system") && r.chat.messages[0].n_parts == 1 &&
              !strcmp(r.chat.messages[0].parts[0].text, "Be brief."), "system message");
    const server_message *u = &r.chat.messages[1];
    CHECK(u->n_parts == 3 && u->parts[0].image == -1 && u->parts[1].image == 0 && u->parts[2].image == 1 &&
              u->parts[1].text == NULL, "user parts");
    CHECK(r.chat.messages[2].n_parts == 0, "assistant null content");
    CHECK(r.chat.n_images == 2 && r.image_kinds[0] == IMG_URL_DATA && r.image_kinds[1] == IMG_URL_FILE, "images");
    CHECK(!strcmp(r.image_params[1], "messages[1].content[2].image_url"), "%s", r.image_params[1]);
    CHECK(!strcmp(r.image_params[0], "messages[1].content[1].image_url.url"), "%s", r.image_params[0]);
    CHECK(r.chat.max_tokens == 9 && r.has_max_tokens, "max_completion_tokens wins: %d", r.chat.max_tokens);
    CHECK(r.chat.temperature == 0 && r.chat.top_p == 0.5, "sampling");
    CHECK(r.chat.has_seed && (int64_t)r.chat.seed == -3, "seed");
    CHECK(r.chat.n_stop == 1 && !strcmp(r.chat.stop[0], "END"), "stop");
    CHECK(r.stream && r.include_usage, "stream");
    CHECK(!strcmp(r.chat.messages_json,
                  "[{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"Be brief.\"}]},"
                  "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What is\"},{\"type\":\"image\"},"
                  "{\"type\":\"image\"}]},{\"role\":\"assistant\",\"content\":[]},"
                  "{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"\"}]}]"),
          "messages_json %s", r.chat.messages_json);
    openai_request_free(&r);

    const char *simple = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    ok = openai_parse_chat(simple, strlen(simple), &LIM, &r, &e);
    CHECK(ok && !r.stream && !r.has_max_tokens && r.chat.temperature == 1 && r.chat.top_p == 1 && !r.model &&
              r.chat.n_stop == 0 && !r.chat.has_seed, "defaults");
    if (ok) openai_request_free(&r);
}

static void test_escape(void) {
    strbuf b = {0};
    json_escape_n(&b, "a\x01\"\\\t\xc3\xa9\xff\xe2\x82", 10);
    CHECK(!strcmp(strbuf_cstr(&b), "\"a\\u0001\\\"\\\\\\t\xc3\xa9\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""), "%s",
          strbuf_cstr(&b));
    strbuf_free(&b);
    json_escape_n(&b, "x\0y", 3);
    CHECK(!strcmp(strbuf_cstr(&b), "\"x\\u0000y\""), "%s", strbuf_cstr(&b));
    strbuf_free(&b);
}

static void test_sse(void) {
    strbuf b = {0};
    openai_sse_chunk(&b, "chatcmpl-1", 1700000000, "echo", "assistant", "", 0, NULL);
    CHECK(!strcmp(strbuf_cstr(&b),
                  "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
                  "\"model\":\"echo\",\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"delta\":{\"role\":"
                  "\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"),
          "role chunk: %s", strbuf_cstr(&b));
    b.len = 0;
    openai_sse_chunk(&b, "c", 1, "m", NULL, "a\nb", 3, NULL);
    CHECK(strstr(strbuf_cstr(&b), "\"delta\":{\"content\":\"a\\nb\"}") != NULL, "content chunk: %s",
          strbuf_cstr(&b));
    size_t nl = 0;
    for (size_t i = 0; i < b.len; i++) nl += b.data[i] == '\n';
    CHECK(nl == 2 && b.data[b.len - 1] == '\n' && b.data[b.len - 2] == '\n', "one event, ends with a blank line");
    b.len = 0;
    openai_sse_chunk(&b, "c", 1, "m", NULL, NULL, 0, "length");
    CHECK(strstr(strbuf_cstr(&b), "\"delta\":{},\"logprobs\":null,\"finish_reason\":\"length\"}]}"), "%s",
          strbuf_cstr(&b));
    b.len = 0;
    openai_sse_usage(&b, "c", 1, "m", 3, 4);
    CHECK(strstr(strbuf_cstr(&b), "\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,"
                                  "\"total_tokens\":7}}\n\n"), "%s", strbuf_cstr(&b));
    b.len = 0;
    openai_sse_done(&b);
    CHECK(!strcmp(strbuf_cstr(&b), "data: [DONE]\n\n"), "done");
    strbuf_free(&b);

    char *j = openai_completion_json("id1", 5, "echo", "hi \"you\"", 8, "stop", 2, 3);
    cJSON *root = NULL;
    vlmc_error err;
    CHECK(j && json_parse(j, strlen(j), "completion", &root, &err) == VLMC_OK, "completion JSON parses");
    if (root) {
        const cJSON *ch = cJSON_GetArrayItem(json_get(root, "choices"), 0);
        CHECK(!strcmp(json_string(root, "object", ""), "chat.completion") && json_int(root, "created", 0) == 5,
              "object");
        CHECK(!strcmp(json_string(json_get(ch, "message"), "content", ""), "hi \"you\""), "content");
        CHECK(!strcmp(json_string(ch, "finish_reason", ""), "stop"), "finish");
        CHECK(json_int(json_get(root, "usage"), "total_tokens", 0) == 5, "usage");
        cJSON_Delete(root);
    }
    free(j);
    j = openai_models_json("echo", 9);
    CHECK(j && !strcmp(j, "{\"object\":\"list\",\"data\":[{\"id\":\"echo\",\"object\":\"model\",\"created\":9,"
                          "\"owned_by\":\"vlmc\"}]}"), "%s", j);
    free(j);
}

/* A job fed pieces; returns its (non-streaming) text. */
static char *run_pieces(const char *stops_json, const char *const *pieces, int n, int *stopped_at,
                        const char **finish) {
    char body[256];
    snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":%s}", stops_json);
    openai_request r;
    api_error e;
    if (!openai_parse_chat(body, strlen(body), &LIM, &r, &e)) return NULL;
    atomic_int stopping;
    atomic_init(&stopping, 0);
    job *j = job_new(&r, NULL, "id", 0, "m", &stopping);
    *stopped_at = -1;
    for (int i = 0; i < n; i++)
        if (job_on_text(j, pieces[i], strlen(pieces[i]))) {
            *stopped_at = i;
            break;
        }
    server_chat_result res = {"length", 1, 2};
    job_finish(j, VLMC_OK, NULL, &res);
    *finish = j->res.finish_reason;
    char *out = strndup(j->out.data ? j->out.data : "", j->out.len);
    job_unref(j);
    return out;
}

static void test_stop_strings(void) {
    const char *p1[] = {"Hel", "lo wo", "rld", "!"};
    int at;
    const char *fin;
    char *s = run_pieces("[\"o w\"]", p1, 4, &at, &fin);
    CHECK(s && !strcmp(s, "Hell") && at == 1 && !strcmp(fin, "stop"), "split stop: '%s' at %d", s, at);
    free(s);
    s = run_pieces("[\"zz\", \"rld\"]", p1, 4, &at, &fin);
    CHECK(s && !strcmp(s, "Hello wo") && at == 2, "second stop: '%s' at %d", s, at);
    free(s);
    s = run_pieces("null", p1, 4, &at, &fin);
    CHECK(s && !strcmp(s, "Hello world!") && at == -1 && !strcmp(fin, "length"), "no stop: '%s' %s", s, fin);
    free(s);
    s = run_pieces("[\"never\"]", p1, 4, &at, &fin);
    CHECK(s && !strcmp(s, "Hello world!") && at == -1, "held text flushed at the end: '%s'", s);
    free(s);
    const char *p2[] = {"caf\xc3", "\xa9 ok"}; /* a piece ending inside a character is held whole */
    s = run_pieces("[\"ok!\"]", p2, 2, &at, &fin);
    CHECK(s && !strcmp(s, "caf\xc3\xa9 ok"), "utf-8: '%s'", s);
    free(s);
    const char *p3[] = {"EN", "D"};
    s = run_pieces("\"END\"", p3, 2, &at, &fin);
    CHECK(s && !strcmp(s, "") && at == 1, "stop at the start: '%s'", s);
    free(s);
}

static void test_queue(void) {
    job_queue q;
    jq_init(&q, 2);
    openai_request r[3];
    job *j[3];
    api_error e;
    for (int i = 0; i < 3; i++) {
        const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
        CHECK(openai_parse_chat(body, strlen(body), &LIM, &r[i], &e), "parse %s", e.message);
        j[i] = job_new(&r[i], NULL, "id", 0, "m", NULL);
    }
    CHECK(jq_push(&q, j[0]) == 0 && jq_push(&q, j[1]) == 0, "two admitted");
    CHECK(jq_push(&q, j[2]) == -1, "third is refused (503)");
    job *p = jq_pop(&q);
    CHECK(p == j[0], "FIFO");
    CHECK(jq_push(&q, j[2]) == -1, "still full while the first runs");
    jq_done(&q);
    job_unref(p);
    CHECK(jq_push(&q, j[2]) == 0, "room after the first is done");
    CHECK(jq_remove(&q, j[1]), "a waiting job can be removed");
    jq_done(&q);
    job_unref(j[1]);
    CHECK(!jq_remove(&q, j[1]), "only once");
    int queued, admitted;
    jq_counts(&q, &queued, &admitted);
    CHECK(queued == 1 && admitted == 1, "counts %d %d", queued, admitted);
    job *rest = jq_stop(&q);
    CHECK(rest == j[2] && !rest->next, "stop hands back the waiting job");
    jq_done(&q);
    job_unref(rest);
    CHECK(jq_pop(&q) == NULL && jq_push(&q, j[0]) == -2, "stopped");
    for (int i = 0; i < 3; i++) job_unref(j[i]);
    jq_destroy(&q);
}

static void test_image_cache(void) {
    uint8_t px[12] = {0};
    vlmc_image *a = NULL, *b = NULL, *c = NULL;
    vlmc_image_from_rgb(px, 2, 2, &a, NULL);
    vlmc_image_from_rgb(px, 2, 2, &b, NULL);
    vlmc_image_from_rgb(px, 2, 2, &c, NULL);
    /* room for two entries */
    image_cache *ic = image_cache_new(2 * (12 + 200));
    image_cache_entry *ea = image_cache_put(ic, "aa", a);
    CHECK(ea && image_cache_image(ea) == a, "put");
    image_cache_entry *ea2 = image_cache_get(ic, "aa");
    CHECK(ea2 == ea, "get hits");
    CHECK(image_cache_get(ic, "bb") == NULL, "miss");
    image_cache_entry *eb = image_cache_put(ic, "bb", b);
    image_cache_release(ic, eb);
    image_cache_entry *ec = image_cache_put(ic, "cc", c);
    image_cache_stats st;
    image_cache_get_stats(ic, &st);
    CHECK(st.hits == 1 && st.misses == 1 && st.entries <= 2 && st.evictions >= 1, "stats h%llu m%llu n%zu e%llu",
          (unsigned long long)st.hits, (unsigned long long)st.misses, st.entries, (unsigned long long)st.evictions);
    CHECK(vlmc_image_width(image_cache_image(ea)) == 2, "an evicted entry in use stays valid");
    int *feat = malloc(sizeof *feat);
    *feat = 42;
    image_cache_set_features(ic, ec, feat, free, sizeof *feat);
    CHECK(image_cache_features(ic, ec) == feat, "features");
    image_cache_release(ic, ea);
    image_cache_release(ic, ea2);
    image_cache_release(ic, ec);
    image_cache_free(ic);
    /* A cache of size 0 still hands out (uncached) entries. */
    ic = image_cache_new(0);
    vlmc_image_from_rgb(px, 2, 2, &a, NULL);
    ea = image_cache_put(ic, "aa", a);
    CHECK(ea && image_cache_get(ic, "aa") == NULL, "nothing kept");
    image_cache_release(ic, ea);
    image_cache_free(ic);
}

static void test_sha256(void) {
    char h[65];
    sha256_hex("", 0, h);
    CHECK(!strcmp(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "empty %s", h);
    sha256_hex("abc", 3, h);
    CHECK(!strcmp(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "abc %s", h);
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_hex(m, strlen(m), h);
    CHECK(!strcmp(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"), "448 bits %s", h);
    char *mil = malloc(1000000);
    memset(mil, 'a', 1000000);
    sha256_ctx c;
    sha256_init(&c);
    for (int i = 0; i < 1000000; i += 999) sha256_update(&c, mil + i, 1000000 - i < 999 ? 1000000 - i : 999);
    uint8_t d[32];
    sha256_final(&c, d);
    CHECK(d[0] == 0xcd && d[1] == 0xc7 && d[31] == 0xd0, "a million a's in odd pieces");
    free(mil);
}

static void test_server_start_errors(void) {
    vlmc_server_params p;
    vlmc_server_default_params(&p);
    vlmc_server *s = NULL;
    vlmc_error err;
    CHECK(vlmc_server_start(&p, &s, &err) == VLMC_ERR_ARG, "no model");
    p.model = "echo:abc";
    CHECK(vlmc_server_start(&p, &s, &err) == VLMC_ERR_ARG && strstr(err.message, "echo"), "%s", err.message);
    p.model = "echo";
    p.allow_path = "/nonexistent/dir";
    CHECK(vlmc_server_start(&p, &s, &err) == VLMC_ERR_ARG && strstr(err.message, "--allow-path"), "%s", err.message);
    p.allow_path = NULL;
    p.model = "models/tiny-random-llava";
    CHECK(vlmc_server_start(&p, &s, &err) == VLMC_ERR_UNSUPPORTED && strstr(err.message, "tokenizer.json"), "%s",
          err.message);
    p.model = "echo";
    p.port = 0;
    CHECK(vlmc_server_start(&p, &s, &err) == VLMC_OK && vlmc_server_port(s) > 0, "starts on a free port");
    vlmc_server_stop(s);
}

int main(void) {
    tests_begin("server_openai");
    TEST_RUN(test_rejections);
    TEST_RUN(test_error_json);
    TEST_RUN(test_parse_ok);
    TEST_RUN(test_escape);
    TEST_RUN(test_sse);
    TEST_RUN(test_stop_strings);
    TEST_RUN(test_queue);
    TEST_RUN(test_image_cache);
    TEST_RUN(test_sha256);
    TEST_RUN(test_server_start_errors);
    return tests_end();
}
