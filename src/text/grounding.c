/* Grounded answers: KOSMOS-2 markup both ways, Qwen-VL / Qwen2-VL / bracketed boxes. See grounding.h.
 *
 * The KOSMOS-2 half follows transformers 4.47 processing_kosmos2.py line by line on code points (Python str
 * semantics): re "<.*?>" ('.' is anything but '\n'), "\d" = Unicode decimal digits, str.strip() whitespace,
 * int() of any length (up to Python's 4300-digit limit) and float(int) correctly rounded. */
#include "text/grounding.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "core/strbuf.h"
#include "core/utf8.h"

enum { PY_INT_MAX_DIGITS = 4300, GRID_MAX = 1 << 15 };

/* ---- code points ------------------------------------------------------------------------------------- */

typedef struct cps {
    uint32_t *c;
    size_t n, cap;
} cps;

static bool cps_push(cps *s, uint32_t c) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        uint32_t *p = realloc(s->c, cap * sizeof *p);
        if (!p) return false;
        s->c = p;
        s->cap = cap;
    }
    s->c[s->n++] = c;
    return true;
}

static bool cps_push_ascii(cps *s, const char *a) {
    for (; *a; a++)
        if (!cps_push(s, (unsigned char)*a)) return false;
    return true;
}

static vlmc_status decode(const char *text, size_t len, cps *out, vlmc_error *err) {
    memset(out, 0, sizeof *out);
    if (!cps_push(out, 0)) return vlmc_fail(err, VLMC_ERR_NOMEM, "grounding: out of memory");
    out->n = 0; /* never a NULL array, even for an empty text */
    for (size_t i = 0; i < len;) {
        uint32_t c;
        size_t l = utf8_decode(text + i, len - i, &c);
        if (!l) {
            free(out->c);
            return vlmc_fail(err, VLMC_ERR_ARG, "grounding: the text is not valid UTF-8 (at byte %zu)", i);
        }
        if (!cps_push(out, c)) {
            free(out->c);
            return vlmc_fail(err, VLMC_ERR_NOMEM, "grounding: out of memory");
        }
        i += l;
    }
    return VLMC_OK;
}

/* c[0..n) as a malloc'ed UTF-8 string */
static char *encode(const uint32_t *c, size_t n) {
    strbuf b = {0};
    char u[4];
    for (size_t i = 0; i < n; i++) strbuf_append(&b, u, utf8_encode(c[i], u));
    strbuf_puts(&b, "");
    if (b.failed) {
        strbuf_free(&b);
        return NULL;
    }
    return strbuf_take(&b);
}

/* c[i..) starts with the ASCII string lit */
static bool at(const uint32_t *c, size_t n, size_t i, const char *lit) {
    for (; *lit; lit++, i++)
        if (i >= n || c[i] != (unsigned char)*lit) return false;
    return true;
}

/* Python's "\d" and int(): the value of a Unicode decimal digit (category Nd), or -1. Nd characters come in runs of
 * whole 0..9 sets, so the value is the distance from the start of the run, modulo 10. */
static int digit_value(uint32_t c) {
    if (c >= '0' && c <= '9') return (int)(c - '0');
    if (c < 0x80 || c > 0x10ffff || utf8proc_category((utf8proc_int32_t)c) != UTF8PROC_CATEGORY_ND) return -1;
    uint32_t first = c;
    while (first > 0 && utf8proc_category((utf8proc_int32_t)(first - 1)) == UTF8PROC_CATEGORY_ND) first--;
    return (int)((c - first) % 10);
}

static size_t lstrip_count(const uint32_t *c, size_t n) {
    size_t k = 0;
    while (k < n && utf8_is_py_space(c[k])) k++;
    return k;
}

static size_t rstrip_count(const uint32_t *c, size_t n) {
    size_t k = 0;
    while (k < n && utf8_is_py_space(c[n - 1 - k])) k++;
    return k;
}

/* re.sub("<.*?>", "", c[0..k)): writes what is kept into out (may be NULL) and returns its length */
static size_t remove_special(const uint32_t *c, size_t k, uint32_t *out) {
    size_t m = 0;
    for (size_t i = 0; i < k;) {
        if (c[i] == '<') {
            size_t j = i + 1;
            while (j < k && c[j] != '>' && c[j] != '\n') j++;
            if (j < k && c[j] == '>') {
                i = j + 1;
                continue;
            }
        }
        if (out) out[m] = c[i];
        m++;
        i++;
    }
    return m;
}

/* ---- KOSMOS-2 patch indices -------------------------------------------------------------------------- */

/* A patch index as Python's int(...) of a "\d+" run: its decimal digits (no leading zeros), index // n and
 * index % n exactly, and float(index // n). */
typedef struct patch_index {
    char *digits, *quot;
    int rem;
    double quot_f;
} patch_index;

static void patch_index_free(patch_index *p) {
    free(p->digits);
    free(p->quot);
    memset(p, 0, sizeof *p);
}

static vlmc_status patch_index_read(const uint32_t *c, size_t from, size_t to, int grid, patch_index *out,
                                    vlmc_error *err) {
    memset(out, 0, sizeof *out);
    if (to - from > PY_INT_MAX_DIGITS)
        return vlmc_fail(err, VLMC_ERR_LIMIT,
                         "kosmos-2: a patch index of %zu digits (Python's int() refuses more than %d)", to - from,
                         PY_INT_MAX_DIGITS);
    size_t n = to - from;
    out->digits = malloc(n + 2);
    out->quot = malloc(n + 2);
    if (!out->digits || !out->quot) {
        patch_index_free(out);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "grounding: out of memory");
    }
    size_t nd = 0, nq = 0;
    long r = 0;
    for (size_t i = from; i < to; i++) {
        int d = digit_value(c[i]);
        if (nd || d) out->digits[nd++] = (char)('0' + d);
        r = r * 10 + d; /* long division by the grid side */
        int q = (int)(r / grid);
        r %= grid;
        if (nq || q) out->quot[nq++] = (char)('0' + q);
    }
    if (!nd) out->digits[nd++] = '0';
    if (!nq) out->quot[nq++] = '0';
    out->digits[nd] = out->quot[nq] = 0;
    out->rem = (int)r;
    out->quot_f = strtod(out->quot, NULL); /* correctly rounded, as float(int) */
    if (isinf(out->quot_f)) {
        patch_index_free(out);
        return vlmc_fail(err, VLMC_ERR_LIMIT, "kosmos-2: a patch index too large to convert to float");
    }
    return VLMC_OK;
}

/* patch_index_to_coordinate on row/column parts */
static gbox patches_to_box(double ul_x, double ul_y, double lr_x, double lr_y, bool corners, int grid) {
    const double cell = 1.0 / grid;
    if (corners) return (gbox){ul_x * cell, ul_y * cell, lr_x * cell + cell, lr_y * cell + cell};
    return (gbox){ul_x * cell + cell / 2, ul_y * cell + cell / 2, lr_x * cell + cell / 2, lr_y * cell + cell / 2};
}

gbox kosmos2_patches_to_box(long long ul, long long lr, int grid) {
    long long ulx = ul % grid, uly = ul / grid, lrx = lr % grid, lry = lr / grid;
    return patches_to_box((double)ulx, (double)uly, (double)lrx, (double)lry, ul == lr || ulx == lrx || uly == lry, grid);
}

vlmc_status kosmos2_box_to_patches(gbox b, int grid, long long *ul, long long *lr, vlmc_error *err) {
    const double lim = 4503599627370496.0; /* 2^52 */
    double v[4] = {floor(b.x1 * grid), floor(b.y1 * grid), ceil(b.x2 * grid - 1), ceil(b.y2 * grid - 1)};
    for (int i = 0; i < 4; i++)
        if (!(fabs(v[i]) < lim / (grid + 1)))
            return vlmc_fail(err, VLMC_ERR_ARG, "kosmos-2: box coordinate %g is not finite or too large", v[i]);
    *ul = (long long)v[1] * grid + (long long)v[0];
    *lr = (long long)v[3] * grid + (long long)v[2];
    return VLMC_OK;
}

/* ---- KOSMOS-2 markup → text + entities --------------------------------------------------------------- */

typedef struct span {
    size_t from, to;
} span;

/* "<patch_index_\d+>" at c[i..): the digit run, the end, or 0 */
static size_t patch_token(const uint32_t *c, size_t n, size_t i, span *d) {
    if (!at(c, n, i, "<patch_index_")) return 0;
    size_t j = i + 13;
    d->from = j;
    while (j < n && digit_value(c[j]) >= 0) j++;
    if (j == d->from || j >= n || c[j] != '>') return 0;
    d->to = j;
    return j + 1;
}

typedef struct pairs {
    span *a; /* 2 per box */
    size_t n, cap;
} pairs;

/* "<object>" PAIR ("</delimiter_of_multi_objects/>" PAIR)* "</object>" at c[i..): its end, or 0. The regex's
 * (PAIR DELIM)* PAIR cannot match otherwise whatever it backtracks. */
static size_t object_at(const uint32_t *c, size_t n, size_t i, pairs *p, bool *nomem) {
    p->n = 0;
    if (!at(c, n, i, "<object>")) return 0;
    i += 8;
    for (;;) {
        span a, b;
        size_t j = patch_token(c, n, i, &a), k = j ? patch_token(c, n, j, &b) : 0;
        if (!k) return 0;
        if (p->n + 2 > p->cap) {
            size_t cap = p->cap ? 2 * p->cap : 8;
            span *q = realloc(p->a, cap * sizeof *q);
            if (!q) {
                *nomem = true;
                return 0;
            }
            p->a = q;
            p->cap = cap;
        }
        p->a[p->n++] = a;
        p->a[p->n++] = b;
        if (at(c, n, k, "</object>")) return k + 9;
        if (!at(c, n, k, "</delimiter_of_multi_objects/>")) return 0;
        i = k + 30;
    }
}

typedef struct raw_entity {
    cps name;
    long start, end; /* in the caption's code points */
    bool has_phrase;
    gbox *boxes;
    size_t n_boxes;
} raw_entity;

static void entity_free(kosmos2_entity *e) {
    free(e->phrase);
    free(e->boxes);
}

void kosmos2_parsed_free(kosmos2_parsed *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n_entities; i++) entity_free(&p->entities[i]);
    free(p->entities);
    free(p->text);
    memset(p, 0, sizeof *p);
}

/* The boxes of one object's pairs (patch_index_to_coordinate) into e->boxes. */
static vlmc_status object_boxes(const uint32_t *c, const span *sp, size_t n_sp, int grid, gbox *boxes,
                                vlmc_error *err) {
    for (size_t k = 0; k + 1 < n_sp; k += 2) {
        patch_index ul, lr;
        vlmc_status s = patch_index_read(c, sp[k].from, sp[k].to, grid, &ul, err);
        if (s) return s;
        if ((s = patch_index_read(c, sp[k + 1].from, sp[k + 1].to, grid, &lr, err))) {
            patch_index_free(&ul);
            return s;
        }
        bool corners = !strcmp(ul.digits, lr.digits) || ul.rem == lr.rem || !strcmp(ul.quot, lr.quot);
        boxes[k / 2] = patches_to_box(ul.rem, ul.quot_f, lr.rem, lr.quot_f, corners, grid);
        patch_index_free(&ul);
        patch_index_free(&lr);
    }
    return VLMC_OK;
}

/* Appends one entity (a copy of name) to out. */
static vlmc_status add_entity(kosmos2_parsed *out, size_t *cap, const uint32_t *name, size_t name_n, long start,
                              long end, gbox *boxes, size_t n_boxes, vlmc_error *err) {
    if (out->n_entities == *cap) {
        size_t nc = *cap ? 2 * *cap : 8;
        kosmos2_entity *e = realloc(out->entities, nc * sizeof *e);
        if (!e) return vlmc_fail(err, VLMC_ERR_NOMEM, "grounding: out of memory");
        out->entities = e;
        *cap = nc;
    }
    /* cleanup_spaces for the name: strip it, move the span by what was stripped (the caller moved it by the text's
     * leading spaces already) */
    size_t lead = lstrip_count(name, name_n), trail = rstrip_count(name, name_n);
    size_t keep = lead + trail >= name_n ? 0 : name_n - lead - trail;
    kosmos2_entity *e = &out->entities[out->n_entities];
    e->phrase = encode(name + (keep ? lead : 0), keep);
    e->start = start + (long)lead;
    e->end = end - (long)trail;
    e->boxes = boxes;
    e->n_boxes = n_boxes;
    if (!e->phrase) return vlmc_fail(err, VLMC_ERR_NOMEM, "grounding: out of memory");
    out->n_entities++;
    return VLMC_OK;
}

vlmc_status kosmos2_post_process(const char *text, size_t len, int grid, kosmos2_parsed *out, vlmc_error *err) {
    memset(out, 0, sizeof *out);
    if (grid < 1 || grid > GRID_MAX) return vlmc_fail(err, VLMC_ERR_ARG, "kosmos-2: %d patches per side", grid);
    cps all;
    vlmc_status s = decode(text, len, &all, err);
    if (s) return s;
    /* caption = text.split("</image>")[-1] */
    size_t begin = 0;
    for (size_t i = 0; i < all.n; i++)
        if (at(all.c, all.n, i, "</image>")) begin = i + 8;
    const uint32_t *c = all.c + begin;
    const size_t n = all.n - begin;
    uint32_t *clean = malloc((n ? n : 1) * sizeof *clean);
    pairs pr = {0};
    size_t cap = 0;
    if (!clean) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "grounding: out of memory");
        goto done;
    }
    /* processed_text and its leading whitespace (cleanup_spaces) */
    const size_t n_clean = remove_special(c, n, clean);
    const size_t lead = lstrip_count(clean, n_clean), trail = rstrip_count(clean, n_clean);
    out->text = encode(clean + (lead < n_clean ? lead : 0), lead + trail >= n_clean ? 0 : n_clean - lead - trail);
    if (!out->text) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "grounding: out of memory");
        goto done;
    }
    /* re.finditer of (?:(<phrase>([^<]+)</phrase>))?<object>(...)</object> */
    for (size_t p = 0; p < n && !s;) {
        bool nomem = false, phrase = false;
        size_t q = 0, r = 0, end = 0;
        if (at(c, n, p, "<phrase>")) {
            q = r = p + 8;
            while (r < n && c[r] != '<') r++;
            if (r > q && at(c, n, r, "</phrase>") && (end = object_at(c, n, r + 9, &pr, &nomem))) phrase = true;
        }
        if (!phrase && !nomem) end = object_at(c, n, p, &pr, &nomem);
        if (nomem) {
            s = vlmc_fail(err, VLMC_ERR_NOMEM, "grounding: out of memory");
            break;
        }
        if (!end) {
            p++;
            continue;
        }
        const size_t n_boxes = pr.n / 2;
        gbox *boxes = malloc(n_boxes * sizeof *boxes);
        if (!boxes) {
            s = vlmc_fail(err, VLMC_ERR_NOMEM, "grounding: out of memory");
            break;
        }
        if ((s = object_boxes(c, pr.a, pr.n, grid, boxes, err))) {
            free(boxes);
            break;
        }
        /* adjust_entity_positions: lengths of the prefixes without markup; then the text's leading spaces */
        if (phrase) {
            long start = (long)remove_special(c, q, NULL) - (long)lead, stop = (long)remove_special(c, r, NULL) - (long)lead;
            s = add_entity(out, &cap, c + q, r - q, start, stop, boxes, n_boxes, err);
            if (s) free(boxes);
        } else { /* one entity per box, named after its patch indices, at the start of <object> */
            long at_obj = (long)remove_special(c, p, NULL) - (long)lead;
            for (size_t k = 0; k < n_boxes && !s; k++) {
                patch_index a, b;
                cps name = {0};
                if ((s = patch_index_read(c, pr.a[2 * k].from, pr.a[2 * k].to, grid, &a, err))) break;
                if ((s = patch_index_read(c, pr.a[2 * k + 1].from, pr.a[2 * k + 1].to, grid, &b, err))) {
                    patch_index_free(&a);
                    break;
                }
                gbox *one = malloc(sizeof *one);
                bool ok = one && cps_push_ascii(&name, "<patch_index_") && cps_push_ascii(&name, a.digits) &&
                          cps_push_ascii(&name, "><patch_index_") && cps_push_ascii(&name, b.digits) &&
                          cps_push_ascii(&name, ">");
                patch_index_free(&a);
                patch_index_free(&b);
                if (!ok) s = vlmc_fail(err, VLMC_ERR_NOMEM, "grounding: out of memory");
                else {
                    *one = boxes[k];
                    s = add_entity(out, &cap, name.c, name.n, at_obj, at_obj, one, 1, err);
                }
                if (s) free(one);
                free(name.c);
            }
            free(boxes);
        }
        p = end;
    }
done:
    free(pr.a);
    free(clean);
    free(all.c);
    if (s) kosmos2_parsed_free(out);
    return s;
}

/* ---- text + boxes → KOSMOS-2 markup ------------------------------------------------------------------ */

/* Kosmos2Tokenizer.tag_tokens and the grid's "<patch_index_%04d>" tokens: the length of the tag at c[i..), or 0.
 * No tag is a prefix of another, so the alternation's order does not matter. */
static size_t tag_at(const uint32_t *c, size_t n, size_t i, int grid) {
    static const char *const tags[] = {"</doc>",    "<image>",   "</image>", "</chunk>",
                                       "</line>",   "<phrase>",  "</phrase>", "<object>",
                                       "</object>", "</delimiter_of_multi_objects/>", "<grounding>"};
    for (size_t k = 0; k < sizeof tags / sizeof tags[0]; k++)
        if (at(c, n, i, tags[k])) return strlen(tags[k]);
    if (!at(c, n, i, "<patch_index_")) return 0;
    /* str(x).zfill(4) for 0 <= x < grid²: four ASCII digits, or more without a leading zero */
    size_t j = i + 13;
    long long v = 0;
    while (j < n && c[j] >= '0' && c[j] <= '9' && j - i - 13 < 12) v = v * 10 + (c[j++] - '0');
    size_t nd = j - i - 13;
    if (nd < 4 || (nd > 4 && c[i + 13] == '0') || v >= (long long)grid * grid || j >= n || c[j] != '>') return 0;
    return j + 1 - i;
}

/* "<patch_index_" + str(idx).zfill(4) + ">" */
static bool push_patch_token(cps *s, long long idx) {
    char num[32], tok[64];
    snprintf(num, sizeof num, "%llu", idx < 0 ? 0ull - (unsigned long long)idx : (unsigned long long)idx);
    size_t pad = strlen(num) < 4 - (size_t)(idx < 0) ? 4 - (size_t)(idx < 0) - strlen(num) : 0;
    snprintf(tok, sizeof tok, "<patch_index_%s%.*s%s>", idx < 0 ? "-" : "", (int)pad, "0000", num);
    return cps_push_ascii(s, tok);
}

vlmc_status kosmos2_markup(const char *text, size_t len, const long long *patches, const size_t *first,
                           const size_t *count, size_t n_phrases, int grid, char **out, vlmc_error *err) {
    *out = NULL;
    if (grid < 1 || grid > GRID_MAX) return vlmc_fail(err, VLMC_ERR_ARG, "kosmos-2: %d patches per side", grid);
    cps t, ins = {0}, res = {0};
    vlmc_status s = decode(text, len, &t, err);
    if (s) return s;
    /* text.strip() */
    size_t a = lstrip_count(t.c, t.n), b = a < t.n ? t.n - rstrip_count(t.c, t.n) : a;
    const uint32_t *c = t.c + a;
    const size_t n = b - a;
    bool ok = true;
    /* _insert_patch_index_tokens: after each "<phrase>.+?</phrase>" its boxes as "<object> A B
     * </delimiter_of_multi_objects/> C D </object>" */
    size_t found = 0, cur = 0;
    for (size_t p = 0; p < n && n_phrases; p++) {
        if (!at(c, n, p, "<phrase>")) continue;
        size_t q = p + 9; /* ".+?": at least one character, none of them '\n' */
        while (q < n && c[q - 1] != '\n' && !at(c, n, q, "</phrase>")) q++;
        if (q >= n || c[q - 1] == '\n' || !at(c, n, q, "</phrase>")) continue;
        size_t end = q + 9;
        if (found < n_phrases) {
            for (size_t k = cur; k < end; k++) ok &= cps_push(&ins, c[k]);
            cur = end;
            for (size_t k = 0; k < count[found] && ok; k++) {
                const long long *pk = patches + 2 * (first[found] + k);
                ok &= cps_push_ascii(&ins, k ? " </delimiter_of_multi_objects/> " : "<object> ") &&
                      push_patch_token(&ins, pk[0]) && cps_push_ascii(&ins, " ") && push_patch_token(&ins, pk[1]);
            }
            if (count[found] && ok) ok &= cps_push_ascii(&ins, " </object>");
        }
        found++;
        p = end - 1;
    }
    if (!s && n_phrases && found != n_phrases)
        s = vlmc_fail(err, VLMC_ERR_ARG,
                      "kosmos-2: %zu phrases with boxes given, the text has %zu <phrase> ... </phrase> pairs",
                      n_phrases, found);
    for (size_t k = cur; k < n && !s; k++) ok &= cps_push(&ins, c[k]);
    /* _add_remove_spaces_around_tag_tokens: re.split on the tags (the empty first / last pieces dropped); a tag
     * eats the whitespace before it, text after a tag gets a space unless it has one */
    bool prev_tag = false;
    for (size_t i = 0, piece = 0; i <= ins.n && !s && ok;) {
        size_t j = i, tl = 0;
        while (j < ins.n && !(tl = tag_at(ins.c, ins.n, j, grid))) j++;
        bool last = j >= ins.n;
        if (!((piece == 0 || last) && j == i)) { /* a text piece */
            if (prev_tag && !(j > i && ins.c[i] == ' ')) ok &= cps_push(&res, ' ');
            for (size_t k = i; k < j; k++) ok &= cps_push(&res, ins.c[k]);
            prev_tag = false;
        }
        piece++;
        if (last) break;
        res.n -= rstrip_count(res.c, res.n);
        for (size_t k = j; k < j + tl; k++) ok &= cps_push(&res, ins.c[k]);
        prev_tag = true;
        piece++;
        i = j + tl;
    }
    if (!s && ok && !(*out = encode(res.c, res.n))) ok = false;
    if (!s && !ok) s = vlmc_fail(err, VLMC_ERR_NOMEM, "grounding: out of memory");
    free(t.c);
    free(ins.c);
    free(res.c);
    return s;
}

/* ---- every format ------------------------------------------------------------------------------------ */

typedef struct box_list {
    grounding_box *b;
    size_t n, cap;
} box_list;

static bool box_add(box_list *l, const char *label, size_t label_len, gbox b, grounding_format f) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        grounding_box *p = realloc(l->b, cap * sizeof *p);
        if (!p) return false;
        l->b = p;
        l->cap = cap;
    }
    char *lab = NULL;
    if (label && !(lab = strndup(label, label_len))) return false;
    l->b[l->n++] = (grounding_box){.label = lab, .box = b, .format = f};
    return true;
}

void grounding_boxes_free(grounding_box *boxes, size_t n) {
    for (size_t i = 0; i < n; i++) free(boxes[i].label);
    free(boxes);
}

/* "(x1,y1),(x2,y2)" as Qwen's _fetch_all_box_with_ref reads it: parentheses dropped, four comma-separated
 * integers (spaces around them allowed), then / 1000. */
static bool qwen_coords(const char *s, size_t n, gbox *out) {
    double v[4];
    int k = 0;
    size_t i = 0;
    while (k < 4) {
        bool neg = false, digits = false;
        double x = 0;
        while (i < n && (s[i] == '(' || s[i] == ')' || s[i] == ' ')) i++;
        if (i < n && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
        while (i < n && s[i] >= '0' && s[i] <= '9' && x < 1e12) x = x * 10 + (s[i++] - '0'), digits = true;
        while (i < n && (s[i] == '(' || s[i] == ')' || s[i] == ' ')) i++;
        if (!digits) return false;
        v[k++] = neg ? -x : x;
        if (k < 4) {
            if (i >= n || s[i] != ',') return false;
            i++;
        }
    }
    if (i != n) return false;
    *out = (gbox){v[0] / 1000, v[1] / 1000, v[2] / 1000, v[3] / 1000};
    return true;
}

/* Qwen-VL / Qwen2-VL: ref_open label ref_close box_open coords box_close, in reading order */
static bool qwen_boxes(const char *t, size_t n, const char *ref_open, const char *ref_close, const char *box_open,
                       const char *box_close, grounding_format f, box_list *l) {
    const size_t ro = strlen(ref_open), rc = strlen(ref_close), bo = strlen(box_open), bc = strlen(box_close);
    const char *label = NULL;
    size_t label_len = 0, label_until = (size_t)-1; /* the label holds for a box starting at label_until */
    for (size_t i = 0; i < n;) {
        if (n - i >= ro && !memcmp(t + i, ref_open, ro)) {
            const char *e = memmem(t + i + ro, n - i - ro, ref_close, rc);
            if (!e) break;
            label = t + i + ro;
            label_len = (size_t)(e - label);
            i = label_until = (size_t)(e - t) + rc;
            continue;
        }
        if (n - i >= bo && !memcmp(t + i, box_open, bo)) {
            const char *e = memmem(t + i + bo, n - i - bo, box_close, bc);
            if (!e) break;
            gbox b;
            size_t end = (size_t)(e - t) + bc;
            if (qwen_coords(t + i + bo, (size_t)(e - t) - i - bo, &b)) {
                bool labelled = label && i == label_until;
                /* the label, stripped of spaces as Qwen's .strip() */
                const char *lab = label;
                size_t ll = label_len;
                while (labelled && ll && *lab == ' ') lab++, ll--;
                while (labelled && ll && lab[ll - 1] == ' ') ll--;
                if (!box_add(l, labelled ? lab : NULL, ll, b, f)) return false;
                if (labelled) label_until = end;
            }
            i = end;
            continue;
        }
        i++;
    }
    return true;
}

/* [x1, y1, x2, y2]: four non-negative numbers (digits, optionally .digits), spaces allowed, 0..1000 */
static bool bracket_boxes(const char *t, size_t n, box_list *l) {
    for (size_t p = 0; p < n; p++) {
        if (t[p] != '[') continue;
        double v[4];
        size_t i = p + 1;
        int k = 0;
        for (; k < 4; k++) {
            while (i < n && t[i] == ' ') i++;
            size_t d = i;
            while (i < n && t[i] >= '0' && t[i] <= '9') i++;
            if (i == d || i - d > 12) break;
            if (i + 1 < n && t[i] == '.' && t[i + 1] >= '0' && t[i + 1] <= '9') {
                i++;
                while (i < n && t[i] >= '0' && t[i] <= '9') i++;
            }
            char num[64];
            if (i - d >= sizeof num) break;
            memcpy(num, t + d, i - d);
            num[i - d] = 0;
            v[k] = strtod(num, NULL);
            while (i < n && t[i] == ' ') i++;
            if (k < 3 && (i >= n || t[i++] != ',')) break;
        }
        if (k == 4 && i < n && t[i] == ']') {
            if (!box_add(l, NULL, 0, (gbox){v[0] / 1000, v[1] / 1000, v[2] / 1000, v[3] / 1000}, GROUNDING_BRACKET))
                return false;
            p = i;
        }
    }
    return true;
}

vlmc_status grounding_find_boxes(const char *text, size_t len, grounding_box **boxes, size_t *n, vlmc_error *err) {
    *boxes = NULL;
    *n = 0;
    box_list l = {0};
    kosmos2_parsed kp;
    vlmc_status s = kosmos2_post_process(text, len, 32, &kp, err);
    if (s) return s;
    bool ok = true;
    for (size_t i = 0; i < kp.n_entities && ok; i++) {
        const kosmos2_entity *e = &kp.entities[i];
        bool named = strncmp(e->phrase, "<patch_index_", 13) != 0;
        for (size_t k = 0; k < e->n_boxes && ok; k++)
            ok = box_add(&l, named ? e->phrase : NULL, named ? strlen(e->phrase) : 0, e->boxes[k], GROUNDING_KOSMOS2);
    }
    kosmos2_parsed_free(&kp);
    ok = ok &&
         qwen_boxes(text, len, "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>",
                    GROUNDING_QWEN2_VL, &l) &&
         qwen_boxes(text, len, "<ref>", "</ref>", "<box>", "</box>", GROUNDING_QWEN_VL, &l) && bracket_boxes(text, len, &l);
    if (!ok) {
        grounding_boxes_free(l.b, l.n);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "grounding: out of memory");
    }
    *boxes = l.b;
    *n = l.n;
    return VLMC_OK;
}
