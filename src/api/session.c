/* vlmc_session: a conversation with a model (messages, encoded images, KV cache) and its generate.
 *
 * KV cache across turns: every generate renders the whole conversation, tokenizes it, and keeps the longest
 * prefix of the new prompt that equals what the cache holds (the earlier prompt plus the answer's fed tokens);
 * only the rest is run. Image features are computed once, when an image is attached, and stay in the session;
 * the image tokens of the suffix take the rows after those the cached prefix used. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "api/model_internal.h"
#include "core/error.h"
#include "formats/json.h"
#include "runtime/generate.h"

typedef struct sess_image {
    vlm_image_info info;
    size_t n_features;
} sess_image;

struct vlmc_session {
    const vlmc_model *m;
    llama_ctx ctx;
    int n_ctx;
    cJSON *messages;       /* [{"role", "content": [...]}] */
    int n_pending;         /* images attached to the next message */
    sess_image *images;
    int n_images, cap_images;
    float *features;       /* [n_features, D]: every image's rows, in attach order */
    size_t n_features, cap_features;
    double encode_s;       /* image time since the last answer */
    int32_t *cached;       /* [n_ctx]: the ids in the KV cache (kv.n_past of them) */
    int32_t *history;      /* [n_ctx]: prompt + answer (sampler context) */
    int32_t *prompt;       /* the last prompt (malloc'ed) */
    size_t n_prompt;
};

vlmc_gen_params vlmc_gen_default_params(void) {
    return (vlmc_gen_params){.max_new_tokens = 256, .temperature = 0, .top_k = 0, .top_p = 1, .min_p = 0,
                             .repetition_penalty = 1, .seed = 0};
}

const char *vlmc_stop_reason_name(vlmc_stop_reason r) {
    switch (r) {
    case VLMC_STOP_EOS: return "eos";
    case VLMC_STOP_STRING: return "stop";
    case VLMC_STOP_LENGTH: return "length";
    case VLMC_STOP_CANCEL: return "cancel";
    case VLMC_STOP_CALLBACK: return "callback";
    }
    return "?";
}

void vlmc_result_free(vlmc_result *r) {
    if (!r) return;
    free(r->ids);
    free(r->text);
    memset(r, 0, sizeof *r);
}

vlmc_status vlmc_session_new(const vlmc_model *m, int n_ctx, vlmc_session **out, vlmc_error *err) {
    if (!m || !out) return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_session_new: NULL argument");
    *out = NULL;
    if (n_ctx < 0) return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_session_new: n_ctx %d < 0", n_ctx);
    vlmc_session *s = calloc(1, sizeof *s);
    if (!s) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    s->m = m;
    s->n_ctx = n_ctx ? n_ctx : m->n_ctx;
    /* a prefix-LM prompt (PaliGemma) attends both ways, so it runs in one pass whatever its length; so does a
     * bidirectional prefix (moondream2's bos + image), whatever the batch size */
    int pass = m->n_batch > m->vm.lm.prefix_attn ? m->n_batch : m->vm.lm.prefix_attn;
    if (m->vm.fam->prefix_lm || pass > s->n_ctx) pass = s->n_ctx;
    vlmc_status st = llama_ctx_init(&s->ctx, &m->vm.lm, 1, s->n_ctx, pass, err);
    if (st) {
        free(s);
        return st;
    }
    s->ctx.legacy_unmask_padding_on_decode = m->vm.fam->legacy_unmask_padding;
    s->ctx.position_offset = m->vm.fam->position_offset;
    s->messages = cJSON_CreateArray();
    s->cached = malloc((size_t)s->n_ctx * sizeof(int32_t));
    s->history = malloc((size_t)s->n_ctx * sizeof(int32_t));
    if (!s->messages || !s->cached || !s->history) {
        vlmc_session_free(s);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for a session of %d tokens", s->n_ctx);
    }
    *out = s;
    return VLMC_OK;
}

void vlmc_session_free(vlmc_session *s) {
    if (!s) return;
    llama_ctx_free(&s->ctx);
    cJSON_Delete(s->messages);
    free(s->images);
    free(s->features);
    free(s->cached);
    free(s->history);
    free(s->prompt);
    free(s);
}

void vlmc_session_reset(vlmc_session *s) {
    if (!s) return;
    llama_ctx_reset(&s->ctx);
    cJSON_Delete(s->messages);
    s->messages = cJSON_CreateArray();
    s->n_pending = s->n_images = 0;
    s->n_features = 0;
    s->encode_s = 0;
}

vlmc_status vlmc_session_add_image(vlmc_session *s, const vlmc_image *im, vlmc_error *err) {
    if (!s || !im) return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_session_add_image: NULL argument");
    const vlmc_model *m = s->m;
    if (!m->vm.has_vision)
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: model_type \"%s\" takes no images", m->dir,
                         m->vm.cfg.model_type);
    const vlm_family *fam = m->vm.fam;
    if (!m->proc && !fam->preprocess)
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: no preprocessor_config.json: cannot prepare images", m->dir);
    double t0 = gen_now();
    vlmc_preprocessed pp;
    memset(&pp, 0, sizeof pp);
    vlmc_status st;
    int tiles = 1;
    vlm_images vi = {.n_images = 1, .n_tiles = 1, .tiles = &tiles};
    vlm_prepared own = {0}; /* the family's own image processing (Yi-VL, Qwen-VL, moondream2's crops) */
    if (fam->preprocess) {
        if ((st = fam->preprocess(&m->vm, vlmc_image_rgb(im), vlmc_image_height(im), vlmc_image_width(im), &own, NULL,
                                  err)))
            return st;
        pp.num_image_tokens = -1;
        tiles = own.n_tiles;
        vi = (vlm_images){.n_images = 1, .pixels = own.pixels, .n_tiles = tiles, .tiles = &tiles, .height = own.height,
                          .width = own.width, .image_sizes = own.image_size[0] ? own.image_size : NULL};
    } else {
        if ((st = vlmc_preprocess(m->proc, im, &pp, err))) return st;
        tiles = pp.ndim == 5 ? (int)pp.shape[1] : 1;
        vi = (vlm_images){.n_images = 1, .pixels = pp.pixel_values, .n_tiles = tiles, .tiles = &tiles,
                          .height = (int)pp.shape[pp.ndim - 2], .width = (int)pp.shape[pp.ndim - 1],
                          .image_sizes = pp.has_image_sizes ? pp.image_sizes : NULL,
                          .pixel_mask = pp.pixel_attention_mask};
        if (pp.has_grid_thw) { /* Qwen2-VL: patch rows and their grid */
            vi.n_tiles = (int)pp.shape[0];
            vi.height = vi.width = 0;
            vi.grid_thw = pp.image_grid_thw;
        }
    }
    size_t n = 0;
    const size_t D = (size_t)m->vm.lm.dim;
    if ((st = m->vm.fam->features_len(&m->vm, &vi, &n, err))) goto done;
    if (s->n_features + n > s->cap_features) {
        size_t cap = s->cap_features * 2 > s->n_features + n ? s->cap_features * 2 : s->n_features + n;
        float *f = realloc(s->features, cap * D * sizeof(float));
        if (!f) { st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for the image features"); goto done; }
        s->features = f;
        s->cap_features = cap;
    }
    if (s->n_images == s->cap_images) {
        int cap = s->cap_images ? 2 * s->cap_images : 4;
        sess_image *p = realloc(s->images, (size_t)cap * sizeof *p);
        if (!p) { st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory"); goto done; }
        s->images = p;
        s->cap_images = cap;
    }
    vlm_vision_out vo = {.features = s->features + s->n_features * D};
    if ((st = m->vm.fam->encode(&m->vm, &vi, &vo, err))) goto done;
    sess_image *si = &s->images[s->n_images];
    si->n_features = vo.n_features;
    si->info.n_tokens = pp.num_image_tokens >= 0 ? pp.num_image_tokens : (int64_t)vo.n_features;
    si->info.rows = pp.has_rows_cols ? pp.rows : 0;
    si->info.cols = pp.has_rows_cols ? pp.cols : 0;
    memcpy(si->info.grid_thw, pp.image_grid_thw, sizeof si->info.grid_thw);
    s->n_features += vo.n_features;
    s->n_images++;
    s->n_pending++;
done:
    vlmc_preprocessed_free(&pp);
    vlm_prepared_free(&own);
    s->encode_s += gen_now() - t0;
    return st;
}

vlmc_status vlmc_session_add_message(vlmc_session *s, const char *role, const char *text, vlmc_error *err) {
    if (!s || !role || !text) return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_session_add_message: NULL argument");
    cJSON *msg = cJSON_CreateObject(), *content = cJSON_CreateArray();
    if (!msg || !content) {
        cJSON_Delete(msg);
        cJSON_Delete(content);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    }
    cJSON_AddStringToObject(msg, "role", role);
    for (int i = 0; i < s->n_pending; i++) {
        cJSON *it = cJSON_CreateObject();
        cJSON_AddStringToObject(it, "type", "image");
        cJSON_AddItemToArray(content, it);
    }
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "type", "text");
    cJSON_AddStringToObject(t, "text", text);
    cJSON_AddItemToArray(content, t);
    cJSON_AddItemToObject(msg, "content", content);
    cJSON_AddItemToArray(s->messages, msg);
    s->n_pending = 0;
    return VLMC_OK;
}

void vlmc_session_prompt_ids(const vlmc_session *s, const int32_t **ids, size_t *n) {
    *ids = s ? s->prompt : NULL;
    *n = s ? s->n_prompt : 0;
}

/* Without a chat template, the family's plain prompt of the one user message (PaliGemma). */
static vlmc_status plain_prompt(vlmc_session *s, char **out, vlmc_error *err) {
    const vlmc_model *m = s->m;
    const cJSON *msg = cJSON_GetArrayItem(s->messages, 0), *c;
    if (cJSON_GetArraySize(s->messages) != 1 || strcmp(json_string(msg, "role", ""), "user"))
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: no chat template: one user message per conversation (%s)", m->dir,
                         m->vm.cfg.model_type);
    int n_images = 0;
    const char *text = "";
    cJSON_ArrayForEach(c, json_get(msg, "content")) {
        if (!strcmp(json_string(c, "type", ""), "image")) n_images++;
        else text = json_string(c, "text", "");
    }
    int32_t bos = vlmc_tokenizer_bos_id(m->tok);
    const char *bos_s = bos >= 0 ? vlmc_tokenizer_id_to_token(m->tok, bos) : NULL;
    strbuf b = {0};
    vlmc_status st = m->vm.fam->plain_prompt(&m->vm, n_images, text, bos_s ? bos_s : "", &b, err);
    if (!st && b.failed) st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    if (st) {
        strbuf_free(&b);
        return st;
    }
    *out = strbuf_take(&b);
    return *out ? VLMC_OK : vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
}

static vlmc_status tokenize_plain(void *tok, const char *text, int32_t **ids, size_t *n, vlmc_error *err) {
    return vlmc_tokenizer_encode(tok, text, strlen(text), 0, ids, n, err);
}

/* The rendered conversation with each "<image>" written as the family's processor writes it. */
static vlmc_status build_prompt(vlmc_session *s, char **out, vlmc_error *err) {
    const vlmc_model *m = s->m;
    *out = NULL;
    if (!m->tok) return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: no tokenizer.json: cannot generate text", m->dir);
    if (!m->tpl && !m->vm.fam->plain_prompt) return vlmc_fail(err, m->tpl_err.code, "%s", m->tpl_err.message);
    char *text = NULL;
    vlmc_status st;
    if (m->tpl) {
        cJSON *req = cJSON_CreateObject();
        if (!req) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        cJSON_AddItemReferenceToObject(req, "messages", s->messages);
        cJSON_AddTrueToObject(req, "add_generation_prompt");
        st = chat_template_render(m->tpl, req, &text, err);
        cJSON_Delete(req);
    } else {
        st = plain_prompt(s, &text, err);
    }
    if (st) return st;
    if (!m->vm.has_vision) {
        *out = text;
        return VLMC_OK;
    }
    strbuf b = {0};
    const char *p = text, *q;
    const char *placeholder = m->vm.fam->image_placeholder ? m->vm.fam->image_placeholder : VLM_IMAGE_PLACEHOLDER;
    const size_t pl = strlen(placeholder);
    int k = 0;
    while ((q = strstr(p, placeholder))) {
        strbuf_append(&b, p, (size_t)(q - p));
        if (k < s->n_images && (st = m->vm.fam->image_prompt(&m->vm, &s->images[k].info, &b, err))) break;
        k++;
        p = q + pl;
    }
    if (!st) strbuf_puts(&b, p);
    if (!st && k != s->n_images)
        st = vlmc_fail(err, VLMC_ERR_ARG,
                       "the chat template wrote %d image placeholders (\"%s\") for the %d images of the conversation",
                       k, placeholder, s->n_images);
    if (!st && b.failed) st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    free(text);
    if (st) {
        strbuf_free(&b);
        return st;
    }
    *out = strbuf_take(&b);
    return *out ? VLMC_OK : vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
}

/* Renders and tokenizes the conversation with the assistant turn opened into s->prompt, and checks that it
 * fits the context and that its image tokens match the attached images' feature rows. */
static vlmc_status session_prompt(vlmc_session *s, vlmc_error *err) {
    if (s->n_pending)
        return vlmc_fail(err, VLMC_ERR_ARG, "%d image(s) attached after the last message: add the message they belong to",
                         s->n_pending);
    const vlmc_model *m = s->m;
    char *text = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    vlmc_status st;
    if (m->vm.fam->conversation_ids) { /* the model's own prompt format (moondream2) */
        if (!m->tok) return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: no tokenizer.json: cannot generate text", m->dir);
        if ((st = m->vm.fam->conversation_ids(&m->vm, s->messages, s->n_images, tokenize_plain, (void *)m->tok, &ids, &n,
                                              err)))
            return st;
    } else {
        if ((st = build_prompt(s, &text, err))) return st;
        /* one BOS: the post-processor's, unless the template wrote it already (a plain prompt has its own) */
        int add_special = m->tpl ? 1 : 0;
        int32_t bos = vlmc_tokenizer_bos_id(m->tok);
        const char *bos_s = bos >= 0 ? vlmc_tokenizer_id_to_token(m->tok, bos) : NULL;
        if (bos_s && *bos_s && !strncmp(text, bos_s, strlen(bos_s))) add_special = 0;
        st = vlmc_tokenizer_encode(m->tok, text, strlen(text), add_special, &ids, &n, err);
        free(text);
        if (st) return st;
    }
    free(s->prompt);
    s->prompt = ids;
    s->n_prompt = n;
    if (n == 0) return vlmc_fail(err, VLMC_ERR_ARG, "the prompt is empty");
    if (n >= (size_t)s->n_ctx)
        return vlmc_fail(err, VLMC_ERR_LIMIT, "the conversation needs %zu tokens; the context holds %d (-c)", n, s->n_ctx);
    size_t n_img = 0;
    for (size_t i = 0; i < n; i++) n_img += m->vm.has_vision && ids[i] == m->vm.image_token_id;
    if (m->vm.has_vision && n_img != s->n_features)
        return vlmc_fail(err, VLMC_ERR_ARG, "Image features and image tokens do not match: tokens: %zu, features %zu",
                         n_img, s->n_features);
    return VLMC_OK;
}

/* Keeps the longest prefix of s->prompt that the KV cache holds (at least one token is left to run, for the
 * first logits): *k tokens, of which *first are image tokens. */
static void session_reuse_cache(vlmc_session *s, size_t *k, size_t *first) {
    const int32_t *ids = s->prompt;
    const size_t n = s->n_prompt, cached = (size_t)s->ctx.kv.n_past;
    const int32_t img = s->m->vm.image_token_id;
    const bool vision = s->m->vm.has_vision; /* moondream2's image slots are id -1 */
    size_t i = 0;
    while (i < cached && i < n && s->cached[i] == ids[i]) i++;
    if (i == n) i--;
    if (i < (size_t)s->m->vm.lm.prefix_attn) i = 0; /* a bidirectional prefix is run whole */
    s->ctx.kv.n_past = (int)i;
    s->ctx.kv.n_valid[0] = (int32_t)i;
    *k = i;
    *first = 0;
    for (size_t j = 0; j < i; j++) *first += vision && ids[j] == img;
}

/* Runs embeds [T, D] after the KV cache in passes of at most max_tokens; logits of every position into
 * logits [T, vocab], or (logits NULL) of the last one only into ctx.step_logits. */
static vlmc_status session_run(vlmc_session *s, const float *embeds, size_t T, float *logits, vlmc_error *err) {
    llama_ctx *c = &s->ctx;
    const size_t D = (size_t)c->m->dim, V = (size_t)c->m->vocab;
    vlmc_status st = VLMC_OK;
    for (size_t done = 0; !st && done < T;) {
        size_t n = T - done < (size_t)c->max_tokens ? T - done : (size_t)c->max_tokens;
        llama_output out = logits ? (llama_output){.logits = logits + done * V}
                                  : (llama_output){.logits = c->step_logits, .logits_last_only = true};
        st = llama_forward(c, &(llama_input){.n_tokens = (int)n, .embeds = embeds + done * D}, &out, err);
        done += n;
    }
    return st;
}

/* log softmax(logits)[id] in double, and whether id is the (first) argmax. */
static double log_prob_of(const float *logits, size_t V, int32_t id, bool *is_max) {
    size_t best = 0;
    for (size_t i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    double sum = 0;
    for (size_t i = 0; i < V; i++) sum += exp((double)logits[i] - (double)logits[best]);
    *is_max = (size_t)id == best;
    return (double)logits[id] - (double)logits[best] - log(sum);
}

vlmc_status vlmc_session_loglikelihood(vlmc_session *s, const char *continuation, double *logprob, int *is_greedy,
                                       vlmc_error *err) {
    if (!s || !continuation || !logprob) return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_session_loglikelihood: NULL argument");
    const vlmc_model *m = s->m;
    const size_t D = (size_t)m->vm.lm.dim, V = (size_t)m->vm.lm.vocab;
    if (m->vm.fam && (m->vm.fam->rope_index || m->vm.fam->prefix_lm))
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED,
                         "%s: log-likelihood scoring does not support M-RoPE or prefix-LM models yet", m->dir);
    int32_t *cont = NULL;
    size_t nc = 0;
    float *embeds = NULL, *logits = NULL;
    vlmc_status st = session_prompt(s, err);
    if (!st) st = vlmc_tokenizer_encode(m->tok, continuation, strlen(continuation), 0, &cont, &nc, err);
    if (st) return st;
    const size_t n = s->n_prompt;
    if (nc == 0) st = vlmc_fail(err, VLMC_ERR_ARG, "the continuation \"%s\" has no tokens", continuation);
    else if (n + nc > (size_t)s->n_ctx)
        st = vlmc_fail(err, VLMC_ERR_LIMIT, "prompt and continuation need %zu tokens; the context holds %d", n + nc,
                       s->n_ctx);
    size_t k = 0, first = 0;
    if (!st) session_reuse_cache(s, &k, &first);
    /* the prompt after the cache (its last logits predict the first continuation token), then the continuation
     * but its last token, every position's logits kept */
    const size_t T = n - k > nc - 1 ? n - k : nc - 1;
    if (!st && (!(embeds = malloc(T * D * sizeof(float))) || !(logits = malloc((nc > 1 ? nc - 1 : 1) * V * sizeof(float)))))
        st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    if (!st) st = vlm_embed(&m->vm, s->prompt + k, n - k, s->features, s->n_features, first, false, embeds, NULL, err);
    if (!st) st = session_run(s, embeds, n - k, NULL, err);
    bool greedy = true, top;
    double lp = 0;
    if (!st) {
        lp += log_prob_of(s->ctx.step_logits, V, cont[0], &top);
        greedy &= top;
        memcpy(s->cached, s->prompt, n * sizeof(int32_t));
    }
    if (!st && nc > 1) {
        st = vlm_embed(&m->vm, cont, nc - 1, s->features, s->n_features, s->n_features, false, embeds, NULL, err);
        if (!st) st = session_run(s, embeds, nc - 1, logits, err);
        for (size_t i = 1; !st && i < nc; i++) {
            lp += log_prob_of(logits + (i - 1) * V, V, cont[i], &top);
            greedy &= top;
        }
    }
    /* the cache keeps the prompt only: the next call (another option) reuses it */
    if (st) llama_ctx_reset(&s->ctx);
    else {
        s->ctx.kv.n_past = (int)n;
        s->ctx.kv.n_valid[0] = (int32_t)n;
        *logprob = lp;
        if (is_greedy) *is_greedy = greedy;
    }
    free(cont);
    free(embeds);
    free(logits);
    return st;
}

vlmc_status vlmc_session_generate(vlmc_session *s, const vlmc_gen_params *p, vlmc_stream_fn fn, void *user,
                                  vlmc_result *out, vlmc_error *err) {
    if (out) memset(out, 0, sizeof *out);
    if (!s) return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_session_generate: NULL session");
    vlmc_gen_params gp = p ? *p : vlmc_gen_default_params();
    if (gp.max_new_tokens < 0 || gp.temperature < 0 || gp.top_k < 0 || gp.top_p <= 0 || gp.top_p > 1 ||
        gp.min_p < 0 || gp.min_p > 1 || gp.repetition_penalty <= 0 || gp.n_stop < 0 || (gp.n_stop && !gp.stop))
        return vlmc_fail(err, VLMC_ERR_ARG,
                         "generation parameters: need max_new_tokens >= 0, temperature >= 0, top_k >= 0, 0 < top_p <= 1, "
                         "0 <= min_p <= 1, repetition_penalty > 0");
    const vlmc_model *m = s->m;
    const size_t D = (size_t)m->vm.lm.dim;
    int32_t *gen = NULL, *mpos = NULL, *grids = NULL, *prefix = NULL;
    float *embeds = NULL;
    gen_result r = {0};
    vlmc_status st = session_prompt(s, err);
    if (st) return st;
    const int32_t *ids = s->prompt;
    const size_t n = s->n_prompt;
    size_t k, first;
    session_reuse_cache(s, &k, &first);
    const size_t T = n - k;
    if (!(embeds = malloc(T * D * sizeof(float)))) { st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory"); goto done; }
    if ((st = vlm_embed(&m->vm, ids + k, T, s->features, s->n_features, first, false, embeds, NULL, err))) goto done;
    /* M-RoPE (Qwen2-VL): the positions of the whole conversation, of which the part after the cache is run */
    if (m->vm.fam->rope_index) {
        mpos = malloc(n * 3 * sizeof(int32_t));
        grids = malloc((size_t)(s->n_images ? s->n_images : 1) * 3 * sizeof(int32_t));
        if (!mpos || !grids) { st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory"); goto done; }
        for (int i = 0; i < s->n_images; i++) memcpy(grids + 3 * i, s->images[i].info.grid_thw, 3 * sizeof(int32_t));
        if ((st = m->vm.fam->rope_index(&m->vm, ids, NULL, 1, (int)n, grids, s->n_images, mpos, NULL, err))) goto done;
    }
    int room = s->n_ctx - (int)n;
    int max_new = gp.max_new_tokens > 0 && gp.max_new_tokens < room ? gp.max_new_tokens : room;
    if (!(gen = malloc((size_t)max_new * sizeof(int32_t)))) { st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory"); goto done; }
    memcpy(s->history, ids, n * sizeof(int32_t));
    gen_config g = {.sp = {.temperature = gp.temperature, .top_k = gp.top_k, .top_p = gp.top_p, .min_p = gp.min_p,
                           .repetition_penalty = gp.repetition_penalty, .seed = gp.seed},
                    .max_new_tokens = max_new, .eos = m->eos, .n_eos = gp.ignore_eos ? 0 : m->n_eos,
                    .stop = gp.stop, .n_stop = gp.n_stop, .cancel = gp.cancel, .tok = m->tok, .on_token = fn,
                    .user = user};
    r.ids = gen;
    /* PaliGemma: the prompt attends both ways (image + prefix; the answer is its causal suffix) */
    if (m->vm.fam->prefix_lm) {
        if (!(prefix = malloc(T * sizeof(int32_t)))) { st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory"); goto done; }
        for (size_t i = 0; i < T; i++) prefix[i] = 1;
    }
    st = generate_run(&s->ctx,
                      &(llama_input){.n_tokens = (int)T, .embeds = embeds, .mrope_pos = mpos ? mpos + 3 * k : NULL,
                                     .prefix_mask = prefix},
                      s->history, n, &g, &r, err);
    /* what the KV cache holds now: prompt + the answer's fed tokens (on an error: nothing trustworthy) */
    if (st) {
        llama_ctx_reset(&s->ctx);
        goto done;
    }
    memcpy(s->cached, ids, n * sizeof(int32_t));
    memcpy(s->cached + n, gen, (size_t)r.n_fed * sizeof(int32_t));
    if ((st = vlmc_session_add_message(s, "assistant", r.text.data ? r.text.data : "", err))) goto done;
    if (out) {
        out->ids = gen;
        gen = NULL;
        out->n_ids = (size_t)r.n_ids;
        out->text = strbuf_take(&r.text);
        if (!out->text) out->text = strdup("");
        out->text_len = out->text ? strlen(out->text) : 0;
        out->stop = r.stop;
        vlmc_timings *t = &out->timings;
        t->image_encode_s = s->encode_s;
        t->prefill_s = r.prefill_s;
        t->decode_s = r.decode_s;
        t->n_prompt_tokens = (int)n;
        t->n_prefill_tokens = (int)T;
        t->n_generated = r.n_ids;
        t->prefill_tok_s = r.prefill_s > 0 ? T / r.prefill_s : 0;
        t->decode_tok_s = r.decode_s > 0 && r.n_fed > 0 ? r.n_fed / r.decode_s : 0;
    }
    s->encode_s = 0;
done:
    strbuf_free(&r.text);
    free(embeds);
    free(gen);
    free(mpos);
    free(grids);
    free(prefix);
    return st;
}
