/* Fuzz target: arbitrary bytes as a model's answer, through every answer parser
 * and text metric of src/eval (MMBench / MMMU matchers, VQA normalisation and
 * accuracy, ANLS, box parsing, PTB-style tokenizer, BLEU / CIDEr-D, POPE). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eval/metrics.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = '\0'; /* the parsers take C strings: an embedded NUL ends the answer */
    const char *opts[4] = {"a cat", "A", "", "d\xc3\xa9"};
    vlmc_error err;
    (void)mcq_infer(s, opts, 4);
    char c;
    (void)mmmu_parse_choice(s, opts, 4, &c, &err);
    (void)mcq_circular_abnormal((const char *const[]){s, "x"}, 2);
    char *out = NULL;
    if (vqa_normalize(s, &out, &err) == VLMC_OK) free(out);
    const char *refs[3] = {"2", s, "two"};
    double v;
    (void)vqa_accuracy(s, refs, 3, &v, &err);
    (void)anls_score(s, refs, 3, 0.5, &v, &err);
    eval_box b;
    if (grounding_parse_box(s, BOX_NONE, &b) != BOX_NONE) (void)grounding_iou(b, (eval_box){0, 0, 10, 10});
    (void)pope_parse_yes(s);
    if (caption_ptb_tokenize(s, &out, &err) == VLMC_OK) {
        const char *r[2] = {out, "a b c d"};
        caption_item items[2] = {{out, r, 2}, {"a b", r + 1, 1}};
        double bl[4];
        (void)caption_bleu(items, 2, bl, &err);
        (void)caption_cider_d(items, 2, &v, NULL, &err);
        free(out);
    }
    free(s);
    return 0;
}
