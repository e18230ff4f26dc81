/* Grounded answers as data: the boxes a model's text names, in the formats of the families vlmc runs.
 *
 *   KOSMOS-2   <phrase>a cat</phrase><object><patch_index_0044><patch_index_0863></object> (a 32 × 32 grid;
 *              several boxes joined by </delimiter_of_multi_objects/>). Both directions exactly as transformers
 *              4.47's processing_kosmos2.py: Kosmos2Processor.post_process_generation /
 *              clean_text_and_extract_entities_with_bboxes (markup → clean text + entities with normalised boxes)
 *              and preprocess_text's _insert_patch_index_tokens + _add_remove_spaces_around_tag_tokens
 *              (text + boxes → markup), with coordinate_to_patch_index / patch_index_to_coordinate.
 *   Qwen-VL    <ref>a cat</ref><box>(x1,y1),(x2,y2)</box>, coordinates 0..1000
 *   Qwen2-VL   <|object_ref_start|>a cat<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>, 0..1000
 *   bracket    [x1, y1, x2, y2], 0..1000 (vlmc's synthetic data, docs/SYNTH.md)
 *
 * Text is UTF-8 (anything else is an error); KOSMOS-2 offsets are counted in code points, as Python's str.
 * Boxes are (x1, y1, x2, y2) with x to the right and y down, normalised to 0..1 of the image. */
#ifndef VLMC_TEXT_GROUNDING_H
#define VLMC_TEXT_GROUNDING_H

#include <stddef.h>

#include "core/error.h"

typedef struct gbox {
    double x1, y1, x2, y2;
} gbox;

/* ---- KOSMOS-2 ---------------------------------------------------------------------------------------- */

typedef struct kosmos2_entity {
    char *phrase;      /* stripped phrase, or "<patch_index_A><patch_index_B>" for an <object> without one */
    long start, end;   /* its span in the cleaned text, in code points (transformers' arithmetic: may be odd for
                          phrases of spaces) */
    gbox *boxes;
    size_t n_boxes;
} kosmos2_entity;

typedef struct kosmos2_parsed {
    char *text;        /* the caption without markup, stripped */
    kosmos2_entity *entities;
    size_t n_entities;
} kosmos2_parsed;

/* Kosmos2Processor.post_process_generation(text) (cleanup_and_extract=True): the text after the last "</image>",
 * every "<...>" removed, entities with boxes on a patches_per_side grid (32 for KOSMOS-2). Patch indices of any
 * size are handled as Python's int does, up to its 4300-digit limit (longer is an error, as in Python >= 3.11;
 * an index whose quotient overflows a double is an error, as Python's OverflowError). */
vlmc_status kosmos2_post_process(const char *text, size_t len, int patches_per_side, kosmos2_parsed *out,
                                 vlmc_error *err);
void kosmos2_parsed_free(kosmos2_parsed *p);

/* Kosmos2Processor.preprocess_text for one text without an image: text.strip(), then after the i-th
 * "<phrase>...</phrase>" (re "<phrase>.+?</phrase>") the object tokens of the boxes first[i] .. first[i] + count[i]
 * (count 0: none), box k being the patch indices patches[2k] (upper left) and patches[2k + 1] (lower right), as
 * kosmos2_box_to_patches gives them; then the spacing rule around tag tokens. n_phrases must equal the number of
 * phrases found (VLMC_ERR_ARG otherwise, as transformers' ValueError), unless it is 0 (the text is only stripped
 * and spaced). *out is malloc'ed. */
vlmc_status kosmos2_markup(const char *text, size_t len, const long long *patches, const size_t *first,
                           const size_t *count, size_t n_phrases, int patches_per_side, char **out, vlmc_error *err);

/* coordinate_to_patch_index: floor(x1·n), floor(y1·n) and ceil(x2·n - 1), ceil(y2·n - 1) as row·n + column.
 * Fails on coordinates that are not finite or too large for the grid arithmetic (|x·n| >= 2^52). */
vlmc_status kosmos2_box_to_patches(gbox b, int patches_per_side, long long *ul, long long *lr, vlmc_error *err);
/* patch_index_to_coordinate for indices 0 <= ul, lr (cell corners when the box is one row or column, centres
 * otherwise). */
gbox kosmos2_patches_to_box(long long ul, long long lr, int patches_per_side);

/* ---- every format ------------------------------------------------------------------------------------ */

typedef enum grounding_format { GROUNDING_KOSMOS2 = 0, GROUNDING_QWEN_VL, GROUNDING_QWEN2_VL, GROUNDING_BRACKET } grounding_format;

typedef struct grounding_box {
    char *label;       /* the phrase / ref the box belongs to, or NULL */
    gbox box;          /* normalised 0..1 */
    grounding_format format;
} grounding_box;

/* Every box in an answer: KOSMOS-2 entities (grid 32) first, then Qwen2-VL, Qwen-VL and bracketed boxes, each in
 * reading order. Qwen boxes take the label of the nearest <ref> (<|object_ref_start|>) before them with only boxes
 * in between; bracketed boxes have none. Malformed boxes (not four integers) are skipped. *boxes is malloc'ed
 * (NULL when none). */
vlmc_status grounding_find_boxes(const char *text, size_t len, grounding_box **boxes, size_t *n, vlmc_error *err);
void grounding_boxes_free(grounding_box *boxes, size_t n);

#endif
