/* Hugging Face tokenizer.json tokenizers: the internal model shared by the
 * tokenizer_*.c files. The public face is the vlmc_tokenizer_* API in
 * include/vlmc.h.
 *
 * The pipeline mirrors the `tokenizers` library, component for component, so
 * that any tokenizer.json made of supported parts works with no per-model code:
 *
 *   text -> split off added tokens (non-normalized ones on the raw text)
 *        -> normalizer (per remaining segment)
 *        -> split off added tokens (normalized ones, on the normalized text)
 *        -> pre-tokenizer (segments -> "words")
 *        -> model (BPE: word -> ids, with a word cache)
 *        -> post-processor (BOS/EOS templates) when add_special is set
 *
 *   ids -> tokens (skipping special ones on request) -> decoder chain -> text
 *       [-> transformers' clean_up_tokenization when tokenizer_config asks]
 *
 * Offsets are not tracked: vlmc only needs ids and text, which keeps every
 * stage a plain "strings in, strings out" transformation. */
#ifndef VLMC_TEXT_TOKENIZER_H
#define VLMC_TEXT_TOKENIZER_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Upper bounds on outside data. */
#define TK_MAX_FILE_BYTES ((size_t)256 << 20) /* tokenizer.json */
#define TK_MAX_CONFIG_BYTES ((size_t)16 << 20) /* tokenizer_config.json, vocab.json, ... */
#define TK_MAX_VOCAB 4000000                  /* ids per vocabulary */
#define TK_MAX_DEPTH 16                       /* nesting of Sequence components */

/* ---- small growable containers ------------------------------------------- */

/* A byte buffer. Allocation failures set `oom` and turn later writes into
 * no-ops, so callers check once at the end instead of after every append. */
typedef struct tk_buf {
    char *p;
    size_t n, cap;
    bool oom;
} tk_buf;

bool tk_buf_reserve(tk_buf *b, size_t extra);
void tk_buf_put(tk_buf *b, const char *s, size_t n);
void tk_buf_putc(tk_buf *b, char c);
void tk_buf_put_cp(tk_buf *b, uint32_t cp); /* UTF-8 encoding of a code point */
void tk_buf_free(tk_buf *b);

/* A list of strings stored back to back in one buffer. */
typedef struct tk_piece {
    size_t off, len;
    int32_t id;    /* >= 0: an added token already resolved to its id */
    bool at_start; /* begins at offset 0 of the original text (Metaspace "first") */
} tk_piece;

typedef struct tk_pieces {
    tk_buf text;
    tk_piece *v;
    size_t n, cap;
} tk_pieces;

void tk_pieces_add(tk_pieces *p, const char *s, size_t n, int32_t id, bool at_start);
/* Appends an empty piece whose text is then written with tk_buf_* on p->text;
 * tk_pieces_end closes it. */
void tk_pieces_begin(tk_pieces *p, int32_t id, bool at_start);
void tk_pieces_end(tk_pieces *p);
void tk_pieces_clear(tk_pieces *p);
void tk_pieces_free(tk_pieces *p);
static inline const char *tk_piece_str(const tk_pieces *p, size_t i) { return p->text.p ? p->text.p + p->v[i].off : ""; }
bool tk_pieces_oom(const tk_pieces *p);

/* ---- regular expressions (PCRE2, Unicode mode) ---------------------------- */

typedef struct tk_regex {
    pcre2_code *code;
    char *lit; /* a literal pattern is searched with memmem instead (same matches) */
    size_t lit_len;
} tk_regex;

/* Compiles pattern[0..n); literal = a plain string to find (HF's {"String": ..}). */
vlmc_status tk_regex_compile(tk_regex *re, const char *pattern, size_t n, bool literal, const char *where,
                             vlmc_error *err);
void tk_regex_free(tk_regex *re);
/* Finds the next match of re in s[0..n) at or after `from`; returns false when
 * none. md needs only one pair: just the whole match is read (PCRE2 still
 * reports it when the capture groups do not fit). Subjects are trusted valid
 * UTF-8. */
bool tk_regex_next(const tk_regex *re, pcre2_match_data *md, const char *s, size_t n, size_t from, size_t *ms,
                   size_t *me);

/* ---- normalizers ----------------------------------------------------------- */

typedef enum tk_norm_type {
    TN_NFC, TN_NFD, TN_NFKC, TN_NFKD, TN_LOWERCASE, TN_PREPEND, TN_REPLACE, TN_STRIP, TN_STRIP_ACCENTS,
    TN_BERT, TN_BYTELEVEL, TN_SEQUENCE,
} tk_norm_type;

typedef struct tk_normalizer {
    tk_norm_type type;
    char *str;        /* Prepend: text; Replace: replacement */
    size_t str_len;
    tk_regex re;      /* Replace */
    bool left, right; /* Strip */
    bool bert_clean, bert_chinese, bert_strip_accents, bert_lower;
    struct tk_normalizer *items; /* Sequence */
    size_t n_items;
} tk_normalizer;

/* ---- pre-tokenizers --------------------------------------------------------- */

typedef enum tk_split_behavior { SB_REMOVED, SB_ISOLATED, SB_MERGED_PREV, SB_MERGED_NEXT, SB_CONTIGUOUS } tk_split_behavior;

typedef enum tk_pre_type {
    TP_BYTELEVEL, TP_SPLIT, TP_METASPACE, TP_DIGITS, TP_PUNCTUATION, TP_WHITESPACE, TP_WHITESPACE_SPLIT, TP_BERT,
    TP_SEQUENCE,
} tk_pre_type;

typedef enum tk_prepend { PS_ALWAYS, PS_FIRST, PS_NEVER } tk_prepend;

typedef struct tk_pretok {
    tk_pre_type type;
    bool add_prefix_space, use_regex; /* ByteLevel */
    char bl_s[256][2];                /* ByteLevel: each byte's stand-in, UTF-8 */
    unsigned char bl_n[256];
    tk_regex re;                      /* Split */
    tk_split_behavior behavior;       /* Split, Punctuation */
    bool invert;                      /* Split */
    uint32_t replacement;             /* Metaspace */
    tk_prepend prepend;               /* Metaspace */
    bool split;                       /* Metaspace */
    bool individual_digits;           /* Digits */
    struct tk_pretok *items;          /* Sequence */
    size_t n_items;
} tk_pretok;

/* ---- decoders ------------------------------------------------------------------ */

typedef enum tk_dec_type {
    TD_BYTELEVEL, TD_METASPACE, TD_BYTEFALLBACK, TD_FUSE, TD_STRIP, TD_REPLACE, TD_WORDPIECE, TD_BPE, TD_SEQUENCE,
} tk_dec_type;

typedef struct tk_decoder {
    tk_dec_type type;
    uint32_t ch;          /* Metaspace replacement, Strip content */
    tk_prepend prepend;   /* Metaspace */
    size_t start, stop;   /* Strip */
    tk_regex re;          /* Replace */
    char *str;            /* Replace content, WordPiece prefix, BPE suffix */
    size_t str_len;
    bool cleanup;         /* WordPiece */
    struct tk_decoder *items;
    size_t n_items;
} tk_decoder;

/* ---- the BPE model ----------------------------------------------------------- */

/* String -> id map, open addressing; keys live in the vocabulary's pool. */
typedef struct tk_strmap {
    int32_t *slots; /* entry index, -1 = empty */
    size_t mask;
} tk_strmap;

typedef struct tk_cache tk_cache;

typedef struct tk_bpe {
    /* id -> token string: offsets into pool; len < 0 marks a hole */
    char *pool;
    size_t pool_len;
    uint32_t *tok_off;
    int32_t *tok_len;
    size_t n_ids;     /* largest model id + 1 */
    tk_strmap vocab;  /* token string -> id (ids index tok_off/tok_len) */
    /* (left id, right id) -> merge rank and merged id; one 16-byte slot per
     * entry, so a probe touches one cache line */
    struct tk_merge { uint64_t key; uint32_t rank; int32_t new_id; /* -1: empty slot */ } *merges;
    size_t merge_mask, n_merges;
    int32_t unk_id; /* -1 when none */
    char *prefix, *suffix; /* continuing_subword_prefix, end_of_word_suffix (NULL when none) */
    size_t prefix_len, suffix_len;
    bool fuse_unk, byte_fallback, ignore_merges;
    int32_t byte_ids[256]; /* <0xNN> tokens, -1 when missing */
    int32_t char_ids[0x800]; /* ids of single code points < 0x800, -1 when not in vocab (no prefix/suffix) */
    tk_cache *cache;
    /* Adjacent code-point pairs that occur inside some vocabulary token (a
     * set; NULL when not built). A word may be cut where its two neighbouring
     * characters form no such pair: no merge can ever join them, so BPE on the
     * parts gives the same ids. Built for tokenizers without a pre-tokenizer,
     * whose "words" are whole texts, to keep the merge heap small. */
    uint64_t *pair_keys;
    size_t pair_mask;
} tk_bpe;

/* ---- added tokens --------------------------------------------------------------- */

typedef struct tk_added {
    char *content;
    size_t len;
    int32_t id;
    bool special, lstrip, rstrip, normalized, single_word;
    char *match;      /* what is searched for: content, or normalizer(content) when normalized */
    size_t match_len;
} tk_added;

/* A byte trie over the added tokens' match strings, for leftmost-longest
 * matching as the `tokenizers` library's Aho-Corasick does. */
typedef struct tk_trie_node {
    int32_t first_child, next_sibling;
    int32_t token; /* index into added[], -1 when no token ends here */
    unsigned char byte;
} tk_trie_node;

typedef struct tk_trie {
    tk_trie_node *nodes;
    size_t n, cap;
    bool first_byte[256];
} tk_trie;

/* ---- post-processor --------------------------------------------------------------- */

typedef struct tk_post {
    /* the single-sequence template as ids, with -1 marking where the text goes */
    int32_t *tmpl;
    size_t n_tmpl;
    bool has;
} tk_post;

/* ---- the tokenizer --------------------------------------------------------------- */

struct vlmc_tokenizer {
    char *path; /* for messages */
    tk_normalizer *normalizer; /* NULL when none */
    tk_pretok *pretok;
    tk_decoder *decoder;
    tk_bpe bpe;
    tk_added *added;
    size_t n_added, cap_added;
    tk_trie trie_raw, trie_norm; /* non-normalized / normalized added tokens */
    int32_t *added_of_id; /* id -> index into added[] (-1), n_ids entries */
    bool *special_of_id;  /* id -> is a special added token */
    size_t n_ids;         /* largest id + 1 over model and added tokens */
    tk_post post;
    bool clean_up_spaces;
    int32_t bos_id, eos_id, pad_id, unk_id;
    bool has_bytefallback_decoder;
    /* Slow (vocab.json + merges.txt) tokenizers decode like transformers'
     * Python tokenizers: added tokens outside the model vocabulary are decoded
     * on their own and the parts joined with spaces. */
    bool legacy_added_spacing;
};

/* An integer id in [0, limit) from a JSON number (a cJSON*); false otherwise
 * (also for fractions, huge values and non-numbers). */
bool tk_json_id(const void *json, int64_t limit, int32_t *out);

/* tokenizer_text.c */
vlmc_status tk_normalizer_parse(const void *json, tk_normalizer *out, int depth, const char *file, vlmc_error *err);
void tk_normalizer_free(tk_normalizer *n);
/* Normalizes s[0..n) into out (cleared first). */
vlmc_status tk_normalize(const tk_normalizer *nm, pcre2_match_data *md, const char *s, size_t n, tk_buf *out);
vlmc_status tk_pretok_parse(const void *json, tk_pretok *out, int depth, const char *file, vlmc_error *err);
void tk_pretok_free(tk_pretok *p);
/* Splits every piece of in that has no id yet; result in out (cleared first). */
vlmc_status tk_pretokenize(const tk_pretok *pt, pcre2_match_data *md, tk_pieces *in, tk_pieces *out);
bool tk_is_whitespace(uint32_t cp); /* Rust's char::is_whitespace */
/* The byte-level alphabet: byte -> code point and back (-1 when not one). */
uint32_t tk_byte_to_cp(unsigned char b);
int tk_cp_to_byte(uint32_t cp);

/* tokenizer_bpe.c */
vlmc_status tk_bpe_parse(const void *model_json, tk_bpe *out, const char *file, vlmc_error *err);
vlmc_status tk_bpe_from_files(const char *vocab_path, const char *merges_path, tk_bpe *out, vlmc_error *err);
void tk_bpe_free(tk_bpe *b);
/* Builds pair_keys (see tk_bpe); a no-op with a subword prefix or word suffix. */
vlmc_status tk_bpe_build_pairs(tk_bpe *b, const char *file, vlmc_error *err);
int32_t tk_bpe_lookup(const tk_bpe *b, const char *s, size_t n);
/* Appends the ids of one word to *ids (growing it). */
vlmc_status tk_bpe_word(const tk_bpe *b, const char *w, size_t n, int32_t **ids, size_t *n_ids, size_t *cap);
uint64_t tk_hash(const char *s, size_t n);

/* tokenizer_decode.c */
vlmc_status tk_decoder_parse(const void *json, tk_decoder *out, int depth, const char *file, vlmc_error *err);
void tk_decoder_free(tk_decoder *d);
bool tk_decoder_has(const tk_decoder *d, tk_dec_type t);
/* The `tokenizers` library's decode (no clean-up). */
vlmc_status tk_decode_raw(const vlmc_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, tk_buf *out);
/* transformers' clean_up_tokenization, in place on b. */
void tk_cleanup(tk_buf *b);
/* Rust's String::from_utf8_lossy: appends s[0..n) to out with each maximal
 * invalid subsequence replaced by U+FFFD. */
void tk_utf8_lossy(const char *s, size_t n, tk_buf *out);

/* tokenizer.c */
/* Loads from tokenizer.json text in memory (no tokenizer_config.json); `name`
 * stands for the file in messages. For fuzzing and tests. */
vlmc_status tk_load_memory(const char *json, size_t len, const char *name, vlmc_tokenizer **out, vlmc_error *err);
const char *tk_id_to_token(const vlmc_tokenizer *t, int32_t id, size_t *len);

#endif
