/* PaliGemma and Fuyu end to end through the dump path (vlmc_dump, the library side of `vlmc dump`) against the
 * transformers 4.47 fixtures paligemma and fuyu: every stored intermediate, the logits and the greedy step logits
 * within max|Δ| <= 1e-4 · max|ref|, the generated ids exactly; PaliGemma's training-mode (prefix-LM) logits and loss
 * (1e-5 relative) from train_input_ids / train_token_type_ids / train_labels; Fuyu's patchify of the processed image;
 * both processors from the PNG; both families through a session (vlmc run's path) from the image file; and the
 * dump's errors for inputs these families cannot use. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "vlmc.h"
#include "formats/arrays.h"
#include "formats/hf_config.h"
#include "kernels/ops.h"
#include "models/vlm.h"

/* a fixture array and the name it has on the dump's side */
typedef struct renamed {
    const char *fixture, *dump;
} renamed;

typedef struct dump_case {
    const char *fixture;
    renamed inputs[6];   /* fixture arrays → dump inputs */
    renamed outputs[10]; /* reference arrays ← dump outputs */
    int generate;
} dump_case;

static const dump_case paligemma_case = {
    "paligemma",
    {{"input_ids", "input_ids"}, {"attention_mask", "attention_mask"}, {"pixel_values", "pixel_values"}},
    {{"vision_hidden_states", "vision_hidden_states"}, {"vision_last_hidden_state", "vision_last_hidden_state"},
     {"image_features", "image_features"}, {"text_hidden_states", "text_hidden_states"}, {"logits", "logits"},
     {"generated_ids", "generated_ids"}, {"generation_step_logits", "generation_step_logits"}},
    16,
};

static const dump_case paligemma_train_case = {
    "paligemma",
    {{"train_input_ids", "input_ids"}, {"train_token_type_ids", "token_type_ids"}, {"train_labels", "labels"},
     {"pixel_values", "pixel_values"}},
    {{"train_logits", "logits"}, {"train_loss", "loss"}},
    0,
};

/* labels without token_type_ids: the suffix is where the labels are set, as PaliGemmaProcessor makes them */
static const dump_case paligemma_labels_case = {
    "paligemma",
    {{"train_input_ids", "input_ids"}, {"train_labels", "labels"}, {"pixel_values", "pixel_values"}},
    {{"train_logits", "logits"}, {"train_loss", "loss"}},
    0,
};

static const dump_case fuyu_case = {
    "fuyu",
    {{"input_ids", "input_ids"}, {"attention_mask", "attention_mask"}, {"image_patches", "image_patches"},
     {"image_patches_indices", "image_patches_indices"}},
    {{"patch_embeddings", "patch_embeddings"}, {"text_hidden_states", "text_hidden_states"}, {"logits", "logits"},
     {"generated_ids", "generated_ids"}, {"generation_step_logits", "generation_step_logits"}},
    16,
};

/* Writes the case's inputs (renamed) into a fresh folder; extra (may be NULL) is added as it is. */
static bool write_inputs(const array_set *ref, const dump_case *c, const named_array *extra, char *dir, size_t n) {
    static int counter;
    snprintf(dir, n, "%s/in_%s_%d", test_tmpdir(), c->fixture, counter++);
    named_array a[8];
    int k = 0;
    for (const renamed *r = c->inputs; r < c->inputs + 6 && r->fixture; r++) {
        named_array *x = array_set_find(ref, r->fixture);
        if (!CHECK(x, "%s: no %s in the fixture", c->fixture, r->fixture)) return false;
        a[k] = *x;
        a[k].name = (char *)r->dump;
        a[k].file = a[k].note = NULL;
        k++;
    }
    if (extra) a[k++] = *extra;
    vlmc_error err = {0};
    return CHECK(arrays_write_dir(dir, NULL, NULL, a, k, &err) == VLMC_OK, "%s", err.message);
}

static const char *ref_dir(const char *fixture, char *buf, size_t n) {
    char rel[128];
    snprintf(rel, sizeof rel, "fixtures/%s", fixture);
    const char *p = shared_path(rel);
    if (!p) return NULL;
    snprintf(buf, n, "%s", p);
    return buf;
}

/* Runs vlmc_dump on the case and compares each output with its reference (loss: 1e-5 relative). */
static void run_case(const dump_case *c) {
    char model[1024], ref[1100], in[1200], out[1200];
    if (!ref_dir(c->fixture, model, sizeof model)) return;
    snprintf(ref, sizeof ref, "%s/reference", model);
    static int runs;
    snprintf(out, sizeof out, "%s/out_%s_%d", test_tmpdir(), c->fixture, runs++);
    vlmc_error err = {0};
    array_set r = {0}, o = {0};
    if (!CHECK(arrays_read_dir(ref, 1, &r, &err) == VLMC_OK, "%s", err.message)) return;
    if (write_inputs(&r, c, NULL, in, sizeof in) &&
        CHECK(vlmc_dump(model, in, out, c->generate, 0, &err) == VLMC_OK, "%s: %s", c->fixture, err.message) &&
        CHECK(arrays_read_dir(out, 1, &o, &err) == VLMC_OK, "%s", err.message)) {
        printf("    %s:", c->fixture);
        for (const renamed *p = c->outputs; p < c->outputs + 10 && p->fixture; p++) {
            named_array *x = array_set_find(&o, p->dump), *y = array_set_find(&r, p->fixture);
            if (!CHECK(x && y, "%s: %s missing", c->fixture, p->dump)) continue;
            bool same = x->ndim == y->ndim && x->dtype == y->dtype;
            for (int d = 0; same && d < x->ndim; d++) same = x->shape[d] == y->shape[d];
            if (!CHECK(same, "%s: %s has another shape or dtype than %s", c->fixture, p->dump, p->fixture)) continue;
            size_t n = (size_t)named_array_numel(y);
            if (y->dtype == ARRAY_I32) {
                bool exact = !memcmp(x->data, y->data, n * sizeof(int32_t));
                printf(" %s %s", p->fixture, exact ? "exact" : "DIFFER");
                CHECK(exact, "%s: %s differ", c->fixture, p->fixture);
                continue;
            }
            float m = max_abs(y->data, n), rel = max_abs_diff(x->data, y->data, n) / (m > 0 ? m : 1);
            float tol = !strcmp(p->dump, "loss") ? 1e-5f : 1e-4f;
            printf(" %s %.2g", p->fixture, rel);
            CHECK(rel <= tol, "%s: %s rel diff %g > %g", c->fixture, p->fixture, rel, tol);
        }
        printf("\n");
    }
    array_set_free(&r);
    array_set_free(&o);
}

static void test_paligemma(void) { run_case(&paligemma_case); }
static void test_paligemma_train(void) {
    run_case(&paligemma_train_case);
    run_case(&paligemma_labels_case);
}
static void test_fuyu(void) { run_case(&fuyu_case); }

/* FuyuImageProcessor's patches: the processed (padded, normalized) image cut over the unpadded image's grid. */
static void test_fuyu_patchify(void) {
    char model[1024], ref[1100];
    if (!ref_dir("fuyu", model, sizeof model)) return;
    snprintf(ref, sizeof ref, "%s/reference", model);
    array_set r = {0};
    vlmc_error err = {0};
    if (!CHECK(arrays_read_dir(ref, 1, &r, &err) == VLMC_OK, "%s", err.message)) return;
    named_array *img = array_set_find(&r, "processed_image"), *want = array_set_find(&r, "image_patches"),
                *raw = array_set_find(&r, "image_raw");
    if (CHECK(img && want && raw && img->ndim == 3 && raw->ndim == 3, "fuyu arrays")) {
        const int C = (int)img->shape[0], H = (int)img->shape[1], W = (int)img->shape[2];
        int rows, cols;
        fuyu_grid((int)raw->shape[0], (int)raw->shape[1], H, W, 10, &rows, &cols);
        float *got = malloc((size_t)named_array_numel(want) * sizeof(float));
        CHECK(rows * cols == want->shape[1] && rows == 4 && cols == 6, "grid %d × %d", rows, cols);
        if (got && rows * cols == want->shape[1]) {
            fuyu_patchify(img->data, C, H, W, rows, cols, 10, got);
            CHECK(!memcmp(got, want->data, (size_t)named_array_numel(want) * sizeof(float)), "patches differ");
        }
        free(got);
    }
    array_set_free(&r);
}

/* vlmc run's path: image file → the family's image processor → its prompt layout (no chat template) → prefill
 * (PaliGemma: prefix LM) → greedy decode gives the fixture's prompt ids and generated ids exactly. The folder gets a
 * tokenizer from tests/make_plain_prompt_model.py (the fixtures have none) that spells the fixture's text ids as
 * `text`. */
static void run_session(const char *fixture, const char *text) {
    char fx[1024], model[1100], img[1200], cmd[2600], ref[1100];
    if (!ref_dir(fixture, fx, sizeof fx)) return;
    snprintf(model, sizeof model, "%s/%s_model", test_tmpdir(), fixture);
    snprintf(img, sizeof img, "%s/reference/image.png", fx);
    snprintf(ref, sizeof ref, "%s/reference", fx);
    snprintf(cmd, sizeof cmd, "python3 tests/make_plain_prompt_model.py '%s' '%s' > /dev/null", fx, model);
    if (system(cmd) != 0) {
        test_skip("python3 tests/make_plain_prompt_model.py failed");
        return;
    }
    vlmc_error err = {0};
    array_set r = {0};
    vlmc_model *m = NULL;
    vlmc_image *im = NULL;
    vlmc_session *s = NULL;
    vlmc_result res;
    memset(&res, 0, sizeof res);
    vlmc_gen_params gp = vlmc_gen_default_params();
    gp.max_new_tokens = 16;
    gp.ignore_eos = 1;
    if (CHECK(arrays_read_dir(ref, 1, &r, &err) == VLMC_OK, "%s", err.message) &&
        CHECK(vlmc_model_load(model, NULL, &m, &err) == VLMC_OK, "%s", err.message) &&
        CHECK(vlmc_image_load_file(img, NULL, &im, &err) == VLMC_OK, "%s", err.message) &&
        CHECK(vlmc_session_new(m, 0, &s, &err) == VLMC_OK && vlmc_session_add_image(s, im, &err) == VLMC_OK &&
                  vlmc_session_add_message(s, "user", text, &err) == VLMC_OK &&
                  vlmc_session_generate(s, &gp, NULL, NULL, &res, &err) == VLMC_OK, "%s: %s", fixture, err.message)) {
        named_array *want_prompt = array_set_find(&r, "input_ids"), *want_gen = array_set_find(&r, "generated_ids");
        const int32_t *ids;
        size_t n;
        vlmc_session_prompt_ids(s, &ids, &n);
        CHECK(want_prompt && n == (size_t)want_prompt->shape[1] && !memcmp(ids, want_prompt->data, n * sizeof(int32_t)),
              "%s: prompt ids differ from the processor's layout", fixture);
        bool same = want_gen && res.n_ids == (size_t)want_gen->shape[1] &&
                    !memcmp(res.ids, want_gen->data, res.n_ids * sizeof(int32_t));
        printf("    %s session: prompt %zu ids, generated ids %s\n", fixture, n, same ? "exact" : "DIFFER");
        CHECK(same, "%s: generated ids differ", fixture);
        /* no chat template: a second user turn is an error, not a guessed format */
        vlmc_result r2;
        CHECK(vlmc_session_add_message(s, "user", text, &err) == VLMC_OK &&
                  vlmc_session_generate(s, &gp, NULL, NULL, &r2, &err) == VLMC_ERR_UNSUPPORTED &&
                  strstr(err.message, "one user message"), "second turn: %s", err.message);
    }
    vlmc_result_free(&res);
    vlmc_session_free(s);
    vlmc_image_free(im);
    vlmc_model_free(m);
    array_set_free(&r);
}

static void test_paligemma_session(void) { run_session("paligemma", "abcde"); }
static void test_fuyu_session(void) { run_session("fuyu", "abcdef"); }

/* The processors from the PNG: PaliGemma's SiglipImageProcessor gives pixel_values, FuyuImageProcessor the padded
 * processed_image, the unpadded size and the 4 × 6 patch grid, bit for bit. A larger image is resized to fit. */
static void test_processors(void) {
    char fuyu[1024], pali[1024], img[1200], ref[1100];
    if (!ref_dir("fuyu", fuyu, sizeof fuyu) || !ref_dir("paligemma", pali, sizeof pali)) return;
    const char *dirs[2] = {pali, fuyu}, *want[2] = {"pixel_values", "processed_image"};
    vlmc_error err = {0};
    for (int k = 0; k < 2; k++) {
        snprintf(img, sizeof img, "%s/reference/image.png", dirs[k]);
        snprintf(ref, sizeof ref, "%s/reference", dirs[k]);
        vlmc_image_processor *p = NULL;
        vlmc_image *im = NULL;
        vlmc_preprocessed pp;
        memset(&pp, 0, sizeof pp);
        array_set r = {0};
        if (CHECK(arrays_read_dir(ref, 1, &r, &err) == VLMC_OK && vlmc_image_processor_load(dirs[k], &p, &err) == VLMC_OK &&
                      vlmc_image_load_file(img, NULL, &im, &err) == VLMC_OK && vlmc_preprocess(p, im, &pp, &err) == VLMC_OK,
                  "%s", err.message)) {
            named_array *w = array_set_find(&r, want[k]);
            size_t n = w ? (size_t)named_array_numel(w) : 0;
            CHECK(w && (size_t)pp.shape[1] * pp.shape[2] * pp.shape[3] == n &&
                      !memcmp(pp.pixel_values, w->data, n * sizeof(float)), "%s: %s differs", dirs[k], want[k]);
            if (k == 1)
                CHECK(pp.has_image_sizes && pp.image_sizes[0] == 37 && pp.image_sizes[1] == 53 && pp.rows == 4 &&
                          pp.cols == 6 && pp.num_image_tokens == 28, "fuyu: unpadded %d×%d, grid %d×%d",
                      pp.image_sizes[0], pp.image_sizes[1], pp.rows, pp.cols);
            vlmc_preprocessed_free(&pp);
        }
        if (k == 1 && im && p) {
            /* 106 × 74 → scale min(40/74, 60/106) = 0.5405… → int(74·s) × int(106·s) = 40 × 57, padded to 40 × 60 */
            vlmc_image *big = NULL;
            size_t npx = 106 * 74 * 3;
            uint8_t *px = malloc(npx);
            for (size_t i = 0; px && i < npx; i++) px[i] = (uint8_t)(i * 7);
            if (px && CHECK(vlmc_image_from_rgb(px, 106, 74, &big, &err) == VLMC_OK, "%s", err.message) &&
                CHECK(vlmc_preprocess(p, big, &pp, &err) == VLMC_OK, "%s", err.message)) {
                CHECK(pp.image_sizes[0] == 40 && pp.image_sizes[1] == 57 && pp.shape[2] == 40 && pp.shape[3] == 60 &&
                          pp.rows == 4 && pp.cols == 6, "resized to %d×%d", pp.image_sizes[0], pp.image_sizes[1]);
                vlmc_preprocessed_free(&pp);
            }
            vlmc_image_free(big);
            free(px);
        }
        vlmc_image_free(im);
        vlmc_image_processor_free(p);
        array_set_free(&r);
    }
}

/* The prefix-LM mask in both attention kernels (row by row and through sgemm) against a plain softmax over the
 * slots each query may see: slot j is seen by query slot i when mask[j] != 0 and (j <= i or mask[j] == 2). */
static void test_prefix_attention(void) {
    enum { B = 2, T = 20, PAST = 3, H = 2, KVH = 1, HD = 8, CTX = 32 };
    float *q = malloc(sizeof(float) * B * T * H * HD), *k = calloc(B * KVH * CTX * HD, sizeof(float)),
          *v = calloc(B * KVH * CTX * HD, sizeof(float)), *o1 = malloc(sizeof(float) * B * T * H * HD),
          *o2 = malloc(sizeof(float) * B * T * H * HD), *sc = malloc(sizeof(float) * 64 * CTX),
          *S = malloc(sizeof(float) * T * CTX);
    uint8_t mask[B * CTX] = {0};
    int32_t prefix_end[B] = {0};
    uint32_t r = 12345;
    for (int i = 0; i < B * T * H * HD; i++) q[i] = (float)((r = r * 1664525u + 1013904223u) >> 8) / (1 << 24) - 0.5f;
    for (int i = 0; i < B * KVH * CTX * HD; i++) {
        k[i] = (float)((r = r * 1664525u + 1013904223u) >> 8) / (1 << 24) - 0.5f;
        v[i] = (float)((r = r * 1664525u + 1013904223u) >> 8) / (1 << 24) - 0.5f;
    }
    /* sequence 0: slots 0..2 cached, then a 10-token prefix, then the suffix; sequence 1: 2 padding slots, a prefix
     * of 5 with a padding hole, the suffix */
    for (int j = 0; j < PAST + T; j++) {
        mask[j] = j < PAST ? 1 : j < PAST + 10 ? 2 : 1;
        mask[CTX + j] = j < 2 ? 0 : j < 7 ? (j == 5 ? 0 : 2) : 1;
    }
    prefix_end[0] = PAST + 10;
    prefix_end[1] = 7;
    attn_args a = {.B = B, .T = T, .n_past = PAST, .n_ctx = CTX, .n_heads = H, .n_kv_heads = KVH, .head_dim = HD,
                   .window = 0, .scale = 0.35f, .n_threads = 1, .prefix_end = prefix_end};
    attention_f32(o1, q, k, v, mask, &a, sc);
    attention_f32_gemm(o2, q, k, v, mask, &a, S, T);
    float d1 = 0, d2 = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++) {
                const int i = PAST + t;
                const float *qr = q + (((size_t)b * T + t) * H + h) * HD;
                double w[CTX], sum = 0, mx = -1e30;
                for (int j = 0; j < PAST + T; j++) {
                    const uint8_t mj = mask[b * CTX + j];
                    w[j] = -1e30;
                    if (!mj || (j > i && mj != 2)) continue;
                    double dot = 0;
                    for (int e = 0; e < HD; e++) dot += (double)qr[e] * k[((size_t)b * CTX + j) * HD + e];
                    w[j] = dot * 0.35;
                    if (w[j] > mx) mx = w[j];
                }
                for (int j = 0; j < PAST + T; j++) sum += w[j] > -1e29 ? exp(w[j] - mx) : 0;
                for (int e = 0; e < HD; e++) {
                    double acc = 0;
                    for (int j = 0; j < PAST + T; j++)
                        if (w[j] > -1e29) acc += exp(w[j] - mx) / sum * v[((size_t)b * CTX + j) * HD + e];
                    const size_t at = (((size_t)b * T + t) * H + h) * HD + e;
                    d1 = fmaxf(d1, fabsf(o1[at] - (float)acc));
                    d2 = fmaxf(d2, fabsf(o2[at] - (float)acc));
                }
            }
    printf("    prefix-LM attention: row kernel max|d| %.2g, sgemm kernel %.2g\n", d1, d2);
    CHECK(d1 < 1e-5f && d2 < 1e-5f, "prefix attention differs: %g %g", d1, d2);
    free(q); free(k); free(v); free(o1); free(o2); free(sc); free(S);
}

/* config.json without the nested configs gets transformers' class defaults (PaliGemmaConfig: PaliGemma-3B's SigLIP
 * and Gemma; FuyuConfig: fuyu-8b's Persimmon); an unsupported text model is an error. */
static void test_config_defaults(void) {
    vlmc_error err = {0};
    hf_config c;
    cJSON *j = cJSON_Parse("{\"model_type\": \"paligemma\"}");
    if (CHECK(hf_config_parse(j, "config.json", &c, &err) == VLMC_OK, "%s", err.message)) {
        const hf_text_config *t = &c.text;
        CHECK(!strcmp(t->model_type, "gemma") && t->hidden_size == 2048 && t->num_hidden_layers == 18 &&
                  t->num_attention_heads == 8 && t->num_key_value_heads == 1 && t->head_dim == 256 &&
                  t->intermediate_size == 16384 && t->vocab_size == 257152 && t->tie_word_embeddings &&
                  !strcmp(t->hidden_act, "gelu_pytorch_tanh") && t->rms_norm_eps == 1e-6,
              "gemma defaults");
        CHECK(!strcmp(c.vision.model_type, "siglip_vision_model") && c.vision.hidden_size == 1152 &&
                  c.vision.num_hidden_layers == 27 && c.vision.patch_size == 14 && c.vision.image_size == 224 &&
                  c.image_token_index == 256000, "siglip defaults");
    }
    cJSON_Delete(j);
    j = cJSON_Parse("{\"model_type\": \"fuyu\"}");
    if (CHECK(hf_config_parse(j, "config.json", &c, &err) == VLMC_OK, "%s", err.message)) {
        const hf_text_config *t = &c.text;
        CHECK(!strcmp(t->model_type, "persimmon") && t->hidden_size == 4096 && t->num_hidden_layers == 36 &&
                  t->num_attention_heads == 64 && t->num_key_value_heads == 64 && t->head_dim == 64 &&
                  t->rope_theta == 25000.0 && t->partial_rotary_factor == 0.5 && t->layer_norm_eps == 1e-5 &&
                  t->qk_layernorm && !strcmp(t->hidden_act, "relu2") && !t->tie_word_embeddings,
              "persimmon defaults");
        CHECK(c.vision.patch_size == 30 && c.vision.num_channels == 3 && c.vision.image_size == 300 &&
                  c.image_token_index == 71011, "fuyu defaults");
    }
    cJSON_Delete(j);
    j = cJSON_Parse("{\"model_type\": \"paligemma\", \"text_config\": {\"model_type\": \"gemma2\"}}");
    CHECK(hf_config_parse(j, "config.json", &c, &err) == VLMC_ERR_UNSUPPORTED && strstr(err.message, "gemma2"),
          "paligemma 2: %s", err.message);
    cJSON_Delete(j);
}

/* Inputs these families cannot use are errors naming the problem. */
static void test_errors(void) {
    char fuyu[1024], pali[1024], ref[1100], in[1200], out[1200];
    if (!ref_dir("fuyu", fuyu, sizeof fuyu) || !ref_dir("paligemma", pali, sizeof pali)) return;
    snprintf(out, sizeof out, "%s/out_err", test_tmpdir());
    vlmc_error err = {0};
    array_set r = {0}, pr = {0};
    snprintf(ref, sizeof ref, "%s/reference", fuyu);
    if (!CHECK(arrays_read_dir(ref, 1, &r, &err) == VLMC_OK, "%s", err.message)) return;
    snprintf(ref, sizeof ref, "%s/reference", pali);
    if (!CHECK(arrays_read_dir(ref, 1, &pr, &err) == VLMC_OK, "%s", err.message)) goto done;
    /* fuyu given pixel_values */
    if (write_inputs(&r, &fuyu_case, array_set_find(&pr, "pixel_values"), in, sizeof in))
        CHECK(vlmc_dump(fuyu, in, out, 0, 0, &err) == VLMC_ERR_UNSUPPORTED && strstr(err.message, "pixel_values"),
              "pixel_values to fuyu: %s", err.message);
    /* a patch index past the patches */
    named_array *ix = array_set_find(&r, "image_patches_indices");
    if (CHECK(ix, "indices")) {
        ((int32_t *)ix->data)[3] = 24;
        if (write_inputs(&r, &fuyu_case, NULL, in, sizeof in))
            CHECK(vlmc_dump(fuyu, in, out, 0, 0, &err) == VLMC_ERR_FORMAT && strstr(err.message, "image_patches_indices"),
                  "index 24 of 24 patches: %s", err.message);
    }
    /* paligemma: --grads (no training graph), token_type_ids outside {0, 1} */
    if (write_inputs(&pr, &paligemma_train_case, NULL, in, sizeof in))
        CHECK(vlmc_dump(pali, in, out, 0, 1, &err) == VLMC_ERR_UNSUPPORTED && strstr(err.message, "--grads"),
              "--grads on paligemma: %s", err.message);
    named_array *tt = array_set_find(&pr, "train_token_type_ids");
    if (CHECK(tt, "token types")) {
        ((int32_t *)tt->data)[0] = 2;
        if (write_inputs(&pr, &paligemma_train_case, NULL, in, sizeof in))
            CHECK(vlmc_dump(pali, in, out, 0, 0, &err) == VLMC_ERR_FORMAT && strstr(err.message, "token_type_ids"),
                  "token type 2: %s", err.message);
    }
done:
    array_set_free(&r);
    array_set_free(&pr);
}

int main(void) {
    tests_begin("paligemma_fuyu");
    TEST_RUN(test_paligemma);
    TEST_RUN(test_paligemma_train);
    TEST_RUN(test_fuyu);
    TEST_RUN(test_fuyu_patchify);
    TEST_RUN(test_processors);
    TEST_RUN(test_paligemma_session);
    TEST_RUN(test_fuyu_session);
    TEST_RUN(test_prefix_attention);
    TEST_RUN(test_config_defaults);
    TEST_RUN(test_errors);
    return tests_end();
}
