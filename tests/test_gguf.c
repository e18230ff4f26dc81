/* GGUF: real llama.cpp vocab files, a write/read round trip, and broken files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "core/file.h"
#include "formats/gguf.h"

/* The llama.cpp vocab files in ../shared/data were damaged on their way there: every byte
 * >= 0x80 that was not part of valid UTF-8 became U+FFFD (EF BF BD) — e.g. gpt2's
 * layer_norm_epsilon float 1e-5 (AC C5 27 37) reads EF BF BD EF BF BD 27 37. Their
 * binary fields are therefore corrupt, and the reader must refuse them cleanly with
 * an error that names the file, having read the intact keys before the damage. */
static void test_damaged_vocab_files(void) {
    const char *files[] = {"ggml-vocab-gpt-2.gguf", "ggml-vocab-llama-spm.gguf", "ggml-vocab-phi-3.gguf"};
    for (size_t i = 0; i < 3; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "data/tokenizers/llamacpp-vocab/%s", files[i]);
        const char *p = shared_path(rel);
        if (!p) return;
        char *buf = NULL;
        size_t len = 0;
        vlmc_error err = {0};
        if (!CHECK(file_read_all(p, 1 << 26, &buf, &len, &err) == VLMC_OK, "%s", err.message)) continue;
        CHECK(memmem(buf, len, "\xef\xbf\xbd", 3) != NULL, "%s: shows the U+FFFD damage", files[i]);
        gguf *g = NULL;
        vlmc_status s = gguf_open(p, &g, &err);
        CHECK(s == VLMC_ERR_FORMAT && strstr(err.message, files[i]) && strstr(err.message, "truncated"),
              "%s: rejected cleanly: %s", files[i], s ? err.message : "opened");
        if (!s) gguf_close(g);
        free(buf);
    }
}

static void test_roundtrip(void) {
    gguf_writer *w = NULL;
    vlmc_error err = {0};
    CHECK(gguf_writer_new(&w, &err) == VLMC_OK, "writer");
    float a[2 * 32];
    for (int i = 0; i < 64; i++) a[i] = (float)i * 0.5f;
    uint16_t h[3] = {0x3c00, 0x4000, 0x4200};
    unsigned char q[34 * 2] = {0};
    int64_t sa[2] = {2, 32}, sh[1] = {3}, sq[2] = {2, 32};
    tensor ta = tensor_view(DT_F32, a, 2, sa), th = tensor_view(DT_F16, h, 1, sh), tq = tensor_view(DT_Q8_0, q, 2, sq);
    const char *toks[3] = {"<s>", "hello", ""};
    int32_t ids[4] = {1, -2, 3, 40000};
    CHECK(!gguf_set_string(w, "general.architecture", "llama", &err) && !gguf_set_u32(w, "llama.block_count", 22, &err) &&
              !gguf_set_f32(w, "llama.rope.freq_base", 10000.0f, &err) && !gguf_set_bool(w, "flag", true, &err) &&
              !gguf_set_string_array(w, "tokenizer.ggml.tokens", toks, 3, &err) &&
              !gguf_set_array(w, "ids", GGUF_INT32, ids, 4, &err),
          "kvs: %s", err.message);
    CHECK(gguf_set_u32(w, "llama.block_count", 1, &err) == VLMC_ERR_ARG, "duplicate key refused");
    CHECK(!gguf_add_tensor(w, "a", &ta, &err) && !gguf_add_tensor(w, "h", &th, &err) && !gguf_add_tensor(w, "q", &tq, &err),
          "tensors: %s", err.message);
    char path[512];
    snprintf(path, sizeof path, "%s/rt.gguf", test_tmpdir());
    CHECK(gguf_writer_write(w, path, &err) == VLMC_OK, "write: %s", err.message);
    gguf_writer_free(w);
    gguf *g = NULL;
    if (!CHECK(gguf_open(path, &g, &err) == VLMC_OK, "reopen: %s", err.message)) return;
    CHECK(gguf_version(g) == 3 && gguf_get_int(g, "llama.block_count", 0) == 22, "u32");
    CHECK(gguf_get_float(g, "llama.rope.freq_base", 0) == 10000.0 && gguf_get_bool(g, "flag", false), "f32, bool");
    const gguf_kv *t = gguf_find_kv(g, "tokenizer.ggml.tokens");
    CHECK(t && t->arr_count == 3 && t->str_items[1].len == 5 && !memcmp(t->str_items[1].ptr, "hello", 5) && t->str_items[2].len == 0,
          "string array");
    const gguf_kv *iv = gguf_find_kv(g, "ids");
    CHECK(iv && gguf_array_number(iv, 1) == -2 && gguf_array_number(iv, 3) == 40000 && gguf_array_number(iv, 4) == 0, "int array");
    const gguf_tensor *ga = gguf_find_tensor(g, "a"), *gh = gguf_find_tensor(g, "h"), *gq = gguf_find_tensor(g, "q");
    CHECK(ga && ga->t.type == DT_F32 && ga->t.shape[0] == 2 && ga->t.shape[1] == 32 && ((float *)ga->t.data)[63] == 31.5f,
          "f32 tensor, shape order");
    CHECK(gh && gh->t.type == DT_F16 && ((uint16_t *)gh->t.data)[2] == 0x4200, "f16 tensor");
    CHECK(gq && gq->t.type == DT_Q8_0 && gq->nbytes == 68 && ((uintptr_t)gq->t.data % 32) == 0, "q8_0 tensor aligned");
    gguf_close(g);
}

/* Little builders for hand-made broken files. */
typedef struct buf { unsigned char d[4096]; size_t n; } buf;
static void b_raw(buf *b, const void *p, size_t n) { memcpy(b->d + b->n, p, n); b->n += n; }
static void b_u32(buf *b, uint32_t v) { b_raw(b, &v, 4); }
static void b_u64(buf *b, uint64_t v) { b_raw(b, &v, 8); }
static void b_str(buf *b, const char *s) { b_u64(b, strlen(s)); b_raw(b, s, strlen(s)); }
static void b_head(buf *b, uint32_t version, uint64_t nt, uint64_t nkv) {
    b->n = 0;
    b_raw(b, "GGUF", 4);
    b_u32(b, version);
    b_u64(b, nt);
    b_u64(b, nkv);
}
static void b_tensor(buf *b, const char *name, uint64_t ne0, uint32_t type, uint64_t off) {
    b_str(b, name);
    b_u32(b, 1);
    b_u64(b, ne0);
    b_u32(b, type);
    b_u64(b, off);
}
static void b_pad(buf *b) { while (b->n % 32) b->d[b->n++] = 0; }

static void expect(const char *what, buf *b, const char *substr) {
    gguf *g = NULL;
    vlmc_error err = {0};
    vlmc_status s = gguf_open_memory(b->d, b->n, what, &g, &err);
    CHECK(s != VLMC_OK && strstr(err.message, what) && strstr(err.message, substr), "%s: %s", what, s ? err.message : "opened");
    if (!s) gguf_close(g);
}

static void test_broken(void) {
    buf b;
    b.n = 0;
    b_raw(&b, "GGUX", 4);
    expect("bad_magic", &b, "bad magic");
    b_head(&b, 1, 0, 0);
    expect("version1", &b, "version 1");
    b_head(&b, 3, 0, 0);
    b.n -= 3;
    expect("truncated_counts", &b, "truncated");
    b_head(&b, 3, 0, 1ull << 40);
    expect("huge_kv_count", &b, "cannot fit");
    b_head(&b, 3, 0, 1);
    b_str(&b, "k");
    b_u32(&b, 99);
    expect("unknown_value_type", &b, "unknown value type 99");
    b_head(&b, 3, 0, 1);
    b_str(&b, "k");
    b_u32(&b, GGUF_STRING);
    b_u64(&b, 1000);
    expect("string_past_end", &b, "truncated");
    b_head(&b, 3, 0, 2);
    b_str(&b, "k");
    b_u32(&b, GGUF_UINT8);
    b.d[b.n++] = 1;
    b_str(&b, "k");
    b_u32(&b, GGUF_UINT8);
    b.d[b.n++] = 1;
    expect("duplicate_key", &b, "appears twice");
    b_head(&b, 3, 0, 1);
    b_str(&b, "k");
    b_u32(&b, GGUF_ARRAY);
    b_u32(&b, GGUF_UINT32);
    b_u64(&b, 1ull << 60);
    expect("array_too_long", &b, "truncated");
    b_head(&b, 3, 0, 1);
    b_str(&b, "k");
    b_u32(&b, GGUF_BOOL);
    b.d[b.n++] = 7;
    expect("bad_bool", &b, "bool is 7");
    b_head(&b, 3, 1, 0);
    b_tensor(&b, "t", 8, 0, 4);
    b_pad(&b);
    b_raw(&b, (char[64]){0}, 64);
    expect("misaligned_offset", &b, "not aligned");
    b_head(&b, 3, 1, 0);
    b_tensor(&b, "t", 64, 0, 0);
    b_pad(&b);
    b_raw(&b, (char[64]){0}, 64);
    expect("tensor_past_end", &b, "past the end");
    b_head(&b, 3, 2, 0);
    b_tensor(&b, "t", 16, 0, 0);
    b_tensor(&b, "u", 8, 0, 32);
    b_pad(&b);
    b_raw(&b, (char[96]){0}, 96);
    expect("overlap", &b, "overlaps");
    b_head(&b, 3, 1, 0);
    b_tensor(&b, "t", 8, 77, 0);
    b_pad(&b);
    expect("unknown_ggml_type", &b, "unknown ggml type 77");
    b_head(&b, 3, 1, 0);
    b_tensor(&b, "t", 33, 8, 0);
    b_pad(&b);
    expect("partial_block", &b, "whole number");
    b_head(&b, 3, 1, 0);
    b_str(&b, "t");
    b_u32(&b, 9);
    expect("too_many_dims", &b, "dimensions");
    b_head(&b, 3, 0, 1);
    b_str(&b, "general.alignment");
    b_u32(&b, GGUF_UINT32);
    b_u32(&b, 24);
    expect("bad_alignment", &b, "power of two");
}

int main(void) {
    tests_begin("gguf");
    TEST_RUN(test_damaged_vocab_files);
    TEST_RUN(test_roundtrip);
    TEST_RUN(test_broken);
    return tests_end();
}
