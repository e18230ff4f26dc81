/* Captioning: the PTB tokenization step (approximated), BLEU-1..4 and CIDEr-D
 * as pycocoevalcap computes them. See metrics.h for the definitions. */
#include "eval/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"
#include "core/utf8.h"
#include "eval/text.h"

/* ---- tokenizer ----------------------------------------------------------------- */

static bool ascii_alnum(uint32_t c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_apostrophe(uint32_t c) { return c == '\'' || c == 0x2019; }
/* Letters, digits and (as a simplification) every non-ASCII code point that is
 * not a quote, dash or ellipsis. */
static bool word_cp(uint32_t c) {
    if (c < 0x80) return ascii_alnum(c);
    if (c == 0x2018 || c == 0x2019 || c == 0x201c || c == 0x201d || c == 0x2026 || c == 0x2013 || c == 0x2014)
        return false;
    return !evtext_is_space(c);
}

/* Code point at s[i] (0 past the end). */
static uint32_t cp_at(const uint32_t *s, size_t n, size_t i) { return i < n ? s[i] : 0; }

static void emit(strbuf *b, const uint32_t *s, size_t from, size_t to) {
    if (to <= from) return;
    if (b->len) strbuf_append(b, " ", 1);
    for (size_t i = from; i < to; i++) {
        char enc[4];
        uint32_t c = s[i];
        if (c == 0x2019) c = '\'';
        size_t l = c <= 0x10ffff ? utf8_encode(c, enc) : 0;
        if (l) strbuf_append(b, enc, l);
        else {
            char raw = (char)(c - 0x110000u);
            strbuf_append(b, &raw, 1);
        }
    }
}

static void emit_lit(strbuf *b, const char *lit) {
    if (b->len) strbuf_append(b, " ", 1);
    strbuf_puts(b, lit);
}

/* Length of a clitic 's 'm 'd 're 've 'll at s[i] (an apostrophe) that ends the
 * word, or 0. */
static size_t clitic_at(const uint32_t *s, size_t n, size_t i) {
    static const char *const cl[] = {"s", "m", "d", "re", "ve", "ll"};
    for (size_t k = 0; k < sizeof cl / sizeof cl[0]; k++) {
        size_t l = strlen(cl[k]), j = 0;
        while (j < l && cp_at(s, n, i + 1 + j) == (uint32_t)cl[k][j]) j++;
        if (j == l && !word_cp(cp_at(s, n, i + 1 + l))) return l + 1;
    }
    return 0;
}

/* Emits one word s[from..to), splitting cannot / gonna / gotta / wanna as PTB does. */
static void emit_word(strbuf *b, const uint32_t *s, size_t from, size_t to) {
    static const char *const split2[][2] = {{"cannot", "can"}, {"gonna", "gon"}, {"gotta", "got"}, {"wanna", "wan"}};
    for (size_t k = 0; k < sizeof split2 / sizeof split2[0]; k++) {
        size_t l = strlen(split2[k][0]);
        if (to - from != l) continue;
        size_t j = 0;
        while (j < l && s[from + j] == (uint32_t)split2[k][0][j]) j++;
        if (j < l) continue;
        size_t cut = strlen(split2[k][1]);
        emit(b, s, from, from + cut);
        emit(b, s, from + cut, to);
        return;
    }
    emit(b, s, from, to);
}

vlmc_status caption_ptb_tokenize(const char *text, char **out, vlmc_error *err) {
    if (!text || !out) return vlmc_fail(err, VLMC_ERR_ARG, "caption tokenize: NULL argument");
    *out = NULL;
    size_t n = strlen(text), m = 0;
    uint32_t *s = malloc((n + 1) * sizeof *s);
    if (!s) return vlmc_fail(err, VLMC_ERR_NOMEM, "caption tokenize: out of memory");
    for (size_t i = 0; i < n;) {
        uint32_t c;
        i += evtext_next(text + i, n - i, &c);
        s[m++] = evtext_lower(c);
    }
    strbuf b = {0};
    size_t i = 0;
    while (i < m) {
        uint32_t c = s[i];
        if (evtext_is_space(c)) {
            i++;
        } else if (word_cp(c)) {
            size_t start = i;
            while (i < m) {
                uint32_t d = s[i];
                if (word_cp(d)) {
                    i++;
                    continue;
                }
                uint32_t prev = i > start ? s[i - 1] : 0, next = cp_at(s, m, i + 1);
                if ((d == '-' || d == '/' || d == '&') && word_cp(next)) {
                    i++;
                } else if (d == '.' && ascii_alnum(prev) && ascii_alnum(next)) {
                    i++;
                } else if (d == ',' && prev >= '0' && prev <= '9' && next >= '0' && next <= '9') {
                    i++;
                } else if (is_apostrophe(d)) {
                    if (prev == 'n' && cp_at(s, m, i + 1) == 't' && !word_cp(cp_at(s, m, i + 2)) && i - 1 > start) {
                        emit_word(&b, s, start, i - 1); /* "don't" -> "do" "n't" */
                        emit_lit(&b, "n't");
                        i += 2;
                        start = i;
                        break;
                    }
                    size_t cl = clitic_at(s, m, i);
                    if (cl) {
                        emit_word(&b, s, start, i); /* "it's" -> "it" "'s" */
                        emit(&b, s, i, i + cl);
                        i += cl;
                        start = i;
                        break;
                    }
                    if (word_cp(next)) i++; /* o'clock */
                    else break;
                } else {
                    break;
                }
            }
            if (i > start) emit_word(&b, s, start, i);
        } else if (c < 0x80 && c && strchr("()[]{}", (int)c)) {
            /* PTB3 escaping turns brackets into -LRB- .. -RCB-, and -lowerCase is
             * applied after it (PTBTokenizer.tokReader), so the lower-case forms
             * never match PUNCTUATIONS' "-LRB-" etc.: they stay as words. */
            static const char *const esc[] = {"-lrb-", "-rrb-", "-lsb-", "-rsb-", "-lcb-", "-rcb-"};
            emit_lit(&b, esc[strchr("()[]{}", (int)c) - "()[]{}"]);
            i++;
        } else if (c < 0x80 && strchr("&$%#*+=/@^~|<>\\", (int)c) && c) {
            emit(&b, s, i, i + 1); /* a symbol PTB keeps as its own token */
            i++;
        } else {
            /* Dropped: quotes, apostrophes, . , ? ! : ; - and runs of dots or dashes
             * (PTB's tokens for them are in PUNCTUATIONS), and other marks. */
            i++;
        }
    }
    free(s);
    if (b.failed) {
        strbuf_free(&b);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "caption tokenize: out of memory");
    }
    *out = b.len ? strbuf_take(&b) : strdup("");
    if (!*out) return vlmc_fail(err, VLMC_ERR_NOMEM, "caption tokenize: out of memory");
    return VLMC_OK;
}

/* ---- n-gram interning ------------------------------------------------------------ */

typedef struct slot {
    uint64_t h;
    size_t off;
    uint32_t len;
    uint32_t id1; /* id + 1; 0 = empty */
} slot;

/* Maps byte strings (words, or arrays of word ids) to dense ids. */
typedef struct intern {
    slot *slots;
    size_t cap, count;
    char *pool;
    size_t pool_len, pool_cap;
    uint8_t *order; /* [count] n-gram order (1..4) for n-gram tables */
    size_t order_cap;
} intern;

static uint64_t fnv(const void *p, size_t n) {
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static void intern_free(intern *t) {
    free(t->slots);
    free(t->pool);
    free(t->order);
    memset(t, 0, sizeof *t);
}

static bool intern_grow(intern *t) {
    size_t cap = t->cap ? t->cap * 2 : 1024;
    slot *s = calloc(cap, sizeof *s);
    if (!s) return false;
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->slots[i].id1) continue;
        size_t j = t->slots[i].h & (cap - 1);
        while (s[j].id1) j = (j + 1) & (cap - 1);
        s[j] = t->slots[i];
    }
    free(t->slots);
    t->slots = s;
    t->cap = cap;
    return true;
}

/* The id of key[0..len), added when new (with n-gram order `order`); -1 when out of memory. */
static int64_t intern_id(intern *t, const void *key, uint32_t len, uint8_t order) {
    if ((t->count + 1) * 2 > t->cap && !intern_grow(t)) return -1;
    uint64_t h = fnv(key, len);
    size_t j = h & (t->cap - 1);
    while (t->slots[j].id1) {
        slot *s = &t->slots[j];
        if (s->h == h && s->len == len && memcmp(t->pool + s->off, key, len) == 0) return s->id1 - 1;
        j = (j + 1) & (t->cap - 1);
    }
    if (t->count >= UINT32_MAX - 1) return -1;
    if (t->pool_len + len > t->pool_cap) {
        size_t cap = t->pool_cap ? t->pool_cap : 4096;
        while (cap < t->pool_len + len) cap *= 2;
        char *p = realloc(t->pool, cap);
        if (!p) return -1;
        t->pool = p;
        t->pool_cap = cap;
    }
    if (t->count >= t->order_cap) {
        size_t cap = t->order_cap ? t->order_cap * 2 : 1024;
        uint8_t *o = realloc(t->order, cap);
        if (!o) return -1;
        t->order = o;
        t->order_cap = cap;
    }
    if (len) memcpy(t->pool + t->pool_len, key, len);
    t->slots[j] = (slot){h, t->pool_len, len, (uint32_t)(t->count + 1)};
    t->order[t->count] = order;
    t->pool_len += len;
    return (int64_t)t->count++;
}

/* A sentence as pycocoevalcap's precook sees it: counts of its 1..4-grams. */
typedef struct cooked {
    uint32_t *id;    /* distinct n-gram ids, ascending */
    uint32_t *count; /* their counts */
    size_t n;
    size_t words;
} cooked;

typedef struct corpus {
    intern words, grams;
    uint32_t *ids;   /* scratch: word ids of a sentence */
    size_t ids_cap;
} corpus;

static void cooked_free(cooked *c) {
    free(c->id);
    free(c->count);
    memset(c, 0, sizeof *c);
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static vlmc_status cook(corpus *cp, const char *s, cooked *out, vlmc_error *err) {
    memset(out, 0, sizeof *out);
    if (!s) return vlmc_fail(err, VLMC_ERR_ARG, "caption: NULL sentence");
    size_t n = strlen(s), pos = 0, ws, wl, w = 0;
    while (evtext_next_word(s, n, &pos, &ws, &wl)) {
        if (w >= cp->ids_cap) {
            size_t cap = cp->ids_cap ? cp->ids_cap * 2 : 64;
            uint32_t *p = realloc(cp->ids, cap * sizeof *p);
            if (!p) return vlmc_fail(err, VLMC_ERR_NOMEM, "caption: out of memory");
            cp->ids = p;
            cp->ids_cap = cap;
        }
        if (wl > UINT32_MAX) return vlmc_fail(err, VLMC_ERR_LIMIT, "caption: word too long");
        int64_t id = intern_id(&cp->words, s + ws, (uint32_t)wl, 1);
        if (id < 0) return vlmc_fail(err, VLMC_ERR_NOMEM, "caption: out of memory");
        cp->ids[w++] = (uint32_t)id;
    }
    out->words = w;
    size_t total = 0;
    for (size_t k = 1; k <= 4; k++) total += w >= k ? w - k + 1 : 0;
    uint32_t *g = malloc((total ? total : 1) * sizeof *g);
    out->id = malloc((total ? total : 1) * sizeof *out->id);
    out->count = malloc((total ? total : 1) * sizeof *out->count);
    if (!g || !out->id || !out->count) {
        free(g);
        cooked_free(out);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "caption: out of memory");
    }
    size_t m = 0;
    for (size_t k = 1; k <= 4; k++)
        for (size_t i = 0; i + k <= w; i++) {
            int64_t id = intern_id(&cp->grams, cp->ids + i, (uint32_t)(k * sizeof(uint32_t)), (uint8_t)k);
            if (id < 0) {
                free(g);
                cooked_free(out);
                return vlmc_fail(err, VLMC_ERR_NOMEM, "caption: out of memory");
            }
            g[m++] = (uint32_t)id;
        }
    qsort(g, m, sizeof *g, cmp_u32);
    for (size_t i = 0; i < m; i++) {
        if (out->n && out->id[out->n - 1] == g[i]) out->count[out->n - 1]++;
        else out->id[out->n] = g[i], out->count[out->n++] = 1;
    }
    free(g);
    return VLMC_OK;
}

static void corpus_free(corpus *c) {
    intern_free(&c->words);
    intern_free(&c->grams);
    free(c->ids);
}

static vlmc_status check_items(const caption_item *items, size_t n, const char *what, vlmc_error *err) {
    if (n == 0 || !items) return vlmc_fail(err, VLMC_ERR_ARG, "%s: no captions", what);
    for (size_t i = 0; i < n; i++) {
        if (!items[i].candidate || !items[i].refs || items[i].n_refs == 0)
            return vlmc_fail(err, VLMC_ERR_ARG, "%s: item %zu needs a candidate and references", what, i);
        for (size_t r = 0; r < items[i].n_refs; r++)
            if (!items[i].refs[r]) return vlmc_fail(err, VLMC_ERR_ARG, "%s: item %zu reference %zu is NULL", what, i, r);
    }
    return VLMC_OK;
}

/* ---- BLEU ------------------------------------------------------------------------ */

typedef struct idcount {
    uint32_t id, count;
} idcount;

static int cmp_idcount(const void *a, const void *b) {
    uint32_t x = ((const idcount *)a)->id, y = ((const idcount *)b)->id;
    return x < y ? -1 : x > y;
}

/* cook_refs: the references' lengths and, per n-gram, its largest count in any
 * one reference (sorted by id, duplicates folded). */
static vlmc_status cook_refs(corpus *cp, const caption_item *c, size_t test_words, idcount **max_out, size_t *n_out,
                             size_t *closest, vlmc_error *err) {
    *max_out = NULL;
    *n_out = 0;
    idcount *all = NULL;
    size_t n = 0, cap = 0;
    long best_diff = -1;
    vlmc_status st = VLMC_OK;
    for (size_t r = 0; r < c->n_refs && st == VLMC_OK; r++) {
        cooked ref;
        st = cook(cp, c->refs[r], &ref, err);
        if (st != VLMC_OK) break;
        /* eff == "closest": min over (|l - testlen|, l) */
        long diff = labs((long)ref.words - (long)test_words);
        if (best_diff < 0 || diff < best_diff || (diff == best_diff && ref.words < *closest))
            best_diff = diff, *closest = ref.words;
        if (n + ref.n > cap) {
            size_t ncap = (n + ref.n) * 2;
            idcount *p = realloc(all, ncap * sizeof *p);
            if (!p) st = vlmc_fail(err, VLMC_ERR_NOMEM, "bleu: out of memory");
            else all = p, cap = ncap;
        }
        for (size_t k = 0; k < ref.n && st == VLMC_OK; k++) all[n++] = (idcount){ref.id[k], ref.count[k]};
        cooked_free(&ref);
    }
    if (st != VLMC_OK) {
        free(all);
        return st;
    }
    if (n > 1) qsort(all, n, sizeof *all, cmp_idcount);
    size_t m = 0;
    for (size_t k = 0; k < n; k++) {
        if (m && all[m - 1].id == all[k].id) {
            if (all[k].count > all[m - 1].count) all[m - 1].count = all[k].count;
        } else {
            all[m++] = all[k];
        }
    }
    *max_out = all;
    *n_out = m;
    return VLMC_OK;
}

vlmc_status caption_bleu(const caption_item *items, size_t n, double bleu[4], vlmc_error *err) {
    vlmc_status st = check_items(items, n, "bleu", err);
    if (st != VLMC_OK) return st;
    corpus cp = {0};
    double correct[4] = {0}, guess[4] = {0}, testlen = 0, reflen = 0;
    for (size_t it = 0; it < n && st == VLMC_OK; it++) {
        cooked test;
        st = cook(&cp, items[it].candidate, &test, err);
        if (st != VLMC_OK) break;
        idcount *mx = NULL;
        size_t mn = 0, closest = 0;
        st = cook_refs(&cp, &items[it], test.words, &mx, &mn, &closest, err);
        if (st == VLMC_OK) {
            testlen += (double)test.words;
            reflen += (double)closest;
            for (int k = 0; k < 4; k++) guess[k] += test.words > (size_t)k ? (double)(test.words - (size_t)k) : 0.0;
            /* correct[n] += min(count in the candidate, max count in one reference) */
            size_t b = 0;
            for (size_t a = 0; a < test.n; a++) {
                while (b < mn && mx[b].id < test.id[a]) b++;
                if (b < mn && mx[b].id == test.id[a]) {
                    uint32_t m = mx[b].count < test.count[a] ? mx[b].count : test.count[a];
                    correct[cp.grams.order[test.id[a]] - 1] += m;
                }
            }
        }
        free(mx);
        cooked_free(&test);
    }
    corpus_free(&cp);
    if (st != VLMC_OK) return st;
    const double tiny = 1e-15, small = 1e-9; /* bleu_scorer.py's smoothing terms */
    double prod = 1.0;
    for (int k = 0; k < 4; k++) {
        prod *= (correct[k] + tiny) / (guess[k] + small);
        bleu[k] = pow(prod, 1.0 / (k + 1));
    }
    double ratio = (testlen + tiny) / (reflen + small);
    if (ratio < 1)
        for (int k = 0; k < 4; k++) bleu[k] *= exp(1 - 1 / ratio);
    return VLMC_OK;
}

/* ---- CIDEr-D ------------------------------------------------------------------------ */

typedef struct tfidf {
    double *val; /* per distinct n-gram of the cooked sentence */
    double norm[4];
    double length; /* number of bigrams, as cider_scorer.py counts "length" */
} tfidf;

static vlmc_status to_vec(const cooked *c, const intern *grams, const double *df, double ref_len, tfidf *v,
                          vlmc_error *err) {
    memset(v, 0, sizeof *v);
    v->val = malloc((c->n ? c->n : 1) * sizeof *v->val);
    if (!v->val) return vlmc_fail(err, VLMC_ERR_NOMEM, "cider: out of memory");
    for (size_t i = 0; i < c->n; i++) {
        double d = df[c->id[i]];
        double w = (double)c->count[i] * (ref_len - log(d > 1.0 ? d : 1.0));
        int k = grams->order[c->id[i]] - 1;
        v->val[i] = w;
        v->norm[k] += w * w;
        if (k == 1) v->length += c->count[i];
    }
    for (int k = 0; k < 4; k++) v->norm[k] = sqrt(v->norm[k]);
    return VLMC_OK;
}

vlmc_status caption_cider_d(const caption_item *items, size_t n, double *score, double *per_item,
                            vlmc_error *err) {
    if (!score) return vlmc_fail(err, VLMC_ERR_ARG, "cider: no output");
    *score = 0.0;
    vlmc_status st = check_items(items, n, "cider", err);
    if (st != VLMC_OK) return st;
    const double sigma = 6.0;
    corpus cp = {0};
    size_t total_refs = 0;
    for (size_t i = 0; i < n; i++) total_refs += items[i].n_refs;
    cooked *test = calloc(n, sizeof *test), *refs = calloc(total_refs, sizeof *refs);
    double *df = NULL;
    uint32_t *seen = NULL;
    if (!test || !refs) {
        st = vlmc_fail(err, VLMC_ERR_NOMEM, "cider: out of memory");
        goto done;
    }
    size_t r0 = 0;
    for (size_t i = 0; i < n && st == VLMC_OK; i++) {
        st = cook(&cp, items[i].candidate, &test[i], err);
        for (size_t r = 0; r < items[i].n_refs && st == VLMC_OK; r++) st = cook(&cp, items[i].refs[r], &refs[r0 + r], err);
        r0 += items[i].n_refs;
    }
    if (st != VLMC_OK) goto done;
    /* Document frequency: in how many images' references each n-gram occurs. */
    size_t ng = cp.grams.count;
    df = calloc(ng ? ng : 1, sizeof *df);
    seen = calloc(ng ? ng : 1, sizeof *seen); /* last image (1-based) that counted the n-gram */
    if (!df || !seen) {
        st = vlmc_fail(err, VLMC_ERR_NOMEM, "cider: out of memory");
        goto done;
    }
    r0 = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t r = 0; r < items[i].n_refs; r++) {
            const cooked *c = &refs[r0 + r];
            for (size_t k = 0; k < c->n; k++)
                if (seen[c->id[k]] != (uint32_t)(i + 1)) seen[c->id[k]] = (uint32_t)(i + 1), df[c->id[k]] += 1.0;
        }
        r0 += items[i].n_refs;
    }
    double ref_len = log((double)n), sum = 0.0;
    r0 = 0;
    for (size_t i = 0; i < n && st == VLMC_OK; i++) {
        tfidf vh, vr;
        st = to_vec(&test[i], &cp.grams, df, ref_len, &vh, err);
        if (st != VLMC_OK) break;
        double acc[4] = {0};
        for (size_t r = 0; r < items[i].n_refs && st == VLMC_OK; r++) {
            const cooked *cr = &refs[r0 + r];
            st = to_vec(cr, &cp.grams, df, ref_len, &vr, err);
            if (st != VLMC_OK) break;
            double val[4] = {0};
            size_t b = 0;
            for (size_t a = 0; a < test[i].n; a++) {
                while (b < cr->n && cr->id[b] < test[i].id[a]) b++;
                if (b < cr->n && cr->id[b] == test[i].id[a]) {
                    double h = vh.val[a], rv = vr.val[b];
                    val[cp.grams.order[test[i].id[a]] - 1] += (h < rv ? h : rv) * rv;
                }
            }
            double delta = vh.length - vr.length;
            for (int k = 0; k < 4; k++) {
                if (vh.norm[k] != 0 && vr.norm[k] != 0) val[k] /= vh.norm[k] * vr.norm[k];
                val[k] *= exp(-(delta * delta) / (2 * sigma * sigma));
                acc[k] += val[k];
            }
            free(vr.val);
        }
        free(vh.val);
        if (st != VLMC_OK) break;
        double s = (acc[0] + acc[1] + acc[2] + acc[3]) / 4.0;
        s = s / (double)items[i].n_refs * 10.0;
        if (per_item) per_item[i] = s;
        sum += s;
        r0 += items[i].n_refs;
    }
    if (st == VLMC_OK) *score = sum / (double)n;
done:
    if (test)
        for (size_t i = 0; i < n; i++) cooked_free(&test[i]);
    if (refs)
        for (size_t i = 0; i < total_refs; i++) cooked_free(&refs[i]);
    free(test);
    free(refs);
    free(df);
    free(seen);
    corpus_free(&cp);
    return st;
}
