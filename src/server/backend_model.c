/* ==== INTEGRATION POINT: `vlmc serve -m MODEL_DIR` ====================================
 *
 * This file adapts a real model to the server's backend interface (backend.h). It is
 * deliberately NOT implemented: the vlmc_model / session API with streaming generation
 * is being built on another branch. Until it is merged, opening a model folder fails
 * with VLMC_ERR_UNSUPPORTED and `vlmc serve` only runs the echo test backend.
 *
 * What the integrator writes here (see docs/SERVER.md, "Plugging in the model"):
 *
 *   server_backend_model_open(model_dir, n_ctx, parallel, out, err)
 *     - load the model (vlmc_model_load with n_batch = parallel, n_ctx), its tokenizer,
 *       chat template and image processor;
 *     - create one session per slot (0..parallel-1);
 *     - fill *out: ctx, model_id (the folder's basename), n_ctx, count_prompt_tokens,
 *       chat, destroy.
 *
 *   chat(ctx, slot, req, on_text, ud, res, err)
 *     - render req->messages_json with the chat template (add_generation_prompt = true);
 *       image parts are {"type":"image"}, in the order of req->images;
 *     - preprocess + encode req->images[k].image (cache the features on the image cache
 *       entry: image_cache_features / image_cache_set_features on
 *       req->images[k].cache_entry, so a repeated image is not encoded again);
 *     - generate on session[slot] with req->temperature / top_p / seed, at most
 *       req->max_tokens tokens; pass each piece of vlmc_decode_stream_push to on_text and
 *       stop as soon as on_text returns non-zero (client gone, stop string, shutdown);
 *     - fill res: finish_reason "stop" (EOS) or "length", prompt_tokens, completion_tokens.
 *     Batched decoding: the server calls chat() from `parallel` threads at once; a
 *     batching implementation joins the active slots into one decode step here.
 *
 *   count_prompt_tokens(ctx, req, &n, err): template + tokenizer + image token counts
 *     (vlmc_preprocessed.num_image_tokens), so over-long prompts get HTTP 400 early.
 *
 * Mapping onto the session API as staged in /work/main at the time of writing (vlmc_session_*,
 * vlmc_gen_params, vlmc_result; check it against what is merged):
 *   open:  vlmc_model_load(dir, &(vlmc_model_params){.n_ctx = n_ctx}); one vlmc_session_new(model, n_ctx)
 *          per slot; model_id = basename(dir); n_ctx = the sessions' context; count_prompt_tokens = NULL
 *          (a session counts its prompt only while generating; an over-long prompt then fails in
 *          vlmc_session_generate with VLMC_ERR_LIMIT, which the server answers with 400, or with an SSE
 *          error event once a stream has started).
 *   chat:  s = session[slot]; vlmc_session_reset(s);
 *          for each message m: for each image part of m: vlmc_session_add_image(s, req->images[k].image);
 *                              vlmc_session_add_message(s, m.role, <m's text parts joined by "\n">);
 *            (the session puts a message's images before its text, as HF templates expect; the order of
 *             interleaved text and image parts inside one message is not kept)
 *          the last message must be the user's: a trailing assistant message is a prefill the session
 *          API cannot express -> return VLMC_ERR_ARG before any text (the server answers 400);
 *          vlmc_gen_params g = vlmc_gen_default_params(); g.max_new_tokens = req->max_tokens;
 *          g.temperature = req->temperature; g.top_p = req->top_p; g.seed = req->seed (has_seed, else a
 *          fresh value); no stop strings (the server applies them and stops generation through on_text);
 *          vlmc_session_generate(s, &g, fn, ud, &out, err) with fn(text, len, id, user) calling
 *          on_text(ud, text, len) when len > 0 and returning its value;
 *          res->finish_reason = out.stop == VLMC_STOP_LENGTH ? "length" : "stop";
 *          res->prompt_tokens = out.timings.n_prompt_tokens; res->completion_tokens = out.timings.n_generated;
 *          vlmc_result_free(&out).
 *   Threads: `parallel` sessions generate at once, each using OpenMP; with --parallel > 1 set the
 *          model's n_threads to cores / parallel, or keep --parallel 1 until batched decoding exists.
 *   Image features: vlmc_session_add_image encodes on attach and takes no precomputed features, so the
 *          image cache saves decoding only; caching encoded features needs a session call that accepts
 *          them (then use image_cache_features / image_cache_set_features here). */
#include "core/error.h"
#include "server/backend.h"

vlmc_status server_backend_model_open(const char *model_dir, int n_ctx, int parallel, server_backend *out,
                                      vlmc_error *err) {
    (void)n_ctx;
    (void)parallel;
    (void)out;
    return vlmc_fail(err, VLMC_ERR_UNSUPPORTED,
                     "%s: serving a model folder needs the generation session API, which is not merged yet "
                     "(src/server/backend_model.c); use -m echo for the test backend", model_dir);
}
