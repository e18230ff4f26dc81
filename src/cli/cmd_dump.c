/* vlmc dump: the seam of ../shared/CHECKS.md — run a model on fixture-format inputs, write its arrays. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlmc.h"
#include "commands.h"

static void usage(FILE *f) {
    fprintf(f, "usage: vlmc dump -m MODEL --inputs IN_DIR --out OUT_DIR [--generate N] [--grads]\n\n"
               "IN_DIR/manifest.json lists input arrays in the fixtures' format (input_ids, attention_mask,\n"
               "position_ids, pixel_values, image_sizes, pixel_attention_mask; fuyu: image_patches,\n"
               "image_patches_indices; paligemma: token_type_ids); OUT_DIR gets logits,\n"
               "hidden_states / text_hidden_states, the vision and projector outputs, and with --generate N\n"
               "generated_ids and generation_step_logits (greedy, no EOS stop). With labels among the\n"
               "inputs also loss, and with --grads OUT_DIR/grads.safetensors. An input the model cannot\n"
               "use is an error.\n");
}

int cmd_dump(int argc, char **argv) {
    const char *model = NULL, *in = NULL, *out = NULL;
    long gen = 0;
    int grads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--grads")) {
            grads = 1;
            continue;
        }
        int takes = !strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "--inputs") || !strcmp(a, "--out") ||
                    !strcmp(a, "-o") || !strcmp(a, "--generate");
        if (!takes || i + 1 >= argc) {
            fprintf(stderr, "vlmc dump: %s '%s'\n\n", takes ? "missing value for" : "unknown argument", a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--inputs")) in = v;
        else if (!strcmp(a, "--out") || !strcmp(a, "-o")) out = v;
        else {
            char *end;
            gen = strtol(v, &end, 10);
            if (!*v || *end || gen < 0 || gen > 1 << 20) {
                fprintf(stderr, "vlmc dump: --generate needs a non-negative integer, not '%s'\n", v);
                return 2;
            }
        }
    }
    if (!model || !in || !out) {
        fprintf(stderr, "vlmc dump: -m, --inputs and --out are required\n\n");
        usage(stderr);
        return 2;
    }
    vlmc_error err = {0};
    if (vlmc_dump(model, in, out, (int)gen, grads, &err)) {
        fprintf(stderr, "vlmc dump: %s\n", err.message);
        return 1;
    }
    return 0;
}
