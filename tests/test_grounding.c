/* Grounded answers (src/text/grounding.c).
 *
 * KOSMOS-2, markup → text + entities: every case of ../shared/fixtures/kosmos2 meta.grounding_postprocess_cases
 * (made by transformers 4.47's Kosmos2Processor.post_process_generation) and the cases of
 * tests/data/kosmos2_post_process.jsonl, whose expected values are the output of processing_kosmos2.py's functions
 * (clean_text_and_extract_entities_with_bboxes and its helpers, run by python3) on edge cases: negative spans,
 * a phrase of spaces, newlines inside a phrase and inside a would-be tag, a 29-digit patch index, Arabic-Indic
 * digits, text after "</image>". Entities, spans and boxes must be equal exactly (boxes to the bit).
 * Text + boxes → markup: meta.grounding_bbox → meta.grounding_patch_indices → meta.patch_index_to_coordinate, and
 * the expected texts of transformers' tests/models/kosmos2/test_processor_kosmos2.py (test_full_processor).
 * Qwen-VL, Qwen2-VL and bracketed boxes through grounding_find_boxes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fixture.h"
#include "testlib.h"
#include "text/grounding.h"

/* One case {"text", "cleaned", "entities": [[name, [start, end], [[x1, y1, x2, y2], ...]], ...]}. */
static void check_case(const cJSON *c) {
    const char *text = cJSON_GetStringValue(cJSON_GetObjectItem(c, "text"));
    const char *want = cJSON_GetStringValue(cJSON_GetObjectItem(c, "cleaned"));
    const cJSON *ents = cJSON_GetObjectItem(c, "entities");
    if (!CHECK(text && want && cJSON_IsArray(ents), "malformed case")) return;
    kosmos2_parsed p;
    vlmc_error err = {0};
    if (!CHECK(kosmos2_post_process(text, strlen(text), 32, &p, &err) == VLMC_OK, "%s: %s", text, err.message)) return;
    CHECK(!strcmp(p.text, want), "%s: cleaned \"%s\", want \"%s\"", text, p.text, want);
    if (CHECK(p.n_entities == (size_t)cJSON_GetArraySize(ents), "%s: %zu entities, want %d", text, p.n_entities,
              cJSON_GetArraySize(ents))) {
        for (size_t i = 0; i < p.n_entities; i++) {
            const cJSON *e = cJSON_GetArrayItem(ents, (int)i), *sp = cJSON_GetArrayItem(e, 1), *bx = cJSON_GetArrayItem(e, 2);
            const kosmos2_entity *g = &p.entities[i];
            CHECK(!strcmp(g->phrase, cJSON_GetArrayItem(e, 0)->valuestring), "entity %zu: \"%s\"", i, g->phrase);
            CHECK(g->start == (long)cJSON_GetArrayItem(sp, 0)->valuedouble &&
                      g->end == (long)cJSON_GetArrayItem(sp, 1)->valuedouble,
                  "%s: entity %zu span (%ld, %ld)", text, i, g->start, g->end);
            if (!CHECK(g->n_boxes == (size_t)cJSON_GetArraySize(bx), "entity %zu: %zu boxes", i, g->n_boxes)) continue;
            for (size_t k = 0; k < g->n_boxes; k++) {
                const cJSON *b = cJSON_GetArrayItem(bx, (int)k);
                double v[4] = {g->boxes[k].x1, g->boxes[k].y1, g->boxes[k].x2, g->boxes[k].y2};
                for (int j = 0; j < 4; j++)
                    CHECK(v[j] == cJSON_GetArrayItem(b, j)->valuedouble, "%s: entity %zu box %zu[%d] = %.17g, want %.17g",
                          text, i, k, j, v[j], cJSON_GetArrayItem(b, j)->valuedouble);
            }
        }
    }
    kosmos2_parsed_free(&p);
}

static void test_fixture_post_process(void) {
    const char *ref = shared_path("fixtures/kosmos2/reference");
    if (!ref) return;
    fixture f;
    if (!CHECK(fx_open(&f, ref) == 0, "%s", ref)) return;
    const cJSON *cases = fx_meta(&f, "grounding_postprocess_cases"), *c;
    CHECK(cJSON_GetArraySize(cases) >= 2, "no grounding cases in the fixture");
    cJSON_ArrayForEach(c, cases) {
        /* the fixture's text starts after the image part; the stored cases are the processor's output */
        check_case(c);
    }
    /* coordinate_to_patch_index and back */
    const cJSON *bb = fx_meta(&f, "grounding_bbox"), *pi = fx_meta(&f, "grounding_patch_indices"),
                *co = fx_meta(&f, "patch_index_to_coordinate");
    if (CHECK(cJSON_GetArraySize(bb) == 4 && cJSON_GetArraySize(pi) == 2 && cJSON_GetArraySize(co) == 4, "meta boxes")) {
        gbox b = {cJSON_GetArrayItem(bb, 0)->valuedouble, cJSON_GetArrayItem(bb, 1)->valuedouble,
                  cJSON_GetArrayItem(bb, 2)->valuedouble, cJSON_GetArrayItem(bb, 3)->valuedouble};
        long long ul = -1, lr = -1;
        vlmc_error err = {0};
        CHECK(kosmos2_box_to_patches(b, 32, &ul, &lr, &err) == VLMC_OK && ul == cJSON_GetArrayItem(pi, 0)->valuedouble &&
                  lr == cJSON_GetArrayItem(pi, 1)->valuedouble, "patches %lld %lld", ul, lr);
        gbox back = kosmos2_patches_to_box(ul, lr, 32);
        double v[4] = {back.x1, back.y1, back.x2, back.y2};
        for (int j = 0; j < 4; j++)
            CHECK(v[j] == cJSON_GetArrayItem(co, j)->valuedouble, "coordinate %d: %.17g", j, v[j]);
    }
    fx_close(&f);
}

static void test_reference_cases(void) {
    size_t len = 0;
    char *all = test_read_file("tests/data/kosmos2_post_process.jsonl", &len);
    if (!CHECK(all, "tests/data/kosmos2_post_process.jsonl")) return;
    int n = 0;
    for (char *line = strtok(all, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *c = cJSON_Parse(line);
        if (CHECK(c, "bad JSON line")) check_case(c);
        cJSON_Delete(c);
        n++;
    }
    CHECK(n >= 7, "%d cases", n);
    free(all);
}

/* test_full_processor's preprocess_text cases (transformers tests/models/kosmos2/test_processor_kosmos2.py) */
static void test_markup(void) {
    static const char *const texts[] = {
        "<grounding> Two puppies sit in a field of grass.",
        "<grounding> <phrase> Two puppies </phrase> sit in a field of grass.",
        "<grounding> <phrase> Two puppies </phrase> sit in a field of <phrase> grass </phrase>.",
        "<grounding> <phrase> Two puppies </phrase> <object> <patch_index_0079> <patch_index_1016> "
        "</delimiter_of_multi_objects/> <patch_index_0135> <patch_index_1008> </object> sit in a field of <phrase> "
        "grass </phrase>.",
    };
    static const char *const expected[] = {
        "<grounding> Two puppies sit in a field of grass.",
        "<grounding><phrase> Two puppies</phrase> sit in a field of grass.",
        "<grounding><phrase> Two puppies</phrase><object><patch_index_0079><patch_index_1016></object> sit in a field "
        "of grass.",
        "<grounding><phrase> Two puppies</phrase><object><patch_index_0079><patch_index_1016>"
        "</delimiter_of_multi_objects/><patch_index_0135><patch_index_1008></object> sit in a field of grass.",
        "<grounding><phrase> Two puppies</phrase><object><patch_index_0079><patch_index_1016>"
        "</delimiter_of_multi_objects/><patch_index_0135><patch_index_1008></object> sit in a field of<phrase> "
        "grass</phrase> .",
        "<grounding><phrase> Two puppies</phrase><object><patch_index_0079><patch_index_1016>"
        "</delimiter_of_multi_objects/><patch_index_0135><patch_index_1008></object> sit in a field of<phrase> "
        "grass</phrase><object><patch_index_0480><patch_index_1023></object> .",
    };
    static const long long patches[] = {79, 1016, 135, 1008, 480, 1023};
    struct {
        int text, want;
        size_t n_phrases, first[2], count[2];
    } cases[] = {
        {0, 0, 0, {0, 0}, {0, 0}},  /* bboxes None / [] */
        {1, 1, 1, {0, 0}, {0, 0}},  /* [[]] */
        {1, 2, 1, {0, 0}, {1, 0}},  /* [(79, 1016)] */
        {1, 3, 1, {0, 0}, {2, 0}},  /* [[(79, 1016), (135, 1008)]] */
        {2, 4, 2, {0, 0}, {2, 0}},  /* [[...], None] */
        {2, 5, 2, {0, 2}, {2, 1}},  /* [[...], (480, 1023)] */
        {3, 5, 2, {0, 2}, {0, 1}},  /* [None, [(480, 1023)]] */
    };
    vlmc_error err = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = NULL;
        const char *t = texts[cases[i].text];
        if (CHECK(kosmos2_markup(t, strlen(t), patches, cases[i].first, cases[i].count, cases[i].n_phrases, 32, &out,
                                 &err) == VLMC_OK, "case %zu: %s", i, err.message))
            CHECK(!strcmp(out, expected[cases[i].want]), "case %zu:\n  got  %s\n  want %s", i, out,
                  expected[cases[i].want]);
        free(out);
    }
    /* a phrase count that differs is an error, as transformers' ValueError */
    char *out = NULL;
    CHECK(kosmos2_markup(texts[2], strlen(texts[2]), patches, (size_t[]){0}, (size_t[]){1}, 1, 32, &out, &err) ==
              VLMC_ERR_ARG && strstr(err.message, "phrases"), "phrase count: %s", err.message);
    free(out);
    /* the fixture's own prompt: its phrase + box give <object><patch_index_0195><patch_index_0817></object> */
    long long ul, lr;
    CHECK(kosmos2_box_to_patches((gbox){0.1, 0.2, 0.55, 0.8}, 32, &ul, &lr, &err) == VLMC_OK && ul == 195 && lr == 817,
          "%lld %lld", ul, lr);
    const long long pk[] = {ul, lr, 5, 12345};
    const char *t = " <grounding><phrase>a cat</phrase> sat\n";
    if (CHECK(kosmos2_markup(t, strlen(t), pk, (size_t[]){0}, (size_t[]){2}, 1, 32, &out, &err) == VLMC_OK, "%s",
              err.message))
        /* patch 12345 is outside the 32 × 32 grid: not a tag token, so it keeps its spaces */
        CHECK(!strcmp(out, "<grounding><phrase> a cat</phrase><object><patch_index_0195><patch_index_0817>"
                           "</delimiter_of_multi_objects/><patch_index_0005> <patch_index_12345></object> sat"),
              "%s", out);
    free(out);
    CHECK(kosmos2_box_to_patches((gbox){NAN, 0, 1, 1}, 32, &ul, &lr, &err) == VLMC_ERR_ARG, "NaN box");
}

static void test_errors(void) {
    kosmos2_parsed p;
    vlmc_error err = {0};
    CHECK(kosmos2_post_process("a\xff", 2, 32, &p, &err) == VLMC_ERR_ARG && strstr(err.message, "UTF-8"), "bad UTF-8");
    /* an index whose quotient does not fit a double: Python's OverflowError */
    char big[700] = "<object><patch_index_";
    size_t n = strlen(big);
    memset(big + n, '9', 400);
    strcpy(big + n + 400, "><patch_index_1></object>");
    CHECK(kosmos2_post_process(big, strlen(big), 32, &p, &err) == VLMC_ERR_LIMIT, "huge index: %s", err.message);
    grounding_box *b = NULL;
    size_t nb = 0;
    CHECK(grounding_find_boxes("\xc3", 1, &b, &nb, &err) == VLMC_ERR_ARG && !b && !nb, "bad UTF-8 in find_boxes");
}

static void test_find_boxes(void) {
    const char *t = "<ref>the cat</ref><box>(100,200),(300,400)</box><box>(0,0),(1000,1000)</box> and "
                    "<box>(1,2),(3,4)</box> then <|object_ref_start|> a dog<|object_ref_end|><|box_start|>(10, 20),(30, "
                    "40)<|box_end|>, also [15, 421, 305, 711] but not [1, 2, 3] nor <box>(1,2)</box>; "
                    "<phrase>a fire</phrase><object><patch_index_0005><patch_index_0911></object>";
    grounding_box *b = NULL;
    size_t n = 0;
    vlmc_error err = {0};
    if (!CHECK(grounding_find_boxes(t, strlen(t), &b, &n, &err) == VLMC_OK, "%s", err.message)) return;
    struct {
        const char *label;
        gbox box;
        grounding_format f;
    } want[] = {
        {"a fire", {0.171875, 0.015625, 0.484375, 0.890625}, GROUNDING_KOSMOS2},
        {"a dog", {0.01, 0.02, 0.03, 0.04}, GROUNDING_QWEN2_VL},
        {"the cat", {0.1, 0.2, 0.3, 0.4}, GROUNDING_QWEN_VL},
        {"the cat", {0, 0, 1, 1}, GROUNDING_QWEN_VL},
        {NULL, {0.001, 0.002, 0.003, 0.004}, GROUNDING_QWEN_VL},
        {NULL, {0.015, 0.421, 0.305, 0.711}, GROUNDING_BRACKET},
    };
    if (CHECK(n == sizeof want / sizeof want[0], "%zu boxes", n))
        for (size_t i = 0; i < n; i++) {
            CHECK(b[i].format == want[i].f, "box %zu format %d", i, (int)b[i].format);
            CHECK(want[i].label ? b[i].label && !strcmp(b[i].label, want[i].label) : !b[i].label, "box %zu label %s", i,
                  b[i].label ? b[i].label : "(none)");
            CHECK(fabs(b[i].box.x1 - want[i].box.x1) < 1e-12 && fabs(b[i].box.y1 - want[i].box.y1) < 1e-12 &&
                      fabs(b[i].box.x2 - want[i].box.x2) < 1e-12 && fabs(b[i].box.y2 - want[i].box.y2) < 1e-12,
                  "box %zu: %g %g %g %g", i, b[i].box.x1, b[i].box.y1, b[i].box.x2, b[i].box.y2);
        }
    grounding_boxes_free(b, n);
    CHECK(grounding_find_boxes("no boxes here [a, b]", 20, &b, &n, &err) == VLMC_OK && n == 0 && !b, "none");
}

int main(void) {
    tests_begin("grounding");
    TEST_RUN(test_fixture_post_process);
    TEST_RUN(test_reference_cases);
    TEST_RUN(test_markup);
    TEST_RUN(test_errors);
    TEST_RUN(test_find_boxes);
    return tests_end();
}
