/* The trainer end to end on a tiny random Llama (the llama fixture's shape: D 64, 2 layers, GQA 4/2) with
 * the tokenizer_gpt2 fixture's tokenizer and a ChatML template: label masking, overfitting 8 examples
 * (full and LoRA), bit-identical resume, export → reload.  The runs use one thread (deterministic) and a
 * smaller configuration under AddressSanitizer (see SMALL). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "core/file.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "models/llama.h"
#include "train/trainer.h"
#include "vlmc.h"

#define SMALL TESTS_UNDER_ASAN

static const char *CHATML =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

static uint64_t rs = 99;
static float randn(void) { /* sum of uniforms, ~N(0, 1) */
    float s = 0;
    for (int i = 0; i < 12; i++) {
        rs = rs * 6364136223846793005ull + 1442695040888963407ull;
        s += (float)((rs >> 40) * (1.0 / 16777216.0));
    }
    return s - 6.0f;
}

static char model_dir[600], data_path[700];

static bool copy_to(const char *src_dir, const char *name, const char *dst_dir) {
    char a[1200], b[1200];
    snprintf(a, sizeof a, "%s/%s", src_dir, name);
    snprintf(b, sizeof b, "%s/%s", dst_dir, name);
    size_t n;
    char *d = test_read_file(a, &n);
    if (!d) return false;
    vlmc_error e;
    bool ok = !file_write_all(b, d, n, &e);
    free(d);
    return ok;
}

/* A random LlamaForCausalLM of the llama fixture's shape over the gpt2 fixture's 563 ids. */
static bool make_model(void) {
    if (model_dir[0]) return true;
    const char *tk = shared_path("fixtures/tokenizer_gpt2");
    if (!tk) return false;
    snprintf(model_dir, sizeof model_dir, "%s/tiny_llama", test_tmpdir());
    vlmc_error e = {0};
    file_mkdirs(model_dir, &e);
    const char *files[] = {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json",
                           "added_tokens.json"};
    for (int i = 0; i < 5; i++)
        if (!CHECK(copy_to(tk, files[i], model_dir), "copy %s", files[i])) return false;
    char p[800];
    snprintf(p, sizeof p, "%s/chat_template.jinja", model_dir);
    file_write_all(p, CHATML, strlen(CHATML), &e);
    const int V = 563, D = 64, I = 160, L = 2, QD = 64, KD = 32;
    char cfg[1024];
    int n = snprintf(cfg, sizeof cfg,
                     "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"vocab_size\": %d, "
                     "\"hidden_size\": %d, \"intermediate_size\": %d, \"num_hidden_layers\": %d, "
                     "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 16, \"hidden_act\": "
                     "\"silu\", \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"max_position_embeddings\": 512, "
                     "\"tie_word_embeddings\": false, \"bos_token_id\": 0, \"eos_token_id\": 0, \"pad_token_id\": 0, "
                     "\"torch_dtype\": \"float32\"}\n",
                     V, D, I, L);
    snprintf(p, sizeof p, "%s/config.json", model_dir);
    file_write_all(p, cfg, (size_t)n, &e);
    const char *names[32];
    char nbuf[32][96];
    tensor ts[32];
    float *bufs[32];
    int k = 0;
#define T2(name, a, b, norm)                                                                           \
    do {                                                                                               \
        snprintf(nbuf[k], sizeof nbuf[k], "%s", name);                                                 \
        int64_t sh[2] = {a, b};                                                                        \
        size_t cnt = (size_t)(a) * (size_t)((b) > 0 ? (b) : 1);                                        \
        bufs[k] = malloc(cnt * sizeof(float));                                                         \
        for (size_t j = 0; j < cnt; j++) bufs[k][j] = (norm) ? 1.0f : std * randn();                   \
        ts[k] = tensor_view(DT_F32, bufs[k], (b) > 0 ? 2 : 1, sh);                                     \
        names[k] = nbuf[k];                                                                            \
        k++;                                                                                           \
    } while (0)
    /* HF's init (std 0.02) except the output layer: a random lm_head of std 0.02 bounds the logits of a
     * normalised hidden state (|h| = 8) to about 0.02 · 8 · 8 = 1.3, so that a frozen one (LoRA) could not
     * bring the loss below ~log(563) - 1.3; a trained model's output layer is far larger. */
    float std = 0.02f;
    T2("model.embed_tokens.weight", V, D, 0);
    T2("model.norm.weight", D, 0, 1);
    std = 0.5f;
    T2("lm_head.weight", V, D, 0);
    std = 0.02f;
    for (int l = 0; l < L; l++) {
        char s[96];
#define LN(suffix, a, b, norm)                                                  \
        snprintf(s, sizeof s, "model.layers.%d.%s", l, suffix);                 \
        T2(s, a, b, norm)
        LN("input_layernorm.weight", D, 0, 1);
        LN("post_attention_layernorm.weight", D, 0, 1);
        LN("self_attn.q_proj.weight", QD, D, 0);
        LN("self_attn.k_proj.weight", KD, D, 0);
        LN("self_attn.v_proj.weight", KD, D, 0);
        LN("self_attn.o_proj.weight", D, QD, 0);
        LN("mlp.gate_proj.weight", I, D, 0);
        LN("mlp.up_proj.weight", I, D, 0);
        LN("mlp.down_proj.weight", D, I, 0);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", model_dir);
    bool ok = CHECK(!safetensors_write(p, (size_t)k, names, ts, NULL, &e), "%s", e.message);
    for (int i = 0; i < k; i++) free(bufs[i]);
    /* 8 short conversations */
    static const char *qa[8][2] = {
        {"What is the capital of France?", "Paris."},        {"Name a primary color.", "Red is one."},
        {"How many legs does a cat have?", "Four legs."},    {"Say hello.", "Hello there!"},
        {"What is two plus two?", "It is four."},            {"Which animal barks?", "A dog barks."},
        {"What color is the sky?", "The sky is blue."},      {"Opposite of hot?", "Cold."},
    };
    snprintf(data_path, sizeof data_path, "%s/train.jsonl", test_tmpdir());
    FILE *f = fopen(data_path, "w");
    for (int i = 0; i < 8; i++)
        fprintf(f,
                "{\"messages\": [{\"role\": \"user\", \"content\": \"%s\"}, {\"role\": \"assistant\", \"content\": "
                "\"%s\"}]}\n",
                qa[i][0], qa[i][1]);
    fclose(f);
    return ok;
}

static void test_label_masking(void) {
    if (!make_model()) return;
    vlmc_error e = {0};
    vlmc_tokenizer *tok = NULL;
    chat_template *ct = NULL;
    conv_dataset d;
    memset(&d, 0, sizeof d);
    if (!CHECK(!vlmc_tokenizer_load(model_dir, &tok, &e) && !chat_template_load(model_dir, &ct, &e) &&
                   !conv_dataset_load(data_path, NULL, &d, &e),
               "%s", e.message))
        goto out;
    tr_text_opts o = {.content_as_string = true, .max_length = 512, .image_token = -1};
    tr_example ex;
    if (!CHECK(!tr_build_example(&d.samples[0], ct, tok, &o, &ex, &e), "%s", e.message)) goto out;
    /* "<|im_start|>user\n...<|im_end|>\n<|im_start|>assistant\n" is the prompt; "Paris.<|im_end|>\n" the target */
    int32_t *ids = NULL, *ans = NULL;
    size_t n_ids = 0, n_ans = 0;
    const char *full = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";
    const char *answer = "Paris.<|im_end|>\n";
    vlmc_tokenizer_encode(tok, full, strlen(full), 0, &ids, &n_ids, &e);
    vlmc_tokenizer_encode(tok, answer, strlen(answer), 0, &ans, &n_ans, &e);
    CHECK((size_t)ex.n == n_ids + n_ans, "length %d vs %zu + %zu", ex.n, n_ids, n_ans);
    bool ok = true;
    for (size_t i = 0; i < n_ids && i < (size_t)ex.n; i++) ok &= ex.ids[i] == ids[i] && ex.labels[i] == -100;
    for (size_t i = 0; i < n_ans && n_ids + i < (size_t)ex.n; i++)
        ok &= ex.ids[n_ids + i] == ans[i] && ex.labels[n_ids + i] == ans[i];
    CHECK(ok, "prompt masked with -100, the answer and <|im_end|> are targets");
    CHECK(ex.n_targets == (int64_t)n_ans, "targets %lld", (long long)ex.n_targets);
    tr_example_free(&ex);
    o.train_on_prompt = true;
    if (CHECK(!tr_build_example(&d.samples[0], ct, tok, &o, &ex, &e), "%s", e.message)) {
        CHECK(ex.n_targets == ex.n - 1, "train_on_prompt: every token but the first is a target");
        tr_example_free(&ex);
    }
    free(ids);
    free(ans);
out:
    conv_dataset_free(&d);
    if (tok) vlmc_tokenizer_free(tok);
    if (ct) chat_template_free(ct);
}

typedef struct losses { double v[1024]; int64_t step[1024]; int n; } losses;
static int record(const vlmc_train_progress *p, void *ud) {
    losses *l = ud;
    if (!p->is_eval && l->n < 1024) {
        l->step[l->n] = p->step;
        l->v[l->n++] = p->loss;
    }
    return 0;
}

static void base_params(vlmc_train_params *p, const char *out) {
    vlmc_train_params_default(p);
    p->model_dir = model_dir;
    p->data_path = data_path;
    p->out_dir = out;
    p->n_threads = 1;
    p->quiet = 1;
    p->seed = 7;
}

static void overfit(const char *stage, double lr, const char *sub) {
    if (!make_model()) return;
    char out[800];
    snprintf(out, sizeof out, "%s/%s", test_tmpdir(), sub);
    vlmc_train_params p;
    base_params(&p, out);
    p.stage = stage;
    p.lr = lr;
    p.max_steps = SMALL ? 60 : 200;
    p.batch_size = 4;
    p.grad_accum = 2;
    p.warmup_steps = 10;
    p.lr_scheduler_type = "cosine";
    p.lora_r = 16;
    p.lora_alpha = 32;
    p.lora_dropout = 0;
    losses l = {0};
    vlmc_error e = {0};
    if (!CHECK(!vlmc_train(&p, record, &l, &e), "%s", e.message)) return;
    CHECK(l.n == p.max_steps, "%d steps reported", l.n);
    const double last = l.v[l.n - 1];
    printf("    %s: loss %.4f -> %.4f after %d steps (8 examples)\n", stage, l.v[0], last, l.n);
    if (!SMALL) CHECK(last < 0.05, "%s: final training loss %g >= 0.05", stage, last);
    else CHECK(last < 0.5 * l.v[0], "%s: loss %g did not halve", stage, last);
    char f[900];
    snprintf(f, sizeof f, "%s/metrics.jsonl", out);
    CHECK(file_exists(f), "metrics.jsonl");
    snprintf(f, sizeof f, "%s/loss.svg", out);
    CHECK(file_exists(f), "loss.svg");
    snprintf(f, sizeof f, "%s/model.safetensors", out);
    CHECK(file_exists(f), "exported model");
}

static void test_overfit_full(void) { overfit("full", 3e-3, "full"); }
static void test_overfit_lora(void) { overfit("lora", 1e-2, "lora"); }

/* A run stopped at a checkpoint and resumed gives bit-identical losses afterwards (LoRA with dropout, so
 * the dropout RNG and the shuffling are exercised too). */
static void test_resume_bit_identical(void) {
    if (!make_model()) return;
    char a[800], b[800], ck[900];
    snprintf(a, sizeof a, "%s/resume_a", test_tmpdir());
    snprintf(b, sizeof b, "%s/resume_b", test_tmpdir());
    const int steps = SMALL ? 8 : 24, mid = steps / 2;
    vlmc_train_params p;
    vlmc_error e = {0};
    {
        for (int st = 0; st < 2; st++) {
            base_params(&p, a);
            p.stage = st ? "lora" : "full";
            p.lr = st ? 5e-3 : 1e-3;
            p.max_steps = steps;
            p.batch_size = 3; /* 8 examples: a short last micro-batch */
            p.grad_accum = 2;
            p.warmup_steps = 2;
            p.lora_dropout = 0.1;
            p.save_steps = mid;
            p.no_export = 1;
            losses la = {0}, lb = {0};
            if (!CHECK(!vlmc_train(&p, record, &la, &e), "%s", e.message)) return;
            snprintf(ck, sizeof ck, "%s/checkpoint-%d", a, mid);
            p.out_dir = b;
            p.resume_from = ck;
            if (!CHECK(!vlmc_train(&p, record, &lb, &e), "%s", e.message)) return;
            CHECK(la.n == steps && lb.n == steps - mid, "steps %d / %d", la.n, lb.n);
            int same = 0;
            for (int i = 0; i < lb.n; i++) same += lb.step[i] == la.step[mid + i] && lb.v[i] == la.v[mid + i];
            CHECK(same == lb.n, "%s: %d of %d resumed losses bit-identical", p.stage, same, lb.n);
            printf("    %s: resumed at step %d, %d/%d later losses bit-identical (last %.6f)\n", p.stage, mid, same,
                   lb.n, lb.n ? lb.v[lb.n - 1] : 0.0);
        }
    }
}

/* Export → reload: the exported folder loads in the training graph with the same logits as the trained
 * weights (checkpoint at the last step), and in the inference decoder (llama.c) with the same logits. */
static void test_export_reload(void) {
    if (!make_model()) return;
    char out[800], ck[900];
    snprintf(out, sizeof out, "%s/export", test_tmpdir());
    vlmc_train_params p;
    base_params(&p, out);
    p.lr = 1e-3;
    p.max_steps = 6;
    p.batch_size = 4;
    p.save_steps = 6;
    vlmc_error e = {0};
    if (!CHECK(!vlmc_train(&p, NULL, NULL, &e), "%s", e.message)) return;
    /* the exported weights are the trained ones, bit for bit */
    snprintf(ck, sizeof ck, "%s/checkpoint-6/trainable.safetensors", out);
    safetensors *c = NULL, *x = NULL;
    if (!CHECK(!safetensors_open(ck, &c, &e) && !safetensors_open(out, &x, &e), "%s", e.message)) return;
    int same = 0, n = (int)safetensors_count(c);
    for (int i = 0; i < n; i++) {
        const st_entry *a = safetensors_at(c, i), *b = safetensors_find(x, a->name);
        same += b && b->t.type == DT_F32 && tensor_numel(&a->t) == tensor_numel(&b->t) &&
                !memcmp(a->t.data, b->t.data, (size_t)tensor_numel(&a->t) * 4);
    }
    CHECK(same == n && n == 21, "%d of %d exported tensors equal the trained ones", same, n);
    safetensors_close(c);
    /* reload: training graph vs inference decoder on the exported folder */
    train_model m;
    const int T = 9;
    int32_t ids[9] = {1, 45, 300, 12, 7, 99, 2, 13, 400};
    if (!CHECK(!train_model_load(&m, out, NULL, 0, &e) && !train_model_set_stage(&m, TM_STAGE_FULL, &e) &&
                   !train_model_plan(&m, 1, T, 0, &e),
               "%s", e.message)) {
        safetensors_close(x);
        return;
    }
    train_batch bt = {.B = 1, .T = T, .input_ids = ids};
    CHECK(!train_model_forward(&m, &bt, NULL, &e), "%s", e.message);
    hf_config cfg;
    llama_model lm;
    llama_ctx ctx;
    float *logits = malloc(sizeof(float) * T * 563);
    if (CHECK(!hf_config_load(out, &cfg, &e) && !llama_model_load(&lm, &cfg.text, x, "model.", "lm_head.weight", &e),
              "%s", e.message)) {
        if (CHECK(!llama_ctx_init(&ctx, &lm, 1, 64, 0, &e), "%s", e.message)) {
            CHECK(!llama_forward(&ctx, &(llama_input){.n_tokens = T, .tokens = ids},
                                 &(llama_output){.logits = logits}, &e),
                  "%s", e.message);
            float d = max_abs_diff(logits, train_model_logits(&m), (size_t)T * 563), mx = max_abs(logits, (size_t)T * 563);
            printf("    export: 21/21 tensors bit-identical; inference vs training logits max diff %.2e (max %.2f)\n", d,
                   mx);
            CHECK(d <= 1e-5f * mx, "inference decoder on the export: logits differ by %g", d);
            llama_ctx_free(&ctx);
        }
        llama_model_free(&lm);
    }
    free(logits);
    train_model_free(&m);
    safetensors_close(x);
}

/* LoRA: the merged export equals base + adapter (PEFT layout) to float rounding. */
static void test_lora_export(void) {
    if (!make_model()) return;
    char out[800], ad[900];
    snprintf(out, sizeof out, "%s/lora", test_tmpdir());
    snprintf(ad, sizeof ad, "%s/adapter/adapter_model.safetensors", out);
    if (!file_exists(ad)) {
        test_skip("needs test_overfit_lora's output");
        return;
    }
    vlmc_error e = {0};
    char cfgp[900];
    snprintf(cfgp, sizeof cfgp, "%s/adapter/adapter_config.json", out);
    CHECK(file_exists(cfgp), "adapter_config.json");
    safetensors *a = NULL;
    if (!CHECK(!safetensors_open(ad, &a, &e), "%s", e.message)) return;
    CHECK(safetensors_find(a, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight") != NULL,
          "PEFT key names");
    train_model base, merged;
    tm_lora_config lc = {.r = 16, .alpha = 32, .targets = 127};
    const int T = 7;
    int32_t ids[7] = {1, 45, 300, 12, 7, 99, 2};
    train_batch bt = {.B = 1, .T = T, .input_ids = ids};
    if (CHECK(!train_model_load(&base, model_dir, &lc, 0, &e) && !train_model_set_stage(&base, TM_STAGE_LORA, &e) &&
                  !train_model_plan(&base, 1, T, 0, &e) && !train_model_load(&merged, out, NULL, 0, &e) &&
                  !train_model_set_stage(&merged, TM_STAGE_FULL, &e) && !train_model_plan(&merged, 1, T, 0, &e),
              "%s", e.message)) {
        int n = 0;
        for (size_t i = 0; i < safetensors_count(a); i++) {
            const st_entry *en = safetensors_at(a, i);
            tm_param *p = train_model_find(&base, en->name);
            if (p && (size_t)tensor_numel(&en->t) == p->n) {
                memcpy(tm_param_data(&base, p), en->t.data, p->n * 4);
                n++;
            }
        }
        CHECK(n == 2 * 7 * 2, "%d adapter tensors", n);
        base.training = false;
        CHECK(!train_model_forward(&base, &bt, NULL, &e) && !train_model_forward(&merged, &bt, NULL, &e), "%s",
              e.message);
        float d = max_abs_diff(train_model_logits(&base), train_model_logits(&merged), (size_t)T * 563),
              mx = max_abs(train_model_logits(&merged), (size_t)T * 563);
        printf("    lora: base + adapter vs merged export logits max diff %.2e (max %.2f)\n", d, mx);
        CHECK(d <= 1e-5f * mx, "merged vs adapter logits differ by %g", d);
        train_model_free(&merged);
        train_model_free(&base);
    }
    safetensors_close(a);
}


/* VLMs with images: a copy of a VLM fixture (llava: CLIP 56x56 → projector → Llama; llava_next: the same on
 * anyres tiles; idefics3: SigLIP-like tower → pixel shuffle → projection) whose image token is the gpt2
 * tokenizer's "<image>" (id 562, inside its 1024-id vocabulary), trained on 4 conversations about the fixture
 * image. (The Idefics3 expansion's <fake_token_around_image> / <row_r_col_c> markers are plain text to this
 * tokenizer: they become ordinary tokens.) */
static bool make_vlm(const char *fixture, const char *token_key, char *dir, size_t dir_cap, char *data,
                     size_t data_cap) {
    if (dir[0]) return true;
    char rel[128];
    snprintf(rel, sizeof rel, "fixtures/%s", fixture);
    const char *fx = shared_path(rel);
    if (!fx) return false;
    char src[PATH_MAX], tk[600], key[64];
    if (!realpath(fx, src)) return false; /* image paths in the data must not depend on its folder */
    snprintf(tk, sizeof tk, "%s", shared_path("fixtures/tokenizer_gpt2"));
    snprintf(dir, dir_cap, "%s/tiny_%s", test_tmpdir(), fixture);
    vlmc_error e = {0};
    file_mkdirs(dir, &e);
    const char *files[] = {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json",
                           "added_tokens.json"};
    for (int i = 0; i < 5; i++)
        if (!CHECK(copy_to(tk, files[i], dir), "copy %s", files[i])) return false;
    if (!CHECK(copy_to(src, "model.safetensors", dir) && copy_to(src, "preprocessor_config.json", dir),
               "copy %s", fixture))
        return false;
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/config.json", src);
    size_t n;
    char *cfg = test_read_file(p, &n);
    snprintf(key, sizeof key, "\"%s\": 1000", token_key);
    char *at = cfg ? strstr(cfg, key) : NULL;
    if (!CHECK(at != NULL, "%s config", fixture)) {
        free(cfg);
        return false;
    }
    memcpy(at + strlen(key) - 4, " 562", 4);
    snprintf(p, sizeof p, "%s/config.json", dir);
    file_write_all(p, cfg, n, &e);
    free(cfg);
    static const char *tpl =
        "{% for m in messages %}{{ m['role'].upper() + ': ' }}{% for c in m['content'] %}{% if c['type'] == 'image' "
        "%}{{ '<image>\\n' }}{% else %}{{ c['text'] }}{% endif %}{% endfor %}{{ '\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'ASSISTANT: ' }}{% endif %}";
    snprintf(p, sizeof p, "%s/chat_template.jinja", dir);
    file_write_all(p, tpl, strlen(tpl), &e);
    snprintf(data, data_cap, "%s/%s.jsonl", test_tmpdir(), fixture);
    FILE *f = fopen(data, "w");
    static const char *qa[4][2] = {{"What is this?", "A small picture."}, {"Describe the colors.", "Mostly bright."},
                                   {"Is it large?", "No, it is tiny."}, {"Name it.", "A test image."}};
    for (int i = 0; i < 4; i++)
        fprintf(f, "{\"image\": \"%s/reference/image.png\", \"conversations\": [{\"from\": \"human\", \"value\": "
                   "\"<image>\\n%s\"}, {\"from\": \"gpt\", \"value\": \"%s\"}]}\n",
                src, qa[i][0], qa[i][1]);
    fclose(f);
    return true;
}

static char llava_dir[600], llava_data[700];
static bool make_llava(void) {
    return make_vlm("llava", "image_token_index", llava_dir, sizeof llava_dir, llava_data, sizeof llava_data);
}

static void vlm_run(const char *dir, const char *data, const char *stage, double lr, int steps, const char *sub,
                    losses *l) {
    char out[800];
    snprintf(out, sizeof out, "%s/%s", test_tmpdir(), sub);
    vlmc_train_params p;
    base_params(&p, out);
    p.model_dir = dir;
    p.data_path = data;
    p.stage = stage;
    p.lr = lr;
    p.max_steps = steps;
    p.batch_size = 2;
    p.lr_scheduler_type = "constant";
    vlmc_error e = {0};
    CHECK(!vlmc_train(&p, record, l, &e), "%s: %s", stage, e.message);
}

static void llava_run(const char *stage, double lr, int steps, const char *sub, losses *l) {
    vlm_run(llava_dir, llava_data, stage, lr, steps, sub, l);
}

/* Tensors of the export in out that differ from the model in dir: all, and those of the projector (names
 * starting with proj_prefix, or LLaVA-NeXT's image_newline). False when a file cannot be read. */
static bool count_changed(const char *dir, const char *out, const char *proj_prefix, int *changed, int *proj_changed) {
    safetensors *a = NULL, *b = NULL;
    vlmc_error e = {0};
    *changed = *proj_changed = 0;
    bool ok = CHECK(!safetensors_open(dir, &a, &e) && !safetensors_open(out, &b, &e), "%s", e.message);
    for (int i = 0; ok && i < (int)safetensors_count(a); i++) {
        const st_entry *x = safetensors_at(a, i), *y = safetensors_find(b, x->name);
        if (!CHECK(y && tensor_nbytes(&x->t) == tensor_nbytes(&y->t), "%s exported", x->name)) continue;
        bool diff = memcmp(x->t.data, y->t.data, tensor_nbytes(&x->t)) != 0;
        *changed += diff;
        *proj_changed += diff && (!strncmp(x->name, proj_prefix, strlen(proj_prefix)) || !strcmp(x->name, "image_newline"));
    }
    if (a) safetensors_close(a);
    if (b) safetensors_close(b);
    return ok;
}

static void test_llava_stages(void) {
    if (!make_llava()) return;
    losses l1 = {0}, l2 = {0};
    llava_run("projector", 1e-2, SMALL ? 6 : 20, "llava_proj", &l1);
    if (l1.n < 2) return;
    printf("    llava projector stage: loss %.4f -> %.4f\n", l1.v[0], l1.v[l1.n - 1]);
    CHECK(l1.v[l1.n - 1] < l1.v[0], "stage 1 loss decreases");
    /* only multi_modal_projector.* changed in the export */
    char out[900];
    snprintf(out, sizeof out, "%s/llava_proj", test_tmpdir());
    int changed = 0, proj_changed = 0;
    if (count_changed(llava_dir, out, "multi_modal_projector.", &changed, &proj_changed))
        CHECK(changed == 4 && proj_changed == 4, "stage 1 changed %d tensors (%d of the projector)", changed,
              proj_changed);
    safetensors *a = NULL, *b = NULL;
    vlmc_error e = {0};
    /* stage 2: projector and decoder move, the vision tower does not */
    losses l3 = {0};
    llava_run("projector+decoder", 3e-3, 4, "llava_pd", &l3);
    snprintf(out, sizeof out, "%s/llava_pd", test_tmpdir());
    a = b = NULL;
    if (l3.n == 4 && CHECK(!safetensors_open(llava_dir, &a, &e) && !safetensors_open(out, &b, &e), "%s", e.message)) {
        int vis_changed = 0, other_same = 0, n = (int)safetensors_count(a);
        for (int i = 0; i < n; i++) {
            const st_entry *x = safetensors_at(a, i), *y = safetensors_find(b, x->name);
            if (!y || tensor_nbytes(&x->t) != tensor_nbytes(&y->t)) continue;
            bool diff = memcmp(x->t.data, y->t.data, tensor_nbytes(&x->t)) != 0;
            if (!strncmp(x->name, "vision_tower.", 13)) vis_changed += diff;
            else other_same += !diff;
        }
        CHECK(vis_changed == 0 && other_same == 0, "stage 2: %d vision tensors changed, %d others unchanged",
              vis_changed, other_same);
    }
    if (a) safetensors_close(a);
    if (b) safetensors_close(b);
    llava_run("full", 3e-3, SMALL ? 10 : 60, "llava_full", &l2);
    if (l2.n < 2) return;
    printf("    llava full: loss %.4f -> %.4f\n", l2.v[0], l2.v[l2.n - 1]);
    CHECK(l2.v[l2.n - 1] < (SMALL ? 0.7 * l2.v[0] : 0.05), "llava full stage fits 4 examples: %g", l2.v[l2.n - 1]);
}

/* LLaVA-NeXT and Idefics3 through the trainer: the data path expands each image as the family's processor does
 * (LLaVA-NeXT: 44 tokens for the 37x53 fixture image = 16 of the base tile + a 1x2 grid of 4x4 patches unpadded
 * to 4 rows of 6, each followed by image_newline; Idefics3: a 2x2 grid + the global image, 4 tokens each, with
 * the <fake_token_around_image><row_r_col_c> text around them), image
 * tokens are never targets; the projector stage moves only the connector; full training fits the data. */
static void vlm_family_case(const char *fixture, const char *token_key, int want_image_tokens, const char *proj_prefix,
                            int proj_tensors) {
    char dir[600] = "", data[700];
    if (!make_vlm(fixture, token_key, dir, sizeof dir, data, sizeof data)) return;
    vlmc_error e = {0};
    vlmc_tokenizer *tok = NULL;
    chat_template *ct = NULL;
    conv_dataset d;
    memset(&d, 0, sizeof d);
    losses l1 = {0}, l2 = {0};
    char sub[64];
    snprintf(sub, sizeof sub, "%s_proj", fixture);
    vlm_run(dir, data, "projector", 1e-2, SMALL ? 4 : 10, sub, &l1);
    if (l1.n < 2) goto out;
    printf("    %s projector stage: loss %.4f -> %.4f\n", fixture, l1.v[0], l1.v[l1.n - 1]);
    CHECK(l1.v[l1.n - 1] < l1.v[0], "%s: projector stage loss decreases", fixture);
    char out[900];
    snprintf(out, sizeof out, "%s/%s", test_tmpdir(), sub);
    int changed = 0, proj_changed = 0;
    if (count_changed(dir, out, proj_prefix, &changed, &proj_changed))
        CHECK(changed == proj_tensors && proj_changed == proj_tensors,
              "%s projector stage changed %d tensors (%d of the connector)", fixture, changed, proj_changed);
    /* the examples: image tokens expanded per the processor, never targets; Idefics3's layout */
    train_model m;
    vlmc_image_processor *proc = NULL;
    memset(&m, 0, sizeof m);
    if (CHECK(!vlmc_tokenizer_load(dir, &tok, &e) && !chat_template_load(dir, &ct, &e) &&
                  !conv_dataset_load(data, NULL, &d, &e) && !train_model_load(&m, dir, NULL, 0, &e) &&
                  !vlmc_image_processor_load(dir, &proc, &e),
              "%s", e.message)) {
        tr_image_ids x = {0};
        tr_example ex;
        memset(&ex, 0, sizeof ex);
        tr_text_opts o = {.max_length = 2048, .image_token = 562, .image_tokens = 1, .expansions = &x};
        if (CHECK(!tr_image_expansion(&m, proc, tok, d.samples[0].images[0], &x, &e) &&
                      !tr_build_example(&d.samples[0], ct, tok, &o, &ex, &e),
                  "%s", e.message)) {
            int n_img = 0, img_targets = 0, targets = 0;
            for (int t = 0; t < ex.n; t++) {
                n_img += ex.ids[t] == 562;
                img_targets += ex.ids[t] == 562 && ex.labels[t] != -100;
                targets += ex.labels[t] != -100;
            }
            CHECK(n_img == want_image_tokens && img_targets == 0 && targets > 0,
                  "%s: %d image tokens (want %d), %d of them targets, %d targets", fixture, n_img, want_image_tokens,
                  img_targets, targets);
            if (!strcmp(fixture, "idefics3")) {
                /* Idefics3Processor's string for a 2x2 split (get_image_prompt_string), tokenized */
                char want[1024] = "";
                const char *run = "<image><image><image><image>";
                for (int r = 1; r <= 2; r++) {
                    for (int c = 1; c <= 2; c++)
                        snprintf(want + strlen(want), sizeof want - strlen(want),
                                 "<fake_token_around_image><row_%d_col_%d>%s", r, c, run);
                    strcat(want, "\n");
                }
                snprintf(want + strlen(want), sizeof want - strlen(want),
                         "\n<fake_token_around_image><global-img>%s<fake_token_around_image>", run);
                int32_t *ids = NULL;
                size_t n = 0;
                CHECK(!vlmc_tokenizer_encode(tok, want, strlen(want), 0, &ids, &n, &e) && n == x.n &&
                          !memcmp(ids, x.ids, n * sizeof *ids),
                      "idefics3: the image expansion is not Idefics3Processor's layout (%zu vs %zu ids)", x.n, n);
                free(ids);
            }
            printf("    %s: %d ids per example, %d image tokens (labels -100), %d targets\n", fixture, ex.n, n_img,
                   targets);
            tr_example_free(&ex);
        }
        free(x.ids);
    }
    if (proc) vlmc_image_processor_free(proc);
    train_model_free(&m);
    /* LoRA: the adapter targets only the decoder (PEFT regex on its module path), the merged export changes only
     * the decoder's seven linears of each of its 2 layers */
    losses l3 = {0};
    snprintf(sub, sizeof sub, "%s_lora", fixture);
    vlm_run(dir, data, "lora", 1e-2, 3, sub, &l3);
    if (l3.n == 3) {
        const char *dec = !strcmp(fixture, "idefics3") ? "text_model" : "language_model";
        char cfgp[900], *txt;
        snprintf(cfgp, sizeof cfgp, "%s/%s/adapter/adapter_config.json", test_tmpdir(), sub);
        txt = test_read_file(cfgp, NULL);
        char want[160];
        snprintf(want, sizeof want, "\".*%s.*\\\\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\"", dec);
        CHECK(txt && strstr(txt, want), "%s: adapter target_modules is not %s", fixture, want);
        free(txt);
        snprintf(out, sizeof out, "%s/%s", test_tmpdir(), sub);
        int lin_changed = 0;
        if (count_changed(dir, out, !strcmp(fixture, "idefics3") ? "model.text_model." : "language_model.", &changed,
                          &lin_changed))
            CHECK(changed == 14 && lin_changed == 14, "%s lora: the merged export changed %d tensors (%d of the decoder)",
                  fixture, changed, lin_changed);
    }
    snprintf(sub, sizeof sub, "%s_full", fixture);
    vlm_run(dir, data, "full", 3e-3, SMALL ? 10 : 60, sub, &l2);
    if (l2.n < 2) goto out;
    printf("    %s full: loss %.4f -> %.4f\n", fixture, l2.v[0], l2.v[l2.n - 1]);
    CHECK(l2.v[l2.n - 1] < (SMALL ? 0.7 * l2.v[0] : 0.05), "%s full stage fits 4 examples: %g", fixture,
          l2.v[l2.n - 1]);
out:
    conv_dataset_free(&d);
    if (tok) vlmc_tokenizer_free(tok);
    if (ct) chat_template_free(ct);
}

static void test_llava_next_training(void) {
    vlm_family_case("llava_next", "image_token_index", 44, "multi_modal_projector.", 5);
}
static void test_idefics3_training(void) {
    vlm_family_case("idefics3", "image_token_id", 20, "model.connector.", 1);
}

int main(void) {
    tests_begin("trainer");
    TEST_RUN(test_label_masking);
    TEST_RUN(test_overfit_full);
    TEST_RUN(test_overfit_lora);
    TEST_RUN(test_lora_export);
    TEST_RUN(test_resume_bit_identical);
    TEST_RUN(test_export_reload);
    TEST_RUN(test_llava_stages);
    TEST_RUN(test_llava_next_training);
    TEST_RUN(test_idefics3_training);
    return tests_end();
}
