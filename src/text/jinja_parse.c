/* Jinja lexer and parser: template text -> AST (see jinja_internal.h).
 *
 * The lexer follows Jinja2's (jinja2/lexer.py) with the options transformers
 * uses: trim_blocks (the first newline after a block or comment tag is
 * dropped), lstrip_blocks (spaces and tabs before a block or comment tag at
 * the start of a line are dropped), `-` / `+` whitespace control on every tag,
 * raw blocks, newlines normalised to "\n" and one trailing newline removed.
 * The parser is a recursive-descent twin of jinja2/parser.py, so operator
 * precedence and the odd corners (filters bind to `-x`, `~` binds tighter
 * than `+`) match. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
#include "text/jinja_internal.h"

/* ---- pool ----------------------------------------------------------------- */

struct jpool_chunk {
    jpool_chunk *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
};

void jpool_init(jpool *p, size_t limit) {
    memset(p, 0, sizeof *p);
    p->limit = limit;
}

void *jpool_alloc(jpool *p, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    if (n > p->limit || p->used > p->limit - n) {
        p->over = true;
        return NULL;
    }
    jpool_chunk *c = p->head;
    if (!c || c->size - c->used < n) {
        size_t size = n > 65536 ? n : 65536;
        c = malloc(sizeof *c + size);
        if (!c) {
            p->over = true;
            return NULL;
        }
        c->size = size;
        c->used = 0;
        c->next = p->head;
        p->head = c;
    }
    void *r = c->data + c->used;
    c->used += n;
    p->used += n;
    memset(r, 0, n);
    return r;
}

char *jpool_strndup(jpool *p, const char *s, size_t n) {
    char *r = jpool_alloc(p, n + 1);
    if (r) {
        if (n) memcpy(r, s, n);
        r[n] = '\0';
    }
    return r;
}

void jpool_free(jpool *p) {
    jpool_chunk *c = p->head;
    while (c) {
        jpool_chunk *next = c->next;
        free(c);
        c = next;
    }
    p->head = NULL;
    p->used = 0;
}

/* ---- tokens ---------------------------------------------------------------- */

typedef enum { T_TEXT, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END, T_NAME, T_STRING, T_INT, T_FLOAT, T_OP, T_EOF } tok_type;

typedef struct token {
    tok_type t;
    int line;
    const char *s; /* text, name, decoded string, operator */
    size_t n;
    int64_t i;
    double f;
} token;

#define MAX_DEPTH 200          /* nesting of expressions and blocks */
#define MAX_TOKENS (4u << 20)  /* tokens in one template */

typedef struct lexer {
    jpool *pool;
    vlmc_error *err;
    const char *name;
    const char *s;
    size_t n, pos;
    int line;
    token *toks;
    size_t ntoks, cap;
    bool failed;
} lexer;

static bool lex_fail(lexer *L, int line, const char *fmt, ...) VLMC_PRINTF(3, 4);
static bool lex_fail(lexer *L, int line, const char *fmt, ...) {
    if (L->failed) return false;
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    vlmc_fail(L->err, VLMC_ERR_FORMAT, "%s:%d: template syntax error: %s", L->name, line, msg);
    L->failed = true;
    return false;
}

static token *push_tok(lexer *L, tok_type t, const char *s, size_t n) {
    if (L->ntoks == L->cap) {
        if (L->cap >= MAX_TOKENS) {
            vlmc_fail(L->err, VLMC_ERR_LIMIT, "%s: template has more than %u tokens", L->name, MAX_TOKENS);
            L->failed = true;
            return NULL;
        }
        size_t cap = L->cap ? L->cap * 2 : 256;
        token *nt = realloc(L->toks, cap * sizeof *nt);
        if (!nt) {
            vlmc_fail(L->err, VLMC_ERR_NOMEM, "%s: out of memory lexing the template", L->name);
            L->failed = true;
            return NULL;
        }
        L->toks = nt;
        L->cap = cap;
    }
    token *k = &L->toks[L->ntoks++];
    memset(k, 0, sizeof *k);
    k->t = t;
    k->line = L->line;
    k->s = s;
    k->n = n;
    return k;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

static int count_nl(const char *s, size_t n) {
    int k = 0;
    for (size_t i = 0; i < n; i++) k += s[i] == '\n';
    return k;
}

static bool starts(const lexer *L, size_t at, const char *lit) {
    size_t k = strlen(lit);
    return at <= L->n && L->n - at >= k && !memcmp(L->s + at, lit, k);
}

/* Emits a text token (skipped when empty). */
static bool emit_text(lexer *L, const char *s, size_t n) {
    if (n == 0) return true;
    token *k = push_tok(L, T_TEXT, s, n);
    return k != NULL;
}

/* Decodes a string literal body (Python "unicode-escape" as Jinja2 applies it). */
static bool decode_string(lexer *L, const char *s, size_t n, token *k) {
    char *out = jpool_alloc(L->pool, n + 1); /* escapes never grow the text */
    if (!out) return lex_fail(L, L->line, "out of memory");
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c != '\\') {
            out[o++] = c;
            continue;
        }
        if (++i >= n) break; /* cannot happen: the scanner never ends on a backslash */
        c = s[i];
        uint32_t cp;
        int digits = 0;
        switch (c) {
        case '\n': continue;
        case '\\': out[o++] = '\\'; continue;
        case '\'': out[o++] = '\''; continue;
        case '"': out[o++] = '"'; continue;
        case 'a': out[o++] = '\a'; continue;
        case 'b': out[o++] = '\b'; continue;
        case 'f': out[o++] = '\f'; continue;
        case 'n': out[o++] = '\n'; continue;
        case 'r': out[o++] = '\r'; continue;
        case 't': out[o++] = '\t'; continue;
        case 'v': out[o++] = '\v'; continue;
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        case 'N': return lex_fail(L, k->line, "\\N{...} escapes are not supported");
        default:
            if (c >= '0' && c <= '7') {
                cp = 0;
                int m = 0;
                while (m < 3 && i < n && s[i] >= '0' && s[i] <= '7') cp = cp * 8 + (uint32_t)(s[i++] - '0'), m++;
                i--;
                o += utf8_encode(cp, out + o);
                continue;
            }
            out[o++] = '\\';
            out[o++] = c;
            continue;
        }
        cp = 0;
        for (int m = 0; m < digits; m++) {
            if (i + 1 >= n) return lex_fail(L, k->line, "truncated \\%c escape in a string", c);
            char h = s[++i];
            int v = is_digit(h) ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10 : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
            if (v < 0) return lex_fail(L, k->line, "truncated \\%c escape in a string", c);
            cp = cp * 16 + (uint32_t)v;
        }
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return lex_fail(L, k->line, "invalid code point U+%X in a string", cp);
        o += utf8_encode(cp, out + o);
    }
    out[o] = '\0';
    k->s = out;
    k->n = o;
    return true;
}

static const char *const OPS[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]", "(", ")",
                                  "{", "}", ">", "<", "=", ".", ":", "|", ",", ";"};

/* Lexes the inside of a {{ }} or {% %} tag up to and including its end.
 * Returns false on error. */
static bool lex_tag(lexer *L, bool is_block) {
    char stack[MAX_DEPTH];
    int depth = 0;
    for (;;) {
        while (L->pos < L->n && is_ws(L->s[L->pos])) {
            if (L->s[L->pos] == '\n') L->line++;
            L->pos++;
        }
        if (L->pos >= L->n) return lex_fail(L, L->line, "unexpected end of template inside a %s tag", is_block ? "block" : "variable");
        size_t p = L->pos;
        const char *s = L->s;
        if (depth == 0) {
            if (is_block) {
                if (starts(L, p, "+%}") || starts(L, p, "%}") || starts(L, p, "-%}")) {
                    if (!push_tok(L, T_BLOCK_END, s + p, 0)) return false;
                    if (s[p] == '-') {
                        p += 3;
                        while (p < L->n && is_ws(s[p])) L->line += s[p++] == '\n';
                    } else if (s[p] == '+') {
                        p += 3;
                    } else {
                        p += 2;
                        if (p < L->n && s[p] == '\n') p++, L->line++; /* trim_blocks */
                    }
                    L->pos = p;
                    return true;
                }
            } else if (starts(L, p, "}}") || starts(L, p, "-}}")) {
                if (!push_tok(L, T_VAR_END, s + p, 0)) return false;
                if (s[p] == '-') {
                    p += 3;
                    while (p < L->n && is_ws(s[p])) L->line += s[p++] == '\n';
                } else {
                    p += 2;
                }
                L->pos = p;
                return true;
            }
        }
        char c = s[p];
        if (is_digit(c)) {
            /* integer or float, with optional '_' separators as Python allows */
            size_t q = p;
            char buf[128];
            size_t bn = 0;
            bool is_float = false;
            if (c == '0' && q + 1 < L->n && strchr("bBoOxX", s[q + 1])) {
                int base = (s[q + 1] == 'b' || s[q + 1] == 'B') ? 2 : (s[q + 1] == 'o' || s[q + 1] == 'O') ? 8 : 16;
                q += 2;
                while (q < L->n && (is_name_char(s[q]))) {
                    if (s[q] != '_' && bn < sizeof buf - 1) buf[bn++] = s[q];
                    q++;
                }
                buf[bn] = '\0';
                errno = 0;
                char *end;
                unsigned long long v = strtoull(buf, &end, base);
                if (bn == 0 || *end || errno || v > INT64_MAX) return lex_fail(L, L->line, "invalid integer literal");
                token *k = push_tok(L, T_INT, s + p, q - p);
                if (!k) return false;
                k->i = (int64_t)v;
                L->pos = q;
                continue;
            }
            while (q < L->n && (is_digit(s[q]) || (s[q] == '_' && q + 1 < L->n && is_digit(s[q + 1])))) {
                if (s[q] != '_' && bn < sizeof buf - 8) buf[bn++] = s[q];
                q++;
            }
            if (q + 1 < L->n && s[q] == '.' && is_digit(s[q + 1])) {
                is_float = true;
                buf[bn++] = s[q++];
                while (q < L->n && (is_digit(s[q]) || (s[q] == '_' && q + 1 < L->n && is_digit(s[q + 1])))) {
                    if (s[q] != '_' && bn < sizeof buf - 8) buf[bn++] = s[q];
                    q++;
                }
            }
            if (q < L->n && (s[q] == 'e' || s[q] == 'E')) {
                size_t r = q + 1;
                if (r < L->n && (s[r] == '+' || s[r] == '-')) r++;
                if (r < L->n && is_digit(s[r])) {
                    is_float = true;
                    buf[bn++] = 'e';
                    if (s[q + 1] == '-') buf[bn++] = '-';
                    q = r;
                    while (q < L->n && (is_digit(s[q]) || (s[q] == '_' && q + 1 < L->n && is_digit(s[q + 1])))) {
                        if (s[q] != '_' && bn < sizeof buf - 2) buf[bn++] = s[q];
                        q++;
                    }
                }
            }
            buf[bn] = '\0';
            token *k = push_tok(L, is_float ? T_FLOAT : T_INT, s + p, q - p);
            if (!k) return false;
            if (is_float) {
                k->f = strtod(buf, NULL);
            } else {
                errno = 0;
                unsigned long long v = strtoull(buf, NULL, 10);
                if (errno || v > INT64_MAX) return lex_fail(L, L->line, "integer literal %s is too large", buf);
                k->i = (int64_t)v;
            }
            L->pos = q;
            continue;
        }
        if (is_name_start(c)) {
            size_t q = p;
            while (q < L->n && is_name_char(s[q])) q++;
            if (!push_tok(L, T_NAME, s + p, q - p)) return false;
            L->pos = q;
            continue;
        }
        if (c == '\'' || c == '"') {
            size_t q = p + 1;
            int line0 = L->line;
            while (q < L->n && s[q] != c) {
                if (s[q] == '\\' && q + 1 < L->n) q++;
                q++;
            }
            if (q >= L->n) return lex_fail(L, line0, "unterminated string literal");
            token *k = push_tok(L, T_STRING, NULL, 0);
            if (!k || !decode_string(L, s + p + 1, q - p - 1, k)) return false;
            L->line += count_nl(s + p, q - p);
            L->pos = q + 1;
            continue;
        }
        size_t i;
        for (i = 0; i < sizeof OPS / sizeof OPS[0]; i++)
            if (starts(L, p, OPS[i])) break;
        if (i == sizeof OPS / sizeof OPS[0]) {
            if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f)
                return lex_fail(L, L->line, "unexpected char '%c'", c);
            return lex_fail(L, L->line, "unexpected byte 0x%02x", (unsigned char)c);
        }
        size_t k = strlen(OPS[i]);
        if (k == 1 && strchr("([{", c)) {
            if (depth >= MAX_DEPTH) return lex_fail(L, L->line, "brackets nested too deeply");
            stack[depth++] = c == '(' ? ')' : c == '[' ? ']' : '}';
        } else if (k == 1 && strchr(")]}", c)) {
            if (depth == 0) return lex_fail(L, L->line, "unexpected '%c'", c);
            if (stack[--depth] != c) return lex_fail(L, L->line, "unexpected '%c', expected '%c'", c, stack[depth]);
        }
        if (!push_tok(L, T_OP, s + p, k)) return false;
        L->pos = p + k;
    }
}

/* True when the text [from, to) is one or more spaces/tabs only. */
static bool only_blanks(const char *s, size_t from, size_t to) {
    if (from >= to) return false;
    for (size_t i = from; i < to; i++)
        if (!is_ws(s[i])) return false;
    return true;
}

/* Matches `{%[-+]?\s*WORD\s*[-+]?%}` at p; returns its end (after the tag) or 0.
 * As in Jinja2's regex, `{% raw +%}` is not a raw tag (allow_plus false). */
static size_t match_raw(const lexer *L, size_t p, const char *word, bool *minus_end, bool allow_plus) {
    const char *s = L->s;
    size_t q = p + 2;
    if (q < L->n && (s[q] == '-' || s[q] == '+')) q++;
    while (q < L->n && is_ws(s[q])) q++;
    size_t wl = strlen(word);
    if (L->n - q < wl || memcmp(s + q, word, wl)) return 0;
    q += wl;
    if (q < L->n && is_name_char(s[q])) return 0;
    while (q < L->n && is_ws(s[q])) q++;
    *minus_end = false;
    if (starts(L, q, "-%}")) {
        *minus_end = true;
        return q + 3;
    }
    if (allow_plus && starts(L, q, "+%}")) return q + 3;
    if (starts(L, q, "%}")) return q + 2;
    return 0;
}

static bool lex(lexer *L) {
    const char *s = L->s;
    bool line_starting = true;
    while (L->pos < L->n) {
        size_t start = L->pos, p = start;
        /* the next tag start */
        while (p + 1 < L->n && !(s[p] == '{' && (s[p + 1] == '{' || s[p + 1] == '%' || s[p + 1] == '#'))) p++;
        if (p + 1 >= L->n) {
            if (!emit_text(L, s + start, L->n - start)) return false;
            L->line += count_nl(s + start, L->n - start);
            break;
        }
        char kind = s[p + 1];
        char mod = p + 2 < L->n ? s[p + 2] : 0;
        if (mod != '-' && mod != '+') mod = 0;
        size_t text_end = p;
        if (mod == '-') {
            while (text_end > start && is_ws(s[text_end - 1])) text_end--;
        } else if (mod != '+' && kind != '{') {
            /* lstrip_blocks: blanks between the line start and a block/comment tag */
            size_t l = p;
            while (l > start && s[l - 1] != '\n') l--;
            if ((l > start || line_starting) && only_blanks(s, l, p)) text_end = l;
        }
        if (!emit_text(L, s + start, text_end - start)) return false;
        L->line += count_nl(s + start, p - start);
        int tag_line = L->line;
        bool minus_end;
        size_t raw_end;
        if (kind == '%' && (raw_end = match_raw(L, p, "raw", &minus_end, false)) != 0) {
            size_t q = raw_end;
            if (minus_end)
                while (q < L->n && is_ws(s[q])) q++;
            /* find {% endraw %} */
            size_t e = q, end_end = 0;
            bool end_minus = false;
            for (; e + 1 < L->n; e++)
                if (s[e] == '{' && s[e + 1] == '%' && (end_end = match_raw(L, e, "endraw", &end_minus, true)) != 0) break;
            if (!end_end) return lex_fail(L, tag_line, "missing end of raw directive");
            size_t body_end = e;
            char emod = s[e + 2];
            if (emod == '-') {
                while (body_end > q && is_ws(s[body_end - 1])) body_end--;
            } else if (emod != '+') {
                size_t l = e;
                while (l > q && s[l - 1] != '\n') l--;
                if (l > q && only_blanks(s, l, e)) body_end = l;
            }
            if (!emit_text(L, s + q, body_end - q)) return false;
            size_t after = end_end;
            if (end_minus) {
                while (after < L->n && is_ws(s[after])) after++;
            } else if (s[end_end - 3] != '+' && after < L->n && s[after] == '\n') {
                after++;
            }
            L->line += count_nl(s + p, after - p);
            L->pos = after;
            line_starting = s[after - 1] == '\n';
            continue;
        }
        size_t q = p + 2 + (mod ? 1 : 0);
        if (kind == '#') {
            /* comment: up to the first '#}' */
            size_t e = q;
            while (e + 1 < L->n && !(s[e] == '#' && s[e + 1] == '}')) e++;
            if (e + 1 >= L->n) return lex_fail(L, tag_line, "missing end of comment tag");
            size_t after = e + 2;
            if (e > q && s[e - 1] == '-') {
                while (after < L->n && is_ws(s[after])) after++;
            } else if (!(e > q && s[e - 1] == '+')) {
                if (after < L->n && s[after] == '\n') after++;
            }
            L->line += count_nl(s + p, after - p);
            L->pos = after;
            line_starting = s[after - 1] == '\n';
            continue;
        }
        if (!push_tok(L, kind == '{' ? T_VAR_BEGIN : T_BLOCK_BEGIN, s + p, 0)) return false;
        L->pos = q;
        if (!lex_tag(L, kind == '%')) return false;
        line_starting = L->pos > 0 && s[L->pos - 1] == '\n';
    }
    return push_tok(L, T_EOF, s + L->n, 0) != NULL;
}

/* Normalises newlines as Jinja2 does (str.splitlines + "\n".join, dropping one
 * trailing line break). Returns a pool copy. */
static char *normalize_newlines(jpool *pool, const char *src, size_t len, size_t *out_len) {
    char *o = jpool_alloc(pool, len + 1);
    if (!o) return NULL;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)src[i];
        size_t brk = 0;
        if (c == '\r') brk = (i + 1 < len && src[i + 1] == '\n') ? 2 : 1;
        else if (c == '\n' || c == '\v' || c == '\f' || c == 0x1c || c == 0x1d || c == 0x1e) brk = 1;
        else if (c == 0xc2 && i + 1 < len && (unsigned char)src[i + 1] == 0x85) brk = 2;
        else if (c == 0xe2 && i + 2 < len && (unsigned char)src[i + 1] == 0x80 &&
                 ((unsigned char)src[i + 2] == 0xa8 || (unsigned char)src[i + 2] == 0xa9)) brk = 3;
        if (brk) {
            if (i + brk == len) break; /* keep_trailing_newline=False */
            o[n++] = '\n';
            i += brk;
        } else {
            o[n++] = src[i++];
        }
    }
    o[n] = '\0';
    *out_len = n;
    return o;
}

/* ---- parser ---------------------------------------------------------------- */

typedef struct parser {
    jpool *pool;
    vlmc_error *err;
    const char *name;
    token *toks;
    size_t ntoks, pos;
    int depth;
    int loop_depth;        /* for break/continue */
    unsigned macro_flags;  /* names seen in the macro being parsed */
    bool failed;
} parser;

static bool pfail(parser *P, int line, const char *fmt, ...) VLMC_PRINTF(3, 4);
static bool pfail(parser *P, int line, const char *fmt, ...) {
    if (P->failed) return false;
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    vlmc_fail(P->err, P->pool->over ? VLMC_ERR_LIMIT : VLMC_ERR_FORMAT, "%s:%d: template syntax error: %s", P->name, line,
              P->pool->over ? "template too large" : msg);
    P->failed = true;
    return false;
}

static token *cur(parser *P) { return &P->toks[P->pos]; }
static token *peek(parser *P, size_t k) {
    size_t i = P->pos + k;
    return &P->toks[i < P->ntoks ? i : P->ntoks - 1];
}
static void advance(parser *P) {
    if (P->pos + 1 < P->ntoks) P->pos++;
}
static bool tok_is_op(const token *t, const char *op) { return t->t == T_OP && t->n == strlen(op) && !memcmp(t->s, op, t->n); }
static bool tok_is_name(const token *t, const char *nm) { return t->t == T_NAME && t->n == strlen(nm) && !memcmp(t->s, nm, t->n); }

static const char *describe(const token *t, char *buf, size_t n) {
    switch (t->t) {
    case T_TEXT: return "template data";
    case T_VAR_BEGIN: return "begin of print statement";
    case T_VAR_END: return "end of print statement";
    case T_BLOCK_BEGIN: return "begin of statement block";
    case T_BLOCK_END: return "end of statement block";
    case T_EOF: return "end of template";
    case T_STRING: return "string";
    case T_INT: return "integer";
    case T_FLOAT: return "float";
    default: snprintf(buf, n, "%.*s", (int)(t->n > 40 ? 40 : t->n), t->s); return buf;
    }
}

static bool expect_op(parser *P, const char *op) {
    if (tok_is_op(cur(P), op)) {
        advance(P);
        return true;
    }
    char b[64];
    return pfail(P, cur(P)->line, "expected '%s', got '%s'", op, describe(cur(P), b, sizeof b));
}

static bool expect_type(parser *P, tok_type t, const char *what) {
    if (cur(P)->t == t) {
        advance(P);
        return true;
    }
    char b[64];
    return pfail(P, cur(P)->line, "expected %s, got '%s'", what, describe(cur(P), b, sizeof b));
}

static node *mk(parser *P, node_kind k, int line) {
    node *n = jpool_alloc(P->pool, sizeof *n);
    if (!n) {
        pfail(P, line, "out of memory");
        return NULL;
    }
    n->kind = k;
    n->line = line;
    return n;
}

/* A growable array of node pointers, copied into the pool when done. */
typedef struct nvec {
    node **v;
    size_t n, cap;
} nvec;

static bool nvec_push(parser *P, nvec *a, node *x) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 8;
        node **nv = jpool_alloc(P->pool, cap * sizeof *nv);
        if (!nv) return pfail(P, x ? x->line : 0, "out of memory");
        if (a->n) memcpy(nv, a->v, a->n * sizeof *nv);
        a->v = nv;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return true;
}

static node *parse_expression(parser *P, bool with_condexpr);
static node *parse_tuple(parser *P, bool simplified, bool with_condexpr, const char *extra_end, bool explicit_parens,
                         bool with_namespace);
static node *parse_unary(parser *P, bool with_filter);
static node *parse_primary(parser *P, bool with_namespace);
static node *parse_postfix(parser *P, node *n);
static node *parse_filter_expr(parser *P, node *n);

static bool enter(parser *P) {
    if (++P->depth > MAX_DEPTH) return pfail(P, cur(P)->line, "nested too deeply (more than %d levels)", MAX_DEPTH);
    return true;
}

/* Parses `(args, name=value, ...)` into n->args / n->kwnames / n->kwvals. */
static bool parse_call_args(parser *P, node *n) {
    int line = cur(P)->line;
    if (!expect_op(P, "(")) return false;
    nvec args = {0}, kwv = {0};
    const char **kwn = NULL;
    size_t kwcap = 0;
    bool need_comma = false;
    while (!tok_is_op(cur(P), ")")) {
        if (need_comma) {
            if (!expect_op(P, ",")) return false;
            if (tok_is_op(cur(P), ")")) break;
        }
        if (tok_is_op(cur(P), "*")) {
            /* `*expr`: positional arguments from a sequence (kept in n->c) */
            if (n->c || n->d) return pfail(P, line, "invalid syntax for function call expression");
            advance(P);
            if (!(n->c = parse_expression(P, true))) return false;
        } else if (tok_is_op(cur(P), "**")) {
            /* `**expr`: keyword arguments from a mapping (kept in n->d) */
            if (n->d) return pfail(P, line, "invalid syntax for function call expression");
            advance(P);
            if (!(n->d = parse_expression(P, true))) return false;
        } else if (cur(P)->t == T_NAME && tok_is_op(peek(P, 1), "=")) {
            token *k = cur(P);
            advance(P);
            advance(P);
            node *v = parse_expression(P, true);
            if (!v) return false;
            if (kwv.n == kwcap) {
                size_t cap = kwcap ? kwcap * 2 : 4;
                const char **nk = jpool_alloc(P->pool, cap * sizeof *nk);
                if (!nk) return pfail(P, line, "out of memory");
                if (kwv.n) memcpy(nk, kwn, kwv.n * sizeof *nk);
                kwn = nk;
                kwcap = cap;
            }
            kwn[kwv.n] = jpool_strndup(P->pool, k->s, k->n);
            if (!kwn[kwv.n] || !nvec_push(P, &kwv, v)) return pfail(P, line, "out of memory");
        } else {
            if (kwv.n || n->c || n->d) return pfail(P, line, "invalid syntax for function call expression");
            node *v = parse_expression(P, true);
            if (!v || !nvec_push(P, &args, v)) return false;
        }
        need_comma = true;
    }
    if (!expect_op(P, ")")) return false;
    n->args = args.v;
    n->nargs = args.n;
    n->kwnames = kwn;
    n->kwvals = kwv.v;
    n->nkw = kwv.n;
    return true;
}

static node *parse_list(parser *P) {
    node *n = mk(P, N_LIST, cur(P)->line);
    if (!n || !expect_op(P, "[")) return NULL;
    nvec items = {0};
    while (!tok_is_op(cur(P), "]")) {
        if (items.n && !expect_op(P, ",")) return NULL;
        if (tok_is_op(cur(P), "]")) break;
        node *x = parse_expression(P, true);
        if (!x || !nvec_push(P, &items, x)) return NULL;
    }
    if (!expect_op(P, "]")) return NULL;
    n->args = items.v;
    n->nargs = items.n;
    return n;
}

static node *parse_dict(parser *P) {
    node *n = mk(P, N_DICT, cur(P)->line);
    if (!n || !expect_op(P, "{")) return NULL;
    nvec keys = {0}, vals = {0};
    while (!tok_is_op(cur(P), "}")) {
        if (keys.n && !expect_op(P, ",")) return NULL;
        if (tok_is_op(cur(P), "}")) break;
        node *k = parse_expression(P, true);
        if (!k || !expect_op(P, ":")) return NULL;
        node *v = parse_expression(P, true);
        if (!v || !nvec_push(P, &keys, k) || !nvec_push(P, &vals, v)) return NULL;
    }
    if (!expect_op(P, "}")) return NULL;
    n->args = keys.v;
    n->nargs = keys.n;
    n->kwvals = vals.v;
    n->nkw = vals.n;
    return n;
}

static node *parse_primary(parser *P, bool with_namespace) {
    token *t = cur(P);
    node *n = NULL;
    if (!enter(P)) return NULL;
    if (t->t == T_NAME) {
        advance(P);
        if (tok_is_name(t, "true") || tok_is_name(t, "True") || tok_is_name(t, "false") || tok_is_name(t, "False")) {
            n = mk(P, N_CONST_BOOL, t->line);
            if (n) n->ival = t->s[0] == 't' || t->s[0] == 'T';
        } else if (tok_is_name(t, "none") || tok_is_name(t, "None")) {
            n = mk(P, N_CONST_NONE, t->line);
        } else if (with_namespace && tok_is_op(cur(P), ".")) {
            advance(P);
            token *attr = cur(P);
            if (!expect_type(P, T_NAME, "a name")) return NULL;
            n = mk(P, N_NSREF, t->line);
            if (n) {
                n->str = jpool_strndup(P->pool, t->s, t->n);
                n->len = t->n;
                node *a = mk(P, N_CONST_STR, attr->line);
                if (!a) return NULL;
                a->str = jpool_strndup(P->pool, attr->s, attr->n);
                a->len = attr->n;
                n->a = a;
            }
        } else {
            n = mk(P, N_NAME, t->line);
            if (n) {
                n->str = jpool_strndup(P->pool, t->s, t->n);
                n->len = t->n;
                if (!n->str) return pfail(P, t->line, "out of memory"), NULL;
                if (!strcmp(n->str, "varargs")) P->macro_flags |= MACRO_USES_VARARGS;
                if (!strcmp(n->str, "kwargs")) P->macro_flags |= MACRO_USES_KWARGS;
                if (!strcmp(n->str, "caller")) P->macro_flags |= MACRO_USES_CALLER;
            }
        }
    } else if (t->t == T_STRING) {
        /* adjacent string literals concatenate */
        size_t total = 0, i = P->pos;
        while (i < P->ntoks && P->toks[i].t == T_STRING) total += P->toks[i++].n;
        char *buf = jpool_alloc(P->pool, total + 1);
        if (!buf) return pfail(P, t->line, "out of memory"), NULL;
        size_t o = 0;
        while (cur(P)->t == T_STRING) {
            memcpy(buf + o, cur(P)->s, cur(P)->n);
            o += cur(P)->n;
            advance(P);
        }
        n = mk(P, N_CONST_STR, t->line);
        if (n) {
            n->str = buf;
            n->len = o;
        }
    } else if (t->t == T_INT || t->t == T_FLOAT) {
        advance(P);
        n = mk(P, t->t == T_INT ? N_CONST_INT : N_CONST_FLOAT, t->line);
        if (n) {
            n->ival = t->i;
            n->fval = t->f;
        }
    } else if (tok_is_op(t, "(")) {
        advance(P);
        n = parse_tuple(P, false, true, NULL, true, false);
        if (n && !expect_op(P, ")")) return NULL;
    } else if (tok_is_op(t, "[")) {
        n = parse_list(P);
    } else if (tok_is_op(t, "{")) {
        n = parse_dict(P);
    } else {
        char b[64];
        pfail(P, t->line, "unexpected '%s'", describe(t, b, sizeof b));
        return NULL;
    }
    P->depth--;
    return n;
}

static bool is_tuple_end(parser *P, const char *extra_end) {
    token *t = cur(P);
    if (t->t == T_VAR_END || t->t == T_BLOCK_END || t->t == T_EOF || tok_is_op(t, ")")) return true;
    return extra_end && tok_is_name(t, extra_end);
}

/* Like parse_expression, but `a, b` makes a tuple. */
static node *parse_tuple(parser *P, bool simplified, bool with_condexpr, const char *extra_end, bool explicit_parens,
                         bool with_namespace) {
    int line = cur(P)->line;
    nvec items = {0};
    bool is_tuple = false;
    for (;;) {
        if (items.n && !expect_op(P, ",")) return NULL;
        if (is_tuple_end(P, extra_end)) break;
        node *x = simplified ? parse_primary(P, with_namespace) : parse_expression(P, with_condexpr);
        if (!x || !nvec_push(P, &items, x)) return NULL;
        if (tok_is_op(cur(P), ",")) is_tuple = true;
        else break;
    }
    if (!is_tuple) {
        if (items.n) return items.v[0];
        if (!explicit_parens) {
            char b[64];
            pfail(P, cur(P)->line, "expected an expression, got '%s'", describe(cur(P), b, sizeof b));
            return NULL;
        }
    }
    node *n = mk(P, N_TUPLE, line);
    if (!n) return NULL;
    n->args = items.v;
    n->nargs = items.n;
    return n;
}

static node *parse_subscribed(parser *P) {
    int line = cur(P)->line;
    node *parts[3] = {NULL, NULL, NULL};
    if (tok_is_op(cur(P), ":")) {
        advance(P);
    } else {
        node *e = parse_expression(P, true);
        if (!e) return NULL;
        if (!tok_is_op(cur(P), ":")) return e;
        advance(P);
        parts[0] = e;
    }
    if (!tok_is_op(cur(P), ":") && !tok_is_op(cur(P), "]") && !tok_is_op(cur(P), ",")) {
        if (!(parts[1] = parse_expression(P, true))) return NULL;
    }
    if (tok_is_op(cur(P), ":")) {
        advance(P);
        if (!tok_is_op(cur(P), "]") && !tok_is_op(cur(P), ","))
            if (!(parts[2] = parse_expression(P, true))) return NULL;
    }
    node *n = mk(P, N_SLICE, line);
    if (!n) return NULL;
    n->a = parts[0];
    n->b = parts[1];
    n->c = parts[2];
    return n;
}

static node *parse_postfix(parser *P, node *n) {
    while (n) {
        token *t = cur(P);
        if (tok_is_op(t, ".")) {
            advance(P);
            token *a = cur(P);
            if (a->t == T_NAME) {
                advance(P);
                node *g = mk(P, N_GETATTR, t->line);
                if (!g) return NULL;
                g->a = n;
                g->str = jpool_strndup(P->pool, a->s, a->n);
                g->len = a->n;
                n = g;
            } else if (a->t == T_INT) {
                advance(P);
                node *k = mk(P, N_CONST_INT, a->line), *g = mk(P, N_GETITEM, t->line);
                if (!k || !g) return NULL;
                k->ival = a->i;
                g->a = n;
                g->b = k;
                n = g;
            } else {
                pfail(P, a->line, "expected name or number");
                return NULL;
            }
        } else if (tok_is_op(t, "[")) {
            advance(P);
            nvec subs = {0};
            while (!tok_is_op(cur(P), "]")) {
                if (subs.n && !expect_op(P, ",")) return NULL;
                node *s = parse_subscribed(P);
                if (!s || !nvec_push(P, &subs, s)) return NULL;
            }
            if (!expect_op(P, "]")) return NULL;
            if (subs.n == 0) {
                pfail(P, t->line, "expected subscript expression");
                return NULL;
            }
            node *g = mk(P, N_GETITEM, t->line);
            if (!g) return NULL;
            g->a = n;
            if (subs.n == 1) {
                g->b = subs.v[0];
            } else {
                node *tu = mk(P, N_TUPLE, t->line);
                if (!tu) return NULL;
                tu->args = subs.v;
                tu->nargs = subs.n;
                g->b = tu;
            }
            n = g;
        } else if (tok_is_op(t, "(")) {
            node *c = mk(P, N_CALL, t->line);
            if (!c) return NULL;
            c->a = n;
            if (!parse_call_args(P, c)) return NULL;
            n = c;
        } else {
            break;
        }
    }
    return n;
}

/* `name` or `name.name` (dotted filter/test names) */
static bool parse_dotted_name(parser *P, const char **out, size_t *out_len) {
    token *t = cur(P);
    if (!expect_type(P, T_NAME, "a filter or test name")) return false;
    const char *s = t->s;
    size_t n = t->n;
    while (tok_is_op(cur(P), ".")) {
        advance(P);
        token *u = cur(P);
        if (!expect_type(P, T_NAME, "a name")) return false;
        n = (size_t)(u->s + u->n - s);
    }
    *out = jpool_strndup(P->pool, s, n);
    *out_len = n;
    return *out != NULL || pfail(P, t->line, "out of memory");
}

static node *parse_filter(parser *P, node *n, bool start_inline) {
    while (tok_is_op(cur(P), "|") || start_inline) {
        if (!start_inline) advance(P);
        start_inline = false;
        int line = cur(P)->line;
        node *f = mk(P, N_FILTER, line);
        if (!f || !parse_dotted_name(P, &f->str, &f->len)) return NULL;
        f->a = n;
        if (tok_is_op(cur(P), "(") && !parse_call_args(P, f)) return NULL;
        n = f;
    }
    return n;
}

static node *parse_test(parser *P, node *n) {
    int line = cur(P)->line;
    advance(P); /* 'is' */
    bool negated = false;
    if (tok_is_name(cur(P), "not")) {
        advance(P);
        negated = true;
    }
    node *t = mk(P, N_TEST, line);
    if (!t || !parse_dotted_name(P, &t->str, &t->len)) return NULL;
    t->a = n;
    token *c = cur(P);
    if (tok_is_op(c, "(")) {
        if (!parse_call_args(P, t)) return NULL;
    } else if ((c->t == T_NAME || c->t == T_STRING || c->t == T_INT || c->t == T_FLOAT || tok_is_op(c, "[") ||
                tok_is_op(c, "{")) &&
               !tok_is_name(c, "else") && !tok_is_name(c, "or") && !tok_is_name(c, "and")) {
        if (tok_is_name(c, "is")) {
            pfail(P, c->line, "you cannot chain multiple tests with is");
            return NULL;
        }
        node *arg = parse_postfix(P, parse_primary(P, false));
        if (!arg) return NULL;
        t->args = jpool_alloc(P->pool, sizeof(node *));
        if (!t->args) return pfail(P, line, "out of memory"), NULL;
        t->args[0] = arg;
        t->nargs = 1;
    }
    if (negated) {
        node *nt = mk(P, N_NOT, line);
        if (!nt) return NULL;
        nt->a = t;
        return nt;
    }
    return t;
}

static node *parse_filter_expr(parser *P, node *n) {
    while (n) {
        token *t = cur(P);
        if (tok_is_op(t, "|")) {
            n = parse_filter(P, n, false);
        } else if (tok_is_name(t, "is")) {
            n = parse_test(P, n);
        } else if (tok_is_op(t, "(")) {
            node *c = mk(P, N_CALL, t->line);
            if (!c) return NULL;
            c->a = n;
            if (!parse_call_args(P, c)) return NULL;
            n = c;
        } else {
            break;
        }
    }
    return n;
}

static node *parse_unary(parser *P, bool with_filter) {
    token *t = cur(P);
    node *n;
    if (!enter(P)) return NULL;
    if (tok_is_op(t, "-") || tok_is_op(t, "+")) {
        advance(P);
        n = mk(P, tok_is_op(t, "-") ? N_NEG : N_POS, t->line);
        if (!n) return NULL;
        if (!(n->a = parse_unary(P, false))) return NULL;
    } else {
        n = parse_primary(P, false);
    }
    n = parse_postfix(P, n);
    if (with_filter) n = parse_filter_expr(P, n);
    P->depth--;
    return n;
}

static node *binop_node(parser *P, int line, int op, node *l, node *r) {
    if (!l || !r) return NULL;
    node *n = mk(P, N_BINOP, line);
    if (!n) return NULL;
    n->op = op;
    n->a = l;
    n->b = r;
    return n;
}

static node *parse_pow(parser *P) {
    node *l = parse_unary(P, true);
    while (l && tok_is_op(cur(P), "**")) {
        int line = cur(P)->line;
        advance(P);
        l = binop_node(P, line, OP_POW, l, parse_unary(P, true));
    }
    return l;
}

static node *parse_math2(parser *P) {
    node *l = parse_pow(P);
    while (l) {
        token *t = cur(P);
        int op = tok_is_op(t, "*") ? OP_MUL : tok_is_op(t, "/") ? OP_DIV : tok_is_op(t, "//") ? OP_FLOORDIV : tok_is_op(t, "%") ? OP_MOD : -1;
        if (op < 0) break;
        advance(P);
        l = binop_node(P, t->line, op, l, parse_pow(P));
    }
    return l;
}

static node *parse_concat(parser *P) {
    int line = cur(P)->line;
    node *first = parse_math2(P);
    if (!first || !tok_is_op(cur(P), "~")) return first;
    nvec parts = {0};
    if (!nvec_push(P, &parts, first)) return NULL;
    while (tok_is_op(cur(P), "~")) {
        advance(P);
        node *x = parse_math2(P);
        if (!x || !nvec_push(P, &parts, x)) return NULL;
    }
    node *n = mk(P, N_CONCAT, line);
    if (!n) return NULL;
    n->args = parts.v;
    n->nargs = parts.n;
    return n;
}

static node *parse_math1(parser *P) {
    node *l = parse_concat(P);
    while (l && (tok_is_op(cur(P), "+") || tok_is_op(cur(P), "-"))) {
        token *t = cur(P);
        advance(P);
        l = binop_node(P, t->line, tok_is_op(t, "+") ? OP_ADD : OP_SUB, l, parse_concat(P));
    }
    return l;
}

static node *parse_compare(parser *P) {
    int line = cur(P)->line;
    node *e = parse_math1(P);
    if (!e) return NULL;
    nvec operands = {0};
    int ops[64];
    for (;;) {
        token *t = cur(P);
        int op = -1;
        if (tok_is_op(t, "==")) op = CMP_EQ;
        else if (tok_is_op(t, "!=")) op = CMP_NE;
        else if (tok_is_op(t, "<")) op = CMP_LT;
        else if (tok_is_op(t, "<=")) op = CMP_LE;
        else if (tok_is_op(t, ">")) op = CMP_GT;
        else if (tok_is_op(t, ">=")) op = CMP_GE;
        else if (tok_is_name(t, "in")) op = CMP_IN;
        else if (tok_is_name(t, "not") && tok_is_name(peek(P, 1), "in")) {
            op = CMP_NOTIN;
            advance(P);
        }
        if (op < 0) break;
        advance(P);
        if (operands.n >= 64) return pfail(P, line, "too many chained comparisons"), NULL;
        ops[operands.n] = op;
        node *r = parse_math1(P);
        if (!r || !nvec_push(P, &operands, r)) return NULL;
    }
    if (!operands.n) return e;
    node *n = mk(P, N_COMPARE, line);
    if (!n) return NULL;
    n->a = e;
    n->args = operands.v;
    n->nargs = operands.n;
    n->cmpops = jpool_alloc(P->pool, operands.n * sizeof(int));
    if (!n->cmpops) return pfail(P, line, "out of memory"), NULL;
    memcpy(n->cmpops, ops, operands.n * sizeof(int));
    return n;
}

static node *parse_not(parser *P) {
    if (tok_is_name(cur(P), "not")) {
        int line = cur(P)->line;
        advance(P);
        if (!enter(P)) return NULL;
        node *n = mk(P, N_NOT, line);
        if (!n || !(n->a = parse_not(P))) return NULL;
        P->depth--;
        return n;
    }
    return parse_compare(P);
}

static node *parse_and(parser *P) {
    node *l = parse_not(P);
    while (l && tok_is_name(cur(P), "and")) {
        int line = cur(P)->line;
        advance(P);
        node *n = mk(P, N_AND, line);
        if (!n || !(n->b = parse_not(P))) return NULL;
        n->a = l;
        l = n;
    }
    return l;
}

static node *parse_or(parser *P) {
    node *l = parse_and(P);
    while (l && tok_is_name(cur(P), "or")) {
        int line = cur(P)->line;
        advance(P);
        node *n = mk(P, N_OR, line);
        if (!n || !(n->b = parse_and(P))) return NULL;
        n->a = l;
        l = n;
    }
    return l;
}

static node *parse_condexpr(parser *P) {
    node *e = parse_or(P);
    while (e && tok_is_name(cur(P), "if")) {
        int line = cur(P)->line;
        advance(P);
        if (!enter(P)) return NULL;
        node *n = mk(P, N_COND, line);
        if (!n || !(n->a = parse_or(P))) return NULL; /* condition */
        n->b = e;                                      /* value when true */
        if (tok_is_name(cur(P), "else")) {
            advance(P);
            if (!(n->c = parse_condexpr(P))) return NULL;
        }
        P->depth--;
        e = n;
    }
    return e;
}

static node *parse_expression(parser *P, bool with_condexpr) {
    if (!enter(P)) return NULL;
    node *n = with_condexpr ? parse_condexpr(P) : parse_or(P);
    P->depth--;
    return n;
}

/* ---- statements ------------------------------------------------------------ */

static bool check_target(parser *P, node *t) {
    if (t->kind == N_NAME) return true; /* true/false/none parse as constants, rejected below */
    if (t->kind == N_NSREF) return true;
    if (t->kind == N_TUPLE) {
        for (size_t i = 0; i < t->nargs; i++)
            if (!check_target(P, t->args[i])) return false;
        return true;
    }
    return pfail(P, t->line, "cannot assign to this expression");
}

static node *parse_assign_target(parser *P, const char *extra_end, bool with_namespace) {
    node *t = parse_tuple(P, true, true, extra_end, false, with_namespace);
    if (t && !check_target(P, t)) return NULL;
    return t;
}

static node *subparse(parser *P, const char *const *end_names);

static bool expect_block_end(parser *P) { return expect_type(P, T_BLOCK_END, "end of statement block"); }

/* After subparse stopped at an end tag name: is it `nm`? */
static bool at_name(parser *P, const char *nm) { return tok_is_name(cur(P), nm); }

static bool end_tag(parser *P, const char *nm) {
    if (!at_name(P, nm)) {
        char b[64];
        return pfail(P, cur(P)->line, "expected '%s', got '%s'", nm, describe(cur(P), b, sizeof b));
    }
    advance(P);
    return expect_block_end(P);
}

static node *parse_for(parser *P, int line) {
    node *n = mk(P, N_FOR, line);
    if (!n) return NULL;
    if (!(n->a = parse_assign_target(P, "in", false))) return NULL;
    if (!at_name(P, "in")) return pfail(P, cur(P)->line, "expected 'in' in for loop"), NULL;
    advance(P);
    if (!(n->b = parse_tuple(P, false, false, "recursive", false, false))) return NULL;
    if (tok_is_name(cur(P), "if")) {
        advance(P);
        if (!(n->d = parse_expression(P, true))) return NULL;
    }
    if (tok_is_name(cur(P), "recursive")) return pfail(P, cur(P)->line, "recursive for loops are not supported"), NULL;
    if (!expect_block_end(P)) return NULL;
    static const char *const ends1[] = {"endfor", "else", NULL}, *const ends2[] = {"endfor", NULL};
    P->loop_depth++;
    node *body = subparse(P, ends1);
    P->loop_depth--;
    if (!body) return NULL;
    n->c = body;
    if (at_name(P, "else")) {
        advance(P);
        if (!expect_block_end(P)) return NULL;
        int saved = P->loop_depth;
        P->loop_depth = 0; /* the else block is not inside the loop */
        node *els = subparse(P, ends2);
        P->loop_depth = saved;
        if (!els) return NULL;
        n->op = 1;
        n->kwvals = jpool_alloc(P->pool, sizeof(node *));
        if (!n->kwvals) return NULL;
        n->kwvals[0] = els;
        n->nkw = 1;
    }
    if (!end_tag(P, "endfor")) return NULL;
    return n;
}

static node *parse_if(parser *P, int line) {
    node *n = mk(P, N_IF, line);
    if (!n || !(n->a = parse_tuple(P, false, false, NULL, false, false)) || !expect_block_end(P)) return NULL;
    static const char *const ends[] = {"elif", "else", "endif", NULL}, *const ends2[] = {"endif", NULL};
    if (!(n->b = subparse(P, ends))) return NULL;
    if (at_name(P, "elif")) {
        int l2 = cur(P)->line;
        advance(P);
        if (!enter(P)) return NULL;
        n->c = parse_if(P, l2); /* consumes the endif */
        P->depth--;
        return n->c ? n : NULL;
    }
    if (at_name(P, "else")) {
        advance(P);
        if (!expect_block_end(P) || !(n->c = subparse(P, ends2))) return NULL;
    }
    return end_tag(P, "endif") ? n : NULL;
}

static node *parse_set(parser *P, int line) {
    node *target = parse_assign_target(P, NULL, true);
    if (!target) return NULL;
    if (tok_is_op(cur(P), "=")) {
        advance(P);
        node *n = mk(P, N_SET, line);
        if (!n) return NULL;
        n->a = target;
        if (!(n->b = parse_tuple(P, false, true, NULL, false, false)) || !expect_block_end(P)) return NULL;
        return n;
    }
    node *n = mk(P, N_SETBLOCK, line);
    if (!n) return NULL;
    n->a = target;
    if (target->kind == N_TUPLE) return pfail(P, line, "a block set cannot unpack a tuple"), NULL;
    if (tok_is_op(cur(P), "|")) {
        /* `{% set x | filter %}`: a filter chain applied to the captured body (a is NULL in the chain) */
        if (!(n->c = parse_filter(P, NULL, false))) return NULL;
    }
    static const char *const ends[] = {"endset", NULL};
    if (!expect_block_end(P) || !(n->b = subparse(P, ends)) || !end_tag(P, "endset")) return NULL;
    return n;
}

/* `(a, b=default, ...)` for macros and call blocks. */
static bool parse_signature(parser *P, node *n) {
    if (!expect_op(P, "(")) return false;
    nvec defs = {0};
    const char **names = NULL;
    size_t cap = 0, cnt = 0;
    while (!tok_is_op(cur(P), ")")) {
        if (cnt && !expect_op(P, ",")) return false;
        token *t = cur(P);
        if (!expect_type(P, T_NAME, "a parameter name")) return false;
        node *def = NULL;
        if (tok_is_op(cur(P), "=")) {
            advance(P);
            if (!(def = parse_expression(P, true))) return false;
        }
        if (cnt == cap) {
            cap = cap ? cap * 2 : 4;
            const char **nn = jpool_alloc(P->pool, cap * sizeof *nn);
            if (!nn) return pfail(P, t->line, "out of memory");
            if (cnt) memcpy(nn, names, cnt * sizeof *nn);
            names = nn;
        }
        names[cnt] = jpool_strndup(P->pool, t->s, t->n);
        if (!names[cnt]) return pfail(P, t->line, "out of memory");
        if (!def && cnt && defs.v[cnt - 1]) return pfail(P, t->line, "non-default argument follows default argument");
        cnt++;
        if (!nvec_push(P, &defs, def)) return false;
    }
    advance(P);
    n->kwnames = names;
    n->kwvals = defs.v;
    n->nkw = cnt;
    return true;
}

static node *parse_macro(parser *P, int line) {
    node *n = mk(P, N_MACRO, line);
    if (!n) return NULL;
    token *t = cur(P);
    if (!expect_type(P, T_NAME, "a macro name")) return NULL;
    n->str = jpool_strndup(P->pool, t->s, t->n);
    n->len = t->n;
    if (!parse_signature(P, n) || !expect_block_end(P)) return NULL;
    unsigned saved = P->macro_flags;
    int saved_loop = P->loop_depth;
    P->macro_flags = 0;
    P->loop_depth = 0;
    static const char *const ends[] = {"endmacro", NULL};
    n->a = subparse(P, ends);
    n->flags = P->macro_flags;
    P->macro_flags = saved;
    P->loop_depth = saved_loop;
    if (!n->a) return NULL;
    if (!at_name(P, "endmacro")) return NULL;
    advance(P);
    if (cur(P)->t == T_NAME) advance(P); /* `{% endmacro name %}` */
    return expect_block_end(P) ? n : NULL;
}

static node *parse_call_block(parser *P, int line) {
    node *n = mk(P, N_CALLBLOCK, line);
    if (!n) return NULL;
    if (tok_is_op(cur(P), "(") && !parse_signature(P, n)) return NULL;
    node *call = parse_expression(P, true);
    if (!call) return NULL;
    if (call->kind != N_CALL) return pfail(P, line, "expected a call expression in a call block"), NULL;
    n->b = call;
    if (!expect_block_end(P)) return NULL;
    unsigned saved = P->macro_flags;
    int saved_loop = P->loop_depth;
    P->macro_flags = 0;
    P->loop_depth = 0;
    static const char *const ends[] = {"endcall", NULL};
    n->a = subparse(P, ends);
    n->flags = P->macro_flags;
    P->macro_flags = saved;
    P->loop_depth = saved_loop;
    if (!n->a || !end_tag(P, "endcall")) return NULL;
    return n;
}

static node *parse_statement(parser *P) {
    token *t = cur(P);
    int line = t->line;
    if (t->t != T_NAME) {
        char b[64];
        return pfail(P, line, "tag name expected, got '%s'", describe(t, b, sizeof b)), NULL;
    }
    if (!enter(P)) return NULL;
    advance(P);
    node *n = NULL;
    if (tok_is_name(t, "for")) n = parse_for(P, line);
    else if (tok_is_name(t, "if")) n = parse_if(P, line);
    else if (tok_is_name(t, "set")) n = parse_set(P, line);
    else if (tok_is_name(t, "macro")) n = parse_macro(P, line);
    else if (tok_is_name(t, "call")) n = parse_call_block(P, line);
    else if (tok_is_name(t, "break") || tok_is_name(t, "continue")) {
        if (P->loop_depth == 0) return pfail(P, line, "'%.*s' outside of a loop", (int)t->n, t->s), NULL;
        n = mk(P, tok_is_name(t, "break") ? N_BREAK : N_CONTINUE, line);
        if (n && !expect_block_end(P)) return NULL;
    } else if (tok_is_name(t, "filter")) {
        n = mk(P, N_FILTERBLOCK, line);
        static const char *const ends[] = {"endfilter", NULL};
        if (!n || !(n->b = parse_filter(P, NULL, true)) || !expect_block_end(P) || !(n->a = subparse(P, ends)) ||
            !end_tag(P, "endfilter"))
            return NULL;
    } else if (tok_is_name(t, "with")) {
        n = mk(P, N_WITH, line);
        if (!n) return NULL;
        nvec targets = {0}, values = {0};
        while (cur(P)->t != T_BLOCK_END) {
            if (targets.n && !expect_op(P, ",")) return NULL;
            node *tg = parse_assign_target(P, NULL, false);
            if (!tg || !expect_op(P, "=")) return NULL;
            node *v = parse_expression(P, true);
            if (!v || !nvec_push(P, &targets, tg) || !nvec_push(P, &values, v)) return NULL;
        }
        advance(P);
        n->args = targets.v;
        n->nargs = targets.n;
        n->kwvals = values.v;
        n->nkw = values.n;
        static const char *const ends[] = {"endwith", NULL};
        if (!(n->a = subparse(P, ends)) || !end_tag(P, "endwith")) return NULL;
    } else if (tok_is_name(t, "generation")) {
        /* transformers' AssistantTracker: the body renders unchanged */
        static const char *const ends[] = {"endgeneration", NULL};
        if (!expect_block_end(P) || !(n = subparse(P, ends)) || !end_tag(P, "endgeneration")) return NULL;
    } else if (tok_is_name(t, "include") || tok_is_name(t, "import") || tok_is_name(t, "from") ||
               tok_is_name(t, "extends") || tok_is_name(t, "block") || tok_is_name(t, "autoescape")) {
        /* real Jinja2 tags that need other templates or HTML escaping; chat templates do not use them */
        pfail(P, line, "the Jinja tag '%.*s' is not supported by vlmc", (int)t->n, t->s);
        return NULL;
    } else {
        pfail(P, line, "encountered unknown tag '%.*s'", (int)(t->n > 40 ? 40 : t->n), t->s);
        return NULL;
    }
    P->depth--;
    return n;
}

static node *subparse(parser *P, const char *const *end_names) {
    node *body = mk(P, N_BODY, cur(P)->line);
    if (!body) return NULL;
    nvec items = {0};
    for (;;) {
        token *t = cur(P);
        if (t->t == T_EOF) {
            if (end_names) {
                pfail(P, t->line, "unexpected end of template; expected '%s'", end_names[0]);
                return NULL;
            }
            break;
        }
        if (t->t == T_TEXT) {
            node *x = mk(P, N_TEXT, t->line);
            if (!x) return NULL;
            x->str = t->s;
            x->len = t->n;
            advance(P);
            if (!nvec_push(P, &items, x)) return NULL;
        } else if (t->t == T_VAR_BEGIN) {
            advance(P);
            node *x = mk(P, N_OUTPUT, t->line);
            if (!x || !(x->a = parse_tuple(P, false, true, NULL, false, false))) return NULL;
            if (!expect_type(P, T_VAR_END, "end of print statement")) return NULL;
            if (!nvec_push(P, &items, x)) return NULL;
        } else if (t->t == T_BLOCK_BEGIN) {
            advance(P);
            token *nm = cur(P);
            if (nm->t == T_NAME && end_names) {
                for (const char *const *e = end_names; *e; e++)
                    if (tok_is_name(nm, *e)) goto done;
            }
            if (nm->t == T_NAME && nm->n > 3 && !memcmp(nm->s, "end", 3)) {
                pfail(P, nm->line, "encountered unexpected tag '%.*s'%s%s", (int)(nm->n > 40 ? 40 : nm->n), nm->s,
                      end_names ? "; expected " : "", end_names ? end_names[0] : "");
                return NULL;
            }
            if (nm->t == T_NAME && (tok_is_name(nm, "else") || tok_is_name(nm, "elif"))) {
                pfail(P, nm->line, "encountered unexpected tag '%.*s'", (int)nm->n, nm->s);
                return NULL;
            }
            node *x = parse_statement(P);
            if (!x || !nvec_push(P, &items, x)) return NULL;
        } else {
            char b[64];
            pfail(P, t->line, "unexpected '%s'", describe(t, b, sizeof b));
            return NULL;
        }
    }
done:
    body->args = items.v;
    body->nargs = items.n;
    return body;
}

const char *const jinja_filter_names[] = {
    "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape", "filesizeformat",
    "first", "float", "forceescape", "format", "groupby", "indent", "int", "join", "last", "length", "list", "lower",
    "items", "map", "min", "max", "pprint", "random", "reject", "rejectattr", "replace", "reverse", "round", "safe",
    "select", "selectattr", "slice", "sort", "string", "striptags", "sum", "title", "trim", "truncate", "unique", "upper",
    "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr", "tojson", NULL};
const char *const jinja_test_names[] = {
    "odd", "even", "divisibleby", "defined", "undefined", "filter", "test", "none", "boolean", "false", "true",
    "integer", "float", "lower", "upper", "string", "mapping", "number", "sequence", "iterable", "callable", "sameas",
    "escaped", "in", "==", "eq", "equalto", "!=", "ne", ">", "gt", "greaterthan", "ge", ">=", "<", "lt", "lessthan",
    "<=", "le", NULL};

bool jinja_name_in(const char *const *names, const char *name) {
    for (; *names; names++)
        if (!strcmp(*names, name)) return true;
    return false;
}

/* Jinja2 rejects unknown filters and tests when it compiles the template,
 * except inside `if` statements and inline if-expressions ("soft" frames,
 * where the error is deferred to when they run). Loops, macros and blocks
 * start hard again. */
static bool check_names(parser *P, const node *n, bool soft, int depth) {
    if (!n) return true;
    if (depth > 4 * MAX_DEPTH) return pfail(P, n->line, "nested too deeply");
    if (!soft && n->kind == N_FILTER && !jinja_name_in(jinja_filter_names, n->str))
        return pfail(P, n->line, "no filter named '%s'", n->str);
    if (!soft && n->kind == N_TEST && !jinja_name_in(jinja_test_names, n->str))
        return pfail(P, n->line, "no test named '%s'", n->str);
    bool kids_soft = soft;
    switch (n->kind) {
    case N_IF:
    case N_COND: kids_soft = true; break;
    case N_FOR:
        /* the iterable is evaluated in the enclosing frame; the rest in the loop's own */
        return check_names(P, n->b, soft, depth + 1) && check_names(P, n->d, false, depth + 1) &&
               check_names(P, n->c, false, depth + 1) && (!n->nkw || check_names(P, n->kwvals[0], false, depth + 1));
    case N_MACRO:
    case N_CALLBLOCK:
    case N_SETBLOCK:
    case N_FILTERBLOCK:
    case N_WITH: kids_soft = false; break;
    default: break;
    }
    const node *kids[4] = {n->a, n->b, n->c, n->d};
    for (int i = 0; i < 4; i++)
        if (!check_names(P, kids[i], kids_soft, depth + 1)) return false;
    for (size_t i = 0; i < n->nargs; i++)
        if (!check_names(P, n->args[i], kids_soft, depth + 1)) return false;
    for (size_t i = 0; n->kwvals && i < n->nkw; i++)
        if (!check_names(P, n->kwvals[i], kids_soft, depth + 1)) return false;
    return true;
}

vlmc_status jinja_parse(const char *src, size_t len, const char *name, jinja_template **out, vlmc_error *err) {
    *out = NULL;
    if (!name) name = "template";
    if (!src) return vlmc_fail(err, VLMC_ERR_ARG, "%s: no template text", name);
    if (!utf8_valid(src, len)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: template is not valid UTF-8", name);
    if (memchr(src, '\0', len)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: template contains a NUL byte", name);
    jinja_template *t = calloc(1, sizeof *t);
    if (!t) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", name);
    /* the AST is at most a fixed multiple of the source (a node per two-byte token at worst);
     * the budget only guards against bugs */
    jpool_init(&t->pool, 256 * len + (1u << 20));
    t->name = jpool_strndup(&t->pool, name, strlen(name));
    size_t n;
    char *norm = normalize_newlines(&t->pool, src, len, &n);
    if (!t->name || !norm) {
        jinja_free(t);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", name);
    }
    lexer L = {.pool = &t->pool, .err = err, .name = t->name, .s = norm, .n = n, .line = 1};
    if (!lex(&L)) {
        free(L.toks);
        jinja_free(t);
        return err ? err->code : VLMC_ERR_FORMAT;
    }
    parser P = {.pool = &t->pool, .err = err, .name = t->name, .toks = L.toks, .ntoks = L.ntoks};
    t->root = subparse(&P, NULL);
    if (t->root && !P.failed) check_names(&P, t->root, false, 0);
    free(L.toks);
    if (!t->root || P.failed) {
        vlmc_status st = err ? err->code : VLMC_ERR_FORMAT;
        if (!P.failed) st = vlmc_fail(err, VLMC_ERR_INTERNAL, "%s: parse failed", t->name);
        jinja_free(t);
        return st;
    }
    *out = t;
    return VLMC_OK;
}

void jinja_free(jinja_template *t) {
    if (!t) return;
    jpool_free(&t->pool);
    free(t);
}
