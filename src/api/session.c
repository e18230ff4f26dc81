/* vlmc_session: a conversation with a model (messages, encoded images, KV cache) and its generate.
 *
 * KV cache across turns: every generate renders the whole conversation, tokenizes it, and keeps the longest
 * prefix of the new prompt that equals what the cache holds (the earlier prompt plus the answer's fed tokens);
 * only the rest is run. Image features are computed once, when an image is attached, and stay in the session;
 * the image tokens of the suffix take the rows after those the cached prefix used. */
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
    /* a bidirectional prefix (moondream2's bos + image) is run in one pass, whatever the batch size */
    int pass = m->n_batch > m->vm.lm.prefix_attn ? m->n_batch : m->vm.lm.prefix_attn;
    vlmc_status st = llama_ctx_init(&s->ctx, &m->vm.lm, 1, s->n_ctx, pass < s->n_ctx ? pass : s->n_ctx, err);
    if (st) {
        free(s);
        return st;
    }
    s->ctx.legacy_unmask_padding_on_decode = m->vm.fam->legacy_unmask_padding;
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
    if (!m->proc && !m->vm.fam->prepare_image)
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: no preprocessor_config.json: cannot prepare images", m->dir);
    double t0 = gen_now();
    vlmc_preprocessed pp;
    memset(&pp, 0, sizeof pp);
    vlm_prepared own = {0}; /* the family's own image processing (moondream2's crops) */
    vlm_images vi;
    int tiles;
    vlmc_status st;
    if (m->proc) {
        if ((st = vlmc_preprocess(m->proc, im, &pp, err))) return st;
        tiles = pp.ndim == 5 ? (int)pp.shape[1] : 1;
        vi = (vlm_images){.n_images = 1, .pixels = pp.pixel_values, .n_tiles = tiles, .tiles = &tiles,
                          .height = (int)pp.shape[pp.ndim - 2], .width = (int)pp.shape[pp.ndim - 1],
                          .image_sizes = pp.has_image_sizes ? pp.image_sizes : NULL,
                          .pixel_mask = pp.pixel_attention_mask};
    } else {
        if ((st = m->vm.fam->prepare_image(&m->vm, vlmc_image_rgb(im), vlmc_image_height(im), vlmc_image_width(im), &own,
                                           NULL, err)))
            return st;
        pp.num_image_tokens = -1;
        tiles = own.n_tiles;
        vi = (vlm_images){.n_images = 1, .pixels = own.pixels, .n_tiles = tiles, .tiles = &tiles, .height = own.height,
                          .width = own.width, .image_sizes = own.image_size};
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

static vlmc_status tokenize_plain(void *tok, const char *text, int32_t **ids, size_t *n, vlmc_error *err) {
    return vlmc_tokenizer_encode(tok, text, strlen(text), 0, ids, n, err);
}

/* The rendered conversation with each "<image>" written as the family's processor writes it. */
static vlmc_status build_prompt(vlmc_session *s, char **out, vlmc_error *err) {
    const vlmc_model *m = s->m;
    *out = NULL;
    if (!m->tok) return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: no tokenizer.json: cannot generate text", m->dir);
    if (!m->tpl) return vlmc_fail(err, m->tpl_err.code, "%s", m->tpl_err.message);
    cJSON *req = cJSON_CreateObject();
    if (!req) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    cJSON_AddItemReferenceToObject(req, "messages", s->messages);
    cJSON_AddTrueToObject(req, "add_generation_prompt");
    char *text = NULL;
    vlmc_status st = chat_template_render(m->tpl, req, &text, err);
    cJSON_Delete(req);
    if (st) return st;
    if (!m->vm.has_vision) {
        *out = text;
        return VLMC_OK;
    }
    strbuf b = {0};
    const char *p = text, *q;
    const size_t pl = strlen(VLM_IMAGE_PLACEHOLDER);
    int k = 0;
    while ((q = strstr(p, VLM_IMAGE_PLACEHOLDER))) {
        strbuf_append(&b, p, (size_t)(q - p));
        if (k < s->n_images && (st = m->vm.fam->image_prompt(&m->vm, &s->images[k].info, &b, err))) break;
        k++;
        p = q + pl;
    }
    if (!st) strbuf_puts(&b, p);
    if (!st && k != s->n_images)
        st = vlmc_fail(err, VLMC_ERR_ARG,
                       "the chat template wrote %d image placeholders (\"%s\") for the %d images of the conversation",
                       k, VLM_IMAGE_PLACEHOLDER, s->n_images);
    if (!st && b.failed) st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    free(text);
    if (st) {
        strbuf_free(&b);
        return st;
    }
    *out = strbuf_take(&b);
    return *out ? VLMC_OK : vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
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
    if (s->n_pending)
        return vlmc_fail(err, VLMC_ERR_ARG, "%d image(s) attached after the last message: add the message they belong to",
                         s->n_pending);
    const vlmc_model *m = s->m;
    const size_t D = (size_t)m->vm.lm.dim;
    char *text = NULL;
    int32_t *ids = NULL, *gen = NULL;
    size_t n = 0;
    float *embeds = NULL;
    gen_result r = {0};
    vlmc_status st;
    if (m->vm.fam->conversation_ids) { /* the model's own prompt format */
        if (!m->tok) return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: no tokenizer.json: cannot generate text", m->dir);
        if ((st = m->vm.fam->conversation_ids(&m->vm, s->messages, s->n_images, tokenize_plain, (void *)m->tok, &ids, &n,
                                              err)))
            return st;
    } else {
        if ((st = build_prompt(s, &text, err))) return st;
        /* one BOS: the post-processor's, unless the template wrote it already */
        int add_special = 1;
        int32_t bos = vlmc_tokenizer_bos_id(m->tok);
        const char *bos_s = bos >= 0 ? vlmc_tokenizer_id_to_token(m->tok, bos) : NULL;
        if (bos_s && *bos_s && !strncmp(text, bos_s, strlen(bos_s))) add_special = 0;
        if ((st = vlmc_tokenizer_encode(m->tok, text, strlen(text), add_special, &ids, &n, err))) goto done;
    }
    free(s->prompt);
    s->prompt = ids;
    s->n_prompt = n;
    if (n == 0) { st = vlmc_fail(err, VLMC_ERR_ARG, "the prompt is empty"); goto done; }
    if (n >= (size_t)s->n_ctx) {
        st = vlmc_fail(err, VLMC_ERR_LIMIT, "the conversation needs %zu tokens; the context holds %d (-c)", n, s->n_ctx);
        goto done;
    }
    /* all image tokens of the conversation must have their feature rows */
    size_t n_img = 0;
    for (size_t i = 0; i < n; i++) n_img += m->vm.has_vision && ids[i] == m->vm.image_token_id;
    if (m->vm.has_vision && n_img != s->n_features) {
        st = vlmc_fail(err, VLMC_ERR_ARG, "Image features and image tokens do not match: tokens: %zu, features %zu", n_img,
                       s->n_features);
        goto done;
    }
    /* reuse the cached prefix; at least one token is run for the first logits */
    size_t k = 0, cached = (size_t)s->ctx.kv.n_past;
    while (k < cached && k < n && s->cached[k] == ids[k]) k++;
    if (k == n) k--;
    if (k < (size_t)m->vm.lm.prefix_attn) k = 0; /* a bidirectional prefix is run whole */
    s->ctx.kv.n_past = (int)k;
    s->ctx.kv.n_valid[0] = (int32_t)k;
    size_t first = 0;
    for (size_t i = 0; i < k; i++) first += m->vm.has_vision && ids[i] == m->vm.image_token_id;
    const size_t T = n - k;
    if (!(embeds = malloc(T * D * sizeof(float)))) { st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory"); goto done; }
    if ((st = vlm_embed(&m->vm, ids + k, T, s->features, s->n_features, first, false, embeds, NULL, err))) goto done;
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
    st = generate_run(&s->ctx, &(llama_input){.n_tokens = (int)T, .embeds = embeds}, s->history, n, &g, &r, err);
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
    free(text);
    free(embeds);
    free(gen);
    return st;
}
