/* Core: tensors, dtype conversions, arena, UTF-8, JSON accessors. */
#include <math.h>
#include <string.h>

#include "testlib.h"
#include "core/arena.h"
#include "core/tensor.h"
#include "core/utf8.h"
#include "formats/json.h"

static void test_f16_roundtrip(void) {
    /* Every finite f16 value converts to f32 and back unchanged. */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if (((h >> 10) & 0x1f) == 31) continue;
        float f = f16_to_f32((uint16_t)h);
        if (f32_to_f16(f) != h) bad++;
    }
    CHECK(bad == 0, "%d f16 values did not round-trip", bad);
    CHECK(f16_to_f32(0x3c00) == 1.0f, "1.0");
    CHECK(f16_to_f32(0xc000) == -2.0f, "-2.0");
    CHECK(f32_to_f16(65520.0f) == 0x7c00, "overflow to inf");
    CHECK(f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00, "tie rounds to even");
}

static void test_bf16(void) {
    CHECK(bf16_to_f32(0x3f80) == 1.0f, "1.0");
    CHECK(f32_to_bf16(1.0f) == 0x3f80, "1.0 back");
    union { uint32_t u; float f; } v = {.u = 0x3f808000u}; /* exactly halfway: ties to even */
    CHECK(f32_to_bf16(v.f) == 0x3f80, "tie to even, got %04x", f32_to_bf16(v.f));
    v.u = 0x3f818000u;
    CHECK(f32_to_bf16(v.f) == 0x3f82, "tie to even up");
}

static void test_nbytes(void) {
    int64_t shape[2] = {3, 64};
    tensor t = tensor_view(DT_F16, NULL, 2, shape);
    CHECK(tensor_nbytes(&t) == 3 * 64 * 2, "f16 bytes");
    t.type = DT_Q8_0;
    CHECK(tensor_nbytes(&t) == 3 * 2 * 34, "q8_0 bytes");
    shape[1] = 33;
    t = tensor_view(DT_Q4_0, NULL, 2, shape);
    CHECK(tensor_nbytes(&t) == (size_t)-1, "partial block rejected");
    int64_t huge[4] = {1LL << 40, 1LL << 40, 1LL << 40, 4};
    t = tensor_view(DT_F32, NULL, 4, huge);
    CHECK(tensor_nbytes(&t) == (size_t)-1, "overflow rejected");
}

static void test_arena(void) {
    arena a;
    arena_init(&a, 1024);
    char *p = arena_alloc(&a, 10), *q = arena_alloc(&a, 5000);
    CHECK(p && q && ((uintptr_t)p % 64) == 0 && ((uintptr_t)q % 64) == 0, "aligned allocations");
    memset(q, 1, 5000);
    CHECK(a.peak >= 5000, "peak tracked");
    arena_reset(&a);
    CHECK(a.used_total == 0, "reset");
    char *s = arena_strdup(&a, "hello");
    CHECK(s && !strcmp(s, "hello"), "strdup");
    arena_free(&a);
}

static void test_utf8(void) {
    CHECK(utf8_valid("h\xc3\xa9", 3), "valid 2-byte");
    CHECK(!utf8_valid("\xc0\xaf", 2), "overlong rejected");
    CHECK(!utf8_valid("\xed\xa0\x80", 3), "surrogate rejected");
    CHECK(!utf8_valid("\xf4\x90\x80\x80", 4), "above U+10FFFF rejected");
    CHECK(utf8_complete_prefix("ab\xe2\x82", 4) == 2, "incomplete tail held back");
    CHECK(utf8_complete_prefix("ab\xe2\x82\xac", 5) == 5, "complete");
    char buf[4];
    CHECK(utf8_encode(0x1F600, buf) == 4 && !memcmp(buf, "\xf0\x9f\x98\x80", 4), "encode 4-byte");
}

static void test_json(void) {
    cJSON *j = NULL;
    vlmc_error err = {0};
    const char *txt = "{\"a\": 3, \"b\": null, \"c\": \"x\", \"d\": true, \"e\": 2.5}";
    CHECK(json_parse(txt, strlen(txt), "t", &j, &err) == VLMC_OK, "parse");
    CHECK(json_int(j, "a", 0) == 3 && json_int(j, "b", 7) == 7 && json_int(j, "e", 9) == 9, "ints and defaults");
    CHECK(!strcmp(json_string(j, "c", ""), "x") && json_bool(j, "d", false), "string, bool");
    CHECK(fabs(json_number(j, "e", 0) - 2.5) < 1e-12, "number");
    cJSON_Delete(j);
    CHECK(json_parse("{} x", 4, "t2", &j, &err) == VLMC_ERR_FORMAT && strstr(err.message, "t2"), "trailing data");
    CHECK(json_parse("\"\xff\"", 3, "t3", &j, &err) == VLMC_ERR_FORMAT, "bad utf-8");
}

int main(void) {
    tests_begin("core");
    TEST_RUN(test_f16_roundtrip);
    TEST_RUN(test_bf16);
    TEST_RUN(test_nbytes);
    TEST_RUN(test_arena);
    TEST_RUN(test_utf8);
    TEST_RUN(test_json);
    return tests_end();
}
