/* Jinja evaluator: renders the AST of jinja_parse.c.
 *
 * Values follow Python's semantics as Jinja2 exposes them: int/float/str/
 * list/tuple/dict (insertion ordered) with Python's equality, ordering,
 * arithmetic and str()/repr() text, plus Jinja's Undefined (prints empty, is
 * falsy, iterates empty, but fails on attribute access, arithmetic and calls),
 * namespaces, macros and the loop object. Attribute and item access use the
 * sandbox's getattr/getitem fallbacks, and the sandbox's refusal of mutating
 * methods (list.append, dict.update, ...).
 *
 * Every value of a render lives in one jpool whose byte budget bounds memory;
 * loop iterations, macro calls and filter work are counted against a step
 * budget; recursion depth is bounded; output size is bounded. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <utf8proc.h>

#include "core/utf8.h"
#include "text/jinja_internal.h"

#define MAX_EVAL_DEPTH 600     /* nested evaluation (expressions, statements, macro calls) */
#define MAX_RANGE 100000       /* as Jinja2's sandbox */
#define DEF_MAX_OUTPUT (16u << 20)
#define DEF_MAX_MEMORY (256u << 20)
#define DEF_MAX_STEPS 10000000u

/* ---- values ------------------------------------------------------------------ */

/* V_GEN is what Jinja2's select/reject/map/unique/batch/items/reverse filters
 * return: a Python generator. It is always truthy, has no len(), cannot be
 * indexed, and is used up by the first iteration; templates that rely on
 * `{% if x|selectattr(...) %}` being true behave as in Jinja2. (Its items are
 * computed eagerly, so an error inside one surfaces even if it is never read.) */
typedef enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_NS, V_MACRO, V_FUNC, V_METHOD, V_LOOP, V_GEN } vtype;

typedef struct val val;
typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct macro macro;
typedef struct method method;
typedef struct loopctx loopctx;

struct val {
    vtype t;
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s;
        jlist *l;
        jdict *d;  /* V_DICT and V_NS */
        macro *m;
        int fn;    /* V_FUNC */
        method *bm;
        loopctx *loop;
        const char *hint; /* V_UNDEF: why it is undefined (for error messages), may be NULL */
    } u;
};

struct jlist {
    val *v;
    size_t n, cap;
    bool tuple;
    bool group; /* a (grouper, list) pair made by the groupby filter: has .grouper and .list */
    bool consumed;        /* V_GEN: already iterated */
    const char *deferred; /* V_GEN: the error its first iteration raises (made from a non-iterable) */
};

struct jdict {
    val *k, *v;
    size_t n, cap;
};

typedef struct frame frame;
struct frame {
    frame *parent;
    const char **names;
    val *vals;
    size_t n, cap;
};

struct macro {
    const node *def; /* N_MACRO or N_CALLBLOCK */
    frame *closure;
    const char *name;
};

struct method {
    val recv;
    const char *name;
};

struct loopctx {
    jlist *items;
    size_t index0;
};

enum { FN_RANGE, FN_NAMESPACE, FN_DICT, FN_RAISE, FN_STRFTIME };

/* ---- renderer state ----------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

typedef struct R {
    jpool pool;
    vlmc_error *err;
    const char *tname;
    sbuf *out;
    size_t max_output;
    uint64_t steps, max_steps;
    int depth;
    const char *now;
    bool failed;
    vlmc_status code; /* of the first failure */
} R;

enum { CTL_OK = 0, CTL_BREAK = 1, CTL_CONTINUE = 2, CTL_ERR = -1 };

static int rfail(R *r, int line, vlmc_status code, const char *fmt, ...) VLMC_PRINTF(4, 5);
static int rfail(R *r, int line, vlmc_status code, const char *fmt, ...) {
    if (r->failed) return CTL_ERR;
    r->failed = true;
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r->pool.over) {
        code = VLMC_ERR_LIMIT;
        snprintf(msg, sizeof msg, "the template used more than %zu bytes of memory", r->pool.limit);
    }
    r->code = code;
    vlmc_fail(r->err, code, "%s:%d: %s", r->tname, line, msg);
    return CTL_ERR;
}

#define TYPE_ERR(r, line, ...) rfail(r, line, VLMC_ERR_FORMAT, "TypeError: " __VA_ARGS__)

static void *ralloc(R *r, int line, size_t n) {
    void *p = jpool_alloc(&r->pool, n);
    if (!p) rfail(r, line, VLMC_ERR_LIMIT, "out of memory");
    return p;
}

static bool step(R *r, int line, uint64_t k) {
    r->steps += k;
    if (r->steps > r->max_steps) {
        rfail(r, line, VLMC_ERR_LIMIT, "the template ran more than %llu steps (loop iterations, calls)",
              (unsigned long long)r->max_steps);
        return false;
    }
    return true;
}

/* ---- growable byte buffers (malloc'ed; bounded by max_output) -------------------- */

static bool sb_put(R *r, sbuf *b, const char *s, size_t n) {
    if (n == 0) return true;
    if (b->n + n > r->max_output) {
        rfail(r, 0, VLMC_ERR_LIMIT, "rendered text exceeds %zu bytes", r->max_output);
        return false;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            rfail(r, 0, VLMC_ERR_NOMEM, "out of memory");
            return false;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return true;
}
static bool sb_puts(R *r, sbuf *b, const char *s) { return sb_put(r, b, s, strlen(s)); }
static bool sb_putc(R *r, sbuf *b, char c) { return sb_put(r, b, &c, 1); }
static bool sb_printf(R *r, sbuf *b, const char *fmt, ...) VLMC_PRINTF(3, 4);
static bool sb_printf(R *r, sbuf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) return false;
    return sb_put(r, b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}
static void sb_free(sbuf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

/* ---- constructors ------------------------------------------------------------- */

static val v_undef(const char *hint) { val v = {.t = V_UNDEF}; v.u.hint = hint; return v; }
static val v_none(void) { return (val){.t = V_NONE}; }
static val v_bool(bool b) { val v = {.t = V_BOOL}; v.u.b = b; return v; }
static val v_int(int64_t i) { val v = {.t = V_INT}; v.u.i = i; return v; }
static val v_float(double f) { val v = {.t = V_FLOAT}; v.u.f = f; return v; }
static val v_str(const char *p, size_t n) { val v = {.t = V_STR}; v.u.s.p = p; v.u.s.n = n; return v; }
static val v_cstr(const char *p) { return v_str(p, strlen(p)); }

/* A string copied into the pool. */
static bool v_strdup(R *r, int line, const char *p, size_t n, val *out) {
    char *c = jpool_strndup(&r->pool, p, n);
    if (!c) return rfail(r, line, VLMC_ERR_LIMIT, "out of memory"), false;
    *out = v_str(c, n);
    return true;
}

/* Moves a malloc'ed buffer into a pool string and frees the buffer. */
static bool v_from_sbuf(R *r, int line, sbuf *b, val *out) {
    bool ok = v_strdup(r, line, b->p ? b->p : "", b->n, out);
    sb_free(b);
    return ok;
}

/* A printf-formatted hint for undefined values. */
static const char *hintf(R *r, const char *fmt, ...) VLMC_PRINTF(2, 3);
static const char *hintf(R *r, const char *fmt, ...) {
    char tmp[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    return jpool_strndup(&r->pool, tmp, strlen(tmp));
}

/* Lists always own an item array (never NULL), so copies need no special case for empty lists. */
static jlist *new_list(R *r, int line, size_t cap) {
    jlist *l = ralloc(r, line, sizeof *l);
    if (!l) return NULL;
    if (cap == 0) cap = 2;
    l->v = ralloc(r, line, cap * sizeof(val));
    if (!l->v) return NULL;
    l->cap = cap;
    return l;
}

/* memcpy that accepts (NULL, 0). */
static void copy_bytes(void *dst, const void *src, size_t n) {
    if (n) memcpy(dst, src, n);
}

static bool list_push(R *r, int line, jlist *l, val x) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        val *nv = ralloc(r, line, cap * sizeof(val));
        if (!nv) return false;
        if (l->n) copy_bytes(nv, l->v, l->n * sizeof(val));
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return true;
}

static val v_list(jlist *l) { val v = {.t = V_LIST}; v.u.l = l; return v; }
static val v_gen(jlist *l) { val v = {.t = V_GEN}; v.u.l = l; return v; }
static val v_dict(jdict *d) { val v = {.t = V_DICT}; v.u.d = d; return v; }

static jdict *new_dict(R *r, int line) { return ralloc(r, line, sizeof(jdict)); }

static bool py_eq(const val *a, const val *b);

static val *dict_find(const jdict *d, const val *k) {
    for (size_t i = 0; i < d->n; i++)
        if (py_eq(&d->k[i], k)) return &d->v[i];
    return NULL;
}

static val *dict_find_str(const jdict *d, const char *s, size_t n) {
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t == V_STR && d->k[i].u.s.n == n && !memcmp(d->k[i].u.s.p, s, n)) return &d->v[i];
    return NULL;
}

static bool dict_set(R *r, int line, jdict *d, val k, val v) {
    if (!step(r, line, d->n / 8 + 1)) return false; /* the linear key search is work too */
    val *e = dict_find(d, &k);
    if (e) {
        *e = v;
        return true;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        val *nk = ralloc(r, line, cap * sizeof(val)), *nv = ralloc(r, line, cap * sizeof(val));
        if (!nk || !nv) return false;
        if (d->n) {
            copy_bytes(nk, d->k, d->n * sizeof(val));
            copy_bytes(nv, d->v, d->n * sizeof(val));
        }
        d->k = nk;
        d->v = nv;
        d->cap = cap;
    }
    d->k[d->n] = k;
    d->v[d->n++] = v;
    return true;
}

static bool is_hashable(const val *v) {
    return v->t == V_NONE || v->t == V_BOOL || v->t == V_INT || v->t == V_FLOAT || v->t == V_STR ||
           (v->t == V_LIST && v->u.l->tuple);
}

/* ---- frames -------------------------------------------------------------------- */

static frame *new_frame(R *r, int line, frame *parent) {
    frame *f = ralloc(r, line, sizeof *f);
    if (f) f->parent = parent;
    return f;
}

static bool frame_set(R *r, int line, frame *f, const char *name, val v) {
    for (size_t i = 0; i < f->n; i++)
        if (!strcmp(f->names[i], name)) {
            f->vals[i] = v;
            return true;
        }
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        const char **nn = ralloc(r, line, cap * sizeof *nn);
        val *nv = ralloc(r, line, cap * sizeof *nv);
        if (!nn || !nv) return false;
        if (f->n) {
            copy_bytes(nn, f->names, f->n * sizeof *nn);
            copy_bytes(nv, f->vals, f->n * sizeof *nv);
        }
        f->names = nn;
        f->vals = nv;
        f->cap = cap;
    }
    f->names[f->n] = name;
    f->vals[f->n++] = v;
    return true;
}

static bool frame_get(const frame *f, const char *name, val *out) {
    for (; f; f = f->parent)
        for (size_t i = f->n; i-- > 0;)
            if (!strcmp(f->names[i], name)) {
                *out = f->vals[i];
                return true;
            }
    return false;
}

/* ---- Python semantics helpers ------------------------------------------------------ */

static const char *type_name(const val *v) {
    switch (v->t) {
    case V_UNDEF: return "Undefined";
    case V_NONE: return "NoneType";
    case V_BOOL: return "bool";
    case V_INT: return "int";
    case V_FLOAT: return "float";
    case V_STR: return "str";
    case V_LIST: return v->u.l->tuple ? "tuple" : "list";
    case V_DICT: return "dict";
    case V_NS: return "Namespace";
    case V_MACRO: return "Macro";
    case V_FUNC: return "function";
    case V_METHOD: return "builtin_function_or_method";
    case V_LOOP: return "LoopContext";
    case V_GEN: return "generator";
    }
    return "object";
}

static bool truthy(const val *v) {
    switch (v->t) {
    case V_UNDEF:
    case V_NONE: return false;
    case V_BOOL: return v->u.b;
    case V_INT: return v->u.i != 0;
    case V_FLOAT: return v->u.f != 0.0;
    case V_STR: return v->u.s.n > 0;
    case V_LIST: return v->u.l->n > 0;
    case V_DICT: return v->u.d->n > 0;
    default: return true;
    }
}

static bool is_num(const val *v) { return v->t == V_BOOL || v->t == V_INT || v->t == V_FLOAT; }
static double num_f(const val *v) { return v->t == V_FLOAT ? v->u.f : v->t == V_INT ? (double)v->u.i : (double)v->u.b; }
static int64_t num_i(const val *v) { return v->t == V_INT ? v->u.i : (int64_t)v->u.b; }

/* Values nested deeper than this compare unequal / unordered instead of
 * recursing further (a loop can build [[[...]]] deeper than the C stack). */
#define MAX_CMP_DEPTH 200

static bool py_eq_d(const val *a, const val *b, int depth) {
    if (depth > MAX_CMP_DEPTH) return false;
    if (is_num(a) && is_num(b)) {
        if (a->t == V_FLOAT || b->t == V_FLOAT) return num_f(a) == num_f(b);
        return num_i(a) == num_i(b);
    }
    if (a->t != b->t) return false;
    switch (a->t) {
    case V_UNDEF:
    case V_NONE: return true;
    case V_STR: return a->u.s.n == b->u.s.n && !memcmp(a->u.s.p, b->u.s.p, a->u.s.n);
    case V_LIST:
        if (a->u.l->tuple != b->u.l->tuple || a->u.l->n != b->u.l->n) return false;
        for (size_t i = 0; i < a->u.l->n; i++)
            if (!py_eq_d(&a->u.l->v[i], &b->u.l->v[i], depth + 1)) return false;
        return true;
    case V_DICT:
        if (a->u.d->n != b->u.d->n) return false;
        for (size_t i = 0; i < a->u.d->n; i++) {
            val *o = dict_find(b->u.d, &a->u.d->k[i]);
            if (!o || !py_eq_d(&a->u.d->v[i], o, depth + 1)) return false;
        }
        return true;
    case V_NS: return a->u.d == b->u.d;
    case V_MACRO: return a->u.m == b->u.m;
    case V_FUNC: return a->u.fn == b->u.fn;
    case V_METHOD: return a->u.bm == b->u.bm;
    case V_LOOP: return a->u.loop == b->u.loop;
    case V_GEN: return a->u.l == b->u.l;
    default: return false;
    }
}

static bool py_eq(const val *a, const val *b) { return py_eq_d(a, b, 0); }

/* Python ordering: sets *res to <0, 0, >0; false when the types are not ordered. */
static bool py_cmp_d(const val *a, const val *b, int *res, int depth) {
    if (depth > MAX_CMP_DEPTH) return false;
    if (is_num(a) && is_num(b)) {
        if (a->t == V_FLOAT || b->t == V_FLOAT) {
            double x = num_f(a), y = num_f(b);
            *res = x < y ? -1 : x > y ? 1 : 0;
        } else {
            int64_t x = num_i(a), y = num_i(b);
            *res = x < y ? -1 : x > y ? 1 : 0;
        }
        return true;
    }
    if (a->t == V_STR && b->t == V_STR) {
        size_t n = a->u.s.n < b->u.s.n ? a->u.s.n : b->u.s.n;
        int c = n ? memcmp(a->u.s.p, b->u.s.p, n) : 0;
        *res = c ? c : (a->u.s.n < b->u.s.n ? -1 : a->u.s.n > b->u.s.n ? 1 : 0);
        return true;
    }
    if (a->t == V_LIST && b->t == V_LIST && a->u.l->tuple == b->u.l->tuple) {
        size_t n = a->u.l->n < b->u.l->n ? a->u.l->n : b->u.l->n;
        for (size_t i = 0; i < n; i++) {
            if (py_eq_d(&a->u.l->v[i], &b->u.l->v[i], depth + 1)) continue;
            return py_cmp_d(&a->u.l->v[i], &b->u.l->v[i], res, depth + 1);
        }
        *res = a->u.l->n < b->u.l->n ? -1 : a->u.l->n > b->u.l->n ? 1 : 0;
        return true;
    }
    return false;
}

static bool py_cmp(const val *a, const val *b, int *res) { return py_cmp_d(a, b, res, 0); }

/* Python's repr(float): the shortest text that reads back as the same double. */
static void float_repr(double x, char *buf, size_t cap) {
    if (isnan(x)) {
        snprintf(buf, cap, "nan");
        return;
    }
    if (isinf(x)) {
        snprintf(buf, cap, x < 0 ? "-inf" : "inf");
        return;
    }
    char e[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec - 1, x);
        if (strtod(e, NULL) == x) break;
    }
    /* e is [-]d[.ddd]e[+-]XX: pull out digits and exponent */
    bool neg = e[0] == '-';
    const char *p = e + neg;
    char digits[24];
    size_t nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = '\0';
    int exp = atoi(p + 1);
    char *o = buf;
    size_t left = cap;
#define PUT(...) do { int k_ = snprintf(o, left, __VA_ARGS__); if (k_ < 0 || (size_t)k_ >= left) return; o += k_; left -= (size_t)k_; } while (0)
    if (neg) PUT("-");
    if (exp >= -4 && exp < 16) { /* Python switches to exponent form outside [1e-4, 1e16) */
        if (exp < 0) {
            PUT("0.");
            for (int i = 0; i < -exp - 1; i++) PUT("0");
            PUT("%s", digits);
        } else {
            for (int i = 0; i <= exp; i++) PUT("%c", (size_t)i < nd ? digits[i] : '0');
            PUT(".");
            if ((size_t)exp + 1 < nd) PUT("%s", digits + exp + 1);
            else PUT("0");
        }
    } else {
        PUT("%c", digits[0]);
        if (nd > 1) PUT(".%s", digits + 1);
        PUT("e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
#undef PUT
}

/* Python's str.isprintable for one code point (used by repr). */
static bool cp_printable(uint32_t cp) {
    if (cp == ' ') return true;
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    switch (c) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_ZS: return false;
    default: return true;
    }
}

static bool put_str_repr(R *r, sbuf *b, const char *s, size_t n) {
    bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = (has_sq && !has_dq) ? '"' : '\'';
    if (!sb_putc(r, b, q)) return false;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_decode(s + i, n - i, &cp);
        if (k == 0) {
            cp = (unsigned char)s[i];
            k = 1;
        }
        bool ok;
        if (cp == (uint32_t)q || cp == '\\') ok = sb_putc(r, b, '\\') && sb_putc(r, b, (char)cp);
        else if (cp == '\n') ok = sb_puts(r, b, "\\n");
        else if (cp == '\r') ok = sb_puts(r, b, "\\r");
        else if (cp == '\t') ok = sb_puts(r, b, "\\t");
        else if (cp < 0x80 && cp >= 0x20 && cp != 0x7f) ok = sb_putc(r, b, (char)cp);
        else if (cp >= 0x80 && cp_printable(cp)) ok = sb_put(r, b, s + i, k);
        else if (cp < 0x100) ok = sb_printf(r, b, "\\x%02x", cp);
        else if (cp < 0x10000) ok = sb_printf(r, b, "\\u%04x", cp);
        else ok = sb_printf(r, b, "\\U%08x", cp);
        if (!ok) return false;
        i += k;
    }
    return sb_putc(r, b, q);
}

static bool put_val(R *r, sbuf *b, const val *v, bool repr, int depth);

static bool put_dict_body(R *r, sbuf *b, const jdict *d, int depth) {
    if (!sb_putc(r, b, '{')) return false;
    for (size_t i = 0; i < d->n; i++) {
        if (i && !sb_puts(r, b, ", ")) return false;
        if (!put_val(r, b, &d->k[i], true, depth + 1) || !sb_puts(r, b, ": ") || !put_val(r, b, &d->v[i], true, depth + 1))
            return false;
    }
    return sb_putc(r, b, '}');
}

/* str(v) (repr=false) or repr(v) (repr=true), as Python prints it. */
static bool put_val(R *r, sbuf *b, const val *v, bool repr, int depth) {
    if (depth > 100) return rfail(r, 0, VLMC_ERR_LIMIT, "value nested too deeply to print"), false;
    char tmp[64];
    switch (v->t) {
    case V_UNDEF: return repr ? sb_puts(r, b, "Undefined") : true;
    case V_NONE: return sb_puts(r, b, "None");
    case V_BOOL: return sb_puts(r, b, v->u.b ? "True" : "False");
    case V_INT: return sb_printf(r, b, "%lld", (long long)v->u.i);
    case V_FLOAT: float_repr(v->u.f, tmp, sizeof tmp); return sb_puts(r, b, tmp);
    case V_STR: return repr ? put_str_repr(r, b, v->u.s.p, v->u.s.n) : sb_put(r, b, v->u.s.p, v->u.s.n);
    case V_LIST: {
        const jlist *l = v->u.l;
        if (!sb_putc(r, b, l->tuple ? '(' : '[')) return false;
        for (size_t i = 0; i < l->n; i++) {
            if (i && !sb_puts(r, b, ", ")) return false;
            if (!put_val(r, b, &l->v[i], true, depth + 1)) return false;
        }
        if (l->tuple && l->n == 1 && !sb_putc(r, b, ',')) return false;
        return sb_putc(r, b, l->tuple ? ')' : ']');
    }
    case V_DICT: return put_dict_body(r, b, v->u.d, depth);
    case V_NS: return sb_puts(r, b, "<Namespace ") && put_dict_body(r, b, v->u.d, depth) && sb_putc(r, b, '>');
    case V_MACRO: return sb_printf(r, b, "<Macro '%s'>", v->u.m->name);
    case V_FUNC: return sb_puts(r, b, "<function>");
    case V_METHOD: return sb_printf(r, b, "<built-in method %s of %s object>", v->u.bm->name, type_name(&v->u.bm->recv));
    case V_LOOP: return sb_printf(r, b, "<LoopContext %zu/%zu>", v->u.loop->index0 + 1, v->u.loop->items->n);
    case V_GEN: return sb_puts(r, b, "<generator object>");
    }
    return true;
}

/* str(v) as a pool string value. */
static bool to_str(R *r, int line, const val *v, val *out) {
    if (v->t == V_STR) {
        *out = *v;
        return true;
    }
    if (v->t == V_UNDEF) {
        *out = v_str("", 0);
        return true;
    }
    sbuf b = {0};
    if (!put_val(r, &b, v, false, 0)) {
        sb_free(&b);
        return false;
    }
    return v_from_sbuf(r, line, &b, out);
}

/* ---- UTF-8 strings as code point sequences ------------------------------------------- */

/* Number of code points. */
static size_t cp_len(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

/* Byte offset of code point index ci (ci <= number of code points). */
static size_t cp_off(const char *s, size_t n, size_t ci) {
    size_t i = 0;
    while (ci > 0 && i < n) {
        i++;
        while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80) i++;
        ci--;
    }
    return i;
}

static uint32_t cp_at(const char *s, size_t n, size_t *i) {
    uint32_t cp;
    size_t k = utf8_decode(s + *i, n - *i, &cp);
    if (k == 0) {
        cp = (unsigned char)s[*i];
        k = 1;
    }
    *i += k;
    return cp;
}

/* Python's str.isspace for one code point. */
static bool py_space(uint32_t c) {
    return (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Case mapping of a whole string; mode 0 lower, 1 upper. */
static bool map_case(R *r, int line, const char *s, size_t n, int mode, val *out) {
    sbuf b = {0};
    for (size_t i = 0; i < n;) {
        uint32_t cp = cp_at(s, n, &i);
        if (cp == 0xDF && mode == 1) { /* Python: 'ß'.upper() == 'SS' */
            if (!sb_puts(r, &b, "SS")) goto fail;
            continue;
        }
        uint32_t m = (uint32_t)(mode ? utf8proc_toupper((utf8proc_int32_t)cp) : utf8proc_tolower((utf8proc_int32_t)cp));
        char enc[4];
        size_t k = utf8_encode(m, enc);
        if (!sb_put(r, &b, enc, k)) goto fail;
    }
    return v_from_sbuf(r, line, &b, out);
fail:
    sb_free(&b);
    return false;
}

static bool put_cp(R *r, sbuf *b, uint32_t cp) {
    char enc[4];
    size_t k = utf8_encode(cp, enc);
    return sb_put(r, b, enc, k);
}

static uint32_t cp_upper(uint32_t c) { return (uint32_t)utf8proc_toupper((utf8proc_int32_t)c); }
static uint32_t cp_lower(uint32_t c) { return (uint32_t)utf8proc_tolower((utf8proc_int32_t)c); }
static uint32_t cp_title(uint32_t c) { return (uint32_t)utf8proc_totitle((utf8proc_int32_t)c); }
static bool cp_cased_letter(uint32_t c) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT;
}
static bool cp_alpha(uint32_t c) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
}
static bool cp_digit(uint32_t c) { return utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_ND; }

/* The set of code points of a strip() argument: a bitmap for ASCII and a
 * sorted array for the rest, so stripping stays linear in the text. */
typedef struct cpset {
    uint64_t ascii[2];
    uint32_t *other, local[32];
    size_t n;
} cpset;

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void cpset_init(cpset *c, const char *s, size_t n) {
    memset(c->ascii, 0, sizeof c->ascii);
    c->n = 0;
    c->other = c->local;
    size_t cap = sizeof c->local / sizeof c->local[0];
    for (size_t i = 0; i < n;) {
        uint32_t cp = cp_at(s, n, &i);
        if (cp < 128) {
            c->ascii[cp >> 6] |= 1ull << (cp & 63);
            continue;
        }
        if (c->n == cap) {
            uint32_t *nb = malloc(cap * 2 * sizeof *nb);
            if (!nb) break; /* out of memory: strip fewer characters rather than fail */
            copy_bytes(nb, c->other, c->n * sizeof *nb);
            if (c->other != c->local) free(c->other);
            c->other = nb;
            cap *= 2;
        }
        c->other[c->n++] = cp;
    }
    qsort(c->other, c->n, sizeof *c->other, cmp_u32);
}

static bool cpset_has(const cpset *c, uint32_t cp) {
    if (cp < 128) return (c->ascii[cp >> 6] >> (cp & 63)) & 1;
    return bsearch(&cp, c->other, c->n, sizeof cp, cmp_u32) != NULL;
}

static void cpset_free(cpset *c) {
    if (c->other != c->local) free(c->other);
}

/* Python's str.strip family: which = 1 left, 2 right, 3 both; chars NULL = whitespace. */
static val str_strip(const val *s, const val *chars, int which) {
    const char *p = s->u.s.p;
    size_t a = 0, e = s->u.s.n;
    cpset set;
    if (chars) cpset_init(&set, chars->u.s.p, chars->u.s.n);
    while ((which & 1) && a < e) {
        size_t i = a;
        uint32_t c = cp_at(p, e, &i);
        if (!(chars ? cpset_has(&set, c) : py_space(c))) break;
        a = i;
    }
    while ((which & 2) && e > a) {
        size_t st = e - 1;
        while (st > a && ((unsigned char)p[st] & 0xC0) == 0x80) st--;
        size_t i = st;
        uint32_t c = cp_at(p, e, &i);
        if (!(chars ? cpset_has(&set, c) : py_space(c))) break;
        e = st;
    }
    if (chars) cpset_free(&set);
    return v_str(p + a, e - a);
}

static const char *memfind(const char *h, size_t hn, const char *nd, size_t nn) {
    if (nn == 0) return h;
    if (nn > hn) return NULL;
    return memmem(h, hn, nd, nn);
}

static bool str_replace(R *r, int line, const val *s, const val *old, const val *new_, int64_t count, val *out) {
    sbuf b = {0};
    const char *p = s->u.s.p;
    size_t n = s->u.s.n, i = 0;
    int64_t done = 0;
    if (old->u.s.n == 0) {
        /* Python inserts `new` before every code point and at the end */
        while (i <= n) {
            if (count >= 0 && done >= count) break;
            if (!sb_put(r, &b, new_->u.s.p, new_->u.s.n)) goto fail;
            done++;
            if (i == n) {
                i++;
                break;
            }
            size_t j = i;
            cp_at(p, n, &j);
            if (!sb_put(r, &b, p + i, j - i)) goto fail;
            i = j;
        }
        if (i <= n && !sb_put(r, &b, p + i, n - i)) goto fail;
        return v_from_sbuf(r, line, &b, out);
    }
    for (;;) {
        const char *f = (count >= 0 && done >= count) ? NULL : memfind(p + i, n - i, old->u.s.p, old->u.s.n);
        if (!f) break;
        size_t at = (size_t)(f - p);
        if (!sb_put(r, &b, p + i, at - i) || !sb_put(r, &b, new_->u.s.p, new_->u.s.n)) goto fail;
        i = at + old->u.s.n;
        done++;
    }
    if (!sb_put(r, &b, p + i, n - i)) goto fail;
    if (!b.p) {
        *out = *s;
        return true;
    }
    return v_from_sbuf(r, line, &b, out);
fail:
    sb_free(&b);
    return false;
}

/* Python str.split / rsplit. sep NULL: runs of whitespace. */
static bool str_split(R *r, int line, const val *s, const val *sep, int64_t maxsplit, bool from_right, val *out) {
    jlist *l = new_list(r, line, 0);
    if (!l) return false;
    const char *p = s->u.s.p;
    size_t n = s->u.s.n;
    if (sep) {
        if (sep->u.s.n == 0) return rfail(r, line, VLMC_ERR_FORMAT, "ValueError: empty separator"), false;
        size_t sn = sep->u.s.n;
        if (!from_right) {
            size_t i = 0;
            int64_t k = 0;
            for (;;) {
                const char *f = (maxsplit >= 0 && k >= maxsplit) ? NULL : memfind(p + i, n - i, sep->u.s.p, sn);
                if (!f) break;
                if (!list_push(r, line, l, v_str(p + i, (size_t)(f - p) - i))) return false;
                i = (size_t)(f - p) + sn;
                k++;
            }
            if (!list_push(r, line, l, v_str(p + i, n - i))) return false;
        } else {
            /* collect from the right, then reverse */
            size_t e = n;
            int64_t k = 0;
            while (!(maxsplit >= 0 && k >= maxsplit)) {
                size_t found = (size_t)-1;
                for (size_t j = e; j >= sn; j--)
                    if (!memcmp(p + j - sn, sep->u.s.p, sn)) {
                        found = j - sn;
                        break;
                    }
                if (found == (size_t)-1) break;
                if (!list_push(r, line, l, v_str(p + found + sn, e - found - sn))) return false;
                e = found;
                k++;
            }
            if (!list_push(r, line, l, v_str(p, e))) return false;
            for (size_t a = 0, b2 = l->n - 1; a < b2; a++, b2--) {
                val t = l->v[a];
                l->v[a] = l->v[b2];
                l->v[b2] = t;
            }
        }
    } else if (!from_right) {
        size_t i = 0;
        int64_t k = 0;
        for (;;) {
            while (i < n) { /* skip whitespace */
                size_t j = i;
                if (!py_space(cp_at(p, n, &j))) break;
                i = j;
            }
            if (i >= n) break;
            if (maxsplit >= 0 && k >= maxsplit) { /* the rest keeps its trailing whitespace */
                if (!list_push(r, line, l, v_str(p + i, n - i))) return false;
                break;
            }
            size_t st = i;
            while (i < n) {
                size_t j = i;
                if (py_space(cp_at(p, n, &j))) break;
                i = j;
            }
            if (!list_push(r, line, l, v_str(p + st, i - st))) return false;
            k++;
        }
    } else {
        /* rsplit on whitespace: split everything then merge the leftmost parts */
        val all;
        if (!str_split(r, line, s, NULL, -1, false, &all)) return false;
        jlist *a = all.u.l;
        if (maxsplit < 0 || (size_t)maxsplit >= a->n) {
            *out = all;
            return true;
        }
        /* the head keeps its leading whitespace, as Python's rsplit does */
        size_t keep = (size_t)maxsplit, first_n = a->n - keep;
        const char *en = a->v[first_n - 1].u.s.p + a->v[first_n - 1].u.s.n;
        if (!list_push(r, line, l, v_str(p, (size_t)(en - p)))) return false;
        for (size_t i = first_n; i < a->n; i++)
            if (!list_push(r, line, l, a->v[i])) return false;
    }
    *out = v_list(l);
    return true;
}

/* Lines as Python's str.splitlines (keepends=False). */
static bool str_splitlines(R *r, int line, const val *s, val *out) {
    jlist *l = new_list(r, line, 0);
    if (!l) return false;
    const char *p = s->u.s.p;
    size_t n = s->u.s.n, st = 0, i = 0;
    while (i < n) {
        size_t j = i;
        uint32_t c = cp_at(p, n, &j);
        bool brk = c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || c == 0x1c || c == 0x1d || c == 0x1e || c == 0x85 ||
                   c == 0x2028 || c == 0x2029;
        if (brk) {
            if (!list_push(r, line, l, v_str(p + st, i - st))) return false;
            if (c == '\r' && j < n && p[j] == '\n') j++;
            st = j;
        }
        i = j;
    }
    if (st < n && !list_push(r, line, l, v_str(p + st, n - st))) return false;
    *out = v_list(l);
    return true;
}

/* ---- JSON (transformers' tojson = json.dumps(ensure_ascii=False)) ----------------------- */

typedef struct json_opts {
    const char *indent; /* NULL: no indent */
    const char *item_sep, *key_sep;
    bool sort_keys;
} json_opts;

static bool json_str(R *r, sbuf *b, const char *s, size_t n) {
    if (!sb_putc(r, b, '"')) return false;
    size_t st = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        if (!sb_put(r, b, s + st, i - st)) return false;
        bool ok;
        switch (c) {
        case '"': ok = sb_puts(r, b, "\\\""); break;
        case '\\': ok = sb_puts(r, b, "\\\\"); break;
        case '\n': ok = sb_puts(r, b, "\\n"); break;
        case '\r': ok = sb_puts(r, b, "\\r"); break;
        case '\t': ok = sb_puts(r, b, "\\t"); break;
        case '\b': ok = sb_puts(r, b, "\\b"); break;
        case '\f': ok = sb_puts(r, b, "\\f"); break;
        default: ok = sb_printf(r, b, "\\u%04x", c);
        }
        if (!ok) return false;
        st = i + 1;
    }
    return sb_put(r, b, s + st, n - st) && sb_putc(r, b, '"');
}

static bool json_newline(R *r, sbuf *b, const json_opts *o, int level) {
    if (!sb_putc(r, b, '\n')) return false;
    for (int i = 0; i < level; i++)
        if (!sb_puts(r, b, o->indent)) return false;
    return true;
}

static bool json_val(R *r, int line, sbuf *b, const val *v, const json_opts *o, int level) {
    if (level > 200) return rfail(r, line, VLMC_ERR_LIMIT, "value nested too deeply for tojson"), false;
    char tmp[64];
    switch (v->t) {
    case V_NONE: return sb_puts(r, b, "null");
    case V_BOOL: return sb_puts(r, b, v->u.b ? "true" : "false");
    case V_INT: return sb_printf(r, b, "%lld", (long long)v->u.i);
    case V_FLOAT:
        if (isnan(v->u.f)) return sb_puts(r, b, "NaN");
        if (isinf(v->u.f)) return sb_puts(r, b, v->u.f < 0 ? "-Infinity" : "Infinity");
        float_repr(v->u.f, tmp, sizeof tmp);
        return sb_puts(r, b, tmp);
    case V_STR: return json_str(r, b, v->u.s.p, v->u.s.n);
    case V_LIST: {
        const jlist *l = v->u.l;
        if (l->n == 0) return sb_puts(r, b, "[]");
        if (!sb_putc(r, b, '[')) return false;
        for (size_t i = 0; i < l->n; i++) {
            if (i && !sb_puts(r, b, o->item_sep)) return false;
            if (o->indent && !json_newline(r, b, o, level + 1)) return false;
            if (!json_val(r, line, b, &l->v[i], o, level + 1)) return false;
        }
        if (o->indent && !json_newline(r, b, o, level)) return false;
        return sb_putc(r, b, ']');
    }
    case V_DICT: {
        const jdict *d = v->u.d;
        if (d->n == 0) return sb_puts(r, b, "{}");
        size_t *order = ralloc(r, line, d->n * sizeof *order);
        if (!order) return false;
        for (size_t i = 0; i < d->n; i++) order[i] = i;
        if (o->sort_keys) /* insertion sort: stable, dicts are small */
            for (size_t i = 1; i < d->n; i++)
                for (size_t j = i; j > 0; j--) {
                    int c;
                    if (!py_cmp(&d->k[order[j - 1]], &d->k[order[j]], &c))
                        return TYPE_ERR(r, line, "'<' not supported between dictionary keys"), false;
                    if (c <= 0) break;
                    size_t t = order[j];
                    order[j] = order[j - 1];
                    order[j - 1] = t;
                }
        if (!sb_putc(r, b, '{')) return false;
        for (size_t i = 0; i < d->n; i++) {
            const val *k = &d->k[order[i]];
            if (i && !sb_puts(r, b, o->item_sep)) return false;
            if (o->indent && !json_newline(r, b, o, level + 1)) return false;
            bool ok;
            switch (k->t) {
            case V_STR: ok = json_str(r, b, k->u.s.p, k->u.s.n); break;
            case V_NONE: ok = sb_puts(r, b, "\"null\""); break;
            case V_BOOL: ok = sb_puts(r, b, k->u.b ? "\"true\"" : "\"false\""); break;
            case V_INT: ok = sb_printf(r, b, "\"%lld\"", (long long)k->u.i); break;
            case V_FLOAT:
                float_repr(k->u.f, tmp, sizeof tmp);
                ok = sb_putc(r, b, '"') && sb_puts(r, b, tmp) && sb_putc(r, b, '"');
                break;
            default: return TYPE_ERR(r, line, "keys must be str, int, float, bool or None, not %s", type_name(k)), false;
            }
            if (!ok || !sb_puts(r, b, o->key_sep) || !json_val(r, line, b, &d->v[order[i]], o, level + 1)) return false;
        }
        if (o->indent && !json_newline(r, b, o, level)) return false;
        return sb_putc(r, b, '}');
    }
    default: return TYPE_ERR(r, line, "Object of type %s is not JSON serializable", type_name(v)), false;
    }
}

/* ---- forward declarations of the evaluator ------------------------------------------- */

typedef struct args {
    val *pos;
    size_t npos;
    const char **kwn;
    val *kwv;
    size_t nkw;
} args;

static int eval(R *r, const node *n, frame *f, val *out);
static int exec_body(R *r, const node *body, frame *f);
static int call_value(R *r, int line, const val *callee, const args *a, val *out);
static int apply_filter(R *r, int line, const char *name, const val *in, const args *a, frame *f, val *out);
static int apply_test(R *r, int line, const char *name, const val *in, const args *a, bool *res);

/* The argument at position idx or named `name`; false when not given. */
static bool getarg(const args *a, size_t idx, const char *name, val *out) {
    if (idx < a->npos) {
        *out = a->pos[idx];
        return true;
    }
    for (size_t i = 0; name && i < a->nkw; i++)
        if (!strcmp(a->kwn[i], name)) {
            *out = a->kwv[i];
            return true;
        }
    return false;
}

static int undefined_error(R *r, int line, const val *u) {
    return rfail(r, line, VLMC_ERR_FORMAT, "UndefinedError: %s", u->u.hint ? u->u.hint : "value is undefined");
}

/* ---- attribute and item access -------------------------------------------------------- */

static const char *const STR_METHODS[] = {"strip", "lstrip", "rstrip", "startswith", "endswith", "split", "rsplit",
                                          "upper", "lower", "title", "capitalize", "replace", "format", "find", "rfind",
                                          "index", "rindex", "count", "splitlines", "join", "isdigit", "isalpha",
                                          "isalnum", "isspace", "isupper", "islower", "isnumeric", "isdecimal",
                                          "center", "ljust", "rjust", "zfill", "removeprefix", "removesuffix",
                                          "swapcase", "casefold", "partition", "rpartition", "istitle", NULL};
static const char *const LIST_METHODS[] = {"index", "count", NULL};
static const char *const LIST_UNSAFE[] = {"append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear", NULL};
static const char *const DICT_METHODS[] = {"items", "keys", "values", "get", "copy", NULL};
static const char *const DICT_UNSAFE[] = {"pop", "popitem", "setdefault", "update", "clear", NULL};

static bool in_names(const char *const *names, const char *s) {
    for (; *names; names++)
        if (!strcmp(*names, s)) return true;
    return false;
}

static int make_method(R *r, int line, const val *recv, const char *name, val *out) {
    method *m = ralloc(r, line, sizeof *m);
    if (!m) return CTL_ERR;
    m->recv = *recv;
    m->name = name;
    out->t = V_METHOD;
    out->u.bm = m;
    return CTL_OK;
}

static int loop_attr(R *r, int line, const val *obj, const char *name, val *out) {
    const loopctx *lc = obj->u.loop;
    size_t i = lc->index0, n = lc->items->n;
    if (!strcmp(name, "index")) *out = v_int((int64_t)i + 1);
    else if (!strcmp(name, "index0")) *out = v_int((int64_t)i);
    else if (!strcmp(name, "revindex")) *out = v_int((int64_t)(n - i));
    else if (!strcmp(name, "revindex0")) *out = v_int((int64_t)(n - i - 1));
    else if (!strcmp(name, "first")) *out = v_bool(i == 0);
    else if (!strcmp(name, "last")) *out = v_bool(i + 1 == n);
    else if (!strcmp(name, "length")) *out = v_int((int64_t)n);
    else if (!strcmp(name, "depth")) *out = v_int(1);
    else if (!strcmp(name, "depth0")) *out = v_int(0);
    else if (!strcmp(name, "previtem")) *out = i > 0 ? lc->items->v[i - 1] : v_undef(hintf(r, "there is no previous item"));
    else if (!strcmp(name, "nextitem")) *out = i + 1 < n ? lc->items->v[i + 1] : v_undef(hintf(r, "there is no next item"));
    else if (!strcmp(name, "cycle")) return make_method(r, line, obj, "cycle", out);
    else *out = v_undef(hintf(r, "'LoopContext' object has no attribute '%s'", name));
    return CTL_OK;
}

/* Jinja's `obj.name`: Python attribute first, then item. */
static int get_attr(R *r, int line, const val *obj, const char *name, val *out) {
    switch (obj->t) {
    case V_UNDEF: return undefined_error(r, line, obj);
    case V_DICT:
        if (in_names(DICT_METHODS, name)) return make_method(r, line, obj, name, out);
        if (in_names(DICT_UNSAFE, name)) {
            *out = v_undef(hintf(r, "SecurityError: access to attribute '%s' of 'dict' object is unsafe", name));
            return CTL_OK;
        }
        {
            val *v = dict_find_str(obj->u.d, name, strlen(name));
            *out = v ? *v : v_undef(hintf(r, "'dict object' has no attribute '%s'", name));
        }
        return CTL_OK;
    case V_NS: {
        val *v = dict_find_str(obj->u.d, name, strlen(name));
        *out = v ? *v : v_undef(hintf(r, "'Namespace' object has no attribute '%s'", name));
        return CTL_OK;
    }
    case V_STR:
        if (in_names(STR_METHODS, name)) return make_method(r, line, obj, name, out);
        *out = v_undef(hintf(r, "'str object' has no attribute '%s'", name));
        return CTL_OK;
    case V_LIST:
        if (obj->u.l->group && (!strcmp(name, "grouper") || !strcmp(name, "list"))) {
            *out = obj->u.l->v[name[0] == 'l'];
            return CTL_OK;
        }
        if (in_names(LIST_METHODS, name)) return make_method(r, line, obj, name, out);
        if (in_names(LIST_UNSAFE, name) && !obj->u.l->tuple) {
            *out = v_undef(hintf(r, "SecurityError: access to attribute '%s' of 'list' object is unsafe", name));
            return CTL_OK;
        }
        *out = v_undef(hintf(r, "'%s object' has no attribute '%s'", type_name(obj), name));
        return CTL_OK;
    case V_LOOP: return loop_attr(r, line, obj, name, out);
    case V_NONE: *out = v_undef(hintf(r, "'None' has no attribute '%s'", name)); return CTL_OK;
    default: *out = v_undef(hintf(r, "'%s object' has no attribute '%s'", type_name(obj), name)); return CTL_OK;
    }
}

/* Python slice bounds over a sequence of length n. */
static int slice_bounds(R *r, int line, const val *sv[3], int64_t n, int64_t *start, int64_t *stop, int64_t *stepv) {
    int64_t st = 1;
    for (int i = 0; i < 3; i++)
        if (sv[i] && sv[i]->t != V_NONE && !(sv[i]->t == V_INT || sv[i]->t == V_BOOL))
            return TYPE_ERR(r, line, "slice indices must be integers or None");
    if (sv[2] && sv[2]->t != V_NONE) st = num_i(sv[2]);
    if (st == 0) return rfail(r, line, VLMC_ERR_FORMAT, "ValueError: slice step cannot be zero");
    int64_t a, b;
    if (st > 0) {
        a = (sv[0] && sv[0]->t != V_NONE) ? num_i(sv[0]) : 0;
        b = (sv[1] && sv[1]->t != V_NONE) ? num_i(sv[1]) : n;
        if (a < 0) a = a + n < 0 ? 0 : a + n;
        if (a > n) a = n;
        if (b < 0) b = b + n < 0 ? 0 : b + n;
        if (b > n) b = n;
    } else {
        a = (sv[0] && sv[0]->t != V_NONE) ? num_i(sv[0]) : n - 1;
        b = (sv[1] && sv[1]->t != V_NONE) ? num_i(sv[1]) : -1 - n;
        if (a < 0) a = a + n < 0 ? -1 : a + n;
        if (a >= n) a = n - 1;
        if (b < 0) b = b + n < 0 ? -1 : b + n;
        if (b >= n) b = n - 1;
    }
    *start = a;
    *stop = b;
    *stepv = st;
    return CTL_OK;
}

static int do_slice(R *r, int line, const val *obj, const val *sv[3], val *out) {
    if (obj->t == V_UNDEF) return undefined_error(r, line, obj);
    if (obj->t == V_LIST) {
        const jlist *l = obj->u.l;
        int64_t a, b, st;
        if (slice_bounds(r, line, sv, (int64_t)l->n, &a, &b, &st)) return CTL_ERR;
        jlist *nl = new_list(r, line, 0);
        if (!nl) return CTL_ERR;
        nl->tuple = l->tuple;
        for (int64_t i = a; st > 0 ? i < b : i > b; i += st)
            if (!list_push(r, line, nl, l->v[i])) return CTL_ERR;
        *out = v_list(nl);
        return CTL_OK;
    }
    if (obj->t == V_STR) {
        const char *p = obj->u.s.p;
        size_t n = obj->u.s.n;
        size_t ncp = cp_len(p, n);
        int64_t a, b, st;
        if (slice_bounds(r, line, sv, (int64_t)ncp, &a, &b, &st)) return CTL_ERR;
        if (st == 1) {
            if (b <= a) {
                *out = v_str("", 0);
                return CTL_OK;
            }
            size_t oa = cp_off(p, n, (size_t)a), ob = oa + cp_off(p + oa, n - oa, (size_t)(b - a));
            *out = v_str(p + oa, ob - oa);
            return CTL_OK;
        }
        /* general step: index every code point */
        size_t *offs = ralloc(r, line, (ncp + 1) * sizeof *offs);
        if (!offs) return CTL_ERR;
        for (size_t i = 0, k = 0; k <= ncp; k++) {
            offs[k] = i;
            if (i < n) cp_at(p, n, &i);
        }
        sbuf buf = {0};
        for (int64_t i = a; st > 0 ? i < b : i > b; i += st)
            if (!sb_put(r, &buf, p + offs[i], offs[i + 1] - offs[i])) {
                sb_free(&buf);
                return CTL_ERR;
            }
        return v_from_sbuf(r, line, &buf, out) ? CTL_OK : CTL_ERR;
    }
    *out = v_undef(hintf(r, "'%s' object is not subscriptable", type_name(obj)));
    return CTL_OK;
}

/* Jinja's `obj[key]`: item first, then attribute. */
static int get_item(R *r, int line, const val *obj, const val *key, val *out) {
    switch (obj->t) {
    case V_UNDEF: return undefined_error(r, line, obj);
    case V_DICT: {
        val *v = is_hashable(key) ? dict_find(obj->u.d, key) : NULL;
        if (v) {
            *out = *v;
            return CTL_OK;
        }
        if (key->t == V_STR && in_names(DICT_METHODS, key->u.s.p) && strlen(key->u.s.p) == key->u.s.n)
            return make_method(r, line, obj, key->u.s.p, out);
        val ks;
        if (!to_str(r, line, key, &ks)) return CTL_ERR;
        *out = v_undef(hintf(r, "'dict object' has no attribute '%.*s'", (int)(ks.u.s.n > 100 ? 100 : ks.u.s.n), ks.u.s.p));
        return CTL_OK;
    }
    case V_LIST:
    case V_STR:
        if (key->t == V_INT || key->t == V_BOOL) {
            int64_t i = num_i(key);
            int64_t n = obj->t == V_LIST ? (int64_t)obj->u.l->n : (int64_t)cp_len(obj->u.s.p, obj->u.s.n);
            if (i < 0) i += n;
            if (i < 0 || i >= n) {
                *out = v_undef(hintf(r, "%s index out of range", type_name(obj)));
                return CTL_OK;
            }
            if (obj->t == V_LIST) {
                *out = obj->u.l->v[i];
            } else {
                size_t o = cp_off(obj->u.s.p, obj->u.s.n, (size_t)i), e = o;
                cp_at(obj->u.s.p, obj->u.s.n, &e);
                *out = v_str(obj->u.s.p + o, e - o);
            }
            return CTL_OK;
        }
        if (key->t == V_STR && strlen(key->u.s.p) == key->u.s.n) return get_attr(r, line, obj, key->u.s.p, out);
        *out = v_undef(hintf(r, "%s indices must be integers", type_name(obj)));
        return CTL_OK;
    case V_NS:
    case V_LOOP:
        if (key->t == V_STR && strlen(key->u.s.p) == key->u.s.n) return get_attr(r, line, obj, key->u.s.p, out);
        *out = v_undef(NULL);
        return CTL_OK;
    default:
        if (key->t == V_STR && strlen(key->u.s.p) == key->u.s.n) return get_attr(r, line, obj, key->u.s.p, out);
        *out = v_undef(hintf(r, "'%s' object is not subscriptable", type_name(obj)));
        return CTL_OK;
    }
}

/* Iterable -> list (dict: keys; str: code points; undefined: empty). */
static int to_list(R *r, int line, const val *v, jlist **out) {
    switch (v->t) {
    case V_LIST: *out = v->u.l; return CTL_OK;
    case V_GEN:
        if (v->u.l->deferred) return TYPE_ERR(r, line, "%s", v->u.l->deferred);
        if (v->u.l->consumed) {
            *out = new_list(r, line, 0);
            return *out ? CTL_OK : CTL_ERR;
        }
        v->u.l->consumed = true;
        *out = v->u.l;
        return CTL_OK;
    case V_UNDEF: *out = new_list(r, line, 0); return *out ? CTL_OK : CTL_ERR;
    case V_DICT: {
        jlist *l = new_list(r, line, v->u.d->n);
        if (!l) return CTL_ERR;
        for (size_t i = 0; i < v->u.d->n; i++) l->v[l->n++] = v->u.d->k[i];
        *out = l;
        return CTL_OK;
    }
    case V_STR: {
        jlist *l = new_list(r, line, cp_len(v->u.s.p, v->u.s.n));
        if (!l) return CTL_ERR;
        for (size_t i = 0; i < v->u.s.n;) {
            size_t st = i;
            cp_at(v->u.s.p, v->u.s.n, &i);
            l->v[l->n++] = v_str(v->u.s.p + st, i - st);
        }
        *out = l;
        return CTL_OK;
    }
    default: return TYPE_ERR(r, line, "'%s' object is not iterable", type_name(v));
    }
}

/* ---- arithmetic ------------------------------------------------------------------------ */

static int percent_format(R *r, int line, const val *fmt, const val *items, size_t nitems, val *out);

static int binop_eval(R *r, int line, int op, const val *a, const val *b, val *out) {
    static const char *const opname[] = {"+", "-", "*", "/", "//", "%", "**"};
    if (a->t == V_UNDEF) return undefined_error(r, line, a);
    if (b->t == V_UNDEF) return undefined_error(r, line, b);
    if (is_num(a) && is_num(b)) {
        bool fl = a->t == V_FLOAT || b->t == V_FLOAT;
        if (!fl) {
            int64_t x = num_i(a), y = num_i(b), z;
            switch (op) {
            case OP_ADD:
                if (__builtin_add_overflow(x, y, &z)) goto overflow;
                *out = v_int(z);
                return CTL_OK;
            case OP_SUB:
                if (__builtin_sub_overflow(x, y, &z)) goto overflow;
                *out = v_int(z);
                return CTL_OK;
            case OP_MUL:
                if (__builtin_mul_overflow(x, y, &z)) goto overflow;
                *out = v_int(z);
                return CTL_OK;
            case OP_DIV:
                if (y == 0) return rfail(r, line, VLMC_ERR_FORMAT, "ZeroDivisionError: division by zero");
                *out = v_float((double)x / (double)y);
                return CTL_OK;
            case OP_FLOORDIV:
            case OP_MOD: {
                if (y == 0) return rfail(r, line, VLMC_ERR_FORMAT, "ZeroDivisionError: integer division or modulo by zero");
                if (x == INT64_MIN && y == -1) goto overflow;
                int64_t q = x / y, m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) {
                    q--;
                    m += y;
                }
                *out = v_int(op == OP_MOD ? m : q);
                return CTL_OK;
            }
            case OP_POW:
                if (y < 0) {
                    *out = v_float(pow((double)x, (double)y));
                    return CTL_OK;
                }
                z = 1;
                for (int64_t i = 0; i < y; i++) {
                    if (__builtin_mul_overflow(z, x, &z)) goto overflow;
                    if (z == 0 || z == 1) break;
                    if (z == -1) {
                        z = ((y - i - 1) % 2 == 0) ? -1 : 1;
                        break;
                    }
                }
                *out = v_int(z);
                return CTL_OK;
            }
        }
        double x = num_f(a), y = num_f(b);
        switch (op) {
        case OP_ADD: *out = v_float(x + y); return CTL_OK;
        case OP_SUB: *out = v_float(x - y); return CTL_OK;
        case OP_MUL: *out = v_float(x * y); return CTL_OK;
        case OP_DIV:
            if (y == 0) return rfail(r, line, VLMC_ERR_FORMAT, "ZeroDivisionError: float division by zero");
            *out = v_float(x / y);
            return CTL_OK;
        case OP_FLOORDIV:
        case OP_MOD: {
            if (y == 0) return rfail(r, line, VLMC_ERR_FORMAT, "ZeroDivisionError: float modulo");
            double m = fmod(x, y);
            if (m != 0 && ((m < 0) != (y < 0))) m += y;
            *out = v_float(op == OP_MOD ? m : floor(x / y));
            return CTL_OK;
        }
        case OP_POW: *out = v_float(pow(x, y)); return CTL_OK;
        }
    }
    if (op == OP_MOD && a->t == V_STR) { /* 'fmt' % args: a tuple spreads, anything else is one argument */
        if (b->t == V_LIST && b->u.l->tuple) return percent_format(r, line, a, b->u.l->v, b->u.l->n, out);
        if (b->t == V_DICT) return rfail(r, line, VLMC_ERR_UNSUPPORTED, "'%%' formatting with a mapping is not supported");
        return percent_format(r, line, a, b, 1, out);
    }
    if (op == OP_ADD && a->t == V_STR && b->t == V_STR) {
        size_t n = a->u.s.n + b->u.s.n;
        char *p = ralloc(r, line, n + 1);
        if (!p) return CTL_ERR;
        copy_bytes(p, a->u.s.p, a->u.s.n);
        copy_bytes(p + a->u.s.n, b->u.s.p, b->u.s.n);
        *out = v_str(p, n);
        return CTL_OK;
    }
    if (op == OP_ADD && a->t == V_LIST && b->t == V_LIST && a->u.l->tuple == b->u.l->tuple) {
        jlist *l = new_list(r, line, a->u.l->n + b->u.l->n);
        if (!l) return CTL_ERR;
        l->tuple = a->u.l->tuple;
        copy_bytes(l->v, a->u.l->v, a->u.l->n * sizeof(val));
        copy_bytes(l->v + a->u.l->n, b->u.l->v, b->u.l->n * sizeof(val));
        l->n = a->u.l->n + b->u.l->n;
        *out = v_list(l);
        return CTL_OK;
    }
    if (op == OP_ADD && (a->t == V_STR || a->t == V_LIST))
        return TYPE_ERR(r, line, "can only concatenate %s (not \"%s\") to %s", type_name(a), type_name(b), type_name(a));
    if (op == OP_MUL && ((a->t == V_STR || a->t == V_LIST) && (b->t == V_INT || b->t == V_BOOL))) {
        int64_t k = num_i(b);
        if (k < 0) k = 0;
        if (a->t == V_STR) {
            if (a->u.s.n && (uint64_t)k > r->max_output / a->u.s.n)
                return rfail(r, line, VLMC_ERR_LIMIT, "string repetition too large");
            size_t n = a->u.s.n * (size_t)k;
            char *p = ralloc(r, line, n + 1);
            if (!p) return CTL_ERR;
            for (int64_t i = 0; i < k; i++) copy_bytes(p + (size_t)i * a->u.s.n, a->u.s.p, a->u.s.n);
            *out = v_str(p, n);
        } else {
            if (a->u.l->n && (uint64_t)k > 1000000 / a->u.l->n) return rfail(r, line, VLMC_ERR_LIMIT, "list repetition too large");
            jlist *l = new_list(r, line, a->u.l->n * (size_t)k);
            if (!l) return CTL_ERR;
            l->tuple = a->u.l->tuple;
            for (int64_t i = 0; i < k; i++)
                for (size_t j = 0; j < a->u.l->n; j++) l->v[l->n++] = a->u.l->v[j];
            *out = v_list(l);
        }
        return CTL_OK;
    }
    if (op == OP_MUL && ((b->t == V_STR || b->t == V_LIST) && (a->t == V_INT || a->t == V_BOOL)))
        return binop_eval(r, line, op, b, a, out);
    return TYPE_ERR(r, line, "unsupported operand type(s) for %s: '%s' and '%s'", opname[op], type_name(a), type_name(b));
overflow:
    return rfail(r, line, VLMC_ERR_UNSUPPORTED, "integer result of %s is out of the 64-bit range", opname[op]);
}

static int contains(R *r, int line, const val *hay, const val *needle, bool *res) {
    switch (hay->t) {
    case V_STR:
        if (needle->t != V_STR) return TYPE_ERR(r, line, "'in <string>' requires string as left operand, not %s", type_name(needle));
        *res = memfind(hay->u.s.p, hay->u.s.n, needle->u.s.p, needle->u.s.n) != NULL;
        return CTL_OK;
    case V_LIST:
        *res = false;
        if (!step(r, line, hay->u.l->n / 8 + 1)) return CTL_ERR;
        for (size_t i = 0; i < hay->u.l->n; i++)
            if (py_eq(&hay->u.l->v[i], needle)) {
                *res = true;
                break;
            }
        return CTL_OK;
    case V_DICT:
        if (!is_hashable(needle)) return TYPE_ERR(r, line, "unhashable type: '%s'", type_name(needle));
        if (!step(r, line, hay->u.d->n / 8 + 1)) return CTL_ERR;
        *res = dict_find(hay->u.d, needle) != NULL;
        return CTL_OK;
    case V_UNDEF: *res = false; return CTL_OK;
    case V_GEN: {
        jlist *l;
        if (to_list(r, line, hay, &l)) return CTL_ERR;
        val lv = v_list(l);
        return contains(r, line, &lv, needle, res);
    }
    default: return TYPE_ERR(r, line, "argument of type '%s' is not iterable", type_name(hay));
    }
}

static int compare(R *r, int line, int op, const val *a, const val *b, bool *res) {
    static const char *const names[] = {"==", "!=", "<", "<=", ">", ">="};
    int c;
    switch (op) {
    case CMP_EQ: *res = py_eq(a, b); return CTL_OK;
    case CMP_NE: *res = !py_eq(a, b); return CTL_OK;
    case CMP_IN: return contains(r, line, b, a, res);
    case CMP_NOTIN:
        if (contains(r, line, b, a, res)) return CTL_ERR;
        *res = !*res;
        return CTL_OK;
    default:
        if (a->t == V_UNDEF) return undefined_error(r, line, a);
        if (b->t == V_UNDEF) return undefined_error(r, line, b);
        if (!py_cmp(a, b, &c))
            return TYPE_ERR(r, line, "'%s' not supported between instances of '%s' and '%s'", names[op], type_name(a), type_name(b));
        *res = op == CMP_LT ? c < 0 : op == CMP_LE ? c <= 0 : op == CMP_GT ? c > 0 : c >= 0;
        return CTL_OK;
    }
}

/* ---- str.format and the format filter (the common subset) ------------------------------- */

/* Python's format(value, spec) for the format-spec mini-language
 * [[fill]align][sign][#][0][width][,|_][.precision][type] on str, int and float. */
static bool format_spec(R *r, int line, const val *v, const char *spec, size_t sl, sbuf *b) {
    uint32_t fill = ' ';
    char align = 0, sign = '-', type = 0, group = 0;
    bool alt = false;
    long width = -1, prec = -1;
    size_t i = 0;
    /* fill and align */
    {
        size_t j = 0;
        uint32_t c0 = sl ? cp_at(spec, sl, &j) : 0;
        if (j < sl && strchr("<>=^", spec[j])) {
            fill = c0;
            align = spec[j];
            i = j + 1;
        } else if (sl && strchr("<>=^", spec[0])) {
            align = spec[0];
            i = 1;
        }
    }
    if (i < sl && strchr("+- ", spec[i])) sign = spec[i++];
    if (i < sl && spec[i] == '#') alt = true, i++;
    if (i < sl && spec[i] == '0') {
        if (!align) fill = '0', align = '=';
        i++;
    }
    while (i < sl && spec[i] >= '0' && spec[i] <= '9') width = (width < 0 ? 0 : width) * 10 + (spec[i++] - '0');
    if (i < sl && (spec[i] == ',' || spec[i] == '_')) group = spec[i++];
    if (i < sl && spec[i] == '.') {
        i++;
        prec = 0;
        while (i < sl && spec[i] >= '0' && spec[i] <= '9') prec = prec * 10 + (spec[i++] - '0');
    }
    if (i < sl) type = spec[i++];
    if (i != sl || width > 100000 || prec > 600) {
        rfail(r, line, VLMC_ERR_FORMAT, "ValueError: invalid format specifier '%.*s'", (int)(sl > 50 ? 50 : sl), spec);
        return false;
    }
    char body[2048];
    const char *text = body;
    size_t tl = 0;
    if (is_num(v) && type == 's') {
        rfail(r, line, VLMC_ERR_FORMAT, "ValueError: Unknown format code 's' for object of type '%s'", type_name(v));
        return false;
    }
    bool numeric = is_num(v);
    char sgn = 0;
    sbuf tmp = {0};
    if (!numeric) {
        if (type && type != 's') {
            rfail(r, line, VLMC_ERR_FORMAT, "ValueError: unknown format code '%c' for object of type '%s'", type, type_name(v));
            return false;
        }
        if (!put_val(r, &tmp, v, false, 0)) return false;
        text = tmp.p ? tmp.p : "";
        tl = tmp.n;
        if (prec >= 0) tl = cp_off(text, tl, (size_t)prec);
    } else {
        bool as_int = v->t != V_FLOAT && (!type || strchr("dxXobcn", type));
        if (as_int) {
            int64_t x = num_i(v);
            uint64_t ux = x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
            if (x < 0) sgn = '-';
            const char *fmt = type == 'x' ? "%llx" : type == 'X' ? "%llX" : type == 'o' ? "%llo" : "%llu";
            char digits[80];
            if (type == 'b') {
                int k = 0;
                char rev[70];
                do rev[k++] = (char)('0' + (ux & 1)); while ((ux >>= 1) && k < 66);
                for (int q = 0; q < k; q++) digits[q] = rev[k - 1 - q];
                digits[k] = '\0';
            } else if (type == 'c') {
                size_t k = utf8_encode((uint32_t)x, digits);
                digits[k] = '\0';
                sgn = 0;
            } else {
                snprintf(digits, sizeof digits, fmt, (unsigned long long)ux);
            }
            size_t o = 0;
            if (alt && type && strchr("xXob", type)) body[o++] = '0', body[o++] = type;
            size_t nd = strlen(digits);
            for (size_t q = 0; q < nd; q++) {
                body[o++] = digits[q];
                size_t left = nd - q - 1;
                if (group && left && left % 3 == 0 && type != 'c') body[o++] = group;
            }
            tl = o;
        } else {
            double x = num_f(v);
            if (signbit(x) && !isnan(x)) sgn = '-', x = -x;
            char t = type ? type : 'g';
            if (!type && prec < 0) {
                float_repr(x, body, sizeof body);
            } else if (t == '%') {
                snprintf(body, sizeof body, "%.*f%%", (int)(prec < 0 ? 6 : prec), x * 100);
            } else if (strchr("fFeEgG", t)) {
                char f[16];
                snprintf(f, sizeof f, "%%%s.*%c", alt ? "#" : "", t);
                snprintf(body, sizeof body, f, (int)(prec < 0 ? 6 : prec), x);
                if (!type && !strpbrk(body, ".einf")) strcat(body, ".0"); /* Python's no-type float format */
            } else {
                rfail(r, line, VLMC_ERR_FORMAT, "ValueError: unknown format code '%c' for object of type 'float'", type);
                return false;
            }
            if (group) { /* group the integer digits */
                char g[sizeof body];
                size_t intlen = strspn(body, "0123456789"), o = 0;
                for (size_t q = 0; q < intlen && o + 2 < sizeof g; q++) {
                    g[o++] = body[q];
                    size_t left = intlen - q - 1;
                    if (left && left % 3 == 0) g[o++] = group;
                }
                size_t rest = strlen(body + intlen);
                if (o + rest >= sizeof g) rest = sizeof g - o - 1;
                memcpy(g + o, body + intlen, rest);
                g[o + rest] = '\0';
                memcpy(body, g, o + rest + 1);
            }
            tl = strlen(body);
        }
        if (!sgn && (sign == '+' || sign == ' ')) sgn = sign;
    }
    size_t len = cp_len(text, tl) + (sgn ? 1 : 0);
    size_t pad = width > 0 && (size_t)width > len ? (size_t)width - len : 0;
    if (!align) align = numeric ? '>' : '<';
    size_t left = align == '>' ? pad : align == '^' ? pad / 2 : 0, right = pad - left;
    if (align == '=') left = 0, right = 0;
    bool ok = true;
    for (size_t q = 0; ok && q < left; q++) ok = put_cp(r, b, fill);
    if (ok && sgn) ok = sb_putc(r, b, sgn);
    for (size_t q = 0; ok && align == '=' && q < pad; q++) ok = put_cp(r, b, fill);
    ok = ok && sb_put(r, b, text, tl);
    for (size_t q = 0; ok && q < right; q++) ok = put_cp(r, b, fill);
    sb_free(&tmp);
    return ok;
}

/* Python str.format: {} {0} {name} with optional !r/!s conversion and :spec. */
static int str_format(R *r, int line, const val *fmt, const args *a, val *out) {
    sbuf b = {0};
    const char *p = fmt->u.s.p;
    size_t n = fmt->u.s.n, auto_idx = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '{' && i + 1 < n && p[i + 1] == '{') {
            if (!sb_putc(r, &b, '{')) goto fail;
            i++;
            continue;
        }
        if (c == '}' && i + 1 < n && p[i + 1] == '}') {
            if (!sb_putc(r, &b, '}')) goto fail;
            i++;
            continue;
        }
        if (c == '}') {
            sb_free(&b);
            return rfail(r, line, VLMC_ERR_FORMAT, "ValueError: single '}' encountered in format string");
        }
        if (c != '{') {
            if (!sb_putc(r, &b, c)) goto fail;
            continue;
        }
        size_t e = i + 1;
        while (e < n && p[e] != '}') e++;
        if (e >= n) {
            sb_free(&b);
            return rfail(r, line, VLMC_ERR_FORMAT, "ValueError: single '{' encountered in format string");
        }
        const char *field = p + i + 1;
        size_t fl = e - i - 1, name_len = 0;
        while (name_len < fl && field[name_len] != '!' && field[name_len] != ':') name_len++;
        char conv = 0;
        const char *spec = "";
        size_t sl = 0;
        if (name_len < fl && field[name_len] == '!') {
            conv = name_len + 1 < fl ? field[name_len + 1] : 0;
            if ((conv != 'r' && conv != 's') || (name_len + 2 < fl && field[name_len + 2] != ':')) {
                sb_free(&b);
                return rfail(r, line, VLMC_ERR_FORMAT, "ValueError: invalid conversion in format string");
            }
            if (name_len + 2 < fl) spec = field + name_len + 3, sl = fl - name_len - 3;
        } else if (name_len < fl) {
            spec = field + name_len + 1;
            sl = fl - name_len - 1;
        }
        if (memchr(field, '.', name_len) || memchr(field, '[', name_len)) {
            sb_free(&b);
            return rfail(r, line, VLMC_ERR_UNSUPPORTED, "str.format: attribute and index fields are not supported");
        }
        val v;
        bool found = false;
        if (name_len == 0) {
            found = auto_idx < a->npos;
            if (found) v = a->pos[auto_idx++];
        } else if (field[0] >= '0' && field[0] <= '9') {
            size_t k = (size_t)strtoul(field, NULL, 10);
            found = k < a->npos;
            if (found) v = a->pos[k];
        } else {
            for (size_t k = 0; k < a->nkw; k++)
                if (strlen(a->kwn[k]) == name_len && !memcmp(a->kwn[k], field, name_len)) {
                    v = a->kwv[k];
                    found = true;
                }
        }
        if (!found) {
            sb_free(&b);
            return rfail(r, line, VLMC_ERR_FORMAT, "IndexError: replacement field {%.*s} has no argument", (int)(fl > 50 ? 50 : fl), field);
        }
        if (conv) {
            sbuf t = {0};
            if (!put_val(r, &t, &v, conv == 'r', 0) || !v_from_sbuf(r, line, &t, &v)) goto fail;
        }
        if (!format_spec(r, line, &v, spec, sl, &b)) goto fail;
        i = e;
    }
    return v_from_sbuf(r, line, &b, out) ? CTL_OK : CTL_ERR;
fail:
    sb_free(&b);
    return CTL_ERR;
}

/* printf-style `fmt|format(args)` / `fmt % args`: %s %r %d %i %f %x %% with flags/width/precision. */
static int percent_format(R *r, int line, const val *fmt, const val *items, size_t nitems, val *out) {
    sbuf b = {0};
    const char *p = fmt->u.s.p;
    size_t n = fmt->u.s.n, k = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '%') {
            if (!sb_putc(r, &b, p[i])) goto fail;
            continue;
        }
        char spec[32];
        size_t sl = 0;
        spec[sl++] = '%';
        i++;
        while (i < n && strchr("-+ #0123456789.", p[i]) && sl < sizeof spec - 4) spec[sl++] = p[i++];
        if (i >= n) {
            sb_free(&b);
            return rfail(r, line, VLMC_ERR_FORMAT, "ValueError: incomplete format");
        }
        char conv = p[i];
        if (conv == '%') {
            if (!sb_putc(r, &b, '%')) goto fail;
            continue;
        }
        if (k >= nitems) {
            sb_free(&b);
            return TYPE_ERR(r, line, "not enough arguments for format string");
        }
        const val *v = &items[k++];
        if (conv == 's' || conv == 'r') {
            sbuf t = {0};
            if (!put_val(r, &t, v, conv == 'r', 0)) {
                sb_free(&t);
                goto fail;
            }
            spec[sl++] = 's';
            spec[sl] = '\0';
            char *tmp = NULL;
            int m = asprintf(&tmp, spec, t.p ? t.p : "");
            sb_free(&t);
            if (m < 0) goto fail;
            bool ok = sb_put(r, &b, tmp, (size_t)m);
            free(tmp);
            if (!ok) goto fail;
        } else if (strchr("dioxXeEfFgG", conv)) {
            if (!is_num(v)) {
                sb_free(&b);
                return TYPE_ERR(r, line, "%%%c format: a real number is required, not %s", conv, type_name(v));
            }
            char tmp[400];
            if (strchr("dioxX", conv)) {
                spec[sl++] = 'l';
                spec[sl++] = 'l';
                spec[sl++] = conv == 'i' ? 'd' : conv;
                spec[sl] = '\0';
                snprintf(tmp, sizeof tmp, spec, (long long)(v->t == V_FLOAT ? (int64_t)v->u.f : num_i(v)));
            } else {
                spec[sl++] = conv;
                spec[sl] = '\0';
                snprintf(tmp, sizeof tmp, spec, num_f(v));
            }
            if (!sb_puts(r, &b, tmp)) goto fail;
        } else {
            sb_free(&b);
            return rfail(r, line, VLMC_ERR_UNSUPPORTED, "format: unsupported conversion '%%%c'", conv);
        }
    }
    if (k < nitems) {
        sb_free(&b);
        return TYPE_ERR(r, line, "not all arguments converted during string formatting");
    }
    return v_from_sbuf(r, line, &b, out) ? CTL_OK : CTL_ERR;
fail:
    sb_free(&b);
    return CTL_ERR;
}

/* ---- methods of str, list, dict and loop ------------------------------------------------ */

static bool want_str(R *r, int line, const val *v, const char *what) {
    if (v->t == V_STR) return true;
    TYPE_ERR(r, line, "%s must be str, not %s", what, type_name(v));
    return false;
}

static int str_affix(R *r, int line, const val *s, const val *pre, bool end, bool *res) {
    if (pre->t == V_LIST && pre->u.l->tuple) {
        *res = false;
        for (size_t i = 0; i < pre->u.l->n; i++) {
            bool one;
            if (str_affix(r, line, s, &pre->u.l->v[i], end, &one)) return CTL_ERR;
            if (one) *res = true;
        }
        return CTL_OK;
    }
    if (pre->t != V_STR) return TYPE_ERR(r, line, "%swith first arg must be str or a tuple of str, not %s", end ? "ends" : "starts", type_name(pre));
    size_t k = pre->u.s.n;
    *res = k <= s->u.s.n && !memcmp(end ? s->u.s.p + s->u.s.n - k : s->u.s.p, pre->u.s.p, k);
    return CTL_OK;
}

static bool str_title_py(R *r, int line, const val *s, val *out) {
    sbuf b = {0};
    bool prev_cased = false;
    for (size_t i = 0; i < s->u.s.n;) {
        uint32_t c = cp_at(s->u.s.p, s->u.s.n, &i), m = c;
        if (cp_cased_letter(c)) {
            m = prev_cased ? cp_lower(c) : cp_title(c);
            prev_cased = true;
        } else {
            prev_cased = false;
        }
        if (!put_cp(r, &b, m)) {
            sb_free(&b);
            return false;
        }
    }
    return v_from_sbuf(r, line, &b, out);
}

static bool str_capitalize(R *r, int line, const val *s, val *out) {
    sbuf b = {0};
    bool first = true;
    for (size_t i = 0; i < s->u.s.n;) {
        uint32_t c = cp_at(s->u.s.p, s->u.s.n, &i);
        if (!put_cp(r, &b, first ? cp_title(c) : cp_lower(c))) {
            sb_free(&b);
            return false;
        }
        first = false;
    }
    return v_from_sbuf(r, line, &b, out);
}

static int str_pad(R *r, int line, const val *s, const args *a, int mode, val *out) {
    val w, fill = v_str(" ", 1);
    if (!getarg(a, 0, "width", &w) || !(w.t == V_INT || w.t == V_BOOL)) return TYPE_ERR(r, line, "width must be an integer");
    getarg(a, 1, "fillchar", &fill);
    if (fill.t != V_STR || cp_len(fill.u.s.p, fill.u.s.n) != 1) return TYPE_ERR(r, line, "the fill character must be exactly one character long");
    int64_t width = num_i(&w), len = (int64_t)cp_len(s->u.s.p, s->u.s.n);
    if (width > 1000000) return rfail(r, line, VLMC_ERR_LIMIT, "padding width too large");
    if (width <= len) {
        *out = *s;
        return CTL_OK;
    }
    int64_t pad = width - len, left = mode == 0 ? pad / 2 + (pad & width & 1) : mode == 1 ? 0 : pad;
    int64_t right = pad - left;
    sbuf b = {0};
    bool ok = true;
    for (int64_t i = 0; ok && i < left; i++) ok = sb_put(r, &b, fill.u.s.p, fill.u.s.n);
    ok = ok && sb_put(r, &b, s->u.s.p, s->u.s.n);
    for (int64_t i = 0; ok && i < right; i++) ok = sb_put(r, &b, fill.u.s.p, fill.u.s.n);
    if (!ok) {
        sb_free(&b);
        return CTL_ERR;
    }
    return v_from_sbuf(r, line, &b, out) ? CTL_OK : CTL_ERR;
}

static int str_method(R *r, int line, const val *s, const char *m, const args *a, val *out) {
    val x, y, z;
    const char *p = s->u.s.p;
    size_t n = s->u.s.n;
    if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip")) {
        int which = m[0] == 'l' ? 1 : m[0] == 'r' ? 2 : 3;
        if (getarg(a, 0, "chars", &x) && x.t != V_NONE) {
            if (!want_str(r, line, &x, "strip arg")) return CTL_ERR;
            *out = str_strip(s, &x, which);
        } else {
            *out = str_strip(s, NULL, which);
        }
        return CTL_OK;
    }
    if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
        if (!getarg(a, 0, NULL, &x)) return TYPE_ERR(r, line, "%s() takes at least 1 argument", m);
        bool res;
        if (str_affix(r, line, s, &x, m[0] == 'e', &res)) return CTL_ERR;
        *out = v_bool(res);
        return CTL_OK;
    }
    if (!strcmp(m, "split") || !strcmp(m, "rsplit")) {
        bool has_sep = getarg(a, 0, "sep", &x) && x.t != V_NONE;
        int64_t maxsplit = -1;
        if (getarg(a, 1, "maxsplit", &y)) {
            if (!(y.t == V_INT || y.t == V_BOOL)) return TYPE_ERR(r, line, "maxsplit must be an integer");
            maxsplit = num_i(&y);
        }
        if (has_sep && !want_str(r, line, &x, "separator")) return CTL_ERR;
        return str_split(r, line, s, has_sep ? &x : NULL, maxsplit, m[0] == 'r', out) ? CTL_OK : CTL_ERR;
    }
    if (!strcmp(m, "upper")) return map_case(r, line, p, n, 1, out) ? CTL_OK : CTL_ERR;
    if (!strcmp(m, "lower") || !strcmp(m, "casefold")) return map_case(r, line, p, n, 0, out) ? CTL_OK : CTL_ERR;
    if (!strcmp(m, "title")) return str_title_py(r, line, s, out) ? CTL_OK : CTL_ERR;
    if (!strcmp(m, "capitalize")) return str_capitalize(r, line, s, out) ? CTL_OK : CTL_ERR;
    if (!strcmp(m, "swapcase")) {
        sbuf b = {0};
        for (size_t i = 0; i < n;) {
            uint32_t c = cp_at(p, n, &i), u = cp_upper(c);
            if (!put_cp(r, &b, u == c ? cp_lower(c) : u)) {
                sb_free(&b);
                return CTL_ERR;
            }
        }
        return v_from_sbuf(r, line, &b, out) ? CTL_OK : CTL_ERR;
    }
    if (!strcmp(m, "replace")) {
        if (!getarg(a, 0, "old", &x) || !getarg(a, 1, "new", &y)) return TYPE_ERR(r, line, "replace() takes at least 2 arguments");
        if (!want_str(r, line, &x, "replace() argument 1") || !want_str(r, line, &y, "replace() argument 2")) return CTL_ERR;
        int64_t count = -1;
        if (getarg(a, 2, "count", &z)) count = num_i(&z);
        return str_replace(r, line, s, &x, &y, count, out) ? CTL_OK : CTL_ERR;
    }
    if (!strcmp(m, "format")) return str_format(r, line, s, a, out);
    if (!strcmp(m, "find") || !strcmp(m, "rfind") || !strcmp(m, "index") || !strcmp(m, "rindex") || !strcmp(m, "count")) {
        if (!getarg(a, 0, NULL, &x)) return TYPE_ERR(r, line, "%s() takes at least 1 argument", m);
        if (!want_str(r, line, &x, "substring")) return CTL_ERR;
        if (!strcmp(m, "count")) {
            int64_t k = 0;
            if (x.u.s.n == 0) {
                k = (int64_t)cp_len(p, n) + 1;
            } else {
                for (const char *f = p; (f = memfind(f, n - (size_t)(f - p), x.u.s.p, x.u.s.n)); f += x.u.s.n) k++;
            }
            *out = v_int(k);
            return CTL_OK;
        }
        const char *f = NULL;
        if (m[0] == 'r') {
            for (size_t i = n + 1; i-- > 0;)
                if (i + x.u.s.n <= n && !memcmp(p + i, x.u.s.p, x.u.s.n)) {
                    f = p + i;
                    break;
                }
        } else {
            f = memfind(p, n, x.u.s.p, x.u.s.n);
        }
        if (!f && (!strcmp(m, "index") || !strcmp(m, "rindex"))) return rfail(r, line, VLMC_ERR_FORMAT, "ValueError: substring not found");
        *out = v_int(f ? (int64_t)cp_len(p, (size_t)(f - p)) : -1);
        return CTL_OK;
    }
    if (!strcmp(m, "splitlines")) return str_splitlines(r, line, s, out) ? CTL_OK : CTL_ERR;
    if (!strcmp(m, "join")) {
        if (!getarg(a, 0, NULL, &x)) return TYPE_ERR(r, line, "join() takes exactly one argument");
        jlist *l;
        if (to_list(r, line, &x, &l)) return CTL_ERR;
        sbuf b = {0};
        for (size_t i = 0; i < l->n; i++) {
            if (l->v[i].t != V_STR) {
                sb_free(&b);
                return TYPE_ERR(r, line, "sequence item %zu: expected str instance, %s found", i, type_name(&l->v[i]));
            }
            if ((i && !sb_put(r, &b, p, n)) || !sb_put(r, &b, l->v[i].u.s.p, l->v[i].u.s.n)) {
                sb_free(&b);
                return CTL_ERR;
            }
        }
        return v_from_sbuf(r, line, &b, out) ? CTL_OK : CTL_ERR;
    }
    if (!strncmp(m, "is", 2)) {
        bool res = n > 0, any_cased = false;
        for (size_t i = 0; i < n && res;) {
            uint32_t c = cp_at(p, n, &i);
            if (!strcmp(m, "isdigit") || !strcmp(m, "isdecimal") || !strcmp(m, "isnumeric")) res = cp_digit(c);
            else if (!strcmp(m, "isalpha")) res = cp_alpha(c);
            else if (!strcmp(m, "isalnum")) res = cp_alpha(c) || cp_digit(c);
            else if (!strcmp(m, "isspace")) res = py_space(c);
            else if (!strcmp(m, "isupper")) {
                if (cp_lower(c) != c) any_cased = true;
                else if (cp_upper(c) != c) res = false;
            } else if (!strcmp(m, "islower")) {
                if (cp_upper(c) != c) any_cased = true;
                else if (cp_lower(c) != c) res = false;
            } else if (!strcmp(m, "istitle")) {
                val t;
                if (!str_title_py(r, line, s, &t)) return CTL_ERR;
                res = py_eq(&t, s);
                any_cased = true;
                break;
            }
        }
        if (!strcmp(m, "isupper") || !strcmp(m, "islower") || !strcmp(m, "istitle")) res = res && any_cased;
        *out = v_bool(res);
        return CTL_OK;
    }
    if (!strcmp(m, "center")) return str_pad(r, line, s, a, 0, out);
    if (!strcmp(m, "ljust")) return str_pad(r, line, s, a, 1, out);
    if (!strcmp(m, "rjust")) return str_pad(r, line, s, a, 2, out);
    if (!strcmp(m, "zfill")) {
        args a2 = {.pos = (val[]){v_int(0), v_str("0", 1)}, .npos = 2};
        if (!getarg(a, 0, "width", &a2.pos[0])) return TYPE_ERR(r, line, "zfill() takes exactly one argument");
        bool sign = n && (p[0] == '-' || p[0] == '+');
        val body = v_str(p + sign, n - sign);
        if (sign && a2.pos[0].t == V_INT) a2.pos[0].u.i--;
        if (str_pad(r, line, &body, &a2, 2, out)) return CTL_ERR;
        if (sign) {
            val sg = v_str(p, 1);
            return binop_eval(r, line, OP_ADD, &sg, out, out);
        }
        return CTL_OK;
    }
    if (!strcmp(m, "removeprefix") || !strcmp(m, "removesuffix")) {
        if (!getarg(a, 0, NULL, &x) || !want_str(r, line, &x, "argument")) return CTL_ERR;
        bool suf = m[6] == 's', has;
        if (str_affix(r, line, s, &x, suf, &has)) return CTL_ERR;
        *out = has ? v_str(suf ? p : p + x.u.s.n, n - x.u.s.n) : *s;
        return CTL_OK;
    }
    if (!strcmp(m, "partition") || !strcmp(m, "rpartition")) {
        if (!getarg(a, 0, NULL, &x) || !want_str(r, line, &x, "separator")) return CTL_ERR;
        if (x.u.s.n == 0) return rfail(r, line, VLMC_ERR_FORMAT, "ValueError: empty separator");
        val parts;
        if (!str_split(r, line, s, &x, 1, m[0] == 'r', &parts)) return CTL_ERR;
        jlist *l = new_list(r, line, 3);
        if (!l) return CTL_ERR;
        l->tuple = true;
        l->n = 3;
        if (parts.u.l->n == 2) {
            l->v[0] = parts.u.l->v[0];
            l->v[1] = x;
            l->v[2] = parts.u.l->v[1];
        } else if (m[0] == 'r') {
            l->v[0] = v_str("", 0);
            l->v[1] = v_str("", 0);
            l->v[2] = *s;
        } else {
            l->v[0] = *s;
            l->v[1] = v_str("", 0);
            l->v[2] = v_str("", 0);
        }
        *out = v_list(l);
        return CTL_OK;
    }
    return rfail(r, line, VLMC_ERR_UNSUPPORTED, "str.%s() is not supported", m);
}

static int dict_items(R *r, int line, const jdict *d, int which, val *out) {
    jlist *l = new_list(r, line, d->n);
    if (!l) return CTL_ERR;
    for (size_t i = 0; i < d->n; i++) {
        if (which == 0) {
            jlist *t = new_list(r, line, 2);
            if (!t) return CTL_ERR;
            t->tuple = true;
            t->v[0] = d->k[i];
            t->v[1] = d->v[i];
            t->n = 2;
            l->v[l->n++] = v_list(t);
        } else {
            l->v[l->n++] = which == 1 ? d->k[i] : d->v[i];
        }
    }
    *out = v_list(l);
    return CTL_OK;
}

static int call_method(R *r, int line, const method *bm, const args *a, val *out) {
    const val *o = &bm->recv;
    const char *m = bm->name;
    val x, y;
    if (o->t == V_STR) return str_method(r, line, o, m, a, out);
    if (o->t == V_DICT) {
        if (!strcmp(m, "items")) return dict_items(r, line, o->u.d, 0, out);
        if (!strcmp(m, "keys")) return dict_items(r, line, o->u.d, 1, out);
        if (!strcmp(m, "values")) return dict_items(r, line, o->u.d, 2, out);
        if (!strcmp(m, "copy")) {
            jdict *d = new_dict(r, line);
            if (!d) return CTL_ERR;
            for (size_t i = 0; i < o->u.d->n; i++)
                if (!dict_set(r, line, d, o->u.d->k[i], o->u.d->v[i])) return CTL_ERR;
            *out = v_dict(d);
            return CTL_OK;
        }
        if (!strcmp(m, "get")) {
            if (!getarg(a, 0, NULL, &x)) return TYPE_ERR(r, line, "get expected at least 1 argument, got 0");
            if (!is_hashable(&x)) return TYPE_ERR(r, line, "unhashable type: '%s'", type_name(&x));
            val *v = dict_find(o->u.d, &x);
            if (v) *out = *v;
            else if (getarg(a, 1, NULL, &y)) *out = y;
            else *out = v_none();
            return CTL_OK;
        }
    }
    if (o->t == V_LIST) {
        if (!getarg(a, 0, NULL, &x)) return TYPE_ERR(r, line, "%s() takes exactly one argument", m);
        int64_t k = 0;
        for (size_t i = 0; i < o->u.l->n; i++)
            if (py_eq(&o->u.l->v[i], &x)) {
                if (!strcmp(m, "index")) {
                    *out = v_int((int64_t)i);
                    return CTL_OK;
                }
                k++;
            }
        if (!strcmp(m, "index")) return rfail(r, line, VLMC_ERR_FORMAT, "ValueError: value is not in list");
        *out = v_int(k);
        return CTL_OK;
    }
    if (o->t == V_LOOP && !strcmp(m, "cycle")) {
        if (a->npos == 0) return TYPE_ERR(r, line, "no items for cycling given");
        *out = a->pos[o->u.loop->index0 % a->npos];
        return CTL_OK;
    }
    return rfail(r, line, VLMC_ERR_INTERNAL, "method %s of %s", m, type_name(o));
}

/* ---- global functions ---------------------------------------------------------------------- */

static int call_func(R *r, int line, int fn, const args *a, val *out) {
    val x;
    switch (fn) {
    case FN_RANGE: {
        int64_t v[3] = {0, 0, 1};
        if (a->npos < 1 || a->npos > 3 || a->nkw) return TYPE_ERR(r, line, "range expected 1 to 3 integer arguments");
        for (size_t i = 0; i < a->npos; i++) {
            if (!(a->pos[i].t == V_INT || a->pos[i].t == V_BOOL))
                return TYPE_ERR(r, line, "'%s' object cannot be interpreted as an integer", type_name(&a->pos[i]));
        }
        if (a->npos == 1) v[1] = num_i(&a->pos[0]);
        else {
            v[0] = num_i(&a->pos[0]);
            v[1] = num_i(&a->pos[1]);
            if (a->npos == 3) v[2] = num_i(&a->pos[2]);
        }
        if (v[2] == 0) return rfail(r, line, VLMC_ERR_FORMAT, "ValueError: range() arg 3 must not be zero");
        double cnt = v[2] > 0 ? ceil(((double)v[1] - (double)v[0]) / (double)v[2]) : ceil(((double)v[0] - (double)v[1]) / (double)-v[2]);
        if (cnt < 0) cnt = 0;
        if (cnt > MAX_RANGE)
            return rfail(r, line, VLMC_ERR_LIMIT, "OverflowError: range too big, the sandbox blocks ranges larger than %d", MAX_RANGE);
        jlist *l = new_list(r, line, (size_t)cnt);
        if (!l) return CTL_ERR;
        for (size_t i = 0; i < (size_t)cnt; i++) l->v[l->n++] = v_int(v[0] + (int64_t)i * v[2]);
        *out = v_list(l);
        return CTL_OK;
    }
    case FN_NAMESPACE:
    case FN_DICT: {
        jdict *d = new_dict(r, line);
        if (!d) return CTL_ERR;
        if (a->npos > 1) return TYPE_ERR(r, line, "%s expected at most 1 positional argument", fn == FN_DICT ? "dict" : "namespace");
        if (a->npos == 1) {
            const val *src = &a->pos[0];
            if (src->t == V_DICT || src->t == V_NS) {
                for (size_t i = 0; i < src->u.d->n; i++)
                    if (!dict_set(r, line, d, src->u.d->k[i], src->u.d->v[i])) return CTL_ERR;
            } else if (src->t == V_LIST) {
                for (size_t i = 0; i < src->u.l->n; i++) {
                    const val *it = &src->u.l->v[i];
                    if (it->t != V_LIST || it->u.l->n != 2) return TYPE_ERR(r, line, "dictionary update sequence element has wrong length");
                    if (!dict_set(r, line, d, it->u.l->v[0], it->u.l->v[1])) return CTL_ERR;
                }
            } else {
                return TYPE_ERR(r, line, "'%s' object is not iterable", type_name(src));
            }
        }
        for (size_t i = 0; i < a->nkw; i++)
            if (!dict_set(r, line, d, v_cstr(a->kwn[i]), a->kwv[i])) return CTL_ERR;
        out->t = fn == FN_DICT ? V_DICT : V_NS;
        out->u.d = d;
        return CTL_OK;
    }
    case FN_RAISE: {
        val msg = v_str("", 0);
        if (getarg(a, 0, "message", &x) && !to_str(r, line, &x, &msg)) return CTL_ERR;
        return rfail(r, line, VLMC_ERR_ARG, "TemplateError: %.*s", (int)(msg.u.s.n > 700 ? 700 : msg.u.s.n), msg.u.s.p);
    }
    case FN_STRFTIME: {
        if (!getarg(a, 0, "format", &x) || x.t != V_STR) return TYPE_ERR(r, line, "strftime_now() needs a format string");
        if (x.u.s.n > 200) return rfail(r, line, VLMC_ERR_LIMIT, "strftime_now format too long");
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        if (r->now) {
            int Y, M, D, h, mi, s;
            if (sscanf(r->now, "%d-%d-%d %d:%d:%d", &Y, &M, &D, &h, &mi, &s) != 6)
                return rfail(r, line, VLMC_ERR_ARG, "frozen time '%s' is not YYYY-MM-DD HH:MM:SS", r->now);
            tm.tm_year = Y - 1900;
            tm.tm_mon = M - 1;
            tm.tm_mday = D;
            tm.tm_hour = h;
            tm.tm_min = mi;
            tm.tm_sec = s;
            tm.tm_isdst = -1;
            time_t t = timegm(&tm); /* normalises the weekday and day of the year */
            gmtime_r(&t, &tm);
        } else {
            time_t t = time(NULL);
            localtime_r(&t, &tm);
        }
        char fmt[256], buf[1024];
        copy_bytes(fmt, x.u.s.p, x.u.s.n);
        fmt[x.u.s.n] = '\0';
        size_t k = strftime(buf, sizeof buf, fmt, &tm);
        return v_strdup(r, line, buf, k, out) ? CTL_OK : CTL_ERR;
    }
    default: return rfail(r, line, VLMC_ERR_UNSUPPORTED, "this global function is not supported");
    }
}

/* ---- macros -------------------------------------------------------------------------------- */

static int call_macro(R *r, int line, const macro *m, const args *a, val *out) {
    const node *def = m->def;
    if (!step(r, line, 1)) return CTL_ERR;
    frame *f = new_frame(r, line, m->closure);
    if (!f) return CTL_ERR;
    size_t np = def->nkw;
    jlist *varargs = new_list(r, line, 0);
    jdict *kwargs = new_dict(r, line);
    if (!varargs || !kwargs) return CTL_ERR;
    varargs->tuple = true; /* Python passes *args as a tuple */
    bool *given = ralloc(r, line, (np + 1) * sizeof(bool));
    if (!given) return CTL_ERR;
    for (size_t i = 0; i < a->npos; i++) {
        if (i < np) {
            if (!frame_set(r, line, f, def->kwnames[i], a->pos[i])) return CTL_ERR;
            given[i] = true;
        } else if (def->flags & MACRO_USES_VARARGS) {
            if (!list_push(r, line, varargs, a->pos[i])) return CTL_ERR;
        } else {
            return TYPE_ERR(r, line, "macro '%s' takes not more than %zu argument(s)", m->name, np);
        }
    }
    val caller = v_undef(NULL);
    bool has_caller = false;
    for (size_t i = 0; i < a->nkw; i++) {
        size_t j;
        for (j = 0; j < np; j++)
            if (!strcmp(def->kwnames[j], a->kwn[i])) break;
        if (j < np) {
            if (given[j]) return TYPE_ERR(r, line, "macro '%s' got multiple values for argument '%s'", m->name, a->kwn[i]);
            if (!frame_set(r, line, f, def->kwnames[j], a->kwv[i])) return CTL_ERR;
            given[j] = true;
        } else if (!strcmp(a->kwn[i], "caller")) {
            caller = a->kwv[i];
            has_caller = true;
        } else if (def->flags & MACRO_USES_KWARGS) {
            if (!dict_set(r, line, kwargs, v_cstr(a->kwn[i]), a->kwv[i])) return CTL_ERR;
        } else {
            return TYPE_ERR(r, line, "macro '%s' takes no keyword argument '%s'", m->name, a->kwn[i]);
        }
    }
    for (size_t j = 0; j < np; j++) {
        if (given[j]) continue;
        val v;
        if (def->kwvals[j]) {
            if (eval(r, def->kwvals[j], f, &v)) return CTL_ERR;
        } else {
            v = v_undef(hintf(r, "parameter '%s' was not provided", def->kwnames[j]));
        }
        if (!frame_set(r, line, f, def->kwnames[j], v)) return CTL_ERR;
    }
    if ((def->flags & MACRO_USES_VARARGS) && !frame_set(r, line, f, "varargs", v_list(varargs))) return CTL_ERR;
    if ((def->flags & MACRO_USES_KWARGS) && !frame_set(r, line, f, "kwargs", v_dict(kwargs))) return CTL_ERR;
    if (has_caller && !frame_set(r, line, f, "caller", caller)) return CTL_ERR;
    sbuf buf = {0}, *saved = r->out;
    r->out = &buf;
    int rc = exec_body(r, def->a, f);
    r->out = saved;
    if (rc == CTL_ERR) {
        sb_free(&buf);
        return CTL_ERR;
    }
    return v_from_sbuf(r, line, &buf, out) ? CTL_OK : CTL_ERR;
}

static int call_value(R *r, int line, const val *callee, const args *a, val *out) {
    switch (callee->t) {
    case V_MACRO: return call_macro(r, line, callee->u.m, a, out);
    case V_FUNC: return call_func(r, line, callee->u.fn, a, out);
    case V_METHOD: return call_method(r, line, callee->u.bm, a, out);
    case V_UNDEF: return undefined_error(r, line, callee);
    default: return TYPE_ERR(r, line, "'%s' object is not callable", type_name(callee));
    }
}

/* Evaluates the arguments of a call / filter / test node. */
static int eval_args(R *r, const node *n, frame *f, args *a, size_t extra_front) {
    memset(a, 0, sizeof *a);
    val dyn_args, dyn_kwargs;
    jlist *dl = NULL;
    const jdict *dd = NULL;
    if (n->c) { /* f(*seq) */
        if (eval(r, n->c, f, &dyn_args) || to_list(r, n->line, &dyn_args, &dl)) return CTL_ERR;
    }
    if (n->d) { /* f(**mapping) */
        if (eval(r, n->d, f, &dyn_kwargs)) return CTL_ERR;
        if (dyn_kwargs.t != V_DICT) return TYPE_ERR(r, n->line, "argument after ** must be a mapping, not %s", type_name(&dyn_kwargs));
        dd = dyn_kwargs.u.d;
    }
    size_t npos = n->nargs + extra_front + (dl ? dl->n : 0), nkw = n->nkw + (dd ? dd->n : 0);
    a->pos = ralloc(r, n->line, (npos + 1) * sizeof(val));
    a->kwv = ralloc(r, n->line, (nkw + 2) * sizeof(val));
    a->kwn = ralloc(r, n->line, (nkw + 2) * sizeof(char *));
    if (!a->pos || !a->kwv || !a->kwn) return CTL_ERR;
    a->npos = extra_front;
    for (size_t i = 0; i < n->nargs; i++)
        if (eval(r, n->args[i], f, &a->pos[a->npos++])) return CTL_ERR;
    for (size_t i = 0; dl && i < dl->n; i++) a->pos[a->npos++] = dl->v[i];
    for (size_t i = 0; i < n->nkw; i++) {
        a->kwn[i] = n->kwnames[i];
        if (eval(r, n->kwvals[i], f, &a->kwv[i])) return CTL_ERR;
    }
    a->nkw = n->nkw;
    for (size_t i = 0; dd && i < dd->n; i++) {
        const val *k = &dd->k[i];
        if (k->t != V_STR) return TYPE_ERR(r, n->line, "keywords must be strings");
        char *nm = jpool_strndup(&r->pool, k->u.s.p, k->u.s.n);
        if (!nm) return rfail(r, n->line, VLMC_ERR_LIMIT, "out of memory");
        a->kwn[a->nkw] = nm;
        a->kwv[a->nkw++] = dd->v[i];
    }
    return CTL_OK;
}

/* ---- tests (`x is name`) --------------------------------------------------------------------- */

static int apply_test(R *r, int line, const char *name, const val *v, const args *a, bool *res) {
    val x;
    bool has = getarg(a, 0, NULL, &x);
    if (!strcmp(name, "defined")) *res = v->t != V_UNDEF;
    else if (!strcmp(name, "undefined")) *res = v->t == V_UNDEF;
    else if (!strcmp(name, "none")) *res = v->t == V_NONE;
    else if (!strcmp(name, "boolean")) *res = v->t == V_BOOL;
    else if (!strcmp(name, "true")) *res = v->t == V_BOOL && v->u.b;
    else if (!strcmp(name, "false")) *res = v->t == V_BOOL && !v->u.b;
    else if (!strcmp(name, "integer")) *res = v->t == V_INT;
    else if (!strcmp(name, "float")) *res = v->t == V_FLOAT;
    else if (!strcmp(name, "number")) *res = is_num(v);
    else if (!strcmp(name, "string")) *res = v->t == V_STR;
    else if (!strcmp(name, "mapping")) *res = v->t == V_DICT;
    else if (!strcmp(name, "iterable")) *res = v->t == V_STR || v->t == V_LIST || v->t == V_DICT || v->t == V_UNDEF || v->t == V_GEN;
    else if (!strcmp(name, "sequence")) *res = v->t == V_STR || v->t == V_LIST || v->t == V_DICT || v->t == V_UNDEF;
    else if (!strcmp(name, "callable")) *res = v->t == V_MACRO || v->t == V_FUNC || v->t == V_METHOD;
    else if (!strcmp(name, "escaped")) *res = false;
    else if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        if (v->t != V_STR) {
            *res = false; /* Jinja calls str(v).islower() */
            val s;
            if (!to_str(r, line, v, &s)) return CTL_ERR;
            args none = {0};
            val o;
            if (str_method(r, line, &s, name[0] == 'l' ? "islower" : "isupper", &none, &o)) return CTL_ERR;
            *res = o.u.b;
            return CTL_OK;
        }
        args none = {0};
        val o;
        if (str_method(r, line, v, name[0] == 'l' ? "islower" : "isupper", &none, &o)) return CTL_ERR;
        *res = o.u.b;
    } else if (!strcmp(name, "odd") || !strcmp(name, "even")) {
        /* Jinja2: value % 2 == 1 / == 0, so floats work too */
        val two = v_int(2), m;
        if (binop_eval(r, line, OP_MOD, v, &two, &m)) return CTL_ERR;
        val want = v_int(name[0] == 'o' ? 1 : 0);
        *res = py_eq(&m, &want);
    } else if (!strcmp(name, "divisibleby")) {
        if (!has || !is_num(&x) || !is_num(v)) return TYPE_ERR(r, line, "divisibleby needs numbers");
        val m;
        if (binop_eval(r, line, OP_MOD, v, &x, &m)) return CTL_ERR;
        *res = !truthy(&m);
    } else if (!strcmp(name, "sameas")) {
        *res = has && (v->t == x.t) && ((v->t == V_NONE || v->t == V_UNDEF) || (v->t == V_BOOL && v->u.b == x.u.b) || py_eq(v, &x));
    } else if (!strcmp(name, "in")) {
        if (!has) return TYPE_ERR(r, line, "test 'in' needs an argument");
        return contains(r, line, &x, v, res);
    } else {
        static const struct { const char *name; int op; } cmp[] = {
            {"eq", CMP_EQ}, {"equalto", CMP_EQ}, {"==", CMP_EQ}, {"ne", CMP_NE}, {"!=", CMP_NE}, {"lt", CMP_LT},
            {"lessthan", CMP_LT}, {"<", CMP_LT}, {"le", CMP_LE}, {"<=", CMP_LE}, {"gt", CMP_GT}, {"greaterthan", CMP_GT},
            {">", CMP_GT}, {"ge", CMP_GE}, {">=", CMP_GE}};
        for (size_t i = 0; i < sizeof cmp / sizeof cmp[0]; i++)
            if (!strcmp(name, cmp[i].name)) {
                if (!has) return TYPE_ERR(r, line, "test '%s' needs an argument", name);
                return compare(r, line, cmp[i].op, v, &x, res);
            }
        if (jinja_name_in(jinja_test_names, name))
            return rfail(r, line, VLMC_ERR_UNSUPPORTED, "the Jinja test '%s' is not supported by vlmc", name);
        return rfail(r, line, VLMC_ERR_FORMAT, "TemplateAssertionError: no test named '%s'", name);
    }
    return CTL_OK;
}

/* ---- filters ---------------------------------------------------------------------------------- */

/* Jinja's environment.getitem along a dotted attribute path ("a.b.0"). */
static int attr_path(R *r, int line, const val *v, const val *path, val *out) {
    if (path->t == V_INT) return get_item(r, line, v, path, out);
    if (path->t != V_STR) return TYPE_ERR(r, line, "attribute must be a string");
    val cur = *v;
    const char *p = path->u.s.p, *end = p + path->u.s.n;
    while (p <= end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        if (!dot) dot = end;
        val key;
        size_t k = (size_t)(dot - p);
        bool digits = k > 0;
        for (size_t i = 0; i < k; i++) digits = digits && p[i] >= '0' && p[i] <= '9';
        if (digits && k < 18) key = v_int(strtoll(p, NULL, 10));
        else if (!v_strdup(r, line, p, k, &key)) return CTL_ERR;
        if (cur.t == V_UNDEF) {
            *out = cur;
            return CTL_OK;
        }
        if (get_item(r, line, &cur, &key, &cur)) return CTL_ERR;
        p = dot + 1;
    }
    *out = cur;
    return CTL_OK;
}

/* A sort key: lower-cased strings unless case-sensitive (Jinja's ignore_case). */
static int sort_key(R *r, int line, const val *v, const val *attr, bool case_sensitive, val *out) {
    val x = *v;
    if (attr && attr->t != V_NONE && attr_path(r, line, v, attr, &x)) return CTL_ERR;
    if (!case_sensitive && x.t == V_STR) return map_case(r, line, x.u.s.p, x.u.s.n, 0, out) ? CTL_OK : CTL_ERR;
    *out = x;
    return CTL_OK;
}

/* Stable merge sort of items by keys (Python ordering); errors on unorderable keys. */
static int sort_by_keys(R *r, int line, val *items, val *keys, size_t n, bool reverse) {
    if (n < 2) return CTL_OK;
    if (!step(r, line, n * 2)) return CTL_ERR;
    val *ti = ralloc(r, line, n * sizeof(val)), *tk = ralloc(r, line, n * sizeof(val));
    if (!ti || !tk) return CTL_ERR;
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi) {
                int c;
                if (!py_cmp(&keys[j], &keys[i], &c))
                    return TYPE_ERR(r, line, "'<' not supported between instances of '%s' and '%s'", type_name(&keys[j]), type_name(&keys[i]));
                bool take_right = reverse ? c > 0 : c < 0;
                if (take_right) ti[o] = items[j], tk[o++] = keys[j++];
                else ti[o] = items[i], tk[o++] = keys[i++];
            }
            while (i < mid) ti[o] = items[i], tk[o++] = keys[i++];
            while (j < hi) ti[o] = items[j], tk[o++] = keys[j++];
        }
        copy_bytes(items, ti, n * sizeof(val));
        copy_bytes(keys, tk, n * sizeof(val));
    }
    return CTL_OK;
}

static bool arg_bool(const args *a, size_t idx, const char *name, bool def) {
    val x;
    return getarg(a, idx, name, &x) ? truthy(&x) : def;
}

/* select/reject/selectattr/rejectattr */
static int filter_select(R *r, int line, const val *in, const args *a, bool by_attr, bool keep, val *out) {
    jlist *l, *res;
    if (to_list(r, line, in, &l)) return CTL_ERR;
    if (!step(r, line, l->n) || !(res = new_list(r, line, 0))) return CTL_ERR;
    size_t ai = 0;
    val attr = v_none(), test = v_none();
    if (by_attr && !getarg(a, ai++, "attribute", &attr)) return TYPE_ERR(r, line, "selectattr/rejectattr need an attribute");
    bool has_test = getarg(a, ai++, NULL, &test);
    if (has_test && test.t != V_STR) return TYPE_ERR(r, line, "test name must be a string");
    args targs = {.pos = a->pos + (a->npos > ai ? ai : a->npos), .npos = a->npos > ai ? a->npos - ai : 0};
    for (size_t i = 0; i < l->n; i++) {
        val x = l->v[i];
        if (by_attr && attr_path(r, line, &l->v[i], &attr, &x)) return CTL_ERR;
        bool ok;
        if (has_test) {
            char tn[64];
            snprintf(tn, sizeof tn, "%.*s", (int)test.u.s.n, test.u.s.p);
            if (apply_test(r, line, tn, &x, &targs, &ok)) return CTL_ERR;
        } else {
            ok = truthy(&x);
        }
        if (ok == keep && !list_push(r, line, res, l->v[i])) return CTL_ERR;
    }
    *out = v_gen(res);
    return CTL_OK;
}

static int filter_indent(R *r, int line, const val *s, const args *a, val *out) {
    val w = v_int(4);
    getarg(a, 0, "width", &w);
    bool first = arg_bool(a, 1, "first", false), blank = arg_bool(a, 2, "blank", false);
    val ind;
    if (w.t == V_STR) ind = w;
    else if (w.t == V_INT || w.t == V_BOOL) {
        int64_t k = num_i(&w);
        if (k > 1000) return rfail(r, line, VLMC_ERR_LIMIT, "indent width too large");
        char *sp = ralloc(r, line, (size_t)(k > 0 ? k : 0) + 1);
        if (!sp) return CTL_ERR;
        memset(sp, ' ', (size_t)(k > 0 ? k : 0));
        ind = v_str(sp, (size_t)(k > 0 ? k : 0));
    } else {
        return TYPE_ERR(r, line, "indent width must be an integer or a string");
    }
    /* Jinja appends "\n" before splitting so that a trailing newline survives */
    val s2, nl = v_str("\n", 1), lines;
    if (binop_eval(r, line, OP_ADD, s, &nl, &s2) || !str_splitlines(r, line, &s2, &lines)) return CTL_ERR;
    jlist *l = lines.u.l;
    sbuf b = {0};
    bool ok = true;
    if (first) ok = sb_put(r, &b, ind.u.s.p, ind.u.s.n);
    for (size_t i = 0; ok && i < l->n; i++) {
        if (i) ok = sb_putc(r, &b, '\n');
        bool do_ind = i > 0 && (blank || l->v[i].u.s.n > 0);
        if (ok && do_ind) ok = sb_put(r, &b, ind.u.s.p, ind.u.s.n);
        if (ok) ok = sb_put(r, &b, l->v[i].u.s.p, l->v[i].u.s.n);
    }
    if (!ok) {
        sb_free(&b);
        return CTL_ERR;
    }
    return v_from_sbuf(r, line, &b, out) ? CTL_OK : CTL_ERR;
}

/* Jinja's title filter: capitalise after -, whitespace, (, {, [ and <. */
static int filter_title(R *r, int line, const val *s, val *out) {
    sbuf b = {0};
    bool at_start = true;
    for (size_t i = 0; i < s->u.s.n;) {
        uint32_t c = cp_at(s->u.s.p, s->u.s.n, &i);
        bool sep = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || py_space(c);
        uint32_t m = sep ? c : at_start ? cp_upper(c) : cp_lower(c);
        at_start = sep;
        if (!put_cp(r, &b, m)) {
            sb_free(&b);
            return CTL_ERR;
        }
    }
    return v_from_sbuf(r, line, &b, out) ? CTL_OK : CTL_ERR;
}

static int filter_int(R *r, int line, const val *v, const args *a, val *out) {
    val def = v_int(0), basev = v_int(10);
    getarg(a, 0, "default", &def);
    getarg(a, 1, "base", &basev);
    if (v->t == V_INT) *out = *v;
    else if (v->t == V_BOOL) *out = v_int(v->u.b);
    else if (v->t == V_FLOAT) *out = isfinite(v->u.f) && fabs(v->u.f) < 9.2e18 ? v_int((int64_t)v->u.f) : def;
    else if (v->t == V_STR) {
        char buf[64];
        val t = str_strip(v, NULL, 3);
        size_t k = 0;
        for (size_t i = 0; i < t.u.s.n && k < sizeof buf - 1; i++)
            if (t.u.s.p[i] != '_') buf[k++] = t.u.s.p[i];
        buf[k] = '\0';
        char *end;
        errno = 0;
        long long x = k ? strtoll(buf, &end, (int)num_i(&basev)) : 0;
        if (k && !*end && !errno && t.u.s.n < sizeof buf) {
            *out = v_int(x);
        } else {
            double d = k ? strtod(buf, &end) : 0;
            *out = (k && !*end && isfinite(d) && fabs(d) < 9.2e18) ? v_int((int64_t)d) : def;
        }
    } else *out = def;
    return CTL_OK;
}

static int filter_float(R *r, int line, const val *v, const args *a, val *out) {
    val def = v_float(0.0);
    getarg(a, 0, "default", &def);
    if (is_num(v)) *out = v_float(num_f(v));
    else if (v->t == V_STR) {
        char buf[64];
        val t = str_strip(v, NULL, 3);
        if (t.u.s.n == 0 || t.u.s.n >= sizeof buf) {
            *out = def;
            return CTL_OK;
        }
        copy_bytes(buf, t.u.s.p, t.u.s.n);
        buf[t.u.s.n] = '\0';
        char *end;
        double d = strtod(buf, &end);
        *out = *end ? def : v_float(d);
    } else *out = def;
    return CTL_OK;
}

static int filter_round(R *r, int line, const val *v, const args *a, val *out) {
    val pv = v_int(0), mv = v_cstr("common");
    getarg(a, 0, "precision", &pv);
    getarg(a, 1, "method", &mv);
    if (!is_num(v)) return TYPE_ERR(r, line, "round needs a number, not %s", type_name(v));
    int64_t prec = num_i(&pv);
    if (prec < -300 || prec > 300) return rfail(r, line, VLMC_ERR_LIMIT, "round precision out of range");
    if (mv.t != V_STR) return TYPE_ERR(r, line, "round method must be a string");
    if (!strcmp(mv.u.s.p, "common")) {
        if (v->t != V_FLOAT) {
            *out = *v; /* Python's round(int, n) stays an int (n >= 0) */
            if (v->t == V_BOOL) *out = v_int(v->u.b);
            return CTL_OK;
        }
        if (prec >= 0) {
            char buf[400];
            snprintf(buf, sizeof buf, "%.*f", (int)prec, v->u.f);
            *out = v_float(strtod(buf, NULL));
        } else {
            double p10 = pow(10.0, (double)-prec);
            *out = v_float(nearbyint(v->u.f / p10) * p10);
        }
        return CTL_OK;
    }
    double p10 = pow(10.0, (double)prec), x = num_f(v) * p10;
    if (!strcmp(mv.u.s.p, "ceil")) *out = v_float(ceil(x) / p10);
    else if (!strcmp(mv.u.s.p, "floor")) *out = v_float(floor(x) / p10);
    else return rfail(r, line, VLMC_ERR_FORMAT, "FilterArgumentError: method must be common, ceil or floor");
    return CTL_OK;
}

static int list_minmax(R *r, int line, const val *in, const args *a, bool want_max, val *out) {
    jlist *l;
    if (to_list(r, line, in, &l)) return CTL_ERR;
    bool cs = arg_bool(a, 0, "case_sensitive", false);
    val attr = v_none();
    getarg(a, 1, "attribute", &attr);
    if (l->n == 0) {
        *out = v_undef(hintf(r, "No aggregated item, sequence was empty."));
        return CTL_OK;
    }
    val best = l->v[0], bk;
    if (sort_key(r, line, &best, &attr, cs, &bk)) return CTL_ERR;
    for (size_t i = 1; i < l->n; i++) {
        val k;
        int c;
        if (sort_key(r, line, &l->v[i], &attr, cs, &k)) return CTL_ERR;
        if (!py_cmp(&k, &bk, &c)) return TYPE_ERR(r, line, "'<' not supported between instances of '%s' and '%s'", type_name(&k), type_name(&bk));
        if (want_max ? c > 0 : c < 0) {
            best = l->v[i];
            bk = k;
        }
    }
    *out = best;
    return CTL_OK;
}

static int html_escape(R *r, int line, const val *v, val *out) {
    val s;
    if (!to_str(r, line, v, &s)) return CTL_ERR;
    sbuf b = {0};
    bool ok = true;
    for (size_t i = 0; ok && i < s.u.s.n; i++) {
        char c = s.u.s.p[i];
        switch (c) {
        case '&': ok = sb_puts(r, &b, "&amp;"); break;
        case '<': ok = sb_puts(r, &b, "&lt;"); break;
        case '>': ok = sb_puts(r, &b, "&gt;"); break;
        case '"': ok = sb_puts(r, &b, "&#34;"); break;
        case '\'': ok = sb_puts(r, &b, "&#39;"); break;
        default: ok = sb_putc(r, &b, c);
        }
    }
    if (!ok) {
        sb_free(&b);
        return CTL_ERR;
    }
    return v_from_sbuf(r, line, &b, out) ? CTL_OK : CTL_ERR;
}

static int apply_filter(R *r, int line, const char *name, const val *in, const args *a, frame *f, val *out) {
    val x, y;
    (void)f;
    /* Jinja2's generator filters only fail on a non-iterable input when the generator is read */
    static const char *const generator_filters[] = {"select", "reject", "selectattr", "rejectattr", "map", "unique", "batch", "items", NULL};
    bool iterable = in->t == V_LIST || in->t == V_DICT || in->t == V_STR || in->t == V_UNDEF || in->t == V_GEN;
    if (!strcmp(name, "items")) iterable = in->t == V_DICT || in->t == V_UNDEF;
    if (!iterable && in_names(generator_filters, name)) {
        jlist *g = new_list(r, line, 0);
        if (!g) return CTL_ERR;
        /* select/reject/selectattr/rejectattr/map start with `if seq:`, so a falsy input is just empty */
        bool guarded = strcmp(name, "unique") && strcmp(name, "batch") && strcmp(name, "items");
        if (guarded && !truthy(in)) {
            *out = v_gen(g);
            return CTL_OK;
        }
        g->deferred = !strcmp(name, "items") ? "can only get item pairs from a mapping"
                                              : hintf(r, "'%s' object is not iterable", type_name(in));
        *out = v_gen(g);
        return CTL_OK;
    }
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        val def = v_str("", 0);
        getarg(a, 0, "default_value", &def);
        bool boolean = arg_bool(a, 1, "boolean", false);
        *out = (in->t == V_UNDEF || (boolean && !truthy(in))) ? def : *in;
        return CTL_OK;
    }
    if (!strcmp(name, "length") || !strcmp(name, "count")) {
        switch (in->t) {
        case V_STR: *out = v_int((int64_t)cp_len(in->u.s.p, in->u.s.n)); return CTL_OK;
        case V_LIST: *out = v_int((int64_t)in->u.l->n); return CTL_OK;
        case V_DICT: *out = v_int((int64_t)in->u.d->n); return CTL_OK;
        case V_UNDEF: *out = v_int(0); return CTL_OK;
        default: return TYPE_ERR(r, line, "object of type '%s' has no len()", type_name(in));
        }
    }
    if (!strcmp(name, "tojson")) {
        json_opts o = {.indent = NULL, .item_sep = ", ", .key_sep = ": "};
        char spaces[64];
        if (getarg(a, 1, "indent", &x) && x.t != V_NONE) {
            if (x.t == V_STR) {
                if (!v_strdup(r, line, x.u.s.p, x.u.s.n, &x)) return CTL_ERR;
                o.indent = x.u.s.p;
            } else if (x.t == V_INT || x.t == V_BOOL) {
                int64_t k = num_i(&x);
                if (k < 0) k = 0;
                if (k > 60) return rfail(r, line, VLMC_ERR_LIMIT, "tojson indent too large");
                memset(spaces, ' ', (size_t)k);
                spaces[k] = '\0';
                o.indent = spaces;
            } else {
                return TYPE_ERR(r, line, "tojson indent must be an integer or a string");
            }
            o.item_sep = ",";
        }
        if (getarg(a, 0, "ensure_ascii", &x) && truthy(&x))
            return rfail(r, line, VLMC_ERR_UNSUPPORTED, "tojson(ensure_ascii=True) is not supported");
        if (getarg(a, 2, "separators", &x) && x.t != V_NONE) {
            if (x.t != V_LIST || x.u.l->n != 2 || x.u.l->v[0].t != V_STR || x.u.l->v[1].t != V_STR)
                return TYPE_ERR(r, line, "tojson separators must be a pair of strings");
            val s0, s1;
            if (!v_strdup(r, line, x.u.l->v[0].u.s.p, x.u.l->v[0].u.s.n, &s0) ||
                !v_strdup(r, line, x.u.l->v[1].u.s.p, x.u.l->v[1].u.s.n, &s1))
                return CTL_ERR;
            o.item_sep = s0.u.s.p;
            o.key_sep = s1.u.s.p;
        }
        o.sort_keys = arg_bool(a, 3, "sort_keys", false);
        sbuf b = {0};
        if (!json_val(r, line, &b, in, &o, 0)) {
            sb_free(&b);
            return CTL_ERR;
        }
        return v_from_sbuf(r, line, &b, out) ? CTL_OK : CTL_ERR;
    }
    if (!strcmp(name, "string")) return to_str(r, line, in, out) ? CTL_OK : CTL_ERR;
    if (!strcmp(name, "safe")) return to_str(r, line, in, out) ? CTL_OK : CTL_ERR; /* Markup(str(value)) */
    if (!strcmp(name, "escape") || !strcmp(name, "e") || !strcmp(name, "forceescape")) return html_escape(r, line, in, out);
    if (!strcmp(name, "pprint")) {
        sbuf b = {0};
        if (!put_val(r, &b, in, true, 0)) {
            sb_free(&b);
            return CTL_ERR;
        }
        return v_from_sbuf(r, line, &b, out) ? CTL_OK : CTL_ERR;
    }
    if (!strcmp(name, "indent") && in->t == V_UNDEF) return undefined_error(r, line, in);
    if (!strcmp(name, "indent") && in->t != V_STR) /* Jinja2 appends "\n" to the value itself */
        return TYPE_ERR(r, line, "unsupported operand type(s) for +=: '%s' and 'str'", type_name(in));
    /* filters on the text of the value (Jinja applies str() first) */
    if (!strcmp(name, "trim") || !strcmp(name, "upper") || !strcmp(name, "lower") || !strcmp(name, "title") ||
        !strcmp(name, "capitalize") || !strcmp(name, "replace") || !strcmp(name, "indent") || !strcmp(name, "center") ||
        !strcmp(name, "wordcount") || !strcmp(name, "format") || !strcmp(name, "striptags")) {
        val s;
        if (!to_str(r, line, in, &s)) return CTL_ERR;
        if (!strcmp(name, "trim")) {
            if (getarg(a, 0, "chars", &x) && x.t != V_NONE) {
                if (!want_str(r, line, &x, "trim chars")) return CTL_ERR;
                *out = str_strip(&s, &x, 3);
            } else {
                *out = str_strip(&s, NULL, 3);
            }
            return CTL_OK;
        }
        if (!strcmp(name, "upper")) return map_case(r, line, s.u.s.p, s.u.s.n, 1, out) ? CTL_OK : CTL_ERR;
        if (!strcmp(name, "lower")) return map_case(r, line, s.u.s.p, s.u.s.n, 0, out) ? CTL_OK : CTL_ERR;
        if (!strcmp(name, "title")) return filter_title(r, line, &s, out);
        if (!strcmp(name, "capitalize")) return str_capitalize(r, line, &s, out) ? CTL_OK : CTL_ERR;
        if (!strcmp(name, "replace")) {
            if (!getarg(a, 0, "old", &x) || !getarg(a, 1, "new", &y)) return TYPE_ERR(r, line, "replace needs old and new");
            val xs, ys, c;
            if (!to_str(r, line, &x, &xs) || !to_str(r, line, &y, &ys)) return CTL_ERR;
            int64_t count = getarg(a, 2, "count", &c) && c.t != V_NONE ? num_i(&c) : -1;
            return str_replace(r, line, &s, &xs, &ys, count, out) ? CTL_OK : CTL_ERR;
        }
        if (!strcmp(name, "indent")) return filter_indent(r, line, &s, a, out);
        if (!strcmp(name, "center")) {
            args a2 = {.pos = (val[]){v_int(80)}, .npos = 1};
            getarg(a, 0, "width", &a2.pos[0]);
            return str_pad(r, line, &s, &a2, 0, out);
        }
        if (!strcmp(name, "wordcount")) {
            int64_t k = 0;
            bool in_word = false;
            for (size_t i = 0; i < s.u.s.n;) {
                uint32_t c = cp_at(s.u.s.p, s.u.s.n, &i);
                bool w = cp_alpha(c) || cp_digit(c) || c == '_';
                if (w && !in_word) k++;
                in_word = w;
            }
            *out = v_int(k);
            return CTL_OK;
        }
        if (!strcmp(name, "format")) {
            if (a->nkw && a->npos) return rfail(r, line, VLMC_ERR_FORMAT, "FilterArgumentError: can't handle positional and keyword arguments at the same time");
            if (a->nkw) return rfail(r, line, VLMC_ERR_UNSUPPORTED, "format with keyword arguments is not supported");
            return percent_format(r, line, &s, a->pos, a->npos, out);
        }
        return rfail(r, line, VLMC_ERR_UNSUPPORTED, "filter '%s' is not supported", name);
    }
    if (!strcmp(name, "join")) {
        jlist *l;
        if (to_list(r, line, in, &l)) return CTL_ERR;
        val sep = v_str("", 0), attr = v_none();
        getarg(a, 0, "d", &sep);
        getarg(a, 1, "attribute", &attr);
        val seps;
        if (!to_str(r, line, &sep, &seps) || !step(r, line, l->n)) return CTL_ERR;
        sbuf b = {0};
        for (size_t i = 0; i < l->n; i++) {
            val it = l->v[i];
            if (attr.t != V_NONE && attr_path(r, line, &l->v[i], &attr, &it)) goto join_fail;
            if ((i && !sb_put(r, &b, seps.u.s.p, seps.u.s.n)) || !put_val(r, &b, &it, false, 0)) goto join_fail;
        }
        return v_from_sbuf(r, line, &b, out) ? CTL_OK : CTL_ERR;
    join_fail:
        sb_free(&b);
        return CTL_ERR;
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        jlist *l;
        if (name[0] == 'l' && in->t == V_GEN) return TYPE_ERR(r, line, "'generator' object is not reversible");
        if (to_list(r, line, in, &l)) return CTL_ERR;
        if (l->n == 0) *out = v_undef(hintf(r, "No %s item, sequence was empty.", name));
        else *out = name[0] == 'f' ? l->v[0] : l->v[l->n - 1];
        return CTL_OK;
    }
    if (!strcmp(name, "list")) {
        jlist *l, *c;
        if (to_list(r, line, in, &l) || !(c = new_list(r, line, l->n))) return CTL_ERR;
        copy_bytes(c->v, l->v, l->n * sizeof(val));
        c->n = l->n;
        *out = v_list(c);
        return CTL_OK;
    }
    if (!strcmp(name, "items")) {
        if (in->t == V_UNDEF) {
            jlist *l = new_list(r, line, 0);
            if (!l) return CTL_ERR;
            *out = v_gen(l);
            return CTL_OK;
        }
        if (in->t != V_DICT) return TYPE_ERR(r, line, "can only get item pairs from a mapping");
        if (dict_items(r, line, in->u.d, 0, out)) return CTL_ERR;
        out->t = V_GEN;
        return CTL_OK;
    }
    if (!strcmp(name, "dictsort")) {
        if (in->t != V_DICT) return TYPE_ERR(r, line, "dictsort needs a mapping");
        bool cs = arg_bool(a, 0, "case_sensitive", false), rev = arg_bool(a, 2, "reverse", false);
        val by = v_cstr("key");
        getarg(a, 1, "by", &by);
        int pos = by.t == V_STR && !strcmp(by.u.s.p, "value") ? 1 : 0;
        if (by.t != V_STR || (pos == 0 && strcmp(by.u.s.p, "key")))
            return rfail(r, line, VLMC_ERR_FORMAT, "FilterArgumentError: you can only sort by either \"key\" or \"value\"");
        val items;
        if (dict_items(r, line, in->u.d, 0, &items)) return CTL_ERR;
        jlist *l = items.u.l;
        val *keys = ralloc(r, line, (l->n + 1) * sizeof(val));
        if (!keys) return CTL_ERR;
        for (size_t i = 0; i < l->n; i++)
            if (sort_key(r, line, &l->v[i].u.l->v[pos], NULL, cs, &keys[i])) return CTL_ERR;
        if (sort_by_keys(r, line, l->v, keys, l->n, rev)) return CTL_ERR;
        *out = items;
        return CTL_OK;
    }
    if (!strcmp(name, "sort")) {
        jlist *l, *c;
        if (to_list(r, line, in, &l) || !(c = new_list(r, line, l->n))) return CTL_ERR;
        copy_bytes(c->v, l->v, l->n * sizeof(val));
        c->n = l->n;
        bool rev = arg_bool(a, 0, "reverse", false), cs = arg_bool(a, 1, "case_sensitive", false);
        val attr = v_none();
        getarg(a, 2, "attribute", &attr);
        val *keys = ralloc(r, line, (c->n + 1) * sizeof(val));
        if (!keys || !step(r, line, c->n)) return CTL_ERR;
        for (size_t i = 0; i < c->n; i++)
            if (sort_key(r, line, &c->v[i], &attr, cs, &keys[i])) return CTL_ERR;
        if (sort_by_keys(r, line, c->v, keys, c->n, rev)) return CTL_ERR;
        *out = v_list(c);
        return CTL_OK;
    }
    if (!strcmp(name, "unique")) {
        jlist *l, *res;
        if (to_list(r, line, in, &l) || !(res = new_list(r, line, 0))) return CTL_ERR;
        bool cs = arg_bool(a, 0, "case_sensitive", false);
        val attr = v_none();
        getarg(a, 1, "attribute", &attr);
        jlist *seen = new_list(r, line, 0);
        if (!seen || !step(r, line, l->n)) return CTL_ERR;
        for (size_t i = 0; i < l->n; i++) {
            val k;
            bool dup;
            if (sort_key(r, line, &l->v[i], &attr, cs, &k)) return CTL_ERR;
            val seenv = v_list(seen);
            if (contains(r, line, &seenv, &k, &dup)) return CTL_ERR;
            if (!dup && (!list_push(r, line, seen, k) || !list_push(r, line, res, l->v[i]))) return CTL_ERR;
        }
        *out = v_gen(res);
        return CTL_OK;
    }
    if (!strcmp(name, "reverse")) {
        if (in->t == V_STR) {
            val sv[3] = {v_none(), v_none(), v_int(-1)};
            const val *svp[3] = {&sv[0], &sv[1], &sv[2]};
            return do_slice(r, line, in, svp, out);
        }
        jlist *l, *c;
        if (to_list(r, line, in, &l) || !(c = new_list(r, line, l->n))) return CTL_ERR;
        for (size_t i = 0; i < l->n; i++) c->v[i] = l->v[l->n - 1 - i];
        c->n = l->n;
        /* reversed(list) is an iterator; a generator is listed and reversed into a list */
        *out = in->t == V_GEN ? v_list(c) : v_gen(c);
        return CTL_OK;
    }
    if (!strcmp(name, "sum")) {
        jlist *l;
        if (to_list(r, line, in, &l)) return CTL_ERR;
        val attr = v_none(), acc = v_int(0);
        getarg(a, 0, "attribute", &attr);
        getarg(a, 1, "start", &acc);
        for (size_t i = 0; i < l->n; i++) {
            val it = l->v[i];
            if (attr.t != V_NONE && attr_path(r, line, &l->v[i], &attr, &it)) return CTL_ERR;
            if (binop_eval(r, line, OP_ADD, &acc, &it, &acc)) return CTL_ERR;
        }
        *out = acc;
        return CTL_OK;
    }
    if (!strcmp(name, "min") || !strcmp(name, "max")) return list_minmax(r, line, in, a, name[1] == 'a', out);
    if (!strcmp(name, "abs")) {
        if (in->t == V_INT) {
            if (in->u.i == INT64_MIN) return rfail(r, line, VLMC_ERR_UNSUPPORTED, "integer out of range");
            *out = v_int(in->u.i < 0 ? -in->u.i : in->u.i);
        } else if (in->t == V_BOOL) *out = v_int(in->u.b);
        else if (in->t == V_FLOAT) *out = v_float(fabs(in->u.f));
        else return TYPE_ERR(r, line, "bad operand type for abs(): '%s'", type_name(in));
        return CTL_OK;
    }
    /* int, float and indent are the filters that fail on undefined values in Jinja2 */
    if ((!strcmp(name, "int") || !strcmp(name, "float") || !strcmp(name, "indent")) && in->t == V_UNDEF)
        return undefined_error(r, line, in);
    if (!strcmp(name, "int")) return filter_int(r, line, in, a, out);
    if (!strcmp(name, "float")) return filter_float(r, line, in, a, out);
    if (!strcmp(name, "round")) return filter_round(r, line, in, a, out);
    if (!strcmp(name, "select") || !strcmp(name, "reject")) return filter_select(r, line, in, a, false, name[0] == 's', out);
    if (!strcmp(name, "selectattr") || !strcmp(name, "rejectattr")) return filter_select(r, line, in, a, true, name[0] == 's', out);
    if (!strcmp(name, "map")) {
        jlist *l, *res;
        if (to_list(r, line, in, &l) || !(res = new_list(r, line, l->n)) || !step(r, line, l->n)) return CTL_ERR;
        val attr;
        if (a->npos == 0 && getarg(a, 99, "attribute", &attr)) {
            val def;
            bool has_def = getarg(a, 99, "default", &def);
            for (size_t i = 0; i < l->n; i++) {
                val it;
                if (attr_path(r, line, &l->v[i], &attr, &it)) return CTL_ERR;
                if (it.t == V_UNDEF && has_def) it = def;
                res->v[res->n++] = it;
            }
        } else {
            if (!getarg(a, 0, NULL, &x) || x.t != V_STR) return TYPE_ERR(r, line, "map needs a filter name or attribute=");
            char fn[64];
            snprintf(fn, sizeof fn, "%.*s", (int)x.u.s.n, x.u.s.p);
            args fa = {.pos = a->pos + 1, .npos = a->npos - 1, .kwn = a->kwn, .kwv = a->kwv, .nkw = a->nkw};
            for (size_t i = 0; i < l->n; i++)
                if (apply_filter(r, line, fn, &l->v[i], &fa, f, &res->v[res->n++])) return CTL_ERR;
        }
        *out = v_gen(res);
        return CTL_OK;
    }
    if (!strcmp(name, "batch")) {
        jlist *l, *res;
        if (to_list(r, line, in, &l) || !(res = new_list(r, line, 0))) return CTL_ERR;
        if (!getarg(a, 0, "linecount", &x) || !(x.t == V_INT) || x.u.i <= 0) return TYPE_ERR(r, line, "batch needs a positive count");
        bool fill = getarg(a, 1, "fill_with", &y) && y.t != V_NONE;
        size_t k = (size_t)x.u.i;
        for (size_t i = 0; i < l->n; i += k) {
            jlist *b = new_list(r, line, 0);
            if (!b) return CTL_ERR;
            for (size_t j = i; j < i + k && j < l->n; j++)
                if (!list_push(r, line, b, l->v[j])) return CTL_ERR;
            while (fill && b->n < k)
                if (!list_push(r, line, b, y)) return CTL_ERR;
            if (!list_push(r, line, res, v_list(b))) return CTL_ERR;
        }
        *out = v_gen(res);
        return CTL_OK;
    }
    if (!strcmp(name, "truncate")) {
        /* Jinja2's truncate(length=255, killwords=False, end='...', leeway=5) */
        val s, lenv = v_int(255), endv = v_str("...", 3), leev = v_int(5);
        if (!to_str(r, line, in, &s)) return CTL_ERR;
        getarg(a, 0, "length", &lenv);
        bool kill = arg_bool(a, 1, "killwords", false);
        getarg(a, 2, "end", &endv);
        getarg(a, 3, "leeway", &leev);
        if (!(lenv.t == V_INT) || endv.t != V_STR || !(leev.t == V_INT || leev.t == V_NONE))
            return TYPE_ERR(r, line, "truncate: bad arguments");
        int64_t length = lenv.u.i, leeway = leev.t == V_INT ? leev.u.i : 5;
        int64_t endlen = (int64_t)cp_len(endv.u.s.p, endv.u.s.n), slen = (int64_t)cp_len(s.u.s.p, s.u.s.n);
        if (length < endlen || leeway < 0) return rfail(r, line, VLMC_ERR_FORMAT, "AssertionError: bad truncate length");
        if (slen <= length + leeway) {
            *out = s;
            return CTL_OK;
        }
        val head = v_str(s.u.s.p, cp_off(s.u.s.p, s.u.s.n, (size_t)(length - endlen)));
        if (!kill) {
            const char *sp = NULL;
            for (size_t q = head.u.s.n; q-- > 0;)
                if (head.u.s.p[q] == ' ') {
                    sp = head.u.s.p + q;
                    break;
                }
            if (sp) head.u.s.n = (size_t)(sp - head.u.s.p);
        }
        return binop_eval(r, line, OP_ADD, &head, &endv, out);
    }
    if (!strcmp(name, "groupby")) {
        /* sorted by the attribute, then runs of equal keys as (grouper, list) pairs */
        jlist *l, *c, *res;
        val attr, def = v_none();
        if (!getarg(a, 0, "attribute", &attr)) return TYPE_ERR(r, line, "groupby needs an attribute");
        bool has_def = getarg(a, 1, "default", &def);
        bool cs = arg_bool(a, 2, "case_sensitive", false);
        if (to_list(r, line, in, &l) || !(c = new_list(r, line, l->n)) || !(res = new_list(r, line, 0))) return CTL_ERR;
        copy_bytes(c->v, l->v, l->n * sizeof(val));
        c->n = l->n;
        val *keys = ralloc(r, line, (c->n + 1) * sizeof(val)), *raw = ralloc(r, line, (c->n + 1) * sizeof(val));
        if (!keys || !raw) return CTL_ERR;
        for (size_t q = 0; q < c->n; q++) {
            if (attr_path(r, line, &c->v[q], &attr, &raw[q])) return CTL_ERR;
            if (raw[q].t == V_UNDEF && has_def) raw[q] = def;
            keys[q] = raw[q];
            if (!cs && keys[q].t == V_STR && !map_case(r, line, keys[q].u.s.p, keys[q].u.s.n, 0, &keys[q])) return CTL_ERR;
        }
        /* sort items together with their keys; raw values travel as a parallel pair list */
        jlist *pairs = new_list(r, line, c->n);
        if (!pairs) return CTL_ERR;
        for (size_t q = 0; q < c->n; q++) {
            jlist *pr = new_list(r, line, 2);
            if (!pr) return CTL_ERR;
            pr->v[0] = raw[q];
            pr->v[1] = c->v[q];
            pr->n = 2;
            pairs->v[pairs->n++] = v_list(pr);
        }
        if (sort_by_keys(r, line, pairs->v, keys, pairs->n, false)) return CTL_ERR;
        for (size_t q = 0; q < pairs->n;) {
            jlist *grp = new_list(r, line, 0), *tu = new_list(r, line, 2);
            if (!grp || !tu) return CTL_ERR;
            size_t e = q;
            while (e < pairs->n && py_eq(&keys[e], &keys[q])) {
                if (!list_push(r, line, grp, pairs->v[e].u.l->v[1])) return CTL_ERR;
                e++;
            }
            tu->tuple = tu->group = true;
            tu->v[0] = pairs->v[q].u.l->v[0];
            tu->v[1] = v_list(grp);
            tu->n = 2;
            if (!list_push(r, line, res, v_list(tu))) return CTL_ERR;
            q = e;
        }
        *out = v_list(res);
        return CTL_OK;
    }
    if (!strcmp(name, "attr")) {
        if (!getarg(a, 0, "name", &x) || x.t != V_STR) return TYPE_ERR(r, line, "attr needs a name");
        char *nm = jpool_strndup(&r->pool, x.u.s.p, x.u.s.n);
        if (!nm) return rfail(r, line, VLMC_ERR_LIMIT, "out of memory");
        return get_attr(r, line, in, nm, out);
    }
    if (jinja_name_in(jinja_filter_names, name))
        return rfail(r, line, VLMC_ERR_UNSUPPORTED, "the Jinja filter '%s' is not supported by vlmc", name);
    return rfail(r, line, VLMC_ERR_FORMAT, "TemplateAssertionError: no filter named '%s'", name);
}

/* ---- expressions ----------------------------------------------------------------------------- */

static const struct { const char *name; int fn; } GLOBAL_FUNCS[] = {
    {"range", FN_RANGE}, {"namespace", FN_NAMESPACE}, {"dict", FN_DICT},
    {"raise_exception", FN_RAISE}, {"strftime_now", FN_STRFTIME},
};

static int lookup(R *r, const node *n, frame *f, val *out) {
    if (frame_get(f, n->str, out)) return CTL_OK;
    for (size_t i = 0; i < sizeof GLOBAL_FUNCS / sizeof GLOBAL_FUNCS[0]; i++)
        if (!strcmp(n->str, GLOBAL_FUNCS[i].name)) {
            out->t = V_FUNC;
            out->u.fn = GLOBAL_FUNCS[i].fn;
            return CTL_OK;
        }
    *out = v_undef(hintf(r, "'%s' is undefined", n->str));
    return CTL_OK;
}

/* Applies a filter chain whose innermost node has a == NULL to `input`
 * (`{% set x | f %}` and `{% filter f %}` blocks). */
static int eval_filter_chain(R *r, const node *n, frame *f, const val *input, val *out) {
    val in = *input;
    if (n->a && eval_filter_chain(r, n->a, f, input, &in)) return CTL_ERR;
    args a;
    if (eval_args(r, n, f, &a, 0)) return CTL_ERR;
    return apply_filter(r, n->line, n->str, &in, &a, f, out);
}

static int eval_inner(R *r, const node *n, frame *f, val *out) {
    val a, b;
    switch (n->kind) {
    case N_CONST_STR: *out = v_str(n->str, n->len); return CTL_OK;
    case N_CONST_INT: *out = v_int(n->ival); return CTL_OK;
    case N_CONST_FLOAT: *out = v_float(n->fval); return CTL_OK;
    case N_CONST_BOOL: *out = v_bool(n->ival != 0); return CTL_OK;
    case N_CONST_NONE: *out = v_none(); return CTL_OK;
    case N_NAME: return lookup(r, n, f, out);
    case N_GETATTR:
        if (eval(r, n->a, f, &a)) return CTL_ERR;
        return get_attr(r, n->line, &a, n->str, out);
    case N_GETITEM:
        if (eval(r, n->a, f, &a)) return CTL_ERR;
        if (n->b->kind == N_SLICE) {
            val sv[3];
            const val *svp[3] = {NULL, NULL, NULL};
            const node *parts[3] = {n->b->a, n->b->b, n->b->c};
            for (int i = 0; i < 3; i++)
                if (parts[i]) {
                    if (eval(r, parts[i], f, &sv[i])) return CTL_ERR;
                    svp[i] = &sv[i];
                }
            return do_slice(r, n->line, &a, svp, out);
        }
        if (eval(r, n->b, f, &b)) return CTL_ERR;
        return get_item(r, n->line, &a, &b, out);
    case N_CALL: {
        val callee;
        args ar;
        if (eval(r, n->a, f, &callee) || eval_args(r, n, f, &ar, 0)) return CTL_ERR;
        return call_value(r, n->line, &callee, &ar, out);
    }
    case N_FILTER: {
        args ar;
        if (eval(r, n->a, f, &a) || eval_args(r, n, f, &ar, 0)) return CTL_ERR;
        return apply_filter(r, n->line, n->str, &a, &ar, f, out);
    }
    case N_TEST: {
        args ar;
        bool res;
        if (eval(r, n->a, f, &a) || eval_args(r, n, f, &ar, 0)) return CTL_ERR;
        if (apply_test(r, n->line, n->str, &a, &ar, &res)) return CTL_ERR;
        *out = v_bool(res);
        return CTL_OK;
    }
    case N_NOT:
        if (eval(r, n->a, f, &a)) return CTL_ERR;
        *out = v_bool(!truthy(&a));
        return CTL_OK;
    case N_NEG:
    case N_POS:
        if (eval(r, n->a, f, &a)) return CTL_ERR;
        if (a.t == V_UNDEF) return undefined_error(r, n->line, &a);
        if (!is_num(&a)) return TYPE_ERR(r, n->line, "bad operand type for unary %c: '%s'", n->kind == N_NEG ? '-' : '+', type_name(&a));
        if (n->kind == N_POS) *out = a.t == V_BOOL ? v_int(a.u.b) : a;
        else if (a.t == V_FLOAT) *out = v_float(-a.u.f);
        else if (num_i(&a) == INT64_MIN) return rfail(r, n->line, VLMC_ERR_UNSUPPORTED, "integer out of range");
        else *out = v_int(-num_i(&a));
        return CTL_OK;
    case N_BINOP:
        if (eval(r, n->a, f, &a) || eval(r, n->b, f, &b)) return CTL_ERR;
        return binop_eval(r, n->line, n->op, &a, &b, out);
    case N_CONCAT: {
        sbuf buf = {0};
        for (size_t i = 0; i < n->nargs; i++) {
            if (eval(r, n->args[i], f, &a) || !put_val(r, &buf, &a, false, 0)) {
                sb_free(&buf);
                return CTL_ERR;
            }
        }
        return v_from_sbuf(r, n->line, &buf, out) ? CTL_OK : CTL_ERR;
    }
    case N_AND:
        if (eval(r, n->a, f, &a)) return CTL_ERR;
        if (!truthy(&a)) {
            *out = a;
            return CTL_OK;
        }
        return eval(r, n->b, f, out);
    case N_OR:
        if (eval(r, n->a, f, &a)) return CTL_ERR;
        if (truthy(&a)) {
            *out = a;
            return CTL_OK;
        }
        return eval(r, n->b, f, out);
    case N_COMPARE: {
        if (eval(r, n->a, f, &a)) return CTL_ERR;
        for (size_t i = 0; i < n->nargs; i++) {
            bool res;
            if (eval(r, n->args[i], f, &b) || compare(r, n->line, n->cmpops[i], &a, &b, &res)) return CTL_ERR;
            if (!res) {
                *out = v_bool(false);
                return CTL_OK;
            }
            a = b;
        }
        *out = v_bool(true);
        return CTL_OK;
    }
    case N_COND:
        if (eval(r, n->a, f, &a)) return CTL_ERR;
        if (truthy(&a)) return eval(r, n->b, f, out);
        if (n->c) return eval(r, n->c, f, out);
        *out = v_undef(hintf(r, "the inline if-expression evaluated to false and no else section was defined"));
        return CTL_OK;
    case N_LIST:
    case N_TUPLE: {
        jlist *l = new_list(r, n->line, n->nargs);
        if (!l) return CTL_ERR;
        l->tuple = n->kind == N_TUPLE;
        for (size_t i = 0; i < n->nargs; i++)
            if (eval(r, n->args[i], f, &l->v[l->n++])) return CTL_ERR;
        *out = v_list(l);
        return CTL_OK;
    }
    case N_DICT: {
        jdict *d = new_dict(r, n->line);
        if (!d) return CTL_ERR;
        for (size_t i = 0; i < n->nargs; i++) {
            if (eval(r, n->args[i], f, &a) || eval(r, n->kwvals[i], f, &b)) return CTL_ERR;
            if (!is_hashable(&a)) return TYPE_ERR(r, n->line, "unhashable type: '%s'", type_name(&a));
            if (!dict_set(r, n->line, d, a, b)) return CTL_ERR;
        }
        *out = v_dict(d);
        return CTL_OK;
    }
    default: return rfail(r, n->line, VLMC_ERR_INTERNAL, "node %d is not an expression", (int)n->kind);
    }
}

static int eval(R *r, const node *n, frame *f, val *out) {
    if (++r->depth > MAX_EVAL_DEPTH) {
        r->depth--;
        return rfail(r, n->line, VLMC_ERR_LIMIT, "template recursion deeper than %d levels", MAX_EVAL_DEPTH);
    }
    int rc = eval_inner(r, n, f, out);
    r->depth--;
    return rc;
}

/* ---- statements -------------------------------------------------------------------------------- */

static int assign(R *r, const node *t, frame *f, const val *v) {
    switch (t->kind) {
    case N_NAME: return frame_set(r, t->line, f, t->str, *v) ? CTL_OK : CTL_ERR;
    case N_NSREF: {
        val ns;
        if (!frame_get(f, t->str, &ns) || ns.t != V_NS)
            return rfail(r, t->line, VLMC_ERR_FORMAT, "TemplateRuntimeError: cannot assign attribute on non-namespace object");
        return dict_set(r, t->line, ns.u.d, v_str(t->a->str, t->a->len), *v) ? CTL_OK : CTL_ERR;
    }
    case N_TUPLE: {
        jlist *l;
        if (v->t == V_UNDEF) return undefined_error(r, t->line, v);
        if (to_list(r, t->line, v, &l)) return CTL_ERR;
        if (l->n != t->nargs)
            return rfail(r, t->line, VLMC_ERR_FORMAT, "ValueError: %s values to unpack (expected %zu, got %zu)",
                         l->n > t->nargs ? "too many" : "not enough", t->nargs, l->n);
        for (size_t i = 0; i < t->nargs; i++)
            if (assign(r, t->args[i], f, &l->v[i])) return CTL_ERR;
        return CTL_OK;
    }
    default: return rfail(r, t->line, VLMC_ERR_INTERNAL, "bad assignment target");
    }
}

/* Renders body into a fresh buffer and returns it as a string value. */
static int capture(R *r, const node *body, frame *f, val *out) {
    sbuf buf = {0}, *saved = r->out;
    r->out = &buf;
    int rc = exec_body(r, body, f);
    r->out = saved;
    if (rc == CTL_ERR) {
        sb_free(&buf);
        return CTL_ERR;
    }
    return v_from_sbuf(r, body->line, &buf, out) ? CTL_OK : CTL_ERR;
}

static int exec_for(R *r, const node *n, frame *f) {
    val it;
    jlist *items;
    if (eval(r, n->b, f, &it)) return CTL_ERR;
    if (to_list(r, n->line, &it, &items)) return CTL_ERR;
    frame *lf = new_frame(r, n->line, f);
    if (!lf) return CTL_ERR;
    if (n->d) { /* `for x in y if cond`: filter first, so loop.length counts what remains */
        jlist *kept = new_list(r, n->line, 0);
        if (!kept) return CTL_ERR;
        for (size_t i = 0; i < items->n; i++) {
            val c;
            if (!step(r, n->line, 1)) return CTL_ERR;
            lf->n = 0;
            if (assign(r, n->a, lf, &items->v[i]) || eval(r, n->d, lf, &c)) return CTL_ERR;
            if (truthy(&c) && !list_push(r, n->line, kept, items->v[i])) return CTL_ERR;
        }
        items = kept;
    }
    loopctx *lc = ralloc(r, n->line, sizeof *lc);
    if (!lc) return CTL_ERR;
    lc->items = items;
    val loopv = {.t = V_LOOP};
    loopv.u.loop = lc;
    for (size_t i = 0; i < items->n; i++) {
        if (!step(r, n->line, 1)) return CTL_ERR;
        lc->index0 = i;
        lf->n = 0; /* each iteration starts with a fresh scope, as in Jinja2 */
        if (assign(r, n->a, lf, &items->v[i]) || !frame_set(r, n->line, lf, "loop", loopv)) return CTL_ERR;
        int rc = exec_body(r, n->c, lf);
        if (rc == CTL_ERR) return CTL_ERR;
        if (rc == CTL_BREAK) break;
    }
    if (items->n == 0 && n->nkw) {
        frame *ef = new_frame(r, n->line, f);
        if (!ef) return CTL_ERR;
        return exec_body(r, n->kwvals[0], ef);
    }
    return CTL_OK;
}

static int exec_stmt(R *r, const node *n, frame *f) {
    val v;
    switch (n->kind) {
    case N_BODY: return exec_body(r, n, f);
    case N_TEXT: return sb_put(r, r->out, n->str, n->len) ? CTL_OK : CTL_ERR;
    case N_OUTPUT:
        if (eval(r, n->a, f, &v)) return CTL_ERR;
        return put_val(r, r->out, &v, false, 0) ? CTL_OK : CTL_ERR;
    case N_FOR: return exec_for(r, n, f);
    case N_IF:
        if (eval(r, n->a, f, &v)) return CTL_ERR;
        if (truthy(&v)) return exec_body(r, n->b, f);
        if (n->c) return n->c->kind == N_IF ? exec_stmt(r, n->c, f) : exec_body(r, n->c, f);
        return CTL_OK;
    case N_SET:
        if (eval(r, n->b, f, &v)) return CTL_ERR;
        return assign(r, n->a, f, &v);
    case N_SETBLOCK:
        if (capture(r, n->b, f, &v)) return CTL_ERR;
        if (n->c && eval_filter_chain(r, n->c, f, &v, &v)) return CTL_ERR;
        return assign(r, n->a, f, &v);
    case N_MACRO:
    case N_CALLBLOCK: {
        macro *m = ralloc(r, n->line, sizeof *m);
        if (!m) return CTL_ERR;
        m->def = n;
        m->closure = f;
        m->name = n->kind == N_MACRO ? n->str : "caller";
        val mv = {.t = V_MACRO};
        mv.u.m = m;
        if (n->kind == N_MACRO) return frame_set(r, n->line, f, n->str, mv) ? CTL_OK : CTL_ERR;
        /* call block: evaluate the call with caller=<this body> */
        const node *call = n->b;
        val callee;
        args ar;
        if (eval(r, call->a, f, &callee) || eval_args(r, call, f, &ar, 0)) return CTL_ERR;
        ar.kwn[ar.nkw] = "caller";
        ar.kwv[ar.nkw++] = mv;
        if (call_value(r, n->line, &callee, &ar, &v)) return CTL_ERR;
        return put_val(r, r->out, &v, false, 0) ? CTL_OK : CTL_ERR;
    }
    case N_FILTERBLOCK:
        if (capture(r, n->a, f, &v) || eval_filter_chain(r, n->b, f, &v, &v)) return CTL_ERR;
        return put_val(r, r->out, &v, false, 0) ? CTL_OK : CTL_ERR;
    case N_WITH: {
        frame *wf = new_frame(r, n->line, f);
        if (!wf) return CTL_ERR;
        for (size_t i = 0; i < n->nargs; i++)
            if (eval(r, n->kwvals[i], f, &v) || assign(r, n->args[i], wf, &v)) return CTL_ERR;
        return exec_body(r, n->a, wf);
    }
    case N_BREAK: return CTL_BREAK;
    case N_CONTINUE: return CTL_CONTINUE;
    default: return rfail(r, n->line, VLMC_ERR_INTERNAL, "node %d is not a statement", (int)n->kind);
    }
}

static int exec_body(R *r, const node *body, frame *f) {
    if (++r->depth > MAX_EVAL_DEPTH) {
        r->depth--;
        return rfail(r, body->line, VLMC_ERR_LIMIT, "template recursion deeper than %d levels", MAX_EVAL_DEPTH);
    }
    int rc = CTL_OK;
    for (size_t i = 0; i < body->nargs && rc == CTL_OK; i++) rc = exec_stmt(r, body->args[i], f);
    r->depth--;
    return rc;
}

/* ---- entry point ------------------------------------------------------------------------------- */

static bool from_json(R *r, const cJSON *j, val *out, int depth) {
    if (depth > 200) return rfail(r, 0, VLMC_ERR_LIMIT, "context JSON nested too deeply"), false;
    if (cJSON_IsNull(j)) *out = v_none();
    else if (cJSON_IsTrue(j)) *out = v_bool(true);
    else if (cJSON_IsFalse(j)) *out = v_bool(false);
    else if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        /* cJSON keeps only a double: integral values that fit are ints unless marked as floats */
        if (!(j->type & JINJA_JSON_FLOAT) && d == floor(d) && fabs(d) < 9007199254740992.0) *out = v_int((int64_t)d);
        else *out = v_float(d);
    } else if (cJSON_IsString(j)) {
        const char *s = j->valuestring ? j->valuestring : "";
        *out = v_str(s, strlen(s)); /* lives as long as the cJSON tree, which outlives the render */
    } else if (cJSON_IsArray(j)) {
        jlist *l = new_list(r, 0, 0);
        if (!l) return false;
        for (const cJSON *c = j->child; c; c = c->next) {
            val x;
            if (!from_json(r, c, &x, depth + 1) || !list_push(r, 0, l, x)) return false;
        }
        *out = v_list(l);
    } else if (cJSON_IsObject(j)) {
        jdict *d = new_dict(r, 0);
        if (!d) return false;
        for (const cJSON *c = j->child; c; c = c->next) {
            val x;
            if (!from_json(r, c, &x, depth + 1)) return false;
            const char *k = c->string ? c->string : "";
            if (!dict_set(r, 0, d, v_str(k, strlen(k)), x)) return false;
        }
        *out = v_dict(d);
    } else {
        *out = v_none();
    }
    return true;
}

/* Numbers in document order: the text's number tokens and a pre-order walk of
 * the tree meet them in the same order. */
static void mark_floats(cJSON *node, const unsigned char *flags, size_t nflags, size_t *k) {
    for (; node; node = node->next) {
        if (cJSON_IsNumber(node)) {
            if (*k < nflags && flags[*k]) node->type |= JINJA_JSON_FLOAT;
            (*k)++;
        }
        if (node->child) mark_floats(node->child, flags, nflags, k);
    }
}

static size_t count_numbers(const cJSON *node) {
    size_t n = 0;
    for (; node; node = node->next) n += (cJSON_IsNumber(node) ? 1 : 0) + (node->child ? count_numbers(node->child) : 0);
    return n;
}

void jinja_mark_json_floats(const char *text, size_t len, cJSON *root) {
    if (!text || !root) return;
    size_t cap = 64, n = 0;
    unsigned char *flags = malloc(cap);
    if (!flags) return;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == '"') { /* skip a string */
            for (i++; i < len && text[i] != '"'; i++)
                if (text[i] == '\\') i++;
            continue;
        }
        if (c == '-' || (c >= '0' && c <= '9')) {
            bool fl = false;
            while (i < len && strchr("+-0123456789.eE", text[i])) fl |= text[i] == '.' || text[i] == 'e' || text[i] == 'E', i++;
            i--;
            if (n == cap) {
                unsigned char *nf = realloc(flags, cap * 2);
                if (!nf) {
                    free(flags);
                    return;
                }
                flags = nf;
                cap *= 2;
            }
            flags[n++] = fl;
        }
    }
    /* only when the counts agree (they always should) is the mapping trusted */
    if (count_numbers(root) == n) {
        size_t k = 0;
        if (cJSON_IsNumber(root) && n) {
            if (flags[0]) root->type |= JINJA_JSON_FLOAT;
            k = 1;
        }
        mark_floats(root->child, flags, n, &k);
    }
    free(flags);
}

vlmc_status jinja_render(const jinja_template *t, const cJSON *vars, const jinja_options *opt, char **out,
                         size_t *out_len, vlmc_error *err) {
    *out = NULL;
    if (out_len) *out_len = 0;
    if (!t) return vlmc_fail(err, VLMC_ERR_ARG, "jinja_render: no template");
    jinja_options o = opt ? *opt : (jinja_options){0};
    R r;
    memset(&r, 0, sizeof r);
    jpool_init(&r.pool, o.max_memory ? o.max_memory : DEF_MAX_MEMORY);
    r.err = err;
    r.tname = t->name;
    r.max_output = o.max_output ? o.max_output : DEF_MAX_OUTPUT;
    r.max_steps = o.max_steps ? o.max_steps : DEF_MAX_STEPS;
    r.now = o.now;
    sbuf buf = {0};
    r.out = &buf;
    vlmc_status st = VLMC_OK;
    frame *root = new_frame(&r, 0, NULL);
    if (!root) goto fail;
    if (vars && !cJSON_IsObject(vars)) {
        rfail(&r, 0, VLMC_ERR_ARG, "template variables must be a JSON object");
        goto fail;
    }
    for (const cJSON *c = vars ? vars->child : NULL; c; c = c->next) {
        val v;
        if (!c->string || !from_json(&r, c, &v, 0) || !frame_set(&r, 0, root, c->string, v)) goto fail;
    }
    if (exec_body(&r, t->root, root) != CTL_OK) goto fail;
    if (!buf.p && !sb_put(&r, &buf, "", 0)) goto fail;
    if (!buf.p) {
        buf.p = malloc(1);
        if (!buf.p) {
            rfail(&r, 0, VLMC_ERR_NOMEM, "out of memory");
            goto fail;
        }
        buf.p[0] = '\0';
    }
    *out = buf.p;
    if (out_len) *out_len = buf.n;
    jpool_free(&r.pool);
    return VLMC_OK;
fail:
    if (!r.failed) rfail(&r, 0, VLMC_ERR_LIMIT, "out of memory");
    st = r.code;
    sb_free(&buf);
    jpool_free(&r.pool);
    return st;
}
