#include <stdio.h>
#include <string.h>

#include "vlmc.h"
#include "commands.h"

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    int as_json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) as_json = 1;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: vlmc info [--json] PATH\n\n"
                   "Describes a model folder (config.json + safetensors) or one .safetensors file:\n"
                   "architecture, parameters per component, dtypes, sizes, tokenizer and chat template.\n");
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "vlmc info: unknown option '%s'\n", argv[i]);
            return 2;
        } else if (!path) path = argv[i];
        else {
            fprintf(stderr, "vlmc info: more than one path given\n");
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "usage: vlmc info [--json] PATH\n");
        return 2;
    }
    vlmc_error err = {0};
    char *out = NULL;
    vlmc_status s = as_json ? vlmc_info_json(path, &out, &err) : vlmc_info_text(path, &out, &err);
    if (s != VLMC_OK) {
        fprintf(stderr, "vlmc info: %s\n", err.message);
        return 1;
    }
    fputs(out, stdout);
    vlmc_free(out);
    return 0;
}
