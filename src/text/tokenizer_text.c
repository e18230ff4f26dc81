/* Tokenizer text stages: containers, PCRE2 regexes, normalizers and
 * pre-tokenizers. Each component follows the `tokenizers` library's semantics
 * (the Rust crate), including its quirks, because ids must match exactly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <utf8proc.h>

#include "core/utf8.h"
#include "formats/json.h"
#include "text/tokenizer.h"

/* ---- containers ----------------------------------------------------------- */

bool tk_buf_reserve(tk_buf *b, size_t extra) {
    if (b->oom) return false;
    if (extra > SIZE_MAX / 2 - b->n) {
        b->oom = true;
        return false;
    }
    if (b->n + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void tk_buf_put(tk_buf *b, const char *s, size_t n) {
    if (!tk_buf_reserve(b, n)) return;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void tk_buf_putc(tk_buf *b, char c) { tk_buf_put(b, &c, 1); }

void tk_buf_put_cp(tk_buf *b, uint32_t cp) {
    char tmp[4];
    size_t k = utf8_encode(cp, tmp);
    tk_buf_put(b, tmp, k);
}

void tk_buf_free(tk_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

static bool pieces_grow(tk_pieces *p) {
    if (p->n < p->cap) return true;
    size_t cap = p->cap ? p->cap * 2 : 16;
    tk_piece *v = realloc(p->v, cap * sizeof *v);
    if (!v) {
        p->text.oom = true;
        return false;
    }
    p->v = v;
    p->cap = cap;
    return true;
}

void tk_pieces_begin(tk_pieces *p, int32_t id, bool at_start) {
    if (!pieces_grow(p)) return;
    p->v[p->n++] = (tk_piece){.off = p->text.n, .len = 0, .id = id, .at_start = at_start};
}

void tk_pieces_end(tk_pieces *p) {
    if (p->n && !p->text.oom) p->v[p->n - 1].len = p->text.n - p->v[p->n - 1].off;
}

void tk_pieces_add(tk_pieces *p, const char *s, size_t n, int32_t id, bool at_start) {
    tk_pieces_begin(p, id, at_start);
    tk_buf_put(&p->text, s, n);
    tk_pieces_end(p);
}

void tk_pieces_clear(tk_pieces *p) {
    p->n = 0;
    p->text.n = 0;
}

void tk_pieces_free(tk_pieces *p) {
    tk_buf_free(&p->text);
    free(p->v);
    memset(p, 0, sizeof *p);
}

bool tk_pieces_oom(const tk_pieces *p) { return p->text.oom; }

/* ---- regexes --------------------------------------------------------------- */

vlmc_status tk_regex_compile(tk_regex *re, const char *pattern, size_t n, bool literal, const char *where,
                             vlmc_error *err) {
    int code;
    PCRE2_SIZE at;
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    re->code = pcre2_compile((PCRE2_SPTR)pattern, n, opts, &code, &at, NULL);
    if (!re->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: bad regex at offset %zu: %s", where, (size_t)at, (char *)msg);
    }
    /* JIT makes the GPT-2 style splitters several times faster; the
     * interpreter is a correct fallback when JIT is unavailable. */
    (void)pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);
    if (literal && n > 0) {
        re->lit = malloc(n);
        if (!re->lit) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", where);
        memcpy(re->lit, pattern, n);
        re->lit_len = n;
    }
    return VLMC_OK;
}

void tk_regex_free(tk_regex *re) {
    if (re->code) pcre2_code_free(re->code);
    free(re->lit);
    re->code = NULL;
    re->lit = NULL;
}

bool tk_regex_next(const tk_regex *re, pcre2_match_data *md, const char *s, size_t n, size_t from, size_t *ms,
                   size_t *me) {
    if (from > n) return false;
    if (re->lit) {
        const char *p = memmem(s + from, n - from, re->lit, re->lit_len);
        if (!p) return false;
        *ms = (size_t)(p - s);
        *me = *ms + re->lit_len;
        return true;
    }
    int rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, md, NULL);
    /* JIT's small default stack can overflow on very long matches (a
     * megabyte of spaces): the interpreter, which uses the heap, then decides */
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
    if (rc < 0) return false; /* no match, or a match limit: treated as no match */
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    if (ov[0] > ov[1] || ov[1] > n) return false; /* \K tricks */
    *ms = ov[0];
    *me = ov[1];
    return true;
}

/* ---- character classes (as Rust's char methods) ------------------------------ */

bool tk_is_whitespace(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
           c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

static bool is_numeric(uint32_t c) {
    if (c < 0x80) return c >= '0' && c <= '9';
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

static bool is_punctuation(uint32_t c) {
    if (c < 0x80) return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

static bool is_mark(uint32_t c) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_MC || k == UTF8PROC_CATEGORY_ME;
}

static bool is_cased_letter(uint32_t c) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT;
}

/* GPT-2's byte-to-unicode table: printable Latin-1 bytes stand for themselves,
 * the other 68 bytes map to U+0100.. in byte order. */
uint32_t tk_byte_to_cp(unsigned char b) {
    if (b <= 32) return 256u + b;
    if (b >= 127 && b <= 160) return 256u + 33 + (b - 127u);
    if (b == 173) return 256u + 67;
    return b;
}

int tk_cp_to_byte(uint32_t cp) {
    if (cp < 256) return ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || cp >= 174) ? (int)cp : -1;
    uint32_t k = cp - 256;
    if (k < 33) return (int)k;
    if (k < 67) return (int)(127 + (k - 33));
    if (k == 67) return 173;
    return -1;
}

/* The UTF-8 form of every byte's stand-in, built on the stack where needed
 * (no global mutable state). */
typedef struct byte_map {
    char s[256][2];
    unsigned char n[256];
} byte_map;

static void byte_map_init(byte_map *m) {
    for (unsigned b = 0; b < 256; b++) {
        char tmp[4];
        size_t k = utf8_encode(tk_byte_to_cp((unsigned char)b), tmp);
        memcpy(m->s[b], tmp, k);
        m->n[b] = (unsigned char)k;
    }
}

/* ---- JSON helpers ------------------------------------------------------------ */

static const char *jtype(const cJSON *j) { return json_string(j, "type", NULL); }

/* HF patterns are {"String": "..."} or {"Regex": "..."}. */
static vlmc_status parse_pattern(const cJSON *j, tk_regex *re, const char *file, const char *what, vlmc_error *err) {
    const cJSON *p = json_get(j, "pattern");
    const cJSON *s = json_get(p, "String"), *r = json_get(p, "Regex");
    char where[512];
    snprintf(where, sizeof where, "%s: %s pattern", file, what);
    if (cJSON_IsString(s)) return tk_regex_compile(re, s->valuestring, strlen(s->valuestring), true, where, err);
    if (cJSON_IsString(r)) return tk_regex_compile(re, r->valuestring, strlen(r->valuestring), false, where, err);
    return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %s needs a pattern {\"String\"|\"Regex\": ...}", file, what);
}

static vlmc_status dup_str(const cJSON *j, const char *key, const char *def, char **out, size_t *len, const char *file,
                           const char *what, vlmc_error *err) {
    const cJSON *v = json_get(j, key);
    const char *s = def;
    if (v) {
        if (!cJSON_IsString(v)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %s.%s must be a string", file, what, key);
        s = v->valuestring;
    }
    if (!s) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %s needs \"%s\"", file, what, key);
    *out = strdup(s);
    if (!*out) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file);
    *len = strlen(s);
    return VLMC_OK;
}

/* A single code point given as a one-character string. */
static vlmc_status parse_char(const cJSON *j, const char *key, uint32_t def, uint32_t *out, const char *file,
                              const char *what, vlmc_error *err) {
    const cJSON *v = json_get(j, key);
    if (!v) {
        *out = def;
        return VLMC_OK;
    }
    if (!cJSON_IsString(v)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %s.%s must be a string", file, what, key);
    size_t n = strlen(v->valuestring);
    uint32_t cp;
    if (n == 0 || utf8_decode(v->valuestring, n, &cp) != n)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %s.%s must be one character", file, what, key);
    *out = cp;
    return VLMC_OK;
}

static vlmc_status parse_prepend_scheme(const cJSON *j, tk_prepend *out, const char *file, vlmc_error *err) {
    const char *s = json_string(j, "prepend_scheme", NULL);
    if (!s) {
        /* legacy files carry add_prefix_space instead */
        *out = json_bool(j, "add_prefix_space", true) ? PS_ALWAYS : PS_NEVER;
        return VLMC_OK;
    }
    if (!strcmp(s, "always")) *out = PS_ALWAYS;
    else if (!strcmp(s, "first")) *out = PS_FIRST;
    else if (!strcmp(s, "never")) *out = PS_NEVER;
    else return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: Metaspace prepend_scheme \"%s\" is unknown", file, s);
    return VLMC_OK;
}

/* ---- normalizers --------------------------------------------------------------- */

vlmc_status tk_normalizer_parse(const void *json, tk_normalizer *out, int depth, const char *file, vlmc_error *err) {
    const cJSON *j = json;
    memset(out, 0, sizeof *out);
    if (depth > TK_MAX_DEPTH) return vlmc_fail(err, VLMC_ERR_LIMIT, "%s: normalizers nested too deeply", file);
    const char *t = jtype(j);
    if (!t) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: normalizer without a \"type\"", file);
    if (!strcmp(t, "NFC")) out->type = TN_NFC;
    else if (!strcmp(t, "NFD")) out->type = TN_NFD;
    else if (!strcmp(t, "NFKC")) out->type = TN_NFKC;
    else if (!strcmp(t, "NFKD")) out->type = TN_NFKD;
    else if (!strcmp(t, "Lowercase")) out->type = TN_LOWERCASE;
    else if (!strcmp(t, "StripAccents")) out->type = TN_STRIP_ACCENTS;
    else if (!strcmp(t, "ByteLevel")) out->type = TN_BYTELEVEL;
    else if (!strcmp(t, "Prepend")) {
        out->type = TN_PREPEND;
        return dup_str(j, "prepend", NULL, &out->str, &out->str_len, file, "Prepend normalizer", err);
    } else if (!strcmp(t, "Replace")) {
        out->type = TN_REPLACE;
        vlmc_status s = dup_str(j, "content", NULL, &out->str, &out->str_len, file, "Replace normalizer", err);
        if (s) return s;
        return parse_pattern(j, &out->re, file, "Replace normalizer", err);
    } else if (!strcmp(t, "Strip")) {
        out->type = TN_STRIP;
        out->left = json_bool(j, "strip_left", true);
        out->right = json_bool(j, "strip_right", true);
    } else if (!strcmp(t, "BertNormalizer")) {
        out->type = TN_BERT;
        out->bert_clean = json_bool(j, "clean_text", true);
        out->bert_chinese = json_bool(j, "handle_chinese_chars", true);
        out->bert_lower = json_bool(j, "lowercase", true);
        out->bert_strip_accents = json_bool(j, "strip_accents", out->bert_lower);
    } else if (!strcmp(t, "Sequence")) {
        out->type = TN_SEQUENCE;
        const cJSON *arr = json_get(j, "normalizers");
        if (!cJSON_IsArray(arr)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: Sequence normalizer needs a \"normalizers\" array", file);
        int n = cJSON_GetArraySize(arr);
        out->items = calloc(n ? (size_t)n : 1, sizeof *out->items);
        if (!out->items) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file);
        const cJSON *it;
        cJSON_ArrayForEach(it, arr) {
            vlmc_status s = tk_normalizer_parse(it, &out->items[out->n_items++], depth + 1, file, err);
            if (s) return s;
        }
    } else
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: normalizer type \"%s\" is not supported", file, t);
    return VLMC_OK;
}

void tk_normalizer_free(tk_normalizer *n) {
    if (!n) return;
    free(n->str);
    tk_regex_free(&n->re);
    for (size_t i = 0; i < n->n_items; i++) tk_normalizer_free(&n->items[i]);
    free(n->items);
}

static bool all_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return false;
    return true;
}

/* True when NFC cannot change s: every character is below U+0300 or a CJK
 * ideograph / Hangul syllable / kana letter. None of these decomposes
 * canonically, and none is ever the second half of a canonical composition
 * (those are combining marks and conjoining jamo, all outside these ranges). */
static bool nfc_stable(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t c;
        size_t k = utf8_decode(s + i, n - i, &c);
        if (!k) return false;
        if (!(c < 0x300 || (c >= 0x4e00 && c <= 0x9fff) || (c >= 0xac00 && c <= 0xd7a3) || (c >= 0x3041 && c <= 0x3096) ||
              (c >= 0x30a1 && c <= 0x30fa)))
            return false;
        i += k;
    }
    return true;
}

static vlmc_status unicode_form(const char *s, size_t n, utf8proc_option_t opt, tk_buf *out) {
    out->n = 0;
    if (all_ascii(s, n) || (opt == UTF8PROC_COMPOSE && nfc_stable(s, n))) { /* nothing to change */
        tk_buf_put(out, s, n);
        return out->oom ? VLMC_ERR_NOMEM : VLMC_OK;
    }
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst, opt | UTF8PROC_STABLE);
    if (k < 0) {
        free(dst);
        return k == UTF8PROC_ERROR_NOMEM ? VLMC_ERR_NOMEM : VLMC_ERR_ARG;
    }
    tk_buf_put(out, (const char *)dst, (size_t)k);
    free(dst);
    return out->oom ? VLMC_ERR_NOMEM : VLMC_OK;
}

/* Rust's str::to_lowercase: full mappings for the one multi-char case (U+0130)
 * and the context-dependent final sigma; simple mappings otherwise. */
static void lowercase(const char *s, size_t n, tk_buf *out) {
    out->n = 0;
    size_t i = 0;
    while (i < n) {
        uint32_t c;
        size_t k = utf8_decode(s + i, n - i, &c);
        if (!k) { c = 0xfffd; k = 1; }
        if (c < 0x80) {
            tk_buf_putc(out, (char)(c >= 'A' && c <= 'Z' ? c + 32 : c));
        } else if (c == 0x130) {
            tk_buf_put(out, "i\xcc\x87", 3);
        } else if (c == 0x3a3) {
            /* final sigma: preceded by a cased letter and not followed by one */
            bool before = false, after = false;
            for (size_t j = i; j > 0;) {
                size_t st = j - 1;
                while (st > 0 && ((unsigned char)s[st] & 0xc0) == 0x80) st--;
                uint32_t p;
                if (!utf8_decode(s + st, j - st, &p)) break;
                if (is_mark(p)) { j = st; continue; }
                before = is_cased_letter(p);
                break;
            }
            for (size_t j = i + k; j < n;) {
                uint32_t p;
                size_t m = utf8_decode(s + j, n - j, &p);
                if (!m) break;
                if (is_mark(p)) { j += m; continue; }
                after = is_cased_letter(p);
                break;
            }
            tk_buf_put_cp(out, before && !after ? 0x3c2 : 0x3c3);
        } else {
            tk_buf_put_cp(out, (uint32_t)utf8proc_tolower((utf8proc_int32_t)c));
        }
        i += k;
    }
}

static bool is_chinese(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static vlmc_status normalize_one(const tk_normalizer *nm, pcre2_match_data *md, const char *s, size_t n, tk_buf *out) {
    tk_buf tmp = {0};
    vlmc_status st = VLMC_OK;
    out->n = 0;
    switch (nm->type) {
    case TN_NFC: return unicode_form(s, n, UTF8PROC_COMPOSE, out);
    case TN_NFD: return unicode_form(s, n, UTF8PROC_DECOMPOSE, out);
    case TN_NFKC: return unicode_form(s, n, UTF8PROC_COMPOSE | UTF8PROC_COMPAT, out);
    case TN_NFKD: return unicode_form(s, n, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, out);
    case TN_LOWERCASE: lowercase(s, n, out); break;
    case TN_PREPEND:
        if (n) tk_buf_put(out, nm->str, nm->str_len);
        tk_buf_put(out, s, n);
        break;
    case TN_REPLACE: {
        size_t at = 0, ms, me;
        while (at <= n && tk_regex_next(&nm->re, md, s, n, at, &ms, &me)) {
            tk_buf_put(out, s + at, ms - at);
            tk_buf_put(out, nm->str, nm->str_len);
            if (me == ms) { /* empty match: keep one character and move on */
                if (ms >= n) { at = n + 1; break; }
                size_t k = 1;
                while (ms + k < n && ((unsigned char)s[ms + k] & 0xc0) == 0x80) k++;
                tk_buf_put(out, s + ms, k);
                at = ms + k;
            } else
                at = me;
        }
        if (at < n) tk_buf_put(out, s + at, n - at);
        break;
    }
    case TN_STRIP: {
        size_t a = 0, b = n;
        uint32_t c;
        size_t k;
        while (nm->left && a < b && (k = utf8_decode(s + a, b - a, &c)) && tk_is_whitespace(c)) a += k;
        while (nm->right && b > a) {
            size_t st = b - 1;
            while (st > a && ((unsigned char)s[st] & 0xc0) == 0x80) st--;
            if (!utf8_decode(s + st, b - st, &c) || !tk_is_whitespace(c)) break;
            b = st;
        }
        tk_buf_put(out, s + a, b - a);
        break;
    }
    case TN_STRIP_ACCENTS: {
        size_t i = 0;
        while (i < n) {
            uint32_t c;
            size_t k = utf8_decode(s + i, n - i, &c);
            if (!k) break;
            if (!is_mark(c)) tk_buf_put(out, s + i, k);
            i += k;
        }
        break;
    }
    case TN_BYTELEVEL: {
        byte_map m;
        byte_map_init(&m);
        for (size_t i = 0; i < n; i++) tk_buf_put(out, m.s[(unsigned char)s[i]], m.n[(unsigned char)s[i]]);
        break;
    }
    case TN_BERT: {
        for (size_t i = 0; i < n;) {
            uint32_t c;
            size_t k = utf8_decode(s + i, n - i, &c);
            if (!k) break;
            i += k;
            if (nm->bert_clean) {
                if (c == 0 || c == 0xfffd) continue;
                if (c == '\t' || c == '\n' || c == '\r' || tk_is_whitespace(c)) { tk_buf_putc(&tmp, ' '); continue; }
                utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
                if (cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF || cat == UTF8PROC_CATEGORY_CN ||
                    cat == UTF8PROC_CATEGORY_CO)
                    continue;
            }
            if (nm->bert_chinese && is_chinese(c)) {
                tk_buf_putc(&tmp, ' ');
                tk_buf_put_cp(&tmp, c);
                tk_buf_putc(&tmp, ' ');
            } else
                tk_buf_put_cp(&tmp, c);
        }
        if (tmp.oom) { st = VLMC_ERR_NOMEM; break; }
        const char *cur = tmp.p ? tmp.p : "";
        size_t cn = tmp.n;
        tk_buf t2 = {0};
        if (nm->bert_strip_accents) {
            st = unicode_form(cur, cn, UTF8PROC_DECOMPOSE, &t2);
            if (st) { tk_buf_free(&t2); break; }
            tk_buf t3 = {0};
            tk_normalizer sa = {.type = TN_STRIP_ACCENTS};
            normalize_one(&sa, md, t2.p ? t2.p : "", t2.n, &t3);
            tk_buf_free(&t2);
            t2 = t3;
            cur = t2.p ? t2.p : "";
            cn = t2.n;
        }
        if (nm->bert_lower) lowercase(cur, cn, out);
        else tk_buf_put(out, cur, cn);
        tk_buf_free(&t2);
        break;
    }
    case TN_SEQUENCE: {
        tk_buf_put(out, s, n);
        for (size_t i = 0; i < nm->n_items && !st && !out->oom; i++) {
            tk_buf_free(&tmp);
            st = normalize_one(&nm->items[i], md, out->p ? out->p : "", out->n, &tmp);
            tk_buf t = *out;
            *out = tmp;
            tmp = t;
        }
        break;
    }
    }
    tk_buf_free(&tmp);
    if (!st && out->oom) st = VLMC_ERR_NOMEM;
    return st;
}

vlmc_status tk_normalize(const tk_normalizer *nm, pcre2_match_data *md, const char *s, size_t n, tk_buf *out) {
    out->n = 0;
    out->oom = false;
    if (!nm) {
        tk_buf_put(out, s, n);
        return out->oom ? VLMC_ERR_NOMEM : VLMC_OK;
    }
    return normalize_one(nm, md, s, n, out);
}

/* ---- pre-tokenizers ------------------------------------------------------------ */

vlmc_status tk_pretok_parse(const void *json, tk_pretok *out, int depth, const char *file, vlmc_error *err) {
    const cJSON *j = json;
    memset(out, 0, sizeof *out);
    if (depth > TK_MAX_DEPTH) return vlmc_fail(err, VLMC_ERR_LIMIT, "%s: pre-tokenizers nested too deeply", file);
    const char *t = jtype(j);
    if (!t) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: pre_tokenizer without a \"type\"", file);
    if (!strcmp(t, "ByteLevel")) {
        out->type = TP_BYTELEVEL;
        out->add_prefix_space = json_bool(j, "add_prefix_space", true);
        out->use_regex = json_bool(j, "use_regex", true);
        for (unsigned b = 0; b < 256; b++) {
            char tmp[4];
            size_t k = utf8_encode(tk_byte_to_cp((unsigned char)b), tmp);
            memcpy(out->bl_s[b], tmp, k);
            out->bl_n[b] = (unsigned char)k;
        }
        if (out->use_regex) {
            static const char gpt2[] =
                "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
            return tk_regex_compile(&out->re, gpt2, sizeof gpt2 - 1, false, "GPT-2 pattern", err);
        }
    } else if (!strcmp(t, "Split")) {
        out->type = TP_SPLIT;
        const char *b = json_string(j, "behavior", NULL);
        if (!b) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: Split pre-tokenizer needs a \"behavior\"", file);
        if (!strcmp(b, "Removed")) out->behavior = SB_REMOVED;
        else if (!strcmp(b, "Isolated")) out->behavior = SB_ISOLATED;
        else if (!strcmp(b, "MergedWithPrevious")) out->behavior = SB_MERGED_PREV;
        else if (!strcmp(b, "MergedWithNext")) out->behavior = SB_MERGED_NEXT;
        else if (!strcmp(b, "Contiguous")) out->behavior = SB_CONTIGUOUS;
        else return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: Split behavior \"%s\" is unknown", file, b);
        out->invert = json_bool(j, "invert", false);
        return parse_pattern(j, &out->re, file, "Split pre-tokenizer", err);
    } else if (!strcmp(t, "Metaspace")) {
        out->type = TP_METASPACE;
        vlmc_status s = parse_char(j, "replacement", 0x2581, &out->replacement, file, "Metaspace", err);
        if (s) return s;
        out->split = json_bool(j, "split", true);
        return parse_prepend_scheme(j, &out->prepend, file, err);
    } else if (!strcmp(t, "Digits")) {
        out->type = TP_DIGITS;
        out->individual_digits = json_bool(j, "individual_digits", false);
    } else if (!strcmp(t, "Punctuation")) {
        out->type = TP_PUNCTUATION;
        const char *b = json_string(j, "behavior", "Isolated");
        if (!strcmp(b, "Removed")) out->behavior = SB_REMOVED;
        else if (!strcmp(b, "Isolated")) out->behavior = SB_ISOLATED;
        else if (!strcmp(b, "MergedWithPrevious")) out->behavior = SB_MERGED_PREV;
        else if (!strcmp(b, "MergedWithNext")) out->behavior = SB_MERGED_NEXT;
        else if (!strcmp(b, "Contiguous")) out->behavior = SB_CONTIGUOUS;
        else return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: Punctuation behavior \"%s\" is unknown", file, b);
    } else if (!strcmp(t, "Whitespace")) {
        out->type = TP_WHITESPACE;
        /* HF's \w+|[^\w\s]+ in the Rust regex crate, whose \w is Unicode's
         * word class; PCRE2 10.42's \w lacks the marks, so spell it out */
        static const char ws[] = "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]+|"
                                 "[^\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}\\s]+";
        return tk_regex_compile(&out->re, ws, sizeof ws - 1, false, "Whitespace pattern", err);
    } else if (!strcmp(t, "WhitespaceSplit")) {
        out->type = TP_WHITESPACE_SPLIT;
    } else if (!strcmp(t, "BertPreTokenizer")) {
        out->type = TP_BERT;
    } else if (!strcmp(t, "Sequence")) {
        out->type = TP_SEQUENCE;
        const cJSON *arr = json_get(j, "pretokenizers");
        if (!cJSON_IsArray(arr))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: Sequence pre-tokenizer needs a \"pretokenizers\" array", file);
        int n = cJSON_GetArraySize(arr);
        out->items = calloc(n ? (size_t)n : 1, sizeof *out->items);
        if (!out->items) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file);
        const cJSON *it;
        cJSON_ArrayForEach(it, arr) {
            vlmc_status s = tk_pretok_parse(it, &out->items[out->n_items++], depth + 1, file, err);
            if (s) return s;
        }
    } else
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: pre_tokenizer type \"%s\" is not supported", file, t);
    return VLMC_OK;
}

void tk_pretok_free(tk_pretok *p) {
    if (!p) return;
    tk_regex_free(&p->re);
    for (size_t i = 0; i < p->n_items; i++) tk_pretok_free(&p->items[i]);
    free(p->items);
}

/* A split of one piece: consecutive spans covering it, each a match or not,
 * as the `tokenizers` Pattern::find_matches produces them. */
typedef struct span {
    size_t a, b;
    bool match;
} span;

typedef struct spans {
    span *v;
    size_t n, cap;
    bool oom;
} spans;

static void spans_add(spans *s, size_t a, size_t b, bool m) {
    if (s->oom) return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        span *v = realloc(s->v, cap * sizeof *v);
        if (!v) { s->oom = true; return; }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (span){a, b, m};
}

static void find_regex(const tk_regex *re, pcre2_match_data *md, const char *s, size_t n, bool invert, spans *out) {
    out->n = 0;
    if (n == 0) { spans_add(out, 0, 0, invert); return; }
    size_t prev = 0, at = 0, ms, me;
    while (at <= n && tk_regex_next(re, md, s, n, at, &ms, &me)) {
        if (ms > prev) spans_add(out, prev, ms, invert);
        spans_add(out, ms, me, !invert);
        prev = me;
        if (me == ms) { /* empty match: step over one character */
            at = me + 1;
            while (at < n && ((unsigned char)s[at] & 0xc0) == 0x80) at++;
        } else
            at = me;
    }
    if (prev < n) spans_add(out, prev, n, invert);
}

typedef bool (*char_pred)(uint32_t c, uint32_t arg);

static bool pred_numeric(uint32_t c, uint32_t arg) { (void)arg; return is_numeric(c); }
static bool pred_punct(uint32_t c, uint32_t arg) { (void)arg; return is_punctuation(c); }
static bool pred_space(uint32_t c, uint32_t arg) { (void)arg; return tk_is_whitespace(c); }
static bool pred_char(uint32_t c, uint32_t arg) { return c == arg; }

/* Every matching character is its own match span. */
static void find_chars(char_pred pred, uint32_t arg, const char *s, size_t n, spans *out) {
    out->n = 0;
    if (n == 0) { spans_add(out, 0, 0, false); return; }
    size_t last = 0, i = 0;
    while (i < n) {
        uint32_t c;
        size_t k = utf8_decode(s + i, n - i, &c);
        if (!k) { c = 0xfffd; k = 1; }
        if (pred(c, arg)) {
            if (last < i) spans_add(out, last, i, false);
            spans_add(out, i, i + k, true);
            last = i + k;
        }
        i += k;
    }
    if (n > last) spans_add(out, last, n, false);
}

/* Applies a split behavior to the spans (NormalizedString::split) and appends
 * the non-empty results to out. */
static void apply_behavior(const char *s, spans *sp, tk_split_behavior bh, bool at_start, tk_pieces *out) {
    size_t w = 0;
    bool prev = false;
    switch (bh) {
    case SB_ISOLATED:
        for (size_t i = 0; i < sp->n; i++) sp->v[i].match = false;
        w = sp->n;
        break;
    case SB_REMOVED: w = sp->n; break;
    case SB_CONTIGUOUS:
        for (size_t i = 0; i < sp->n; i++) {
            bool m = sp->v[i].match;
            if (m == prev && w > 0) sp->v[w - 1].b = sp->v[i].b;
            else sp->v[w++] = (span){sp->v[i].a, sp->v[i].b, false};
            prev = m;
        }
        break;
    case SB_MERGED_PREV:
        for (size_t i = 0; i < sp->n; i++) {
            bool m = sp->v[i].match;
            if (m && !prev && w > 0) sp->v[w - 1].b = sp->v[i].b;
            else sp->v[w++] = (span){sp->v[i].a, sp->v[i].b, false};
            prev = m;
        }
        break;
    case SB_MERGED_NEXT: {
        /* the same fold run from the end; results are written back to front */
        size_t top = sp->n;
        for (size_t i = sp->n; i-- > 0;) {
            bool m = sp->v[i].match;
            if (m && !prev && top < sp->n) sp->v[top].a = sp->v[i].a;
            else sp->v[--top] = (span){sp->v[i].a, sp->v[i].b, false};
            prev = m;
        }
        memmove(sp->v, sp->v + top, (sp->n - top) * sizeof *sp->v);
        w = sp->n - top;
        break;
    }
    }
    for (size_t i = 0; i < w; i++) {
        if (sp->v[i].match || sp->v[i].b <= sp->v[i].a) continue;
        tk_pieces_add(out, s + sp->v[i].a, sp->v[i].b - sp->v[i].a, -1, at_start && sp->v[i].a == 0);
    }
}

static void pretok_one(const tk_pretok *pt, pcre2_match_data *md, const char *s, size_t n, bool at_start, spans *sp,
                       tk_buf *tmp, tk_pieces *out) {
    switch (pt->type) {
    case TP_BYTELEVEL: {
        tmp->n = 0;
        if (pt->add_prefix_space && (n == 0 || s[0] != ' ')) tk_buf_putc(tmp, ' ');
        tk_buf_put(tmp, s, n);
        if (tmp->oom) { out->text.oom = true; return; }
        const char *t = tmp->p;
        size_t tn = tmp->n;
        if (pt->use_regex) {
            find_regex(&pt->re, md, t, tn, false, sp);
            if (sp->oom) { out->text.oom = true; return; }
        } else {
            sp->n = 0;
            spans_add(sp, 0, tn, false);
        }
        for (size_t i = 0; i < sp->n; i++) {
            if (sp->v[i].b <= sp->v[i].a) continue;
            tk_pieces_begin(out, -1, at_start && sp->v[i].a == 0);
            /* at most two output bytes per input byte: reserve once, write directly */
            if (tk_buf_reserve(&out->text, 2 * (sp->v[i].b - sp->v[i].a))) {
                char *w = out->text.p + out->text.n;
                for (size_t k = sp->v[i].a; k < sp->v[i].b; k++) {
                    unsigned char c = (unsigned char)t[k];
                    w[0] = pt->bl_s[c][0];
                    w[1] = pt->bl_s[c][1];
                    w += pt->bl_n[c];
                }
                out->text.n = (size_t)(w - out->text.p);
                out->text.p[out->text.n] = 0;
            }
            tk_pieces_end(out);
        }
        return;
    }
    case TP_SPLIT:
        find_regex(&pt->re, md, s, n, pt->invert, sp);
        break;
    case TP_WHITESPACE:
        find_regex(&pt->re, md, s, n, true, sp);
        apply_behavior(s, sp, SB_REMOVED, at_start, out);
        return;
    case TP_METASPACE: {
        tmp->n = 0;
        char rep[4];
        size_t rn = utf8_encode(pt->replacement, rep);
        bool starts = n >= rn && !memcmp(s, rep, rn) && rn > 0;
        /* spaces become the replacement before the prepend check, as in HF */
        bool first_is_space = n > 0 && s[0] == ' ';
        if (!starts && !first_is_space &&
            (pt->prepend == PS_ALWAYS || (pt->prepend == PS_FIRST && at_start)))
            tk_buf_put(tmp, rep, rn);
        for (size_t i = 0; i < n; i++) {
            if (s[i] == ' ') tk_buf_put(tmp, rep, rn);
            else tk_buf_putc(tmp, s[i]);
        }
        if (tmp->oom) { out->text.oom = true; return; }
        if (!pt->split) {
            if (tmp->n) tk_pieces_add(out, tmp->p, tmp->n, -1, at_start);
            return;
        }
        find_chars(pred_char, pt->replacement, tmp->p, tmp->n, sp);
        if (sp->oom) { out->text.oom = true; return; }
        /* The split copies out of tmp, which stays untouched until then. */
        apply_behavior(tmp->p, sp, SB_MERGED_NEXT, at_start, out);
        return;
    }
    case TP_DIGITS:
        find_chars(pred_numeric, 0, s, n, sp);
        if (sp->oom) { out->text.oom = true; return; }
        apply_behavior(s, sp, pt->individual_digits ? SB_ISOLATED : SB_CONTIGUOUS, at_start, out);
        return;
    case TP_PUNCTUATION:
        find_chars(pred_punct, 0, s, n, sp);
        break;
    case TP_WHITESPACE_SPLIT:
        find_chars(pred_space, 0, s, n, sp);
        if (sp->oom) { out->text.oom = true; return; }
        apply_behavior(s, sp, SB_REMOVED, at_start, out);
        return;
    case TP_BERT: {
        /* whitespace removed, then punctuation isolated */
        tk_pieces mid = {0};
        find_chars(pred_space, 0, s, n, sp);
        if (sp->oom) { out->text.oom = true; return; }
        apply_behavior(s, sp, SB_REMOVED, at_start, &mid);
        for (size_t i = 0; i < mid.n && !mid.text.oom; i++) {
            find_chars(pred_punct, 0, tk_piece_str(&mid, i), mid.v[i].len, sp);
            if (sp->oom) break;
            apply_behavior(tk_piece_str(&mid, i), sp, SB_ISOLATED, mid.v[i].at_start, out);
        }
        if (mid.text.oom || sp->oom) out->text.oom = true;
        tk_pieces_free(&mid);
        return;
    }
    case TP_SEQUENCE: return; /* handled by tk_pretokenize */
    }
    if (sp->oom) { out->text.oom = true; return; }
    apply_behavior(s, sp, pt->behavior, at_start, out);
}

static vlmc_status pretok_apply(const tk_pretok *pt, pcre2_match_data *md, tk_pieces *in, tk_pieces *out, spans *sp,
                                tk_buf *tmp, int depth) {
    if (pt->type == TP_SEQUENCE) {
        /* ping-pong between in and out; the result must end in out */
        tk_pieces a = {0};
        tk_pieces *cur = in;
        vlmc_status st = VLMC_OK;
        for (size_t i = 0; i < pt->n_items && !st; i++) {
            tk_pieces *dst = (cur == out) ? &a : out;
            if (dst == in) dst = &a;
            tk_pieces_clear(dst);
            dst->text.oom = false;
            st = pretok_apply(&pt->items[i], md, cur, dst, sp, tmp, depth + 1);
            cur = dst;
        }
        if (!st && cur != out) {
            tk_pieces_clear(out);
            for (size_t i = 0; i < cur->n; i++)
                tk_pieces_add(out, tk_piece_str(cur, i), cur->v[i].len, cur->v[i].id, cur->v[i].at_start);
        }
        tk_pieces_free(&a);
        if (!st && tk_pieces_oom(out)) st = VLMC_ERR_NOMEM;
        return st;
    }
    tk_pieces_clear(out);
    for (size_t i = 0; i < in->n && !out->text.oom; i++) {
        const tk_piece *p = &in->v[i];
        if (p->id >= 0) {
            tk_pieces_add(out, tk_piece_str(in, i), p->len, p->id, p->at_start);
            continue;
        }
        pretok_one(pt, md, tk_piece_str(in, i), p->len, p->at_start, sp, tmp, out);
    }
    return tk_pieces_oom(out) ? VLMC_ERR_NOMEM : VLMC_OK;
}

vlmc_status tk_pretokenize(const tk_pretok *pt, pcre2_match_data *md, tk_pieces *in, tk_pieces *out) {
    spans sp = {0};
    tk_buf tmp = {0};
    out->text.oom = false;
    vlmc_status st = pretok_apply(pt, md, in, out, &sp, &tmp, 0);
    free(sp.v);
    tk_buf_free(&tmp);
    return st;
}
