/* libFuzzer: arbitrary bytes -> encode + decode with fixed, hand-made
 * tokenizers (built here with cJSON, so the target needs no files):
 *   0: byte-level BPE (Split regex + ByteLevel, added tokens) -- lossless, so
 *      decode(encode(x)) must give x back;
 *   1: SentencePiece style (Prepend/Replace normalizers, byte_fallback, unk,
 *      normalized added tokens, Replace/ByteFallback/Fuse/Strip decoders);
 *   2: Metaspace + Digits + Punctuation + NFKC/Lowercase, continuing-subword
 *      prefix and a WordPiece decoder.
 * For all: the streaming decode must equal the full decode. The first input
 * byte picks the tokenizer and the flags; invalid UTF-8 must be refused, and
 * is then retried with the bad bytes replaced. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "vlmc.h"
#include "core/utf8.h"
#include "text/tokenizer.h"

static void add_vocab(cJSON *vocab, const char *tok, int *next) {
    if (!cJSON_GetObjectItemCaseSensitive(vocab, tok)) cJSON_AddNumberToObject(vocab, tok, (*next)++);
}

static void add_added(cJSON *arr, const char *content, int id, int special, int normalized, int lstrip, int rstrip) {
    cJSON *a = cJSON_CreateObject();
    cJSON_AddNumberToObject(a, "id", id);
    cJSON_AddStringToObject(a, "content", content);
    cJSON_AddBoolToObject(a, "single_word", 0);
    cJSON_AddBoolToObject(a, "lstrip", lstrip);
    cJSON_AddBoolToObject(a, "rstrip", rstrip);
    cJSON_AddBoolToObject(a, "normalized", normalized);
    cJSON_AddBoolToObject(a, "special", special);
    cJSON_AddItemToArray(arr, a);
}

/* merges given as "left right" over the symbols already in vocab; the merged
 * tokens are added to vocab */
static void add_merges(cJSON *vocab, cJSON *merges, const char *const *list, int *next) {
    for (size_t i = 0; list[i]; i++) {
        char l[64], r[64], m[128];
        if (sscanf(list[i], "%63s %63s", l, r) != 2) continue;
        /* with a continuing-subword prefix, "a ##b" merges into "ab" */
        snprintf(m, sizeof m, "%s%s", l, strncmp(r, "##", 2) ? r : r + 2);
        add_vocab(vocab, l, next);
        add_vocab(vocab, r, next);
        add_vocab(vocab, m, next);
        cJSON_AddItemToArray(merges, cJSON_CreateString(list[i]));
    }
}

static char *build(int kind) {
    cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject(), *vocab = cJSON_CreateObject(),
          *merges = cJSON_CreateArray(), *added = cJSON_CreateArray();
    int next = 0;
    char tmp[16];
    if (kind == 0) {
        static const char *const m[] = {"Ġ t", "h e", "Ġt he", "i n", "e r", "a n", "Ġ a", "o n", "r e", "Ġ s", "Ġ w",
                                        "o r", "Ġ c", "e n", "i s", "Ġ 1", "1 2", "Ċ Ċ", "Ġ Ġ", "ĠĠ ĠĠ", "Ã ©", NULL};
        for (unsigned b = 0; b < 256; b++) {
            size_t k = utf8_encode(tk_byte_to_cp((unsigned char)b), tmp);
            tmp[k] = 0;
            add_vocab(vocab, tmp, &next);
        }
        add_merges(vocab, merges, m, &next);
        cJSON *seq = cJSON_CreateArray(), *split = cJSON_CreateObject(), *pat = cJSON_CreateObject(),
              *bl = cJSON_CreateObject(), *pre = cJSON_CreateObject();
        cJSON_AddStringToObject(split, "type", "Split");
        cJSON_AddStringToObject(pat, "Regex",
                                "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                                "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+");
        cJSON_AddItemToObject(split, "pattern", pat);
        cJSON_AddStringToObject(split, "behavior", "Isolated");
        cJSON_AddBoolToObject(split, "invert", 0);
        cJSON_AddStringToObject(bl, "type", "ByteLevel");
        cJSON_AddBoolToObject(bl, "add_prefix_space", 0);
        cJSON_AddBoolToObject(bl, "use_regex", 0);
        cJSON_AddItemToArray(seq, split);
        cJSON_AddItemToArray(seq, bl);
        cJSON_AddStringToObject(pre, "type", "Sequence");
        cJSON_AddItemToObject(pre, "pretokenizers", seq);
        cJSON_AddItemToObject(root, "pre_tokenizer", pre);
        cJSON *dec = cJSON_CreateObject();
        cJSON_AddStringToObject(dec, "type", "ByteLevel");
        cJSON_AddItemToObject(root, "decoder", dec);
        add_added(added, "<|endoftext|>", next++, 1, 0, 0, 0);
        add_added(added, "<tool>", next++, 0, 0, 0, 0);
        add_added(added, "<|im_start|>", next++, 1, 0, 0, 0);
    } else if (kind == 1) {
        static const char *const m[] = {"▁ t", "h e", "▁t he", "i n", "e r", "▁ a", "▁ ▁", "▁▁ ▁▁", "o n", "▁ 1", NULL};
        add_vocab(vocab, "<unk>", &next);
        add_vocab(vocab, "<s>", &next);
        add_vocab(vocab, "</s>", &next);
        for (unsigned b = 0; b < 256; b++) {
            snprintf(tmp, sizeof tmp, "<0x%02X>", b);
            add_vocab(vocab, tmp, &next);
        }
        for (char c = 'a'; c <= 'z'; c++) {
            tmp[0] = c;
            tmp[1] = 0;
            add_vocab(vocab, tmp, &next);
        }
        add_merges(vocab, merges, m, &next);
        cJSON_AddStringToObject(model, "unk_token", "<unk>");
        cJSON_AddBoolToObject(model, "fuse_unk", 1);
        cJSON_AddBoolToObject(model, "byte_fallback", 1);
        cJSON *norm = cJSON_Parse("{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"▁\"},"
                                  "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"▁\"}]}");
        cJSON_AddItemToObject(root, "normalizer", norm);
        cJSON *dec = cJSON_Parse("{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"▁\"},"
                                 "\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},"
                                 "{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]}");
        cJSON_AddItemToObject(root, "decoder", dec);
        cJSON *post = cJSON_Parse("{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
                                  "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\","
                                  "\"ids\":[1],\"tokens\":[\"<s>\"]}}}");
        cJSON_AddItemToObject(root, "post_processor", post);
        add_added(added, "<unk>", 0, 1, 1, 0, 0);
        add_added(added, "<s>", 1, 1, 1, 0, 0);
        add_added(added, "</s>", 2, 1, 0, 0, 0);
        add_added(added, "<mask>", next++, 1, 0, 1, 1);
    } else {
        static const char *const m[] = {"t ##h", "th ##e", "i ##n", "e ##r", "▁ ##t", "a ##n", NULL};
        add_vocab(vocab, "[UNK]", &next);
        for (char c = 'a'; c <= 'z'; c++) {
            tmp[0] = c;
            tmp[1] = 0;
            add_vocab(vocab, tmp, &next);
            snprintf(tmp, sizeof tmp, "##%c", c);
            add_vocab(vocab, tmp, &next);
        }
        for (char c = '0'; c <= '9'; c++) {
            tmp[0] = c;
            tmp[1] = 0;
            add_vocab(vocab, tmp, &next);
        }
        add_vocab(vocab, "▁", &next);
        add_vocab(vocab, "!", &next);
        add_merges(vocab, merges, m, &next);
        cJSON_AddStringToObject(model, "unk_token", "[UNK]");
        cJSON_AddStringToObject(model, "continuing_subword_prefix", "##");
        cJSON *norm = cJSON_Parse("{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFKC\"},{\"type\":\"Lowercase\"},"
                                  "{\"type\":\"Strip\",\"strip_left\":false,\"strip_right\":true}]}");
        cJSON_AddItemToObject(root, "normalizer", norm);
        cJSON *pre = cJSON_Parse("{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Metaspace\",\"replacement\":\"▁\","
                                 "\"prepend_scheme\":\"first\",\"split\":true},{\"type\":\"Digits\",\"individual_digits\":true},"
                                 "{\"type\":\"Punctuation\",\"behavior\":\"Contiguous\"}]}");
        cJSON_AddItemToObject(root, "pre_tokenizer", pre);
        cJSON *dec = cJSON_Parse("{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Metaspace\",\"replacement\":\"▁\","
                                 "\"prepend_scheme\":\"first\"},{\"type\":\"WordPiece\",\"prefix\":\"##\",\"cleanup\":true}]}");
        cJSON_AddItemToObject(root, "decoder", dec);
        add_added(added, "[CLS]", next++, 1, 0, 0, 0);
        add_added(added, "hello world", next++, 0, 1, 0, 0);
    }
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON_AddItemToObject(model, "merges", merges);
    cJSON_AddItemToObject(root, "model", model);
    cJSON_AddItemToObject(root, "added_tokens", added);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

static vlmc_tokenizer *get(int kind) {
    static vlmc_tokenizer *toks[3]; /* loaded once for the whole fuzzing run */
    if (!toks[kind]) {
        char *json = build(kind);
        vlmc_error err;
        if (!json || tk_load_memory(json, strlen(json), "fuzz-fixed.json", &toks[kind], &err) != VLMC_OK) {
            fprintf(stderr, "fixed tokenizer %d does not load: %s\n", kind, json ? err.message : "no json");
            __builtin_trap();
        }
        free(json);
    }
    return toks[kind];
}

static void check_stream(const vlmc_tokenizer *t, const int32_t *ids, size_t n, int skip, const char *full, size_t fl) {
    vlmc_decode_stream *s = NULL;
    vlmc_error err;
    if (vlmc_decode_stream_new(t, skip, &s, &err) != VLMC_OK) __builtin_trap();
    char *acc = malloc(fl + 1);
    size_t al = 0;
    const char *piece;
    size_t len;
    for (size_t i = 0; i <= n; i++) {
        vlmc_status st = i < n ? vlmc_decode_stream_push(s, ids[i], &piece, &len, &err)
                               : vlmc_decode_stream_flush(s, &piece, &len, &err);
        if (st != VLMC_OK || al + len > fl || memcmp(full + al, piece, len) || !utf8_valid(piece, len)) {
            fprintf(stderr, "stream differs from the full decode at id %zu\n", i);
            __builtin_trap();
        }
        al += len;
    }
    if (al != fl) __builtin_trap();
    free(acc);
    vlmc_decode_stream_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int kind = data[0] % 3, special = (data[0] >> 2) & 1;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    vlmc_tokenizer *t = get(kind);
    int32_t *ids = NULL;
    size_t ni = 0;
    vlmc_error err;
    char *fixed = NULL;
    if (!utf8_valid(text, n)) {
        if (vlmc_tokenizer_encode(t, text, n, special, &ids, &ni, &err) != VLMC_ERR_ARG) __builtin_trap();
        fixed = malloc(n + 1);
        for (size_t i = 0; i < n; i++) fixed[i] = (data[1 + i] < 0x80) ? text[i] : '?';
        text = fixed;
    }
    if (vlmc_tokenizer_encode(t, text, n, special, &ids, &ni, &err) != VLMC_OK) __builtin_trap();
    for (int skip = 0; skip < 2; skip++) {
        char *out = NULL;
        size_t ol = 0;
        if (vlmc_tokenizer_decode(t, ids, ni, skip, &out, &ol, &err) != VLMC_OK) __builtin_trap();
        if (!utf8_valid(out, ol)) __builtin_trap();
        /* byte-level BPE is lossless */
        if (kind == 0 && !special && !skip && (ol != n || memcmp(out, text, n))) {
            fprintf(stderr, "round trip failed\n");
            __builtin_trap();
        }
        check_stream(t, ids, ni, skip, out, ol);
        free(out);
    }
    free(ids);
    free(fixed);
    return 0;
}
