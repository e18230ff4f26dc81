/* KOSMOS-2 (Kosmos2ForConditionalGeneration) through the dump path against the transformers 4.47 fixture
 * ../shared/fixtures/kosmos2: every stored intermediate (vision hidden states, post_layernorm, normalised features,
 * image embeddings, text hidden states), the logits and the generation step logits within
 * max|Δ| <= 1e-4 · max|ref|, the greedy ids exactly. Plus the dump's kosmos-2 input checks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "vlmc.h"
#include "formats/arrays.h"

#define TOL 1e-4f

/* The fixture's inputs, without `drop` (may be NULL), into a fresh folder. */
static bool make_inputs(const char *ref, const char *drop, char *out, size_t out_n) {
    static const char *const inputs[] = {"input_ids", "attention_mask", "pixel_values", "image_embeds_position_mask",
                                         NULL};
    static int counter;
    snprintf(out, out_n, "%s/in_%d", test_tmpdir(), counter++);
    array_set set = {0};
    vlmc_error err = {0};
    if (!CHECK(arrays_read_dir(ref, 1, &set, &err) == VLMC_OK, "%s", err.message)) return false;
    named_array keep[4];
    int n = 0;
    for (int i = 0; i < set.count; i++)
        for (const char *const *p = inputs; *p; p++)
            if (!strcmp(*p, set.arrays[i].name) && !(drop && !strcmp(drop, *p)) && n < 4) {
                keep[n] = set.arrays[i];
                keep[n].file = keep[n].note = NULL;
                n++;
            }
    bool ok = CHECK(arrays_write_dir(out, NULL, NULL, keep, n, &err) == VLMC_OK, "%s", err.message);
    array_set_free(&set);
    return ok;
}

static void test_fixture(void) {
    const char *p = shared_path("fixtures/kosmos2");
    if (!p) return;
    char dir[1024], ref[1100], in[1200], out[1200];
    snprintf(dir, sizeof dir, "%s", p);
    snprintf(ref, sizeof ref, "%s/reference", dir);
    snprintf(out, sizeof out, "%s/out", test_tmpdir());
    if (!make_inputs(ref, NULL, in, sizeof in)) return;
    vlmc_error err = {0};
    array_set r = {0}, o = {0};
    if (!CHECK(arrays_read_dir(ref, 1, &r, &err) == VLMC_OK, "%s", err.message)) return;
    named_array *gen = array_set_find(&r, "generated_ids");
    if (CHECK(gen, "no generated_ids in the fixture") &&
        CHECK(vlmc_dump(dir, in, out, (int)gen->shape[1], 0, &err) == VLMC_OK, "%s", err.message) &&
        CHECK(arrays_read_dir(out, 1, &o, &err) == VLMC_OK, "%s", err.message)) {
        int n_float = 0, n_int = 0;
        printf("   ");
        for (int i = 0; i < r.count; i++) {
            const named_array *y = &r.arrays[i];
            const named_array *x = array_set_find(&o, y->name);
            /* the inputs themselves (and the image file's pixels) are not outputs */
            if (!strcmp(y->name, "image_raw") || !strcmp(y->name, "pixel_values") || !strcmp(y->name, "input_ids") ||
                !strcmp(y->name, "attention_mask") || !strcmp(y->name, "image_embeds_position_mask"))
                continue;
            if (!CHECK(x, "no %s in the dump", y->name)) continue;
            bool same_shape = x->ndim == y->ndim && x->dtype == y->dtype;
            for (int d = 0; same_shape && d < x->ndim; d++) same_shape = x->shape[d] == y->shape[d];
            if (!CHECK(same_shape, "%s: shape or dtype differs", y->name)) continue;
            size_t numel = (size_t)named_array_numel(y);
            if (y->dtype == ARRAY_I32) {
                bool exact = !memcmp(x->data, y->data, numel * sizeof(int32_t));
                printf(" %s %s", y->name, exact ? "exact" : "DIFFER");
                CHECK(exact, "%s differ", y->name);
                n_int++;
                continue;
            }
            float m = max_abs(y->data, numel), d = max_abs_diff(x->data, y->data, numel) / (m > 0 ? m : 1);
            printf(" %s %.2g", y->name, d);
            CHECK(d <= TOL, "%s: max|d| / max|ref| = %g", y->name, d);
            n_float++;
        }
        printf("\n");
        CHECK(n_float == 7 && n_int == 1, "compared %d float and %d int arrays, expected 7 and 1", n_float, n_int);
    }
    array_set_free(&r);
    array_set_free(&o);
}

/* pixel_values without image_embeds_position_mask, the mask without pixels, a mask of another shape */
static void test_dump_inputs(void) {
    const char *p = shared_path("fixtures/kosmos2");
    if (!p) return;
    char dir[1024], ref[1100], in[1200], out[1200];
    snprintf(dir, sizeof dir, "%s", p);
    snprintf(ref, sizeof ref, "%s/reference", dir);
    snprintf(out, sizeof out, "%s/out_err", test_tmpdir());
    vlmc_error err = {0};
    if (make_inputs(ref, "image_embeds_position_mask", in, sizeof in))
        CHECK(vlmc_dump(dir, in, out, 0, 0, &err) == VLMC_ERR_FORMAT && strstr(err.message, "image_embeds_position_mask"),
              "pixels without the mask: %s", err.message);
    if (make_inputs(ref, "pixel_values", in, sizeof in))
        CHECK(vlmc_dump(dir, in, out, 0, 0, &err) == VLMC_ERR_FORMAT && strstr(err.message, "without pixel_values"),
              "mask without pixels: %s", err.message);
    /* labels: no training graph for kosmos-2 */
    array_set set = {0};
    if (make_inputs(ref, NULL, in, sizeof in) && CHECK(arrays_read_dir(in, 1, &set, &err) == VLMC_OK, "%s", err.message)) {
        named_array all[5], *ids = array_set_find(&set, "input_ids");
        int32_t labels[64];
        int n = 0;
        for (int i = 0; i < set.count && n < 4; i++, n++) {
            all[n] = set.arrays[i];
            all[n].file = all[n].note = NULL;
        }
        for (int i = 0; i < 64; i++) labels[i] = i < 12 ? -100 : 5;
        char in2[1300];
        snprintf(in2, sizeof in2, "%s_labels", in);
        if (CHECK(ids && ids->shape[1] <= 64, "input_ids")) {
            all[n] = *ids;
            all[n].name = "labels";
            all[n].file = all[n].note = NULL;
            all[n].data = labels;
            if (CHECK(arrays_write_dir(in2, NULL, NULL, all, n + 1, &err) == VLMC_OK, "%s", err.message))
                CHECK(vlmc_dump(dir, in2, out, 0, 0, &err) == VLMC_ERR_UNSUPPORTED && strstr(err.message, "labels"),
                      "labels: %s", err.message);
        }
    }
    array_set_free(&set);
    /* the llava fixture does not take the mask */
    const char *lp = shared_path("fixtures/llava");
    if (lp && make_inputs(ref, NULL, in, sizeof in)) {
        char ld[1024];
        snprintf(ld, sizeof ld, "%s", lp);
        CHECK(vlmc_dump(ld, in, out, 0, 0, &err) == VLMC_ERR_UNSUPPORTED &&
                  strstr(err.message, "image_embeds_position_mask"), "mask to llava: %s", err.message);
    }
}

/* vlmc info: the family's components and configs */
static void test_info(void) {
    const char *p = shared_path("fixtures/kosmos2");
    if (!p) return;
    char *json = NULL;
    vlmc_error err = {0};
    if (!CHECK(vlmc_info_json(p, &json, &err) == VLMC_OK, "%s", err.message)) return;
    CHECK(strstr(json, "\"model_type\": \"kosmos-2\"") && strstr(json, "\"projector\": 19264") &&
              strstr(json, "\"vision_tower\": 36608") && strstr(json, "\"layers\": 2, \"hidden_size\": 64") &&
              strstr(json, "\"image_size\": 56, \"patch_size\": 14"),
          "%s", json);
    vlmc_free(json);
}

int main(void) {
    tests_begin("kosmos2");
    TEST_RUN(test_fixture);
    TEST_RUN(test_dump_inputs);
    TEST_RUN(test_info);
    return tests_end();
}
