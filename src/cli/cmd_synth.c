/* vlmc synth: writes the synthetic visual-world dataset (see docs/SYNTH.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vlmc.h"
#include "commands.h"

static void usage(FILE *f) {
    vlmc_synth_params d;
    vlmc_synth_default_params(&d);
    fprintf(f,
            "usage: vlmc synth --out DIR --n N [--seed S] [options]\n\n"
            "Writes a synthetic dataset of shapes, colours and words with VQA, counting, relations,\n"
            "grounding, OCR, multiple-choice and caption conversations (Hugging Face messages format).\n"
            "The same options and seed give byte-identical files.\n\n"
            "  --out DIR           output folder (created; files of the same name are overwritten)\n"
            "  --n N               number of images over all splits\n"
            "  --seed S            seed, 0..2^64-1 (default %llu)\n"
            "  --size PX           image side in pixels, 64..512 (default %d)\n"
            "  --questions Q       question/answer turns per image, 1..32 (default %d)\n"
            "  --min-objects K     fewest shapes per image, 1..6 (default %d)\n"
            "  --max-objects K     most shapes per image, 1..6 (default %d)\n"
            "  --text-percent P    share of images with a written word, 0..100 (default %d)\n"
            "  --val F             validation fraction, 0..1 (default %g)\n"
            "  --test F            test fraction, 0..1 (default %g)\n"
            "  --threads T         worker threads, 0 = all cores (default 0; output does not depend on it)\n"
            "  --tasks LIST        ask only these tasks (comma-separated, e.g. caption; default all);\n"
            "                      the images are the same whatever the list\n"
            "  --quiet             no summary line\n",
            (unsigned long long)d.seed, d.image_size, d.questions, d.min_objects, d.max_objects, d.text_percent,
            d.val_fraction, d.test_fraction);
}

/* Whole-string integer parsing with a range; prints the error itself. */
static int parse_int(const char *opt, const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "vlmc synth: %s wants an integer in %ld..%ld, not '%s'\n", opt, lo, hi, s);
        return 0;
    }
    *out = (int)v;
    return 1;
}

static int parse_frac(const char *opt, const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0 && v <= 1)) {
        fprintf(stderr, "vlmc synth: %s wants a fraction in 0..1, not '%s'\n", opt, s);
        return 0;
    }
    *out = v;
    return 1;
}

int cmd_synth(int argc, char **argv) {
    vlmc_synth_params p;
    vlmc_synth_default_params(&p);
    const char *out = NULL;
    int have_n = 0, quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--quiet")) {
            quiet = 1;
            continue;
        }
        if (a[0] != '-') {
            fprintf(stderr, "vlmc synth: unexpected argument '%s' (see vlmc synth --help)\n", a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "vlmc synth: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        int ok = 1;
        if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--n")) ok = parse_int(a, v, 1, 10000000, &p.n), have_n = 1;
        else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-') {
                fprintf(stderr, "vlmc synth: --seed wants an integer in 0..18446744073709551615, not '%s'\n", v);
                ok = 0;
            } else p.seed = (uint64_t)s;
        } else if (!strcmp(a, "--size")) ok = parse_int(a, v, 64, 512, &p.image_size);
        else if (!strcmp(a, "--questions")) ok = parse_int(a, v, 1, 32, &p.questions);
        else if (!strcmp(a, "--min-objects")) ok = parse_int(a, v, 1, 6, &p.min_objects);
        else if (!strcmp(a, "--max-objects")) ok = parse_int(a, v, 1, 6, &p.max_objects);
        else if (!strcmp(a, "--text-percent")) ok = parse_int(a, v, 0, 100, &p.text_percent);
        else if (!strcmp(a, "--val")) ok = parse_frac(a, v, &p.val_fraction);
        else if (!strcmp(a, "--test")) ok = parse_frac(a, v, &p.test_fraction);
        else if (!strcmp(a, "--threads")) ok = parse_int(a, v, 0, 1024, &p.threads);
        else if (!strcmp(a, "--tasks")) p.tasks = v;
        else {
            fprintf(stderr, "vlmc synth: unknown option '%s' (see vlmc synth --help)\n", a);
            return 2;
        }
        if (!ok) return 2;
    }
    if (!out || !have_n) {
        fprintf(stderr, "vlmc synth: --out DIR and --n N are required\n");
        usage(stderr);
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    vlmc_error err = {0};
    if (vlmc_synth_generate(&p, out, &err) != VLMC_OK) {
        fprintf(stderr, "vlmc synth: %s\n", err.message);
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (!quiet)
        fprintf(stderr, "vlmc synth: wrote %d images to %s in %.2f s\n", p.n, out,
                (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
    return 0;
}
