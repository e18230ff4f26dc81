/* DeepSeek-VL (model_type multi_modality) through the dump path against the fixtures made by the original
 * deepseek-ai/DeepSeek-VL code: deepseek_vl (1.3B-style SigLIP + mlp_gelu) and deepseek_vl_hybrid (7B-style SAM-B +
 * SigLIP + low_high_hybrid_split_mlp_gelu). vlmc gets the raw image (image_raw) and preprocesses it itself; every
 * array the fixture stores and vlmc computes (processor images, tower stages, aligner, merged embeddings, decoder
 * states, logits, greedy steps) must be within max|Δ| <= 1e-4 · max|ref|, ids and uint8 images exact. Plus the
 * VLMImageProcessor on the PNG, the pixel_values input path, input errors, and the conv / resampling kernels. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testlib.h"
#include "vlmc.h"
#include "formats/arrays.h"
#include "formats/json.h"
#include "formats/safetensors.h"
#include "kernels/conv.h"
#include "vision/image.h"
#include "vision/processors.h"

#define TOL 1e-4f

static const char *const inputs_raw[] = {"input_ids", "attention_mask", "images_seq_mask", "images_emb_mask",
                                         "image_raw", NULL};
static const char *const inputs_pixels[] = {"input_ids", "attention_mask", "images_seq_mask", "images_emb_mask",
                                            "pixel_values", NULL};

static bool is_in(const char *name, const char *const *list) {
    for (const char *const *p = list; *p; p++)
        if (!strcmp(*p, name)) return true;
    return false;
}

/* Copies the named arrays of ref into a fresh folder; `edit` (may be NULL) may change them first. */
static bool make_inputs(const char *ref, const char *const *names, void (*edit)(array_set *), char *out, size_t out_n) {
    static int counter;
    snprintf(out, out_n, "%s/in_%d", test_tmpdir(), counter++);
    array_set set = {0};
    vlmc_error err = {0};
    if (!CHECK(arrays_read_dir(ref, 1, &set, &err) == VLMC_OK, "%s", err.message)) return false;
    if (edit) edit(&set);
    named_array keep[8];
    int n = 0;
    for (int i = 0; i < set.count && n < 8; i++)
        if (is_in(set.arrays[i].name, names)) {
            keep[n] = set.arrays[i];
            keep[n].file = NULL;
            keep[n].note = NULL;
            n++;
        }
    bool ok = CHECK(arrays_write_dir(out, NULL, NULL, keep, n, &err) == VLMC_OK, "%s", err.message);
    array_set_free(&set);
    return ok;
}

static bool fixture_dirs(const char *name, char *dir, size_t dn, char *ref, size_t rn) {
    char rel[256];
    snprintf(rel, sizeof rel, "fixtures/%s", name);
    const char *p = shared_path(rel);
    if (!p) return false;
    snprintf(dir, dn, "%s", p);
    snprintf(ref, rn, "%s/reference", dir);
    return true;
}

/* Runs the dump on the fixture's inputs and compares every reference array it writes; returns how many. */
static int run_fixture(const char *name, const char *const *inputs, bool print) {
    char dir[1024], ref[1100], in[1200], out[1200];
    if (!fixture_dirs(name, dir, sizeof dir, ref, sizeof ref) || !make_inputs(ref, inputs, NULL, in, sizeof in)) return 0;
    static int counter;
    snprintf(out, sizeof out, "%s/out_%s_%d", test_tmpdir(), name, counter++);
    vlmc_error err = {0};
    array_set r = {0}, o = {0};
    int n_cmp = 0;
    if (!CHECK(arrays_read_dir(ref, 1, &r, &err) == VLMC_OK, "%s", err.message)) return 0;
    named_array *gen = array_set_find(&r, "generated_ids");
    if (CHECK(vlmc_dump(dir, in, out, gen ? (int)gen->shape[1] : 0, 0, &err) == VLMC_OK, "%s: %s", name, err.message) &&
        CHECK(arrays_read_dir(out, 1, &o, &err) == VLMC_OK, "%s", err.message)) {
        if (print) printf("    %s:", name);
        for (int i = 0; i < r.count; i++) {
            const named_array *y = &r.arrays[i], *x = array_set_find(&o, y->name);
            if (is_in(y->name, inputs)) continue;
            if (!x) { /* written only when computed from image_raw */
                CHECK(!strcmp(y->name, "image_raw") || (!strcmp(y->name, "pixel_values") && is_in("pixel_values", inputs)) ||
                          (!strcmp(y->name, "image_resized_padded") && !is_in("image_raw", inputs)),
                      "%s: no %s in the dump", name, y->name);
                continue;
            }
            bool same = x->ndim == y->ndim && x->dtype == y->dtype;
            for (int d = 0; same && d < x->ndim; d++) same = x->shape[d] == y->shape[d];
            if (!CHECK(same, "%s: %s shape or dtype differs", name, y->name)) continue;
            size_t numel = (size_t)named_array_numel(y);
            n_cmp++;
            if (y->dtype != ARRAY_F32) {
                bool exact = !memcmp(x->data, y->data, numel * array_dtype_size(y->dtype));
                if (print) printf(" %s %s", y->name, exact ? "exact" : "DIFFER");
                CHECK(exact, "%s: %s differ", name, y->name);
                continue;
            }
            float m = max_abs(y->data, numel), d = max_abs_diff(x->data, y->data, numel), rel = m > 0 ? d / m : d;
            if (print) printf(" %s %.2g", y->name, rel);
            CHECK(rel <= TOL, "%s: %s rel diff %g", name, y->name, rel);
        }
        if (print) printf("\n");
    }
    array_set_free(&r);
    array_set_free(&o);
    return n_cmp;
}

/* 1.3B: image_resized_padded, pixel_values, siglip_* (5), vision_features, projector_output, inputs_embeds,
 * text_hidden_states, logits, generated_ids, generation_step_logits */
static void test_deepseek_vl(void) {
    int n = run_fixture("deepseek_vl", inputs_raw, true);
    if (shared_dir()) CHECK(n == 14, "%d arrays compared", n);
}

/* 7B hybrid: + high_input, low_resized, low_input, sam_* (9), high/low features, aligner halves */
static void test_deepseek_vl_hybrid(void) {
    int n = run_fixture("deepseek_vl_hybrid", inputs_raw, true);
    if (shared_dir()) CHECK(n == 28, "%d arrays compared", n);
}

/* The reference's pixel_values as the input instead of the raw image. */
static void test_pixel_values_input(void) {
    int n = run_fixture("deepseek_vl", inputs_pixels, false);
    if (shared_dir()) CHECK(n == 12, "%d arrays compared", n);
}

/* VLMImageProcessor on the PNG (decoded as load_image does): the padded uint8 image and pixel_values exact. */
static void check_processor(const char *name) {
    char dir[1024], ref[1100], path[1200];
    if (!fixture_dirs(name, dir, sizeof dir, ref, sizeof ref)) return;
    vlmc_error err = {0};
    cJSON *j = NULL;
    image_proc p;
    rgb_image im = {0};
    proc_output o = {0};
    array_set r = {0};
    snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
    if (!CHECK(json_parse_file(path, 1u << 20, &j, &err) == VLMC_OK && image_proc_from_json(j, path, &p, &err) == VLMC_OK,
               "%s", err.message))
        goto done;
    CHECK(p.kind == PROC_VLM && p.background[0] == 127 && p.background[2] == 127, "%s: VLMImageProcessor, background 127",
          name);
    snprintf(path, sizeof path, "%s/image.png", ref);
    if (!CHECK(image_decode_file(path, NULL, &im, &err) == VLMC_OK, "%s", err.message) ||
        !CHECK(image_proc_run(&p, &im, &o, &err) == VLMC_OK, "%s", err.message) ||
        !CHECK(arrays_read_dir(ref, 1, &r, &err) == VLMC_OK, "%s", err.message))
        goto done;
    const named_array *pv = array_set_find(&r, "pixel_values"), *pad = array_set_find(&r, "image_resized_padded");
    const size_t S = (size_t)o.frame_h, plane = S * S;
    if (!CHECK(pv && pad && o.n_frames == 1 && (int64_t)S == pad->shape[0] && o.frame_w == o.frame_h, "%s: shapes", name))
        goto done;
    CHECK(!memcmp(o.pixel_values, pv->data, 3 * plane * sizeof(float)), "%s: pixel_values differ", name);
    size_t bad = 0;
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++) bad += o.u8[c * plane + i] != ((const uint8_t *)pad->data)[i * 3 + c];
    CHECK(bad == 0, "%s: %zu resized/padded pixel values differ", name, bad);
done:
    proc_output_free(&o);
    rgb_image_free(&im);
    array_set_free(&r);
    cJSON_Delete(j);
}

static void test_processor(void) {
    check_processor("deepseek_vl");
    check_processor("deepseek_vl_hybrid");
}

static void drop_one_emb(array_set *s) {
    named_array *a = array_set_find(s, "images_emb_mask");
    if (a) ((uint8_t *)a->data)[0] = 0;
}

static void flatten_raw(array_set *s) {
    named_array *a = array_set_find(s, "image_raw");
    if (!a) return;
    a->shape[1] *= a->shape[2];
    a->ndim = 2;
}

static void int_seq_mask(array_set *s) {
    named_array *a = array_set_find(s, "images_seq_mask");
    if (!a) return;
    int32_t *d = malloc((size_t)named_array_numel(a) * sizeof(int32_t));
    for (int64_t i = 0; d && i < named_array_numel(a); i++) d[i] = ((uint8_t *)a->data)[i];
    if (!d) return;
    free(a->data);
    a->data = d;
    a->dtype = ARRAY_I32;
}

/* Bad inputs are errors naming the problem. */
static void test_errors(void) {
    char dir[1024], ref[1100], in[1200], out[1200];
    if (!fixture_dirs("deepseek_vl", dir, sizeof dir, ref, sizeof ref)) return;
    snprintf(out, sizeof out, "%s/out_err", test_tmpdir());
    vlmc_error err = {0};
    if (make_inputs(ref, inputs_raw, drop_one_emb, in, sizeof in))
        CHECK(vlmc_dump(dir, in, out, 0, 0, &err) == VLMC_ERR_ARG && strstr(err.message, "images_emb_mask"),
              "mask counts differ: %s", err.message);
    if (make_inputs(ref, inputs_raw, flatten_raw, in, sizeof in))
        CHECK(vlmc_dump(dir, in, out, 0, 0, &err) == VLMC_ERR_FORMAT && strstr(err.message, "image_raw"),
              "2-D image_raw: %s", err.message);
    if (make_inputs(ref, inputs_raw, int_seq_mask, in, sizeof in))
        CHECK(vlmc_dump(dir, in, out, 0, 0, &err) == VLMC_ERR_FORMAT && strstr(err.message, "uint8"),
              "int32 images_seq_mask: %s", err.message);
    /* the masks mean nothing to a LLaVA model */
    char ldir[1024], lref[1100];
    if (fixture_dirs("llava", ldir, sizeof ldir, lref, sizeof lref) &&
        make_inputs(ref, (const char *const[]){"input_ids", "images_seq_mask", NULL}, NULL, in, sizeof in))
        CHECK(vlmc_dump(ldir, in, out, 0, 0, &err) == VLMC_ERR_UNSUPPORTED && strstr(err.message, "images_seq_mask"),
              "images_seq_mask to llava: %s", err.message);
}

static bool mkdir_p(const char *d) { return mkdir(d, 0755) == 0 || errno == EEXIST; }

static bool copy_file(const char *from_dir, const char *to_dir, const char *name) {
    char a[1300], b[1300];
    snprintf(a, sizeof a, "%s/%s", from_dir, name);
    snprintf(b, sizeof b, "%s/%s", to_dir, name);
    size_t n = 0;
    char *text = test_read_file(a, &n);
    FILE *f = text ? fopen(b, "wb") : NULL;
    bool ok = f && fwrite(text, 1, n, f) == n;
    if (f) ok &= fclose(f) == 0;
    free(text);
    return CHECK(ok, "copy %s", a);
}

/* The published 7B checkpoint is BF16: the hybrid fixture with every tensor rounded to BF16 must give what the same
 * rounded weights give as F32 (towers, aligner and decoder read BF16 in place or through f32 scratch). */
static void test_bf16_weights(void) {
    char dir[1024], ref[1100], in[1200];
    if (!fixture_dirs("deepseek_vl_hybrid", dir, sizeof dir, ref, sizeof ref) ||
        !make_inputs(ref, inputs_raw, NULL, in, sizeof in))
        return;
    char st_path[1200], m16[1200], m32[1200], p16[1300], p32[1300], o16[1300], o32[1300];
    snprintf(st_path, sizeof st_path, "%s/model.safetensors", dir);
    snprintf(m16, sizeof m16, "%s/bf16", test_tmpdir());
    snprintf(m32, sizeof m32, "%s/bf16_as_f32", test_tmpdir());
    vlmc_error err = {0};
    safetensors *st = NULL;
    if (!CHECK(safetensors_open(st_path, &st, &err) == VLMC_OK, "%s", err.message)) return;
    const size_t n = safetensors_count(st);
    const char **names = calloc(n, sizeof *names);
    tensor *t16 = calloc(n, sizeof *t16), *t32 = calloc(n, sizeof *t32);
    void **bufs = calloc(2 * n, sizeof *bufs);
    bool ok = names && t16 && t32 && bufs;
    for (size_t i = 0; ok && i < n; i++) {
        const st_entry *e = safetensors_at(st, i);
        size_t k = (size_t)tensor_numel(&e->t);
        uint16_t *h = malloc((k ? k : 1) * 2);
        float *f = malloc((k ? k : 1) * 4);
        bufs[2 * i] = h;
        bufs[2 * i + 1] = f;
        if (!(ok = h && f && e->t.type == DT_F32)) break;
        for (size_t j = 0; j < k; j++) {
            h[j] = f32_to_bf16(((const float *)e->t.data)[j]);
            f[j] = bf16_to_f32(h[j]);
        }
        names[i] = e->name;
        t16[i] = tensor_view(DT_BF16, h, e->t.ndim, e->t.shape);
        t32[i] = tensor_view(DT_F32, f, e->t.ndim, e->t.shape);
    }
    snprintf(p16, sizeof p16, "%s/model.safetensors", m16);
    snprintf(p32, sizeof p32, "%s/model.safetensors", m32);
    ok = CHECK(ok, "bf16 conversion") && CHECK(mkdir_p(m16) && mkdir_p(m32), "mkdir") &&
         CHECK(safetensors_write(p16, n, names, t16, NULL, &err) == VLMC_OK &&
                   safetensors_write(p32, n, names, t32, NULL, &err) == VLMC_OK,
               "%s", err.message) &&
         copy_file(dir, m16, "config.json") && copy_file(dir, m16, "preprocessor_config.json") &&
         copy_file(dir, m32, "config.json") && copy_file(dir, m32, "preprocessor_config.json");
    snprintf(o16, sizeof o16, "%s/out_bf16", test_tmpdir());
    snprintf(o32, sizeof o32, "%s/out_bf16_as_f32", test_tmpdir());
    array_set a = {0}, b = {0};
    if (ok && CHECK(vlmc_dump(m16, in, o16, 0, 0, &err) == VLMC_OK, "bf16: %s", err.message) &&
        CHECK(vlmc_dump(m32, in, o32, 0, 0, &err) == VLMC_OK, "f32: %s", err.message) &&
        CHECK(arrays_read_dir(o16, 1, &a, &err) == VLMC_OK && arrays_read_dir(o32, 1, &b, &err) == VLMC_OK, "%s",
              err.message)) {
        static const char *const cmp[] = {"sam_output", "low_features", "projector_output", "logits", NULL};
        printf("    bf16 vs f32 of the same values:");
        for (const char *const *c = cmp; *c; c++) {
            const named_array *x = array_set_find(&a, *c), *y = array_set_find(&b, *c);
            if (!CHECK(x && y && named_array_numel(x) == named_array_numel(y), "%s missing", *c)) continue;
            size_t k = (size_t)named_array_numel(y);
            float rel = max_abs_diff(x->data, y->data, k) / max_abs(y->data, k);
            printf(" %s %.2g", *c, rel);
            CHECK(rel <= 1e-5f, "%s differs by %g", *c, rel);
        }
        printf("\n");
    }
    array_set_free(&a);
    array_set_free(&b);
    for (size_t i = 0; bufs && i < 2 * n; i++) free(bufs[i]);
    free(bufs);
    free(names);
    free(t16);
    free(t32);
    safetensors_close(st);
}

/* im2col + GEMM against a direct convolution; the resampling kernels on simple maps. */
static void test_kernels(void) {
    enum { H = 7, W = 5, C = 3, O = 4, K = 3 };
    float in[H * W * C], w[O * C * K * K];
    for (int i = 0; i < H * W * C; i++) in[i] = sinf(0.37f * i);
    for (int i = 0; i < O * C * K * K; i++) w[i] = cosf(0.11f * i);
    const int stride = 2, pad = 1, OH = conv_out_size(H, K, stride, pad), OW = conv_out_size(W, K, stride, pad);
    float col[4 * 3 * C * K * K];
    CHECK(OH == 4 && OW == 3, "output %d×%d", OH, OW);
    im2col_nhwc(col, in, H, W, C, K, stride, pad);
    float worst = 0;
    for (int oy = 0; oy < OH; oy++)
        for (int ox = 0; ox < OW; ox++)
            for (int o = 0; o < O; o++) {
                double direct = 0, gemm = 0;
                for (int c = 0; c < C; c++)
                    for (int ky = 0; ky < K; ky++)
                        for (int kx = 0; kx < K; kx++) {
                            int y = oy * stride - pad + ky, x = ox * stride - pad + kx;
                            float wv = w[((o * C + c) * K + ky) * K + kx];
                            if (y >= 0 && y < H && x >= 0 && x < W) direct += wv * in[(y * W + x) * C + c];
                            gemm += wv * col[(oy * OW + ox) * C * K * K + (c * K + ky) * K + kx];
                        }
                worst = fmaxf(worst, (float)fabs(direct - gemm));
            }
    CHECK(worst < 1e-5f, "im2col conv differs by %g", worst);
    /* bilinear to the same size is the identity; the antialiased resize keeps a constant map constant */
    float same[H * W * C], cst[2 * 40 * 30], small[2 * 9 * 7], tmp[2 * 40 * 7];
    interp_bilinear_nhwc(same, H, W, in, H, W, C);
    CHECK(max_abs_diff(same, in, H * W * C) == 0, "bilinear identity");
    for (int i = 0; i < 2 * 40 * 30; i++) cst[i] = i < 40 * 30 ? 0.25f : -2.0f;
    CHECK(resize_bilinear_aa_nchw(small, 9, 7, cst, 2, 40, 30, tmp) == 0, "aa resize");
    float dev = 0;
    for (int i = 0; i < 2 * 9 * 7; i++) dev = fmaxf(dev, fabsf(small[i] - (i < 63 ? 0.25f : -2.0f)));
    CHECK(dev < 1e-6f, "constant map changed by %g", dev);
    CHECK(resize_bilinear_aa_nchw(small, 1, 1, cst, 1, 40, 30 * 100, tmp) == -1, "downscale limit");
}

int main(void) {
    tests_begin("deepseek_vl");
    TEST_RUN(test_kernels);
    TEST_RUN(test_processor);
    TEST_RUN(test_deepseek_vl);
    TEST_RUN(test_deepseek_vl_hybrid);
    TEST_RUN(test_pixel_values_input);
    TEST_RUN(test_errors);
    TEST_RUN(test_bf16_weights);
    return tests_end();
}
