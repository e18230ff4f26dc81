/* Multiple choice: VLMEvalKit's MMBench answer matcher and CircularEval, MMMU's
 * response parser. See metrics.h for the definition each function follows. */
#include "eval/metrics.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "eval/text.h"

static bool valid_options(const char *const *options, int n_options) {
    if (!options || n_options < 1 || n_options > 26) return false;
    for (int i = 0; i < n_options; i++)
        if (!options[i]) return false;
    return true;
}

/* can_infer_option's separators: '.()[],:;!*#{}' become spaces before split(). */
static bool option_separator(uint32_t cp) {
    return cp < 0x80 && cp != 0 && strchr(".()[],:;!*#{}", (int)cp) != NULL;
}

/* (?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\** : re.search's group 1, or 0.
 * The optional prefix never changes which "answer" occurrence matches first. */
static char verbose_answer_letter(const char *s, size_t n) {
    for (size_t i = 0; i + 6 <= n; i++) {
        if (strncasecmp(s + i, "answer", 6) != 0) continue;
        size_t j = i + 6, spaces = 0;
        uint32_t cp;
        for (;;) {
            if (j >= n) break;
            size_t l = evtext_next(s + j, n - j, &cp);
            if (!evtext_is_space(cp)) break;
            j += l;
            spaces++;
        }
        if (spaces == 0 || j + 2 > n || strncasecmp(s + j, "is", 2) != 0) continue;
        j += 2;
        spaces = 0;
        for (;;) {
            if (j >= n) break;
            size_t l = evtext_next(s + j, n - j, &cp);
            if (!evtext_is_space(cp)) break;
            j += l;
            spaces++;
        }
        if (spaces == 0) continue;
        while (j < n && s[j] == '*') j++;
        if (j < n) {
            char c = s[j];
            if (c >= 'a' && c <= 'd') c = (char)(c - 32);
            if (c >= 'A' && c <= 'D') return c;
        }
    }
    return 0;
}

char mcq_infer_option(const char *answer, const char *const *options, int n_options) {
    if (!answer || !valid_options(options, n_options)) return 0;
    if (strstr(answer, "Failed to obtain answer via API")) return 0;
    static const char *const reject[] = {
        "Sorry, I can't help with images of people yet.",
        "I can't process this file.",
        "I'm sorry, but without the image provided",
        "Cannot determine the answer",
    };
    for (size_t i = 0; i < sizeof reject / sizeof reject[0]; i++)
        if (strstr(answer, reject[i])) return 'Z';

    /* Tokens: maximal runs of code points that are neither whitespace nor separators. */
    size_t n = strlen(answer);
    long first[26];
    for (int i = 0; i < 26; i++) first[i] = -1;
    long ntok = 0;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t l = evtext_next(answer + i, n - i, &cp);
        if (evtext_is_space(cp) || option_separator(cp)) {
            i += l;
            continue;
        }
        size_t start = i;
        while (i < n) {
            l = evtext_next(answer + i, n - i, &cp);
            if (evtext_is_space(cp) || option_separator(cp)) break;
            i += l;
        }
        if (i - start == 1 && answer[start] >= 'A' && answer[start] <= 'Z') {
            int c = answer[start] - 'A';
            if (first[c] < 0) first[c] = ntok;
        }
        ntok++;
    }
    int count = 0;
    for (int c = 0; c < n_options; c++) count += first[c] >= 0;
    if (count == 1) {
        for (int c = 0; c < n_options; c++)
            if (first[c] >= 0 && first[c] > ntok - 5) return (char)('A' + c);
    } else if (count == 0 && first['Z' - 'A'] >= 0) {
        return 'Z';
    }
    char v = verbose_answer_letter(answer, n);
    if (v && v - 'A' < n_options) return v;
    return 0;
}

char mcq_infer_text(const char *answer, const char *const *options, int n_options) {
    if (!answer || !valid_options(options, n_options)) return 0;
    size_t n = strlen(answer);
    size_t total = 0;
    for (int c = 0; c < n_options; c++) total += evtext_cp_count(options[c], strlen(options[c]));
    if (evtext_cp_count(answer, n) > 2 * total) return 0;
    int found = -1, count = 0;
    for (int c = 0; c < n_options; c++) {
        if (evtext_ci_find(answer, n, options[c], strlen(options[c]), false) >= 0) {
            found = c;
            count++;
        }
    }
    return count == 1 ? (char)('A' + found) : 0;
}

char mcq_infer(const char *answer, const char *const *options, int n_options) {
    char c = mcq_infer_option(answer, options, n_options);
    return c ? c : mcq_infer_text(answer, options, n_options);
}

/* ---- CircularEval ---------------------------------------------------------- */

int64_t mcq_circular_offset(int64_t max_index) {
    int64_t off = 1000000;
    while (max_index >= off && off <= INT64_MAX / 10) off *= 10;
    return off;
}

vlmc_status mcq_circular_variants(int n_options, char answer, int64_t index, int64_t offset,
                                  mcq_variant *out, vlmc_error *err) {
    if (n_options < 2 || n_options > 26)
        return vlmc_fail(err, VLMC_ERR_ARG, "circular variants: %d options (2..26 needed)", n_options);
    if (answer < 'A' || answer >= 'A' + n_options)
        return vlmc_fail(err, VLMC_ERR_ARG, "circular variants: answer '%c' is not one of %d options",
                         answer ? answer : '?', n_options);
    if (offset <= 0 || index < 0 || index >= offset || (n_options - 1) > (INT64_MAX - index) / offset)
        return vlmc_fail(err, VLMC_ERR_ARG, "circular variants: index %lld does not fit offset %lld",
                         (long long)index, (long long)offset);
    if (!out) return vlmc_fail(err, VLMC_ERR_ARG, "circular variants: no output array");
    int a = answer - 'A';
    for (int k = 0; k < n_options; k++) {
        mcq_variant *v = &out[k];
        memset(v, 0, sizeof *v);
        v->index = index + (int64_t)k * offset;
        v->answer = (char)('A' + (a - k + n_options) % n_options);
        for (int j = 0; j < n_options; j++) v->source[j] = (j + k) % n_options;
        for (int j = n_options; j < 26; j++) v->source[j] = -1;
    }
    return VLMC_OK;
}

bool mcq_circular_abnormal(const char *const *options, int n_options) {
    if (!valid_options(options, n_options)) return false;
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    bool has_label = false;
    for (int k = 0; k < n_options; k++) {
        const char *s = options[k];
        uint32_t seen = 0;
        size_t i = 0, n = strlen(s);
        while (i < n) {
            /* Words: runs of ASCII letters (everything else became a space). */
            while (i < n && !((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z'))) i++;
            size_t start = i;
            while (i < n && ((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z'))) i++;
            if (i - start == 1 && s[start] >= 'A' && s[start] < 'A' + n_options) seen |= 1u << (s[start] - 'A');
        }
        if (__builtin_popcount(seen) > 1) return true;
        if (strstr(alphabet, s)) has_label = true;
    }
    return has_label;
}

typedef struct gkey {
    int64_t g;
    size_t i;
} gkey;

static int gkey_cmp(const void *a, const void *b) {
    const gkey *x = a, *y = b;
    if (x->g != y->g) return x->g < y->g ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

typedef struct named_hit {
    const char *name;
    bool hit;
} named_hit;

static int named_hit_cmp(const void *a, const void *b) {
    return strcmp(((const named_hit *)a)->name, ((const named_hit *)b)->name);
}

/* Groups the (name, hit) pairs by name into a sorted score table. */
static vlmc_status tabulate(named_hit *items, size_t n, mcq_group_score **out, int *n_out, vlmc_error *err) {
    *out = NULL;
    *n_out = 0;
    if (n == 0) return VLMC_OK;
    qsort(items, n, sizeof *items, named_hit_cmp);
    size_t groups = 1;
    for (size_t i = 1; i < n; i++) groups += strcmp(items[i].name, items[i - 1].name) != 0;
    mcq_group_score *t = calloc(groups, sizeof *t);
    if (!t) return vlmc_fail(err, VLMC_ERR_NOMEM, "circular eval: out of memory");
    size_t g = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(items[i].name, items[i - 1].name) != 0) g++;
        if (!t[g].name) {
            t[g].name = strdup(items[i].name);
            if (!t[g].name) {
                for (size_t k = 0; k < g; k++) free(t[k].name);
                free(t);
                return vlmc_fail(err, VLMC_ERR_NOMEM, "circular eval: out of memory");
            }
        }
        t[g].n++;
        t[g].hits += items[i].hit;
    }
    for (size_t k = 0; k < groups; k++) t[k].acc = (double)t[k].hits / t[k].n;
    *out = t;
    *n_out = (int)groups;
    return VLMC_OK;
}

void mcq_circular_result_free(mcq_circular_result *r) {
    if (!r) return;
    free(r->question);
    free(r->hit);
    for (int i = 0; i < r->n_categories; i++) free(r->categories[i].name);
    free(r->categories);
    for (int i = 0; i < r->n_l2_categories; i++) free(r->l2_categories[i].name);
    free(r->l2_categories);
    memset(r, 0, sizeof *r);
}

vlmc_status mcq_circular_eval(const mcq_record *records, size_t n, int64_t offset,
                              mcq_circular_result *out, vlmc_error *err) {
    if (!out) return vlmc_fail(err, VLMC_ERR_ARG, "circular eval: no result");
    memset(out, 0, sizeof *out);
    if (offset <= 0) return vlmc_fail(err, VLMC_ERR_ARG, "circular eval: offset %lld", (long long)offset);
    if (n > 0 && !records) return vlmc_fail(err, VLMC_ERR_ARG, "circular eval: no records");
    if (n > (size_t)INT32_MAX) return vlmc_fail(err, VLMC_ERR_LIMIT, "circular eval: %zu records", n);
    for (size_t i = 0; i < n; i++)
        if (records[i].index < 0)
            return vlmc_fail(err, VLMC_ERR_ARG, "circular eval: record %zu has index %lld", i,
                             (long long)records[i].index);
    if (n == 0) return VLMC_OK;

    gkey *keys = malloc(n * sizeof *keys);
    named_hit *cat = malloc(n * sizeof *cat), *l2 = malloc(n * sizeof *l2);
    size_t mains = 0;
    for (size_t i = 0; i < n; i++) mains += records[i].index % offset == records[i].index;
    out->question = malloc((mains ? mains : 1) * sizeof *out->question);
    out->hit = malloc((mains ? mains : 1) * sizeof *out->hit);
    if (!keys || !cat || !l2 || !out->question || !out->hit) {
        free(keys);
        free(cat);
        free(l2);
        mcq_circular_result_free(out);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "circular eval: out of memory for %zu records", n);
    }
    for (size_t i = 0; i < n; i++) keys[i] = (gkey){records[i].index % offset, i};
    qsort(keys, n, sizeof *keys, gkey_cmp);

    size_t nc = 0, nl2 = 0;
    for (size_t i = 0; i < n; i++) {
        const mcq_record *r = &records[i];
        if (r->index % offset != r->index) continue;
        /* The group: every record with g_index == r->index (binary search for its start). */
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (keys[mid].g < r->index) lo = mid + 1;
            else hi = mid;
        }
        bool hit = true;
        for (size_t k = lo; k < n && keys[k].g == r->index; k++) {
            const mcq_record *m = &records[keys[k].i];
            if (m->pred == 0 || m->pred != m->gt) hit = false;
        }
        out->question[out->n] = r->index;
        out->hit[out->n] = hit;
        out->n++;
        out->hits += hit;
        if (r->category) cat[nc++] = (named_hit){r->category, hit};
        if (r->l2_category) l2[nl2++] = (named_hit){r->l2_category, hit};
    }
    out->overall = out->n ? (double)out->hits / out->n : 0.0;
    vlmc_status st = tabulate(cat, nc, &out->categories, &out->n_categories, err);
    if (st == VLMC_OK) st = tabulate(l2, nl2, &out->l2_categories, &out->n_l2_categories, err);
    free(keys);
    free(cat);
    free(l2);
    if (st != VLMC_OK) mcq_circular_result_free(out);
    return st;
}

/* ---- MMMU ------------------------------------------------------------------ */

vlmc_status mmmu_parse_choice(const char *response, const char *const *options, int n_options, char *choice,
                              vlmc_error *err) {
    if (!choice) return vlmc_fail(err, VLMC_ERR_ARG, "mmmu parse: no output");
    *choice = 0;
    if (!response || !valid_options(options, n_options))
        return vlmc_fail(err, VLMC_ERR_ARG, "mmmu parse: need a response and 1..26 options");
    size_t n = strlen(response);
    const char *s = response;
    for (const char *c = ",.!?;:'"; *c; c++) { /* response.strip(c), one character at a time */
        while (n > 0 && s[0] == *c) s++, n--;
        while (n > 0 && s[n - 1] == *c) n--;
    }
    char *r = malloc(n + 3);
    if (!r) return vlmc_fail(err, VLMC_ERR_NOMEM, "mmmu parse: out of memory");
    r[0] = ' ';
    memcpy(r + 1, s, n);
    r[n + 1] = ' ';
    r[n + 2] = '\0';
    size_t len = n + 2;

    int cand[26], nc = 0;
    enum { BRACKET, SPACED, CONTENT } kind = BRACKET;
    char pat[4];
    for (int c = 0; c < n_options; c++) {
        pat[0] = '(', pat[1] = (char)('A' + c), pat[2] = ')';
        if (evtext_find(r, len, pat, 3, false) >= 0) cand[nc++] = c;
    }
    if (nc == 0) {
        kind = SPACED;
        for (int c = 0; c < n_options; c++) {
            pat[0] = ' ', pat[1] = (char)('A' + c), pat[2] = ' ';
            if (evtext_find(r, len, pat, 3, false) >= 0) cand[nc++] = c;
        }
    }
    if (nc == 0) {
        size_t words = 0, pos = 0, ws, wl;
        while (evtext_next_word(r, len, &pos, &ws, &wl)) words++;
        if (words > 5) {
            kind = CONTENT;
            for (int c = 0; c < n_options; c++)
                if (evtext_ci_find(r, len, options[c], strlen(options[c]), false) >= 0) cand[nc++] = c;
        }
    }
    if (nc == 1) {
        *choice = (char)('A' + cand[0]);
    } else if (nc > 1) {
        ssize_t best = 0;
        int best_c = -1;
        for (int k = 0; k < nc; k++) {
            int c = cand[k];
            ssize_t at;
            if (kind == CONTENT) {
                at = evtext_ci_find(r, len, options[c], strlen(options[c]), true);
            } else {
                pat[0] = kind == BRACKET ? '(' : ' ', pat[1] = (char)('A' + c), pat[2] = kind == BRACKET ? ')' : ' ';
                at = evtext_find(r, len, pat, 3, true);
            }
            if (best_c < 0 || at > best) best = at, best_c = c; /* np.argmax: the first maximum */
        }
        *choice = (char)('A' + best_c);
    }
    free(r);
    return VLMC_OK;
}
