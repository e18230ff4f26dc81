/* The real-model backend of `vlmc eval`: ADAPTER PENDING INTEGRATION.
 *
 * The vlmc_model / vlmc_session generation API is being written on another
 * branch; until it is merged this function reports VLMC_ERR_UNSUPPORTED, and
 * `vlmc eval -m DIR` fails with that message. The integrator replaces the body
 * with an adapter that fills *out as described in src/eval/harness.h and
 * docs/EVAL.md ("The model backend"):
 *   - open the model folder (model_args: comma-separated key=value pairs, e.g.
 *     "n_ctx=4096,dtype=f32", passed through from `--model-args`);
 *   - out->needs_images = true: requests then carry decoded RGB images;
 *   - out->generate: for each request, split req->prompt at EVAL_IMAGE_MARKER
 *     into a user turn of text and image parts, render it with the model's chat
 *     template (add_generation_prompt), generate up to req->max_new_tokens
 *     (greedy when req->temperature == 0), cut the text before the first of
 *     req->stop, and return it malloc'ed in responses[i]; batches of up to
 *     --batch-size requests arrive together;
 *   - out->loglikelihood (optional): the summed log-probability of each
 *     continuation tokenized after the rendered prompt;
 *   - out->free releases the model. */
#include "eval/harness.h"

#include <string.h>

vlmc_status eval_backend_model(const char *model_dir, const char *model_args, eval_backend *out, vlmc_error *err) {
    (void)model_args;
    memset(out, 0, sizeof *out);
    return vlmc_fail(err, VLMC_ERR_UNSUPPORTED,
                     "%s: evaluating a model folder needs the model/session generation API, which is pending "
                     "integration (see docs/EVAL.md); use --model oracle or --model replay:FILE",
                     model_dir);
}
