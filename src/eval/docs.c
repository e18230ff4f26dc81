/* Benchmark data: MMBench TSV, `vlmc synth` QA JSONL, POPE JSONL and generic
 * JSONL, loaded into eval_doc lists (with CircularEval expansion). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/strbuf.h"
#include "eval/harness.h"
#include "eval/tsv.h"
#include "formats/json.h"

#define DATA_MAX_BYTES ((size_t)4 << 30)
#define CIRC_GIVEN_OFFSET 1000000

static char *dupstr(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static void doc_free(eval_doc *d) {
    free(d->id);
    free(d->subtask);
    free(d->question);
    free(d->hint);
    for (int i = 0; i < d->n_options; i++) free(d->options[i]);
    free(d->target);
    if (d->refs)
        for (size_t i = 0; i < d->n_refs; i++) free(d->refs[i]);
    free(d->refs);
    free(d->image);
    free(d->category);
    free(d->l2_category);
    memset(d, 0, sizeof *d);
}

void eval_docs_free(eval_docs *d) {
    if (!d) return;
    for (size_t i = 0; i < d->n; i++) doc_free(&d->docs[i]);
    free(d->docs);
    for (size_t i = 0; i < d->n_pool; i++) free(d->pool[i]);
    free(d->pool);
    memset(d, 0, sizeof *d);
}

typedef struct doc_vec {
    eval_doc *v;
    size_t n, cap;
    char **pool; /* image strings, shared by the docs */
    size_t n_pool, cap_pool;
} doc_vec;

/* Takes s into the pool (freeing it on failure); returns it, or NULL. */
static char *pool_add(doc_vec *dv, char *s) {
    if (!s) return NULL;
    if (dv->n_pool == dv->cap_pool) {
        size_t cap = dv->cap_pool ? dv->cap_pool * 2 : 64;
        char **p = realloc(dv->pool, cap * sizeof *p);
        if (!p) {
            free(s);
            return NULL;
        }
        dv->pool = p;
        dv->cap_pool = cap;
    }
    dv->pool[dv->n_pool++] = s;
    return s;
}

/* moves the docs and the pool of dv into out */
static void vec_move(doc_vec *dv, eval_docs *out) {
    out->docs = dv->v;
    out->n = dv->n;
    out->pool = dv->pool;
    out->n_pool = dv->n_pool;
    memset(dv, 0, sizeof *dv);
}

static eval_doc *vec_add(doc_vec *dv) {
    if (dv->n == dv->cap) {
        size_t cap = dv->cap ? dv->cap * 2 : 64;
        eval_doc *v = realloc(dv->v, cap * sizeof *v);
        if (!v) return NULL;
        dv->v = v;
        dv->cap = cap;
    }
    eval_doc *d = &dv->v[dv->n++];
    memset(d, 0, sizeof *d);
    return d;
}

static void vec_free(doc_vec *dv) {
    for (size_t i = 0; i < dv->n; i++) doc_free(&dv->v[i]);
    free(dv->v);
    for (size_t i = 0; i < dv->n_pool; i++) free(dv->pool[i]);
    free(dv->pool);
    memset(dv, 0, sizeof *dv);
}

/* refs = [target] */
static int set_target(eval_doc *d, const char *target) {
    d->target = dupstr(target);
    d->refs = calloc(1, sizeof *d->refs);
    if (!d->target || !d->refs || !(d->refs[0] = dupstr(target))) return 0;
    d->n_refs = 1;
    return 1;
}

static char *resolve_image(const eval_task *t, const char *p) {
    if (!p || !p[0]) return NULL;
    if (p[0] == '/') return dupstr(p);
    return path_join(t->image_root, p);
}

/* pandas' default NA strings: such a cell reads as NaN (VLMEvalKit then drops the option / hint). */
static bool pandas_na(const char *s) {
    static const char *const na[] = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                                     "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"};
    for (size_t i = 0; i < sizeof na / sizeof *na; i++)
        if (!strcmp(s, na[i])) return true;
    return false;
}

static bool parse_i64(const char *s, int64_t *out) {
    /* pandas reads an all-integer column as int64; "12.0" would be a float column: accept it too */
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!errno && end != s && (*end == '\0' || !strcmp(end, ".0")) && v >= 0) {
        *out = v;
        return true;
    }
    return false;
}


/* (index, position) pairs sorted by index, for lookups by VLMEvalKit index */
typedef struct index_pos {
    int64_t index;
    size_t pos;
} index_pos;

static int cmp_index_pos(const void *a, const void *b) {
    const index_pos *x = a, *y = b;
    if (x->index != y->index) return x->index < y->index ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* the first entry with this index, or NULL */
static const index_pos *find_index(const index_pos *m, size_t n, int64_t index) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m[mid].index < index) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && m[lo].index == index ? &m[lo] : NULL;
}

/* ---- CircularEval ---------------------------------------------------------- */

static vlmc_status circular_expand(const eval_task *t, doc_vec *in, eval_docs *out, vlmc_error *err) {
    int64_t max_index = 0;
    for (size_t i = 0; i < in->n; i++)
        if (in->v[i].index > max_index) max_index = in->v[i].index;
    int64_t offset = mcq_circular_offset(max_index);
    doc_vec o = {0};
    for (size_t i = 0; i < in->n; i++) {
        eval_doc *q = &in->v[i];
        int n = q->n_options;
        bool rotate = n >= 2 && !mcq_circular_abnormal((const char *const *)q->options, n);
        mcq_variant var[26];
        vlmc_status st = VLMC_OK;
        if (rotate && (st = mcq_circular_variants(n, q->target[0], q->index, offset, var, err))) {
            vec_free(&o);
            return vlmc_fail_prefix(err, "%s: question %s", t->data, q->id);
        }
        int n_rot = rotate ? n : 1;
        for (int k = 0; k < n_rot; k++) {
            eval_doc *d = vec_add(&o);
            if (!d) goto nomem;
            if (k == 0) {
                *d = *q;
                memset(q, 0, sizeof *q);
                d->group = d->index;
                d->rotation = 0;
                continue;
            }
            const eval_doc *src = &o.v[o.n - 1 - k]; /* rotation 0 of this question */
            char idbuf[64];
            snprintf(idbuf, sizeof idbuf, "%" PRId64, var[k].index);
            d->id = dupstr(idbuf);
            d->question = dupstr(src->question);
            d->hint = src->hint ? dupstr(src->hint) : NULL;
            d->n_options = n;
            int bad = !d->id || !d->question || (src->hint && !d->hint);
            for (int j = 0; j < n; j++) bad |= !(d->options[j] = dupstr(src->options[var[k].source[j]]));
            char letter[2] = {var[k].answer, 0};
            bad |= !set_target(d, letter);
            if (src->image) bad |= !(d->image = dupstr(src->image));
            d->image_b64 = src->image_b64; /* shared: owned by the pool */
            if (src->category) bad |= !(d->category = dupstr(src->category));
            if (src->l2_category) bad |= !(d->l2_category = dupstr(src->l2_category));
            d->index = var[k].index;
            d->group = src->index;
            d->rotation = k;
            d->question_no = src->question_no;
            if (bad) goto nomem;
        }
    }
    o.pool = in->pool;
    o.n_pool = in->n_pool;
    o.cap_pool = in->cap_pool;
    in->pool = NULL;
    in->n_pool = in->cap_pool = 0;
    vec_free(in);
    vec_move(&o, out);
    out->circular_offset = offset;
    return VLMC_OK;
nomem:
    vec_free(&o);
    return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", t->data);
}

/* Final step of every loader: limit, circular handling, doc ids. */
static vlmc_status finish(const eval_task *t, doc_vec *dv, long limit, eval_docs *out, vlmc_error *err) {
    memset(out, 0, sizeof *out);
    if (t->kind == EVAL_KIND_MCQ && t->circular == EVAL_CIRC_GIVEN) {
        /* rows with index >= offset are rotations of the row index % offset */
        size_t nq = 0;
        for (size_t i = 0; i < dv->n; i++) {
            dv->v[i].group = dv->v[i].index % CIRC_GIVEN_OFFSET;
            int64_t rot = dv->v[i].index / CIRC_GIVEN_OFFSET;
            dv->v[i].rotation = rot > 1000 ? 1000 : (int)rot;
            if (dv->v[i].rotation == 0) {
                dv->v[i].question_no = (int)nq++;
            } else dv->v[i].question_no = -1;
        }
        index_pos *m = malloc((nq ? nq : 1) * sizeof *m);
        if (!m) {
            vec_free(dv);
            return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", t->data);
        }
        size_t k = 0;
        for (size_t i = 0; i < dv->n; i++)
            if (dv->v[i].rotation == 0) m[k++] = (index_pos){dv->v[i].index, i};
        qsort(m, k, sizeof *m, cmp_index_pos);
        for (size_t i = 0; i < dv->n; i++) {
            if (dv->v[i].rotation == 0) continue;
            const index_pos *q = find_index(m, k, dv->v[i].group);
            dv->v[i].question_no = q ? dv->v[q->pos].question_no : INT32_MAX; /* orphans count past the limit */
        }
        free(m);
        out->n_questions = nq;
        out->circular_offset = CIRC_GIVEN_OFFSET;
        size_t w = 0;
        for (size_t i = 0; i < dv->n; i++) {
            if (limit > 0 && dv->v[i].question_no >= limit) {
                doc_free(&dv->v[i]);
                continue;
            }
            dv->v[w++] = dv->v[i];
        }
        dv->n = w;
        vec_move(dv, out);
    } else {
        out->n_questions = dv->n;
        if (limit > 0 && (size_t)limit < dv->n) {
            for (size_t i = (size_t)limit; i < dv->n; i++) doc_free(&dv->v[i]);
            dv->n = (size_t)limit;
        }
        for (size_t i = 0; i < dv->n; i++) dv->v[i].question_no = (int)i;
        if (t->kind == EVAL_KIND_MCQ && t->circular == EVAL_CIRC_EXPAND) {
            size_t nq = out->n_questions;
            vlmc_status st = circular_expand(t, dv, out, err);
            if (st) {
                vec_free(dv);
                return st;
            }
            out->n_questions = nq;
        } else {
            vec_move(dv, out);
        }
    }
    for (size_t i = 0; i < out->n; i++) out->docs[i].doc_id = (int64_t)i;
    return VLMC_OK;
}

/* ---- MMBench TSV ------------------------------------------------------------- */

vlmc_status eval_docs_from_mmbench_tsv(const eval_task *t, const char *data, size_t len, long limit,
                                       eval_docs *out, vlmc_error *err) {
    memset(out, 0, sizeof *out);
    tsv_table tb;
    const char *name = t->data;
    vlmc_status st = tsv_parse(data, len, name, &tb, err);
    if (st) return st;
    int c_index = tsv_column(&tb, "index"), c_q = tsv_column(&tb, "question"), c_hint = tsv_column(&tb, "hint");
    int c_ans = tsv_column(&tb, "answer"), c_img = tsv_column(&tb, "image");
    int c_cat = t->category_field ? tsv_column(&tb, t->category_field) : -1;
    int c_l2 = tsv_column(&tb, "l2-category");
    if (c_l2 < 0) c_l2 = tsv_column(&tb, "l2_category");
    int c_opt[26];
    int n_opt_cols = 0;
    for (int i = 0; i < 26; i++) {
        char h[2] = {(char)('A' + i), 0};
        c_opt[i] = tsv_column(&tb, h);
        if (c_opt[i] >= 0) n_opt_cols = i + 1;
    }
    const char *missing = c_index < 0 ? "index" : c_q < 0 ? "question" : c_ans < 0 ? "answer" : n_opt_cols == 0 ? "A" : NULL;
    if (missing) {
        tsv_free(&tb);
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: no column '%s' (an MMBench TSV has index, question, hint, "
                         "A, B, ..., answer, image, category)", name, missing);
    }
    doc_vec dv = {0};
    const char **row_img = NULL;
    index_pos *map = malloc((tb.n_rows ? tb.n_rows : 1) * sizeof *map);
    size_t n_map = 0;
    if (!map) goto nomem;
    for (size_t r = 0; r < tb.n_rows; r++) {
        int64_t v;
        if (parse_i64(tsv_cell(&tb, r, c_index), &v)) map[n_map++] = (index_pos){v, r};
    }
    qsort(map, n_map, sizeof *map, cmp_index_pos);
    /* inline images (longer than 64 characters) go to the pool once, shared by the rows that refer to them */
    row_img = calloc(tb.n_rows ? tb.n_rows : 1, sizeof *row_img);
    if (!row_img) goto nomem;
    for (size_t r = 0; c_img >= 0 && r < tb.n_rows; r++) {
        char **cell = &tb.cells[r * tb.n_cols + (size_t)c_img];
        if (strlen(*cell) <= 64) continue;
        row_img[r] = pool_add(&dv, *cell);
        *cell = NULL;
        if (!row_img[r]) goto nomem;
    }
    for (size_t k = 1; k < n_map; k++)
        if (map[k].index == map[k - 1].index &&
            (t->circular != EVAL_CIRC_GIVEN || map[k].index < CIRC_GIVEN_OFFSET)) {
            st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: data row %zu: index %s occurs twice", name, map[k].pos + 1,
                           tsv_cell(&tb, map[k].pos, c_index));
            goto fail;
        }
    for (size_t r = 0; r < tb.n_rows; r++) {
        size_t line = r + 1; /* the data row number (rows may span lines when quoted) */
        eval_doc *d = vec_add(&dv);
        if (!d) goto nomem;
        const char *idx = tsv_cell(&tb, r, c_index);
        if (!parse_i64(idx, &d->index)) {
            st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: data row %zu: index '%.40s' is not a non-negative integer", name,
                           line, idx);
            goto fail;
        }
        d->id = dupstr(idx);
        d->question = dupstr(tsv_cell(&tb, r, c_q));
        if (!d->id || !d->question) goto nomem;
        const char *hint = tsv_cell(&tb, r, c_hint);
        if (c_hint >= 0 && !pandas_na(hint) && !(d->hint = dupstr(hint))) goto nomem;
        for (int i = 0; i < n_opt_cols; i++) {
            const char *o = tsv_cell(&tb, r, c_opt[i]);
            if (c_opt[i] < 0 || pandas_na(o)) break; /* options are A, B, ... without gaps */
            if (!(d->options[d->n_options++] = dupstr(o))) goto nomem;
        }
        const char *ans = tsv_cell(&tb, r, c_ans);
        if (strlen(ans) != 1 || ans[0] < 'A' || ans[0] >= 'A' + d->n_options) {
            st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: data row %zu (index %s): answer '%.40s' is not one of the %d option "
                           "letters", name, line, d->id, ans, d->n_options);
            goto fail;
        }
        if (!set_target(d, ans)) goto nomem;
        const char *cat = tsv_cell(&tb, r, c_cat);
        if (c_cat >= 0 && !pandas_na(cat) && !(d->category = dupstr(cat))) goto nomem;
        const char *l2 = tsv_cell(&tb, r, c_l2);
        if (c_l2 >= 0 && !pandas_na(l2) && !(d->l2_category = dupstr(l2))) goto nomem;
        const char *img = tsv_cell(&tb, r, c_img);
        if (row_img[r]) {
            d->image_b64 = row_img[r];
        } else if (c_img >= 0 && !pandas_na(img)) {
            /* VLMEvalKit: a short image field is the index of the row holding the image */
            const char *found = NULL;
            int64_t ref;
            const index_pos *q = parse_i64(img, &ref) ? find_index(map, n_map, ref) : NULL;
            for (; q && q < map + n_map && q->index == ref && !found; q++) found = row_img[q->pos];
            if (!found) {
                st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: data row %zu (index %s): image '%.64s' is neither base64 "
                               "data nor the index of a row with an image", name, line, d->id, img);
                goto fail;
            }
            d->image_b64 = found;
        }
    }
    free(map);
    free(row_img);
    tsv_free(&tb);
    return finish(t, &dv, limit, out, err);
nomem:
    st = vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", name);
fail:
    free(map);
    free(row_img);
    vec_free(&dv);
    tsv_free(&tb);
    return st;
}

/* ---- JSONL ----------------------------------------------------------------- */

typedef vlmc_status (*row_fn)(const eval_task *t, const cJSON *row, size_t line, eval_doc *d, doc_vec *dv,
                              vlmc_error *err);

static vlmc_status need_str(const eval_task *t, const cJSON *row, const char *key, size_t line, const char **out,
                            vlmc_error *err) {
    const cJSON *v = json_get(row, key);
    if (!cJSON_IsString(v))
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s:%zu: key \"%s\" is missing or not a string", t->data, line, key);
    *out = v->valuestring;
    return VLMC_OK;
}

/* an id that is a string or an integer */
static char *id_text(const cJSON *v) {
    if (cJSON_IsString(v)) return dupstr(v->valuestring);
    if (cJSON_IsNumber(v)) {
        char b[64];
        if (v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) < 9e15)
            snprintf(b, sizeof b, "%.0f", v->valuedouble);
        else snprintf(b, sizeof b, "%.17g", v->valuedouble);
        return dupstr(b);
    }
    return NULL;
}

static vlmc_status row_synth(const eval_task *t, const cJSON *row, size_t line, eval_doc *d, doc_vec *dv,
                             vlmc_error *err) {
    const char *id = NULL, *image = NULL, *task = NULL, *q = NULL, *a = NULL;
    vlmc_status st;
    if ((st = need_str(t, row, "id", line, &id, err)) || (st = need_str(t, row, "image", line, &image, err)) ||
        (st = need_str(t, row, "task", line, &task, err)) || (st = need_str(t, row, "question", line, &q, err)) ||
        (st = need_str(t, row, "answer", line, &a, err)))
        return st;
    int64_t turn = json_int(row, "turn", -1);
    if (turn < 0 || turn > 1000)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s:%zu: key \"turn\" is missing or not an integer 0..1000", t->data, line);
    char idb[160];
    snprintf(idb, sizeof idb, "%.100s_%d", id, (int)turn);
    if (!(d->id = dupstr(idb)) || !(d->subtask = dupstr(task)) || !(d->question = dupstr(q)) || !set_target(d, a) ||
        !(d->image = resolve_image(t, image)))
        return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    if (!strcmp(task, "mcq")) {
        const cJSON *o = json_get(row, "options");
        int n = cJSON_IsArray(o) ? cJSON_GetArraySize(o) : -1;
        if (n < 1 || n > 26)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s:%zu: an mcq row needs \"options\", a list of 1..26 strings",
                             t->data, line);
        for (int i = 0; i < n; i++) {
            const cJSON *e = cJSON_GetArrayItem(o, i);
            if (!cJSON_IsString(e))
                return vlmc_fail(err, VLMC_ERR_FORMAT, "%s:%zu: option %d is not a string", t->data, line, i);
            if (!(d->options[d->n_options++] = dupstr(e->valuestring)))
                return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        }
        if (strlen(a) != 1 || a[0] < 'A' || a[0] >= 'A' + n)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s:%zu: answer '%s' is not an option letter", t->data, line, a);
    }
    if (!strcmp(task, "grounding")) {
        const cJSON *b = json_get(row, "box");
        if (!cJSON_IsArray(b) || cJSON_GetArraySize(b) != 4)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s:%zu: a grounding row needs \"box\", 4 numbers", t->data, line);
        double v[4];
        for (int i = 0; i < 4; i++) {
            const cJSON *e = cJSON_GetArrayItem(b, i);
            if (!cJSON_IsNumber(e))
                return vlmc_fail(err, VLMC_ERR_FORMAT, "%s:%zu: \"box\" holds a non-number", t->data, line);
            v[i] = e->valuedouble;
        }
        d->box = (eval_box){v[0], v[1], v[2], v[3]};
        d->has_box = true;
    }
    return VLMC_OK;
}

static vlmc_status row_pope(const eval_task *t, const cJSON *row, size_t line, eval_doc *d, doc_vec *dv,
                             vlmc_error *err) {
    const char *image = NULL, *q = NULL, *label = NULL;
    vlmc_status st;
    if ((st = need_str(t, row, "image", line, &image, err)) || (st = need_str(t, row, "text", line, &q, err)) ||
        (st = need_str(t, row, "label", line, &label, err)))
        return st;
    const cJSON *qid = json_get(row, "question_id");
    d->id = qid ? id_text(qid) : NULL;
    if (!d->id) {
        char b[32];
        snprintf(b, sizeof b, "%zu", line);
        d->id = dupstr(b);
    }
    const char *cat = t->category_field ? json_string(row, t->category_field, NULL) : NULL;
    if (!d->id || !(d->question = dupstr(q)) || !set_target(d, pope_label_is_yes(label) ? "yes" : "no") ||
        !(d->image = resolve_image(t, image)) || (cat && !(d->category = dupstr(cat))))
        return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    return VLMC_OK;
}

static vlmc_status row_generic(const eval_task *t, const cJSON *row, size_t line, eval_doc *d, doc_vec *dv,
                             vlmc_error *err) {
    const char *q = NULL;
    vlmc_status st;
    if ((st = need_str(t, row, t->f_question, line, &q, err))) return st;
    const cJSON *idv = json_get(row, t->f_id);
    d->id = idv ? id_text(idv) : NULL;
    if (!d->id) {
        char b[32];
        snprintf(b, sizeof b, "%zu", line);
        d->id = dupstr(b);
    }
    if (!d->id || !(d->question = dupstr(q))) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    const char *hint = json_string(row, t->f_hint, NULL);
    if (hint && hint[0] && !(d->hint = dupstr(hint))) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    const char *cat = json_string(row, t->category_field ? t->category_field : t->f_category, NULL);
    if (cat && !(d->category = dupstr(cat))) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    const char *img = json_string(row, t->f_image, NULL);
    if (img && img[0]) {
        if (!strncmp(img, "data:", 5)) d->image_b64 = pool_add(dv, dupstr(img));
        else d->image = resolve_image(t, img);
        if (!d->image && !d->image_b64) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    }
    const cJSON *o = json_get(row, t->f_options);
    if (o) {
        int n = cJSON_IsArray(o) ? cJSON_GetArraySize(o) : -1;
        if (n < 0 || n > 26)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s:%zu: key \"%s\" must be a list of at most 26 strings", t->data,
                             line, t->f_options);
        for (int i = 0; i < n; i++) {
            const cJSON *e = cJSON_GetArrayItem(o, i);
            if (!cJSON_IsString(e))
                return vlmc_fail(err, VLMC_ERR_FORMAT, "%s:%zu: option %d is not a string", t->data, line, i);
            if (!(d->options[d->n_options++] = dupstr(e->valuestring)))
                return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        }
    }
    if (t->kind == EVAL_KIND_MCQ && d->n_options < 1)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s:%zu: kind mcq needs options (key \"%s\")", t->data, line,
                         t->f_options);
    const cJSON *a = json_get(row, t->f_answer);
    if (!a) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s:%zu: key \"%s\" is missing", t->data, line, t->f_answer);
    if (t->kind == EVAL_KIND_MCQ) {
        char letter[2] = {0, 0};
        if (cJSON_IsNumber(a) && a->valuedouble >= 0 && a->valuedouble < d->n_options &&
            a->valuedouble == floor(a->valuedouble))
            letter[0] = (char)('A' + (int)a->valuedouble); /* ScienceQA: the answer is the option's index */
        else if (cJSON_IsString(a) && strlen(a->valuestring) == 1 && a->valuestring[0] >= 'A' &&
                 a->valuestring[0] < 'A' + d->n_options)
            letter[0] = a->valuestring[0];
        else
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s:%zu: key \"%s\" must be an option letter or a 0-based option "
                             "index", t->data, line, t->f_answer);
        if (!set_target(d, letter)) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        return VLMC_OK;
    }
    if (t->kind == EVAL_KIND_GROUNDING && cJSON_IsArray(a)) {
        if (cJSON_GetArraySize(a) != 4)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s:%zu: a box answer has 4 numbers", t->data, line);
        double v[4];
        for (int i = 0; i < 4; i++) {
            const cJSON *e = cJSON_GetArrayItem(a, i);
            if (!cJSON_IsNumber(e)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s:%zu: box holds a non-number", t->data, line);
            v[i] = e->valuedouble;
        }
        d->box = (eval_box){v[0], v[1], v[2], v[3]};
        d->has_box = true;
        char b[160];
        snprintf(b, sizeof b, "[%.10g, %.10g, %.10g, %.10g]", v[0], v[1], v[2], v[3]);
        if (!set_target(d, b)) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        return VLMC_OK;
    }
    if (cJSON_IsArray(a)) {
        int n = cJSON_GetArraySize(a);
        if (n < 1 || n > 1000)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s:%zu: key \"%s\" must hold 1..1000 answers", t->data, line,
                             t->f_answer);
        d->refs = calloc((size_t)n, sizeof *d->refs);
        if (!d->refs) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        for (int i = 0; i < n; i++) {
            const cJSON *e = cJSON_GetArrayItem(a, i);
            if (!cJSON_IsString(e))
                return vlmc_fail(err, VLMC_ERR_FORMAT, "%s:%zu: answer %d is not a string", t->data, line, i);
            if (!(d->refs[d->n_refs++] = dupstr(e->valuestring))) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        }
        if (!(d->target = dupstr(d->refs[0]))) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    } else if (cJSON_IsString(a)) {
        if (!set_target(d, a->valuestring)) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    } else {
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s:%zu: key \"%s\" must be a string or a list of strings", t->data,
                         line, t->f_answer);
    }
    if (t->kind == EVAL_KIND_GROUNDING) {
        if (grounding_parse_box(d->target, BOX_NONE, &d->box) == BOX_NONE)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s:%zu: the answer '%.60s' holds no box", t->data, line, d->target);
        d->has_box = true;
    }
    if (t->kind == EVAL_KIND_YESNO) {
        const char *yn = pope_label_is_yes(d->target) ? "yes" : "no";
        free(d->target);
        d->target = dupstr(yn);
        if (!d->target) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    }
    return VLMC_OK;
}

static vlmc_status load_jsonl(const eval_task *t, row_fn fn, long limit, eval_docs *out, vlmc_error *err) {
    char *text;
    size_t len;
    vlmc_status st = file_read_all(t->data, DATA_MAX_BYTES, &text, &len, err);
    if (st) return vlmc_fail_prefix(err, "task %s (%s)", t->name, t->file);
    doc_vec dv = {0};
    size_t line = 0;
    /* with a limit and no circular expansion, rows past it are not parsed */
    for (size_t p = 0; p < len;) {
        const char *nl = memchr(text + p, '\n', len - p);
        size_t e = nl ? (size_t)(nl - text) : len;
        line++;
        size_t s = p;
        p = e + 1;
        while (s < e && isspace((unsigned char)text[s])) s++;
        if (s == e) continue;
        if (limit > 0 && t->circular != EVAL_CIRC_GIVEN && dv.n >= (size_t)limit) {
            /* count the rest for n-samples.original without parsing them */
            continue;
        }
        char what[64];
        snprintf(what, sizeof what, "line %zu", line);
        cJSON *row;
        if ((st = json_parse(text + s, e - s, what, &row, err))) {
            vlmc_fail_prefix(err, "%s", t->data);
            goto fail;
        }
        if (!cJSON_IsObject(row)) {
            cJSON_Delete(row);
            st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s:%zu: a row is a JSON object", t->data, line);
            goto fail;
        }
        eval_doc *d = vec_add(&dv);
        if (!d) {
            cJSON_Delete(row);
            st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
            goto fail;
        }
        d->index = (int64_t)dv.n - 1;
        st = fn(t, row, line, d, &dv, err);
        cJSON_Delete(row);
        if (st) goto fail;
    }
    size_t total = 0;
    for (size_t p = 0; p < len;) {
        const char *nl = memchr(text + p, '\n', len - p);
        size_t e = nl ? (size_t)(nl - text) : len;
        size_t s = p;
        p = e + 1;
        while (s < e && isspace((unsigned char)text[s])) s++;
        total += s < e;
    }
    free(text);
    st = finish(t, &dv, limit, out, err);
    if (!st && t->circular != EVAL_CIRC_GIVEN) out->n_questions = total;
    return st;
fail:
    free(text);
    vec_free(&dv);
    return st;
}

vlmc_status eval_docs_load(const eval_task *t, long limit, eval_docs *out, vlmc_error *err) {
    memset(out, 0, sizeof *out);
    switch (t->format) {
    case EVAL_FMT_MMBENCH_TSV: {
        char *text;
        size_t len;
        vlmc_status st = file_read_all(t->data, DATA_MAX_BYTES, &text, &len, err);
        if (st) return vlmc_fail_prefix(err, "task %s (%s)", t->name, t->file);
        st = eval_docs_from_mmbench_tsv(t, text, len, limit, out, err);
        free(text);
        return st;
    }
    case EVAL_FMT_SYNTH_QA: return load_jsonl(t, row_synth, limit, out, err);
    case EVAL_FMT_POPE_JSONL: return load_jsonl(t, row_pope, limit, out, err);
    case EVAL_FMT_JSONL: return load_jsonl(t, row_generic, limit, out, err);
    }
    return vlmc_fail(err, VLMC_ERR_INTERNAL, "unknown format");
}

/* ---- prompts ----------------------------------------------------------------- */

vlmc_status eval_render_prompt(const eval_task *t, const eval_doc *d, char **out, vlmc_error *err) {
    strbuf b = {0};
    bool has_image = d->image || d->image_b64;
    for (const char *p = t->prompt; *p;) {
        if (p[0] == '{' && p[1] == '{') {
            strbuf_append(&b, "{", 1);
            p += 2;
        } else if (p[0] == '}' && p[1] == '}') {
            strbuf_append(&b, "}", 1);
            p += 2;
        } else if (p[0] == '{') {
            const char *e = strchr(p, '}');
            size_t n = e ? (size_t)(e - p - 1) : 0;
            const char *k = p + 1;
#define IS(s) (n == sizeof(s) - 1 && !strncmp(k, s, n))
            if (!e) {
                strbuf_free(&b);
                return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: key \"prompt\": unmatched '{' (write {{ for a brace)", t->file);
            } else if (IS("image")) {
                if (has_image) strbuf_puts(&b, EVAL_IMAGE_MARKER);
            } else if (IS("question")) {
                strbuf_puts(&b, d->question ? d->question : "");
            } else if (IS("hint")) {
                strbuf_puts(&b, d->hint ? d->hint : "");
            } else if (IS("hint_line")) {
                if (d->hint) {
                    strbuf_puts(&b, d->hint);
                    strbuf_puts(&b, "\n");
                }
            } else if (IS("options")) {
                for (int i = 0; i < d->n_options; i++) strbuf_printf(&b, "%c. %s\n", 'A' + i, d->options[i]);
            } else {
                strbuf_free(&b);
                return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: key \"prompt\": unknown placeholder '{%.*s}' (image, "
                                 "question, hint, hint_line, options)", t->file, (int)(n > 40 ? 40 : n), k);
            }
#undef IS
            p = e + 1;
        } else {
            const char *q = p + 1;
            while (*q && *q != '{' && *q != '}') q++;
            strbuf_append(&b, p, (size_t)(q - p));
            p = q;
        }
    }
    *out = strbuf_take(&b);
    if (!*out) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    return VLMC_OK;
}
