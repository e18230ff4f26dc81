/* vlmc_dump: run a decoder-only model on the inputs of a manifest folder and write
 * its outputs in the fixtures' format (manifest.json + raw little-endian .bin arrays).
 * The array I/O here is private and minimal (int32 inputs, float32/int32 outputs). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/model_internal.h"
#include "core/error.h"
#include "core/file.h"
#include "formats/json.h"

enum { DUMP_MAX_MANIFEST = 1 << 20, DUMP_MAX_ARRAY = 1 << 28 };

/* Reads the int32 array `name` of exactly 2 dims from dir/manifest.json's list; *data = NULL when absent. */
static vlmc_status read_i32_2d(const char *dir, const cJSON *manifest, const char *mpath, const char *name,
                               int32_t **data, int64_t shape[2], vlmc_error *err) {
    *data = NULL;
    const cJSON *arrays = json_get(manifest, "arrays"), *a;
    if (!cJSON_IsArray(arrays)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: no \"arrays\" list", mpath);
    cJSON_ArrayForEach(a, arrays) {
        const char *n = json_string(a, "name", NULL);
        if (!n || strcmp(n, name)) continue;
        const char *file = json_string(a, "file", NULL), *dt = json_string(a, "dtype", NULL);
        const cJSON *sh = json_get(a, "shape");
        if (!file || !dt || !cJSON_IsArray(sh))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: array %s needs file, dtype and shape", mpath, name);
        if (strcmp(dt, "int32"))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: array %s has dtype %s, expected int32", mpath, name, dt);
        if (strchr(file, '/') || !strcmp(file, "..") || !strcmp(file, "."))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: array %s: file name \"%s\" must be a plain name", mpath, name,
                             file);
        if (cJSON_GetArraySize(sh) != 2)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: array %s must have 2 dimensions [B, T]", mpath, name);
        for (int i = 0; i < 2; i++) {
            const cJSON *d = cJSON_GetArrayItem(sh, i);
            if (!cJSON_IsNumber(d) || d->valuedouble < 1 || d->valuedouble > 1e6)
                return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: array %s: invalid shape", mpath, name);
            shape[i] = (int64_t)d->valuedouble;
        }
        char *path = path_join(dir, file);
        if (!path) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        char *buf = NULL;
        size_t len = 0;
        vlmc_status s = file_read_all(path, DUMP_MAX_ARRAY, &buf, &len, err);
        if (!s && len != (size_t)(shape[0] * shape[1]) * 4)
            s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %zu bytes, expected %lld for int32 [%lld, %lld]", path, len,
                          (long long)(shape[0] * shape[1] * 4), (long long)shape[0], (long long)shape[1]);
        free(path);
        if (s) { free(buf); return s; }
        *data = (int32_t *)(void *)buf; /* malloc'ed, suitably aligned */
        return VLMC_OK;
    }
    return VLMC_OK;
}

typedef struct out_list {
    cJSON *arrays;
    const char *dir;
} out_list;

static vlmc_status write_array(out_list *o, const char *name, const char *dtype, int ndim, const int64_t *shape,
                               const void *data, const char *note, vlmc_error *err) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    char file[128];
    snprintf(file, sizeof file, "%s.bin", name);
    char *path = path_join(o->dir, file);
    if (!path) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    vlmc_status s = file_write_all(path, data, n * 4, err); /* float32 / int32, little-endian hosts */
    free(path);
    if (s) return s;
    cJSON *a = cJSON_CreateObject();
    cJSON *sh = cJSON_CreateArray();
    for (int i = 0; i < ndim; i++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)shape[i]));
    cJSON_AddStringToObject(a, "name", name);
    cJSON_AddStringToObject(a, "file", file);
    cJSON_AddStringToObject(a, "dtype", dtype);
    cJSON_AddItemToObject(a, "shape", sh);
    cJSON_AddStringToObject(a, "note", note);
    cJSON_AddItemToArray(o->arrays, a);
    return VLMC_OK;
}

vlmc_status vlmc_dump(const char *model_dir, const char *inputs_dir, const char *out_dir, int generate_n,
                      vlmc_error *err) {
    char *mpath = path_join(inputs_dir, "manifest.json");
    if (!mpath) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    cJSON *manifest = NULL, *root = NULL;
    int32_t *ids = NULL, *mask = NULL, *gen = NULL;
    float *logits = NULL, *hidden = NULL, *steps = NULL;
    vlmc_model *m = NULL;
    int64_t shape[2] = {0, 0}, mshape[2] = {0, 0};
    vlmc_status s;
    if (generate_n < 0) { s = vlmc_fail(err, VLMC_ERR_ARG, "generate_n must be >= 0"); goto done; }
    if ((s = json_parse_file(mpath, DUMP_MAX_MANIFEST, &manifest, err))) goto done;
    if ((s = read_i32_2d(inputs_dir, manifest, mpath, "input_ids", &ids, shape, err))) goto done;
    if (!ids) { s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: no input_ids array", mpath); goto done; }
    if ((s = read_i32_2d(inputs_dir, manifest, mpath, "attention_mask", &mask, mshape, err))) goto done;
    if (mask && (mshape[0] != shape[0] || mshape[1] != shape[1])) {
        s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: attention_mask shape differs from input_ids", mpath);
        goto done;
    }
    const int B = (int)shape[0], T = (int)shape[1];
    vlmc_model_params p = {.n_ctx = T + generate_n, .n_batch = B};
    if ((s = vlmc_model_load(model_dir, &p, &m, err))) goto done;
    const int64_t V = m->lm.vocab, D = m->lm.dim, L = m->lm.n_layers;
    logits = malloc((size_t)(B * T * V) * sizeof(float));
    hidden = malloc((size_t)((L + 1) * B * T * D) * sizeof(float));
    if (generate_n) {
        gen = malloc((size_t)B * generate_n * sizeof(int32_t));
        steps = malloc((size_t)(B * generate_n * V) * sizeof(float));
    }
    if (!logits || !hidden || (generate_n && (!gen || !steps))) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for the outputs");
        goto done;
    }
    llama_input in = {.n_tokens = T, .tokens = ids, .attention_mask = mask};
    if ((s = llama_forward(&m->ctx, &in, &(llama_output){.logits = logits, .hidden_states = hidden}, err))) goto done;
    if (generate_n) {
        llama_ctx_reset(&m->ctx);
        if ((s = llama_generate_greedy(&m->ctx, &in, generate_n, gen, steps, err))) goto done;
    }
    if ((s = file_mkdirs(out_dir, err))) goto done;
    root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "format", "Each array is a raw little-endian C-order file <file> with no header; dtype "
                                            "is one of float32, int32, uint8; shape lists dimensions outermost first.");
    cJSON *meta = cJSON_AddObjectToObject(root, "meta");
    cJSON_AddStringToObject(meta, "model", m->cfg.architecture[0] ? m->cfg.architecture : m->cfg.model_type);
    cJSON_AddStringToObject(meta, "producer", "vlmc_dump");
    out_list o = {.arrays = cJSON_AddArrayToObject(root, "arrays"), .dir = out_dir};
    int64_t ls[3] = {B, T, V}, hs[4] = {L + 1, B, T, D}, gs[2] = {B, generate_n}, ss[3] = {B, generate_n, V};
    if ((s = write_array(&o, "logits", "float32", 3, ls, logits, "[B, T, vocab]", err)) ||
        (s = write_array(&o, "hidden_states", "float32", 4, hs, hidden,
                         "[num_layers+1, B, T, D]; [0] = embeddings, last = final RMSNorm output", err)))
        goto done;
    if (generate_n &&
        ((s = write_array(&o, "generated_ids", "int32", 2, gs, gen, "greedy continuation (KV-cache path)", err)) ||
         (s = write_array(&o, "generation_step_logits", "float32", 3, ss, steps,
                          "raw logits that produced each generated token [B, n, vocab]", err))))
        goto done;
    char *text = cJSON_Print(root);
    char *opath = path_join(out_dir, "manifest.json");
    if (!text || !opath) s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    else s = file_write_all(opath, text, strlen(text), err);
    free(text);
    free(opath);
done:
    cJSON_Delete(manifest);
    cJSON_Delete(root);
    free(mpath); free(ids); free(mask); free(gen); free(logits); free(hidden); free(steps);
    vlmc_model_free(m);
    return s;
}
