/* The Llama-family decoder against transformers 4.47 reference fixtures
 * (../shared/fixtures/{llama,qwen2,mistral,llama_rope_scaling,llama_bf16,...}),
 * plus kernels, batching, KV-cache limits and weight-loading errors on synthetic models. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "testlib.h"

#include "formats/arrays.h"
#include "formats/hf_config.h"
#include "formats/json.h"
#include "formats/safetensors.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "models/llama.h"
#include "models/rope.h"

#define TOL 1e-4f

/* max|a-b| / max|ref| over rows (of width w) where mask (per row, may be NULL) is set */
static float rel_diff(const float *a, const float *ref, size_t rows, size_t w, const int32_t *mask) {
    float d = 0, m = 0;
    for (size_t r = 0; r < rows; r++) {
        if (mask && !mask[r]) continue;
        float dd = max_abs_diff(a + r * w, ref + r * w, w), mm = max_abs(ref + r * w, w);
        if (!(dd <= d)) d = dd;
        if (mm > m) m = mm;
    }
    return m > 0 ? d / m : d;
}

typedef struct loaded {
    hf_config cfg;
    safetensors *st;
    llama_model m;
} loaded;

static int load_dir(const char *dir, loaded *L) {
    vlmc_error err = {0};
    memset(L, 0, sizeof *L);
    if (!CHECK(hf_config_load(dir, &L->cfg, &err) == VLMC_OK, "%s", err.message)) return -1;
    if (!CHECK(safetensors_open(dir, &L->st, &err) == VLMC_OK, "%s", err.message)) return -1;
    if (!CHECK(llama_model_load(&L->m, &L->cfg.text, L->st, "model.", "lm_head.weight", &err) == VLMC_OK, "%s",
               err.message)) {
        safetensors_close(L->st);
        return -1;
    }
    return 0;
}

static void unload(loaded *L) {
    llama_model_free(&L->m);
    safetensors_close(L->st);
}

/* One decoder fixture: full pass (logits + hidden states), prefill + token-by-token
 * decode, greedy generation. */
static void run_fixture(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "fixtures/%s", name);
    const char *p = shared_path(rel);
    if (!p) return;
    char dir[1024], ref[1100];
    snprintf(dir, sizeof dir, "%s", p);
    snprintf(ref, sizeof ref, "%s/reference", dir);
    fixture fx;
    if (!CHECK(fx_open(&fx, ref) == 0, "cannot read %s/manifest.json", ref)) return;
    loaded L;
    if (load_dir(dir, &L)) { fx_close(&fx); return; }
    const llama_model *m = &L.m;
    fx_array *ids = fx_read(&fx, "input_ids"), *mask = fx_read(&fx, "attention_mask");
    fx_array *logits = fx_read(&fx, "logits"), *hidden = fx_read(&fx, "hidden_states");
    fx_array *gen = fx_read(&fx, "generated_ids"), *gen_logits = fx_read(&fx, "generation_step_logits");
    fx_array *inv = fx_read(&fx, "rope_inv_freq"), *full_seq = fx_read(&fx, "full_sequence_logits");
    vlmc_error err = {0};
    if (!CHECK(ids && mask && logits, "%s: input_ids/attention_mask/logits missing", name)) goto out;
    const int B = (int)ids->shape[0], T = (int)ids->shape[1], V = m->vocab, D = m->dim, NL = m->n_layers;
    const int n_gen = gen ? (int)gen->shape[1] : 0;
    int n_ctx = T + n_gen + 4;
    if (full_seq && (int)full_seq->shape[1] + 4 > n_ctx) n_ctx = (int)full_seq->shape[1] + 4;
    llama_ctx c;
    if (!CHECK(llama_ctx_init(&c, m, B, n_ctx, 0, &err) == VLMC_OK, "%s", err.message)) goto out;
    const int32_t *mk = mask->data;

    if (inv) {
        float f[256], af;
        CHECK(rope_inv_freq(&m->cfg, 0, f, &af, &err) == VLMC_OK, "%s", err.message);
        float d = rel_diff(f, inv->data, 1, inv->n, NULL);
        printf("    %s: rope inv_freq rel diff %.3g\n", name, d);
        CHECK(d <= 1e-6f, "%s: inv_freq differs by %g", name, d);
    }

    /* 1. full pass */
    float *lg = calloc((size_t)B * T * V, sizeof(float));
    float *hs = calloc((size_t)(NL + 1) * B * T * D, sizeof(float));
    CHECK(llama_forward(&c, &(llama_input){.n_tokens = T, .tokens = ids->data, .attention_mask = mk},
                        &(llama_output){.logits = lg, .hidden_states = hs}, &err) == VLMC_OK, "%s", err.message);
    float d_full = rel_diff(lg, logits->data, (size_t)B * T, V, mk);
    float d_hs = 0;
    if (hidden) {
        for (int l = 0; l <= NL; l++) {
            float d = rel_diff(hs + (size_t)l * B * T * D, (const float *)hidden->data + (size_t)l * B * T * D,
                               (size_t)B * T, D, mk);
            if (d > d_hs) d_hs = d;
        }
    }
    CHECK(d_full <= TOL, "%s: full-pass logits rel diff %g", name, d_full);
    CHECK(d_hs <= TOL, "%s: hidden states rel diff %g", name, d_hs);

    /* 2. KV path: prefill the first half, then one token at a time */
    llama_ctx_reset(&c);
    memset(lg, 0, (size_t)B * T * V * sizeof(float));
    int T0 = T / 2;
    int32_t *tok = malloc((size_t)B * T * sizeof(int32_t)), *msk = malloc((size_t)B * T * sizeof(int32_t));
    float *step = malloc((size_t)B * T * V * sizeof(float));
    for (int t = 0; t < T;) {
        int n = t == 0 ? T0 : 1;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < n; i++) {
                tok[b * n + i] = ((const int32_t *)ids->data)[b * T + t + i];
                msk[b * n + i] = mk[b * T + t + i];
            }
        CHECK(llama_forward(&c, &(llama_input){.n_tokens = n, .tokens = tok, .attention_mask = msk},
                            &(llama_output){.logits = step}, &err) == VLMC_OK, "%s", err.message);
        for (int b = 0; b < B; b++)
            memcpy(lg + ((size_t)b * T + t) * V, step + (size_t)b * n * V, (size_t)n * V * sizeof(float));
        t += n;
    }
    float d_kv = rel_diff(lg, logits->data, (size_t)B * T, V, mk);
    /* dynamic rope grows its base with the longest sequence seen: token by token differs
     * from one pass (in transformers too) once T exceeds max_position_embeddings */
    bool kv_comparable = !(m->cfg.rope_scaling.type == ROPE_DYNAMIC && T > m->cfg.max_position_embeddings);
    CHECK(!kv_comparable || d_kv <= TOL, "%s: KV-path logits rel diff %g", name, d_kv);

    /* 3. greedy generation */
    float d_gen = 0;
    int gen_exact = -1;
    if (gen && gen_logits) {
        llama_ctx_reset(&c);
        int32_t *out_ids = malloc((size_t)B * n_gen * sizeof(int32_t));
        float *out_lg = malloc((size_t)B * n_gen * V * sizeof(float));
        CHECK(llama_generate_greedy(&c, &(llama_input){.n_tokens = T, .tokens = ids->data, .attention_mask = mk},
                                    n_gen, out_ids, out_lg, &err) == VLMC_OK, "%s", err.message);
        gen_exact = memcmp(out_ids, gen->data, (size_t)B * n_gen * sizeof(int32_t)) == 0;
        d_gen = rel_diff(out_lg, gen_logits->data, (size_t)B * n_gen, V, NULL);
        CHECK(gen_exact, "%s: generated ids differ", name);
        CHECK(d_gen <= TOL, "%s: generation step logits rel diff %g", name, d_gen);
        free(out_ids);
        free(out_lg);
    }

    /* 4. dynamic rope: logits of one pass over prompt + generated tokens */
    if (full_seq) {
        int TF = (int)full_seq->shape[1];
        int32_t *seq = malloc((size_t)TF * sizeof(int32_t));
        float *flg = malloc((size_t)TF * V * sizeof(float));
        if (CHECK(B == 1 && TF <= T + n_gen, "%s: full_sequence_logits shape", name)) {
            for (int i = 0; i < TF; i++)
                seq[i] = i < T ? ((const int32_t *)ids->data)[i] : ((const int32_t *)gen->data)[i - T];
            llama_ctx_reset(&c);
            CHECK(llama_forward(&c, &(llama_input){.n_tokens = TF, .tokens = seq}, &(llama_output){.logits = flg},
                                &err) == VLMC_OK, "%s", err.message);
            float d = rel_diff(flg, full_seq->data, TF, V, NULL);
            printf("    %s: full_sequence_logits rel diff %.3g\n", name, d);
            CHECK(d <= TOL, "%s: full_sequence_logits rel diff %g", name, d);
        }
        free(seq);
        free(flg);
    }
    printf("    %s: logits full %.3g, kv %.3g, hidden %.3g, generation %s (step logits %.3g)\n", name, d_full, d_kv,
           d_hs, gen_exact < 0 ? "n/a" : gen_exact ? "exact" : "DIFFERS", d_gen);
    free(tok); free(msk); free(step); free(lg); free(hs);
    llama_ctx_free(&c);
out:
    fx_free(ids); fx_free(mask); fx_free(logits); fx_free(hidden); fx_free(gen); fx_free(gen_logits); fx_free(inv);
    fx_free(full_seq);
    unload(&L);
    fx_close(&fx);
}

static void test_llama(void) { run_fixture("llama"); }
static void test_qwen2(void) { run_fixture("qwen2"); }
static void test_mistral(void) { run_fixture("mistral"); }
static void test_llama_rope_scaling(void) { run_fixture("llama_rope_scaling"); }
static void test_llama_bf16(void) { run_fixture("llama_bf16"); }
static void test_llama_rope_scaling_dynamic(void) {
    const char *p = shared_path("fixtures/llama_rope_scaling_dynamic");
    if (!p) return;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s/config.json", p);
    FILE *f = fopen(buf, "rb");
    if (!f) { test_skip("fixtures/llama_rope_scaling_dynamic is absent"); return; }
    fclose(f);
    run_fixture("llama_rope_scaling_dynamic");
}

/* llama_train_batch: a right-padded batch of two in one full pass (logits where mask = 1). */
static void test_train_batch_logits(void) {
    const char *p = shared_path("fixtures/llama_train_batch");
    if (!p) return;
    char dir[1024], ref[1100];
    snprintf(dir, sizeof dir, "%s", p);
    snprintf(ref, sizeof ref, "%s/reference", dir);
    fixture fx;
    if (!CHECK(fx_open(&fx, ref) == 0, "manifest")) return;
    loaded L;
    if (load_dir(dir, &L)) { fx_close(&fx); return; }
    fx_array *ids = fx_read(&fx, "input_ids"), *mask = fx_read(&fx, "attention_mask"), *logits = fx_read(&fx, "logits");
    vlmc_error err = {0};
    if (CHECK(ids && mask && logits, "arrays missing")) {
        int B = (int)ids->shape[0], T = (int)ids->shape[1], V = L.m.vocab;
        llama_ctx c;
        if (CHECK(llama_ctx_init(&c, &L.m, B, T, 0, &err) == VLMC_OK, "%s", err.message)) {
            float *lg = malloc((size_t)B * T * V * sizeof(float));
            CHECK(llama_forward(&c, &(llama_input){.n_tokens = T, .tokens = ids->data, .attention_mask = mask->data},
                                &(llama_output){.logits = lg}, &err) == VLMC_OK, "%s", err.message);
            float d = rel_diff(lg, logits->data, (size_t)B * T, V, mask->data);
            printf("    llama_train_batch (right padded, B=2): logits rel diff %.3g\n", d);
            CHECK(d <= TOL, "right-padded batch logits rel diff %g", d);
            free(lg);
            llama_ctx_free(&c);
        }
    }
    fx_free(ids); fx_free(mask); fx_free(logits);
    unload(&L);
    fx_close(&fx);
}

/* Two prompts of different lengths, left padded into one batch, give the same logits
 * (and the same greedy continuation) as each prompt alone. */
static void test_left_padded_batch(void) {
    const char *p = shared_path("fixtures/llama");
    if (!p) return;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", p);
    loaded L;
    if (load_dir(dir, &L)) return;
    const int V = L.m.vocab, T = 10, TA = 10, TB = 6, NG = 5;
    int32_t a[10] = {1, 17, 300, 45, 99, 7, 250, 3, 88, 410};
    int32_t bb[6] = {1, 64, 5, 77, 401, 12};
    int32_t ids[2 * 10], mask[2 * 10];
    for (int t = 0; t < T; t++) {
        ids[t] = a[t]; mask[t] = 1;
        int pad = T - TB;
        ids[T + t] = t < pad ? 0 : bb[t - pad];
        mask[T + t] = t >= pad;
    }
    vlmc_error err = {0};
    llama_ctx c1, c2;
    CHECK(llama_ctx_init(&c1, &L.m, 1, 32, 0, &err) == VLMC_OK, "%s", err.message);
    CHECK(llama_ctx_init(&c2, &L.m, 2, 32, 0, &err) == VLMC_OK, "%s", err.message);
    float *lb = malloc((size_t)2 * T * V * sizeof(float)), *l1 = malloc((size_t)T * V * sizeof(float));
    CHECK(llama_forward(&c2, &(llama_input){.n_tokens = T, .tokens = ids, .attention_mask = mask},
                        &(llama_output){.logits = lb}, &err) == VLMC_OK, "%s", err.message);
    CHECK(llama_forward(&c1, &(llama_input){.n_tokens = TA, .tokens = a}, &(llama_output){.logits = l1}, &err) ==
              VLMC_OK, "%s", err.message);
    float da = rel_diff(lb, l1, TA, V, NULL);
    llama_ctx_reset(&c1);
    CHECK(llama_forward(&c1, &(llama_input){.n_tokens = TB, .tokens = bb}, &(llama_output){.logits = l1}, &err) ==
              VLMC_OK, "%s", err.message);
    float db = rel_diff(lb + (size_t)(2 * T - TB) * V, l1, TB, V, NULL);
    printf("    left-padded batch vs alone: prompt A %.3g, prompt B %.3g\n", da, db);
    CHECK(da <= 1e-5f && db <= 1e-5f, "batched logits differ from single: %g %g", da, db);

    /* greedy continuation in the batch vs alone */
    int32_t gb[2 * 5], g1[5];
    float *sb = malloc((size_t)2 * NG * V * sizeof(float)), *s1 = malloc((size_t)NG * V * sizeof(float));
    llama_ctx_reset(&c2);
    CHECK(llama_generate_greedy(&c2, &(llama_input){.n_tokens = T, .tokens = ids, .attention_mask = mask}, NG, gb, sb,
                                &err) == VLMC_OK, "%s", err.message);
    llama_ctx_reset(&c1);
    CHECK(llama_generate_greedy(&c1, &(llama_input){.n_tokens = TB, .tokens = bb}, NG, g1, s1, &err) == VLMC_OK, "%s",
          err.message);
    CHECK(!memcmp(gb + NG, g1, sizeof g1), "batched generation differs for the padded prompt");
    float dg = rel_diff(sb + (size_t)NG * V, s1, NG, V, NULL);
    CHECK(dg <= 1e-5f, "batched step logits differ: %g", dg);
    llama_ctx_reset(&c1);
    CHECK(llama_generate_greedy(&c1, &(llama_input){.n_tokens = TA, .tokens = a}, NG, g1, s1, &err) == VLMC_OK, "%s",
          err.message);
    CHECK(!memcmp(gb, g1, sizeof g1), "batched generation differs for the longer prompt");
    free(sb); free(s1); free(lb); free(l1);
    llama_ctx_free(&c1);
    llama_ctx_free(&c2);
    unload(&L);
}

/* The decoder inside the VLM fixtures, fed with the merged embeddings the fixture
 * records (text_hidden_states[0]) as a VLM will call it: full pass, then greedy
 * generation with an embeddings prompt and token-by-token decoding. */
static void run_vlm(const char *name, const char *prefix, const char *lm_head) {
    char rel[256];
    snprintf(rel, sizeof rel, "fixtures/%s", name);
    const char *p = shared_path(rel);
    if (!p) return;
    char dir[1024], ref[1100];
    snprintf(dir, sizeof dir, "%s", p);
    snprintf(ref, sizeof ref, "%s/reference", dir);
    fixture fx;
    if (!CHECK(fx_open(&fx, ref) == 0, "cannot read %s/manifest.json", ref)) return;
    vlmc_error err = {0};
    hf_config cfg;
    safetensors *st = NULL;
    llama_model m;
    if (!CHECK(hf_config_load(dir, &cfg, &err) == VLMC_OK, "%s", err.message) ||
        !CHECK(safetensors_open(dir, &st, &err) == VLMC_OK, "%s", err.message)) { fx_close(&fx); return; }
    if (!CHECK(llama_model_load(&m, &cfg.text, st, prefix, lm_head, &err) == VLMC_OK, "%s", err.message)) {
        safetensors_close(st); fx_close(&fx); return;
    }
    fx_array *mask = fx_read(&fx, "attention_mask"), *pos = fx_read(&fx, "position_ids");
    fx_array *hidden = fx_read(&fx, "text_hidden_states"), *logits = fx_read(&fx, "logits");
    fx_array *gen = fx_read(&fx, "generated_ids"), *gen_logits = fx_read(&fx, "generation_step_logits");
    if (CHECK(mask && hidden && logits && gen && gen_logits, "%s: arrays missing", name)) {
        const int B = (int)mask->shape[0], T = (int)mask->shape[1], V = m.vocab, D = m.dim, NL = m.n_layers;
        const int NG = (int)gen->shape[1];
        const float *emb = hidden->data; /* [0] = merged input embeddings [B, T, D] */
        llama_ctx c;
        if (CHECK(llama_ctx_init(&c, &m, B, T + NG, 0, &err) == VLMC_OK, "%s", err.message)) {
            float *lg = malloc((size_t)B * T * V * sizeof(float));
            float *hs = malloc((size_t)(NL + 1) * B * T * D * sizeof(float));
            CHECK(llama_forward(&c, &(llama_input){.n_tokens = T, .embeds = emb, .attention_mask = mask->data,
                                                   .position_ids = pos ? pos->data : NULL},
                                &(llama_output){.logits = lg, .hidden_states = hs}, &err) == VLMC_OK, "%s", err.message);
            float d = rel_diff(lg, logits->data, (size_t)B * T, V, mask->data), dh = 0;
            for (int l = 0; l <= NL; l++) {
                float x = rel_diff(hs + (size_t)l * B * T * D, emb + (size_t)l * B * T * D, (size_t)B * T, D,
                                   mask->data);
                if (x > dh) dh = x;
            }
            int32_t *ids = malloc((size_t)B * NG * sizeof(int32_t));
            float *sl = malloc((size_t)B * NG * V * sizeof(float));
            llama_ctx_reset(&c);
            /* transformers 4.47 LLaVA decodes through its legacy path (see llama.h) */
            c.legacy_unmask_padding_on_decode = !strncmp(name, "llava", 5);
            CHECK(llama_generate_greedy(&c, &(llama_input){.n_tokens = T, .embeds = emb, .attention_mask = mask->data},
                                        NG, ids, sl, &err) == VLMC_OK, "%s", err.message);
            int exact = !memcmp(ids, gen->data, (size_t)B * NG * sizeof(int32_t));
            float dg = rel_diff(sl, gen_logits->data, (size_t)B * NG, V, NULL);
            printf("    %s (decoder from merged embeddings): logits %.3g, hidden %.3g, generation %s (step logits %.3g)\n",
                   name, d, dh, exact ? "exact" : "DIFFERS", dg);
            CHECK(d <= TOL && dh <= TOL && dg <= TOL, "%s: rel diffs %g %g %g", name, d, dh, dg);
            CHECK(exact, "%s: generated ids differ", name);
            free(ids); free(sl); free(lg); free(hs);
            llama_ctx_free(&c);
        }
    }
    fx_free(mask); fx_free(pos); fx_free(hidden); fx_free(logits); fx_free(gen); fx_free(gen_logits);
    llama_model_free(&m);
    safetensors_close(st);
    fx_close(&fx);
}

static void test_llava_text(void) { run_vlm("llava", "language_model.model.", "language_model.lm_head.weight"); }
static void test_llava_batch_text(void) { run_vlm("llava_batch", "language_model.model.", "language_model.lm_head.weight"); }
static void test_idefics3_text(void) { run_vlm("idefics3", "model.text_model.", "lm_head.weight"); }

/* ---- synthetic models (no fixtures needed) -------------------------------------------- */

static uint32_t rng_state = 12345;
static float frand(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return ((rng_state >> 8) / 16777216.0f) * 2.0f - 1.0f;
}

static const char *TINY_CFG = "{\"model_type\":\"llama\",\"vocab_size\":40,\"hidden_size\":16,\"intermediate_size\":24,"
                              "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":1,"
                              "\"rms_norm_eps\":1e-5,\"tie_word_embeddings\":true}";

enum { MAXT = 32 };
typedef struct tiny {
    char names[MAXT][80];
    const char *np[MAXT];
    tensor t[MAXT];
    float *data[MAXT];
    int n;
} tiny;

static void tiny_add(tiny *w, const char *name, int64_t d0, int64_t d1, int norm) {
    int64_t shape[2] = {d0, d1};
    int nd = d1 ? 2 : 1;
    size_t n = (size_t)d0 * (d1 ? d1 : 1);
    float *f = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) f[i] = norm ? 1.0f + 0.1f * frand() : 0.3f * frand();
    snprintf(w->names[w->n], sizeof w->names[0], "%s", name);
    w->np[w->n] = w->names[w->n];
    w->t[w->n] = tensor_view(DT_F32, f, nd, shape);
    w->data[w->n] = f;
    w->n++;
}

/* tiny model weights; skip = name of a tensor to leave out, bad = one to give a wrong shape */
static void tiny_build(tiny *w, const char *skip, const char *bad) {
    memset(w, 0, sizeof *w);
    char nm[80];
    const struct { const char *n; int64_t d0, d1; int norm; } spec[] = {
        {"input_layernorm.weight", 16, 0, 1},  {"self_attn.q_proj.weight", 16, 16, 0},
        {"self_attn.k_proj.weight", 4, 16, 0}, {"self_attn.v_proj.weight", 4, 16, 0},
        {"self_attn.o_proj.weight", 16, 16, 0}, {"post_attention_layernorm.weight", 16, 0, 1},
        {"mlp.gate_proj.weight", 24, 16, 0},   {"mlp.up_proj.weight", 24, 16, 0},
        {"mlp.down_proj.weight", 16, 24, 0}};
    tiny_add(w, "model.embed_tokens.weight", 40, 16, 0);
    tiny_add(w, "model.norm.weight", 16, 0, 1);
    for (int l = 0; l < 2; l++)
        for (size_t i = 0; i < sizeof spec / sizeof spec[0]; i++) {
            snprintf(nm, sizeof nm, "model.layers.%d.%s", l, spec[i].n);
            if (skip && !strcmp(skip, nm)) continue;
            int64_t d0 = spec[i].d0;
            if (bad && !strcmp(bad, nm)) d0 += 1;
            tiny_add(w, nm, d0, spec[i].d1, spec[i].norm);
        }
}

static void tiny_free(tiny *w) {
    for (int i = 0; i < w->n; i++) free(w->data[i]);
}

static int tiny_config(hf_text_config *cfg) {
    vlmc_error err = {0};
    cJSON *o = cJSON_Parse(TINY_CFG);
    int ok = CHECK(hf_text_config_parse(o, "llama", "tiny", cfg, &err) == VLMC_OK, "%s", err.message);
    cJSON_Delete(o);
    return ok ? 0 : -1;
}

/* A missing or misshaped tensor is an error naming the file and the tensor. */
static void test_load_errors(void) {
    hf_text_config cfg;
    if (tiny_config(&cfg)) return;
    char path[512];
    vlmc_error err = {0};
    const char *cases[2][2] = {{"model.layers.1.mlp.up_proj.weight", NULL}, {NULL, "model.layers.0.self_attn.k_proj.weight"}};
    for (int k = 0; k < 2; k++) {
        tiny w;
        tiny_build(&w, cases[k][0], cases[k][1]);
        snprintf(path, sizeof path, "%s/tiny%d.safetensors", test_tmpdir(), k);
        CHECK(safetensors_write(path, (size_t)w.n, w.np, w.t, NULL, &err) == VLMC_OK, "%s", err.message);
        safetensors *st = NULL;
        CHECK(safetensors_open(path, &st, &err) == VLMC_OK, "%s", err.message);
        llama_model m;
        vlmc_status s = st ? llama_model_load(&m, &cfg, st, "model.", "lm_head.weight", &err) : VLMC_ERR_IO;
        const char *tname = cases[k][0] ? cases[k][0] : cases[k][1];
        CHECK(s != VLMC_OK, "loading %s should fail", tname);
        CHECK(strstr(err.message, tname) != NULL, "error does not name the tensor: %s", err.message);
        CHECK(strstr(err.message, "tiny") != NULL && strstr(err.message, ".safetensors") != NULL,
              "error does not name the file: %s", err.message);
        printf("    %s\n", err.message);
        safetensors_close(st);
        tiny_free(&w);
    }
    /* a weight stored as an integer type */
    tiny w;
    tiny_build(&w, NULL, NULL);
    for (int i = 0; i < w.n; i++)
        if (!strcmp(w.names[i], "model.norm.weight")) w.t[i].type = DT_I32;
    snprintf(path, sizeof path, "%s/tiny_i32.safetensors", test_tmpdir());
    CHECK(safetensors_write(path, (size_t)w.n, w.np, w.t, NULL, &err) == VLMC_OK, "%s", err.message);
    safetensors *st = NULL;
    if (CHECK(safetensors_open(path, &st, &err) == VLMC_OK, "%s", err.message)) {
        llama_model m;
        CHECK(llama_model_load(&m, &cfg, st, "model.", NULL, &err) == VLMC_ERR_UNSUPPORTED, "I32 weight accepted");
        CHECK(strstr(err.message, "model.norm.weight") && strstr(err.message, "tiny_i32.safetensors") &&
                  strstr(err.message, "I32"), "message: %s", err.message);
        printf("    %s\n", err.message);
    }
    safetensors_close(st);
    tiny_free(&w);
}

/* KV cache: a clear error when full; prefill + decode equals one pass (tied LM head, GQA 4:1). */
static void test_kv_cache_synthetic(void) {
    hf_text_config cfg;
    if (tiny_config(&cfg)) return;
    tiny w;
    tiny_build(&w, NULL, NULL);
    char path[512];
    vlmc_error err = {0};
    snprintf(path, sizeof path, "%s/tiny.safetensors", test_tmpdir());
    CHECK(safetensors_write(path, (size_t)w.n, w.np, w.t, NULL, &err) == VLMC_OK, "%s", err.message);
    safetensors *st = NULL;
    if (!CHECK(safetensors_open(path, &st, &err) == VLMC_OK, "%s", err.message)) { tiny_free(&w); return; }
    llama_model m;
    if (!CHECK(llama_model_load(&m, &cfg, st, "model.", NULL, &err) == VLMC_OK, "%s", err.message)) goto out;
    llama_ctx c;
    CHECK(llama_ctx_init(&c, &m, 1, 8, 0, &err) == VLMC_OK, "%s", err.message);
    int32_t ids[8] = {1, 5, 9, 33, 2, 7, 11, 39};
    float full[8 * 40], step[40];
    CHECK(llama_forward(&c, &(llama_input){.n_tokens = 8, .tokens = ids}, &(llama_output){.logits = full}, &err) ==
              VLMC_OK, "%s", err.message);
    /* full now: one more token must fail with a clear message */
    vlmc_status s = llama_forward(&c, &(llama_input){.n_tokens = 1, .tokens = ids}, &(llama_output){.logits = step}, &err);
    CHECK(s == VLMC_ERR_LIMIT, "expected VLMC_ERR_LIMIT, got %d", (int)s);
    CHECK(strstr(err.message, "KV cache full") && strstr(err.message, "n_ctx = 8"), "message: %s", err.message);
    printf("    %s\n", err.message);
    /* token-by-token equals the full pass */
    llama_ctx_reset(&c);
    float worst = 0;
    for (int t = 0; t < 8; t++) {
        CHECK(llama_forward(&c, &(llama_input){.n_tokens = 1, .tokens = ids + t}, &(llama_output){.logits = step},
                            &err) == VLMC_OK, "%s", err.message);
        float d = rel_diff(step, full + t * 40, 1, 40, NULL);
        if (d > worst) worst = d;
    }
    CHECK(worst <= 1e-5f, "token-by-token differs from the full pass: %g", worst);
    /* an out-of-vocabulary id is refused */
    llama_ctx_reset(&c);
    int32_t bad = 40;
    CHECK(llama_forward(&c, &(llama_input){.n_tokens = 1, .tokens = &bad}, &(llama_output){.logits = step}, &err) ==
              VLMC_ERR_ARG, "bad token id accepted");
    /* input embeddings instead of ids give the same result */
    float emb[8 * 16], full2[8 * 40];
    CHECK(llama_embed_tokens(&m, ids, 8, emb, &err) == VLMC_OK, "%s", err.message);
    llama_ctx_reset(&c);
    CHECK(llama_forward(&c, &(llama_input){.n_tokens = 8, .embeds = emb}, &(llama_output){.logits = full2}, &err) ==
              VLMC_OK, "%s", err.message);
    CHECK(rel_diff(full2, full, 8, 40, NULL) == 0.0f, "embeddings path differs");
    llama_ctx_free(&c);
    llama_model_free(&m);
out:
    safetensors_close(st);
    tiny_free(&w);
}

/* Dynamic rope keeps transformers' state: the frequencies grow with the longest sequence
 * seen (max position + 1 > max_position_embeddings) and return to the originals after a reset. */
static void test_dynamic_rope_state(void) {
    hf_text_config cfg;
    if (tiny_config(&cfg)) return;
    cfg.max_position_embeddings = 4;
    cfg.rope_scaling.type = ROPE_DYNAMIC;
    cfg.rope_scaling.factor = 2.0;
    tiny w;
    tiny_build(&w, NULL, NULL);
    char path[512];
    vlmc_error err = {0};
    snprintf(path, sizeof path, "%s/tiny_dyn.safetensors", test_tmpdir());
    CHECK(safetensors_write(path, (size_t)w.n, w.np, w.t, NULL, &err) == VLMC_OK, "%s", err.message);
    safetensors *st = NULL;
    llama_model m;
    if (CHECK(safetensors_open(path, &st, &err) == VLMC_OK, "%s", err.message) &&
        CHECK(llama_model_load(&m, &cfg, st, "model.", NULL, &err) == VLMC_OK, "%s", err.message)) {
        llama_ctx c;
        CHECK(llama_ctx_init(&c, &m, 1, 16, 0, &err) == VLMC_OK, "%s", err.message);
        float f0[2], f6[2], af, lg[6 * 40], step[40];
        rope_inv_freq(&cfg, 0, f0, &af, &err);
        rope_inv_freq(&cfg, 6, f6, &af, &err);
        CHECK(f6[1] < f0[1], "a longer sequence lowers the frequencies");
        int32_t ids[6] = {1, 5, 9, 33, 2, 7};
        CHECK(llama_forward(&c, &(llama_input){.n_tokens = 3, .tokens = ids}, &(llama_output){.logits = lg}, &err) ==
                  VLMC_OK, "%s", err.message);
        CHECK(c.inv_freq[1] == f0[1], "3 tokens: original frequencies");
        for (int t = 3; t < 6; t++)
            CHECK(llama_forward(&c, &(llama_input){.n_tokens = 1, .tokens = ids + t}, &(llama_output){.logits = step},
                                &err) == VLMC_OK, "%s", err.message);
        CHECK(c.inv_freq[1] == f6[1] && c.rope_seq_cached == 6, "6 tokens: frequencies for seq_len 6");
        /* one pass over all 6 uses the grown frequencies at every position, so the last
         * logits differ from token-by-token (as in transformers) */
        llama_ctx_reset(&c);
        CHECK(c.inv_freq[1] == f0[1], "reset restores the original frequencies");
        CHECK(llama_forward(&c, &(llama_input){.n_tokens = 6, .tokens = ids}, &(llama_output){.logits = lg}, &err) ==
                  VLMC_OK, "%s", err.message);
        CHECK(rel_diff(lg + 5 * 40, step, 1, 40, NULL) > 1e-6f, "full pass vs incremental should differ");
        llama_ctx_free(&c);
        llama_model_free(&m);
    }
    safetensors_close(st);
    tiny_free(&w);
}

/* matmul: f32 / f16 / bf16 weights, gemv (M small) and sgemm (M large) paths vs a double reference. */
static void test_matmul_dtypes(void) {
    const int N = 37, K = 70;
    float *Wf = malloc((size_t)N * K * sizeof(float));
    uint16_t *Wb = malloc((size_t)N * K * 2), *Wh = malloc((size_t)N * K * 2);
    float *X = malloc(20 * K * sizeof(float)), *Y = malloc(20 * N * sizeof(float)), bias[37];
    for (int i = 0; i < N * K; i++) {
        Wb[i] = f32_to_bf16(frand());
        Wf[i] = bf16_to_f32(Wb[i]); /* exactly representable in all three */
        Wh[i] = f32_to_f16(Wf[i]);
        Wf[i] = f16_to_f32(Wh[i]);
        Wb[i] = f32_to_bf16(Wf[i]);
    }
    for (int i = 0; i < 20 * K; i++) X[i] = frand();
    for (int i = 0; i < N; i++) bias[i] = frand();
    int64_t sh[2] = {N, K}, sb[1] = {N};
    tensor ws[3] = {tensor_view(DT_F32, Wf, 2, sh), tensor_view(DT_BF16, Wb, 2, sh), tensor_view(DT_F16, Wh, 2, sh)};
    tensor bt = tensor_view(DT_F32, bias, 1, sb);
    size_t sn = 3 * (size_t)K; /* small scratch: several tiles */
    float *scratch = malloc(sn * sizeof(float));
    int Ms[3] = {1, 3, 20};
    for (int wi = 0; wi < 3; wi++)
        for (int mi = 0; mi < 3; mi++) {
            int M = Ms[mi];
          for (int port = 0; port < 2; port++) {
            if (port) matmul_f32_portable(Y, X, M, &ws[wi], &bt);
            else matmul_f32(Y, X, M, &ws[wi], &bt, scratch, sn);
            double worst = 0;
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++) {
                    double r = bias[n];
                    for (int k = 0; k < K; k++) r += (double)X[m * K + k] * Wf[n * K + k];
                    double d = fabs(r - Y[m * N + n]);
                    if (d > worst) worst = d;
                }
            CHECK(worst < 1e-4, "matmul%s %s M=%d: max diff %g", port ? " (portable)" : "", dtype_name(ws[wi].type), M,
                  worst);
          }
        }
    free(Wf); free(Wb); free(Wh); free(X); free(Y); free(scratch);
}

/* The two attention kernels (row by row, sgemm) agree: GQA, left padding (one sequence has
 * fully masked queries), a sliding window and keys already cached. */
static void test_attention_kernels(void) {
    enum { B = 2, T = 20, NP = 5, NC = 32, H = 4, KVH = 2, HD = 8 };
    float *q = malloc(sizeof(float) * B * T * H * HD), *k = malloc(sizeof(float) * B * KVH * NC * HD);
    float *v = malloc(sizeof(float) * B * KVH * NC * HD), *o1 = malloc(sizeof(float) * B * T * H * HD);
    float *o2 = malloc(sizeof(float) * B * T * H * HD), *S = malloc(sizeof(float) * T * NC);
    float *sc = malloc(sizeof(float) * 4 * NC);
    uint8_t mask[B * NC];
    for (int i = 0; i < B * T * H * HD; i++) q[i] = frand();
    for (int i = 0; i < B * KVH * NC * HD; i++) { k[i] = frand(); v[i] = frand(); }
    for (int b = 0; b < B; b++)
        for (int j = 0; j < NC; j++) mask[b * NC + j] = b == 0 ? 1 : j >= 12; /* sequence 1: 12 padding slots */
    for (int window = 0; window <= 6; window += 6)
      for (int rows = 3; rows <= T; rows += T - 3) {
        attn_args a = {.B = B, .T = T, .n_past = NP, .n_ctx = NC, .n_heads = H, .n_kv_heads = KVH, .head_dim = HD,
                       .window = window, .scale = 0.35f, .n_threads = 4};
        attention_f32(o1, q, k, v, mask, &a, sc);
        attention_f32_gemm(o2, q, k, v, mask, &a, S, rows);
        float d = max_abs_diff(o1, o2, (size_t)B * T * H * HD);
        CHECK(d < 1e-5f, "window %d, blocks of %d: kernels differ by %g", window, rows, d);
      }
    free(q); free(k); free(v); free(o1); free(o2); free(S); free(sc);
}

/* rope: llama3 inv_freq (all three branches) and yarn / linear / dynamic basics. */
static void test_rope_types(void) {
    hf_text_config cfg;
    vlmc_error err = {0};
    cJSON *o = cJSON_Parse("{\"model_type\":\"llama\",\"hidden_size\":64,\"num_attention_heads\":4,"
                           "\"max_position_embeddings\":100,\"rope_scaling\":{\"rope_type\":\"dynamic\",\"factor\":2.0}}");
    CHECK(hf_text_config_parse(o, "llama", "cfg", &cfg, &err) == VLMC_OK, "%s", err.message);
    cJSON_Delete(o);
    float a[8], b[8], af;
    CHECK(rope_inv_freq(&cfg, 0, a, &af, &err) == VLMC_OK, "%s", err.message);
    CHECK(fabsf(a[0] - 1.0f) < 1e-7f && fabsf(a[1] - 1.0f / powf(10000.0f, 2.0f / 16.0f)) < 1e-6f * a[1],
          "dynamic at init = default frequencies");
    CHECK(rope_inv_freq(&cfg, 150, b, &af, &err) == VLMC_OK, "%s", err.message);
    double base = 10000.0 * pow(2.0 * 150 / 100 - 1.0, 16.0 / 14.0);
    CHECK(fabsf(b[3] - (float)(1.0 / pow(base, 6.0 / 16.0))) < 1e-6f * b[3], "dynamic at 150: %g", b[3]);
    cfg.rope_scaling.type = ROPE_YARN;
    cfg.rope_scaling.factor = 4.0;
    cfg.rope_scaling.attention_factor = -1;
    CHECK(rope_inv_freq(&cfg, 0, b, &af, &err) == VLMC_OK, "%s", err.message);
    CHECK(fabsf(af - (float)(0.1 * log(4.0) + 1.0)) < 1e-7f, "yarn attention factor %g", af);
    CHECK(fabsf(b[0] - a[0]) < 1e-7f && fabsf(b[7] - a[7] / 4) < 1e-6f * b[7], "yarn ends: %g %g", b[0], b[7]);
    cfg.rope_scaling.type = ROPE_LINEAR;
    CHECK(rope_inv_freq(&cfg, 0, b, &af, &err) == VLMC_OK && b[2] == a[2] / 4.0f, "linear");
}

/* f16 weights end to end: the llama fixture's weights rounded to f16, stored once as F16
 * and once as F32 (same values), must give the same logits, prefill and decode. */
static void test_f16_weights(void) {
    const char *p = shared_path("fixtures/llama");
    if (!p) return;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", p);
    vlmc_error err = {0};
    hf_config cfg;
    safetensors *st = NULL;
    if (!CHECK(hf_config_load(dir, &cfg, &err) == VLMC_OK && safetensors_open(dir, &st, &err) == VLMC_OK, "%s",
               err.message))
        return;
    size_t n = safetensors_count(st);
    const char **names = calloc(n, sizeof *names);
    tensor *t16 = calloc(n, sizeof *t16), *t32 = calloc(n, sizeof *t32);
    for (size_t i = 0; i < n; i++) {
        const st_entry *e = safetensors_at(st, i);
        size_t k = (size_t)tensor_numel(&e->t);
        uint16_t *h = malloc(k * 2);
        float *f = malloc(k * 4);
        for (size_t j = 0; j < k; j++) {
            h[j] = f32_to_f16(((const float *)e->t.data)[j]);
            f[j] = f16_to_f32(h[j]);
        }
        names[i] = e->name;
        t16[i] = tensor_view(DT_F16, h, e->t.ndim, e->t.shape);
        t32[i] = tensor_view(DT_F32, f, e->t.ndim, e->t.shape);
    }
    char p16[600], p32[600];
    snprintf(p16, sizeof p16, "%s/llama_f16.safetensors", test_tmpdir());
    snprintf(p32, sizeof p32, "%s/llama_f16_as_f32.safetensors", test_tmpdir());
    CHECK(safetensors_write(p16, n, names, t16, NULL, &err) == VLMC_OK, "%s", err.message);
    CHECK(safetensors_write(p32, n, names, t32, NULL, &err) == VLMC_OK, "%s", err.message);
    safetensors *s16 = NULL, *s32 = NULL;
    llama_model m16, m32;
    if (CHECK(safetensors_open(p16, &s16, &err) == VLMC_OK && safetensors_open(p32, &s32, &err) == VLMC_OK, "%s",
              err.message) &&
        CHECK(llama_model_load(&m16, &cfg.text, s16, "model.", "lm_head.weight", &err) == VLMC_OK, "%s", err.message)) {
        if (CHECK(llama_model_load(&m32, &cfg.text, s32, "model.", "lm_head.weight", &err) == VLMC_OK, "%s",
                  err.message)) {
            CHECK(m16.layers[0].wq.type == DT_F16 && m32.layers[0].wq.type == DT_F32, "dtypes as stored");
            const int T = 12, NG = 8, V = m16.vocab;
            int32_t ids[12] = {1, 40, 3, 77, 200, 9, 18, 311, 5, 64, 120, 7}, g16[8], g32[8];
            float *a = malloc((size_t)T * V * 4), *b = malloc((size_t)T * V * 4);
            float *sa = malloc((size_t)NG * V * 4), *sb = malloc((size_t)NG * V * 4);
            llama_ctx c16, c32;
            CHECK(llama_ctx_init(&c16, &m16, 1, 32, 0, &err) == VLMC_OK, "%s", err.message);
            CHECK(llama_ctx_init(&c32, &m32, 1, 32, 0, &err) == VLMC_OK, "%s", err.message);
            llama_forward(&c16, &(llama_input){.n_tokens = T, .tokens = ids}, &(llama_output){.logits = a}, &err);
            llama_forward(&c32, &(llama_input){.n_tokens = T, .tokens = ids}, &(llama_output){.logits = b}, &err);
            float d = rel_diff(a, b, T, V, NULL);
            llama_ctx_reset(&c16);
            llama_ctx_reset(&c32);
            CHECK(llama_generate_greedy(&c16, &(llama_input){.n_tokens = T, .tokens = ids}, NG, g16, sa, &err) == VLMC_OK,
                  "%s", err.message);
            CHECK(llama_generate_greedy(&c32, &(llama_input){.n_tokens = T, .tokens = ids}, NG, g32, sb, &err) == VLMC_OK,
                  "%s", err.message);
            float dg = rel_diff(sa, sb, NG, V, NULL);
            printf("    f16 weights vs the same values in f32: logits %.3g, step logits %.3g\n", d, dg);
            CHECK(d <= 1e-5f && dg <= 1e-5f && !memcmp(g16, g32, sizeof g16), "f16 path differs: %g %g", d, dg);
            free(a); free(b); free(sa); free(sb);
            llama_ctx_free(&c16);
            llama_ctx_free(&c32);
            llama_model_free(&m32);
        }
        llama_model_free(&m16);
    }
    safetensors_close(s16);
    safetensors_close(s32);
    for (size_t i = 0; i < n; i++) { free(t16[i].data); free(t32[i].data); }
    free(t16); free(t32); free(names);
    safetensors_close(st);
}

/* Public API: vlmc_model_load / vlmc_dump on the llama fixture, read back with the fixture reader. */
static void test_public_dump(void) {
    const char *p = shared_path("fixtures/llama");
    if (!p) return;
    char dir[1024], ref[1100], out[600];
    snprintf(dir, sizeof dir, "%s", p);
    snprintf(ref, sizeof ref, "%s/reference", dir);
    snprintf(out, sizeof out, "%s/dump_llama", test_tmpdir());
    vlmc_error err = {0};
    vlmc_model *m = NULL;
    CHECK(vlmc_model_load(dir, NULL, &m, &err) == VLMC_OK, "%s", err.message);
    vlmc_model_free(m);
    const char *llava = shared_path("fixtures/llava");
    if (llava) {
        char ld[1024];
        snprintf(ld, sizeof ld, "%s", llava);
        CHECK(vlmc_model_load(ld, NULL, &m, &err) == VLMC_OK && vlmc_model_has_vision(m) &&
                  !strcmp(vlmc_model_type(m), "llava") && !vlmc_model_tokenizer(m), "a VLM folder: %s", err.message);
        vlmc_model_free(m);
        m = NULL;
    }
    CHECK(vlmc_model_load("/nonexistent/model", NULL, &m, &err) != VLMC_OK && strstr(err.message, "/nonexistent/model"),
          "missing folder: %s", err.message);
    /* the inputs alone (the dump refuses arrays it cannot use, such as the reference's outputs) */
    char in[700];
    snprintf(in, sizeof in, "%s/dump_llama_in", test_tmpdir());
    array_set set = {0};
    if (!CHECK(arrays_read_dir(ref, 1, &set, &err) == VLMC_OK, "%s", err.message)) return;
    named_array keep[2] = {*array_set_find(&set, "input_ids"), *array_set_find(&set, "attention_mask")};
    keep[0].file = keep[1].file = NULL;
    CHECK(arrays_write_dir(in, NULL, NULL, keep, 2, &err) == VLMC_OK, "%s", err.message);
    array_set_free(&set);
    if (!CHECK(vlmc_dump(dir, in, out, 16, 0, &err) == VLMC_OK, "%s", err.message)) return;
    fixture a, b;
    if (!CHECK(fx_open(&a, out) == 0 && fx_open(&b, ref) == 0, "manifests")) return;
    const char *names[4] = {"logits", "hidden_states", "generation_step_logits", "generated_ids"};
    for (int i = 0; i < 4; i++) {
        fx_array *x = fx_read(&a, names[i]), *y = fx_read(&b, names[i]);
        if (CHECK(x && y && x->n == y->n && x->ndim == y->ndim && !strcmp(x->dtype, y->dtype), "%s: array", names[i])) {
            if (i == 3) CHECK(!memcmp(x->data, y->data, x->n * 4), "generated_ids differ");
            else {
                float d = rel_diff(x->data, y->data, 1, x->n, NULL);
                CHECK(d <= TOL, "%s rel diff %g", names[i], d);
            }
        }
        fx_free(x);
        fx_free(y);
    }
    fx_close(&a);
    fx_close(&b);
}

int main(void) {
    tests_begin("decoder");
    TEST_RUN(test_matmul_dtypes);
    TEST_RUN(test_rope_types);
    TEST_RUN(test_attention_kernels);
    TEST_RUN(test_load_errors);
    TEST_RUN(test_kv_cache_synthetic);
    TEST_RUN(test_dynamic_rope_state);
    TEST_RUN(test_llama);
    TEST_RUN(test_qwen2);
    TEST_RUN(test_mistral);
    TEST_RUN(test_llama_rope_scaling);
    TEST_RUN(test_llama_rope_scaling_dynamic);
    TEST_RUN(test_llama_bf16);
    TEST_RUN(test_train_batch_logits);
    TEST_RUN(test_left_padded_batch);
    TEST_RUN(test_llava_text);
    TEST_RUN(test_llava_batch_text);
    TEST_RUN(test_idefics3_text);
    TEST_RUN(test_f16_weights);
    TEST_RUN(test_public_dump);
    return tests_end();
}
