/* safetensors: real files, a written-then-read round trip, shards, and hand-made
 * broken files that must each fail with their own clear error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "core/file.h"
#include "formats/safetensors.h"

/* Writes an 8-byte length, the header text, and data_len bytes of data. */
static const char *write_st(const char *name, const char *header, size_t data_len) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s.safetensors", test_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    size_t hl = strlen(header);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((unsigned long long)hl >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(header, 1, hl, f);
    for (size_t i = 0; i < data_len; i++) fputc((int)(i & 0xff), f);
    fclose(f);
    return path;
}

static void expect_error(const char *name, const char *header, size_t data_len, vlmc_status code, const char *substr) {
    const char *path = write_st(name, header, data_len);
    safetensors *st = NULL;
    vlmc_error err = {0};
    vlmc_status s = safetensors_open(path, &st, &err);
    CHECK(s == code, "%s: expected status %s, got %s (%s)", name, vlmc_status_name(code), vlmc_status_name(s), err.message);
    CHECK(st == NULL, "%s: no set on failure", name);
    CHECK(strstr(err.message, name) != NULL, "%s: message names the file: %s", name, err.message);
    CHECK(strstr(err.message, substr) != NULL, "%s: message '%s' should mention '%s'", name, err.message, substr);
    if (st) safetensors_close(st);
}

static void test_broken_files(void) {
    const char *ok_entry = "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
    char buf[512];
    /* 1 */ expect_error("empty_header", "", 0, VLMC_ERR_FORMAT, "not a JSON object");
    /* 2 */ expect_error("not_object", "[1,2]", 0, VLMC_ERR_FORMAT, "not a JSON object");
    /* 3 */ expect_error("bad_json", "{\"a\":", 0, VLMC_ERR_FORMAT, "invalid JSON");
    /* 4 */ expect_error("bad_utf8", "{\"\xff\":{}}", 0, VLMC_ERR_FORMAT, "UTF-8");
    /* 5 */ expect_error("unknown_dtype", "{\"w\":{\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                         VLMC_ERR_FORMAT, "unknown dtype 'F17'");
    /* 6 */ expect_error("missing_dtype", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, VLMC_ERR_FORMAT, "dtype");
    /* 7 */ expect_error("missing_shape", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, VLMC_ERR_FORMAT, "shape");
    /* 8 */ expect_error("negative_dim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
                         VLMC_ERR_FORMAT, "shape[0]");
    /* 9 */ expect_error("fractional_dim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4,
                         VLMC_ERR_FORMAT, "shape[0]");
    /* 10 */ expect_error("size_mismatch", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
                          VLMC_ERR_FORMAT, "need 12 bytes");
    /* 11 */ expect_error("past_end", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8,
                          VLMC_ERR_FORMAT, "past the data section");
    /* 12 */ expect_error("begin_after_end", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8,
                          VLMC_ERR_FORMAT, "begin 8 > end 4");
    snprintf(buf, sizeof buf, "{%s,\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", ok_entry);
    /* 13 */ expect_error("overlap", buf, 12, VLMC_ERR_FORMAT, "overlaps");
    snprintf(buf, sizeof buf, "{%s,\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}", ok_entry);
    /* 14 */ expect_error("gap", buf, 16, VLMC_ERR_FORMAT, "unused bytes");
    snprintf(buf, sizeof buf, "{%s}", ok_entry);
    /* 15 */ expect_error("trailing_data", buf, 12, VLMC_ERR_FORMAT, "data section has 12 bytes");
    /* 16 */ expect_error("offsets_not_pair", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
                          VLMC_ERR_FORMAT, "data_offsets");
    /* 17 */ expect_error("offsets_negative", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
                          VLMC_ERR_FORMAT, "data_offsets");
    /* 18 */ expect_error("metadata_not_object", "{\"__metadata__\":[1]}", 0, VLMC_ERR_FORMAT, "__metadata__");
    /* 19 */ expect_error("metadata_not_string", "{\"__metadata__\":{\"format\":1}}", 0, VLMC_ERR_FORMAT, "not a string");
    /* 20 */ expect_error("entry_not_object", "{\"w\":3}", 0, VLMC_ERR_FORMAT, "not an object");
    snprintf(buf, sizeof buf, "{%s,%s}", ok_entry, ok_entry);
    /* 21 */ expect_error("duplicate_name", buf, 8, VLMC_ERR_FORMAT, "'a'");
    /* 22 */ expect_error("too_many_dims",
                          "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
                          VLMC_ERR_UNSUPPORTED, "dimensions");
    /* 23 */ expect_error("huge_shape",
                          "{\"w\":{\"dtype\":\"F32\",\"shape\":[281474976710656,281474976710656],\"data_offsets\":[0,4]}}",
                          4, VLMC_ERR_FORMAT, "need more than");
    /* 24 */ expect_error("trailing_garbage_header", "{} x", 0, VLMC_ERR_FORMAT, "trailing data");
    /* 25 */ expect_error("offsets_strings", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",\"4\"]}}", 4,
                          VLMC_ERR_FORMAT, "data_offsets");
}

static void test_raw_broken(void) {
    char path[512];
    vlmc_error err = {0};
    safetensors *st = NULL;
    /* Shorter than the 8-byte length prefix. */
    snprintf(path, sizeof path, "%s/short.safetensors", test_tmpdir());
    FILE *f = fopen(path, "wb");
    fwrite("abc", 1, 3, f);
    fclose(f);
    CHECK(safetensors_open(path, &st, &err) == VLMC_ERR_FORMAT && strstr(err.message, "too small"), "short: %s", err.message);
    /* Header length larger than the file. */
    snprintf(path, sizeof path, "%s/biglen.safetensors", test_tmpdir());
    f = fopen(path, "wb");
    unsigned char len8[8] = {0xff, 0xff, 0, 0, 0, 0, 0, 0};
    fwrite(len8, 1, 8, f);
    fwrite("{}", 1, 2, f);
    fclose(f);
    CHECK(safetensors_open(path, &st, &err) == VLMC_ERR_FORMAT && strstr(err.message, "larger than the file"), "biglen: %s", err.message);
    /* Header length beyond the 100 MB limit. */
    snprintf(path, sizeof path, "%s/hugelen.safetensors", test_tmpdir());
    f = fopen(path, "wb");
    unsigned char len9[8] = {0, 0, 0, 0, 1, 0, 0, 0};
    fwrite(len9, 1, 8, f);
    fclose(f);
    CHECK(safetensors_open(path, &st, &err) == VLMC_ERR_FORMAT && strstr(err.message, "exceeds the limit"), "hugelen: %s", err.message);
    /* Missing file. */
    CHECK(safetensors_open("/nonexistent/x.safetensors", &st, &err) == VLMC_ERR_IO && strstr(err.message, "/nonexistent/x.safetensors"),
          "missing: %s", err.message);
}

static void test_real_files(void) {
    const char *names[] = {"tensor-1d-int32", "tensor-2d-float64", "tensor-3d-float32", "tensor-4d-float32"};
    const int ndims[] = {1, 2, 3, 4};
    for (int i = 0; i < 4; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "data/safetensors/%s.safetensors", names[i]);
        const char *p = shared_path(rel);
        if (!p) return;
        safetensors *st = NULL;
        vlmc_error err = {0};
        if (!CHECK(safetensors_open(p, &st, &err) == VLMC_OK, "%s: %s", names[i], err.message)) continue;
        CHECK(safetensors_count(st) >= 1, "%s has tensors", names[i]);
        const st_entry *e = safetensors_at(st, 0);
        CHECK(e->t.ndim == ndims[i], "%s: ndim %d", names[i], e->t.ndim);
        safetensors_close(st);
    }
}

static void test_fixture_models(void) {
    const char *models[] = {"llama", "llama_bf16", "llava", "llava_next", "idefics3", "qwen2_vl", "fuyu", "kosmos2",
                            "paligemma", "qwen_vl", "moondream2", "deepseek_vl", "deepseek_vl_hybrid", "yi_vl"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "fixtures/%s", models[i]);
        const char *p = shared_path(rel);
        if (!p) return;
        safetensors *st = NULL;
        vlmc_error err = {0};
        if (!CHECK(safetensors_open(p, &st, &err) == VLMC_OK, "%s: %s", models[i], err.message)) continue;
        CHECK(safetensors_count(st) > 10, "%s: %zu tensors", models[i], safetensors_count(st));
        safetensors_close(st);
    }
    /* bf16 weights are reported as BF16 views. */
    const char *p = shared_path("fixtures/llama_bf16");
    safetensors *st = NULL;
    vlmc_error err = {0};
    if (p && safetensors_open(p, &st, &err) == VLMC_OK) {
        const st_entry *e = safetensors_find(st, "model.embed_tokens.weight");
        CHECK(e && e->t.type == DT_BF16, "bf16 embedding");
        tensor t;
        int64_t bad[2] = {7, -1};
        CHECK(safetensors_get(st, "model.embed_tokens.weight", 2, bad, &t, &err) == VLMC_ERR_FORMAT &&
                  strstr(err.message, "expected [7, -1]"), "shape check: %s", err.message);
        CHECK(safetensors_get(st, "no.such.tensor", 1, bad, &t, &err) == VLMC_ERR_FORMAT && strstr(err.message, "no.such.tensor"),
              "missing tensor: %s", err.message);
        safetensors_close(st);
    }
}

static void test_write_roundtrip_and_shards(void) {
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[3] = {0x3f80, 0x4000, 0x4040};
    int64_t sa[2] = {2, 3}, sb[1] = {3};
    tensor ts[2] = {tensor_view(DT_F32, a, 2, sa), tensor_view(DT_BF16, b, 1, sb)};
    const char *names[2] = {"layer.weight", "layer.bias"};
    char dir[512], p1[600], p2[600], idx[600];
    snprintf(dir, sizeof dir, "%s/sharded", test_tmpdir());
    vlmc_error err = {0};
    CHECK(file_mkdirs(dir, &err) == VLMC_OK, "mkdir");
    snprintf(p1, sizeof p1, "%s/model-00001-of-00002.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/model-00002-of-00002.safetensors", dir);
    CHECK(safetensors_write(p1, 1, names, ts, "{\"format\":\"pt\"}", &err) == VLMC_OK, "write 1: %s", err.message);
    CHECK(safetensors_write(p2, 1, names + 1, ts + 1, NULL, &err) == VLMC_OK, "write 2: %s", err.message);
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    const char *index = "{\"metadata\":{},\"weight_map\":{\"layer.weight\":\"model-00001-of-00002.safetensors\","
                        "\"layer.bias\":\"model-00002-of-00002.safetensors\"}}";
    CHECK(file_write_all(idx, index, strlen(index), &err) == VLMC_OK, "index");
    safetensors *st = NULL;
    if (!CHECK(safetensors_open(dir, &st, &err) == VLMC_OK, "open sharded: %s", err.message)) return;
    CHECK(safetensors_count(st) == 2, "two tensors");
    const st_entry *w = safetensors_find(st, "layer.weight"), *bias = safetensors_find(st, "layer.bias");
    CHECK(w && w->t.type == DT_F32 && w->t.shape[1] == 3 && ((float *)w->t.data)[5] == 6.0f, "weight data");
    CHECK(bias && bias->t.type == DT_BF16 && ((uint16_t *)bias->t.data)[2] == 0x4040, "bias data");
    CHECK(((uintptr_t)w->t.data % 8) == 0, "data 8-byte aligned");
    CHECK(safetensors_metadata(st, "format") && !strcmp(safetensors_metadata(st, "format"), "pt"), "metadata");
    safetensors_close(st);
    /* An index naming a tensor that is not in its shard is an error naming both. */
    const char *bad = "{\"weight_map\":{\"layer.weight\":\"model-00001-of-00002.safetensors\","
                      "\"ghost\":\"model-00002-of-00002.safetensors\"}}";
    CHECK(file_write_all(idx, bad, strlen(bad), &err) == VLMC_OK, "index");
    CHECK(safetensors_open(dir, &st, &err) == VLMC_ERR_FORMAT && strstr(err.message, "'ghost'"), "ghost: %s", err.message);
    const char *escape = "{\"weight_map\":{\"layer.weight\":\"../x.safetensors\"}}";
    CHECK(file_write_all(idx, escape, strlen(escape), &err) == VLMC_OK, "index");
    CHECK(safetensors_open(dir, &st, &err) == VLMC_ERR_FORMAT && strstr(err.message, "plain file name"), "escape: %s", err.message);
}

int main(void) {
    tests_begin("safetensors");
    TEST_RUN(test_broken_files);
    TEST_RUN(test_raw_broken);
    TEST_RUN(test_real_files);
    TEST_RUN(test_fixture_models);
    TEST_RUN(test_write_roundtrip_and_shards);
    return tests_end();
}
