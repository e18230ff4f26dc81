/* Fuzz target: arbitrary bytes as a model's answer through the grounding parsers (src/text/grounding.c): KOSMOS-2
 * post-processing on two grid sizes, every-format box search, and the markup direction with the input as the
 * text and a few boxes for its phrases. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/grounding.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 8192) return 0;
    const char *s = (const char *)data;
    vlmc_error err;
    kosmos2_parsed p;
    if (kosmos2_post_process(s, size, 32, &p, &err) == VLMC_OK) kosmos2_parsed_free(&p);
    if (kosmos2_post_process(s, size, 1 + (int)(size % 7), &p, &err) == VLMC_OK) kosmos2_parsed_free(&p);
    grounding_box *b = NULL;
    size_t n = 0;
    if (grounding_find_boxes(s, size, &b, &n, &err) == VLMC_OK) grounding_boxes_free(b, n);
    /* markup: every phrase (up to 4) gets boxes 0.. of a small table */
    static const long long patches[] = {0, 1023, 44, 863, -5, 99999, 195, 817};
    size_t first[4] = {0, 1, 2, 0}, count[4] = {1, 2, 0, 4};
    char *out = NULL;
    for (size_t k = 0; k <= 4; k++) {
        if (kosmos2_markup(s, size, patches, first, count, k, 32, &out, &err) == VLMC_OK) free(out);
        out = NULL;
    }
    return 0;
}
