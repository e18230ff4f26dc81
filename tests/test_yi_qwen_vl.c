/* Yi-VL and Qwen-VL (families whose reference is their original remote code) through vlmc_dump against the
 * fixtures yi_vl and qwen_vl: every array the dump writes that the fixture also holds (images as processed,
 * vision states, projector / resampler steps, merged embeddings, decoder states, rotary frequencies, logits,
 * generation) within max|Δ| <= 1e-4 · max|ref|, uint8 / int32 arrays exactly, greedy ids exactly; the measured
 * errors are printed. Each fixture runs twice: from image_raw (vlmc preprocesses) and from the fixture's
 * pixel_values. Plus the families' input errors and registry detection, and Qwen-VL through the chat session
 * (vlmc run's path) with a tokenizer.json written here for the fixture's toy vocabulary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/stat.h>

#include "fixture.h"
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
    static int runs;
    snprintf(out, sizeof out, "%s/out_%s_%d", test_tmpdir(), name, runs++);
    vlmc_error err = {0};
    array_set r = {0}, o = {0};
    if (!CHECK(arrays_read_dir(ref, 1, &r, &err) == VLMC_OK, "%s", err.message)) return;
    named_array *gen = array_set_find(&r, "generated_ids");
    int n_gen = gen ? (int)gen->shape[1] : 0;
    if (CHECK(vlmc_dump(dir, in, out, n_gen, 0, &err) == VLMC_OK, "%s: %s", name, err.message) &&
        CHECK(arrays_read_dir(out, 1, &o, &err) == VLMC_OK, "%s", err.message)) {
        printf("    %s from %s%s%s:\n", name, inputs[2], inputs[3] ? " + " : "", inputs[3] ? inputs[3] : "");
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

/* image_raw and pixel_values together: image_raw's preprocessing is dumped, the model runs on pixel_values. */
static void test_both_image_inputs(void) {
    static const char *const in[] = {"input_ids", "attention_mask", "image_raw", "pixel_values", NULL};
    static const char *const yi_pre[] = {"image_padded", "pixel_values", NULL};
    static const char *const qwen_pre[] = {"resized_image", "pixel_values", NULL};
    run_fixture("yi_vl", in, yi_required, yi_pre);
    run_fixture("qwen_vl", in, qwen_required, qwen_pre);
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

/* The qwen_vl fixture's toy vocabulary as a tokenizer.json: printable ASCII c → 300 + c - 32, "\n" → 395, the
 * special tokens of meta.special_token_ids, every other id a token no text produces. */
static bool write_toy_tokenizer(const char *dir) {
    static const char *const special[12] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<ref>", "</ref>", "<box>",
                                            "</box>", "<quad>", "</quad>", "<img>", "</img>", "<imgpad>"};
    char path[1200];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return false;
    fprintf(f, "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null, \"added_tokens\": [");
    for (int i = 0; i < 12; i++)
        fprintf(f, "%s{\"id\": %d, \"content\": \"%s\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
                   "\"normalized\": false, \"special\": true}", i ? ", " : "", 1009 + i, special[i]);
    fprintf(f, "], \"normalizer\": null, \"pre_tokenizer\": null, \"post_processor\": null, \"decoder\": null, "
               "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \"continuing_subword_prefix\": null, "
               "\"end_of_word_suffix\": null, \"fuse_unk\": false, \"byte_fallback\": false, \"vocab\": {");
    for (int id = 0; id < 1024; id++) {
        fprintf(f, "%s", id ? ", " : "");
        if (id >= 300 && id < 395) {
            int c = id - 300 + 32;
            fprintf(f, c == '"' || c == '\\' ? "\"\\%c\": %d" : "\"%c\": %d", c, id);
        } else if (id == 395) fprintf(f, "\"\\n\": %d", id);
        else if (id >= 1009 && id < 1021) fprintf(f, "\"%s\": %d", special[id - 1009], id);
        else fprintf(f, "\"<t%d>\": %d", id, id);
    }
    fprintf(f, "}, \"merges\": []}}\n");
    fclose(f);
    /* the fixture's prompt layout: "Picture 1: <img>…</img>\n" then the text (no chat markers) */
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (!(f = fopen(path, "w"))) return false;
    fprintf(f, "{\"chat_template\": \"{%% for m in messages %%}{%% for c in m['content'] %%}{%% if c['type'] == 'image' "
               "%%}Picture {{ loop.index }}: <image>\\n{%% else %%}{{ c['text'] }}{%% endif %%}{%% endfor %%}{%% endfor %%}\"}\n");
    fclose(f);
    return true;
}

/* vlmc run's path (session: family preprocessing, <img> span, dynamic NTK / logn through generate) on the fixture's
 * prompt: the same ids (path bytes → <imgpad>, which the visual rows overwrite anyway) and the same greedy answer. */
static void test_qwen_vl_session(void) {
    const char *p = shared_path("fixtures/qwen_vl");
    if (!p) return;
    char fx[4096], dir[1100], src[4200], dst[1200];
    if (!CHECK(realpath(p, fx), "realpath %s", p)) return; /* symlink targets must be absolute */
    snprintf(dir, sizeof dir, "%s/qwen_vl_run", test_tmpdir());
    if (!CHECK(mkdir(dir, 0755) == 0, "mkdir %s", dir)) return;
    static const char *const files[] = {"config.json", "model.safetensors", "generation_config.json"};
    for (int i = 0; i < 3; i++) {
        snprintf(src, sizeof src, "%s/%s", fx, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        if (!CHECK(symlink(src, dst) == 0, "symlink %s", dst)) return;
    }
    if (!CHECK(write_toy_tokenizer(dir), "writing the toy tokenizer")) return;
    fixture f;
    snprintf(src, sizeof src, "%s/reference", fx);
    if (!CHECK(fx_open(&f, src) == 0, "%s", src)) return;
    fx_array *ids = fx_read(&f, "input_ids"), *gen = fx_read(&f, "generated_ids");
    vlmc_error err = {0};
    vlmc_model *m = NULL;
    vlmc_session *s = NULL;
    vlmc_image *im = NULL;
    vlmc_result r = {0};
    snprintf(src, sizeof src, "%s/reference/image.png", fx);
    if (!CHECK(ids && gen, "fixture arrays") || !CHECK(vlmc_model_load(dir, NULL, &m, &err) == VLMC_OK, "%s", err.message) ||
        !CHECK(vlmc_session_new(m, 0, &s, &err) == VLMC_OK, "%s", err.message) ||
        !CHECK(vlmc_image_load_file(src, NULL, &im, &err) == VLMC_OK, "%s", err.message) ||
        !CHECK(vlmc_session_add_image(s, im, &err) == VLMC_OK, "%s", err.message) ||
        !CHECK(vlmc_session_add_message(s, "user", "<ref>a cat</ref><box>(120,340),(560,780)</box> is", &err) == VLMC_OK,
               "%s", err.message))
        goto out;
    vlmc_gen_params gp = vlmc_gen_default_params();
    gp.max_new_tokens = (int)gen->n;
    gp.ignore_eos = 1;
    if (!CHECK(vlmc_session_generate(s, &gp, NULL, NULL, &r, &err) == VLMC_OK, "%s", err.message)) goto out;
    const int32_t *pi;
    size_t pn;
    vlmc_session_prompt_ids(s, &pi, &pn);
    const int32_t *want = ids->data;
    bool same = pn == ids->n;
    for (size_t i = 0; same && i < pn; i++) same = pi[i] == (want[i] < 256 ? 1020 : want[i]);
    CHECK(same, "session prompt: %zu ids, the fixture's %zu (path bytes as <imgpad>)", pn, ids->n);
    bool same_gen = r.n_ids == gen->n && !memcmp(r.ids, gen->data, gen->n * sizeof(int32_t));
    printf("    session: prompt %zu ids %s, %zu generated ids %s\n", pn, same ? "equal" : "DIFFER", r.n_ids,
           same_gen ? "equal to generated_ids" : "DIFFER");
    CHECK(same_gen, "session greedy ids differ from generated_ids");
out:
    vlmc_result_free(&r);
    vlmc_image_free(im);
    vlmc_session_free(s);
    vlmc_model_free(m);
    fx_free(ids);
    fx_free(gen);
    fx_close(&f);
}

int main(void) {
    tests_begin("yi_qwen_vl");
    TEST_RUN(test_yi_vl_image_raw);
    TEST_RUN(test_yi_vl_pixel_values);
    TEST_RUN(test_qwen_vl_image_raw);
    TEST_RUN(test_qwen_vl_pixel_values);
    TEST_RUN(test_both_image_inputs);
    TEST_RUN(test_detect_and_errors);
    TEST_RUN(test_qwen_vl_session);
    return tests_end();
}
