/* Chat templates: locating them in model folders and rendering conversations. */
#include "text/chat_template.h"

#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "formats/json.h"

#define MAX_TEMPLATE_FILE (8u << 20)
#define MAX_CONFIG_FILE (64u << 20) /* tokenizer_config.json may embed large added-token tables */

void chat_template_free(chat_template *ct) {
    if (!ct) return;
    jinja_free(ct->tpl);
    free(ct->source_path);
    free(ct->bos_token);
    free(ct->eos_token);
    free(ct->unk_token);
    free(ct->pad_token);
    free(ct->sep_token);
    free(ct->cls_token);
    free(ct->mask_token);
    free(ct);
}

vlmc_status chat_template_from_source(const char *src, size_t len, const char *name, chat_template **out, vlmc_error *err) {
    *out = NULL;
    chat_template *ct = calloc(1, sizeof *ct);
    if (!ct) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", name);
    ct->source_path = strdup(name ? name : "<string>");
    if (!ct->source_path) {
        chat_template_free(ct);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", name);
    }
    vlmc_status st = jinja_parse(src, len, ct->source_path, &ct->tpl, err);
    if (st) {
        chat_template_free(ct);
        return st;
    }
    *out = ct;
    return VLMC_OK;
}

/* A special token: "..." or {"content": "...", ...}; NULL when absent or null. */
static vlmc_status token_string(const cJSON *cfg, const char *key, const char *path, char **out, vlmc_error *err) {
    *out = NULL;
    const cJSON *t = json_get(cfg, key);
    if (!t || cJSON_IsNull(t)) return VLMC_OK;
    const char *s = NULL;
    if (cJSON_IsString(t)) s = t->valuestring;
    else if (cJSON_IsObject(t) && cJSON_IsString(json_get(t, "content"))) s = json_get(t, "content")->valuestring;
    else return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %s is neither a string nor an AddedToken object", path, key);
    *out = strdup(s);
    return *out ? VLMC_OK : vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", path);
}

/* The template text inside a config value: a string, or a list of {name, template}. */
static vlmc_status template_from_value(const cJSON *v, const char *path, const char **out, vlmc_error *err) {
    if (cJSON_IsString(v)) {
        *out = v->valuestring;
        return VLMC_OK;
    }
    if (cJSON_IsArray(v)) {
        for (const cJSON *e = v->child; e; e = e->next) {
            const char *name = json_string(e, "name", NULL), *tpl = json_string(e, "template", NULL);
            if (name && tpl && !strcmp(name, "default")) {
                *out = tpl;
                return VLMC_OK;
            }
        }
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: chat_template is a list of named templates without \"default\"", path);
    }
    return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: chat_template is neither a string nor a list", path);
}

vlmc_status chat_template_load(const char *model_dir, chat_template **out, vlmc_error *err) {
    *out = NULL;
    if (!model_dir) return vlmc_fail(err, VLMC_ERR_ARG, "chat template: no model folder given");
    vlmc_status st = VLMC_OK;
    char *cfg_path = path_join(model_dir, "tokenizer_config.json");
    char *jinja_path = path_join(model_dir, "chat_template.jinja");
    char *json_path = path_join(model_dir, "chat_template.json");
    cJSON *cfg = NULL, *tj = NULL;
    char *text = NULL;
    chat_template *ct = NULL;
    if (!cfg_path || !jinja_path || !json_path) {
        st = vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", model_dir);
        goto done;
    }
    if (file_exists(cfg_path) && (st = json_parse_file(cfg_path, MAX_CONFIG_FILE, &cfg, err))) goto done;
    if (file_exists(jinja_path)) {
        size_t len;
        if ((st = file_read_all(jinja_path, MAX_TEMPLATE_FILE, &text, &len, err))) goto done;
        if ((st = chat_template_from_source(text, len, jinja_path, &ct, err))) goto done;
    } else {
        const char *src = NULL, *from = NULL;
        if (file_exists(json_path)) {
            if ((st = json_parse_file(json_path, MAX_TEMPLATE_FILE, &tj, err))) goto done;
            const cJSON *v = json_get(tj, "chat_template");
            if (!v) {
                st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: no \"chat_template\" key", json_path);
                goto done;
            }
            if ((st = template_from_value(v, json_path, &src, err))) goto done;
            from = json_path;
        } else if (cfg && json_get(cfg, "chat_template")) {
            if ((st = template_from_value(json_get(cfg, "chat_template"), cfg_path, &src, err))) goto done;
            from = cfg_path;
        } else {
            st = vlmc_fail(err, VLMC_ERR_FORMAT,
                           "%s: no chat template (looked for chat_template.jinja, chat_template.json and "
                           "tokenizer_config.json \"chat_template\")",
                           model_dir);
            goto done;
        }
        if ((st = chat_template_from_source(src, strlen(src), from, &ct, err))) goto done;
    }
    if (cfg) {
        struct { const char *key; char **dst; } toks[] = {
            {"bos_token", &ct->bos_token}, {"eos_token", &ct->eos_token}, {"unk_token", &ct->unk_token},
            {"pad_token", &ct->pad_token}, {"sep_token", &ct->sep_token}, {"cls_token", &ct->cls_token},
            {"mask_token", &ct->mask_token},
        };
        for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++)
            if ((st = token_string(cfg, toks[i].key, cfg_path, toks[i].dst, err))) goto done;
    }
    *out = ct;
    ct = NULL;
done:
    chat_template_free(ct);
    cJSON_Delete(cfg);
    cJSON_Delete(tj);
    free(text);
    free(cfg_path);
    free(jinja_path);
    free(json_path);
    return st;
}

static bool put(cJSON *vars, const char *key, cJSON *v) {
    if (!v) return false;
    cJSON_DeleteItemFromObjectCaseSensitive(vars, key);
    cJSON_AddItemToObject(vars, key, v);
    return true;
}

vlmc_status chat_template_vars(const chat_template *ct, const cJSON *request, cJSON **vars_out, const char **now,
                               vlmc_error *err) {
    *vars_out = NULL;
    if (now) *now = NULL;
    if (!cJSON_IsObject(request)) return vlmc_fail(err, VLMC_ERR_ARG, "chat template request must be a JSON object");
    const cJSON *msgs = json_get(request, "messages");
    if (msgs && !cJSON_IsArray(msgs)) return vlmc_fail(err, VLMC_ERR_ARG, "chat template request: \"messages\" must be a list");
    const cJSON *extra = json_get(request, "extra_context");
    if (extra && !cJSON_IsObject(extra))
        return vlmc_fail(err, VLMC_ERR_ARG, "chat template request: \"extra_context\" must be an object");
    cJSON *vars = cJSON_CreateObject();
    if (!vars) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    bool ok = true;
    /* defaults as apply_chat_template passes them */
    ok = ok && put(vars, "messages", msgs ? cJSON_Duplicate(msgs, true) : cJSON_CreateArray());
    ok = ok && put(vars, "tools", cJSON_CreateNull());
    ok = ok && put(vars, "documents", cJSON_CreateNull());
    ok = ok && put(vars, "add_generation_prompt", cJSON_CreateBool(json_bool(request, "add_generation_prompt", false)));
    if (ct) {
        struct { const char *key; const char *val; } toks[] = {
            {"bos_token", ct->bos_token}, {"eos_token", ct->eos_token}, {"unk_token", ct->unk_token},
            {"pad_token", ct->pad_token}, {"sep_token", ct->sep_token}, {"cls_token", ct->cls_token},
            {"mask_token", ct->mask_token},
        };
        for (size_t i = 0; ok && i < sizeof toks / sizeof toks[0]; i++)
            if (toks[i].val) ok = put(vars, toks[i].key, cJSON_CreateString(toks[i].val));
    }
    /* every other key of the request, then extra_context on top */
    for (const cJSON *c = request->child; ok && c; c = c->next) {
        if (!c->string || !strcmp(c->string, "messages") || !strcmp(c->string, "extra_context") ||
            !strcmp(c->string, "add_generation_prompt"))
            continue;
        if (!strcmp(c->string, "vlmc_now")) {
            if (now && cJSON_IsString(c)) *now = c->valuestring;
            continue;
        }
        ok = put(vars, c->string, cJSON_Duplicate(c, true));
    }
    for (const cJSON *c = extra ? extra->child : NULL; ok && c; c = c->next)
        if (c->string) ok = put(vars, c->string, cJSON_Duplicate(c, true));
    /* a special token given as null is not passed at all (undefined in the template) */
    static const char *const special[] = {"bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"};
    for (size_t i = 0; ok && i < sizeof special / sizeof special[0]; i++)
        if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(vars, special[i])))
            cJSON_DeleteItemFromObjectCaseSensitive(vars, special[i]);
    if (!ok) {
        cJSON_Delete(vars);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    }
    *vars_out = vars;
    return VLMC_OK;
}

vlmc_status chat_template_render(const chat_template *ct, const cJSON *request, char **out, vlmc_error *err) {
    *out = NULL;
    if (!ct) return vlmc_fail(err, VLMC_ERR_ARG, "chat template: none given");
    cJSON *vars;
    const char *now;
    vlmc_status st = chat_template_vars(ct, request, &vars, &now, err);
    if (st) return st;
    jinja_options opt = {.now = now};
    st = jinja_render(ct->tpl, vars, &opt, out, NULL, err);
    cJSON_Delete(vars);
    return st;
}
