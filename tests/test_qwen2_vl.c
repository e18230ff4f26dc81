/* Qwen2-VL against the transformers 4.47 fixture qwen2_vl: Qwen2VLImageProcessor from the PNG (pixel_values,
 * image_grid_thw, the image-token count), then vlmc_dump on the fixture's inputs: every stored intermediate
 * (patch embeddings, vision rotary angles, vision block outputs, merger output, M-RoPE position ids and
 * rope_deltas, decoder hidden states, logits, step logits) within max|Δ| <= 1e-4 · max|ref|, generated ids exactly.
 * Also get_rope_index on hand-worked prompts (left padding, two images, text only), the dump's input errors, and a
 * two-turn session whose second turn (KV cache reused, second image) answers as a fresh session does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "vlmc.h"
#include "formats/arrays.h"
#include "models/vlm.h"

#define TOL 1e-4f

static const char *fixture_dir(void) {
    static char dir[1024];
    const char *p = shared_path("fixtures/qwen2_vl");
    if (!p) return NULL;
    snprintf(dir, sizeof dir, "%s", p);
    return dir;
}

/* The processor on reference/image.png: the same float32 pixel_values as transformers (and the uint8 values before
 * rescale/normalize equal the fixture's resized_image, read through the patch layout). */
static void test_processor(void) {
    const char *dir = fixture_dir();
    if (!dir) return;
    char ref[1100], img[1200];
    snprintf(ref, sizeof ref, "%s/reference", dir);
    snprintf(img, sizeof img, "%s/image.png", ref);
    vlmc_error err = {0};
    vlmc_image_processor *p = NULL;
    vlmc_image *im = NULL;
    vlmc_preprocessed pp;
    memset(&pp, 0, sizeof pp);
    array_set r = {0};
    if (!CHECK(vlmc_image_processor_load(dir, &p, &err) == VLMC_OK, "%s", err.message) ||
        !CHECK(vlmc_image_load_file(img, NULL, &im, &err) == VLMC_OK, "%s", err.message) ||
        !CHECK(vlmc_preprocess(p, im, &pp, &err) == VLMC_OK, "%s", err.message) ||
        !CHECK(arrays_read_dir(ref, 1, &r, &err) == VLMC_OK, "%s", err.message))
        goto out;
    CHECK(!strcmp(vlmc_image_processor_type(p), "Qwen2VLImageProcessor"), "type %s", vlmc_image_processor_type(p));
    named_array *pv = array_set_find(&r, "pixel_values"), *g = array_set_find(&r, "image_grid_thw");
    named_array *rs = array_set_find(&r, "resized_image");
    if (!CHECK(pv && g && rs, "fixture arrays missing")) goto out;
    const int32_t *grid = g->data;
    CHECK(pp.has_grid_thw && !memcmp(pp.image_grid_thw, grid, 3 * sizeof(int32_t)), "grid (%d, %d, %d) vs (%d, %d, %d)",
          pp.image_grid_thw[0], pp.image_grid_thw[1], pp.image_grid_thw[2], grid[0], grid[1], grid[2]);
    CHECK(pp.num_image_tokens == (int64_t)grid[0] * grid[1] * grid[2] / 4 && pp.num_image_tokens == 12,
          "%lld image tokens", (long long)pp.num_image_tokens);
    if (!CHECK(pp.ndim == 2 && pp.shape[0] == pv->shape[0] && pp.shape[1] == pv->shape[1], "pixel_values shape")) goto out;
    size_t n = (size_t)named_array_numel(pv);
    float d = max_abs_diff(pp.pixel_values, pv->data, n);
    printf("    pixel_values [%lld, %lld]: max|d| %g (max|ref| %g)\n", (long long)pp.shape[0], (long long)pp.shape[1], d,
           max_abs(pv->data, n));
    CHECK(d == 0.0f, "pixel_values differ by %g", d);
    /* row r = (bh, bw, mh, mw) of 2 × 2 groups, columns (c, t, y, x) of 14 × 14 patches, 2 frames */
    const int W = (int)rs->shape[1], gw = W / 14, P = 14;
    const uint8_t *rgb = rs->data;
    int bad = 0;
    for (size_t row = 0; row < (size_t)pp.shape[0]; row++) {
        int grp = (int)row / 4, within = (int)row % 4, bh = grp / (gw / 2), bw = grp % (gw / 2);
        int y0 = (bh * 2 + within / 2) * P, x0 = (bw * 2 + within % 2) * P;
        for (int c = 0; c < 3; c++)
            for (int t = 0; t < 2; t++)
                for (int y = 0; y < P; y++)
                    for (int x = 0; x < P; x++)
                        bad += pp.pixels_u8[row * 1176 + (size_t)((c * 2 + t) * P + y) * P + x] !=
                               rgb[((size_t)(y0 + y) * W + x0 + x) * 3 + c];
    }
    CHECK(bad == 0, "%d uint8 values differ from resized_image", bad);
out:
    array_set_free(&r);
    vlmc_preprocessed_free(&pp);
    vlmc_image_free(im);
    vlmc_image_processor_free(p);
}

/* Writes the named arrays of the fixture's reference folder into a fresh inputs folder. */
static bool make_inputs(const char *ref, const char *const *names, const char *tag, char *out, size_t out_n) {
    snprintf(out, out_n, "%s/in_%s", test_tmpdir(), tag);
    array_set set = {0};
    vlmc_error err = {0};
    if (!CHECK(arrays_read_dir(ref, 1, &set, &err) == VLMC_OK, "%s", err.message)) return false;
    named_array keep[8];
    int n = 0;
    for (const char *const *p = names; *p && n < 8; p++) {
        named_array *a = array_set_find(&set, *p);
        if (!a) continue;
        keep[n] = *a;
        keep[n].file = NULL;
        keep[n].note = NULL;
        n++;
    }
    bool ok = CHECK(arrays_write_dir(out, NULL, NULL, keep, n, &err) == VLMC_OK, "%s", err.message);
    array_set_free(&set);
    return ok;
}

static const char *const inputs[] = {"input_ids", "attention_mask", "pixel_values", "image_grid_thw", NULL};

/* Every array of the fixture but its inputs and the processor's intermediates. */
static const char *const compared[] = {"vision_patch_embeds", "vision_rotary_freqs", "vision_block_outputs",
                                       "vision_merger_output", "position_ids", "rope_deltas", "text_hidden_states",
                                       "logits", "generated_ids", "generation_step_logits", NULL};

static void test_dump(void) {
    const char *dir = fixture_dir();
    if (!dir) return;
    char ref[1100], in[1200], out[1200];
    snprintf(ref, sizeof ref, "%s/reference", dir);
    snprintf(out, sizeof out, "%s/out", test_tmpdir());
    if (!make_inputs(ref, inputs, "dump", in, sizeof in)) return;
    vlmc_error err = {0};
    array_set r = {0}, o = {0};
    if (!CHECK(arrays_read_dir(ref, 1, &r, &err) == VLMC_OK, "%s", err.message)) return;
    named_array *gen = array_set_find(&r, "generated_ids");
    if (CHECK(gen, "no generated_ids") && CHECK(vlmc_dump(dir, in, out, (int)gen->shape[1], 0, &err) == VLMC_OK, "%s", err.message) &&
        CHECK(arrays_read_dir(out, 1, &o, &err) == VLMC_OK, "%s", err.message)) {
        for (const char *const *c = compared; *c; c++) {
            named_array *x = array_set_find(&o, *c), *y = array_set_find(&r, *c);
            if (!CHECK(y, "fixture has no %s", *c) || !CHECK(x, "dump has no %s", *c)) continue;
            bool same = x->ndim == y->ndim && x->dtype == y->dtype;
            for (int k = 0; same && k < x->ndim; k++) same = x->shape[k] == y->shape[k];
            if (!CHECK(same, "%s: shape or dtype differs", *c)) continue;
            size_t n = (size_t)named_array_numel(y);
            if (y->dtype == ARRAY_I32) {
                bool exact = !memcmp(x->data, y->data, n * sizeof(int32_t));
                printf("    %-24s %s\n", *c, exact ? "exact" : "DIFFER");
                CHECK(exact, "%s differ", *c);
                continue;
            }
            float d = max_abs_diff(x->data, y->data, n), m = max_abs(y->data, n);
            printf("    %-24s max|d| %.3g  max|ref| %.3g  rel %.3g\n", *c, d, m, m > 0 ? d / m : d);
            CHECK(d <= TOL * m, "%s: max|d| %g > 1e-4 * %g", *c, d, m);
        }
    }
    array_set_free(&r);
    array_set_free(&o);
}

/* Runs vlmc_dump on (ids, mask) [B, T] with the fixture's image once per sequence; reads the outputs into o. */
static bool dump_batch(const char *dir, const char *tag, const int32_t *ids, const int32_t *mask, int B, int T,
                       const named_array *pixels, int n_gen, array_set *o) {
    char in[1200], out[1200];
    snprintf(in, sizeof in, "%s/in_%s", test_tmpdir(), tag);
    snprintf(out, sizeof out, "%s/out_%s", test_tmpdir(), tag);
    const int64_t rows = pixels->shape[0], cols = pixels->shape[1];
    float *px = malloc((size_t)(B * rows * cols) * sizeof(float));
    int32_t grid[8 * 3];
    for (int b = 0; b < B; b++) {
        memcpy(px + (size_t)b * rows * cols, pixels->data, (size_t)(rows * cols) * sizeof(float));
        grid[3 * b] = 1, grid[3 * b + 1] = 6, grid[3 * b + 2] = 8;
    }
    named_array a[4] = {
        {.name = "input_ids", .dtype = ARRAY_I32, .ndim = 2, .shape = {B, T}, .data = (void *)ids},
        {.name = "attention_mask", .dtype = ARRAY_I32, .ndim = 2, .shape = {B, T}, .data = (void *)mask},
        {.name = "pixel_values", .dtype = ARRAY_F32, .ndim = 2, .shape = {B * rows, cols}, .data = px},
        {.name = "image_grid_thw", .dtype = ARRAY_I32, .ndim = 2, .shape = {B, 3}, .data = grid}};
    vlmc_error err = {0};
    bool ok = CHECK(arrays_write_dir(in, NULL, NULL, a, 4, &err) == VLMC_OK, "%s", err.message) &&
              CHECK(vlmc_dump(dir, in, out, n_gen, 0, &err) == VLMC_OK, "%s: %s", tag, err.message) &&
              CHECK(arrays_read_dir(out, 1, o, &err) == VLMC_OK, "%s", err.message);
    free(px);
    return ok;
}

/* A left-padded batch: the fixture's prompt and the same prompt without its first two tokens, padded by two. Each
 * row equals the same prompt run alone (logits where the mask is 1, rope_deltas, greedy ids through the KV cache,
 * whose positions continue from each sequence's own delta). */
static void test_padded_batch(void) {
    const char *dir = fixture_dir();
    if (!dir) return;
    char ref[1100];
    snprintf(ref, sizeof ref, "%s/reference", dir);
    array_set r = {0}, ob = {0}, o1 = {0};
    vlmc_error err = {0};
    if (!CHECK(arrays_read_dir(ref, 1, &r, &err) == VLMC_OK, "%s", err.message)) return;
    named_array *ids = array_set_find(&r, "input_ids"), *px = array_set_find(&r, "pixel_values");
    enum { N_GEN = 8 };
    const int T = (int)ids->shape[1];
    const int32_t *id = ids->data;
    int32_t *bids = malloc(2 * (size_t)T * sizeof(int32_t)), *bmask = malloc(2 * (size_t)T * sizeof(int32_t));
    for (int t = 0; t < T; t++) {
        bids[t] = id[t];
        bmask[t] = 1;
        bids[T + t] = t < 2 ? 0 : id[t];
        bmask[T + t] = t >= 2;
    }
    if (dump_batch(dir, "batch", bids, bmask, 2, T, px, N_GEN, &ob) &&
        dump_batch(dir, "short", bids + T + 2, bmask + T + 2, 1, T - 2, px, N_GEN, &o1)) {
        named_array *bl = array_set_find(&ob, "logits"), *sl = array_set_find(&o1, "logits");
        named_array *rl = array_set_find(&r, "logits");
        const size_t V = (size_t)bl->shape[2];
        float d0 = max_abs_diff(bl->data, rl->data, (size_t)T * V), m0 = max_abs(rl->data, (size_t)T * V);
        float d1 = max_abs_diff((float *)bl->data + (size_t)(T + 2) * V, sl->data, (size_t)(T - 2) * V);
        float m1 = max_abs(sl->data, (size_t)(T - 2) * V);
        printf("    batch row 0 vs fixture: rel %.3g; row 1 (padded) vs alone: rel %.3g\n", d0 / m0, d1 / m1);
        CHECK(d0 <= TOL * m0 && d1 <= TOL * m1, "padded batch logits: %g, %g", d0 / m0, d1 / m1);
        const int32_t *bd = array_set_find(&ob, "rope_deltas")->data, *sd = array_set_find(&o1, "rope_deltas")->data;
        CHECK(bd[0] == ((const int32_t *)array_set_find(&r, "rope_deltas")->data)[0] && bd[1] == sd[0] - 2,
              "rope_deltas %d %d (alone %d)", bd[0], bd[1], sd[0]);
        const int32_t *bg = array_set_find(&ob, "generated_ids")->data, *sg = array_set_find(&o1, "generated_ids")->data;
        const int32_t *rg = array_set_find(&r, "generated_ids")->data;
        CHECK(!memcmp(bg, rg, N_GEN * sizeof(int32_t)) && !memcmp(bg + N_GEN, sg, N_GEN * sizeof(int32_t)),
              "padded batch generation differs from the prompts alone");
    }
    free(bids);
    free(bmask);
    array_set_free(&r);
    array_set_free(&ob);
    array_set_free(&o1);
}

/* get_rope_index by hand. Grid (1, 4, 6) = 2 × 3 merged tokens; ids 7 <|vision_start|> image×6 <|vision_end|> 8 9:
 * text 7, 502 → 0, 1; the image starts at 2: (2, 2+row, 2+col); next = 2 + max(0, 1, 2) + 1 = 5; then 5, 6, 7.
 * The same prompt left-padded by 2 in a batch with a text-only prompt, and two images in one prompt. */
static void test_rope_index(void) {
    const char *dir = fixture_dir();
    if (!dir) return;
    vlm_model m;
    vlmc_error err = {0};
    if (!CHECK(vlm_load(dir, &m, &err) == VLMC_OK, "%s", err.message)) return;
    enum { T = 13 };
    const int32_t I = 500, VS = 502, VE = 503;
    const int32_t ids[2 * T] = {0, 0, 7, VS, I, I, I, I, I, I, VE, 8, 9, /* padded */
                                4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    const int32_t mask[2 * T] = {0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    const int32_t grid[6] = {1, 4, 6, 1, 2, 2};
    static const int32_t want0[T][3] = {{1, 1, 1}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}, {2, 2, 2}, {2, 2, 3}, {2, 2, 4},
                                        {2, 3, 2}, {2, 3, 3}, {2, 3, 4}, {5, 5, 5}, {6, 6, 6}, {7, 7, 7}};
    int32_t pos[2 * T * 3], deltas[2];
    if (CHECK(m.fam->rope_index(&m, ids, mask, 2, T, grid, 1, pos, deltas, &err) == VLMC_OK, "%s", err.message)) {
        CHECK(!memcmp(pos, want0, sizeof want0), "padded image prompt positions");
        bool text = true;
        for (int i = 0; i < T; i++)
            for (int a = 0; a < 3; a++) text &= pos[(T + i) * 3 + a] == i;
        CHECK(text, "text-only prompt: 0..T-1 on every axis");
        CHECK(deltas[0] == 8 - T && deltas[1] == 0, "rope_deltas %d %d", deltas[0], deltas[1]);
    }
    /* two images: after the first, next = 5; <|vision_end|> 8 <|vision_start|> → 5, 6, 7; the second image (grid
     * 1 × 2 × 2 = one merged token) at 8 on every axis; then <|vision_end|> 9 → 9, 10; delta = 11 - 14 */
    const int32_t two[14] = {7, VS, I, I, I, I, I, I, VE, 8, VS, I, VE, 9};
    int32_t p2[14 * 3];
    if (CHECK(m.fam->rope_index(&m, two, NULL, 1, 14, grid, 2, p2, deltas, &err) == VLMC_OK, "%s", err.message))
        CHECK(p2[8 * 3] == 5 && p2[9 * 3] == 6 && p2[10 * 3] == 7 && p2[11 * 3] == 8 && p2[11 * 3 + 1] == 8 &&
                  p2[11 * 3 + 2] == 8 && p2[12 * 3] == 9 && p2[13 * 3 + 2] == 10 && deltas[0] == 11 - 14,
              "two images: %d %d %d %d %d %d, delta %d", p2[24], p2[27], p2[30], p2[33], p2[36], p2[39], deltas[0]);
    /* more images in the prompt than grids, or an image run shorter than its grid */
    CHECK(m.fam->rope_index(&m, two, NULL, 1, 14, grid, 1, p2, NULL, &err) == VLMC_ERR_ARG &&
              strstr(err.message, "image_grid_thw"), "missing grid: %s", err.message);
    const int32_t short_run[5] = {VS, I, I, VE, 9};
    CHECK(m.fam->rope_index(&m, short_run, NULL, 1, 5, grid, 1, p2, NULL, &err) == VLMC_ERR_ARG &&
              strstr(err.message, "image tokens"), "short run: %s", err.message);
    vlm_free(&m);
}

/* Inputs the dump cannot use are errors naming the problem. */
static void test_dump_errors(void) {
    const char *dir = fixture_dir();
    if (!dir) return;
    char ref[1100], in[1200], out[1200];
    snprintf(ref, sizeof ref, "%s/reference", dir);
    snprintf(out, sizeof out, "%s/out_err", test_tmpdir());
    vlmc_error err = {0};
    static const char *const no_grid[] = {"input_ids", "pixel_values", NULL};
    if (make_inputs(ref, no_grid, "nogrid", in, sizeof in))
        CHECK(vlmc_dump(dir, in, out, 0, 0, &err) == VLMC_ERR_FORMAT && strstr(err.message, "image_grid_thw"),
              "pixel_values without image_grid_thw: %s", err.message);
    static const char *const no_pixels[] = {"input_ids", NULL};
    if (make_inputs(ref, no_pixels, "nopix", in, sizeof in))
        CHECK(vlmc_dump(dir, in, out, 0, 0, &err) == VLMC_ERR_ARG && strstr(err.message, "no image was given"),
              "image tokens without pixels: %s", err.message);
    /* a grid that does not cover the patch rows */
    array_set set = {0};
    if (CHECK(arrays_read_dir(ref, 1, &set, &err) == VLMC_OK, "%s", err.message)) {
        named_array keep[4];
        int n = 0;
        for (const char *const *p = inputs; *p; p++) {
            keep[n] = *array_set_find(&set, *p);
            keep[n].file = keep[n].note = NULL;
            n++;
        }
        int32_t bad_grid[3] = {1, 6, 6};
        keep[3].data = bad_grid;
        snprintf(in, sizeof in, "%s/in_badgrid", test_tmpdir());
        if (CHECK(arrays_write_dir(in, NULL, NULL, keep, n, &err) == VLMC_OK, "%s", err.message))
            CHECK(vlmc_dump(dir, in, out, 0, 0, &err) == VLMC_ERR_ARG && strstr(err.message, "pixel_values has 48"),
                  "grid of 36 patches for 48 rows: %s", err.message);
        int32_t odd_grid[3] = {1, 3, 16};
        keep[3].data = odd_grid;
        snprintf(in, sizeof in, "%s/in_oddgrid", test_tmpdir());
        if (CHECK(arrays_write_dir(in, NULL, NULL, keep, n, &err) == VLMC_OK, "%s", err.message))
            CHECK(vlmc_dump(dir, in, out, 0, 0, &err) == VLMC_ERR_ARG && strstr(err.message, "spatial_merge_size"),
                  "odd grid: %s", err.message);
    }
    array_set_free(&set);
}

/* A conversation template over every message, for the two-turn test (the tokenizer is the fixture's toy one). */
static const char *const CHAT_TEMPLATE =
    "{% for m in messages %}<t88>{% for c in m['content'] %}{% if c['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}{% endfor %}<t106>{% endfor %}"
    "{% if add_generation_prompt %}<t255>{% endif %}";

static void test_session_two_turns(void) {
    const char *dir = fixture_dir();
    if (!dir) return;
    char cmd[3000], model[600], img[1200], tc[700];
    snprintf(model, sizeof model, "%s/chat_model", test_tmpdir());
    snprintf(img, sizeof img, "%s/reference/image.png", dir);
    snprintf(cmd, sizeof cmd, "python3 tests/make_fixture_prompt_model.py '%s' '%s'", dir, model);
    if (system(cmd) != 0) {
        test_skip("python3 tests/make_fixture_prompt_model.py failed");
        return;
    }
    snprintf(tc, sizeof tc, "%s/tokenizer_config.json", model);
    FILE *f = fopen(tc, "w");
    if (!CHECK(f, "cannot write %s", tc)) return;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "eos_token", "</s>");
    cJSON_AddStringToObject(j, "chat_template", CHAT_TEMPLATE);
    char *text = cJSON_PrintUnformatted(j);
    fputs(text, f);
    fclose(f);
    free(text);
    cJSON_Delete(j);
    vlmc_error err = {0};
    vlmc_model *m = NULL;
    vlmc_image *im = NULL;
    if (!CHECK(vlmc_model_load(model, NULL, &m, &err) == VLMC_OK, "%s", err.message) ||
        !CHECK(vlmc_image_load_file(img, NULL, &im, &err) == VLMC_OK, "%s", err.message)) {
        vlmc_model_free(m);
        return;
    }
    vlmc_gen_params gp = vlmc_gen_default_params();
    gp.max_new_tokens = 6;
    gp.ignore_eos = 1;
    vlmc_session *a = NULL, *b = NULL;
    vlmc_result r1, r2, r3;
    memset(&r1, 0, sizeof r1); memset(&r2, 0, sizeof r2); memset(&r3, 0, sizeof r3);
    if (CHECK(vlmc_session_new(m, 0, &a, &err) == VLMC_OK && vlmc_session_new(m, 0, &b, &err) == VLMC_OK, "%s",
              err.message) &&
        CHECK(vlmc_session_add_image(a, im, &err) == VLMC_OK &&
                  vlmc_session_add_message(a, "user", "<t378><t169>", &err) == VLMC_OK &&
                  vlmc_session_generate(a, &gp, NULL, NULL, &r1, &err) == VLMC_OK, "%s", err.message)) {
        const int32_t *ids;
        size_t n;
        vlmc_session_prompt_ids(a, &ids, &n);
        size_t pads = 0;
        for (size_t i = 0; i < n; i++) pads += ids[i] == 500;
        CHECK(pads == 12, "%zu <|image_pad|> tokens for one image", pads);
        CHECK(vlmc_session_add_image(a, im, &err) == VLMC_OK &&
                  vlmc_session_add_message(a, "user", "<t138>", &err) == VLMC_OK &&
                  vlmc_session_generate(a, &gp, NULL, NULL, &r2, &err) == VLMC_OK, "%s", err.message);
        CHECK(vlmc_session_add_image(b, im, &err) == VLMC_OK &&
                  vlmc_session_add_message(b, "user", "<t378><t169>", &err) == VLMC_OK &&
                  vlmc_session_add_message(b, "assistant", r1.text, &err) == VLMC_OK &&
                  vlmc_session_add_image(b, im, &err) == VLMC_OK &&
                  vlmc_session_add_message(b, "user", "<t138>", &err) == VLMC_OK &&
                  vlmc_session_generate(b, &gp, NULL, NULL, &r3, &err) == VLMC_OK, "%s", err.message);
        printf("    turn 2: prompt %d tokens, %d run with the cache, %d from scratch\n", r2.timings.n_prompt_tokens,
               r2.timings.n_prefill_tokens, r3.timings.n_prefill_tokens);
        CHECK(r2.n_ids == 6 && r2.n_ids == r3.n_ids && !memcmp(r2.ids, r3.ids, r2.n_ids * sizeof(int32_t)),
              "second turn with the cache differs from a fresh session");
        CHECK(r2.timings.n_prefill_tokens < r3.timings.n_prefill_tokens, "cache not reused: %d of %d",
              r2.timings.n_prefill_tokens, r2.timings.n_prompt_tokens);
    }
    vlmc_result_free(&r1); vlmc_result_free(&r2); vlmc_result_free(&r3);
    vlmc_session_free(a);
    vlmc_session_free(b);
    vlmc_image_free(im);
    vlmc_model_free(m);
}

/* config.json: Qwen2VLConfig's flat decoder keys (or a nested text_config), vision_config's own names, M-RoPE. */
static void test_config(void) {
    static const char *const flat =
        "{\"model_type\": \"qwen2_vl\", \"hidden_size\": 64, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
        " \"vocab_size\": 512, \"image_token_id\": 500, \"rope_scaling\": {\"type\": \"mrope\", \"mrope_section\": [2, 3, 3]},"
        " \"vision_config\": {\"depth\": 2, \"embed_dim\": 32, \"hidden_size\": 64, \"mlp_ratio\": 2, \"num_heads\": 4}}";
    static const char *const nested =
        "{\"model_type\": \"qwen2_vl\", \"image_token_id\": 500, \"text_config\": {\"model_type\": \"qwen2_vl_text\","
        " \"hidden_size\": 64, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"vocab_size\": 512,"
        " \"rope_scaling\": {\"rope_type\": \"default\", \"mrope_section\": [2, 3, 3]}},"
        " \"vision_config\": {\"depth\": 2, \"embed_dim\": 32, \"hidden_size\": 64, \"mlp_ratio\": 2, \"num_heads\": 4}}";
    const char *const cases[2] = {flat, nested};
    for (int i = 0; i < 2; i++) {
        cJSON *j = cJSON_Parse(cases[i]);
        hf_config c;
        vlmc_error err = {0};
        if (CHECK(hf_config_parse(j, "config.json", &c, &err) == VLMC_OK, "case %d: %s", i, err.message))
            CHECK(c.has_vision && c.text.hidden_size == 64 && c.text.head_dim == 16 && c.text.qkv_bias &&
                      !c.text.o_bias && c.text.rope_scaling.type == ROPE_MROPE && c.text.rope_scaling.mrope_section[2] == 3 &&
                      c.text.rope_theta == 1000000.0 && c.vision.hidden_size == 32 && c.vision.intermediate_size == 64 &&
                      c.vision.projection_dim == 64 && c.vision.spatial_merge_size == 2 &&
                      c.vision.temporal_patch_size == 2 && c.vision.patch_size == 14 &&
                      !strcmp(c.vision.hidden_act, "quick_gelu") && c.image_token_index == 500 &&
                      c.vision_start_token_id == 151652,
                  "case %d: parsed values", i);
        cJSON_Delete(j);
    }
    /* without mrope_section, or with sections that do not cover head_dim / 2 */
    static const char *const bad[2] = {
        "{\"model_type\": \"qwen2_vl\", \"hidden_size\": 64, \"num_attention_heads\": 4, \"num_key_value_heads\": 2}",
        "{\"model_type\": \"qwen2_vl\", \"hidden_size\": 64, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
        " \"rope_scaling\": {\"type\": \"mrope\", \"mrope_section\": [2, 2, 2]}}"};
    for (int i = 0; i < 2; i++) {
        cJSON *j = cJSON_Parse(bad[i]);
        hf_config c;
        vlmc_error err = {0};
        CHECK(hf_config_parse(j, "config.json", &c, &err) == VLMC_ERR_FORMAT && strstr(err.message, "mrope_section") &&
                  strstr(err.message, "config.json"), "bad case %d: %s", i, err.message);
        cJSON_Delete(j);
    }
}

int main(void) {
    tests_begin("qwen2_vl");
    TEST_RUN(test_config);
    TEST_RUN(test_processor);
    TEST_RUN(test_dump);
    TEST_RUN(test_rope_index);
    TEST_RUN(test_padded_batch);
    TEST_RUN(test_dump_errors);
    TEST_RUN(test_session_two_turns);
    return tests_end();
}
