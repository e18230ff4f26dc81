/* Open VQA: VQAv2's answer normalisation and accuracy (GT-Vision-Lab/VQA
 * PythonEvaluationTools/vqaEvaluation/vqaEval.py), exact match, and ANLS
 * (DocVQA / ST-VQA). See metrics.h for the definitions. */
#include "eval/metrics.h"

#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"
#include "core/utf8.h"
#include "eval/text.h"

/* vqaEval.py self.punct, in its order (the order does not matter: each is one character). */
static const char vqa_punct[] = ";/[]\"{}()=+\\_->,<@`?!";

/* vqaEval.py self.contractions, verbatim (keys with capitals never match after lower()). */
static const char *const vqa_contractions[][2] = {
    {"aint", "ain't"}, {"arent", "aren't"}, {"cant", "can't"}, {"couldve", "could've"},
    {"couldnt", "couldn't"}, {"couldn'tve", "couldn't've"}, {"couldnt've", "couldn't've"},
    {"didnt", "didn't"}, {"doesnt", "doesn't"}, {"dont", "don't"}, {"hadnt", "hadn't"},
    {"hadnt've", "hadn't've"}, {"hadn'tve", "hadn't've"}, {"hasnt", "hasn't"}, {"havent", "haven't"},
    {"hed", "he'd"}, {"hed've", "he'd've"}, {"he'dve", "he'd've"}, {"hes", "he's"}, {"howd", "how'd"},
    {"howll", "how'll"}, {"hows", "how's"}, {"Id've", "I'd've"}, {"I'dve", "I'd've"}, {"Im", "I'm"},
    {"Ive", "I've"}, {"isnt", "isn't"}, {"itd", "it'd"}, {"itd've", "it'd've"}, {"it'dve", "it'd've"},
    {"itll", "it'll"}, {"let's", "let's"}, {"maam", "ma'am"}, {"mightnt", "mightn't"},
    {"mightnt've", "mightn't've"}, {"mightn'tve", "mightn't've"}, {"mightve", "might've"},
    {"mustnt", "mustn't"}, {"mustve", "must've"}, {"neednt", "needn't"}, {"notve", "not've"},
    {"oclock", "o'clock"}, {"oughtnt", "oughtn't"}, {"ow's'at", "'ow's'at"}, {"'ows'at", "'ow's'at"},
    {"'ow'sat", "'ow's'at"}, {"shant", "shan't"}, {"shed've", "she'd've"}, {"she'dve", "she'd've"},
    {"she's", "she's"}, {"shouldve", "should've"}, {"shouldnt", "shouldn't"},
    {"shouldnt've", "shouldn't've"}, {"shouldn'tve", "shouldn't've"}, {"somebody'd", "somebodyd"},
    {"somebodyd've", "somebody'd've"}, {"somebody'dve", "somebody'd've"}, {"somebodyll", "somebody'll"},
    {"somebodys", "somebody's"}, {"someoned", "someone'd"}, {"someoned've", "someone'd've"},
    {"someone'dve", "someone'd've"}, {"someonell", "someone'll"}, {"someones", "someone's"},
    {"somethingd", "something'd"}, {"somethingd've", "something'd've"},
    {"something'dve", "something'd've"}, {"somethingll", "something'll"}, {"thats", "that's"},
    {"thered", "there'd"}, {"thered've", "there'd've"}, {"there'dve", "there'd've"},
    {"therere", "there're"}, {"theres", "there's"}, {"theyd", "they'd"}, {"theyd've", "they'd've"},
    {"they'dve", "they'd've"}, {"theyll", "they'll"}, {"theyre", "they're"}, {"theyve", "they've"},
    {"twas", "'twas"}, {"wasnt", "wasn't"}, {"wed've", "we'd've"}, {"we'dve", "we'd've"},
    {"weve", "we've"}, {"werent", "weren't"}, {"whatll", "what'll"}, {"whatre", "what're"},
    {"whats", "what's"}, {"whatve", "what've"}, {"whens", "when's"}, {"whered", "where'd"},
    {"wheres", "where's"}, {"whereve", "where've"}, {"whod", "who'd"}, {"whod've", "who'd've"},
    {"who'dve", "who'd've"}, {"wholl", "who'll"}, {"whos", "who's"}, {"whove", "who've"},
    {"whyll", "why'll"}, {"whyre", "why're"}, {"whys", "why's"}, {"wont", "won't"},
    {"wouldve", "would've"}, {"wouldnt", "wouldn't"}, {"wouldnt've", "wouldn't've"},
    {"wouldn'tve", "wouldn't've"}, {"yall", "y'all"}, {"yall'll", "y'all'll"}, {"y'allll", "y'all'll"},
    {"yall'd've", "y'all'd've"}, {"y'alld've", "y'all'd've"}, {"y'all'dve", "y'all'd've"},
    {"youd", "you'd"}, {"youd've", "you'd've"}, {"you'dve", "you'd've"}, {"youll", "you'll"},
    {"youre", "you're"}, {"youve", "you've"},
};

/* vqaEval.py self.manualMap. */
static const char *const vqa_numbers[][2] = {
    {"none", "0"}, {"zero", "0"}, {"one", "1"}, {"two", "2"}, {"three", "3"}, {"four", "4"},
    {"five", "5"}, {"six", "6"}, {"seven", "7"}, {"eight", "8"}, {"nine", "9"}, {"ten", "10"},
};

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static bool word_is(const char *w, size_t n, const char *lit) { return strlen(lit) == n && memcmp(w, lit, n) == 0; }

static vlmc_status finish(strbuf *b, char **out, vlmc_error *err, const char *what) {
    if (b->failed || !strbuf_cstr(b)) {
        strbuf_free(b);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", what);
    }
    if (b->len == 0) {
        strbuf_free(b);
        *out = strdup("");
        return *out ? VLMC_OK : vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", what);
    }
    *out = strbuf_take(b);
    return VLMC_OK;
}

vlmc_status vqa_process_punctuation(const char *in, char **out, vlmc_error *err) {
    if (!in || !out) return vlmc_fail(err, VLMC_ERR_ARG, "vqa punctuation: NULL argument");
    *out = NULL;
    size_t n = strlen(in);
    bool comma_digits = false; /* commaStrip (\d)(\,)(\d) found anywhere in the input */
    for (size_t i = 1; i + 1 < n; i++)
        if (in[i] == ',' && is_digit(in[i - 1]) && is_digit(in[i + 1])) comma_digits = true;
    /* Per punctuation mark: deleted ('') or replaced by a space, decided on the input. */
    bool remove[128] = {false};
    for (const char *p = vqa_punct; *p; p++) {
        bool near_space = false;
        for (size_t i = 0; i < n && !near_space; i++)
            if (in[i] == *p && ((i + 1 < n && in[i + 1] == ' ') || (i > 0 && in[i - 1] == ' '))) near_space = true;
        remove[(unsigned char)*p] = near_space || comma_digits;
    }
    /* The punctuation pass, then periodStrip: '.' not followed by a digit, count=32. */
    char *tmp = malloc(n + 1);
    if (!tmp) return vlmc_fail(err, VLMC_ERR_NOMEM, "vqa punctuation: out of memory");
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c < 128 && c && strchr(vqa_punct, c)) {
            if (!remove[c]) tmp[m++] = ' ';
        } else {
            tmp[m++] = (char)c;
        }
    }
    strbuf b = {0};
    int stripped = 0;
    for (size_t i = 0; i < m; i++) {
        if (tmp[i] == '.' && stripped < 32 && !(i + 1 < m && is_digit(tmp[i + 1]))) {
            stripped++;
            continue;
        }
        strbuf_append(&b, tmp + i, 1);
    }
    free(tmp);
    return finish(&b, out, err, "vqa punctuation");
}

vlmc_status vqa_process_digit_article(const char *in, char **out, vlmc_error *err) {
    if (!in || !out) return vlmc_fail(err, VLMC_ERR_ARG, "vqa digits/articles: NULL argument");
    *out = NULL;
    /* inText.lower() */
    size_t n = strlen(in);
    strbuf low = {0};
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = evtext_next(in + i, n - i, &cp);
        char enc[4];
        size_t el = cp <= 0x10ffff ? utf8_encode(evtext_lower(cp), enc) : 0;
        if (el) strbuf_append(&low, enc, el);
        else strbuf_append(&low, in + i, l);
        i += l;
    }
    if (low.failed) {
        strbuf_free(&low);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "vqa digits/articles: out of memory");
    }
    const char *s = low.len ? low.data : "";
    size_t sn = low.len;
    strbuf b = {0};
    size_t pos = 0, ws, wl;
    bool first = true;
    while (evtext_next_word(s, sn, &pos, &ws, &wl)) {
        const char *w = s + ws;
        for (size_t k = 0; k < sizeof vqa_numbers / sizeof vqa_numbers[0]; k++)
            if (word_is(w, wl, vqa_numbers[k][0])) {
                w = vqa_numbers[k][1];
                wl = strlen(w);
                break;
            }
        if (word_is(w, wl, "a") || word_is(w, wl, "an") || word_is(w, wl, "the")) continue;
        for (size_t k = 0; k < sizeof vqa_contractions / sizeof vqa_contractions[0]; k++)
            if (word_is(w, wl, vqa_contractions[k][0])) {
                w = vqa_contractions[k][1];
                wl = strlen(w);
                break;
            }
        if (!first) strbuf_append(&b, " ", 1);
        strbuf_append(&b, w, wl);
        first = false;
    }
    strbuf_free(&low);
    return finish(&b, out, err, "vqa digits/articles");
}

/* '\n' and '\t' -> ' ', then strip(): the answer preparation of vqaEval.py. */
static char *prepare(const char *in) {
    size_t n = strlen(in);
    char *t = malloc(n + 1);
    if (!t) return NULL;
    for (size_t i = 0; i < n; i++) t[i] = (in[i] == '\n' || in[i] == '\t') ? ' ' : in[i];
    size_t m = n;
    const char *s = evtext_strip(t, &m);
    memmove(t, s, m);
    t[m] = '\0';
    return t;
}

vlmc_status vqa_normalize(const char *in, char **out, vlmc_error *err) {
    if (!in || !out) return vlmc_fail(err, VLMC_ERR_ARG, "vqa normalize: NULL argument");
    *out = NULL;
    char *p = prepare(in);
    if (!p) return vlmc_fail(err, VLMC_ERR_NOMEM, "vqa normalize: out of memory");
    char *q = NULL;
    vlmc_status st = vqa_process_punctuation(p, &q, err);
    free(p);
    if (st != VLMC_OK) return st;
    st = vqa_process_digit_article(q, out, err);
    free(q);
    return st;
}

vlmc_status vqa_accuracy(const char *answer, const char *const *refs, size_t n_refs, double *acc,
                         vlmc_error *err) {
    if (!acc) return vlmc_fail(err, VLMC_ERR_ARG, "vqa accuracy: no output");
    *acc = 0.0;
    if (!answer || !refs || n_refs == 0) return vlmc_fail(err, VLMC_ERR_ARG, "vqa accuracy: need an answer and references");
    for (size_t i = 0; i < n_refs; i++)
        if (!refs[i]) return vlmc_fail(err, VLMC_ERR_ARG, "vqa accuracy: reference %zu is NULL", i);
    char **r = calloc(n_refs, sizeof *r);
    char *a = prepare(answer);
    vlmc_status st = VLMC_OK;
    if (!r || !a) {
        st = vlmc_fail(err, VLMC_ERR_NOMEM, "vqa accuracy: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_refs && st == VLMC_OK; i++)
        if (!(r[i] = prepare(refs[i]))) st = vlmc_fail(err, VLMC_ERR_NOMEM, "vqa accuracy: out of memory");
    if (st != VLMC_OK) goto done;
    bool differ = false;
    for (size_t i = 1; i < n_refs; i++)
        if (strcmp(r[i], r[0]) != 0) differ = true;
    if (differ) { /* len(set(gtAnswers)) > 1: normalise references and answer */
        for (size_t i = 0; i < n_refs && st == VLMC_OK; i++) {
            char *t = NULL;
            st = vqa_normalize(r[i], &t, err);
            free(r[i]);
            r[i] = t;
        }
        if (st != VLMC_OK) goto done;
        char *t = NULL;
        st = vqa_normalize(a, &t, err);
        free(a);
        a = t;
        if (st != VLMC_OK) goto done;
    }
    size_t same = 0;
    for (size_t i = 0; i < n_refs; i++) same += strcmp(r[i], a) == 0;
    double sum = 0.0;
    for (size_t i = 0; i < n_refs; i++) {
        size_t others = same - (strcmp(r[i], a) == 0); /* matches among the other references */
        double v = (double)others / 3.0;
        sum += v < 1.0 ? v : 1.0;
    }
    *acc = sum / (double)n_refs;
done:
    if (r)
        for (size_t i = 0; i < n_refs; i++) free(r[i]);
    free(r);
    free(a);
    return st;
}

vlmc_status vqa_exact_match(const char *answer, const char *ref, bool *match, vlmc_error *err) {
    if (!match) return vlmc_fail(err, VLMC_ERR_ARG, "vqa exact match: no output");
    *match = false;
    char *a = NULL, *b = NULL;
    vlmc_status st = vqa_normalize(answer, &a, err);
    if (st == VLMC_OK) st = vqa_normalize(ref, &b, err);
    if (st == VLMC_OK) *match = strcmp(a, b) == 0;
    free(a);
    free(b);
    return st;
}

/* ---- ANLS -------------------------------------------------------------------- */

/* Decodes s into code points; with anls_norm, lower-cased with whitespace runs
 * collapsed and the ends stripped (" ".join(s.strip().lower().split())). */
static uint32_t *code_points(const char *s, bool anls_norm, size_t *n_out) {
    size_t n = strlen(s);
    uint32_t *cp = malloc((n + 1) * sizeof *cp);
    if (!cp) return NULL;
    size_t m = 0;
    if (!anls_norm) {
        for (size_t i = 0; i < n;) i += evtext_next(s + i, n - i, &cp[m++]);
    } else {
        size_t pos = 0, ws, wl;
        while (evtext_next_word(s, n, &pos, &ws, &wl)) {
            if (m > 0) cp[m++] = ' ';
            for (size_t i = ws; i < ws + wl;) {
                uint32_t c;
                i += evtext_next(s + i, ws + wl - i, &c);
                cp[m++] = evtext_lower(c);
            }
        }
    }
    *n_out = m;
    return cp;
}

static vlmc_status lev_cp(const uint32_t *a, size_t na, const uint32_t *b, size_t nb, size_t *dist, vlmc_error *err) {
    if (na < nb) { /* keep the row short */
        const uint32_t *t = a;
        a = b, b = t;
        size_t tn = na;
        na = nb, nb = tn;
    }
    size_t *row = malloc((nb + 1) * sizeof *row);
    if (!row) return vlmc_fail(err, VLMC_ERR_NOMEM, "levenshtein: out of memory");
    for (size_t j = 0; j <= nb; j++) row[j] = j;
    for (size_t i = 1; i <= na; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    *dist = row[nb];
    free(row);
    return VLMC_OK;
}

vlmc_status levenshtein(const char *a, const char *b, size_t *dist, vlmc_error *err) {
    if (!a || !b || !dist) return vlmc_fail(err, VLMC_ERR_ARG, "levenshtein: NULL argument");
    size_t na, nb;
    uint32_t *ca = code_points(a, false, &na), *cb = code_points(b, false, &nb);
    vlmc_status st = (ca && cb) ? lev_cp(ca, na, cb, nb, dist, err)
                                : vlmc_fail(err, VLMC_ERR_NOMEM, "levenshtein: out of memory");
    free(ca);
    free(cb);
    return st;
}

vlmc_status anls_score(const char *answer, const char *const *refs, size_t n_refs, double threshold,
                       double *score, vlmc_error *err) {
    if (!score) return vlmc_fail(err, VLMC_ERR_ARG, "anls: no output");
    *score = 0.0;
    if (!answer || !refs || n_refs == 0) return vlmc_fail(err, VLMC_ERR_ARG, "anls: need an answer and references");
    size_t na;
    uint32_t *ca = code_points(answer, true, &na);
    if (!ca) return vlmc_fail(err, VLMC_ERR_NOMEM, "anls: out of memory");
    vlmc_status st = VLMC_OK;
    double best = 0.0;
    for (size_t i = 0; i < n_refs && st == VLMC_OK; i++) {
        if (!refs[i]) {
            st = vlmc_fail(err, VLMC_ERR_ARG, "anls: reference %zu is NULL", i);
            break;
        }
        size_t nr, d = 0;
        uint32_t *cr = code_points(refs[i], true, &nr);
        if (!cr) {
            st = vlmc_fail(err, VLMC_ERR_NOMEM, "anls: out of memory");
            break;
        }
        st = lev_cp(ca, na, cr, nr, &d, err);
        free(cr);
        if (st != VLMC_OK) break;
        size_t len = na > nr ? na : nr;
        double nl = len ? (double)d / (double)len : 0.0;
        double s = nl < threshold ? 1.0 - nl : 0.0;
        if (s > best) best = s;
    }
    free(ca);
    if (st == VLMC_OK) *score = best;
    return st;
}
