/* vlmc_model: a model folder behind the public API (weights through the family registry, plus tokenizer,
 * chat template, image processor and EOS ids when the folder has them). */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "api/model_internal.h"
#include "core/error.h"
#include "core/file.h"
#include "formats/json.h"

static void add_eos(vlmc_model *m, int64_t id) {
    if (id < 0 || id >= m->vm.lm.vocab || m->n_eos >= MODEL_MAX_EOS) return;
    for (int i = 0; i < m->n_eos; i++)
        if (m->eos[i] == id) return;
    m->eos[m->n_eos++] = (int32_t)id;
}

/* generation_config.json's eos_token_id: an int or a list. */
static vlmc_status load_generation_config(vlmc_model *m, vlmc_error *err) {
    char *path = path_join(m->dir, "generation_config.json");
    if (!path) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    vlmc_status s = VLMC_OK;
    if (file_exists(path)) {
        cJSON *j = NULL;
        if (!(s = json_parse_file(path, 1u << 20, &j, err))) {
            const cJSON *e = json_get(j, "eos_token_id"), *x;
            if (cJSON_IsNumber(e)) add_eos(m, (int64_t)e->valuedouble);
            else if (cJSON_IsArray(e)) {
                cJSON_ArrayForEach(x, e) if (cJSON_IsNumber(x)) add_eos(m, (int64_t)x->valuedouble);
            } else if (e && !cJSON_IsNull(e))
                s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: eos_token_id must be an integer or a list", path);
        }
        cJSON_Delete(j);
    }
    free(path);
    return s;
}

vlmc_status vlmc_model_load(const char *dir, const vlmc_model_params *p, vlmc_model **out, vlmc_error *err) {
    if (!out || !dir) return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_model_load: NULL argument");
    *out = NULL;
    if (p && p->n_threads > 0) omp_set_num_threads(p->n_threads);
    vlmc_model *m = calloc(1, sizeof *m);
    if (!m || !(m->dir = strdup(dir))) {
        free(m);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", dir);
    }
    vlmc_status s = vlm_load(dir, &m->vm, err);
    if (s) goto fail;
    m->n_ctx = p && p->n_ctx > 0 ? p->n_ctx : m->vm.cfg.text.max_position_embeddings;
    if (!(p && p->n_ctx > 0) && m->n_ctx > 4096) m->n_ctx = 4096;
    if (m->n_ctx <= 0) m->n_ctx = 4096;
    m->n_batch = p && p->n_batch > 0 ? p->n_batch : 512;
    char *tj = path_join(dir, "tokenizer.json"), *vj = path_join(dir, "vocab.json");
    bool has_tok = (tj && file_exists(tj)) || (vj && file_exists(vj));
    free(tj);
    free(vj);
    if (has_tok && (s = vlmc_tokenizer_load(dir, &m->tok, err))) goto fail;
    /* optional: a session's generate reports why it is missing */
    if (!has_tok) vlmc_fail(&m->tpl_err, VLMC_ERR_UNSUPPORTED, "%s: no tokenizer.json", dir);
    else if (chat_template_load(dir, &m->tpl, &m->tpl_err) != VLMC_OK) m->tpl = NULL;
    char *pc = path_join(dir, "preprocessor_config.json");
    bool has_proc = pc && file_exists(pc);
    free(pc);
    if (m->vm.has_vision && has_proc && (s = vlmc_image_processor_load(dir, &m->proc, err))) goto fail;
    if ((s = load_generation_config(m, err))) goto fail;
    if (!m->n_eos)
        for (int i = 0; i < m->vm.cfg.text.n_eos; i++) add_eos(m, m->vm.cfg.text.eos_token_ids[i]);
    if (!m->n_eos && m->tok) add_eos(m, vlmc_tokenizer_eos_id(m->tok));
    *out = m;
    return VLMC_OK;
fail:
    vlmc_model_free(m);
    return s;
}

void vlmc_model_free(vlmc_model *m) {
    if (!m) return;
    vlm_free(&m->vm);
    vlmc_tokenizer_free(m->tok);
    if (m->tpl) chat_template_free(m->tpl);
    vlmc_image_processor_free(m->proc);
    free(m->dir);
    free(m);
}

const char *vlmc_model_type(const vlmc_model *m) { return m ? m->vm.cfg.model_type : NULL; }
int vlmc_model_has_vision(const vlmc_model *m) { return m && m->vm.has_vision; }
const vlmc_tokenizer *vlmc_model_tokenizer(const vlmc_model *m) { return m ? m->tok : NULL; }
