/* Files the CLI finds by itself: the default model, the task files, the chat page. Each is looked up
 * in an environment variable, then beside the binary in the source tree it was built in (build/vlmc,
 * build/asan/vlmc and build/clang/vlmc are one to three levels below the tree's top), then in the
 * current directory. */
#ifndef VLMC_CLI_PATHS_H
#define VLMC_CLI_PATHS_H

#include <stddef.h>

/* The default model folder, models/vlmc-tiny (or $VLMC_MODEL): the model vlmc trained itself. */
#define CLI_DEFAULT_MODEL "models/vlmc-tiny"

/* The first of: $env (when set and non-empty), <dir of the binary>/../{rel} for one to three levels up,
 * ./{rel}, that exists and is a directory holding the file `must_hold` (NULL: any directory). Written into
 * buf (cap bytes); NULL when none exists. */
const char *cli_find_dir(const char *env, const char *rel, const char *must_hold, char *buf, size_t cap);

/* The default model's folder for a command run without -m, or NULL after printing why there is none
 * ("vlmc CMD: ..."). */
const char *cli_default_model(const char *cmd, char *buf, size_t cap);

#endif
