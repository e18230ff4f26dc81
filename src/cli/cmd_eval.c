/* vlmc eval: benchmark tasks against a model (docs/EVAL.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "paths.h"
#include "vlmc.h"
#include "commands.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: vlmc eval [-m MODEL] --tasks T1,T2 --output DIR [options]\n\n"
            "Runs benchmark tasks (task files TASKS_DIR/<name>.json) and writes DIR/results.json\n"
            "(lmms-eval layout) and DIR/samples_<task>.jsonl. An interrupted run started again with the\n"
            "same arguments continues from its sample logs.\n\n"
            "  -m, --model MODEL   oracle (answers the targets: a sanity check), replay:FILE (answers from a\n"
            "                      JSONL of {task, doc_id, response}), or a model folder (default: models/vlmc-tiny)\n"
            "  --model-args ARGS   arguments of the model backend (key=value,...)\n"
            "  --tasks LIST        comma-separated task names or task-file paths; `--tasks list` lists them\n"
            "  --tasks-dir DIR     folder of the task files (default $VLMC_TASKS_DIR, else ./tasks, else\n"
            "                      the tasks/ of the source tree holding this binary)\n"
            "  --data DIR          the value of ${data} in task files (e.g. a folder written by vlmc synth)\n"
            "  --image-dir DIR     the value of ${image_dir} (images of tasks that do not bundle them, e.g. pope)\n"
            "  --output DIR        results folder (created)\n"
            "  --limit N           first N questions of each task\n"
            "  --batch-size B      requests per model call (default 1)\n"
            "  --log-samples       keep the sample logs (else removed after a complete run)\n"
            "  --json              print results.json to stdout instead of the table\n"
            "  --quiet             no progress line\n");
}

static int parse_long(const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "vlmc eval: %s wants an integer in %ld..%ld, not '%s'\n", opt, lo, hi, s);
        return 0;
    }
    *out = v;
    return 1;
}

typedef struct progress_state {
    int active;
    size_t last_len;
    double last_draw; /* seconds of the last redraw: at most 10 a second */
} progress_state;

static void fmt_time(double s, char *buf, size_t cap) {
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, cap, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

static void on_progress(void *user, const char *task, size_t done, size_t total, size_t resumed, double seconds) {
    progress_state *ps = user;
    if (ps->active && done < total && seconds - ps->last_draw < 0.1) return;
    ps->last_draw = seconds;
    size_t fresh = done - resumed;
    double rate = seconds > 0 ? (double)fresh / seconds : 0;
    char eta[32], el[32];
    fmt_time(rate > 0 ? (double)(total - done) / rate : -1, eta, sizeof eta);
    fmt_time(seconds, el, sizeof el);
    char line[512];
    int n = snprintf(line, sizeof line, "%s: %zu/%zu%s  %.1f/s  elapsed %s  ETA %s", task, done, total,
                     resumed ? " (resumed)" : "", rate, el, done == total ? "0:00" : eta);
    if (n < 0) return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    fprintf(stderr, "\r%s", line);
    for (size_t i = len; i < ps->last_len; i++) fputc(' ', stderr);
    ps->last_len = len;
    ps->active = 1;
    if (done == total) {
        fputc('\n', stderr);
        ps->last_len = 0;
        ps->active = 0;
        ps->last_draw = 0;
    }
    fflush(stderr);
}

static void print_table(const char *json) {
    cJSON *root = cJSON_Parse(json);
    if (!root) return;
    const cJSON *results = cJSON_GetObjectItemCaseSensitive(root, "results");
    const cJSON *ns = cJSON_GetObjectItemCaseSensitive(root, "n-samples");
    printf("| %-20s | %-16s | %10s | %10s | %7s |\n", "task", "metric", "value", "stderr", "n");
    printf("|----------------------|------------------|------------|------------|---------|\n");
    for (const cJSON *t = results ? results->child : NULL; t; t = t->next) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ns, t->string), "effective");
        for (const cJSON *m = t->child; m; m = m->next) {
            if (!cJSON_IsNumber(m) || strstr(m->string, "_stderr")) continue;
            char key[200];
            snprintf(key, sizeof key, "%s_stderr", m->string);
            const cJSON *se = cJSON_GetObjectItemCaseSensitive(t, key);
            char seb[32] = "";
            if (cJSON_IsNumber(se)) snprintf(seb, sizeof seb, "%.4f", se->valuedouble);
            printf("| %-20s | %-16s | %10.4f | %10s | %7.0f |\n", t->string, m->string, m->valuedouble, seb,
                   cJSON_IsNumber(n) ? n->valuedouble : 0.0);
        }
    }
    cJSON_Delete(root);
}

int cmd_eval(int argc, char **argv) {
    vlmc_eval_params p;
    vlmc_eval_default_params(&p);
    const char *tasks_arg = NULL;
    int quiet = 0, json = 0;
    char tasks_buf[4200];
    p.tasks_dir = cli_find_dir("VLMC_TASKS_DIR", "tasks", NULL, tasks_buf, sizeof tasks_buf);
    if (!p.tasks_dir) p.tasks_dir = "tasks";
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
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (!strcmp(a, "--log-samples")) {
            p.log_samples = 1;
            continue;
        }
        if (a[0] != '-') {
            fprintf(stderr, "vlmc eval: unexpected argument '%s' (see vlmc eval --help)\n", a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "vlmc eval: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        long lv;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) p.model = v;
        else if (!strcmp(a, "--model-args")) p.model_args = v;
        else if (!strcmp(a, "--tasks")) tasks_arg = v;
        else if (!strcmp(a, "--tasks-dir")) p.tasks_dir = v;
        else if (!strcmp(a, "--data")) p.data_dir = v;
        else if (!strcmp(a, "--image-dir")) p.image_dir = v;
        else if (!strcmp(a, "--output") || !strcmp(a, "-o")) p.output_dir = v;
        else if (!strcmp(a, "--limit")) {
            if (!parse_long(a, v, 1, 1000000000L, &lv)) return 2;
            p.limit = lv;
        } else if (!strcmp(a, "--batch-size")) {
            if (!parse_long(a, v, 1, 4096, &lv)) return 2;
            p.batch_size = (int)lv;
        } else {
            fprintf(stderr, "vlmc eval: unknown option '%s' (see vlmc eval --help)\n", a);
            return 2;
        }
    }
    vlmc_error err = {0};
    if (tasks_arg && !strcmp(tasks_arg, "list")) {
        char *names;
        if (vlmc_eval_list_tasks(p.tasks_dir, &names, &err)) {
            fprintf(stderr, "vlmc eval: %s\n", err.message);
            return 1;
        }
        fputs(names, stdout);
        vlmc_free(names);
        return 0;
    }
    if (!tasks_arg || !p.output_dir) {
        fprintf(stderr, "vlmc eval: --tasks LIST and --output DIR are required\n");
        usage(stderr);
        return 2;
    }
    char modelbuf[4096];
    if (!p.model && !(p.model = cli_default_model("eval", modelbuf, sizeof modelbuf))) {
        usage(stderr);
        return 2;
    }
    /* split the task list */
    char *list = strdup(tasks_arg);
    const char **names = calloc(strlen(tasks_arg) + 1, sizeof *names);
    if (!list || !names) {
        free(list);
        free(names);
        fprintf(stderr, "vlmc eval: out of memory\n");
        return 1;
    }
    size_t n = 0;
    for (char *s = list, *tok; (tok = strsep(&s, ",")) != NULL;)
        if (tok[0]) names[n++] = tok;
    if (!n) {
        free(list);
        free(names);
        fprintf(stderr, "vlmc eval: --tasks names no task\n");
        return 2;
    }
    p.tasks = names;
    p.n_tasks = n;
    progress_state ps = {0};
    if (!quiet && isatty(2)) {
        p.progress = on_progress;
        p.progress_user = &ps;
    }
    char *results = NULL;
    vlmc_status st = vlmc_eval_run(&p, &results, &err);
    if (ps.active) fputc('\n', stderr);
    free(list);
    free(names);
    if (st) {
        fprintf(stderr, "vlmc eval: %s\n", err.message);
        return 1;
    }
    if (json) printf("%s\n", results);
    else print_table(results);
    vlmc_free(results);
    return 0;
}
