/* The scoring core of `vlmc eval`: answer parsers and metrics, each following
 * one public benchmark's reference scorer (named at each function, with what
 * differs). Pure functions: no model code, no I/O, no global state.
 *
 * Text is UTF-8. Where a reference scorer uses Python's str methods, "whitespace"
 * means Python's str.isspace() set and "lower case" means utf8proc's simple
 * per-code-point lower-case mapping (Python's str.lower() differs only for the
 * few code points whose lower case is longer, e.g. U+0130). Bytes that are not
 * well-formed UTF-8 are compared as themselves. */
#ifndef VLMC_EVAL_METRICS_H
#define VLMC_EVAL_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* ==== multiple choice: MMBench (VLMEvalKit), MMMU ============================
 * Options are labelled 'A', 'B', ... in order: options[i] is the text of option
 * 'A' + i, n_options in 1..26. A returned letter is 'A'..'Z'; 'Z' is
 * VLMEvalKit's "the model refused / no option" answer; 0 means nothing could be
 * inferred (VLMEvalKit would then ask a judge model; under its exact-matching
 * policy that counts as 'Z', i.e. wrong). */

/* VLMEvalKit vlmeval/utils/matching_util.py can_infer_option (as of commit
 * e8e78f05, 2026): "Failed to obtain answer via API" -> 0; one of the refusal
 * sentences -> 'Z'; otherwise the characters .()[],:;!*#{} become spaces, the
 * text is split on whitespace, and when exactly one option letter occurs as a
 * token, and its first occurrence is among the last four tokens, that letter;
 * when no option letter but a "Z" token occurs, 'Z'; else the verbose-answer
 * rule (?i)(?:correct\s+)?answer\s+is\s+\**([ABCD]) gives the (upper-cased)
 * letter if it is an option; else 0. The VERBOSE-only "A might be a quantifier"
 * rule is not applied (VLMEvalKit applies it only when $VERBOSE is set), and the
 * regex's case-insensitivity is ASCII-only (Python's also folds U+017F and U+212A).
 * Older VLMEvalKit versions (before #1175, 2025) accepted the letter anywhere in
 * the text and had no verbose rule; their results differ on long answers. */
char mcq_infer_option(const char *answer, const char *const *options, int n_options);
/* can_infer_text: the lower-cased answer, when it is at most twice as long (in
 * code points) as all option texts together, contains exactly one lower-cased
 * option text -> that option; else 0. */
char mcq_infer_text(const char *answer, const char *const *options, int n_options);
/* can_infer: mcq_infer_option, falling back to mcq_infer_text. */
char mcq_infer(const char *answer, const char *const *options, int n_options);

/* One answered question of a CircularEval set: VLMEvalKit gives rotation k of
 * question q the index q + k*offset (offset 1e6), so g_index = index % offset. */
typedef struct mcq_record {
    int64_t index;           /* >= 0 */
    char gt;                 /* ground-truth letter of this rotation */
    char pred;               /* extracted letter (mcq_infer), 0 when none */
    const char *category;    /* may be NULL; taken from the rotation-0 record */
    const char *l2_category; /* may be NULL */
} mcq_record;

typedef struct mcq_group_score {
    char *name;
    int n;          /* questions (rotation-0 records) */
    int hits;
    double acc;     /* hits / n */
} mcq_group_score;

typedef struct mcq_circular_result {
    int n;              /* questions: records with index == g_index */
    int hits;           /* questions every rotation of which was answered correctly */
    double overall;     /* hits / n (0 when n == 0) */
    int64_t *question;  /* [n] g_index of each question, in input order */
    bool *hit;          /* [n] */
    mcq_group_score *categories; /* sorted by name (bytewise), NULL names skipped */
    int n_categories;
    mcq_group_score *l2_categories;
    int n_l2_categories;
} mcq_circular_result;

/* VLMEvalKit vlmeval/dataset/utils/multiple_choice.py mcq_circular_eval +
 * report_acc, under the exact-matching policy (no judge model): a question
 * (a record whose index == index % offset) is a hit when every record of its
 * group (same g_index) has pred == gt; one unmatched (0) or wrong rotation makes
 * it a miss. Records whose g_index has no rotation-0 record are ignored, as
 * there. Per-category accuracies are over questions, by the rotation-0 record's
 * category / l2_category. offset is normally 1000000 (see mcq_circular_offset). */
vlmc_status mcq_circular_eval(const mcq_record *records, size_t n, int64_t offset,
                              mcq_circular_result *out, vlmc_error *err);
void mcq_circular_result_free(mcq_circular_result *r);

/* VLMEvalKit vlmeval/tools.py CIRCULAR: 1e6, times 10 while max_index >= it. */
int64_t mcq_circular_offset(int64_t max_index);

/* One rotated variant of a question (VLMEvalKit tools.py CIRCULAR, deque.rotate(1)
 * per step): in rotation k, the new option labelled 'A'+j shows the old option
 * source[j] = (j + k) % n_options; the answer old a becomes (a - k) mod n_options;
 * the index becomes index + k*offset. */
typedef struct mcq_variant {
    int64_t index;
    char answer;
    int source[26];
} mcq_variant;

/* Fills out[0..n_options) (rotation 0 is the question itself). */
vlmc_status mcq_circular_variants(int n_options, char answer, int64_t index, int64_t offset,
                                  mcq_variant *out, vlmc_error *err);
/* tools.py CIRCULAR abnormal_entry: true when some option's text, after every
 * character that is not an ASCII letter or space becomes a space, has two or more
 * distinct option letters among its words, or when some option text is a
 * substring of "ABC...Z" (Python's `in`: "A", "BC", or the empty string); such
 * questions are not rotated. */
bool mcq_circular_abnormal(const char *const *options, int n_options);

/* MMMU eval/eval_utils.py parse_multi_choice_response: strip each of , . ! ? ; : '
 * from both ends (in that order), pad with a space; candidates are the letters
 * written "(X)", else " X "; else, when the padded response has more than 5
 * words, the options whose lower-cased text it contains; several candidates ->
 * the one occurring last (rfind; the first candidate on ties). *choice gets the
 * letter, or 0 where MMMU picks a random option (random.choice, seed 42): the
 * caller decides what to count then. */
vlmc_status mmmu_parse_choice(const char *response, const char *const *options, int n_options, char *choice,
                              vlmc_error *err);

/* ==== open VQA: VQAv2 (GT-Vision-Lab/VQA vqaEval.py), DocVQA ================ */

/* vqaEval.py processPunctuation: each of ; / [ ] " { } ( ) = + \ _ - > < @ ` , ? !
 * is deleted when the input has it next to a space or has a digit,digit anywhere,
 * else replaced by a space; then every '.' not followed by a digit is deleted (at
 * most 32 of them: the script passes re.UNICODE (32) as sub()'s count). \d is
 * ASCII here (Python's also matches other Unicode digits). */
vlmc_status vqa_process_punctuation(const char *in, char **out, vlmc_error *err);
/* processDigitArticle: lower case, split on whitespace, number words none..ten ->
 * digits ("none" -> "0"), drop a/an/the, contractions table ("dont" -> "don't";
 * keys with capitals such as "Im" never match, as there), join with one space. */
vlmc_status vqa_process_digit_article(const char *in, char **out, vlmc_error *err);
/* Both, after '\n' and '\t' become spaces and the ends are stripped. */
vlmc_status vqa_normalize(const char *in, char **out, vlmc_error *err);

/* VQA accuracy of one answer against n_refs human answers (10 in VQAv2), as the
 * official vqaEval.py (commit a013f00 "Fixed processing answers bug"): answers
 * get '\n'/'\t' -> ' ' and strip; only when the references are not all equal are
 * the references and the answer normalised (vqa_normalize); then, for each
 * reference i, acc_i = min(1, #{j != i : ref_j == answer} / 3), and the result is
 * the mean of acc_i (the average over the 10-choose-9 subsets). n_refs >= 1
 * (with one reference the result is always 0, as there). The per-question /
 * per-answer-type averages and the rounding to 2 decimals of percentages are the
 * caller's. lmms-eval's vqav2 task differs: it first passes the answer through
 * EvalAIAnswerProcessor (always normalised, plus its own word_tokenize step). */
vlmc_status vqa_accuracy(const char *answer, const char *const *refs, size_t n_refs, double *acc,
                         vlmc_error *err);
/* Exact match of vqa_normalize(answer) and vqa_normalize(ref). */
vlmc_status vqa_exact_match(const char *answer, const char *ref, bool *match, vlmc_error *err);

/* Levenshtein distance in code points (insert, delete, substitute cost 1). */
vlmc_status levenshtein(const char *a, const char *b, size_t *dist, vlmc_error *err);
/* ANLS of one answer (DocVQA / ST-VQA, Biten et al. 2019; the rrc.cvc.uab.es
 * definition and the shunk031/ANLS package): both strings lower-cased, stripped
 * and their whitespace runs collapsed to one space; NL = lev / max(len) (0 for
 * two empty strings); s = 1 - NL when NL < threshold (0.5) else 0; the max
 * over references. The dataset score is the mean over questions. lmms-eval's
 * anls() differs at the boundary (it keeps NL == 0.5 as 0.5) and divides by the
 * lengths of the un-normalised strings. */
vlmc_status anls_score(const char *answer, const char *const *refs, size_t n_refs, double threshold,
                       double *score, vlmc_error *err);

/* ==== grounding (RefCOCO family) ============================================ */

typedef struct eval_box {
    double x1, y1, x2, y2;
} eval_box;

typedef enum box_format {
    BOX_NONE = 0,
    BOX_QWEN,    /* Qwen-VL: (x1,y1),(x2,y2), usually inside <box>..</box>, 0..1000 */
    BOX_BRACKET, /* [x1, y1, x2, y2]: LLaVA-1.5 (0..1 floats) and others (0..1000) */
    BOX_PLAIN,   /* x1,y1,x2,y2 without brackets */
} box_format;

/* Finds the first box in model text and returns the numbers as written, and
 * the format found. `only` restricts the search to one format; BOX_NONE tries
 * them in the order QWEN, BRACKET, PLAIN:
 * - QWEN follows Qwen-VL eval_mm/evaluate_grounding.py: the first match of
 *   \((.*?)\),\((.*?)\) whose groups each split on ',' into exactly two Python
 *   floats (Python float() syntax without '_' separators); a first match that
 *   does not parse gives BOX_NONE there (Qwen-VL
 *   scores it as the box (0,0,0,0)), and we then try the other formats.
 * - BRACKET: '[' four numbers -?\d+(\.\d+)? separated by commas (spaces allowed) ']'.
 * - PLAIN: four such numbers separated by commas, not inside a longer number run. */
box_format grounding_parse_box(const char *text, box_format only, eval_box *out);
/* Converts a box in normalised coordinates (0..scale) to pixels of a width x
 * height image. Qwen-VL's evaluator divides by 999 (scale 999) although the
 * nominal range is 0..1000; LLaVA-1.5 boxes use scale 1 and, with pad_square,
 * are relative to the image padded to a centred square (expand2square). */
eval_box grounding_to_pixels(eval_box b, double scale, double width, double height, bool pad_square);
/* IoU as torchvision.ops.box_iou (no +1; areas may be 0): intersection / union,
 * 0 when the union is not positive. */
double grounding_iou(eval_box a, eval_box b);
/* RefCOCO accuracy rule: IoU >= 0.5. */
bool grounding_hit(eval_box pred, eval_box gt);

/* ==== captioning: pycocoevalcap (salaniz/pycocoevalcap, tylin/coco-caption) === */

/* An approximation of the PTBTokenizer step (Stanford CoreNLP 3.4.1 with
 * -preserveLines -lowerCase, then the tokens '' ' `` ` -LRB- -RRB- -LCB- -RCB-
 * . ? ! , : - -- ... ; dropped), written without Java: lower case; words are runs
 * of letters/digits/non-ASCII joined by inner - / & (or '.' between letters or
 * digits, ',' between digits); the clitics n't 's 'm 'd 're 've 'll are split off
 * ("don't" -> "do n't", "can't" -> "ca n't"), as are cannot/gonna/gotta/wanna
 * ("can not"); quotes, apostrophes, . , ? ! : ; dashes, runs of dots and the
 * en/em dashes are dropped; brackets become -lrb- -rrb- -lsb- -rsb- -lcb- -rcb-
 * and are kept, because CoreNLP lower-cases after its PTB escaping
 * (PTBTokenizer.tokReader) so they never equal the upper-case PUNCTUATIONS
 * entries; & $ % # * + = / @ ^ ~ | < > \ are single tokens. Not reproduced:
 * PTB's abbreviation list ("mr." stays one token there), its handling of URLs,
 * emoticons, fractions and "/" or "*" escaping. */
vlmc_status caption_ptb_tokenize(const char *text, char **out, vlmc_error *err);

/* One image: a candidate caption and its references, all already tokenized
 * (words separated by whitespace, as the scorers' s.split()). */
typedef struct caption_item {
    const char *candidate;
    const char *const *refs;
    size_t n_refs; /* >= 1 */
} caption_item;

/* pycocoevalcap bleu/bleu_scorer.py BleuScorer.compute_score(option='closest'),
 * as Bleu(4) calls it: corpus-level clipped n-gram precisions (tiny 1e-15 /
 * small 1e-9 smoothing terms included), effective reference length per image =
 * the reference length closest to the candidate's (the shorter on ties), brevity
 * penalty exp(1 - r/c) when c < r. bleu[k] = BLEU-(k+1), k = 0..3. */
vlmc_status caption_bleu(const caption_item *items, size_t n, double bleu[4], vlmc_error *err);
/* pycocoevalcap cider/cider_scorer.py (CIDEr-D): n = 1..4, sigma = 6; document
 * frequency of each n-gram = number of images whose references contain it;
 * tf-idf vectors with idf = log(#images) - log(max(1, df)); per n the clipped
 * cosine sum min(h, r)*r / (|h||r|), times exp(-(lh - lr)^2 / (2 sigma^2)) where
 * the "length" is, as there, the number of bigrams; mean over n, mean over
 * references, x10. *score = mean over images; per_item (may be NULL) gets each
 * image's score. */
vlmc_status caption_cider_d(const caption_item *items, size_t n, double *score, double *per_item,
                            vlmc_error *err);

/* ==== yes/no: POPE (RUCAIBox/POPE evaluate.py) ============================== */

/* POPE's rule: keep the text before the first '.', delete ',', split on ' ';
 * "no" when a word is "No", "no" or "not", else "yes". Returns true for yes. */
bool pope_parse_yes(const char *text);
/* A label is "no" exactly when it is the string "no"; anything else is yes. */
bool pope_label_is_yes(const char *label);

typedef struct pope_metrics {
    int tp, fp, tn, fn;
    double accuracy, precision, recall, f1, yes_ratio;
} pope_metrics;

/* Positive class = yes. precision, recall and f1 are 0 where the script would
 * divide by zero (it raises there); accuracy and yes_ratio are 0 for n == 0. */
pope_metrics pope_score(const bool *pred_yes, const bool *label_yes, size_t n);

#endif
