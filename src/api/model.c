/* vlmc_model: a decoder-only model folder behind the public API. */
#include <stdlib.h>
#include <string.h>

#include "api/model_internal.h"
#include "core/error.h"

vlmc_status vlmc_model_load(const char *dir, const vlmc_model_params *p, vlmc_model **out, vlmc_error *err) {
    *out = NULL;
    vlmc_model *m = calloc(1, sizeof *m);
    if (!m) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", dir);
    vlmc_status s = hf_config_load(dir, &m->cfg, err);
    if (s) goto fail;
    if (!m->cfg.has_text || m->cfg.has_vision) {
        s = vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: model_type \"%s\" is not a decoder-only model (llama, mistral, qwen2)",
                      dir, m->cfg.model_type);
        goto fail;
    }
    if ((s = safetensors_open(dir, &m->st, err))) goto fail;
    if ((s = llama_model_load(&m->lm, &m->cfg.text, m->st, "model.", "lm_head.weight", err))) {
        m->lm.layers = NULL;
        goto fail;
    }
    int n_ctx = p && p->n_ctx > 0 ? p->n_ctx : m->cfg.text.max_position_embeddings;
    if (!(p && p->n_ctx > 0) && n_ctx > 4096) n_ctx = 4096;
    int n_batch = p && p->n_batch > 0 ? p->n_batch : 1;
    if ((s = llama_ctx_init(&m->ctx, &m->lm, n_batch, n_ctx, 0, err))) goto fail;
    m->have_ctx = true;
    *out = m;
    return VLMC_OK;
fail:
    vlmc_model_free(m);
    return s;
}

void vlmc_model_free(vlmc_model *m) {
    if (!m) return;
    if (m->have_ctx) llama_ctx_free(&m->ctx);
    llama_model_free(&m->lm);
    safetensors_close(m->st);
    free(m);
}
