/* libFuzzer: tokenizer.json bytes -> load; a tokenizer that loads is then run
 * on a few fixed texts (encode with and without special tokens, decode both
 * ways, streaming decode), so fuzzed pipelines are exercised too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vlmc.h"
#include "text/tokenizer.h"

static const char *const TEXTS[] = {
    "Hello world! It's 2024, isn't it?  Spaces   and\ttabs\n\nnew lines",
    "<s>Hi</s> <|im_start|>user\n<unk> \xe2\x96\x81x \xc2\xbd \xd9\xa3 \xe0\xa4\xb9 caf\xc3\xa9 \xf0\x9f\x98\x80 \xe6\x97\xa5\xe6\x9c\xac",
    "",
    " ",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vlmc_tokenizer *t = NULL;
    vlmc_error err;
    if (tk_load_memory((const char *)data, size, "fuzz.json", &t, &err) != VLMC_OK) return 0;
    for (size_t k = 0; k < sizeof TEXTS / sizeof TEXTS[0]; k++) {
        for (int special = 0; special < 2; special++) {
            int32_t *ids = NULL;
            size_t n = 0;
            if (vlmc_tokenizer_encode(t, TEXTS[k], strlen(TEXTS[k]), special, &ids, &n, &err) != VLMC_OK) continue;
            for (size_t i = 0; i < n; i++) (void)vlmc_tokenizer_id_to_token(t, ids[i]);
            char *out = NULL;
            if (vlmc_tokenizer_decode(t, ids, n, special, &out, NULL, &err) == VLMC_OK) free(out);
            vlmc_decode_stream *s = NULL;
            if (vlmc_decode_stream_new(t, special, &s, &err) == VLMC_OK) {
                const char *piece;
                size_t len;
                for (size_t i = 0; i < n; i++) (void)vlmc_decode_stream_push(s, ids[i], &piece, &len, &err);
                (void)vlmc_decode_stream_flush(s, &piece, &len, &err);
                vlmc_decode_stream_free(s);
            }
            free(ids);
        }
    }
    /* ids outside the vocabulary are skipped, never read */
    int32_t odd[] = {-1, INT32_MAX, (int32_t)vlmc_tokenizer_vocab_size(t), 0};
    char *out = NULL;
    if (vlmc_tokenizer_decode(t, odd, 4, 0, &out, NULL, &err) == VLMC_OK) free(out);
    vlmc_tokenizer_free(t);
    return 0;
}
