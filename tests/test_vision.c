/* Vision encoders and projectors against transformers 4.47 fixtures (../shared/fixtures), plus the error paths
 * and the f16 / bf16 weight paths. Tolerance: max|Δ| <= 1e-4 · max|reference|. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "vision_fixture.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "kernels/fastexp.h"
#include "kernels/gelu.h"
#include "kernels/layernorm.h"
#include "models/projector.h"
#include "models/vit.h"

#define REL 1e-4f

typedef struct fx {
    char *dir;
    hf_config cfg;
    safetensors *st;
} fx;

static bool fx_open(const char *name, fx *f) {
    memset(f, 0, sizeof *f);
    f->dir = vfx_dir(name);
    if (!f->dir) return false;
    vlmc_error err = {0};
    if (!CHECK(hf_config_load(f->dir, &f->cfg, &err) == VLMC_OK, "%s", err.message) ||
        !CHECK(safetensors_open(f->dir, &f->st, &err) == VLMC_OK, "%s", err.message)) {
        free(f->dir);
        f->dir = NULL;
        return false;
    }
    return true;
}

static void fx_close(fx *f) {
    if (f->st) safetensors_close(f->st);
    free(f->dir);
}

static float *falloc(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

/* ---- standalone towers ---------------------------------------------------------------------------------- */

static void test_clip_vision(void) {
    fx f;
    if (!fx_open("clip_vision", &f)) return;
    vlmc_error err = {0};
    vit_model m;
    vfx_array px, hs, last, pool;
    if (CHECK(vit_load(f.st, "vision_model.", &f.cfg.vision, &m, &err) == VLMC_OK, "%s", err.message)) {
        if (vfx_load(f.dir, "pixel_values", &px) && vfx_load(f.dir, "hidden_states", &hs) &&
            vfx_load(f.dir, "last_hidden_state", &last) && vfx_load(f.dir, "pooler_output", &pool)) {
            int n = (int)px.shape[0], S = (int)px.shape[2], T = vit_tokens(&m, S, S);
            CHECK(T == 17 && hs.shape[2] == T, "tokens %d", T);
            float *h = falloc(hs.numel), *l = falloc(last.numel), *p = falloc(pool.numel);
            vit_outputs o = {.hidden_states = h, .last_hidden_state = l, .pooler_output = p};
            if (CHECK(vit_encode(&m, px.data, n, S, S, NULL, &o, &err) == VLMC_OK, "%s", err.message)) {
                vfx_compare("clip hidden_states", h, &hs, REL);
                vfx_compare("clip last_hidden_state", l, &last, REL);
                vfx_compare("clip pooler_output", p, &pool, REL);
            }
            free(h); free(l); free(p);
        }
        vfx_free(&px); vfx_free(&hs); vfx_free(&last); vfx_free(&pool);
        vit_free(&m);
    }
    fx_close(&f);
}

static void test_siglip_vision(void) {
    fx f;
    if (!fx_open("siglip_vision", &f)) return;
    vlmc_error err = {0};
    vit_model m;
    vfx_array px, hs, last, pool;
    if (CHECK(vit_load(f.st, "vision_model.", &f.cfg.vision, &m, &err) == VLMC_OK, "%s", err.message)) {
        CHECK(m.has_head, "SigLIP head loaded");
        if (vfx_load(f.dir, "pixel_values", &px) && vfx_load(f.dir, "hidden_states", &hs) &&
            vfx_load(f.dir, "last_hidden_state", &last) && vfx_load(f.dir, "pooler_output", &pool)) {
            int n = (int)px.shape[0], S = (int)px.shape[2];
            CHECK(vit_tokens(&m, S, S) == 16, "tokens");
            float *h = falloc(hs.numel), *l = falloc(last.numel), *p = falloc(pool.numel);
            vit_outputs o = {.hidden_states = h, .last_hidden_state = l, .pooler_output = p};
            if (CHECK(vit_encode(&m, px.data, n, S, S, NULL, &o, &err) == VLMC_OK, "%s", err.message)) {
                vfx_compare("siglip hidden_states", h, &hs, REL);
                vfx_compare("siglip last_hidden_state", l, &last, REL);
                vfx_compare("siglip pooler_output", p, &pool, REL);
            }
            free(h); free(l); free(p);
        }
        vfx_free(&px); vfx_free(&hs); vfx_free(&last); vfx_free(&pool);
        vit_free(&m);
    }
    fx_close(&f);
}

/* ---- LLaVA ------------------------------------------------------------------------------------------------ */

/* Encodes pixel_values [n, 3, S, S] through a LLaVA fixture's tower and projector; compares what the fixture has. */
static void llava_case(const char *name) {
    fx f;
    if (!fx_open(name, &f)) return;
    vlmc_error err = {0};
    vit_model m;
    projector pj;
    if (!CHECK(vlm_vision_load(f.st, &f.cfg, &m, &pj, &err) == VLMC_OK, "%s", err.message)) {
        fx_close(&f);
        return;
    }
    vfx_array px, hs = {0}, sel = {0}, proj;
    if (vfx_load(f.dir, "pixel_values", &px) && vfx_load(f.dir, "projector_output", &proj)) {
        int n = (int)px.shape[0], S = (int)px.shape[2], T = vit_tokens(&m, S, S);
        bool has_hs = strcmp(name, "llava") == 0;
        if (has_hs && !(vfx_load(f.dir, "vision_hidden_states", &hs) && vfx_load(f.dir, "vision_selected_features", &sel)))
            has_hs = false;
        vit_outputs o = {0};
        if (n > 1) m.batch_tokens = T; /* one tile per batch: exercises the batching */
        float *h = has_hs ? falloc(hs.numel) : NULL;
        o.hidden_states = h;
        int st_tokens, st_feat;
        CHECK(vit_select_from_config(&f.cfg, NULL, &o, &err) == VLMC_OK, "%s", err.message);
        vit_selected_shape(&m, &o, S, S, &st_tokens, &st_feat);
        CHECK(st_tokens == T - 1 && st_feat == m.D, "selected shape %d×%d", st_tokens, st_feat);
        float *s = falloc((size_t)n * st_tokens * st_feat), *p = falloc(proj.numel);
        o.selected = s;
        if (CHECK(vit_encode(&m, px.data, n, S, S, NULL, &o, &err) == VLMC_OK, "%s", err.message) &&
            CHECK(projector_forward(&pj, s, n, st_tokens, st_feat, p, &err) == VLMC_OK, "%s", err.message)) {
            char what[64];
            if (has_hs) {
                snprintf(what, sizeof what, "%s vision_hidden_states", name);
                vfx_compare(what, h, &hs, REL);
                snprintf(what, sizeof what, "%s selected_features", name);
                vfx_compare(what, s, &sel, REL);
            }
            snprintf(what, sizeof what, "%s projector_output", name);
            vfx_compare(what, p, &proj, REL);
        }
        free(h); free(s); free(p);
    }
    vfx_free(&px); vfx_free(&hs); vfx_free(&sel); vfx_free(&proj);
    projector_free(&pj);
    vit_free(&m);
    fx_close(&f);
}

static void test_llava(void) { llava_case("llava"); }
static void test_llava_batch(void) { llava_case("llava_batch"); }
static void test_llava_multi_image(void) { llava_case("llava_multi_image"); }

/* ---- LLaVA-NeXT ------------------------------------------------------------------------------------------- */

static void test_llava_next(void) {
    fx f;
    if (!fx_open("llava_next", &f)) return;
    vlmc_error err = {0};
    vit_model m;
    projector pj;
    if (!CHECK(vlm_vision_load(f.st, &f.cfg, &m, &pj, &err) == VLMC_OK, "%s", err.message)) {
        fx_close(&f);
        return;
    }
    vfx_array px, sizes, hs, sel, proj, packed;
    if (vfx_load(f.dir, "pixel_values", &px) && vfx_load(f.dir, "image_sizes", &sizes) &&
        vfx_load(f.dir, "vision_hidden_states", &hs) && vfx_load(f.dir, "vision_selected_features", &sel) &&
        vfx_load(f.dir, "projector_output", &proj) && vfx_load(f.dir, "packed_image_features", &packed)) {
        const int32_t *isz = sizes.data;
        int ih = isz[0], iw = isz[1], n = (int)px.shape[1], S = (int)px.shape[3];
        int n_tiles = 0, rows = 0, cols = 0;
        CHECK(llava_next_num_tiles(&pj, ih, iw, &n_tiles, &err) == VLMC_OK && n_tiles == n, "tiles %d vs %d", n_tiles, n);
        CHECK(llava_next_grid(&pj, ih, iw, &rows, &cols, &err) == VLMC_OK && rows * cols == n - 1, "grid %d×%d", rows,
              cols);
        float *h = falloc(hs.numel), *s = falloc(sel.numel), *p = falloc(proj.numel), *pk = falloc(packed.numel);
        vit_outputs o = {.hidden_states = h};
        int tokens, feat;
        CHECK(vit_select_from_config(&f.cfg, s, &o, &err) == VLMC_OK, "%s", err.message);
        vit_selected_shape(&m, &o, S, S, &tokens, &feat);
        size_t len = 0;
        if (CHECK(vit_encode(&m, px.data, n, S, S, NULL, &o, &err) == VLMC_OK, "%s", err.message) &&
            CHECK(projector_forward(&pj, s, n, tokens, feat, p, &err) == VLMC_OK, "%s", err.message) &&
            CHECK(llava_next_packed_len(&pj, n, tokens, ih, iw, &len, &err) == VLMC_OK, "%s", err.message) &&
            CHECK(len == (size_t)packed.shape[0], "packed length %zu vs %lld", len, (long long)packed.shape[0]) &&
            CHECK(llava_next_pack(&pj, p, n, tokens, ih, iw, pk, &len, &err) == VLMC_OK, "%s", err.message)) {
            vfx_compare("llava_next vision_hidden_states", h, &hs, REL);
            vfx_compare("llava_next selected_features", s, &sel, REL);
            vfx_compare("llava_next projector_output", p, &proj, REL);
            vfx_compare("llava_next packed_features", pk, &packed, REL);
        }
        /* a single tile packs as its features plus one newline */
        CHECK(llava_next_packed_len(&pj, 1, tokens, ih, iw, &len, &err) == VLMC_OK && len == (size_t)tokens + 1,
              "base-only length");
        /* wrong tile count: an error, not a misread */
        CHECK(llava_next_pack(&pj, p, 2, tokens, ih, iw, pk, &len, &err) != VLMC_OK, "2 tiles accepted");
        free(h); free(s); free(p); free(pk);
    }
    vfx_free(&px); vfx_free(&sizes); vfx_free(&hs); vfx_free(&sel); vfx_free(&proj); vfx_free(&packed);
    projector_free(&pj);
    vit_free(&m);
    fx_close(&f);
}

/* select_best_resolution / unpad on LLaVA-NeXT's default pinpoints (336 tiles), against values worked out from
 * transformers' Python. */
static void test_anyres_geometry(void) {
    projector p = {0};
    p.kind = PROJ_LLAVA;
    p.out_dim = 1;
    float nl = -1.0f;
    p.image_newline = &nl;
    p.tile_size = 336;
    p.tile_patches = 24;
    static const int pins[5][2] = {{336, 672}, {672, 336}, {672, 672}, {1008, 336}, {336, 1008}};
    p.n_pinpoints = 5;
    memcpy(p.pinpoints, pins, sizeof pins);
    vlmc_error err = {0};
    int r = 0, c = 0, nt = 0;
    /* 480×640 (h×w): 672×672 keeps all 307200 pixels with the least waste among full fits */
    CHECK(llava_next_grid(&p, 480, 640, &r, &c, &err) == VLMC_OK && r == 2 && c == 2, "480x640 grid %d×%d", r, c);
    CHECK(llava_next_num_tiles(&p, 480, 640, &nt, &err) == VLMC_OK && nt == 5, "tiles %d", nt);
    /* 1000×300: tall → 1008×336 */
    CHECK(llava_next_grid(&p, 1000, 300, &r, &c, &err) == VLMC_OK && r == 3 && c == 1, "1000x300 grid %d×%d", r, c);
    /* 480×640 on a 48×48 grid: width-bound, new_h = round(480·48/640) = 36, pad 6 → rows 6..41:
     * 576 + 36 · 49 tokens */
    size_t len = 0;
    CHECK(llava_next_packed_len(&p, 5, 576, 480, 640, &len, &err) == VLMC_OK && len == 576 + 36 * 49, "len %zu", len);
}

/* ---- Idefics3 --------------------------------------------------------------------------------------------- */

static void test_idefics3(void) {
    fx f;
    if (!fx_open("idefics3", &f)) return;
    vlmc_error err = {0};
    vit_model m;
    projector pj;
    if (!CHECK(vlm_vision_load(f.st, &f.cfg, &m, &pj, &err) == VLMC_OK, "%s", err.message)) {
        fx_close(&f);
        return;
    }
    vfx_array px, pmask, hs, last, proj;
    if (vfx_load(f.dir, "pixel_values", &px) && vfx_load(f.dir, "pixel_attention_mask", &pmask) &&
        vfx_load(f.dir, "vision_hidden_states", &hs) && vfx_load(f.dir, "vision_last_hidden_state", &last) &&
        vfx_load(f.dir, "projector_output", &proj)) {
        int n = (int)px.shape[1], S = (int)px.shape[3], P = m.P, T = vit_tokens(&m, S, S);
        uint8_t *pm8 = malloc(pmask.numel), *patch = malloc((size_t)n * (S / P) * (S / P));
        for (size_t i = 0; i < pmask.numel; i++) pm8[i] = ((const int32_t *)pmask.data)[i] != 0;
        vit_patch_mask_from_pixels(pm8, n, S, S, P, patch);
        float *h = falloc(hs.numel), *l = falloc(last.numel), *p = falloc(proj.numel);
        vit_outputs o = {.hidden_states = h, .last_hidden_state = l};
        if (CHECK(vit_encode(&m, px.data, n, S, S, patch, &o, &err) == VLMC_OK, "%s", err.message) &&
            CHECK(projector_out_tokens(&pj, T) == (int)proj.shape[1], "out tokens") &&
            CHECK(projector_forward(&pj, l, n, T, m.D, p, &err) == VLMC_OK, "%s", err.message)) {
            vfx_compare("idefics3 vision_hidden_states", h, &hs, REL);
            vfx_compare("idefics3 last_hidden_state", l, &last, REL);
            vfx_compare("idefics3 projector_output", p, &proj, REL);
        }
        free(h); free(l); free(p); free(pm8); free(patch);
    }
    vfx_free(&px); vfx_free(&pmask); vfx_free(&hs); vfx_free(&last); vfx_free(&proj);
    projector_free(&pj);
    vit_free(&m);
    fx_close(&f);
}

/* Idefics3 with padding (a 2 × 2 block of real patches in the top-left corner of a 4 × 4 tile):
 *  - the real patches' outputs do not depend on what the padded pixels hold (padding is masked out as keys);
 *  - their position ids are the bucketized fractional coordinates: rows/cols 0, 1/2 → buckets 0, 2, so patch
 *    (y, x) takes position row 2y·4 + 2x instead of y·4 + x. */
static void test_idefics3_padding(void) {
    fx f;
    if (!fx_open("idefics3", &f)) return;
    vlmc_error err = {0};
    vit_model m;
    projector pj;
    vfx_array px;
    if (CHECK(vlm_vision_load(f.st, &f.cfg, &m, &pj, &err) == VLMC_OK, "%s", err.message)) {
        if (vfx_load(f.dir, "pixel_values", &px)) {
            int S = (int)px.shape[3], P = m.P, g = S / P, T = g * g, D = m.D;
            CHECK(g == 4 && m.side == 4, "fixture geometry");
            size_t tile = (size_t)3 * S * S;
            float *three = malloc(3 * tile * sizeof(float));
            for (int i = 0; i < 3; i++) memcpy(three + i * tile, px.data, tile * sizeof(float));
            uint8_t *pm = malloc((size_t)3 * T);
            for (int i = 0; i < 3 * T; i++) {
                int t = i % T, y = t / g, x = t % g;
                pm[i] = i < T || (y < 2 && x < 2);
            }
            /* tiles 1 and 2: different garbage in the padded pixels */
            for (int k = 1; k < 3; k++)
                for (int c = 0; c < 3; c++)
                    for (int yy = 0; yy < S; yy++)
                        for (int xx = 0; xx < S; xx++)
                            if (yy >= 2 * P || xx >= 2 * P)
                                three[k * tile + ((size_t)c * S + yy) * S + xx] =
                                    k == 1 ? 0.0f : (float)((xx * 7 + yy * 3 + c) % 5) - 2.0f;
            float *h = falloc((size_t)(m.L + 1) * 3 * T * D);
            vit_outputs o = {.hidden_states = h};
            if (CHECK(vit_encode(&m, three, 3, S, S, pm, &o, &err) == VLMC_OK, "%s", err.message)) {
                float worst = 0, worst_pos = 0;
                for (int t = 0; t < T; t++) {
                    int y = t / g, x = t % g;
                    if (!(y < 2 && x < 2)) continue;
                    for (int l = 0; l <= m.L; l++) {
                        const float *a = h + (((size_t)l * 3 + 1) * T + t) * D, *b = h + (((size_t)l * 3 + 2) * T + t) * D;
                        float d = max_abs_diff(a, b, (size_t)D);
                        if (d > worst) worst = d;
                    }
                    /* layer 0: tile 1 − tile 0 = pos[2y·4 + 2x] − pos[y·4 + x] */
                    const float *e1 = h + ((size_t)1 * T + t) * D, *e0 = h + (size_t)t * D;
                    const float *p1 = m.pos_emb + (size_t)(2 * y * 4 + 2 * x) * D, *p0 = m.pos_emb + (size_t)(y * 4 + x) * D;
                    for (int d = 0; d < D; d++) {
                        float diff = fabsf((e1[d] - e0[d]) - (p1[d] - p0[d]));
                        if (diff > worst_pos) worst_pos = diff;
                    }
                }
                CHECK(worst < 1e-5f, "real patches depend on padded pixels: %g", (double)worst);
                CHECK(worst_pos < 1e-5f, "bucketized position ids: %g", (double)worst_pos);
            }
            /* a mask that is not a rectangle is refused */
            pm[T + 5] = 0;
            CHECK(vit_encode(&m, three, 3, S, S, pm, &o, &err) == VLMC_ERR_ARG, "ragged mask accepted");
            free(h); free(pm); free(three);
        }
        vfx_free(&px);
        projector_free(&pj);
        vit_free(&m);
    }
    fx_close(&f);
}

/* ---- weights in other dtypes, errors ------------------------------------------------------------------------ */

/* Copies every tensor of st into a new file at path, with the float tensors stored as `to` (F32 data rounded
 * through `round_to` first when to is F32), skipping `skip` and giving `reshape` a wrong shape. */
static bool rewrite(const safetensors *st, const char *path, dtype to, dtype round_to, const char *skip,
                    const char *reshape) {
    size_t n = safetensors_count(st), k = 0;
    const char **names = calloc(n, sizeof *names);
    tensor *ts = calloc(n, sizeof *ts);
    void **bufs = calloc(n, sizeof *bufs);
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        const st_entry *e = safetensors_at(st, i);
        if (skip && !strcmp(e->name, skip)) continue;
        tensor t = e->t;
        size_t numel = (size_t)tensor_numel(&t);
        if (t.type == DT_F32) {
            const float *src = t.data;
            void *b = malloc(numel * 4 + 4);
            for (size_t j = 0; j < numel; j++) {
                float v = src[j];
                if (round_to == DT_BF16) v = bf16_to_f32(f32_to_bf16(v));
                if (round_to == DT_F16) v = f16_to_f32(f32_to_f16(v));
                if (to == DT_F32) ((float *)b)[j] = v;
                else if (to == DT_BF16) ((uint16_t *)b)[j] = f32_to_bf16(v);
                else ((uint16_t *)b)[j] = f32_to_f16(v);
            }
            t.data = b;
            t.type = to;
            bufs[k] = b;
        }
        if (reshape && !strcmp(e->name, reshape)) { /* same bytes, wrong shape */
            t.ndim = 2;
            t.shape[0] = 1;
            t.shape[1] = (int64_t)numel;
        }
        names[k] = e->name;
        ts[k++] = t;
    }
    vlmc_error err = {0};
    ok = CHECK(safetensors_write(path, k, names, ts, NULL, &err) == VLMC_OK, "%s", err.message);
    for (size_t i = 0; i < n; i++) free(bufs[i]);
    free(bufs); free(ts); free(names);
    return ok;
}

/* CLIP with F16 / BF16 weights gives the same result as f32 weights holding the same (rounded) values. */
static void half_case(dtype to) {
    fx f;
    if (!fx_open("clip_vision", &f)) return;
    char p_half[512], p_ref[512];
    snprintf(p_half, sizeof p_half, "%s/clip_%s.safetensors", test_tmpdir(), dtype_name(to));
    snprintf(p_ref, sizeof p_ref, "%s/clip_%s_as_f32.safetensors", test_tmpdir(), dtype_name(to));
    vfx_array px;
    safetensors *sh = NULL, *sr = NULL;
    vlmc_error err = {0};
    if (rewrite(f.st, p_half, to, to, NULL, NULL) && rewrite(f.st, p_ref, DT_F32, to, NULL, NULL) &&
        CHECK(safetensors_open(p_half, &sh, &err) == VLMC_OK, "%s", err.message) &&
        CHECK(safetensors_open(p_ref, &sr, &err) == VLMC_OK, "%s", err.message) && vfx_load(f.dir, "pixel_values", &px)) {
        vit_model mh, mr;
        if (CHECK(vit_load(sh, "vision_model.", &f.cfg.vision, &mh, &err) == VLMC_OK, "%s", err.message)) {
            CHECK(mh.scratch_floats > 0, "half weights need the conversion scratch");
            if (CHECK(vit_load(sr, "vision_model.", &f.cfg.vision, &mr, &err) == VLMC_OK, "%s", err.message)) {
                int S = (int)px.shape[2], T = vit_tokens(&mh, S, S);
                float *a = falloc((size_t)T * mh.D), *b = falloc((size_t)T * mh.D), *pa = falloc(mh.D), *pb = falloc(mh.D);
                vit_outputs oa = {.last_hidden_state = a, .pooler_output = pa}, ob = {.last_hidden_state = b, .pooler_output = pb};
                if (CHECK(vit_encode(&mh, px.data, 1, S, S, NULL, &oa, &err) == VLMC_OK, "%s", err.message) &&
                    CHECK(vit_encode(&mr, px.data, 1, S, S, NULL, &ob, &err) == VLMC_OK, "%s", err.message)) {
                    CHECK(max_abs_diff(a, b, (size_t)T * mh.D) == 0.0f, "%s weights differ from their f32 values: %g",
                          dtype_name(to), (double)max_abs_diff(a, b, (size_t)T * mh.D));
                    CHECK(max_abs_diff(pa, pb, (size_t)mh.D) == 0.0f, "pooler");
                }
                free(a); free(b); free(pa); free(pb);
                vit_free(&mr);
            }
            vit_free(&mh);
        }
        vfx_free(&px);
    }
    if (sh) safetensors_close(sh);
    if (sr) safetensors_close(sr);
    fx_close(&f);
}

static void test_bf16_weights(void) { half_case(DT_BF16); }
static void test_f16_weights(void) { half_case(DT_F16); }

static void test_weight_errors(void) {
    fx f;
    if (!fx_open("llava", &f)) return;
    char path[512];
    vlmc_error err = {0};
    vit_model m;
    projector pj;
    safetensors *st = NULL;
    /* a missing tower tensor */
    snprintf(path, sizeof path, "%s/missing.safetensors", test_tmpdir());
    const char *gone = "vision_tower.vision_model.encoder.layers.1.mlp.fc2.weight";
    if (rewrite(f.st, path, DT_F32, DT_F32, gone, NULL) &&
        CHECK(safetensors_open(path, &st, &err) == VLMC_OK, "%s", err.message)) {
        CHECK(vlm_vision_load(st, &f.cfg, &m, &pj, &err) == VLMC_ERR_FORMAT, "loaded without %s", gone);
        CHECK(strstr(err.message, gone) && strstr(err.message, "missing.safetensors"), "message: %s", err.message);
        safetensors_close(st);
        st = NULL;
    }
    /* a misshaped projector tensor */
    snprintf(path, sizeof path, "%s/misshaped.safetensors", test_tmpdir());
    const char *bad = "multi_modal_projector.linear_1.weight";
    if (rewrite(f.st, path, DT_F32, DT_F32, NULL, bad) &&
        CHECK(safetensors_open(path, &st, &err) == VLMC_OK, "%s", err.message)) {
        CHECK(vlm_vision_load(st, &f.cfg, &m, &pj, &err) != VLMC_OK, "loaded a misshaped %s", bad);
        CHECK(strstr(err.message, bad) && strstr(err.message, "misshaped.safetensors") && strstr(err.message, "shape"),
              "message: %s", err.message);
        safetensors_close(st);
        st = NULL;
    }
    /* a missing image_newline for llava_next */
    hf_config next = f.cfg;
    snprintf(next.model_type, sizeof next.model_type, "llava_next");
    next.n_image_grid_pinpoints = 1;
    next.image_grid_pinpoints[0][0] = next.image_grid_pinpoints[0][1] = 56;
    CHECK(projector_load(f.st, "", &next, &pj, &err) != VLMC_OK && strstr(err.message, "image_newline"),
          "message: %s", err.message);
    /* the wrong input size */
    if (CHECK(vit_load(f.st, "vision_tower.vision_model.", &f.cfg.vision, &m, &err) == VLMC_OK, "%s", err.message)) {
        float px[3 * 28 * 28] = {0}, out[32];
        vit_outputs o = {.pooler_output = out};
        CHECK(vit_encode(&m, px, 1, 28, 28, NULL, &o, &err) == VLMC_ERR_ARG, "28×28 accepted");
        vit_free(&m);
    }
    fx_close(&f);
}

/* vision_feature_layer lists: the selected layers concatenated on the feature axis, first token kept with "full". */
static void test_feature_layer_list(void) {
    fx f;
    if (!fx_open("clip_vision", &f)) return;
    vlmc_error err = {0};
    vit_model m;
    vfx_array px, hs;
    if (CHECK(vit_load(f.st, "vision_model.", &f.cfg.vision, &m, &err) == VLMC_OK, "%s", err.message)) {
        if (vfx_load(f.dir, "pixel_values", &px) && vfx_load(f.dir, "hidden_states", &hs)) {
            int S = (int)px.shape[2], T = vit_tokens(&m, S, S), D = m.D;
            hf_config cfg = {0};
            cfg.n_vision_feature_layers = 3;
            cfg.vision_feature_layers[0] = -1;
            cfg.vision_feature_layers[1] = 0;
            cfg.vision_feature_layers[2] = 1;
            snprintf(cfg.vision_feature_select_strategy, sizeof cfg.vision_feature_select_strategy, "full");
            vit_outputs o = {0};
            int tokens = 0, feat = 0;
            float *sel = falloc((size_t)T * 3 * D);
            CHECK(vit_select_from_config(&cfg, sel, &o, &err) == VLMC_OK, "%s", err.message);
            vit_selected_shape(&m, &o, S, S, &tokens, &feat);
            CHECK(tokens == T && feat == 3 * D, "shape %d×%d", tokens, feat);
            if (CHECK(vit_encode(&m, px.data, 1, S, S, NULL, &o, &err) == VLMC_OK, "%s", err.message)) {
                const float *ref = hs.data;
                float worst = 0;
                int layer_of[3] = {m.L, 0, 1};
                for (int t = 0; t < T; t++)
                    for (int j = 0; j < 3; j++) {
                        float d = max_abs_diff(sel + ((size_t)t * 3 + j) * D, ref + ((size_t)layer_of[j] * T + t) * D, (size_t)D);
                        if (d > worst) worst = d;
                    }
                CHECK(worst < 1e-4f, "concatenated layers differ by %g", (double)worst);
            }
            /* out-of-range layers are refused */
            o.select_layers[0] = m.L + 1;
            CHECK(vit_encode(&m, px.data, 1, S, S, NULL, &o, &err) == VLMC_ERR_ARG, "layer L+1 accepted");
            free(sel);
        }
        vfx_free(&px);
        vfx_free(&hs);
        vit_free(&m);
    }
    fx_close(&f);
}

/* A SigLIP tower saved without its head has no pooler output; asking for one is an error. */
static void test_siglip_without_head(void) {
    fx f;
    if (!fx_open("siglip_vision", &f)) return;
    char path[512];
    snprintf(path, sizeof path, "%s/siglip_nohead.safetensors", test_tmpdir());
    size_t n = safetensors_count(f.st), k = 0;
    const char **names = calloc(n, sizeof *names);
    tensor *ts = calloc(n, sizeof *ts);
    for (size_t i = 0; i < n; i++) {
        const st_entry *e = safetensors_at(f.st, i);
        if (strstr(e->name, ".head.")) continue;
        names[k] = e->name;
        ts[k++] = e->t;
    }
    vlmc_error err = {0};
    safetensors *st = NULL;
    vit_model m;
    if (CHECK(safetensors_write(path, k, names, ts, NULL, &err) == VLMC_OK, "%s", err.message) &&
        CHECK(safetensors_open(path, &st, &err) == VLMC_OK, "%s", err.message) &&
        CHECK(vit_load(st, "vision_model.", &f.cfg.vision, &m, &err) == VLMC_OK, "%s", err.message)) {
        CHECK(!m.has_head, "no head");
        float px[3 * 64 * 64] = {0}, pooled[32], last[16 * 32];
        vit_outputs o = {.pooler_output = pooled};
        CHECK(m.image_size == 64 && vit_encode(&m, px, 1, 64, 64, NULL, &o, &err) == VLMC_ERR_ARG &&
              strstr(err.message, "head"), "message: %s", err.message);
        vit_outputs o2 = {.last_hidden_state = last};
        CHECK(vit_encode(&m, px, 1, 64, 64, NULL, &o2, &err) == VLMC_OK, "%s", err.message);
        vit_free(&m);
    }
    if (st) safetensors_close(st);
    free(names);
    free(ts);
    fx_close(&f);
}

/* transformers >= 4.52 saves LLaVA as model.vision_tower.*, model.multi_modal_projector.*: found the same. */
static void test_llava_new_layout(void) {
    fx f;
    if (!fx_open("llava", &f)) return;
    char path[512];
    snprintf(path, sizeof path, "%s/llava_new_layout.safetensors", test_tmpdir());
    size_t n = safetensors_count(f.st), k = 0;
    char **names = calloc(n, sizeof *names);
    tensor *ts = calloc(n, sizeof *ts);
    for (size_t i = 0; i < n; i++) {
        const st_entry *e = safetensors_at(f.st, i);
        if (strncmp(e->name, "vision_tower.", 13) && strncmp(e->name, "multi_modal_projector.", 22)) continue;
        names[k] = malloc(strlen(e->name) + 8);
        sprintf(names[k], "model.%s", e->name);
        ts[k++] = e->t;
    }
    vlmc_error err = {0};
    safetensors *st = NULL;
    vit_model m;
    projector pj;
    vfx_array px, proj;
    if (CHECK(safetensors_write(path, k, (const char *const *)names, ts, NULL, &err) == VLMC_OK, "%s", err.message) &&
        CHECK(safetensors_open(path, &st, &err) == VLMC_OK, "%s", err.message) &&
        CHECK(vlm_vision_load(st, &f.cfg, &m, &pj, &err) == VLMC_OK, "%s", err.message)) {
        if (vfx_load(f.dir, "pixel_values", &px) && vfx_load(f.dir, "projector_output", &proj)) {
            int S = (int)px.shape[2], tokens, feat;
            vit_outputs o = {0};
            float *sel = falloc((size_t)vit_tokens(&m, S, S) * m.D), *out = falloc(proj.numel);
            CHECK(vit_select_from_config(&f.cfg, sel, &o, &err) == VLMC_OK, "%s", err.message);
            vit_selected_shape(&m, &o, S, S, &tokens, &feat);
            if (CHECK(vit_encode(&m, px.data, 1, S, S, NULL, &o, &err) == VLMC_OK, "%s", err.message) &&
                CHECK(projector_forward(&pj, sel, 1, tokens, feat, out, &err) == VLMC_OK, "%s", err.message))
                vfx_compare("llava (model.* layout)", out, &proj, REL);
            free(sel);
            free(out);
            vfx_free(&proj);
        }
        vfx_free(&px);
        projector_free(&pj);
        vit_free(&m);
    }
    if (st) safetensors_close(st);
    for (size_t i = 0; i < k; i++) free(names[i]);
    free(names);
    free(ts);
    fx_close(&f);
}

/* vlm_image_features: the whole image path per family, against the fixtures' final image features. */
static void image_features_case(const char *name, const char *ref_name, bool add_padding_image) {
    fx f;
    if (!fx_open(name, &f)) return;
    vlmc_error err = {0};
    vit_model m;
    projector pj;
    if (!CHECK(vlm_vision_load(f.st, &f.cfg, &m, &pj, &err) == VLMC_OK, "%s", err.message)) {
        fx_close(&f);
        return;
    }
    vfx_array px, ref, sizes = {0}, pmask = {0};
    if (vfx_load(f.dir, "pixel_values", &px) && vfx_load(f.dir, ref_name, &ref)) {
        bool five = px.ndim == 5;
        int n = (int)(five ? px.shape[1] : px.shape[0]), S = (int)px.shape[px.ndim - 1], ih = 0, iw = 0;
        if (!strcmp(name, "llava_next") && vfx_load(f.dir, "image_sizes", &sizes)) {
            ih = ((const int32_t *)sizes.data)[0];
            iw = ((const int32_t *)sizes.data)[1];
        }
        size_t per = (size_t)3 * S * S;
        float *pix = calloc((size_t)(n + 1) * per, sizeof(float)); /* room for one padding image */
        memcpy(pix, px.data, (size_t)n * per * sizeof(float));
        uint8_t *pm = NULL;
        if (!strcmp(name, "idefics3") && vfx_load(f.dir, "pixel_attention_mask", &pmask)) {
            pm = calloc((size_t)(n + 1) * S * S, 1);
            for (size_t i = 0; i < pmask.numel; i++) pm[i] = ((const int32_t *)pmask.data)[i] != 0;
        }
        int nn = n + (add_padding_image ? 1 : 0);
        float *out = NULL;
        size_t rows = 0;
        char what[64];
        snprintf(what, sizeof what, "%s image features%s", name, add_padding_image ? " (+pad)" : "");
        if (CHECK(vlm_image_features(&m, &pj, &f.cfg, pix, nn, S, S, pm, ih, iw, &out, &rows, &err) == VLMC_OK, "%s",
                  err.message) &&
            CHECK(rows * (size_t)pj.out_dim == ref.numel, "%zu rows of %d vs %zu values", rows, pj.out_dim, ref.numel))
            vfx_compare(what, out, &ref, REL);
        free(out);
        free(pix);
        free(pm);
    }
    vfx_free(&px); vfx_free(&ref); vfx_free(&sizes); vfx_free(&pmask);
    projector_free(&pj);
    vit_free(&m);
    fx_close(&f);
}

static void test_image_features(void) {
    image_features_case("llava", "projector_output", false);
    image_features_case("llava_batch", "projector_output", false);
    image_features_case("llava_next", "packed_image_features", false);
    image_features_case("llava_next", "packed_image_features", true); /* a padded extra tile is ignored */
    image_features_case("idefics3", "projector_output", false);
    image_features_case("idefics3", "projector_output", true);        /* an all-zero image is dropped */
}

/* ---- kernels ------------------------------------------------------------------------------------------------ */

static void test_kernels(void) {
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 1, 1}, b[4] = {0, 0, 0, 1}, y[4];
    layernorm_forward(y, x, w, b, 1, 4, 0.0f);
    /* mean 2.5, var 1.25 */
    float s = 1.0f / sqrtf(1.25f);
    CHECK(fabsf(y[0] + 1.5f * s) < 1e-6f && fabsf(y[3] - (1.5f * s + 1)) < 1e-6f, "layernorm %g %g", (double)y[0],
          (double)y[3]);
    float g[3] = {-1.0f, 0.0f, 2.0f}, o[3];
    gelu_forward(o, g, 3);
    CHECK(fabsf(o[0] + 0.15865525f) < 1e-6f && o[1] == 0.0f && fabsf(o[2] - 1.9544997f) < 1e-6f, "gelu");
    gelu_tanh_forward(o, g, 3);
    CHECK(fabsf(o[0] + 0.15880801f) < 1e-6f && fabsf(o[2] - 1.9545977f) < 1e-6f, "gelu tanh %.8f", (double)o[0]);
    quick_gelu_forward(o, g, 3);
    CHECK(fabsf(o[0] + 0.15420423f) < 1e-6f && fabsf(o[2] - 1.9356586f) < 1e-6f, "quick gelu %.8f", (double)o[0]);
    /* fast_expf: relative error against exp in double over the normal range, 0 far below, finite far above */
    double worst = 0;
    for (int i = 0; i <= 2000000; i++) {
        float xv = -87.0f + 175.0f * (float)i / 2000000.0f;
        double ref = exp((double)xv), e = fabs((double)fast_expf(xv) - ref) / ref;
        if (e > worst) worst = e;
    }
    CHECK(worst < 3e-7, "fast_expf relative error %g", worst);
    CHECK(fast_expf(-1e30f) == 0.0f && fast_expf(-FLT_MAX) == 0.0f && fast_expf(-90.0f) == 0.0f, "underflow");
    CHECK(isfinite(fast_expf(1e30f)) && fast_expf(1e30f) > 1e38f && fast_expf(0.0f) == 1.0f, "overflow / exp(0)");
    float imgs[3][4] = {{0, 0, 0, 0}, {0, 0, -0.0f, 1e-30f}, {0, 0, 0, 0}};
    int keep[3] = {-1, -1, -1};
    CHECK(vit_real_images(&imgs[0][0], 3, 4, keep) == 1 && keep[0] == 1, "real images");
    act_kind a;
    vlmc_error err = {0};
    CHECK(act_from_name("gelu_pytorch_tanh", "cfg", &a, &err) == VLMC_OK && a == ACT_GELU_TANH, "act name");
    CHECK(act_from_name("mish", "cfg", &a, &err) == VLMC_ERR_UNSUPPORTED && strstr(err.message, "mish"), "unknown act");
}

int main(void) {
    tests_begin("vision");
    TEST_RUN(test_kernels);
    TEST_RUN(test_clip_vision);
    TEST_RUN(test_siglip_vision);
    TEST_RUN(test_llava);
    TEST_RUN(test_llava_batch);
    TEST_RUN(test_llava_multi_image);
    TEST_RUN(test_llava_next);
    TEST_RUN(test_anyres_geometry);
    TEST_RUN(test_idefics3);
    TEST_RUN(test_idefics3_padding);
    TEST_RUN(test_bf16_weights);
    TEST_RUN(test_f16_weights);
    TEST_RUN(test_weight_errors);
    TEST_RUN(test_feature_layer_list);
    TEST_RUN(test_siglip_without_head);
    TEST_RUN(test_llava_new_layout);
    TEST_RUN(test_image_features);
    return tests_end();
}
