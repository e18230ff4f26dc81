/* Grounding: box parsing from model text (Qwen-VL, bracketed, plain), conversion
 * to pixels, IoU and the RefCOCO hit rule. See metrics.h. */
#include "eval/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "eval/text.h"

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Python float(s[0..n)): surrounding whitespace allowed; [sign] digits[.digits]
 * or .digits, optional exponent; inf/infinity/nan. (Underscores are not accepted.) */
static bool py_float(const char *s, size_t n, double *out) {
    s = evtext_strip(s, &n);
    if (n == 0 || n > 64) return false;
    char buf[72];
    memcpy(buf, s, n);
    buf[n] = '\0';
    size_t i = 0;
    if (buf[i] == '+' || buf[i] == '-') i++;
    const char *rest = buf + i;
    if (strcasecmp(rest, "inf") == 0 || strcasecmp(rest, "infinity") == 0 || strcasecmp(rest, "nan") == 0) {
        *out = strtod(buf, NULL);
        return true;
    }
    size_t digits = 0;
    while (is_digit(buf[i])) i++, digits++;
    if (buf[i] == '.') {
        i++;
        while (is_digit(buf[i])) i++, digits++;
    }
    if (digits == 0) return false;
    if (buf[i] == 'e' || buf[i] == 'E') {
        i++;
        if (buf[i] == '+' || buf[i] == '-') i++;
        if (!is_digit(buf[i])) return false;
        while (is_digit(buf[i])) i++;
    }
    if (buf[i] != '\0') return false;
    *out = strtod(buf, NULL);
    return true;
}

/* "x,y" -> two Python floats (s.split(',') must give exactly two parts). */
static bool pair(const char *s, size_t n, double *x, double *y) {
    const char *c = memchr(s, ',', n);
    if (!c) return false;
    size_t k = (size_t)(c - s);
    if (memchr(c + 1, ',', n - k - 1)) return false;
    return py_float(s, k, x) && py_float(c + 1, n - k - 1, y);
}

/* The first match of \((.*?)\),\((.*?)\) ('.' excludes '\n'), as re.findall(...)[0]. */
static bool qwen_match(const char *t, size_t n, size_t *g1, size_t *l1, size_t *g2, size_t *l2) {
    for (size_t p = 0; p < n; p++) {
        if (t[p] != '(') continue;
        for (size_t q = p + 1; q < n; q++) {
            if (q + 3 <= n && t[q] == ')' && t[q + 1] == ',' && t[q + 2] == '(') {
                size_t r = q + 3;
                for (size_t k = r; k < n && t[k] != '\n'; k++) {
                    if (t[k] == ')') {
                        *g1 = p + 1, *l1 = q - (p + 1), *g2 = r, *l2 = k - r;
                        return true;
                    }
                }
            }
            if (t[q] == '\n') break;
        }
    }
    return false;
}

/* -?\d+(?:\.\d+)? at t[i]; returns the end, or i when there is none. */
static size_t number_at(const char *t, size_t n, size_t i) {
    size_t j = i;
    if (j < n && t[j] == '-') j++;
    size_t d = j;
    while (j < n && is_digit(t[j])) j++;
    if (j == d) return i;
    if (j + 1 < n && t[j] == '.' && is_digit(t[j + 1])) {
        j++;
        while (j < n && is_digit(t[j])) j++;
    }
    return j;
}

static size_t skip_space(const char *t, size_t n, size_t i) {
    uint32_t cp;
    while (i < n) {
        size_t l = evtext_next(t + i, n - i, &cp);
        if (!evtext_is_space(cp)) break;
        i += l;
    }
    return i;
}

/* Four numbers separated by \s*,\s* from t[i]; *end after the fourth. */
static bool four_numbers(const char *t, size_t n, size_t i, double v[4], size_t *end) {
    for (int k = 0; k < 4; k++) {
        if (k > 0) {
            i = skip_space(t, n, i);
            if (i >= n || t[i] != ',') return false;
            i = skip_space(t, n, i + 1);
        }
        size_t e = number_at(t, n, i);
        if (e == i) return false;
        char buf[72];
        size_t len = e - i;
        if (len > 64) return false;
        memcpy(buf, t + i, len);
        buf[len] = '\0';
        v[k] = strtod(buf, NULL);
        i = e;
    }
    *end = i;
    return true;
}

static bool bracket_box(const char *t, size_t n, double v[4]) {
    for (size_t p = 0; p < n; p++) {
        if (t[p] != '[') continue;
        size_t e;
        if (!four_numbers(t, n, skip_space(t, n, p + 1), v, &e)) continue;
        e = skip_space(t, n, e);
        if (e < n && t[e] == ']') return true;
    }
    return false;
}

static bool plain_box(const char *t, size_t n, double v[4]) {
    for (size_t p = 0; p < n; p++) {
        if (!(is_digit(t[p]) || (t[p] == '-' && p + 1 < n && is_digit(t[p + 1])))) continue;
        if (p > 0) { /* not the middle of a number, nor after another list element */
            char b = t[p - 1];
            if (is_digit(b) || b == '.' || b == '-') continue;
            size_t k = p;
            while (k > 0 && (t[k - 1] == ' ' || t[k - 1] == '\t')) k--;
            if (k > 0 && t[k - 1] == ',') continue;
        }
        size_t e;
        if (!four_numbers(t, n, p, v, &e)) continue;
        if (e < n && (is_digit(t[e]) || t[e] == '.')) continue;
        size_t k = skip_space(t, n, e);
        if (k < n && t[k] == ',') {
            k = skip_space(t, n, k + 1);
            if (k < n && (is_digit(t[k]) || t[k] == '-')) continue; /* a fifth number */
        }
        return true;
    }
    return false;
}

box_format grounding_parse_box(const char *text, box_format only, eval_box *out) {
    if (!text || !out) return BOX_NONE;
    size_t n = strlen(text);
    double v[4];
    if (only == BOX_NONE || only == BOX_QWEN) {
        size_t g1, l1, g2, l2;
        if (qwen_match(text, n, &g1, &l1, &g2, &l2) && pair(text + g1, l1, &v[0], &v[1]) &&
            pair(text + g2, l2, &v[2], &v[3])) {
            *out = (eval_box){v[0], v[1], v[2], v[3]};
            return BOX_QWEN;
        }
    }
    if ((only == BOX_NONE || only == BOX_BRACKET) && bracket_box(text, n, v)) {
        *out = (eval_box){v[0], v[1], v[2], v[3]};
        return BOX_BRACKET;
    }
    if ((only == BOX_NONE || only == BOX_PLAIN) && plain_box(text, n, v)) {
        *out = (eval_box){v[0], v[1], v[2], v[3]};
        return BOX_PLAIN;
    }
    return BOX_NONE;
}

eval_box grounding_to_pixels(eval_box b, double scale, double width, double height, bool pad_square) {
    if (!(scale > 0)) scale = 1.0;
    double sx = width, sy = height, ox = 0.0, oy = 0.0;
    if (pad_square) {
        double side = width > height ? width : height;
        sx = sy = side;
        ox = floor((side - width) / 2.0); /* expand2square pastes at ((side-w)//2, (side-h)//2) */
        oy = floor((side - height) / 2.0);
    }
    return (eval_box){b.x1 / scale * sx - ox, b.y1 / scale * sy - oy, b.x2 / scale * sx - ox,
                      b.y2 / scale * sy - oy};
}

double grounding_iou(eval_box a, eval_box b) {
    double area_a = (a.x2 - a.x1) * (a.y2 - a.y1);
    double area_b = (b.x2 - b.x1) * (b.y2 - b.y1);
    double w = fmin(a.x2, b.x2) - fmax(a.x1, b.x1);
    double h = fmin(a.y2, b.y2) - fmax(a.y1, b.y1);
    double inter = (w > 0 ? w : 0) * (h > 0 ? h : 0);
    double uni = area_a + area_b - inter;
    if (!(uni > 0) || !isfinite(uni) || !isfinite(inter)) return 0.0;
    return inter / uni;
}

bool grounding_hit(eval_box pred, eval_box gt) { return grounding_iou(pred, gt) >= 0.5; }
