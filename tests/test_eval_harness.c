/* The `vlmc eval` harness: task files, the MMBench TSV reader, CircularEval
 * through replayed answers, resuming an interrupted run, the oracle, and the
 * reported metrics recounted from the sample logs. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testlib.h"
#include "eval/harness.h"
#include "eval/tsv.h"
#include "core/file.h"
#include "vlmc.h"

#define PNG_2X2 "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEUlEQVR4nGP4z8DA8B+MgBgAHfAD/dPQfSYAAAAASUVORK5CYII="

static char *tmp_path(const char *name) {
    static char buf[8][1024];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", test_tmpdir(), name);
    return buf[k];
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static bool parse_task(const char *text, const eval_task_vars *vars, eval_task *t, vlmc_error *err) {
    return eval_task_parse(text, strlen(text), "dir/t.json", vars, t, err) == VLMC_OK;
}

static void test_task_file(void) {
    eval_task t;
    vlmc_error err = {0};
    eval_task_vars vars = {"/data/synth", NULL};
    bool ok = parse_task("{\"name\": \"x\", \"kind\": \"synth\", \"format\": \"synth_qa_jsonl\", "
                         "\"data\": \"${data}/${split}_qa.jsonl\", \"generation\": {\"max_new_tokens\": 7, "
                         "\"stop\": [\"\\n\"]}}",
                         &vars, &t, &err);
    CHECK(ok, "valid task: %s", err.message);
    if (ok) {
        CHECK(!strcmp(t.data, "/data/synth/test_qa.jsonl"), "data %s", t.data);
        CHECK(!strcmp(t.image_root, "/data/synth"), "image root %s", t.image_root);
        CHECK(t.max_new_tokens == 7 && t.n_stop == 1 && !strcmp(t.stop[0], "\n"), "generation settings");
        CHECK(t.n_metrics == 3 && !strcmp(t.metrics[0], "accuracy"), "default synth metrics");
        CHECK(t.kind == EVAL_KIND_SYNTH && t.format == EVAL_FMT_SYNTH_QA, "kind and format");
        eval_task_free(&t);
    }
    ok = parse_task("{\"name\": \"x\", \"kind\": \"vqa\", \"format\": \"jsonl\", \"data\": \"q.jsonl\"}", NULL, &t, &err);
    CHECK(ok && !strcmp(t.data, "dir/q.jsonl"), "relative data path joins the task file's folder: %s",
          ok ? t.data : err.message);
    if (ok) {
        CHECK(t.n_metrics == 1 && !strcmp(t.metrics[0], "exact_match"), "vqa default metric");
        eval_task_free(&t);
    }
    static const struct {
        const char *text, *want1, *want2;
    } bad[] = {
        {"{\"name\": \"x\", \"format\": \"jsonl\", \"data\": \"a\"}", "missing key \"kind\"", NULL},
        {"{\"name\": \"x\", \"kind\": \"vqa\", \"format\": \"jsonl\", \"data\": \"a\", \"promt\": \"\"}",
         "unknown key \"promt\"", NULL},
        {"{\"name\": \"x\", \"kind\": \"quiz\", \"format\": \"jsonl\", \"data\": \"a\"}", "key \"kind\"", "quiz"},
        {"{\"name\": \"x\", \"kind\": \"vqa\", \"format\": \"csv\", \"data\": \"a\"}", "key \"format\"", "csv"},
        {"{\"name\": \"x\", \"kind\": \"vqa\", \"format\": \"jsonl\", \"data\": \"a\", \"metric\": \"cider\"}",
         "key \"metric\"", "cider"},
        {"{\"name\": \"x\", \"kind\": \"synth\", \"format\": \"synth_qa_jsonl\", \"data\": \"${data}/a\"}", "key \"data\"",
         "--data"},
        {"{\"name\": \"x\", \"kind\": \"yesno\", \"format\": \"pope_jsonl\", \"data\": \"a\", \"image_root\": "
         "\"${image_dir}\"}", "key \"image_root\"", "--image-dir"},
        {"{\"name\": \"x\", \"kind\": \"vqa\", \"format\": \"jsonl\", \"data\": \"a\", \"generation\": "
         "{\"max_new_tokens\": 0}}", "generation.max_new_tokens", NULL},
        {"{\"name\": \"x\", \"kind\": \"vqa\", \"format\": \"jsonl\", \"data\": \"a\", \"circular\": \"expand\"}",
         "key \"circular\"", NULL},
        {"{\"name\": \"x\", \"kind\": \"vqa\", \"format\": \"jsonl\", \"data\": \"a\", \"output_type\": "
         "\"multiple_choice\"}", "key \"output_type\"", NULL},
        {"{\"name\": \"a b\", \"kind\": \"vqa\", \"format\": \"jsonl\", \"data\": \"a\"}", "key \"name\"", NULL},
        {"{\"name\": \"x\", \"kind\": \"vqa\", \"format\": \"jsonl\", \"data\": \"a\", \"fields\": {\"qestion\": \"q\"}}",
         "fields.qestion", NULL},
        {"{\"name\": \"x\", \"kind\": \"vqa\", \"format\": \"jsonl\", \"data\": 3}", "key \"data\"", "string"},
        {"{\"name\": \"x\", \"kind\": \"vqa\",", "invalid JSON", NULL},
        {"[1]", "one JSON object", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        vlmc_error e = {0};
        ok = parse_task(bad[i].text, NULL, &t, &e);
        CHECK(!ok, "bad task %zu accepted", i);
        if (ok) {
            eval_task_free(&t);
            continue;
        }
        CHECK(strstr(e.message, "dir/t.json") != NULL, "bad task %zu: error names the file: %s", i, e.message);
        CHECK(strstr(e.message, bad[i].want1) != NULL, "bad task %zu: error names '%s': %s", i, bad[i].want1, e.message);
        if (bad[i].want2) CHECK(strstr(e.message, bad[i].want2) != NULL, "bad task %zu: '%s' in: %s", i, bad[i].want2, e.message);
    }
    /* a prompt placeholder error appears when rendering */
    ok = parse_task("{\"name\": \"x\", \"kind\": \"vqa\", \"format\": \"jsonl\", \"data\": \"a\", \"prompt\": "
                    "\"{question} {answer}\"}", NULL, &t, &err);
    CHECK(ok, "task with a bad placeholder loads");
    if (ok) {
        eval_doc d = {0};
        d.question = "q";
        char *p = NULL;
        vlmc_error e = {0};
        CHECK(eval_render_prompt(&t, &d, &p, &e) != VLMC_OK && strstr(e.message, "{answer}") &&
                  strstr(e.message, "key \"prompt\""),
              "unknown placeholder: %s", e.message);
        free(p);
        eval_task_free(&t);
    }
    /* eval_task_load on a missing file names it */
    vlmc_error e = {0};
    CHECK(eval_task_load(tmp_path("nope.json"), NULL, &t, &e) != VLMC_OK && strstr(e.message, "nope.json"),
          "missing file: %s", e.message);
}

static void test_tsv(void) {
    const char *text = "a\tb\tc\r\n"
                       "1\t\"x\ty\"\t\"say \"\"hi\"\"\nnext line\"\n"
                       "\n"
                       "2\tplain\n"
                       "\"3\"\t\"\"\t\"q\"tail\n";
    tsv_table t;
    vlmc_error err = {0};
    vlmc_status st = tsv_parse(text, strlen(text), "t.tsv", &t, &err);
    CHECK(st == VLMC_OK, "parse: %s", err.message);
    if (st) return;
    CHECK(t.n_cols == 3 && t.n_rows == 3, "shape %zu x %zu", t.n_rows, t.n_cols);
    CHECK(!strcmp(t.header[2], "c"), "CRLF header: '%s'", t.header[2]);
    CHECK(!strcmp(tsv_cell(&t, 0, 1), "x\ty"), "quoted tab: '%s'", tsv_cell(&t, 0, 1));
    CHECK(!strcmp(tsv_cell(&t, 0, 2), "say \"hi\"\nnext line"), "quoted quotes and newline: '%s'", tsv_cell(&t, 0, 2));
    CHECK(!strcmp(tsv_cell(&t, 1, 2), ""), "missing trailing field is empty");
    CHECK(!strcmp(tsv_cell(&t, 2, 0), "3") && !strcmp(tsv_cell(&t, 2, 1), "") && !strcmp(tsv_cell(&t, 2, 2), "qtail"),
          "quoted fields, text after the closing quote");
    CHECK(tsv_column(&t, "b") == 1 && tsv_column(&t, "z") == -1, "columns");
    tsv_free(&t);
    static const char *const bad[] = {"a\tb\n1\t\"open\n", "a\tb\n1\t2\t3\n", "a\ta\n", ""};
    static const char *const want[] = {"unterminated", "3 fields", "twice", "empty"};
    for (int i = 0; i < 4; i++) {
        vlmc_error e = {0};
        st = tsv_parse(bad[i], strlen(bad[i]), "bad.tsv", &t, &e);
        CHECK(st != VLMC_OK && strstr(e.message, "bad.tsv") && strstr(e.message, want[i]), "bad TSV %d: %s", i,
              e.message);
        if (!st) tsv_free(&t);
    }
}

static const char *mmbench_task_json(const char *data, const char *circular) {
    static char buf[2048];
    snprintf(buf, sizeof buf,
             "{\"name\": \"mmb\", \"kind\": \"mcq\", \"format\": \"mmbench_tsv\", \"data\": \"%s\", \"circular\": \"%s\"}",
             data, circular);
    return buf;
}

static const char *mmbench_tsv =
    "index\tquestion\thint\tA\tB\tC\tD\tanswer\timage\tcategory\tl2-category\n"
    "7\t\"What is\tshown?\"\tnan\tred\tgreen\tblue\tNone\tB\t" PNG_2X2 "\tcolor\tattr\n"
    "9\tHow many?\t\"a \"\"hint\"\"\"\t1\t2\t3\t4\tD\t7\tcount\tcoarse\n"
    "12\tWhich?\t\tcat\tdog\t\t\tA\t" PNG_2X2 "\tcolor\tattr\n";

static void test_mmbench_tsv(void) {
    eval_task t;
    vlmc_error err = {0};
    if (!parse_task(mmbench_task_json("x.tsv", "off"), NULL, &t, &err)) {
        CHECK(0, "task: %s", err.message);
        return;
    }
    eval_docs d;
    vlmc_status st = eval_docs_from_mmbench_tsv(&t, mmbench_tsv, strlen(mmbench_tsv), 0, &d, &err);
    CHECK(st == VLMC_OK, "load: %s", err.message);
    if (!st) {
        CHECK(d.n == 3 && d.n_questions == 3, "3 questions, got %zu", d.n);
        CHECK(!strcmp(d.docs[0].question, "What is\tshown?") && !d.docs[0].hint, "quoted question, nan hint");
        CHECK(d.docs[0].n_options == 3, "'None' reads as NaN in pandas: option D dropped (%d options)", d.docs[0].n_options);
        CHECK(!strcmp(d.docs[1].hint, "a \"hint\""), "quoted hint: %s", d.docs[1].hint);
        CHECK(d.docs[1].image_b64 && !strcmp(d.docs[1].image_b64, PNG_2X2), "image by index reference");
        CHECK(d.docs[2].n_options == 2 && !strcmp(d.docs[2].target, "A"), "two options");
        CHECK(!strcmp(d.docs[0].category, "color") && !strcmp(d.docs[1].l2_category, "coarse"), "categories");
        rgb_image im;
        st = image_decode_data_url(d.docs[0].image_b64, strlen(d.docs[0].image_b64), NULL, &im, &err);
        CHECK(st == VLMC_OK && im.width == 2 && im.height == 2 && im.data[0] == 255 && im.data[4] == 255,
              "base64 PNG decodes: %s", err.message);
        if (!st) rgb_image_free(&im);
        char *p = NULL;
        st = eval_render_prompt(&t, &d.docs[1], &p, &err);
        CHECK(st == VLMC_OK && p &&
                  !strcmp(p, "<image>a \"hint\"\nHow many?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer with the option's letter "
                             "from the given choices directly."),
              "default MCQ prompt: %s", p ? p : err.message);
        free(p);
        eval_docs_free(&d);
    }
    /* limit and CircularEval expansion */
    eval_task_free(&t);
    parse_task(mmbench_task_json("x.tsv", "expand"), NULL, &t, &err);
    st = eval_docs_from_mmbench_tsv(&t, mmbench_tsv, strlen(mmbench_tsv), 2, &d, &err);
    CHECK(st == VLMC_OK && d.n == 3 + 4 && d.n_questions == 3, "limit 2 with rotations: %zu docs", d.n);
    if (!st) {
        /* question 7: options red, green, blue; answer B; rotation 1 shows green, blue, red: answer A */
        CHECK(d.docs[1].index == 1000007 && d.docs[1].group == 7 && d.docs[1].rotation == 1, "rotation index");
        CHECK(!strcmp(d.docs[1].options[0], "green") && !strcmp(d.docs[1].target, "A"), "rotated options/answer");
        CHECK(d.docs[2].rotation == 2 && !strcmp(d.docs[2].target, "C"), "rotation 2 answer %s", d.docs[2].target);
        for (size_t i = 0; i < d.n; i++) CHECK(d.docs[i].doc_id == (int64_t)i, "doc ids in order");
        eval_docs_free(&d);
    }
    /* rotations given in the data (VLMEvalKit's circular TSVs): index + k * 1000000 */
    eval_task_free(&t);
    parse_task(mmbench_task_json("x.tsv", "given"), NULL, &t, &err);
    static const char given[] = "index\tquestion\tA\tB\tanswer\n"
                                "7\tq7\ta\tb\tA\n9\tq9\ta\tb\tB\n1000007\tq7\tb\ta\tB\n1000009\tq9\tb\ta\tA\n"
                                "1000011\torphan\ta\tb\tA\n";
    st = eval_docs_from_mmbench_tsv(&t, given, strlen(given), 0, &d, &err);
    CHECK(st == VLMC_OK && d.n == 5 && d.n_questions == 2, "given rotations: %zu docs: %s", d.n, err.message);
    if (!st) {
        CHECK(d.docs[2].group == 7 && d.docs[2].rotation == 1 && d.docs[4].group == 11, "groups of given rotations");
        eval_docs_free(&d);
    }
    st = eval_docs_from_mmbench_tsv(&t, given, strlen(given), 1, &d, &err);
    CHECK(st == VLMC_OK && d.n == 2 && d.docs[1].index == 1000007, "given rotations, limit 1: %zu docs", d.n);
    if (!st) eval_docs_free(&d);
    static const char *const bad[] = {
        "index\tquestion\tA\tB\tanswer\n1\tq\ta\tb\tC\n",
        "index\tquestion\tA\tB\n1\tq\ta\tb\n",
        "index\tquestion\tA\tB\tanswer\timage\n1\tq\ta\tb\tA\t99\n",
        "index\tquestion\tA\tB\tanswer\n-1\tq\ta\tb\tA\n",
        "index\tquestion\tA\tB\tanswer\n1\tq\ta\tb\tA\n1\tq\ta\tb\tA\n",
    };
    static const char *const want[] = {"answer 'C'", "no column 'answer'", "image '99'", "index '-1'", "twice"};
    for (int i = 0; i < 5; i++) {
        vlmc_error e = {0};
        st = eval_docs_from_mmbench_tsv(&t, bad[i], strlen(bad[i]), 0, &d, &e);
        CHECK(st != VLMC_OK && strstr(e.message, "x.tsv") && strstr(e.message, want[i]), "bad MMBench TSV %d: %s", i,
              e.message);
        if (!st) eval_docs_free(&d);
    }
    eval_task_free(&t);
}

/* ---- running ------------------------------------------------------------------ */

static cJSON *read_json(const char *path) {
    char *text = test_read_file(path, NULL);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    return j;
}

/* the lines of a sample log */
static cJSON *read_log(const char *path) {
    char *text = test_read_file(path, NULL);
    cJSON *arr = cJSON_CreateArray();
    if (!text) return arr;
    for (char *s = text, *line; (line = strsep(&s, "\n")) != NULL;)
        if (line[0]) {
            cJSON *j = cJSON_Parse(line);
            if (j) cJSON_AddItemToArray(arr, j);
        }
    free(text);
    return arr;
}

static double result(const cJSON *res, const char *task, const char *metric) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(res, "results"), task), metric);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* The main metric recounted from a sample log: the mean score (synth: of the
 * non-caption rows), or under CircularEval the share of circular groups whose
 * every row scored 1. */
static double recount(const cJSON *log) {
    double sum = 0;
    int n = 0;
    bool circular = false;
    const cJSON *row;
    cJSON_ArrayForEach(row, log) circular |= cJSON_GetObjectItemCaseSensitive(row, "circular_group") != NULL;
    if (circular) {
        int groups = 0, hits = 0;
        cJSON_ArrayForEach(row, log) {
            if (cJSON_GetObjectItemCaseSensitive(row, "rotation")->valueint != 0) continue;
            double g = cJSON_GetObjectItemCaseSensitive(row, "circular_group")->valuedouble;
            bool all = true;
            const cJSON *r2;
            cJSON_ArrayForEach(r2, log) if (cJSON_GetObjectItemCaseSensitive(r2, "circular_group")->valuedouble == g) all &=
                cJSON_GetObjectItemCaseSensitive(r2, "score")->valuedouble == 1;
            groups++;
            hits += all;
        }
        return groups ? (double)hits / groups : 0;
    }
    cJSON_ArrayForEach(row, log) {
        const char *sub = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(row, "subtask"));
        if (sub && !strcmp(sub, "caption")) continue;
        sum += cJSON_GetObjectItemCaseSensitive(row, "score")->valuedouble;
        n++;
    }
    return n ? sum / n : 0;
}

static bool load_tasks(const char *const *files, size_t n, eval_task *tasks) {
    for (size_t i = 0; i < n; i++) {
        vlmc_error err = {0};
        if (eval_task_load(files[i], NULL, &tasks[i], &err) != VLMC_OK) {
            CHECK(0, "%s", err.message);
            for (size_t j = 0; j < i; j++) eval_task_free(&tasks[j]);
            return false;
        }
    }
    return true;
}

static bool have_tasks(void) {
    if (!file_exists("tasks/synth_sample.json") || !file_exists("tasks/data/mmbench_sample.tsv")) {
        test_skip("tasks/ not found (run from the repository root)");
        return false;
    }
    return true;
}

static void test_oracle_and_recount(void) {
    if (!have_tasks()) return;
    static const char *const files[] = {"tasks/synth_sample.json", "tasks/mmbench_sample.json",
                                        "tasks/scienceqa_sample.json", "tasks/scienceqa_sample_ll.json"};
    static const char *const names[] = {"synth_sample", "mmbench_sample", "scienceqa_sample", "scienceqa_sample_ll"};
    eval_task tasks[4];
    if (!load_tasks(files, 4, tasks)) return;
    eval_backend b;
    vlmc_error err = {0};
    eval_backend_oracle(&b, &err);
    eval_run_opts o = {0};
    o.output_dir = tmp_path("oracle");
    o.batch_size = 5;
    o.keep_samples = true;
    o.model = "oracle";
    vlmc_status st = eval_run(tasks, 4, &b, &o, NULL, &err);
    CHECK(st == VLMC_OK, "oracle run: %s", err.message);
    cJSON *res = read_json(tmp_path("oracle/results.json"));
    CHECK(res != NULL, "results.json written");
    for (int i = 0; i < 4 && res; i++) {
        CHECK(result(res, names[i], "accuracy") == 1.0, "oracle scores 100%% on %s: %g", names[i],
              result(res, names[i], "accuracy"));
        char p[256];
        snprintf(p, sizeof p, "oracle/samples_%s.jsonl", names[i]);
        cJSON *log = read_log(tmp_path(p));
        CHECK(cJSON_GetArraySize(log) > 0 && recount(log) == 1.0, "%s: log recount", names[i]);
        cJSON_Delete(log);
    }
    CHECK(res && result(res, "synth_sample", "iou_accuracy") == 1.0, "oracle grounding");
    const cJSON *ns = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(res, "n-samples"), "mmbench_sample");
    CHECK(ns && cJSON_GetObjectItemCaseSensitive(ns, "original")->valuedouble == 43 &&
              cJSON_GetObjectItemCaseSensitive(ns, "effective")->valuedouble == 43,
          "n-samples of mmbench_sample");
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(res, "config");
    CHECK(cfg && !strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cfg, "model")), "oracle") &&
              cJSON_GetObjectItemCaseSensitive(cfg, "batch_size")->valuedouble == 5 &&
              cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(cfg, "limit")),
          "config block");
    CHECK(cJSON_GetObjectItemCaseSensitive(res, "date") && cJSON_GetObjectItemCaseSensitive(res, "configs") &&
              cJSON_GetObjectItemCaseSensitive(res, "total_evaluation_time_seconds"),
          "date, configs, time");
    cJSON_Delete(res);
    for (int i = 0; i < 4; i++) eval_task_free(&tasks[i]);
}

/* A backend that answers the target, except wrongly on doc_ids that are
 * multiples of `wrong_every`, and counts the requests it sees. */
typedef struct counting {
    int wrong_every;
    int calls, requests;
    int fail_after; /* fail once this many requests were answered (0 = never) */
} counting;

static vlmc_status counting_generate(void *ctx, const eval_request *reqs, size_t n, char **responses, vlmc_error *err) {
    counting *c = ctx;
    c->calls++;
    for (size_t i = 0; i < n; i++) {
        if (c->fail_after && c->requests >= c->fail_after)
            return vlmc_fail(err, VLMC_ERR_IO, "simulated interruption at doc_id %lld", (long long)reqs[i].doc_id);
        c->requests++;
        bool wrong = c->wrong_every && reqs[i].doc_id % c->wrong_every == 0;
        char buf[256];
        snprintf(buf, sizeof buf, "%s", wrong ? "[1, 2, 3, 4] no Z" : reqs[i].target);
        responses[i] = strdup(buf);
    }
    return VLMC_OK;
}

static void test_resume(void) {
    if (!have_tasks()) return;
    static const char *const files[] = {"tasks/synth_sample.json", "tasks/mmbench_sample.json"};
    eval_task tasks[2];
    if (!load_tasks(files, 2, tasks)) return;
    vlmc_error err = {0};
    counting c = {3, 0, 0, 0};
    eval_backend b = {&c, "counting", false, counting_generate, NULL, NULL};
    eval_run_opts o = {0};
    o.output_dir = tmp_path("full");
    o.batch_size = 4;
    o.keep_samples = true;
    o.model = "counting";
    char *full = NULL;
    vlmc_status st = eval_run(tasks, 2, &b, &o, &full, &err);
    CHECK(st == VLMC_OK, "uninterrupted run: %s", err.message);
    int total = c.requests;
    /* interrupted run: the backend fails after 50 requests */
    counting c2 = {3, 0, 0, 50};
    b.ctx = &c2;
    o.output_dir = tmp_path("resumed");
    st = eval_run(tasks, 2, &b, &o, NULL, &err);
    CHECK(st != VLMC_OK && strstr(err.message, "simulated"), "interrupted run fails: %s", err.message);
    /* also cut the last line in half, as a kill during a write would */
    char *logp = tmp_path("resumed/samples_synth_sample.jsonl");
    char *text = test_read_file(logp, NULL);
    int kept = 0;
    if (text) {
        size_t len = strlen(text);
        FILE *f = fopen(logp, "wb");
        fwrite(text, 1, len - 20, f);
        fclose(f);
        for (size_t i = 0; i + 20 < len; i++) kept += text[i] == '\n';
        free(text);
    }
    CHECK(kept > 10 && kept < 50, "the interrupted run logged %d whole lines", kept);
    counting c3 = {3, 0, 0, 0};
    b.ctx = &c3;
    char *resumed = NULL;
    st = eval_run(tasks, 2, &b, &o, &resumed, &err);
    CHECK(st == VLMC_OK, "resumed run: %s", err.message);
    CHECK(c3.requests == total - kept, "the resumed run asks only what is missing (%d of %d, %d logged)", c3.requests,
          total, kept);
    cJSON *a = full ? cJSON_Parse(full) : NULL, *r = resumed ? cJSON_Parse(resumed) : NULL;
    CHECK(a && r && cJSON_Compare(cJSON_GetObjectItemCaseSensitive(a, "results"),
                                  cJSON_GetObjectItemCaseSensitive(r, "results"), 1) &&
              cJSON_Compare(cJSON_GetObjectItemCaseSensitive(a, "breakdown"),
                            cJSON_GetObjectItemCaseSensitive(r, "breakdown"), 1),
          "same results as the uninterrupted run");
    char *l1 = test_read_file(tmp_path("full/samples_synth_sample.jsonl"), NULL);
    char *l2 = test_read_file(logp, NULL);
    CHECK(l1 && l2 && !strcmp(l1, l2), "same sample log");
    free(l1);
    free(l2);
    /* the reported metric is the recount of the log */
    cJSON *log = read_log(logp);
    double acc = result(a, "synth_sample", "accuracy");
    CHECK(acc < 1 && acc > 0 && fabs(recount(log) - acc) < 1e-12, "synth accuracy %g = recount %g", acc, recount(log));
    cJSON_Delete(log);
    log = read_log(tmp_path("resumed/samples_mmbench_sample.jsonl"));
    acc = result(a, "mmbench_sample", "accuracy");
    CHECK(acc < 1 && fabs(recount(log) - acc) < 1e-12, "circular accuracy %g = recount %g", acc, recount(log));
    cJSON_Delete(log);
    cJSON_Delete(a);
    cJSON_Delete(r);
    free(full);
    free(resumed);
    /* another model on the same output is refused */
    o.model = "other";
    st = eval_run(tasks, 2, &b, &o, NULL, &err);
    CHECK(st != VLMC_OK && strstr(err.message, "cannot resume") && strstr(err.message, "other"),
          "settings mismatch: %s", err.message);
    /* a larger limit than the log's run is fine; a smaller one is refused */
    o.model = "counting";
    o.limit = 3;
    st = eval_run(tasks, 2, &b, &o, NULL, &err);
    CHECK(st != VLMC_OK && strstr(err.message, "not a sample of this run"), "smaller limit: %s", err.message);
    for (int i = 0; i < 2; i++) eval_task_free(&tasks[i]);
}

static void test_circular_replay(void) {
    /* three questions, rotated; replies: q7 right in every rotation, q9 wrong in rotation 2,
     * q12 (two options) right, in verbose text */
    char *tsv = tmp_path("c.tsv");
    write_text(tsv, mmbench_tsv);
    char task_json[2048];
    snprintf(task_json, sizeof task_json, "%s", mmbench_task_json(tsv, "expand"));
    eval_task t;
    vlmc_error err = {0};
    if (!parse_task(task_json, NULL, &t, &err)) {
        CHECK(0, "task: %s", err.message);
        return;
    }
    eval_docs d;
    if (eval_docs_load(&t, 0, &d, &err) != VLMC_OK) {
        CHECK(0, "docs: %s", err.message);
        eval_task_free(&t);
        return;
    }
    CHECK(d.n == 3 + 4 + 2, "9 rotations, got %zu", d.n);
    char replay[1024];
    snprintf(replay, sizeof replay, "%s", tmp_path("replay.jsonl"));
    FILE *f = fopen(replay, "wb");
    for (size_t i = 0; i < d.n; i++) {
        const eval_doc *x = &d.docs[i];
        char resp[128];
        if (x->group == 9 && x->rotation == 2) snprintf(resp, sizeof resp, "%c", x->target[0] == 'A' ? 'B' : 'A');
        else if (x->group == 12) snprintf(resp, sizeof resp, "I think the answer is %s.", x->target);
        else snprintf(resp, sizeof resp, "(%s)", x->target);
        fprintf(f, "{\"task\": \"mmb\", \"doc_id\": %zu, \"response\": \"%s\"}\n", i, resp);
    }
    fclose(f);
    eval_docs_free(&d);
    eval_backend b;
    CHECK(eval_backend_replay(replay, &b, &err) == VLMC_OK, "replay: %s", err.message);
    eval_run_opts o = {0};
    o.output_dir = tmp_path("circ");
    o.keep_samples = true;
    o.model = "replay";
    char *json = NULL;
    vlmc_status st = eval_run(&t, 1, &b, &o, &json, &err);
    CHECK(st == VLMC_OK, "run: %s", err.message);
    cJSON *res = json ? cJSON_Parse(json) : NULL;
    CHECK(fabs(result(res, "mmb", "accuracy") - 2.0 / 3) < 1e-12, "circular accuracy 2/3: %g",
          result(res, "mmb", "accuracy"));
    CHECK(result(res, "mmb", "vanilla_accuracy") == 1.0, "vanilla accuracy 1: %g", result(res, "mmb", "vanilla_accuracy"));
    const cJSON *cat = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(res, "breakdown"), "mmb"), "category");
    CHECK(cat && cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cat, "color"), "accuracy")->valuedouble == 1 &&
              cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cat, "count"), "accuracy")->valuedouble == 0,
          "per-category breakdown");
    cJSON *log = read_log(tmp_path("circ/samples_mmb.jsonl"));
    CHECK(cJSON_GetArraySize(log) == 9 && fabs(recount(log) - 2.0 / 3) < 1e-12, "recount from the log");
    cJSON_Delete(log);
    cJSON_Delete(res);
    free(json);
    eval_backend_close(&b);
    /* rotations given in the data, answered by the oracle except rotation 1 of question 9 */
    write_text(tmp_path("given.tsv"), "index\tquestion\tA\tB\tanswer\tcategory\n"
                                      "7\tq7\ta\tb\tA\tx\n9\tq9\ta\tb\tB\ty\n1000007\tq7\tb\ta\tB\tx\n"
                                      "1000009\tq9\tb\ta\tA\ty\n1000011\torphan\ta\tb\tA\tz\n");
    eval_task tg;
    if (parse_task(mmbench_task_json(tmp_path("given.tsv"), "given"), NULL, &tg, &err)) {
        write_text(tmp_path("given_replay.jsonl"), "{\"task\": \"mmb\", \"doc_id\": 0, \"response\": \"A\"}\n"
                                                   "{\"task\": \"mmb\", \"doc_id\": 1, \"response\": \"B\"}\n"
                                                   "{\"task\": \"mmb\", \"doc_id\": 2, \"response\": \"B\"}\n"
                                                   "{\"task\": \"mmb\", \"doc_id\": 3, \"response\": \"B\"}\n"
                                                   "{\"task\": \"mmb\", \"doc_id\": 4, \"response\": \"A\"}\n");
        eval_backend gb;
        eval_backend_replay(tmp_path("given_replay.jsonl"), &gb, &err);
        o.output_dir = tmp_path("given_out");
        char *gj = NULL;
        st = eval_run(&tg, 1, &gb, &o, &gj, &err);
        cJSON *gr = gj ? cJSON_Parse(gj) : NULL;
        CHECK(st == VLMC_OK && result(gr, "mmb", "accuracy") == 0.5, "given rotations: accuracy %g (%s)",
              result(gr, "mmb", "accuracy"), err.message);
        const cJSON *ns = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(gr, "n-samples"), "mmb");
        CHECK(ns && cJSON_GetObjectItemCaseSensitive(ns, "effective")->valuedouble == 2 &&
                  cJSON_GetObjectItemCaseSensitive(ns, "prompts")->valuedouble == 5,
              "given rotations: 2 questions, 5 prompts (the orphan is asked, not counted)");
        cJSON_Delete(gr);
        free(gj);
        eval_backend_close(&gb);
        eval_task_free(&tg);
    }
    /* a replay file without an answer for some doc is an error naming it */
    write_text(replay, "{\"task\": \"mmb\", \"doc_id\": 0, \"response\": \"A\"}\n");
    eval_backend_replay(replay, &b, &err);
    o.output_dir = tmp_path("circ2");
    st = eval_run(&t, 1, &b, &o, NULL, &err);
    CHECK(st != VLMC_OK && strstr(err.message, "replay.jsonl") && strstr(err.message, "doc_id 1"), "missing reply: %s",
          err.message);
    eval_backend_close(&b);
    write_text(replay, "{\"task\": \"mmb\", \"doc_id\": \"zero\", \"response\": \"A\"}\n");
    st = eval_backend_replay(replay, &b, &err);
    CHECK(st != VLMC_OK && strstr(err.message, "replay.jsonl:1"), "bad replay line: %s", err.message);
    if (!st) eval_backend_close(&b);
    eval_task_free(&t);
}

static void test_loglikelihood_needs_backend(void) {
    if (!have_tasks()) return;
    static const char *const files[] = {"tasks/scienceqa_sample_ll.json"};
    eval_task t;
    if (!load_tasks(files, 1, &t)) return;
    counting c = {0, 0, 0, 0};
    eval_backend b = {&c, "counting", false, counting_generate, NULL, NULL};
    eval_run_opts o = {0};
    o.output_dir = tmp_path("ll");
    vlmc_error err = {0};
    vlmc_status st = eval_run(&t, 1, &b, &o, NULL, &err);
    CHECK(st == VLMC_ERR_UNSUPPORTED && strstr(err.message, "log-likelihood"), "%s", err.message);
    eval_task_free(&t);
}

static void test_pope_and_api(void) {
    /* a tiny POPE file with images in a folder given as ${image_dir} */
    char *dir = tmp_path("pope");
    mkdir(dir, 0755);
    char *img = tmp_path("pope/a.png");
    uint8_t *png = NULL;
    size_t n = 0;
    vlmc_error err = {0};
    base64_decode(PNG_2X2, strlen(PNG_2X2), &png, &n, &err);
    FILE *f = fopen(img, "wb");
    fwrite(png, 1, n, f);
    fclose(f);
    free(png);
    write_text(tmp_path("pope/q.jsonl"),
               "{\"question_id\": 1, \"image\": \"a.png\", \"text\": \"Is there a cat?\", \"label\": \"yes\"}\n"
               "{\"question_id\": 2, \"image\": \"a.png\", \"text\": \"Is there a dog?\", \"label\": \"no\"}\n"
               "{\"question_id\": 3, \"image\": \"a.png\", \"text\": \"Is there a cow?\", \"label\": \"no\"}\n");
    char task[1024];
    snprintf(task, sizeof task,
             "{\"name\": \"p\", \"kind\": \"yesno\", \"format\": \"pope_jsonl\", \"data\": \"%s/q.jsonl\", "
             "\"image_root\": \"${image_dir}\"}", dir);
    write_text(tmp_path("p.json"), task);
    write_text(tmp_path("replay_p.jsonl"), "{\"task\": \"p\", \"doc_id\": 0, \"response\": \"Yes, there is.\"}\n"
                                           "{\"task\": \"p\", \"doc_id\": 1, \"response\": \"There is a dog.\"}\n"
                                           "{\"doc_id\": 2, \"resps\": [[\"No.\"]]}\n");
    char model[1200];
    snprintf(model, sizeof model, "replay:%s", tmp_path("replay_p.jsonl"));
    const char *tasks[1] = {tmp_path("p.json")};
    vlmc_eval_params p;
    vlmc_eval_default_params(&p);
    p.model = model;
    p.tasks = tasks;
    p.n_tasks = 1;
    p.output_dir = tmp_path("pope_out");
    char *json = NULL;
    vlmc_status st = vlmc_eval_run(&p, &json, &err);
    CHECK(st != VLMC_OK && strstr(err.message, "--image-dir"), "no --image-dir: %s", err.message);
    p.image_dir = dir;
    st = vlmc_eval_run(&p, &json, &err);
    CHECK(st == VLMC_OK, "pope run: %s", err.message);
    cJSON *res = json ? cJSON_Parse(json) : NULL;
    /* predictions yes, yes, no against yes, no, no: acc 2/3, precision 1/2, recall 1, f1 2/3, yes ratio 2/3 */
    CHECK(fabs(result(res, "p", "accuracy") - 2.0 / 3) < 1e-12 && fabs(result(res, "p", "precision") - 0.5) < 1e-12 &&
              result(res, "p", "recall") == 1 && fabs(result(res, "p", "f1") - 2.0 / 3) < 1e-12 &&
              fabs(result(res, "p", "yes_ratio") - 2.0 / 3) < 1e-12,
          "POPE metrics");
    CHECK(!file_exists(tmp_path("pope_out/samples_p.jsonl")), "without log_samples the log is removed at the end");
    cJSON_Delete(res);
    vlmc_free(json);
    /* unknown task names list the known ones */
    const char *unk[1] = {"no_such_task"};
    p.tasks = unk;
    p.tasks_dir = test_tmpdir();
    st = vlmc_eval_run(&p, NULL, &err);
    CHECK(st != VLMC_OK && strstr(err.message, "no_such_task") && strstr(err.message, "p"), "unknown task: %s",
          err.message);
    /* the model backend loads the folder; a sample it cannot answer is an error naming the task and doc */
    p.tasks = tasks;
    p.model = "models/tiny-random-llava";
    st = vlmc_eval_run(&p, NULL, &err);
    CHECK(st != VLMC_OK && strstr(err.message, "task p doc_id 0"), "model backend: %s", err.message);
}


/* run one generic-JSONL task through replayed responses; returns the results */
static cJSON *run_generic(const char *name, const char *task_extra, const char *data, const char *replies) {
    char path[1024], task[2048], model[1100];
    snprintf(path, sizeof path, "%s", tmp_path("g.jsonl"));
    write_text(path, data);
    snprintf(task, sizeof task, "{\"name\": \"%s\", \"format\": \"jsonl\", \"data\": \"%s\", %s}", name, path, task_extra);
    write_text(tmp_path("g.json"), task);
    write_text(tmp_path("g_replay.jsonl"), replies);
    snprintf(model, sizeof model, "replay:%s", tmp_path("g_replay.jsonl"));
    const char *tasks[1] = {tmp_path("g.json")};
    vlmc_eval_params p;
    vlmc_eval_default_params(&p);
    p.model = model;
    p.tasks = tasks;
    p.n_tasks = 1;
    char out[1100];
    snprintf(out, sizeof out, "%s", tmp_path(name));
    p.output_dir = out;
    p.log_samples = 1;
    char *json = NULL;
    vlmc_error err = {0};
    vlmc_status st = vlmc_eval_run(&p, &json, &err);
    CHECK(st == VLMC_OK, "%s: %s", name, err.message);
    cJSON *res = json ? cJSON_Parse(json) : NULL;
    vlmc_free(json);
    return res;
}

static void test_generic_kinds(void) {
    /* VQA with ten references: "2" matches 3 of them (acc 1), "two" after normalisation too; "3" matches 1 (0.3) */
    cJSON *res = run_generic(
        "vqa", "\"kind\": \"vqa\", \"metric\": [\"vqa_accuracy\", \"exact_match\", \"anls\"]",
        "{\"id\": 1, \"question\": \"How many?\", \"answer\": [\"2\", \"2\", \"2\", \"3\", \"two\", \"4\", \"4\", \"4\", \"4\", \"4\"]}\n"
        "{\"id\": 2, \"question\": \"Word?\", \"answer\": [\"hello\"]}\n",
        "{\"task\": \"vqa\", \"doc_id\": 0, \"response\": \"Two.\"}\n{\"task\": \"vqa\", \"doc_id\": 1, \"response\": \"helo\"}\n");
    /* doc 0: "two" -> "2", refs normalised ("two" -> "2"): 4 matches: every leave-one-out acc 1 -> 1.
     * ANLS of doc 0: "two." against "two" (no punctuation handling there): 1 - 1/4 = 0.75.
     * doc 1: one reference: VQA accuracy 0 (as the official script), exact 0, ANLS 1 - 1/5 = 0.8 */
    CHECK(fabs(result(res, "vqa", "vqa_accuracy") - 0.5) < 1e-12, "vqa_accuracy %g", result(res, "vqa", "vqa_accuracy"));
    CHECK(fabs(result(res, "vqa", "exact_match") - 0.5) < 1e-12, "exact_match %g", result(res, "vqa", "exact_match"));
    CHECK(fabs(result(res, "vqa", "anls") - (0.75 + 0.8) / 2) < 1e-12, "anls %g", result(res, "vqa", "anls"));
    cJSON_Delete(res);
    /* grounding: a box answer in a list and in text; IoU 1 and IoU 25/175 */
    res = run_generic("grd", "\"kind\": \"grounding\", \"metric\": [\"iou_accuracy\", \"mean_iou\"]",
                      "{\"question\": \"Where is the cat?\", \"answer\": [0, 0, 10, 10]}\n"
                      "{\"question\": \"Where is the dog?\", \"answer\": \"[0, 0, 10, 10]\"}\n",
                      "{\"task\": \"grd\", \"doc_id\": 0, \"response\": \"It is at [0, 0, 10, 10].\"}\n"
                      "{\"task\": \"grd\", \"doc_id\": 1, \"response\": \"(5,5),(15,15)\"}\n");
    CHECK(result(res, "grd", "iou_accuracy") == 0.5, "iou_accuracy %g", result(res, "grd", "iou_accuracy"));
    CHECK(fabs(result(res, "grd", "mean_iou") - (1 + 25.0 / 175) / 2) < 1e-12, "mean_iou %g", result(res, "grd", "mean_iou"));
    cJSON_Delete(res);
    /* captions: per-sample CIDEr-D shares in the log average to the reported CIDEr */
    res = run_generic("cap", "\"kind\": \"caption\"",
                      "{\"question\": \"Describe.\", \"answer\": [\"a red circle\", \"one red circle\"]}\n"
                      "{\"question\": \"Describe.\", \"answer\": [\"a blue star on a plain background\"]}\n"
                      "{\"question\": \"Describe.\", \"answer\": [\"two green squares\"]}\n",
                      "{\"task\": \"cap\", \"doc_id\": 0, \"response\": \"A red circle.\"}\n"
                      "{\"task\": \"cap\", \"doc_id\": 1, \"response\": \"a blue star\"}\n"
                      "{\"task\": \"cap\", \"doc_id\": 2, \"response\": \"nothing\"}\n");
    double cider = result(res, "cap", "cider");
    cJSON *log = read_log(tmp_path("cap/samples_cap.jsonl"));
    CHECK(cider > 0 && fabs(recount(log) - cider) < 1e-9, "cider %g = mean of the shares %g", cider, recount(log));
    CHECK(result(res, "cap", "bleu4") >= 0, "bleu4 reported");
    cJSON_Delete(log);
    cJSON_Delete(res);
    /* a data error names the file and line */
    vlmc_error err = {0};
    eval_task t;
    char task[1024];
    write_text(tmp_path("bad.jsonl"), "{\"question\": \"q\", \"answer\": \"a\"}\n{\"question\": 3, \"answer\": \"a\"}\n");
    snprintf(task, sizeof task, "{\"name\": \"b\", \"kind\": \"vqa\", \"format\": \"jsonl\", \"data\": \"%s\"}",
             tmp_path("bad.jsonl"));
    if (parse_task(task, NULL, &t, &err)) {
        eval_docs d;
        vlmc_status st = eval_docs_load(&t, 0, &d, &err);
        CHECK(st != VLMC_OK && strstr(err.message, "bad.jsonl:2") && strstr(err.message, "question"), "%s", err.message);
        if (!st) eval_docs_free(&d);
        eval_task_free(&t);
    }
}

/* A backend that needs decoded images and checks what it gets. */
typedef struct image_check {
    int requests, with_image, bad;
} image_check;

static vlmc_status image_check_generate(void *ctx, const eval_request *reqs, size_t n, char **responses,
                                        vlmc_error *err) {
    image_check *c = ctx;
    (void)err;
    for (size_t i = 0; i < n; i++) {
        const eval_request *r = &reqs[i];
        c->requests++;
        int markers = 0;
        for (const char *p = r->prompt; (p = strstr(p, EVAL_IMAGE_MARKER)) != NULL; p++) markers++;
        if ((size_t)markers != r->n_images) c->bad++;
        if (r->n_images) {
            c->with_image++;
            if (!r->images || r->images[0].width != 64 || r->images[0].height != 64 || !r->images[0].data ||
                !r->image_refs || !r->image_refs[0])
                c->bad++;
        }
        if (r->max_new_tokens < 1) c->bad++;
        responses[i] = strdup("A");
    }
    return VLMC_OK;
}

static void test_images_reach_backend(void) {
    if (!have_tasks()) return;
    static const char *const files[] = {"tasks/synth_sample.json", "tasks/mmbench_sample.json",
                                        "tasks/scienceqa_sample.json"};
    eval_task tasks[3];
    if (!load_tasks(files, 3, tasks)) return;
    image_check c = {0};
    eval_backend b = {&c, "image_check", true, image_check_generate, NULL, NULL};
    eval_run_opts o = {0};
    o.output_dir = tmp_path("images");
    o.limit = 30;
    o.batch_size = 7;
    vlmc_error err = {0};
    vlmc_status st = eval_run(tasks, 3, &b, &o, NULL, &err);
    CHECK(st == VLMC_OK, "run: %s", err.message);
    /* synth 30 + mmbench 30 questions (rotated) + scienceqa 28, of which 4 have no image */
    CHECK(c.bad == 0, "%d bad requests", c.bad);
    CHECK(c.requests > 60 + 28 && c.with_image == c.requests - 4, "%d requests, %d with an image", c.requests,
          c.with_image);
    for (int i = 0; i < 3; i++) eval_task_free(&tasks[i]);
}

int main(void) {
    tests_begin("eval_harness");
    TEST_RUN(test_task_file);
    TEST_RUN(test_tsv);
    TEST_RUN(test_mmbench_tsv);
    TEST_RUN(test_oracle_and_recount);
    TEST_RUN(test_resume);
    TEST_RUN(test_circular_replay);
    TEST_RUN(test_loglikelihood_needs_backend);
    TEST_RUN(test_pope_and_api);
    TEST_RUN(test_generic_kinds);
    TEST_RUN(test_images_reach_backend);
    return tests_end();
}
