/* Jinja chat templates: every reference case of ../shared/data/templates/chat_templates.json
 * (rendered by Python Jinja2 as transformers does) must render byte for byte, or fail where
 * the reference failed; plus unit tests of the language, its errors and its limits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "formats/json.h"
#include "text/chat_template.h"
#include "text/jinja.h"
#include "vlmc.h"

/* ---- helpers ------------------------------------------------------------------ */

/* Renders src with variables from JSON text; returns malloc'ed output or NULL (err filled). */
static char *render(const char *src, const char *vars_json, vlmc_error *err) {
    jinja_template *t = NULL;
    cJSON *vars = NULL;
    char *out = NULL;
    if (vars_json && json_parse(vars_json, strlen(vars_json), "vars", &vars, err)) return NULL;
    if (jinja_parse(src, strlen(src), "t", &t, err) == VLMC_OK) {
        jinja_options opt = {.now = "2025-07-10 12:00:00"};
        jinja_render(t, vars, &opt, &out, NULL, err);
    }
    jinja_free(t);
    cJSON_Delete(vars);
    return out;
}

/* Checks that src renders to want. */
#define EXPECT(src, vars, want) expect_at(__FILE__, __LINE__, src, vars, want)
static void expect_at(const char *file, int line, const char *src, const char *vars, const char *want) {
    vlmc_error err = {0};
    char *got = render(src, vars, &err);
    if (!got) check_at(false, file, line, "%s: error %s", src, err.message);
    else check_at(!strcmp(got, want), file, line, "%s: got [%s] want [%s]", src, got, want);
    free(got);
}

/* Checks that src fails with a message containing `part`. */
#define EXPECT_ERR(src, vars, part) expect_err_at(__FILE__, __LINE__, src, vars, part)
static void expect_err_at(const char *file, int line, const char *src, const char *vars, const char *part) {
    vlmc_error err = {0};
    char *got = render(src, vars, &err);
    if (got) check_at(false, file, line, "%s: rendered [%s], wanted an error", src, got);
    else check_at(strstr(err.message, part) != NULL, file, line, "%s: error [%s] lacks [%s]", src, err.message, part);
    free(got);
}

/* ---- the reference cases ---------------------------------------------------------- */

static const cJSON *cur_template, *cur_case;
static const char *cur_name;
static int n_ok, n_bad, n_skipped;

static void run_case(void) {
    const cJSON *c = cur_case;
    const char *src = json_string(cur_template, "template", NULL);
    if (!src) {
        CHECK(false, "no template text");
        return;
    }
    vlmc_error err = {0};
    chat_template *ct = NULL;
    char *out = NULL;
    vlmc_status st = chat_template_from_source(src, strlen(src), cur_name, &ct, &err);
    if (!st) {
        cJSON *req = cJSON_Duplicate(c, true);
        cJSON_AddStringToObject(req, "vlmc_now", "2025-07-10 12:00:00"); /* the instant the reference froze */
        st = chat_template_render(ct, req, &out, &err);
        cJSON_Delete(req);
    }
    const char *expected = json_string(c, "expected", NULL);
    bool repr = json_bool(c, "python_repr_in_output", false);
    if (expected) {
        if (st) {
            if (repr) {
                test_skip("python repr in output; vlmc failed: %s", err.message);
                n_skipped++;
            } else {
                CHECK(false, "render failed: %s", err.message);
                n_bad++;
            }
        } else if (strcmp(out, expected)) {
            size_t i = 0;
            while (out[i] && out[i] == expected[i]) i++;
            if (repr) {
                test_skip("python repr in output differs at byte %zu", i);
                n_skipped++;
            } else {
                size_t from = i > 40 ? i - 40 : 0;
                CHECK(false, "first difference at byte %zu: got [%.80s] want [%.80s] (context from byte %zu)", i, out + from,
                      expected + from, from);
                n_bad++;
            }
        } else {
            n_ok++;
        }
    } else {
        if (!st) {
            CHECK(false, "rendered but the reference fails with %s", cJSON_PrintUnformatted(json_get(c, "error")));
            n_bad++;
        } else {
            n_ok++;
            if (getenv("JINJA_VERBOSE"))
                printf("    expected error %s\n    vlmc: %s\n", json_string(json_get(c, "error"), "message", "?"), err.message);
        }
    }
    free(out);
    chat_template_free(ct);
}

static void test_reference_cases(void) {
    const char *path = shared_path("data/templates/chat_templates.json");
    if (!path) return;
    cJSON *root = NULL;
    vlmc_error err = {0};
    if (json_parse_file(path, 64u << 20, &root, &err)) {
        CHECK(false, "%s", err.message);
        return;
    }
    for (const cJSON *t = root->child; t; t = t->next) {
        cur_template = t;
        cur_name = t->string;
        for (const cJSON *c = json_get(t, "cases")->child; c; c = c->next) {
            cur_case = c;
            char name[512];
            snprintf(name, sizeof name, "case %s / %s", t->string, json_string(c, "id", "?"));
            test_run(name, run_case);
        }
    }
    printf("reference cases: %d passed, %d failed, %d skipped\n", n_ok, n_bad, n_skipped);
    cJSON_Delete(root);
}

static void test_basics(void) {
    EXPECT("Hello {{ name }}!", "{\"name\": \"W\"}", "Hello W!");
    EXPECT("{{ 1 + 2 * 3 }}", NULL, "7");
    EXPECT_ERR("{{ x.y }}", NULL, "'x' is undefined");
}

int main(void) {
    tests_begin("jinja");
    TEST_RUN(test_basics);
    if (shared_dir()) test_reference_cases();
    return tests_end();
}
