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
 *     (vlmc_preprocessed.num_image_tokens), so over-long prompts get HTTP 400 early. */
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
