/* The chat-template functions of include/vlmc.h, over src/text/chat_template.h. */
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "formats/json.h"
#include "text/chat_template.h"

struct vlmc_chat_template {
    chat_template *ct;
};

vlmc_status vlmc_chat_template_load(const char *model_dir, vlmc_chat_template **out, vlmc_error *err) {
    if (!out) return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_chat_template_load: out is NULL");
    *out = NULL;
    vlmc_chat_template *t = calloc(1, sizeof *t);
    if (!t) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    vlmc_status st = chat_template_load(model_dir, &t->ct, err);
    if (st) {
        free(t);
        return st;
    }
    *out = t;
    return VLMC_OK;
}

vlmc_status vlmc_chat_template_from_string(const char *template_src, vlmc_chat_template **out, vlmc_error *err) {
    if (!out) return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_chat_template_from_string: out is NULL");
    *out = NULL;
    if (!template_src) return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_chat_template_from_string: no template");
    vlmc_chat_template *t = calloc(1, sizeof *t);
    if (!t) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    vlmc_status st = chat_template_from_source(template_src, strlen(template_src), "template", &t->ct, err);
    if (st) {
        free(t);
        return st;
    }
    *out = t;
    return VLMC_OK;
}

vlmc_status vlmc_chat_template_from_file(const char *path, vlmc_chat_template **out, vlmc_error *err) {
    if (!out) return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_chat_template_from_file: out is NULL");
    *out = NULL;
    if (!path) return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_chat_template_from_file: no path");
    char *text = NULL;
    size_t len = 0;
    vlmc_status st = file_read_all(path, 8u << 20, &text, &len, err);
    if (st) return st;
    vlmc_chat_template *t = calloc(1, sizeof *t);
    if (!t) {
        free(text);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", path);
    }
    st = chat_template_from_source(text, len, path, &t->ct, err);
    free(text);
    if (st) {
        free(t);
        return st;
    }
    *out = t;
    return VLMC_OK;
}

vlmc_status vlmc_chat_template_render(const vlmc_chat_template *t, const char *context_json, char **out,
                                      vlmc_error *err) {
    if (!out) return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_chat_template_render: out is NULL");
    *out = NULL;
    if (!t || !context_json) return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_chat_template_render: no template or context");
    cJSON *req = NULL;
    vlmc_status st = json_parse(context_json, strlen(context_json), "template context", &req, err);
    if (st) return st;
    jinja_mark_json_floats(context_json, strlen(context_json), req); /* keep 1.0 a float */
    st = chat_template_render(t->ct, req, out, err);
    cJSON_Delete(req);
    return st;
}

void vlmc_chat_template_free(vlmc_chat_template *t) {
    if (!t) return;
    chat_template_free(t->ct);
    free(t);
}

vlmc_status vlmc_template_render(const char *template_src, const char *context_json, char **out, vlmc_error *err) {
    if (!out) return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_template_render: out is NULL");
    *out = NULL;
    vlmc_chat_template *t;
    vlmc_status st = vlmc_chat_template_from_string(template_src, &t, err);
    if (st) return st;
    st = vlmc_chat_template_render(t, context_json ? context_json : "{}", out, err);
    vlmc_chat_template_free(t);
    return st;
}
