/* libFuzzer target: template bytes -> jinja_parse + jinja_render with a fixed
 * small context. Any outcome but a crash, a sanitizer report, a leak or a hang
 * is fine: hostile templates must fail with an error, within the limits. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja.h"

static const char CONTEXT[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
    " {\"role\": \"user\", \"content\": [{\"type\": \"image\"}, {\"type\": \"text\", \"text\": \"What is h\\u00e9re?\"}]},"
    " {\"role\": \"assistant\", \"content\": \"A cat.\", \"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": {\"x\": 1.5}}}]},"
    " {\"role\": \"user\", \"content\": \"  and now?\\n\"}],"
    " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"x\": {\"type\": \"number\"}}}}],"
    " \"documents\": null, \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}";

/* A fixed template that walks whatever variables it is given. */
static const char WALKER[] =
    "{% for k, v in vars.items() %}{{ k }}={{ v }}|{{ v|tojson }}|{{ v is mapping }}{% endfor %}"
    "{% for m in messages %}{{ m.role }}{{ m['content'] }}{% endfor %}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static cJSON *vars;
    static jinja_template *walker;
    vlmc_error err;
    if (!vars) vars = cJSON_Parse(CONTEXT); /* parsed once, read-only afterwards */
    if (!walker && jinja_parse(WALKER, sizeof WALKER - 1, "walker", &walker, &err) != VLMC_OK) return 0;
    /* small budgets keep every input fast */
    jinja_options opt = {.now = "2025-07-10 12:00:00", .max_output = 1u << 20, .max_memory = 32u << 20, .max_steps = 200000};
    char *out = NULL;

    /* 1. the bytes as a template */
    jinja_template *t = NULL;
    if (jinja_parse((const char *)data, size, "fuzz", &t, &err) == VLMC_OK) {
        if (jinja_render(t, vars, &opt, &out, NULL, &err) == VLMC_OK) free(out);
        jinja_free(t);
    }

    /* 2. the bytes as template variables (JSON), with floats marked from the text */
    cJSON *ctx = cJSON_ParseWithLength((const char *)data, size);
    if (cJSON_IsObject(ctx)) {
        jinja_mark_json_floats((const char *)data, size, ctx);
        cJSON *wrapped = cJSON_CreateObject();
        cJSON_AddItemReferenceToObject(wrapped, "vars", ctx);
        cJSON *msgs = cJSON_GetObjectItemCaseSensitive(ctx, "messages");
        if (msgs) cJSON_AddItemReferenceToObject(wrapped, "messages", msgs);
        if (jinja_render(walker, wrapped, &opt, &out, NULL, &err) == VLMC_OK) free(out);
        cJSON_Delete(wrapped);
    }
    cJSON_Delete(ctx);
    return 0;
}
