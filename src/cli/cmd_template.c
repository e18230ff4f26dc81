/* vlmc template: render a chat template.
 *
 *   vlmc template -m DIR messages.json [--add-generation-prompt]
 *   vlmc template (-m DIR | --template-file F) --jsonl
 *
 * The first form prints the prompt for one conversation (messages.json holds a
 * list of messages, or a whole context object {"messages": ..., ...}; "-" reads
 * stdin). The second is a line protocol: each stdin line is a context object
 * {"messages", "add_generation_prompt", "bos_token", "eos_token", "extra_context"}
 * and each answer line is {"text": "..."} or {"error": "..."}.
 * --now "YYYY-MM-DD HH:MM:SS" (or the VLMC_NOW environment variable) freezes
 * strftime_now. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "commands.h"
#include "vlmc.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: vlmc template -m DIR messages.json [--add-generation-prompt] [--now TIME]\n"
            "       vlmc template (-m DIR | --template-file F) --jsonl [--now TIME]\n"
            "\n"
            "Renders a model's chat template as transformers' apply_chat_template does.\n"
            "  -m, --model DIR          model folder (chat_template.jinja / chat_template.json /\n"
            "                           tokenizer_config.json)\n"
            "  --template-file F        a Jinja template file instead of a model folder\n"
            "  --add-generation-prompt  end with the assistant turn's opening\n"
            "  --jsonl                  one JSON context per stdin line -> {\"text\"} or {\"error\"} per line\n"
            "  --now TIME               freeze strftime_now at \"YYYY-MM-DD HH:MM:SS\" (also VLMC_NOW)\n");
}

static bool is_regular_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static char *read_stream(FILE *f) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    size_t k;
    while ((k = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += k;
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
    }
    buf[n] = '\0';
    return buf;
}

static char *read_path(const char *path) {
    if (!strcmp(path, "-")) return read_stream(stdin);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *s = read_stream(f);
    fclose(f);
    return s;
}

/* The contexts are passed to the library as the caller wrote them (not re-printed
 * by cJSON, which would turn 1.0 into 1); keys are added by text. */

/* obj_text (a JSON object, parsed as obj) with "key": value inserted first. malloc'ed. */
static char *with_key(const char *obj_text, const cJSON *obj, const char *key, const cJSON *value) {
    char *v = cJSON_PrintUnformatted(value);
    const char *brace = strchr(obj_text, '{');
    if (!v || !brace) {
        cJSON_free(v);
        return NULL;
    }
    size_t n = strlen(obj_text) + strlen(key) + strlen(v) + 16;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%.*s{\"%s\": %s%s%s", (int)(brace - obj_text), obj_text, key, v, obj->child ? ", " : "", brace + 1);
    cJSON_free(v);
    return out;
}

/* Renders one context (text of a JSON object, parsed as ctx), adding "vlmc_now"
 * unless it has one; returns the malloc'ed prompt or NULL with err set. */
static char *render_ctx(const vlmc_chat_template *t, const char *text, const cJSON *ctx, const char *now, vlmc_error *err) {
    char *owned = NULL;
    if (now && !cJSON_GetObjectItemCaseSensitive(ctx, "vlmc_now")) {
        cJSON *nv = cJSON_CreateString(now);
        owned = nv ? with_key(text, ctx, "vlmc_now", nv) : NULL;
        cJSON_Delete(nv);
        if (!owned) {
            snprintf(err->message, sizeof err->message, "out of memory");
            return NULL;
        }
        text = owned;
    }
    char *out = NULL;
    vlmc_chat_template_render(t, text, &out, err);
    free(owned);
    return out;
}

static void print_json_line(const char *key, const char *value) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, key, value);
    char *s = cJSON_PrintUnformatted(o);
    if (s) {
        fputs(s, stdout);
        cJSON_free(s);
    }
    fputc('\n', stdout);
    fflush(stdout);
    cJSON_Delete(o);
}

/* Answers every line; when the template could not be loaded (t NULL), each
 * answer is {"error": load_error}. */
static int run_jsonl(const vlmc_chat_template *t, const char *load_error, const char *now) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
        bool blank = true;
        for (ssize_t i = 0; i < n; i++)
            if (line[i] != ' ' && line[i] != '\t') blank = false;
        if (blank) continue;
        if (!t) {
            print_json_line("error", load_error);
            continue;
        }
        cJSON *ctx = cJSON_ParseWithLength(line, (size_t)n);
        if (!cJSON_IsObject(ctx)) {
            print_json_line("error", "input line is not a JSON object");
            cJSON_Delete(ctx);
            continue;
        }
        vlmc_error err = {0};
        char *out = render_ctx(t, line, ctx, now, &err);
        if (out) print_json_line("text", out);
        else print_json_line("error", err.message[0] ? err.message : "render failed");
        vlmc_free(out);
        cJSON_Delete(ctx);
    }
    free(line);
    return t ? 0 : 1;
}

int cmd_template(int argc, char **argv) {
    const char *model = NULL, *tfile = NULL, *msgs = NULL, *now = getenv("VLMC_NOW");
    bool gen = false, jsonl = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) {
            model = argv[++i];
        } else if (!strcmp(a, "--template-file") && i + 1 < argc) {
            tfile = argv[++i];
        } else if (!strcmp(a, "--now") && i + 1 < argc) {
            now = argv[++i];
        } else if (!strcmp(a, "--add-generation-prompt")) {
            gen = true;
        } else if (!strcmp(a, "--jsonl")) {
            jsonl = true;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "vlmc template: unknown option '%s'\n\n", a);
            usage(stderr);
            return 2;
        } else if (!msgs) {
            msgs = a;
        } else {
            fprintf(stderr, "vlmc template: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if ((!model) == (!tfile)) {
        fprintf(stderr, "vlmc template: give exactly one of -m DIR and --template-file F\n\n");
        usage(stderr);
        return 2;
    }
    if (!jsonl && !msgs) {
        fprintf(stderr, "vlmc template: a messages file is needed (or --jsonl)\n\n");
        usage(stderr);
        return 2;
    }
    vlmc_error err = {0};
    vlmc_chat_template *t = NULL;
    vlmc_status st;
    if (model) {
        st = vlmc_chat_template_load(model, &t, &err);
    } else if (!strcmp(tfile, "-") || !is_regular_file(tfile)) { /* stdin, pipes, process substitution */
        char *src = read_path(tfile);
        if (src) {
            st = vlmc_chat_template_from_string(src, &t, &err);
            free(src);
        } else {
            st = VLMC_ERR_IO;
            snprintf(err.message, sizeof err.message, "cannot read the template from %s", tfile);
        }
    } else {
        st = vlmc_chat_template_from_file(tfile, &t, &err);
    }
    if (st) {
        fprintf(stderr, "vlmc template: %s\n", err.message);
        /* in the line protocol a broken template still answers every line */
        if (jsonl) run_jsonl(NULL, err.message, now);
        return 1;
    }
    int rc = 0;
    if (jsonl) {
        rc = run_jsonl(t, NULL, now);
    } else {
        char *text = read_path(msgs);
        cJSON *j = text ? cJSON_Parse(text) : NULL;
        if (!j || !(cJSON_IsArray(j) || cJSON_IsObject(j))) {
            fprintf(stderr, "vlmc template: %s is not a JSON list of messages or a context object\n", msgs);
            cJSON_Delete(j);
            free(text);
            vlmc_chat_template_free(t);
            return 1;
        }
        if (cJSON_IsArray(j)) { /* a bare list of messages */
            size_t n = strlen(text) + 32;
            char *wrapped = malloc(n);
            if (wrapped) snprintf(wrapped, n, "{\"messages\": %s}", text);
            free(text);
            text = wrapped;
            cJSON_Delete(j);
            j = text ? cJSON_Parse(text) : NULL;
        }
        if (text && j && gen) { /* first key wins when the context has one too */
            cJSON *yes = cJSON_CreateTrue();
            char *t2 = yes ? with_key(text, j, "add_generation_prompt", yes) : NULL;
            cJSON_Delete(yes);
            free(text);
            text = t2;
            cJSON_Delete(j);
            j = text ? cJSON_Parse(text) : NULL;
        }
        char *out = text && j ? render_ctx(t, text, j, now, &err) : NULL;
        if (!text || !j) snprintf(err.message, sizeof err.message, "out of memory");
        if (out) {
            fputs(out, stdout);
            vlmc_free(out);
        } else {
            fprintf(stderr, "vlmc template: %s\n", err.message);
            rc = 1;
        }
        cJSON_Delete(j);
        free(text);
    }
    vlmc_chat_template_free(t);
    return rc;
}
