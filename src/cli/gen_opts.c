/* Options shared by `vlmc run` and `vlmc chat`; see gen_opts.h. */
#include "gen_opts.h"
#include "paths.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

volatile sig_atomic_t gen_interrupted;

const char *GEN_OPTS_HELP =
    "  -m, --model DIR          model folder (config.json, *.safetensors, tokenizer.json, chat template,\n"
    "                           preprocessor_config.json)\n"
    "  -n, --n-predict N        most new tokens per answer (default 256; 0 = until EOS / context full)\n"
    "  --temp T                 temperature (default 0 = greedy)\n"
    "  --top-k K                keep the K likeliest tokens (0 = off)\n"
    "  --top-p P                nucleus sampling (1 = off)\n"
    "  --min-p P                drop tokens below P x the top probability (0 = off)\n"
    "  --repeat-penalty R       repetition penalty as transformers applies it (1 = off)\n"
    "  -s, --seed S             sampling seed (default 0)\n"
    "  --stop STR               stop string (repeatable; the answer ends before it)\n"
    "  --ignore-eos             do not stop at EOS\n"
    "  --system TEXT            a system message first\n"
    "  -t, --threads N          threads (default: OpenMP's, OMP_NUM_THREADS)\n"
    "  -c, --ctx-size N         context (KV cache) size in tokens (default min(max_position_embeddings, 4096))\n"
    "  -b, --batch-size N       most prompt tokens per decoder pass (default 512)\n";

void gen_opts_init(gen_opts *o) {
    memset(o, 0, sizeof *o);
    o->gp = vlmc_gen_default_params();
    o->gp.stop = o->stop;
}

static int num(const char *cmd, const char *flag, const char *v, double lo, double hi, int integer, double *out) {
    char *end;
    errno = 0;
    double d = integer ? (double)strtoll(v, &end, 10) : strtod(v, &end);
    if (!*v || *end || errno || d < lo || d > hi) {
        fprintf(stderr, "vlmc %s: %s needs %s in [%g, %g], not '%s'\n", cmd, flag, integer ? "an integer" : "a number",
                lo, hi, v);
        return -1;
    }
    *out = d;
    return 0;
}

int gen_opts_parse(gen_opts *o, const char *cmd, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    if (!strcmp(a, "--ignore-eos")) {
        o->gp.ignore_eos = 1;
        return 1;
    }
    static const char *const with_value[] = {"-m", "--model", "-n", "--n-predict", "--temp", "--top-k", "--top-p",
                                             "--min-p", "--repeat-penalty", "-s", "--seed", "--stop", "--system", "-t",
                                             "--threads", "-c", "--ctx-size", "-b", "--batch-size", NULL};
    int known = 0;
    for (const char *const *w = with_value; *w; w++) known |= !strcmp(*w, a);
    if (!known) return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "vlmc %s: %s needs a value\n", cmd, a);
        return -1;
    }
    const char *v = argv[++*i];
    double d = 0;
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model = v;
    else if (!strcmp(a, "--system")) o->system = v;
    else if (!strcmp(a, "--stop")) {
        if (o->gp.n_stop >= GEN_OPTS_MAX_STOP || !*v) {
            fprintf(stderr, "vlmc %s: --stop: at most %d non-empty stop strings\n", cmd, GEN_OPTS_MAX_STOP);
            return -1;
        }
        o->stop[o->gp.n_stop++] = v;
    } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
        if (num(cmd, a, v, 0, 1 << 24, 1, &d)) return -1;
        o->gp.max_new_tokens = (int)d;
    } else if (!strcmp(a, "--temp")) {
        if (num(cmd, a, v, 0, 100, 0, &d)) return -1;
        o->gp.temperature = (float)d;
    } else if (!strcmp(a, "--top-k")) {
        if (num(cmd, a, v, 0, 1 << 30, 1, &d)) return -1;
        o->gp.top_k = (int)d;
    } else if (!strcmp(a, "--top-p")) {
        if (num(cmd, a, v, 1e-9, 1, 0, &d)) return -1;
        o->gp.top_p = (float)d;
    } else if (!strcmp(a, "--min-p")) {
        if (num(cmd, a, v, 0, 1, 0, &d)) return -1;
        o->gp.min_p = (float)d;
    } else if (!strcmp(a, "--repeat-penalty")) {
        if (num(cmd, a, v, 1e-6, 100, 0, &d)) return -1;
        o->gp.repetition_penalty = (float)d;
    } else if (!strcmp(a, "-s") || !strcmp(a, "--seed")) {
        char *end;
        errno = 0;
        unsigned long long s = strtoull(v, &end, 10);
        if (!*v || *end || errno || *v == '-') {
            fprintf(stderr, "vlmc %s: %s needs a non-negative integer, not '%s'\n", cmd, a, v);
            return -1;
        }
        o->gp.seed = s;
    } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
        if (num(cmd, a, v, 1, 1024, 1, &d)) return -1;
        o->mp.n_threads = (int)d;
    } else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) {
        if (num(cmd, a, v, 1, 1 << 20, 1, &d)) return -1;
        o->mp.n_batch = (int)d;
    } else {
        if (num(cmd, a, v, 1, 1 << 24, 1, &d)) return -1;
        o->mp.n_ctx = (int)d;
    }
    return 1;
}

static void on_sigint(int sig) {
    (void)sig;
    gen_interrupted = 1;
}

void gen_opts_install_sigint(gen_opts *o) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: a read at the chat prompt returns */
    sigaction(SIGINT, &sa, NULL);
    o->gp.cancel = &gen_interrupted;
}

int gen_opts_load(const gen_opts *o, const char *cmd, vlmc_model **m) {
    char buf[4096];
    const char *path = o->model ? o->model : cli_default_model(cmd, buf, sizeof buf);
    if (!path) return 2;
    vlmc_error err = {0};
    if (vlmc_model_load(path, &o->mp, m, &err)) {
        fprintf(stderr, "vlmc %s: %s\n", cmd, err.message);
        return 1;
    }
    return 0;
}
