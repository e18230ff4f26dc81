/* Conversation datasets: real LLaVA-Instruct and LLaMA-Factory rows, JSONL in the
 * HF messages format, and malformed rows with their errors. */
#include <stdio.h>
#include <string.h>

#include "testlib.h"
#include "core/file.h"
#include "train/dataset.h"

static const char *part_text(const cJSON *msg, int i) {
    const cJSON *p = cJSON_GetArrayItem(json_get(msg, "content"), i);
    return json_string(p, "text", json_string(p, "type", "?"));
}

static void test_llava_instruct(void) {
    const char *p = shared_path("data/vlm/llava/llava_instruct_100.json");
    if (!p) return;
    conv_dataset d;
    vlmc_error err = {0};
    if (!CHECK(conv_dataset_load(p, "/images", &d, &err) == VLMC_OK, "%s", err.message)) return;
    CHECK(d.n == 100, "100 rows, got %zu", d.n);
    const conv_sample *s = &d.samples[0];
    CHECK(s->n_images == 1 && !strcmp(s->images[0], "/images/000000379143.jpg"), "image path resolved: %s", s->images[0]);
    const cJSON *m0 = cJSON_GetArrayItem(s->messages, 0);
    /* "What is the man doing in the back of the pickup truck?\n<image>" -> image first, text stripped. */
    CHECK(!strcmp(json_string(m0, "role", ""), "user") && !strcmp(part_text(m0, 0), "image") &&
              !strcmp(part_text(m0, 1), "What is the man doing in the back of the pickup truck?"),
          "first turn: %s / %s", part_text(m0, 0), part_text(m0, 1));
    CHECK(!strcmp(json_string(cJSON_GetArrayItem(s->messages, 1), "role", ""), "assistant"), "gpt -> assistant");
    int images = 0;
    for (size_t i = 0; i < d.n; i++) images += d.samples[i].n_images;
    CHECK(images == 100, "one image per row");
    conv_dataset_free(&d);
}

static void test_llamafactory(void) {
    const char *p = shared_path("data/vlm/llamafactory/mllm_demo.json");
    if (!p) return;
    conv_dataset d;
    vlmc_error err = {0};
    if (!CHECK(conv_dataset_load(p, NULL, &d, &err) == VLMC_OK, "%s", err.message)) return;
    const conv_sample *s = &d.samples[0];
    CHECK(s->n_images == 2 && strstr(s->images[0], "llamafactory/mllm_demo_data/1.jpg"), "two images: %s", s->images[0]);
    const cJSON *m2 = cJSON_GetArrayItem(s->messages, 2);
    /* "What are they doing?<image>" keeps its order: text, then image. */
    CHECK(!strcmp(part_text(m2, 0), "What are they doing?") && !strcmp(part_text(m2, 1), "image"), "marker order");
    for (size_t i = 0; i < d.n; i++)
        for (int k = 0; k < d.samples[i].n_images; k++)
            CHECK(file_exists(d.samples[i].images[k]), "image exists: %s", d.samples[i].images[k]);
    conv_dataset_free(&d);
}

static void test_jsonl_and_errors(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/d.jsonl", test_tmpdir());
    const char *good =
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\"},{\"type\":\"text\",\"text\":\"What colour?\"}]},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"red\"}]}],\"images\":[\"a.png\"]}\n\n"
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"hello\"}]}\n";
    vlmc_error err = {0};
    file_write_all(path, good, strlen(good), &err);
    conv_dataset d;
    if (CHECK(conv_dataset_load(path, NULL, &d, &err) == VLMC_OK, "%s", err.message)) {
        CHECK(d.n == 2 && d.samples[1].source_line == 3 && d.samples[0].n_images == 1, "two rows, blank line skipped");
        conv_dataset_free(&d);
    }
    const char *bad[] = {
        "{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}\n",
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\"}]}]}\n",
        "{\"conversations\":[{\"from\":\"human\",\"value\":\"<image> <image>\"}],\"image\":\"a.png\"}\n",
        "{\"foo\":1}\n",
        "{\"messages\":[}\n",
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"video\"}]}]}\n",
    };
    const char *want[] = {"role must be", "1 image placeholders but 0 image paths", "2 <image> markers",
                          "neither", "invalid JSON", "content parts"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[600];
        snprintf(text, sizeof text, "{\"messages\":[{\"role\":\"user\",\"content\":\"ok\"}]}\n%s", bad[i]);
        file_write_all(path, text, strlen(text), &err);
        vlmc_status s = conv_dataset_load(path, NULL, &d, &err);
        CHECK(s == VLMC_ERR_FORMAT && strstr(err.message, "d.jsonl:2") && strstr(err.message, want[i]), "bad %zu: %s", i,
              err.message);
    }
}

int main(void) {
    tests_begin("dataset");
    TEST_RUN(test_llava_instruct);
    TEST_RUN(test_llamafactory);
    TEST_RUN(test_jsonl_and_errors);
    return tests_end();
}
