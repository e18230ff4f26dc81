/* Yi-VL and Qwen-VL (families whose reference is their original remote code) through vlmc_dump against the
 * fixtures yi_vl and qwen_vl: every array the dump writes that the fixture also holds (images as processed,
 * vision states, projector / resampler steps, merged embeddings, decoder states, rotary frequencies, logits,
 * generation) within max|Δ| <= 1e-4 · max|ref|, uint8 / int32 arrays exactly, greedy ids exactly; the measured
 * errors are printed. Each fixture runs twice: from image_raw (vlmc preprocesses) and from the fixture's
 * pixel_values. Plus the families' input errors and registry detection. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "vlmc.h"
#include "formats/arrays.h"
#include "models/vlm.h"

#define TOL 1e-4f

/* Copies the fixture arrays named in `names` (NULL-terminated) into a fresh inputs folder. */
static bool make_inputs(const char *ref, const char *const *names, char *out, size_t out_n) {
    static int counter;
    snprintf(out, out_n, "%s/in_%d", test_tmpdir(), counter++);
    array_set set = {0};
    vlmc_error err = {0};
    if (!CHECK(arrays_read_dir(ref, 1, &set, &err) == VLMC_OK, "%s", err.message)) return false;
    named_array keep[8];
    int n = 0;
    for (const char *const *p = names; *p && n < 8; p++) {
        named_array *a = array_set_find(&set, *p);
        if (!CHECK(a, "fixture has no %s", *p)) continue;
        keep[n] = *a;
        keep[n].file = NULL;
        keep[n].note = NULL;
        n++;
    }
    bool ok = CHECK(arrays_write_dir(out, NULL, NULL, keep, n, &err) == VLMC_OK, "%s", err.message);
    array_set_free(&set);
    return ok;
}

/* Runs the dump and compares; `required` lists arrays the dump must have written and matched. */
static void run_fixture(const char *name, const char *const *inputs, const char *const *required,
                        const char *const *required_too) {
    char rel[256];
    snprintf(rel, sizeof rel, "fixtures/%s", name);
    const char *p = shared_path(rel);
    if (!p) return;
    char dir[1024], ref[1100], in[1200], out[1200];
    snprintf(dir, sizeof dir, "%s", p);
    snprintf(ref, sizeof ref, "%s/reference", dir);
    if (!make_inputs(ref, inputs, in, sizeof in)) return;
    snprintf(out, sizeof out, "%s/out_%s_%s", test_tmpdir(), name, inputs[2]);
    vlmc_error err = {0};
    array_set r = {0}, o = {0};
    if (!CHECK(arrays_read_dir(ref, 1, &r, &err) == VLMC_OK, "%s", err.message)) return;
    named_array *gen = array_set_find(&r, "generated_ids");
    int n_gen = gen ? (int)gen->shape[1] : 0;
    if (CHECK(vlmc_dump(dir, in, out, n_gen, 0, &err) == VLMC_OK, "%s: %s", name, err.message) &&
        CHECK(arrays_read_dir(out, 1, &o, &err) == VLMC_OK, "%s", err.message)) {
        printf("    %s from %s:\n", name, inputs[2]);
        int compared = 0;
        for (int i = 0; i < o.count; i++) {
            const named_array *x = &o.arrays[i], *y = array_set_find(&r, x->name);
            if (!y) {
                printf("      %-32s (not in the fixture)\n", x->name);
                continue;
            }
            bool same_shape = x->ndim == y->ndim && x->dtype == y->dtype;
            for (int d = 0; same_shape && d < x->ndim; d++) same_shape = x->shape[d] == y->shape[d];
            if (!CHECK(same_shape, "%s: %s shape or dtype differs", name, x->name)) continue;
            size_t numel = (size_t)named_array_numel(y);
            compared++;
            if (y->dtype != ARRAY_F32) {
                bool exact = !memcmp(x->data, y->data, numel * array_dtype_size(y->dtype));
                printf("      %-32s %s\n", x->name, exact ? "exact" : "DIFFER");
                CHECK(exact, "%s: %s differ", name, x->name);
                continue;
            }
            float m = max_abs(y->data, numel), d = max_abs_diff(x->data, y->data, numel);
            float rd = m > 0 ? d / m : d;
            printf("      %-32s max|d| %.3g  max|ref| %.3g  rel %.3g\n", x->name, d, m, rd);
            CHECK(rd <= TOL, "%s: %s rel diff %g", name, x->name, rd);
        }
        for (const char *const *q = required; *q; q++)
            CHECK(array_set_find(&o, *q), "%s: the dump has no %s", name, *q);
        for (const char *const *q = required_too; q && *q; q++)
            CHECK(array_set_find(&o, *q), "%s: the dump has no %s", name, *q);
        CHECK(compared >= 8, "%s: only %d arrays compared", name, compared);
    }
    array_set_free(&r);
    array_set_free(&o);
}

static const char *const yi_required[] = {
    "vision_hidden_states", "vision_features", "projector_linear_1", "projector_layernorm_1", "projector_gelu",
    "projector_linear_2", "projector_layernorm_2", "projector_output", "inputs_embeds", "attention_mask_expanded",
    "text_hidden_states", "logits", "generated_ids", "generation_step_logits", NULL};

static void test_yi_vl_image_raw(void) {
    static const char *const in[] = {"input_ids", "attention_mask", "image_raw", NULL};
    static const char *const req[] = {"image_padded", "pixel_values", NULL};
    run_fixture("yi_vl", in, yi_required, req);
}

static void test_yi_vl_pixel_values(void) {
    static const char *const in[] = {"input_ids", "attention_mask", "pixel_values", NULL};
    run_fixture("yi_vl", in, yi_required, NULL);
}

static const char *const qwen_required[] = {
    "vision_patch_embeds", "vision_pos_embed_interp", "vision_ln_pre", "vision_block_outputs", "resampler_pos_embed",
    "resampler_kv_pos_embed_interp", "resampler_output", "vision_ln_post", "vision_output", "merged_embeddings",
    "rope_inv_freq_prefill", "text_hidden_states", "logits", "generated_ids", "generation_step_logits", NULL};

static void test_qwen_vl_image_raw(void) {
    static const char *const in[] = {"input_ids", "attention_mask", "image_raw", NULL};
    static const char *const req[] = {"resized_image", "pixel_values", NULL};
    run_fixture("qwen_vl", in, qwen_required, req);
}

static void test_qwen_vl_pixel_values(void) {
    static const char *const in[] = {"input_ids", "attention_mask", "pixel_values", NULL};
    run_fixture("qwen_vl", in, qwen_required, NULL);
}

/* config.json layouts → families; inputs the family cannot use are errors. */
static void test_detect_and_errors(void) {
    const char *p = shared_path("fixtures/yi_vl");
    if (!p) return;
    char yi[1024], qw[1024], ref[1100], in[1200], out[1200];
    snprintf(yi, sizeof yi, "%s", p);
    snprintf(qw, sizeof qw, "%s", shared_path("fixtures/qwen_vl"));
    vlmc_error err = {0};
    vlm_model m;
    if (CHECK(vlm_load(yi, &m, &err) == VLMC_OK, "%s", err.message)) {
        CHECK(m.fam && m.fam->detect && m.has_vision && m.vit.L == 2, "yi_vl detected as %s",
              m.fam ? m.fam->hf_class : "?");
        vlm_free(&m);
    }
    if (CHECK(vlm_load(qw, &m, &err) == VLMC_OK, "%s", err.message)) {
        CHECK(m.fam && strstr(m.fam->hf_class, "QWen") && m.has_vision && m.lm.qwen_logn_attn && m.lm.qwen_dynamic_ntk,
              "qwen_vl detected as %s", m.fam ? m.fam->hf_class : "?");
        vlm_free(&m);
    }
    snprintf(ref, sizeof ref, "%s/reference", yi);
    snprintf(out, sizeof out, "%s/out_err", test_tmpdir());
    /* logits is no input */
    static const char *const bad[] = {"input_ids", "attention_mask", "logits", NULL};
    if (make_inputs(ref, bad, in, sizeof in))
        CHECK(vlmc_dump(yi, in, out, 0, 0, &err) == VLMC_ERR_ARG && strstr(err.message, "logits"), "logits: %s",
              err.message);
    /* ids with the image index but no image */
    static const char *const noimg[] = {"input_ids", "attention_mask", NULL};
    if (make_inputs(ref, noimg, in, sizeof in))
        CHECK(vlmc_dump(yi, in, out, 0, 0, &err) != VLMC_OK && strstr(err.message, "-200"), "no image: %s",
              err.message);
    snprintf(ref, sizeof ref, "%s/reference", qw);
    if (make_inputs(ref, noimg, in, sizeof in))
        CHECK(vlmc_dump(qw, in, out, 0, 0, &err) != VLMC_OK && strstr(err.message, "<img>"), "qwen no image: %s",
              err.message);
    /* Qwen-VL given Yi's image layout: pixel_values of the wrong size */
    snprintf(ref, sizeof ref, "%s/reference", yi);
    static const char *const pix[] = {"input_ids", "pixel_values", NULL};
    if (make_inputs(ref, pix, in, sizeof in))
        CHECK(vlmc_dump(qw, in, out, 0, 0, &err) != VLMC_OK, "yi inputs to qwen: %s", err.message);
}

int main(void) {
    tests_begin("yi_qwen_vl");
    TEST_RUN(test_yi_vl_image_raw);
    TEST_RUN(test_yi_vl_pixel_values);
    TEST_RUN(test_qwen_vl_image_raw);
    TEST_RUN(test_qwen_vl_pixel_values);
    TEST_RUN(test_detect_and_errors);
    return tests_end();
}
