/* Options shared by `vlmc run` and `vlmc chat` (llama.cpp's spellings where it has them). */
#ifndef VLMC_CLI_GEN_OPTS_H
#define VLMC_CLI_GEN_OPTS_H

#include <signal.h>

#include "vlmc.h"

enum { GEN_OPTS_MAX_STOP = 16 };

typedef struct gen_opts {
    const char *model;
    vlmc_model_params mp;
    vlmc_gen_params gp;
    const char *stop[GEN_OPTS_MAX_STOP];
    const char *system;
} gen_opts;

/* The option text for usage messages. */
extern const char *GEN_OPTS_HELP;

void gen_opts_init(gen_opts *o);
/* Tries argv[*i] (and its value) as a shared option. Returns 1 when taken (*i advanced past the value), 0 when
 * not one of them, -1 on a bad value (message printed, prefixed by cmd). */
int gen_opts_parse(gen_opts *o, const char *cmd, int argc, char **argv, int *i);

/* Ctrl-C: the first SIGINT sets the flag (the current answer stops); gen_opts_install_sigint points
 * o->gp.cancel at it. */
extern volatile sig_atomic_t gen_interrupted;
void gen_opts_install_sigint(gen_opts *o);

/* Loads o->model, printing the error as "vlmc CMD: ..." on failure. */
int gen_opts_load(const gen_opts *o, const char *cmd, vlmc_model **m);

#endif
