/* Fuzz target: arbitrary bytes as an MMBench-format TSV, through the TSV reader,
 * the MMBench loader with CircularEval expansion, prompt rendering and scoring;
 * and the same bytes as a task file (tasks/<name>.json). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eval/harness.h"
#include "eval/tsv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 20) return 0;
    vlmc_error err;
    tsv_table t;
    if (tsv_parse((const char *)data, size, "fuzz.tsv", &t, &err) == VLMC_OK) {
        for (size_t r = 0; r < t.n_rows; r++)
            for (size_t c = 0; c < t.n_cols; c++) (void)strlen(tsv_cell(&t, r, (int)c));
        tsv_free(&t);
    }
    eval_task_vars vars = {"/data", "/images"};
    eval_task parsed_task;
    if (eval_task_parse((const char *)data, size, "fuzz.json", &vars, &parsed_task, &err) == VLMC_OK)
        eval_task_free(&parsed_task);
    static const char task_text[] = "{\"name\": \"f\", \"kind\": \"mcq\", \"format\": \"mmbench_tsv\", \"data\": "
                                    "\"fuzz.tsv\", \"circular\": \"expand\"}";
    eval_task task;
    if (eval_task_parse(task_text, sizeof task_text - 1, "fuzz.json", NULL, &task, &err) != VLMC_OK) return 0;
    for (int mode = 0; mode < 2; mode++) {
        task.circular = mode ? EVAL_CIRC_GIVEN : EVAL_CIRC_EXPAND;
        eval_docs d;
        if (eval_docs_from_mmbench_tsv(&task, (const char *)data, size, mode ? 0 : 3, &d, &err) != VLMC_OK) continue;
        for (size_t i = 0; i < d.n; i++) {
            char *p = NULL;
            if (eval_render_prompt(&task, &d.docs[i], &p, &err) == VLMC_OK) free(p);
            char *parsed = NULL;
            double score, iou;
            if (eval_score_sample(&task, &d.docs[i], d.docs[i].target, &parsed, &score, &iou, &err) == VLMC_OK)
                free(parsed);
        }
        eval_docs_free(&d);
    }
    eval_task_free(&task);
    return 0;
}
