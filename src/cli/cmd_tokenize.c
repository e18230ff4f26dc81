/* vlmc tokenize: encode text with a model's tokenizer.json.
 *
 *   vlmc tokenize -m DIR [--add-special-tokens] "text"     ids, then one "id<TAB>token" line per token
 *   vlmc tokenize -m DIR [--add-special-tokens] --jsonl    stdin: one JSON string per line;
 *       stdout: one {"ids", "tokens", "decoded", "decoded_skip_special"} object per line
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlmc.h"
#include "commands.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: vlmc tokenize -m DIR [--add-special-tokens] \"text\"\n"
            "       vlmc tokenize -m DIR [--add-special-tokens] --jsonl < lines.jsonl\n"
            "\n"
            "  -m, --model DIR         folder with tokenizer.json (or a tokenizer.json file)\n"
            "  --add-special-tokens    apply the post-processor (e.g. a leading <s>)\n"
            "  --jsonl                 read one JSON string per line on stdin; write one JSON object per line:\n"
            "                          {\"ids\": [...], \"tokens\": [...], \"decoded\": \"...\", \"decoded_skip_special\": \"...\"}\n");
}

/* A token for the terminal: control characters and backslashes escaped. */
static void print_token(const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\n') fputs("\\n", stdout);
        else if (*p == '\t') fputs("\\t", stdout);
        else if (*p == '\r') fputs("\\r", stdout);
        else if (*p == '\\') fputs("\\\\", stdout);
        else if (*p < 0x20 || *p == 0x7f) printf("\\x%02x", *p);
        else putchar(*p);
    }
}

static void print_json_error(const char *msg) {
    fputs("{\"error\": \"", stdout);
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if (*p < 0x20) printf("\\u%04x", *p);
        else putchar(*p);
    }
    fputs("\"}\n", stdout);
}

static int run_jsonl(const vlmc_tokenizer *tok, int add_special) {
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t n;
    int rc = 0;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        size_t len = (size_t)n;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        if (!len) continue; /* blank lines carry no input */
        char *json = NULL;
        vlmc_error err = {0};
        if (vlmc_tokenizer_jsonl(tok, line, len, add_special, &json, &err)) {
            fprintf(stderr, "vlmc tokenize: stdin line %zu: %s\n", lineno, err.message);
            print_json_error(err.message); /* keeps output lines aligned with input lines */
            rc = 1;
            continue;
        }
        puts(json);
        vlmc_free(json);
    }
    free(line);
    fflush(stdout);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL;
    int add_special = 0, jsonl = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) {
            if (++i >= argc) {
                fprintf(stderr, "vlmc tokenize: %s needs a folder\n", argv[i - 1]);
                return 2;
            }
            model = argv[i];
        } else if (!strcmp(argv[i], "--add-special-tokens")) {
            add_special = 1;
        } else if (!strcmp(argv[i], "--jsonl")) {
            jsonl = 1;
        } else if (argv[i][0] == '-' && argv[i][1] && strcmp(argv[i], "--") != 0) {
            fprintf(stderr, "vlmc tokenize: unknown option %s\n", argv[i]);
            usage(stderr);
            return 2;
        } else {
            if (!strcmp(argv[i], "--") && i + 1 < argc) i++;
            if (text) {
                fprintf(stderr, "vlmc tokenize: give the text as one argument (quote it)\n");
                return 2;
            }
            text = argv[i];
        }
    }
    if (!model || (!jsonl && !text) || (jsonl && text)) {
        usage(stderr);
        return 2;
    }
    vlmc_tokenizer *tok = NULL;
    vlmc_error err = {0};
    if (vlmc_tokenizer_load(model, &tok, &err)) {
        fprintf(stderr, "vlmc tokenize: %s\n", err.message);
        return 1;
    }
    int rc = 0;
    if (jsonl) {
        rc = run_jsonl(tok, add_special);
    } else {
        int32_t *ids = NULL;
        size_t n = 0;
        if (vlmc_tokenizer_encode(tok, text, strlen(text), add_special, &ids, &n, &err)) {
            fprintf(stderr, "vlmc tokenize: %s\n", err.message);
            rc = 1;
        } else {
            printf("%zu tokens:", n);
            for (size_t i = 0; i < n; i++) printf(" %d", (int)ids[i]);
            putchar('\n');
            for (size_t i = 0; i < n; i++) {
                const char *s = vlmc_tokenizer_id_to_token(tok, ids[i]);
                printf("%d\t", (int)ids[i]);
                print_token(s ? s : "");
                putchar('\n');
            }
        }
        vlmc_free(ids);
    }
    vlmc_tokenizer_free(tok);
    return rc;
}
