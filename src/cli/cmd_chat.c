/* vlmc chat: an interactive multi-turn conversation. Lines are user messages; /image PATH attaches an image to
 * the next message, /reset starts over, /quit (or end of input) leaves. Answers stream as they are generated;
 * Ctrl-C stops the current answer (at the prompt, it leaves). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vlmc.h"
#include "commands.h"
#include "gen_opts.h"

static void usage(FILE *f) {
    fprintf(f, "usage: vlmc chat -m MODEL [options]\n\n"
               "Reads one user message per line from stdin and streams the answers to stdout.\n"
               "  /image PATH              attach an image to the next message\n"
               "  /reset                   forget the conversation\n"
               "  /quit                    leave (as does end of input)\n"
               "Ctrl-C stops the current answer; at the prompt it leaves.\n\n"
               "%s", GEN_OPTS_HELP);
}

static int stream(const char *text, size_t len, int32_t id, void *user) {
    (void)id;
    (void)user;
    if (len) {
        fwrite(text, 1, len, stdout);
        fflush(stdout);
    }
    return 0;
}

int cmd_chat(int argc, char **argv) {
    gen_opts o;
    gen_opts_init(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        int r = gen_opts_parse(&o, "chat", argc, argv, &i);
        if (r < 0) return 2;
        if (!r) {
            fprintf(stderr, "vlmc chat: unknown argument '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    vlmc_model *m = NULL;
    int rc = gen_opts_load(&o, "chat", &m);
    if (rc) return rc;
    gen_opts_install_sigint(&o);
    vlmc_error err = {0};
    vlmc_session *s = NULL;
    if (vlmc_session_new(m, 0, &s, &err) || (o.system && vlmc_session_add_message(s, "system", o.system, &err))) {
        fprintf(stderr, "vlmc chat: %s\n", err.message);
        vlmc_session_free(s);
        vlmc_model_free(m);
        return 1;
    }
    const int tty = isatty(STDIN_FILENO);
    char *line = NULL;
    size_t cap = 0;
    rc = 0;
    for (;;) {
        if (tty) {
            fputs("> ", stderr);
            fflush(stderr);
        }
        gen_interrupted = 0;
        errno = 0;
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0) break; /* end of input, or Ctrl-C at the prompt */
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (n == 0) continue;
        if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) break;
        if (!strcmp(line, "/reset")) {
            vlmc_session_reset(s);
            if (o.system) vlmc_session_add_message(s, "system", o.system, &err);
            fprintf(stderr, "[conversation reset]\n");
            continue;
        }
        if (!strncmp(line, "/image", 6) && (line[6] == ' ' || line[6] == 0)) {
            const char *path = line + 6;
            while (*path == ' ') path++;
            vlmc_image *im = NULL;
            if (!*path) fprintf(stderr, "vlmc chat: /image needs a path\n");
            else if (vlmc_image_load_file(path, NULL, &im, &err) || vlmc_session_add_image(s, im, &err))
                fprintf(stderr, "vlmc chat: %s\n", err.message);
            else fprintf(stderr, "[image %s: %dx%d, attached to the next message]\n", path, vlmc_image_width(im),
                         vlmc_image_height(im));
            vlmc_image_free(im);
            continue;
        }
        if (line[0] == '/' && line[1] != '/') {
            fprintf(stderr, "vlmc chat: unknown command %s (/image PATH, /reset, /quit; start with // for a '/')\n", line);
            continue;
        }
        const char *msg = line[0] == '/' ? line + 1 : line;
        vlmc_result res;
        if (vlmc_session_add_message(s, "user", msg, &err) || vlmc_session_generate(s, &o.gp, stream, NULL, &res, &err)) {
            fprintf(stderr, "vlmc chat: %s%s\n", err.message, err.code == VLMC_ERR_LIMIT ? " (/reset to start over)" : "");
            continue;
        }
        putchar('\n');
        fflush(stdout);
        if (res.stop == VLMC_STOP_CANCEL) fprintf(stderr, "[answer stopped]\n");
        vlmc_result_free(&res);
    }
    free(line);
    vlmc_session_free(s);
    vlmc_model_free(m);
    return rc;
}
