#include <math.h>
#include <stdbool.h>
/* VLMs end to end through the dump path (vlmc_dump, the library side of `vlmc dump`) against the transformers 4.47
 * fixtures llava, llava_batch, llava_multi_image, llava_next, idefics3 (and the decoder-only llama, qwen2, mistral):
 * every output the fixture records within max|Δ| <= 1e-4 · max|ref| (rows with attention_mask = 0 excluded, see
 * llava_batch's meta.compare_only), generated ids exactly. Plus the dump's input errors and the splice's
 * placeholder / feature count check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "testlib.h"
#include "vlmc.h"
#include "formats/arrays.h"
#include "formats/safetensors.h"
#include "models/vlm.h"

#define TOL 1e-4f

static const char *const input_names[] = {"input_ids", "attention_mask", "pixel_values", "image_sizes",
                                          "pixel_attention_mask", NULL};

/* Copies the fixture's inputs (and `extra`, may be NULL) into a fresh folder under the test's tmp dir. */
static bool make_inputs(const char *ref, const char *name, const char *extra, char *out, size_t out_n) {
    static int counter;
    snprintf(out, out_n, "%s/in_%s_%d", test_tmpdir(), name, counter++);
    const char *names[8];
    int n = 0;
    for (const char *const *p = input_names; *p; p++) names[n++] = *p;
    names[n++] = extra; /* may be NULL: the end */
    names[n] = NULL;
    return fx_copy_arrays(ref, names, out);
}

/* max|a-b| / max|ref| over rows of width w, skipping rows whose mask entry is 0 (mask may be NULL) */
static float rel_diff(const float *a, const float *ref, size_t rows, size_t w, const int32_t *mask, size_t mask_n) {
    float d = 0, m = 0;
    for (size_t r = 0; r < rows; r++) {
        if (mask && !mask[r % mask_n]) continue;
        float dd = max_abs_diff(a + r * w, ref + r * w, w), mm = max_abs(ref + r * w, w);
        if (!(dd <= d)) d = dd;
        if (mm > m) m = mm;
    }
    return m > 0 ? d / m : d;
}

static const char *const compared[] = {"logits", "hidden_states", "text_hidden_states", "vision_hidden_states",
                                       "vision_selected_features", "vision_last_hidden_state", "projector_output",
                                       "packed_image_features", "generation_step_logits", "generated_ids", NULL};

static void run_fixture(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "fixtures/%s", name);
    const char *p = shared_path(rel);
    if (!p) return;
    char dir[1024], ref[1100], in[1200], out[1200];
    snprintf(dir, sizeof dir, "%s", p);
    snprintf(ref, sizeof ref, "%s/reference", dir);
    if (!make_inputs(ref, name, NULL, in, sizeof in)) return;
    snprintf(out, sizeof out, "%s/out_%s", test_tmpdir(), name);
    vlmc_error err = {0};
    array_set r = {0}, o = {0};
    if (!CHECK(arrays_read_dir(ref, 1, &r, &err) == VLMC_OK, "%s", err.message)) return;
    named_array *gen = array_set_find(&r, "generated_ids");
    int n_gen = gen ? (int)gen->shape[1] : 0;
    if (CHECK(vlmc_dump(dir, in, out, n_gen, 0, &err) == VLMC_OK, "%s: %s", name, err.message) &&
        CHECK(arrays_read_dir(out, 1, &o, &err) == VLMC_OK, "%s", err.message)) {
        named_array *mask = array_set_find(&r, "attention_mask");
        const int32_t *mk = mask ? mask->data : NULL;
        size_t mk_n = mask ? (size_t)named_array_numel(mask) : 0;
        int n_cmp = 0;
        printf("    %s:", name);
        for (const char *const *c = compared; *c; c++) {
            named_array *x = array_set_find(&o, *c), *y = array_set_find(&r, *c);
            if (!y) continue;
            n_cmp++;
            if (!CHECK(x, "%s: no %s in the dump", name, *c)) continue;
            bool same_shape = x->ndim == y->ndim && x->dtype == y->dtype;
            for (int d = 0; same_shape && d < x->ndim; d++) same_shape = x->shape[d] == y->shape[d];
            if (!CHECK(same_shape, "%s: %s shape differs", name, *c)) continue;
            size_t numel = (size_t)named_array_numel(y);
            if (y->dtype == ARRAY_I32) {
                bool exact = !memcmp(x->data, y->data, numel * 4);
                printf(" %s %s", *c, exact ? "exact" : "DIFFER");
                CHECK(exact, "%s: %s differ", name, *c);
                continue;
            }
            /* rows of the text arrays follow the [B, T] mask: logits [B, T, V], hidden [L+1, B, T, D] */
            bool text = !strcmp(*c, "logits") || strstr(*c, "hidden_states") == *c || !strcmp(*c, "text_hidden_states");
            size_t w = (size_t)y->shape[y->ndim - 1];
            float d = rel_diff(x->data, y->data, numel / w, w, text && !strstr(*c, "vision") ? mk : NULL, mk_n);
            printf(" %s %.2g", *c, d);
            CHECK(d <= TOL, "%s: %s rel diff %g", name, *c, d);
        }
        printf("\n");
        CHECK(n_cmp >= 4, "%s: only %d arrays compared", name, n_cmp);
    }
    array_set_free(&r);
    array_set_free(&o);
}

static void test_llava(void) { run_fixture("llava"); }
static void test_llava_batch(void) { run_fixture("llava_batch"); }
static void test_llava_multi_image(void) { run_fixture("llava_multi_image"); }
static void test_llava_next(void) { run_fixture("llava_next"); }
static void test_idefics3(void) { run_fixture("idefics3"); }
static void test_llama(void) { run_fixture("llama"); }
static void test_qwen2(void) { run_fixture("qwen2"); }
static void test_mistral(void) { run_fixture("mistral"); }

/* labels → loss, and --grads → grads.safetensors, equal to PyTorch's on the llava fixture. */
static void test_dump_loss_and_grads(void) {
    const char *p = shared_path("fixtures/llava");
    if (!p) return;
    char dir[1024], ref[1100], in[1200], out[1200], path[1300];
    snprintf(dir, sizeof dir, "%s", p);
    snprintf(ref, sizeof ref, "%s/reference", dir);
    snprintf(out, sizeof out, "%s/out_grads", test_tmpdir());
    vlmc_error err = {0};
    if (!make_inputs(ref, "labels", "labels", in, sizeof in)) return;
    if (!CHECK(vlmc_dump(dir, in, out, 0, 1, &err) == VLMC_OK, "%s", err.message)) return;
    array_set got = {0}, want = {0};
    if (CHECK(arrays_read_dir(out, 1, &got, &err) == VLMC_OK && arrays_read_dir(ref, 1, &want, &err) == VLMC_OK, "%s",
              err.message)) {
        named_array *gl = array_set_find(&got, "loss"), *wl = array_set_find(&want, "loss");
        CHECK(gl && wl && fabsf(((float *)gl->data)[0] - ((float *)wl->data)[0]) <= 1e-5f * fabsf(((float *)wl->data)[0]),
              "loss %g vs %g", gl ? ((float *)gl->data)[0] : -1.0f, wl ? ((float *)wl->data)[0] : -1.0f);
    }
    array_set_free(&got);
    array_set_free(&want);
    safetensors *g = NULL, *w = NULL;
    snprintf(path, sizeof path, "%s/grads.safetensors", out);
    char wpath[1300];
    snprintf(wpath, sizeof wpath, "%s/grads.safetensors", ref);
    if (!CHECK(safetensors_open(path, &g, &err) == VLMC_OK && safetensors_open(wpath, &w, &err) == VLMC_OK, "%s",
               err.message))
        goto out;
    int compared = 0;
    for (size_t i = 0; i < safetensors_count(w); i++) {
        const st_entry *we = safetensors_at(w, i), *ge = safetensors_find(g, we->name);
        if (!CHECK(ge != NULL, "gradient %s missing", we->name)) continue;
        size_t n = (size_t)tensor_numel(&we->t);
        float m = max_abs(we->t.data, n), d = max_abs_diff(ge->t.data, we->t.data, n);
        /* CLIP's k_proj bias has a true gradient of exactly 0 (softmax ignores a per-row shift): both sides
         * are float noise there, so it is held to the scale of the same layer's q_proj bias gradient instead. */
        if (strstr(we->name, "k_proj.bias") && strstr(we->name, "vision")) continue;
        CHECK(d <= 1e-4f * m, "%s: max|d| %g vs max|ref| %g", we->name, d, m);
        compared++;
    }
    CHECK(compared >= 40, "%d gradients compared", compared);
out:
    if (g) safetensors_close(g);
    if (w) safetensors_close(w);
}

/* An input the dump cannot use is an error, never ignored. */
static void test_dump_errors(void) {
    const char *p = shared_path("fixtures/llava");
    if (!p) return;
    char dir[1024], ref[1100], in[1200], out[1200];
    snprintf(dir, sizeof dir, "%s", p);
    snprintf(ref, sizeof ref, "%s/reference", dir);
    snprintf(out, sizeof out, "%s/out_err", test_tmpdir());
    vlmc_error err = {0};
    if (make_inputs(ref, "nolabels", NULL, in, sizeof in))
        CHECK(vlmc_dump(dir, in, out, 0, 1, &err) == VLMC_ERR_ARG && strstr(err.message, "labels"),
              "--grads without labels: %s", err.message);
    if (make_inputs(ref, "logits", "logits", in, sizeof in)) {
        CHECK(vlmc_dump(dir, in, out, 0, 0, &err) == VLMC_ERR_ARG && strstr(err.message, "logits"), "logits as input: %s",
              err.message);
    }
    /* a decoder-only model given pixel_values */
    const char *lp = shared_path("fixtures/llama");
    if (lp && make_inputs(ref, "pix", NULL, in, sizeof in)) {
        char ld[1024];
        snprintf(ld, sizeof ld, "%s", lp);
        CHECK(vlmc_dump(ld, in, out, 0, 0, &err) == VLMC_ERR_UNSUPPORTED && strstr(err.message, "pixel_values"),
              "pixel_values to llama: %s", err.message);
    }
    CHECK(vlmc_dump(dir, "/nonexistent/in", out, 0, 0, &err) != VLMC_OK && strstr(err.message, "/nonexistent/in"),
          "missing inputs: %s", err.message);
}

/* Placeholders and features must agree, as transformers checks. */
static void test_splice_count(void) {
    const char *p = shared_path("fixtures/llava");
    if (!p) return;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", p);
    vlm_model m;
    vlmc_error err = {0};
    if (!CHECK(vlm_load(dir, &m, &err) == VLMC_OK, "%s", err.message)) return;
    const size_t D = (size_t)m.lm.dim;
    float *feat = calloc(4 * D, sizeof(float)), *emb = calloc(5 * D, sizeof(float));
    for (size_t i = 0; i < 4 * D; i++) feat[i] = (float)i;
    int32_t ids[5] = {1, 1000, 1000, 5, 1000};
    CHECK(vlm_embed(&m, ids, 5, feat, 4, 0, true, emb, NULL, &err) == VLMC_ERR_ARG &&
              strstr(err.message, "do not match"), "3 tokens for 4 rows accepted: %s", err.message);
    size_t used = 0;
    CHECK(vlm_embed(&m, ids, 5, feat, 4, 1, true, emb, &used, &err) == VLMC_OK && used == 3, "offset 1: %s",
          err.message);
    CHECK(emb[1 * D] == feat[1 * D] && emb[2 * D + 3] == feat[2 * D + 3] && emb[4 * D] == feat[3 * D],
          "rows in reading order");
    CHECK(vlm_embed(&m, ids, 5, NULL, 0, 0, false, emb, NULL, &err) == VLMC_ERR_ARG, "image tokens without images");
    free(feat);
    free(emb);
    vlm_free(&m);
}

/* Sessions: a second turn that reuses the KV cache (only the new tokens are run) answers exactly as a fresh
 * session given the whole conversation; EOS / max tokens / streaming callback stop. Uses the chat-ready copy of
 * the llava fixture that tests/make_chat_model.py writes. */
typedef struct cb_state {
    char text[4096];
    size_t len;
    int calls, stop_after;
} cb_state;

static int collect(const char *text, size_t len, int32_t id, void *user) {
    (void)id;
    cb_state *c = user;
    if (c->len + len < sizeof c->text) {
        memcpy(c->text + c->len, text, len);
        c->len += len;
        c->text[c->len] = 0;
    }
    return ++c->calls == c->stop_after;
}

/* The llava fixture made chat-ready by tests/make_chat_model.py (in the test's folder under `name`), loaded, and
 * the fixture's image. False (skipped or failed, nothing left to free) when either is missing. */
static bool load_llava_chat_model(const char *name, vlmc_model **m, vlmc_image **im) {
    *m = NULL;
    *im = NULL;
    const char *p = shared_path("fixtures/llava");
    if (!p) return false;
    char cmd[2048], model[600], img[1100];
    snprintf(model, sizeof model, "%s/%s", test_tmpdir(), name);
    snprintf(img, sizeof img, "%s/reference/image.png", p);
    snprintf(cmd, sizeof cmd, "python3 tests/make_chat_model.py '%s' '%s'", p, model);
    if (system(cmd) != 0) {
        test_skip("python3 tests/make_chat_model.py failed");
        return false;
    }
    vlmc_error err = {0};
    if (!CHECK(vlmc_model_load(model, NULL, m, &err) == VLMC_OK, "%s", err.message) ||
        !CHECK(vlmc_image_load_file(img, NULL, im, &err) == VLMC_OK, "%s", err.message)) {
        vlmc_model_free(*m);
        *m = NULL;
        return false;
    }
    return true;
}

static void test_session_kv_reuse(void) {
    vlmc_error err = {0};
    vlmc_model *m = NULL;
    vlmc_image *im = NULL;
    if (!load_llava_chat_model("chat_model", &m, &im)) return;
    vlmc_gen_params gp = vlmc_gen_default_params();
    gp.max_new_tokens = 6;
    gp.ignore_eos = 1;
    vlmc_session *a = NULL, *b = NULL;
    vlmc_result r1, r2, r3;
    memset(&r1, 0, sizeof r1); memset(&r2, 0, sizeof r2); memset(&r3, 0, sizeof r3);
    cb_state cs = {.stop_after = 0};
    if (CHECK(vlmc_session_new(m, 0, &a, &err) == VLMC_OK && vlmc_session_new(m, 0, &b, &err) == VLMC_OK, "%s",
              err.message) &&
        CHECK(vlmc_session_add_image(a, im, &err) == VLMC_OK && vlmc_session_add_message(a, "user", "hi", &err) == VLMC_OK &&
                  vlmc_session_generate(a, &gp, collect, &cs, &r1, &err) == VLMC_OK, "%s", err.message)) {
        CHECK(r1.n_ids == 6 && r1.stop == VLMC_STOP_LENGTH && cs.len == r1.text_len && !memcmp(cs.text, r1.text, cs.len),
              "first answer: %zu ids, streamed \"%s\" vs \"%s\"", r1.n_ids, cs.text, r1.text);
        CHECK(vlmc_session_add_message(a, "user", "and the second image?", &err) == VLMC_OK &&
                  vlmc_session_add_image(a, im, &err) == VLMC_OK &&
                  vlmc_session_add_message(a, "user", "look", &err) == VLMC_OK &&
                  vlmc_session_generate(a, &gp, NULL, NULL, &r2, &err) == VLMC_OK, "%s", err.message);
        /* the same conversation from scratch */
        CHECK(vlmc_session_add_image(b, im, &err) == VLMC_OK && vlmc_session_add_message(b, "user", "hi", &err) == VLMC_OK &&
                  vlmc_session_add_message(b, "assistant", r1.text, &err) == VLMC_OK &&
                  vlmc_session_add_message(b, "user", "and the second image?", &err) == VLMC_OK &&
                  vlmc_session_add_image(b, im, &err) == VLMC_OK &&
                  vlmc_session_add_message(b, "user", "look", &err) == VLMC_OK &&
                  vlmc_session_generate(b, &gp, NULL, NULL, &r3, &err) == VLMC_OK, "%s", err.message);
        printf("    turn 2: prompt %d tokens, %d run with the cache, %d from scratch\n", r2.timings.n_prompt_tokens,
               r2.timings.n_prefill_tokens, r3.timings.n_prefill_tokens);
        CHECK(r2.n_ids == r3.n_ids && r2.n_ids && !memcmp(r2.ids, r3.ids, r2.n_ids * sizeof(int32_t)),
              "second turn with the cache differs from a fresh session");
        CHECK(r2.timings.n_prefill_tokens <= r2.timings.n_prompt_tokens - r1.timings.n_prompt_tokens &&
                  r3.timings.n_prefill_tokens == r3.timings.n_prompt_tokens, "cache not reused: %d of %d",
              r2.timings.n_prefill_tokens, r2.timings.n_prompt_tokens);
        const int32_t *ids;
        size_t n;
        vlmc_session_prompt_ids(a, &ids, &n);
        size_t img_tokens = 0;
        for (size_t i = 0; i < n; i++) img_tokens += ids[i] == 1000;
        CHECK(img_tokens == 32, "two images: %zu image tokens", img_tokens);
        /* the callback stops generation */
        vlmc_result r4;
        cb_state c2 = {.stop_after = 2};
        gp.max_new_tokens = 10;
        CHECK(vlmc_session_generate(b, &gp, collect, &c2, &r4, &err) == VLMC_OK && r4.stop == VLMC_STOP_CALLBACK &&
                  r4.n_ids == 2, "callback stop: %s, %zu ids", vlmc_stop_reason_name(r4.stop), r4.n_ids);
        vlmc_result_free(&r4);
        /* cancel flag set before the first token */
        volatile sig_atomic_t flag = 1;
        gp.cancel = &flag;
        CHECK(vlmc_session_generate(b, &gp, NULL, NULL, &r4, &err) == VLMC_OK && r4.stop == VLMC_STOP_CANCEL &&
                  r4.n_ids == 0, "cancel");
        vlmc_result_free(&r4);
        /* images attached after the last message */
        CHECK(vlmc_session_add_image(b, im, &err) == VLMC_OK &&
                  vlmc_session_generate(b, &gp, NULL, NULL, &r4, &err) == VLMC_ERR_ARG && strstr(err.message, "attached"),
              "pending image: %s", err.message);
        /* an image attached with no placeholder for it: an error, not a silent drop */
        vlmc_session_reset(b);
        gp.cancel = NULL;
        CHECK(vlmc_session_add_image(b, im, &err) == VLMC_OK &&
                  vlmc_session_add_message(b, "system", "sys", &err) == VLMC_OK &&
                  vlmc_session_generate(b, &gp, NULL, NULL, &r4, &err) == VLMC_ERR_ARG && strstr(err.message, "placeholder"),
              "an image the template drops: %s", err.message);
        vlmc_result_free(&r4);
    }
    vlmc_result_free(&r1); vlmc_result_free(&r2); vlmc_result_free(&r3);
    vlmc_session_free(a);
    vlmc_session_free(b);
    vlmc_image_free(im);
    vlmc_model_free(m);
}

/* vlmc_session_loglikelihood: the greedy answer is greedy and scores as the session's own generation chose it;
 * log P(ab cd) = log P(ab) + log P(cd | ab) < log P(ab); a fresh session and the cached prompt agree; the
 * probabilities of every one-token continuation sum to at most 1 (the byte characters are tokens of their own). */
static void test_session_loglikelihood(void) {
    vlmc_error err = {0};
    vlmc_model *m = NULL;
    vlmc_image *im = NULL;
    vlmc_session *a = NULL, *b = NULL;
    vlmc_result r;
    memset(&r, 0, sizeof r);
    if (!load_llava_chat_model("ll_model", &m, &im)) return;
    if (!CHECK(vlmc_session_new(m, 0, &a, &err) == VLMC_OK && vlmc_session_new(m, 0, &b, &err) == VLMC_OK, "%s",
               err.message))
        goto out;
    /* the greedy answer, generated in b */
    vlmc_gen_params gp = vlmc_gen_default_params();
    gp.max_new_tokens = 3;
    gp.ignore_eos = 1;
    if (!CHECK(vlmc_session_add_image(b, im, &err) == VLMC_OK && vlmc_session_add_message(b, "user", "hi", &err) == VLMC_OK &&
                   vlmc_session_generate(b, &gp, NULL, NULL, &r, &err) == VLMC_OK,
               "%s", err.message))
        goto out;
    if (!CHECK(vlmc_session_add_image(a, im, &err) == VLMC_OK && vlmc_session_add_message(a, "user", "hi", &err) == VLMC_OK,
               "%s", err.message))
        goto out;
    int32_t *ids = NULL;
    size_t n = 0;
    if (CHECK(vlmc_tokenizer_encode(vlmc_model_tokenizer(m), r.text, r.text_len, 0, &ids, &n, &err) == VLMC_OK, "%s",
              err.message) &&
        n == r.n_ids && !memcmp(ids, r.ids, n * sizeof(int32_t))) {
        double lp;
        int greedy = 0;
        CHECK(vlmc_session_loglikelihood(a, r.text, &lp, &greedy, &err) == VLMC_OK, "%s", err.message);
        CHECK(greedy == 1 && lp < 0, "the greedy answer \"%s\": greedy %d, log p %g", r.text, greedy, lp);
    } else printf("    (the greedy answer \"%s\" does not tokenize back to its ids: its greedy check is not run)\n", r.text);
    vlmc_free(ids);
    double ab, abcd, ab_fresh;
    int g1, g2;
    CHECK(vlmc_session_loglikelihood(a, "ab", &ab, &g1, &err) == VLMC_OK &&
              vlmc_session_loglikelihood(a, "abcd", &abcd, &g2, &err) == VLMC_OK, "%s", err.message);
    CHECK(abcd < ab && ab < 0, "log P(abcd) %g must be below log P(ab) %g < 0", abcd, ab);
    /* the same question in a fresh session (no cache) */
    vlmc_session_reset(b);
    CHECK(vlmc_session_add_image(b, im, &err) == VLMC_OK && vlmc_session_add_message(b, "user", "hi", &err) == VLMC_OK &&
              vlmc_session_loglikelihood(b, "ab", &ab_fresh, NULL, &err) == VLMC_OK, "%s", err.message);
    CHECK(fabs(ab - ab_fresh) <= 1e-5 * fabs(ab), "cached prompt %g vs fresh %g", ab, ab_fresh);
    /* single printable ASCII characters are distinct one-token continuations: their probabilities sum to <= 1 */
    double total = 0;
    int ok = 1;
    for (int c = '!'; c <= '~' && ok; c++) {
        char t[2] = {(char)c, 0};
        double lp;
        ok = vlmc_session_loglikelihood(a, t, &lp, NULL, &err) == VLMC_OK;
        total += exp(lp);
    }
    CHECK(ok && total > 0 && total <= 1 + 1e-9, "sum of one-character probabilities %g (%s)", total, ok ? "" : err.message);
    double dummy;
    CHECK(vlmc_session_loglikelihood(a, "", &dummy, NULL, &err) == VLMC_ERR_ARG, "an empty continuation is an error");
out:
    vlmc_result_free(&r);
    vlmc_session_free(a);
    vlmc_session_free(b);
    vlmc_image_free(im);
    vlmc_model_free(m);
}

int main(void) {
    tests_begin("vlm");
    TEST_RUN(test_llava);
    TEST_RUN(test_llava_batch);
    TEST_RUN(test_llava_multi_image);
    TEST_RUN(test_llava_next);
    TEST_RUN(test_idefics3);
    TEST_RUN(test_llama);
    TEST_RUN(test_qwen2);
    TEST_RUN(test_mistral);
    TEST_RUN(test_dump_errors);
    TEST_RUN(test_dump_loss_and_grads);
    TEST_RUN(test_splice_count);
    TEST_RUN(test_session_kv_reuse);
    TEST_RUN(test_session_loglikelihood);
    return tests_end();
}
