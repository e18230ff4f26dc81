/* vlmc init / quantize / convert / bench: random-weight models of real shapes, quantized copies, and
 * speed measured against the machine's own bounds (docs/CLI.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlmc.h"
#include "commands.h"

/* The value after a flag, or NULL (with a message) when it is missing. */
static const char *flag_value(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "vlmc %s: %s needs a value\n", cmd, argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

static int parse_count(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "vlmc %s: %s wants an integer in %ld..%ld, not '%s'\n", cmd, opt, lo, hi, s);
        return 0;
    }
    *out = v;
    return 1;
}

int cmd_init(int argc, char **argv) {
    const char *usage = "usage: vlmc init --arch NAME --random --out DIR [--seed S] [--dtype f32|bf16] [--set KEY=VALUE]...\n"
                        "architectures: %s\n"
                        "--set overrides a config.json field: text_config.hidden_size=256, vision_config.image_size=224,\n"
                        "or a bare key (top level, else text_config, else vision_config).\n";
    vlmc_init_params p = {0};
    const char *out = NULL, **sets = calloc((size_t)argc, sizeof *sets);
    int random = 0, rc = 2;
    if (!sets) return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        long n;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf(usage, vlmc_init_arch_names());
            rc = 0;
            goto done;
        } else if (!strcmp(a, "--random")) random = 1;
        else if (!strcmp(a, "--arch") || !strcmp(a, "--out") || !strcmp(a, "--dtype") || !strcmp(a, "--set") ||
                 !strcmp(a, "--seed")) {
            if (!(v = flag_value("init", argc, argv, &i))) goto done;
            if (!strcmp(a, "--arch")) p.arch = v;
            else if (!strcmp(a, "--out")) out = v;
            else if (!strcmp(a, "--dtype")) p.dtype = v;
            else if (!strcmp(a, "--set")) sets[p.n_sets++] = v;
            else if (!parse_count("init", a, v, 0, 0x7fffffffL, &n)) goto done;
            else p.seed = (uint64_t)n;
        } else {
            fprintf(stderr, "vlmc init: unknown argument '%s'\n", a);
            goto done;
        }
    }
    if (!p.arch || !out || !random) {
        fprintf(stderr, usage, vlmc_init_arch_names());
        goto done;
    }
    p.sets = sets;
    vlmc_error err = {0};
    if (vlmc_init_random(&p, out, &err)) {
        fprintf(stderr, "vlmc init: %s\n", err.message);
        rc = 1;
    } else rc = 0;
done:
    free(sets);
    return rc;
}

/* Parses `-m DIR --<flag> VALUE --out DIR` (all three required); returns -1 when parsed, else the exit code. */
static int parse_model_value_out(const char *cmd, const char *flag, const char *usage, int argc, char **argv,
                                 const char **model, const char **value, const char **out) {
    *model = *value = *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, flag) || !strcmp(a, "--out")) {
            if (!(v = flag_value(cmd, argc, argv, &i))) return 2;
            if (!strcmp(a, flag)) *value = v;
            else if (!strcmp(a, "--out")) *out = v;
            else *model = v;
        } else {
            fprintf(stderr, "vlmc %s: unknown argument '%s'\n%s", cmd, a, usage);
            return 2;
        }
    }
    if (!*model || !*value || !*out) {
        fputs(usage, stderr);
        return 2;
    }
    return -1;
}

int cmd_quantize(int argc, char **argv) {
    const char *model, *type, *out;
    int rc = parse_model_value_out("quantize", "--type", "usage: vlmc quantize -m DIR --type q8_0|q4_0|q4_k|q6_k|bf16|f32 --out DIR\n",
                                   argc, argv, &model, &type, &out);
    if (rc >= 0) return rc;
    vlmc_error err = {0};
    if (vlmc_quantize(model, type, out, &err)) {
        fprintf(stderr, "vlmc quantize: %s\n", err.message);
        return 1;
    }
    return 0;
}

int cmd_convert(int argc, char **argv) {
    const char *model, *to, *out;
    int rc = parse_model_value_out("convert", "--to",
                                   "usage: vlmc convert -m DIR --to gguf --out DIR\n"
                                   "writes OUT/model.gguf (text model) and OUT/mmproj.gguf with llama.cpp's names (LLaVA, Idefics3)\n",
                                   argc, argv, &model, &to, &out);
    if (rc >= 0) return rc;
    vlmc_error err = {0};
    if (vlmc_convert(model, to, out, &err)) {
        fprintf(stderr, "vlmc convert: %s\n", err.message);
        return 1;
    }
    return 0;
}

int cmd_bench(int argc, char **argv) {
    const char *usage = "usage: vlmc bench -m MODEL [-t N] [-p PROMPT_TOKENS] [-n GEN_TOKENS] [-r REPS] [--json]\n";
    const char *model = NULL;
    vlmc_bench_params p = {0};
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        long n;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model = flag_value("bench", argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads") || !strcmp(a, "-p") || !strcmp(a, "-n") || !strcmp(a, "-r")) {
            if (!(v = flag_value("bench", argc, argv, &i)) || !parse_count("bench", a, v, 1, 1 << 20, &n)) return 2;
            if (!strcmp(a, "-p")) p.n_prompt = (int)n;
            else if (!strcmp(a, "-n")) p.n_gen = (int)n;
            else if (!strcmp(a, "-r")) p.reps = (int)n;
            else p.n_threads = (int)n;
        } else {
            fprintf(stderr, "vlmc bench: unknown argument '%s'\n%s", a, usage);
            return 2;
        }
    }
    if (!model) {
        fputs(usage, stderr);
        return 2;
    }
    vlmc_error err = {0};
    vlmc_bench_result r;
    if (vlmc_bench(model, &p, &r, &err)) {
        fprintf(stderr, "vlmc bench: %s\n", err.message);
        return 1;
    }
    if (json) {
        char *j = vlmc_bench_json(&r);
        if (!j) return 1;
        printf("%s\n", j);
        vlmc_free(j);
        return 0;
    }
    printf("threads                %d\n", r.n_threads);
    printf("memory bandwidth       %.2f GB/s (copy, read + write)\n", r.copy_gb_per_s);
    printf("f32 FMA peak           %.1f GFLOPS\n", r.fma_gflops);
    if (r.image_encode_s > 0)
        printf("image encode           %.4f s per tile (%.1f GFLOPS, %.0f%% of peak)\n", r.image_encode_s, r.image_gflops,
               100 * r.image_gflops / r.fma_gflops);
    printf("prompt processing      %.1f tokens/s (%.1f GFLOPS, %.0f%% of peak)\n", r.prompt_tokens_per_s, r.prompt_gflops,
           100 * r.prompt_gflops / r.fma_gflops);
    printf("generation             %.1f tokens/s (bound %.1f at %.1f MB per token: %.0f%%)\n", r.gen_tokens_per_s,
           r.gen_bound_tokens_per_s, r.weight_bytes_per_token / 1e6, 100 * r.gen_tokens_per_s / r.gen_bound_tokens_per_s);
    printf("peak RSS               %.1f MiB\n", (double)r.peak_rss_bytes / (1 << 20));
    return 0;
}
