/* vlmc_eval_run: the public face of the evaluation harness (src/eval/harness.h). */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/strbuf.h"
#include "eval/harness.h"
#include "vlmc.h"

void vlmc_eval_default_params(vlmc_eval_params *p) {
    memset(p, 0, sizeof *p);
    p->batch_size = 1;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

vlmc_status vlmc_eval_list_tasks(const char *tasks_dir, char **names_out, vlmc_error *err) {
    *names_out = NULL;
    if (!tasks_dir) tasks_dir = "tasks";
    DIR *d = opendir(tasks_dir);
    if (!d) return vlmc_fail(err, VLMC_ERR_IO, "%s: cannot list the task folder", tasks_dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    vlmc_status st = VLMC_OK;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t l = strlen(e->d_name);
        if (l <= 5 || strcmp(e->d_name + l - 5, ".json") || e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) {
                st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
                break;
            }
            names = nn;
        }
        names[n] = malloc(l - 4);
        if (!names[n]) {
            st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
            break;
        }
        memcpy(names[n], e->d_name, l - 5);
        names[n++][l - 5] = '\0';
    }
    closedir(d);
    strbuf b = {0};
    if (!st) {
        qsort(names, n, sizeof *names, cmp_str);
        for (size_t i = 0; i < n; i++) strbuf_printf(&b, "%s\n", names[i]);
        const char *c = strbuf_cstr(&b);
        if (!c) st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        else {
            *names_out = strbuf_take(&b);
            if (!*names_out) *names_out = calloc(1, 1);
            if (!*names_out) st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        }
    }
    strbuf_free(&b);
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return st;
}

static char *task_path(const char *tasks_dir, const char *name) {
    size_t l = strlen(name);
    if (strchr(name, '/') || (l > 5 && !strcmp(name + l - 5, ".json"))) {
        char *p = malloc(l + 1);
        if (p) memcpy(p, name, l + 1);
        return p;
    }
    strbuf b = {0};
    strbuf_printf(&b, "%s/%s.json", tasks_dir, name);
    return strbuf_take(&b);
}

vlmc_status vlmc_eval_run(const vlmc_eval_params *p, char **results_json, vlmc_error *err) {
    if (results_json) *results_json = NULL;
    if (!p || !p->model || !p->model[0]) return vlmc_fail(err, VLMC_ERR_ARG, "eval: no model");
    if (!p->n_tasks || !p->tasks) return vlmc_fail(err, VLMC_ERR_ARG, "eval: no tasks");
    if (!p->output_dir || !p->output_dir[0]) return vlmc_fail(err, VLMC_ERR_ARG, "eval: no output folder");
    if (p->limit < 0) return vlmc_fail(err, VLMC_ERR_ARG, "eval: limit %ld is negative", p->limit);
    if (p->batch_size < 0) return vlmc_fail(err, VLMC_ERR_ARG, "eval: batch size %d is negative", p->batch_size);
    const char *tasks_dir = p->tasks_dir ? p->tasks_dir : "tasks";
    eval_task *tasks = calloc(p->n_tasks, sizeof *tasks);
    if (!tasks) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    eval_task_vars vars = {p->data_dir, p->image_dir};
    vlmc_status st = VLMC_OK;
    size_t loaded = 0;
    for (; loaded < p->n_tasks; loaded++) {
        char *path = task_path(tasks_dir, p->tasks[loaded]);
        if (!path) {
            st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
            break;
        }
        if (!file_exists(path)) {
            char *names = NULL;
            vlmc_error e2;
            bool listed = vlmc_eval_list_tasks(tasks_dir, &names, &e2) == VLMC_OK;
            if (listed)
                for (char *c = names; *c; c++)
                    if (*c == '\n' && c[1]) *c = ',';
            if (listed && names[0] && names[strlen(names) - 1] == '\n') names[strlen(names) - 1] = '\0';
            st = vlmc_fail(err, VLMC_ERR_ARG, "task '%s': no task file %s (tasks in %s: %s)", p->tasks[loaded], path,
                           tasks_dir, listed && names[0] ? names : "none");
            free(names);
            free(path);
            break;
        }
        st = eval_task_load(path, &vars, &tasks[loaded], err);
        free(path);
        if (st) break;
    }
    eval_backend b = {0};
    if (!st) {
        if (!strcmp(p->model, "oracle")) st = eval_backend_oracle(&b, err);
        else if (!strncmp(p->model, "replay:", 7)) st = eval_backend_replay(p->model + 7, &b, err);
        else st = eval_backend_model(p->model, p->model_args, &b, err);
    }
    if (!st) {
        eval_run_opts o = {0};
        o.output_dir = p->output_dir;
        o.limit = p->limit;
        o.batch_size = p->batch_size;
        o.keep_samples = p->log_samples != 0;
        o.model = p->model;
        o.model_args = p->model_args;
        o.progress = p->progress;
        o.progress_user = p->progress_user;
        st = eval_run(tasks, p->n_tasks, &b, &o, results_json, err);
        eval_backend_close(&b);
    }
    for (size_t i = 0; i < p->n_tasks; i++) eval_task_free(&tasks[i]);
    free(tasks);
    return st;
}
