#include <stdio.h>

#include "commands.h"

int cmd_preprocess(int argc, char **argv) {
    (void)argc;
    fprintf(stderr, "vlmc %s: not implemented yet\n", argv[0]);
    return 2;
}
