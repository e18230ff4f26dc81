/* Decoding: ids -> tokens -> the decoder chain of tokenizer.json -> text, plus
 * transformers' clean_up_tokenization and the streaming decoder.
 *
 * Decoders work on a list of strings, exactly as the `tokenizers` library's
 * decode_chain does, because some (Metaspace, WordPiece, Strip) act per token
 * and the result depends on where the token boundaries are. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/utf8.h"
#include "formats/json.h"
#include "text/tokenizer.h"

/* ---- UTF-8 repair ------------------------------------------------------------- */

/* Length of the valid character at s, or 0 with *bad set to the length of the
 * maximal invalid subpart (Rust's Utf8Chunks rules). */
static size_t utf8_step(const unsigned char *s, size_t n, size_t *bad) {
    unsigned c = s[0];
    *bad = 1;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        if (n >= 2 && (s[1] & 0xc0) == 0x80) return 2;
        return 0;
    }
    if (c >= 0xe0 && c <= 0xef) {
        if (n < 2) return 0;
        unsigned d = s[1];
        bool ok = (c == 0xe0 && d >= 0xa0 && d <= 0xbf) || (c >= 0xe1 && c <= 0xec && d >= 0x80 && d <= 0xbf) ||
                  (c == 0xed && d >= 0x80 && d <= 0x9f) || (c >= 0xee && d >= 0x80 && d <= 0xbf);
        if (!ok) return 0;
        *bad = 2;
        if (n < 3 || (s[2] & 0xc0) != 0x80) return 0;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (n < 2) return 0;
        unsigned d = s[1];
        bool ok = (c == 0xf0 && d >= 0x90 && d <= 0xbf) || (c >= 0xf1 && c <= 0xf3 && d >= 0x80 && d <= 0xbf) ||
                  (c == 0xf4 && d >= 0x80 && d <= 0x8f);
        if (!ok) return 0;
        *bad = 2;
        if (n < 3 || (s[2] & 0xc0) != 0x80) return 0;
        *bad = 3;
        if (n < 4 || (s[3] & 0xc0) != 0x80) return 0;
        return 4;
    }
    return 0;
}

void tk_utf8_lossy(const char *str, size_t n, tk_buf *out) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, run = 0;
    while (i < n) {
        size_t bad;
        size_t k = utf8_step(s + i, n - i, &bad);
        if (k) {
            i += k;
            continue;
        }
        tk_buf_put(out, str + run, i - run);
        tk_buf_put(out, "\xef\xbf\xbd", 3);
        i += bad;
        run = i;
    }
    tk_buf_put(out, str + run, n - run);
}

/* ---- clean_up_tokenization --------------------------------------------------------- */

/* Python's str.replace(pat, rep) in place, where rep is pat without some of its
 * characters (every clean-up rule only deletes spaces). */
static void replace_all(tk_buf *b, const char *pat, const char *rep) {
    size_t pn = strlen(pat), rn = strlen(rep), w = 0, i = 0;
    if (!b->p) return;
    while (i < b->n) {
        /* every pattern starts with a space: test that before comparing */
        if (b->p[i] == pat[0] && i + pn <= b->n && !memcmp(b->p + i, pat, pn)) {
            memmove(b->p + w, rep, rn);
            w += rn;
            i += pn;
        } else
            b->p[w++] = b->p[i++];
    }
    b->n = w;
    b->p[w] = 0;
}

void tk_cleanup(tk_buf *b) {
    static const char *const rules[][2] = {
        {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
        {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
    };
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) replace_all(b, rules[i][0], rules[i][1]);
}

/* The WordPiece decoder's own clean-up: the same rules plus " do not". */
static void wordpiece_cleanup(tk_buf *b) {
    static const char *const rules[][2] = {
        {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
        {" 'm", "'m"}, {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
    };
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) replace_all(b, rules[i][0], rules[i][1]);
}

/* ---- parsing ------------------------------------------------------------------------ */

static vlmc_status dec_char(const cJSON *j, const char *key, uint32_t def, uint32_t *out, const char *file,
                            vlmc_error *err) {
    const cJSON *v = json_get(j, key);
    if (!v) { *out = def; return VLMC_OK; }
    size_t n = cJSON_IsString(v) ? strlen(v->valuestring) : 0;
    uint32_t cp;
    if (!n || utf8_decode(v->valuestring, n, &cp) != n)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: decoder \"%s\" must be one character", file, key);
    *out = cp;
    return VLMC_OK;
}

static vlmc_status dec_str(const cJSON *j, const char *key, const char *def, tk_decoder *d, const char *file,
                           vlmc_error *err) {
    const cJSON *v = json_get(j, key);
    const char *s = cJSON_IsString(v) ? v->valuestring : def;
    if (v && !cJSON_IsString(v)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: decoder \"%s\" must be a string", file, key);
    if (!s) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: decoder needs \"%s\"", file, key);
    d->str = strdup(s);
    if (!d->str) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file);
    d->str_len = strlen(s);
    return VLMC_OK;
}

vlmc_status tk_decoder_parse(const void *json, tk_decoder *d, int depth, const char *file, vlmc_error *err) {
    const cJSON *j = json;
    memset(d, 0, sizeof *d);
    if (depth > TK_MAX_DEPTH) return vlmc_fail(err, VLMC_ERR_LIMIT, "%s: decoders nested too deeply", file);
    const char *t = json_string(j, "type", NULL);
    if (!t) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: decoder without a \"type\"", file);
    vlmc_status s;
    if (!strcmp(t, "ByteLevel")) d->type = TD_BYTELEVEL;
    else if (!strcmp(t, "ByteFallback")) d->type = TD_BYTEFALLBACK;
    else if (!strcmp(t, "Fuse")) d->type = TD_FUSE;
    else if (!strcmp(t, "Metaspace")) {
        d->type = TD_METASPACE;
        if ((s = dec_char(j, "replacement", 0x2581, &d->ch, file, err))) return s;
        const char *ps = json_string(j, "prepend_scheme", NULL);
        if (!ps) d->prepend = json_bool(j, "add_prefix_space", true) ? PS_ALWAYS : PS_NEVER;
        else if (!strcmp(ps, "always")) d->prepend = PS_ALWAYS;
        else if (!strcmp(ps, "first")) d->prepend = PS_FIRST;
        else if (!strcmp(ps, "never")) d->prepend = PS_NEVER;
        else return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: Metaspace decoder prepend_scheme \"%s\" is unknown", file, ps);
    } else if (!strcmp(t, "Strip")) {
        d->type = TD_STRIP;
        if ((s = dec_char(j, "content", ' ', &d->ch, file, err))) return s;
        int64_t a = json_int(j, "start", 0), b = json_int(j, "stop", 0);
        if (a < 0 || b < 0 || a > 1000000 || b > 1000000)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: Strip decoder start/stop out of range", file);
        d->start = (size_t)a;
        d->stop = (size_t)b;
    } else if (!strcmp(t, "Replace")) {
        d->type = TD_REPLACE;
        if ((s = dec_str(j, "content", NULL, d, file, err))) return s;
        const cJSON *p = json_get(j, "pattern");
        const cJSON *ps = json_get(p, "String"), *pr = json_get(p, "Regex");
        char where[512];
        snprintf(where, sizeof where, "%s: Replace decoder pattern", file);
        if (cJSON_IsString(ps)) return tk_regex_compile(&d->re, ps->valuestring, strlen(ps->valuestring), true, where, err);
        if (cJSON_IsString(pr)) return tk_regex_compile(&d->re, pr->valuestring, strlen(pr->valuestring), false, where, err);
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: Replace decoder needs a pattern", file);
    } else if (!strcmp(t, "WordPiece")) {
        d->type = TD_WORDPIECE;
        if ((s = dec_str(j, "prefix", "##", d, file, err))) return s;
        d->cleanup = json_bool(j, "cleanup", true);
    } else if (!strcmp(t, "BPEDecoder")) {
        d->type = TD_BPE;
        if ((s = dec_str(j, "suffix", "</w>", d, file, err))) return s;
    } else if (!strcmp(t, "Sequence")) {
        d->type = TD_SEQUENCE;
        const cJSON *arr = json_get(j, "decoders");
        if (!cJSON_IsArray(arr)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: Sequence decoder needs a \"decoders\" array", file);
        int n = cJSON_GetArraySize(arr);
        d->items = calloc(n ? (size_t)n : 1, sizeof *d->items);
        if (!d->items) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file);
        const cJSON *it;
        cJSON_ArrayForEach(it, arr) {
            if ((s = tk_decoder_parse(it, &d->items[d->n_items++], depth + 1, file, err))) return s;
        }
    } else
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: decoder type \"%s\" is not supported", file, t);
    return VLMC_OK;
}

void tk_decoder_free(tk_decoder *d) {
    if (!d) return;
    free(d->str);
    tk_regex_free(&d->re);
    for (size_t i = 0; i < d->n_items; i++) tk_decoder_free(&d->items[i]);
    free(d->items);
}

bool tk_decoder_has(const tk_decoder *d, tk_dec_type t) {
    if (!d) return false;
    if (d->type == t) return true;
    for (size_t i = 0; i < d->n_items; i++)
        if (tk_decoder_has(&d->items[i], t)) return true;
    return false;
}

/* ---- the decoder chain ---------------------------------------------------------------- */

static bool is_byte_token(const char *s, size_t n, unsigned char *byte) {
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return false;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0) return false;
        v = v * 16 + d;
    }
    *byte = (unsigned char)v;
    return true;
}

static void flush_bytes(tk_buf *bytes, tk_pieces *out) {
    if (!bytes->n) return;
    if (utf8_valid(bytes->p, bytes->n)) {
        tk_pieces_add(out, bytes->p, bytes->n, -1, false);
    } else {
        for (size_t k = 0; k < bytes->n; k++) tk_pieces_add(out, "\xef\xbf\xbd", 3, -1, false);
    }
    bytes->n = 0;
}

/* One decoder: in -> out (out cleared first). */
static vlmc_status dec_apply(const tk_decoder *d, pcre2_match_data *md, tk_pieces *in, tk_pieces *out) {
    tk_pieces_clear(out);
    switch (d->type) {
    case TD_BYTELEVEL: {
        tk_buf bytes = {0};
        for (size_t i = 0; i < in->n; i++) {
            const char *s = tk_piece_str(in, i);
            size_t n = in->v[i].len, start = bytes.n;
            bool all = true;
            for (size_t k = 0; k < n && all;) {
                uint32_t cp;
                size_t m = utf8_decode(s + k, n - k, &cp);
                int b = m ? tk_cp_to_byte(cp) : -1;
                if (b < 0) all = false;
                else tk_buf_putc(&bytes, (char)b);
                k += m ? m : 1;
            }
            if (!all) { /* not byte-level text (an added token): its own bytes */
                bytes.n = start;
                tk_buf_put(&bytes, s, n);
            }
        }
        tk_pieces_begin(out, -1, false);
        tk_utf8_lossy(bytes.p ? bytes.p : "", bytes.n, &out->text);
        tk_pieces_end(out);
        bool oom = bytes.oom;
        tk_buf_free(&bytes);
        if (oom) return VLMC_ERR_NOMEM;
        break;
    }
    case TD_BYTEFALLBACK: {
        tk_buf bytes = {0};
        for (size_t i = 0; i < in->n; i++) {
            unsigned char b;
            if (is_byte_token(tk_piece_str(in, i), in->v[i].len, &b)) {
                tk_buf_putc(&bytes, (char)b);
                continue;
            }
            flush_bytes(&bytes, out);
            tk_pieces_add(out, tk_piece_str(in, i), in->v[i].len, -1, false);
        }
        flush_bytes(&bytes, out);
        bool oom = bytes.oom;
        tk_buf_free(&bytes);
        if (oom) return VLMC_ERR_NOMEM;
        break;
    }
    case TD_FUSE:
        tk_pieces_begin(out, -1, false);
        for (size_t i = 0; i < in->n; i++) tk_buf_put(&out->text, tk_piece_str(in, i), in->v[i].len);
        tk_pieces_end(out);
        break;
    case TD_METASPACE:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = tk_piece_str(in, i);
            size_t n = in->v[i].len;
            tk_pieces_begin(out, -1, false);
            for (size_t k = 0; k < n;) {
                uint32_t cp;
                size_t m = utf8_decode(s + k, n - k, &cp);
                if (!m) { tk_buf_putc(&out->text, s[k]); k++; continue; }
                if (cp == d->ch) {
                    /* the first token loses every replacement character (HF) */
                    if (!(i == 0 && d->prepend != PS_NEVER)) tk_buf_putc(&out->text, ' ');
                } else
                    tk_buf_put(&out->text, s + k, m);
                k += m;
            }
            tk_pieces_end(out);
        }
        break;
    case TD_STRIP:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = tk_piece_str(in, i);
            size_t n = in->v[i].len, a = 0, b = n;
            char enc[4];
            size_t el = utf8_encode(d->ch, enc);
            for (size_t k = 0; k < d->start && el && a + el <= b && !memcmp(s + a, enc, el); k++) a += el;
            for (size_t k = 0; k < d->stop && el && b >= a + el && !memcmp(s + b - el, enc, el); k++) b -= el;
            tk_pieces_add(out, s + a, b - a, -1, false);
        }
        break;
    case TD_REPLACE:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = tk_piece_str(in, i);
            size_t n = in->v[i].len, at = 0, ms, me;
            tk_pieces_begin(out, -1, false);
            while (at <= n && tk_regex_next(&d->re, md, s, n, at, &ms, &me)) {
                tk_buf_put(&out->text, s + at, ms - at);
                tk_buf_put(&out->text, d->str, d->str_len);
                if (me == ms) { /* an empty match inserts the content, then steps one character */
                    if (ms >= n) { at = n + 1; break; }
                    size_t k = 1;
                    while (ms + k < n && ((unsigned char)s[ms + k] & 0xc0) == 0x80) k++;
                    tk_buf_put(&out->text, s + ms, k);
                    at = ms + k;
                } else
                    at = me;
            }
            if (at < n) tk_buf_put(&out->text, s + at, n - at);
            tk_pieces_end(out);
        }
        break;
    case TD_WORDPIECE:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = tk_piece_str(in, i);
            size_t n = in->v[i].len;
            tk_pieces_begin(out, -1, false);
            if (i != 0) {
                if (n >= d->str_len && !memcmp(s, d->str, d->str_len)) { s += d->str_len; n -= d->str_len; }
                else tk_buf_putc(&out->text, ' ');
            }
            size_t at = out->text.n;
            tk_buf_put(&out->text, s, n);
            if (d->cleanup && !out->text.oom) {
                tk_buf tmp = {0};
                tk_buf_put(&tmp, out->text.p + at, out->text.n - at);
                wordpiece_cleanup(&tmp);
                out->text.n = at;
                tk_buf_put(&out->text, tmp.p ? tmp.p : "", tmp.n);
                tk_buf_free(&tmp);
            }
            tk_pieces_end(out);
        }
        break;
    case TD_BPE:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = tk_piece_str(in, i);
            size_t n = in->v[i].len;
            tk_pieces_begin(out, -1, false);
            for (size_t k = 0; k < n;) {
                if (d->str_len && k + d->str_len <= n && !memcmp(s + k, d->str, d->str_len)) {
                    if (i + 1 != in->n) tk_buf_putc(&out->text, ' ');
                    k += d->str_len;
                } else
                    tk_buf_putc(&out->text, s[k++]);
            }
            tk_pieces_end(out);
        }
        break;
    case TD_SEQUENCE: {
        tk_pieces a = {0}, b = {0};
        for (size_t i = 0; i < in->n; i++) tk_pieces_add(&a, tk_piece_str(in, i), in->v[i].len, -1, false);
        vlmc_status s = VLMC_OK;
        for (size_t k = 0; k < d->n_items && !s; k++) {
            s = dec_apply(&d->items[k], md, &a, &b);
            tk_pieces t = a;
            a = b;
            b = t;
        }
        if (!s)
            for (size_t i = 0; i < a.n; i++) tk_pieces_add(out, tk_piece_str(&a, i), a.v[i].len, -1, false);
        if (tk_pieces_oom(&a) || tk_pieces_oom(&b)) s = VLMC_ERR_NOMEM;
        tk_pieces_free(&a);
        tk_pieces_free(&b);
        if (s) return s;
        break;
    }
    }
    return tk_pieces_oom(out) ? VLMC_ERR_NOMEM : VLMC_OK;
}

/* Runs the decoder chain over toks and appends the result to out. */
static vlmc_status decode_tokens(const vlmc_tokenizer *t, tk_pieces *toks, tk_buf *out) {
    if (!t->decoder) {
        for (size_t i = 0; i < toks->n; i++) {
            if (i) tk_buf_putc(out, ' ');
            tk_buf_put(out, tk_piece_str(toks, i), toks->v[i].len);
        }
        return out->oom ? VLMC_ERR_NOMEM : VLMC_OK;
    }
    tk_pieces res = {0};
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md) return VLMC_ERR_NOMEM;
    vlmc_status st = dec_apply(t->decoder, md, toks, &res);
    pcre2_match_data_free(md);
    if (!st)
        for (size_t i = 0; i < res.n; i++) tk_buf_put(out, tk_piece_str(&res, i), res.v[i].len);
    tk_pieces_free(&res);
    if (!st && out->oom) st = VLMC_ERR_NOMEM;
    return st;
}

static bool legacy_added(const vlmc_tokenizer *t, int32_t id) {
    return t->added_of_id[id] >= 0 && ((size_t)id >= t->bpe.n_ids || t->bpe.tok_len[id] < 0);
}

vlmc_status tk_decode_raw(const vlmc_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, tk_buf *out) {
    tk_pieces toks = {0};
    vlmc_status st = VLMC_OK;
    out->n = 0;
    out->oom = false;
    bool any = false;
    for (size_t i = 0; i < n && !st; i++) {
        int32_t id = ids[i];
        size_t len;
        const char *s = tk_id_to_token(t, id, &len);
        if (!s) continue; /* unknown ids are skipped, as in HF */
        if (skip_special && t->special_of_id[id]) continue;
        if (t->legacy_added_spacing && legacy_added(t, id)) {
            size_t before = out->n;
            if (toks.n) {
                if (any) tk_buf_putc(out, ' ');
                size_t mark = out->n;
                st = decode_tokens(t, &toks, out);
                if (out->n == mark) out->n = before; /* empty parts are dropped */
                else any = true;
                tk_pieces_clear(&toks);
            }
            if (any) tk_buf_putc(out, ' ');
            tk_buf_put(out, s, len);
            any = true;
            continue;
        }
        tk_pieces_add(&toks, s, len, id, false);
    }
    if (!st && tk_pieces_oom(&toks)) st = VLMC_ERR_NOMEM;
    if (!st && (toks.n || !t->legacy_added_spacing)) {
        size_t before = out->n;
        if (any && toks.n) tk_buf_putc(out, ' ');
        size_t mark = out->n;
        st = decode_tokens(t, &toks, out);
        if (any && out->n == mark) out->n = before;
    }
    if (!out->p) tk_buf_put(out, "", 0);
    if (out->p) out->p[out->n] = 0;
    if (!st && out->oom) st = VLMC_ERR_NOMEM;
    tk_pieces_free(&toks);
    return st;
}

/* ---- streaming ------------------------------------------------------------------------- */

/* The stream keeps a short window of ids: `ctx` leading ids whose text is
 * already out (their decode is `prefix`), then ids not yet emitted. Decoding
 * the whole window and dropping `prefix` yields the new text with the right
 * context for decoders that treat the first token specially (Metaspace,
 * Strip) -- the trick of the `tokenizers` DecodeStream. Text is held back while
 * it could still change: it ends in U+FFFD (an incomplete UTF-8 sequence), the
 * window does not start with `prefix`, or a byte-fallback run (<0xNN> tokens)
 * is still open. With clean_up_tokenization on top, the raw text is cut only
 * after a character that cannot start or continue a clean-up pattern, so the
 * pieces clean up exactly as the whole would. */
struct vlmc_decode_stream {
    const vlmc_tokenizer *tok;
    bool skip;
    int32_t *ids;
    size_t n, cap, ctx;
    tk_buf prefix, cur, raw_pending, out;
};

vlmc_status vlmc_decode_stream_new(const vlmc_tokenizer *tok, int skip_special, vlmc_decode_stream **out,
                                   vlmc_error *err) {
    *out = NULL;
    if (!tok) return vlmc_fail(err, VLMC_ERR_ARG, "decode stream: no tokenizer");
    vlmc_decode_stream *s = calloc(1, sizeof *s);
    if (!s) return vlmc_fail(err, VLMC_ERR_NOMEM, "decode stream: out of memory");
    s->tok = tok;
    s->skip = skip_special != 0;
    *out = s;
    return VLMC_OK;
}

void vlmc_decode_stream_free(vlmc_decode_stream *s) {
    if (!s) return;
    free(s->ids);
    tk_buf_free(&s->prefix);
    tk_buf_free(&s->cur);
    tk_buf_free(&s->raw_pending);
    tk_buf_free(&s->out);
    free(s);
}

static bool cleanup_cut_ok(char c) { return c != ' ' && c != '\'' && c != 'n' && c != 'v' && c != 'r'; }

/* Adds raw text to the output, through clean-up when the tokenizer uses it. */
static void emit_raw(vlmc_decode_stream *s, const char *p, size_t n, bool final) {
    if (!s->tok->clean_up_spaces) {
        tk_buf_put(&s->out, p, n);
        return;
    }
    tk_buf_put(&s->raw_pending, p, n);
    size_t k = s->raw_pending.n;
    if (!final)
        while (k > 0 && !cleanup_cut_ok(s->raw_pending.p[k - 1])) k--;
    if (k == 0) return;
    tk_buf part = {0};
    tk_buf_put(&part, s->raw_pending.p, k);
    tk_cleanup(&part);
    tk_buf_put(&s->out, part.p ? part.p : "", part.n);
    tk_buf_free(&part);
    memmove(s->raw_pending.p, s->raw_pending.p + k, s->raw_pending.n - k);
    s->raw_pending.n -= k;
}

static bool open_byte_run(const vlmc_decode_stream *s) {
    if (!s->tok->has_bytefallback_decoder) return false;
    for (size_t i = s->n; i-- > s->ctx;) {
        size_t len;
        const char *t = tk_id_to_token(s->tok, s->ids[i], &len);
        if (!t || (s->skip && s->tok->special_of_id[s->ids[i]])) continue; /* dropped by decode */
        unsigned char b;
        return is_byte_token(t, len, &b);
    }
    return false;
}

vlmc_status vlmc_decode_stream_push(vlmc_decode_stream *s, int32_t id, const char **text, size_t *len,
                                    vlmc_error *err) {
    s->out.n = 0;
    *text = "";
    if (len) *len = 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        int32_t *p = realloc(s->ids, cap * sizeof *p);
        if (!p) return vlmc_fail(err, VLMC_ERR_NOMEM, "decode stream: out of memory");
        s->ids = p;
        s->cap = cap;
    }
    s->ids[s->n++] = id;
    if (open_byte_run(s)) return VLMC_OK;
    vlmc_status st = tk_decode_raw(s->tok, s->ids, s->n, s->skip, &s->cur);
    if (st) return vlmc_fail(err, st, "decode stream: decode failed");
    const tk_buf *c = &s->cur, *p = &s->prefix;
    bool grows = c->n > p->n && (p->n == 0 || !memcmp(c->p, p->p, p->n));
    bool pending_char = c->n >= 3 && !memcmp(c->p + c->n - 3, "\xef\xbf\xbd", 3);
    if (!grows || pending_char) return VLMC_OK;
    emit_raw(s, c->p + p->n, c->n - p->n, false);
    /* slide: the ids just emitted become the context */
    memmove(s->ids, s->ids + s->ctx, (s->n - s->ctx) * sizeof *s->ids);
    s->n -= s->ctx;
    s->ctx = s->n;
    st = tk_decode_raw(s->tok, s->ids, s->n, s->skip, &s->prefix);
    if (st || s->out.oom) return vlmc_fail(err, VLMC_ERR_NOMEM, "decode stream: out of memory");
    *text = s->out.n ? s->out.p : "";
    if (len) *len = s->out.n;
    return VLMC_OK;
}

vlmc_status vlmc_decode_stream_flush(vlmc_decode_stream *s, const char **text, size_t *len, vlmc_error *err) {
    s->out.n = 0;
    *text = "";
    if (len) *len = 0;
    if (s->n > s->ctx) {
        vlmc_status st = tk_decode_raw(s->tok, s->ids, s->n, s->skip, &s->cur);
        if (st) return vlmc_fail(err, st, "decode stream: decode failed");
        const tk_buf *c = &s->cur, *p = &s->prefix;
        if (c->n >= p->n && (p->n == 0 || !memcmp(c->p, p->p, p->n))) {
            emit_raw(s, c->p + p->n, c->n - p->n, true);
        } else {
            /* not expected with the supported decoders: the window rewrote
             * text that is already out; emit what follows the common part */
            size_t k = 0;
            while (k < c->n && k < p->n && c->p[k] == p->p[k]) k++;
            emit_raw(s, c->p + k, c->n - k, true);
        }
    } else
        emit_raw(s, "", 0, true);
    s->n = 0;
    s->ctx = 0;
    s->prefix.n = 0;
    if (s->out.oom) return vlmc_fail(err, VLMC_ERR_NOMEM, "decode stream: out of memory");
    *text = s->out.n ? s->out.p : "";
    if (len) *len = s->out.n;
    return VLMC_OK;
}
