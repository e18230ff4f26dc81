/* Per-sample scoring and per-task metrics of the harness, on top of metrics.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"
#include "eval/harness.h"

static char *dupstr(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

typedef enum scorer { SC_MCQ, SC_EXACT, SC_VQA_ACC, SC_ANLS, SC_BOX, SC_YESNO, SC_CAPTION } scorer;

static scorer scorer_of(const eval_task *t, const eval_doc *d) {
    switch (t->kind) {
    case EVAL_KIND_MCQ: return SC_MCQ;
    case EVAL_KIND_VQA:
        if (!strcmp(t->metrics[0], "vqa_accuracy")) return SC_VQA_ACC;
        if (!strcmp(t->metrics[0], "anls")) return SC_ANLS;
        return SC_EXACT;
    case EVAL_KIND_GROUNDING: return SC_BOX;
    case EVAL_KIND_CAPTION: return SC_CAPTION;
    case EVAL_KIND_YESNO: return SC_YESNO;
    case EVAL_KIND_SYNTH:
        if (d->subtask && !strcmp(d->subtask, "mcq")) return SC_MCQ;
        if (d->subtask && !strcmp(d->subtask, "grounding")) return SC_BOX;
        if (d->subtask && !strcmp(d->subtask, "caption")) return SC_CAPTION;
        return SC_EXACT;
    }
    return SC_EXACT;
}

static vlmc_status exact_any(const eval_doc *d, const char *response, double *score, vlmc_error *err) {
    *score = 0;
    for (size_t i = 0; i < d->n_refs; i++) {
        bool m;
        vlmc_status st = vqa_exact_match(response, d->refs[i], &m, err);
        if (st) return st;
        if (m) {
            *score = 1;
            break;
        }
    }
    return VLMC_OK;
}

vlmc_status eval_score_sample(const eval_task *t, const eval_doc *d, const char *response, char **parsed,
                              double *score, double *iou, vlmc_error *err) {
    *parsed = NULL;
    *score = 0;
    *iou = -1;
    vlmc_status st = VLMC_OK;
    switch (scorer_of(t, d)) {
    case SC_MCQ: {
        char c = mcq_infer(response, (const char *const *)d->options, d->n_options);
        char b[2] = {c, 0};
        *parsed = dupstr(b);
        *score = c && c == d->target[0];
        break;
    }
    case SC_EXACT:
    case SC_VQA_ACC:
    case SC_ANLS:
        if ((st = vqa_normalize(response, parsed, err))) return st;
        if (scorer_of(t, d) == SC_EXACT) st = exact_any(d, response, score, err);
        else if (scorer_of(t, d) == SC_VQA_ACC)
            st = vqa_accuracy(response, (const char *const *)d->refs, d->n_refs, score, err);
        else st = anls_score(response, (const char *const *)d->refs, d->n_refs, t->anls_threshold, score, err);
        if (st) {
            free(*parsed);
            *parsed = NULL;
            return st;
        }
        return VLMC_OK;
    case SC_BOX: {
        eval_box b;
        if (grounding_parse_box(response, BOX_NONE, &b) == BOX_NONE) {
            *parsed = dupstr("");
        } else {
            char buf[200];
            snprintf(buf, sizeof buf, "[%.10g, %.10g, %.10g, %.10g]", b.x1, b.y1, b.x2, b.y2);
            *parsed = dupstr(buf);
            *iou = grounding_iou(b, d->box);
            *score = *iou >= t->iou_threshold;
        }
        break;
    }
    case SC_YESNO: {
        bool y = pope_parse_yes(response);
        *parsed = dupstr(y ? "yes" : "no");
        *score = y == pope_label_is_yes(d->target);
        break;
    }
    case SC_CAPTION:
        if ((st = caption_ptb_tokenize(response, parsed, err))) return st;
        return VLMC_OK; /* the CIDEr-D share is set by eval_aggregate */
    }
    if (!*parsed) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    return VLMC_OK;
}

/* ---- aggregation ------------------------------------------------------------- */

typedef struct acc {
    double sum, sum2;
    size_t n;
} acc;

static void acc_add(acc *a, double x) {
    a->sum += x;
    a->sum2 += x * x;
    a->n++;
}

static double acc_mean(const acc *a) { return a->n ? a->sum / (double)a->n : 0; }

/* lm-eval's mean_stderr: sample standard deviation / sqrt(n) */
static double acc_stderr(const acc *a) {
    if (a->n < 2) return 0;
    double m = acc_mean(a);
    double var = (a->sum2 - (double)a->n * m * m) / (double)(a->n - 1);
    return var > 0 ? sqrt(var / (double)a->n) : 0;
}

static vlmc_status put_metric(cJSON *res, const char *name, const acc *a, bool with_stderr, vlmc_error *err) {
    if (!cJSON_AddNumberToObject(res, name, acc_mean(a))) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    if (with_stderr && a->n >= 2) {
        char k[64];
        snprintf(k, sizeof k, "%s_stderr", name);
        if (!cJSON_AddNumberToObject(res, k, acc_stderr(a))) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    }
    return VLMC_OK;
}


/* breakdown[field][name] = {"accuracy": mean, "n": n} over the rows where key(row) == name */
typedef struct group_acc {
    const char *name;
    acc a, iou;
} group_acc;

static vlmc_status add_group(group_acc **g, size_t *n, const char *name, double score, double iou, vlmc_error *err) {
    for (size_t i = 0; i < *n; i++)
        if (!strcmp((*g)[i].name, name)) {
            acc_add(&(*g)[i].a, score);
            if (iou > -2) acc_add(&(*g)[i].iou, iou < 0 ? 0 : iou);
            return VLMC_OK;
        }
    group_acc *ng = realloc(*g, (*n + 1) * sizeof **g);
    if (!ng) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    *g = ng;
    memset(&ng[*n], 0, sizeof ng[*n]);
    ng[*n].name = name;
    acc_add(&ng[*n].a, score);
    if (iou > -2) acc_add(&ng[*n].iou, iou < 0 ? 0 : iou);
    (*n)++;
    return VLMC_OK;
}

static int cmp_group(const void *a, const void *b) {
    return strcmp(((const group_acc *)a)->name, ((const group_acc *)b)->name);
}

static vlmc_status caption_scores(const eval_task *t, const eval_doc *docs, eval_sample *s, const size_t *idx, size_t n,
                                  double *cider, double *bleu4, vlmc_error *err) {
    *cider = 0;
    *bleu4 = 0;
    if (!n) return VLMC_OK;
    caption_item *items = calloc(n, sizeof *items);
    char ***refs = calloc(n, sizeof *refs);
    double *per = calloc(n, sizeof *per);
    vlmc_status st = VLMC_OK;
    if (!items || !refs || !per) {
        st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const eval_doc *d = &docs[idx[i]];
        refs[i] = calloc(d->n_refs, sizeof **refs);
        if (!refs[i]) {
            st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
            goto done;
        }
        for (size_t r = 0; r < d->n_refs; r++)
            if ((st = caption_ptb_tokenize(d->refs[r], &refs[i][r], err))) goto done;
        items[i].candidate = s[idx[i]].parsed;
        items[i].refs = (const char *const *)refs[i];
        items[i].n_refs = d->n_refs;
    }
    double bleu[4];
    if ((st = caption_bleu(items, n, bleu, err))) goto done;
    if ((st = caption_cider_d(items, n, cider, per, err))) goto done;
    *bleu4 = bleu[3];
    for (size_t i = 0; i < n; i++) s[idx[i]].score = per[i];
done:
    if (refs)
        for (size_t i = 0; i < n; i++) {
            if (!refs[i]) continue;
            for (size_t r = 0; r < docs[idx[i]].n_refs; r++) free(refs[i][r]);
            free(refs[i]);
        }
    free(refs);
    free(items);
    free(per);
    (void)t;
    return st;
}

static vlmc_status put_groups(cJSON *parent, const char *field, group_acc *g, size_t n, const char *metric,
                              bool with_iou, vlmc_error *err) {
    if (!n) return VLMC_OK;
    qsort(g, n, sizeof *g, cmp_group);
    cJSON *o = cJSON_AddObjectToObject(parent, field);
    if (!o) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        cJSON *e = cJSON_AddObjectToObject(o, g[i].name);
        if (!e || !cJSON_AddNumberToObject(e, metric, acc_mean(&g[i].a)) ||
            !cJSON_AddNumberToObject(e, "n", (double)g[i].a.n) ||
            (with_iou && g[i].iou.n && !cJSON_AddNumberToObject(e, "mean_iou", acc_mean(&g[i].iou))))
            return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    }
    return VLMC_OK;
}

static vlmc_status aggregate_circular(const eval_task *t, const eval_doc *docs, eval_sample *s, size_t n,
                                      int64_t offset, cJSON *res, cJSON *bd, vlmc_error *err) {
    mcq_record *r = calloc(n ? n : 1, sizeof *r);
    if (!r) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        r[i].index = docs[i].index;
        r[i].gt = docs[i].target[0];
        r[i].pred = s[i].parsed ? s[i].parsed[0] : 0;
        r[i].category = docs[i].category;
        r[i].l2_category = docs[i].l2_category;
    }
    mcq_circular_result cr;
    vlmc_status st = mcq_circular_eval(r, n, offset, &cr, err);
    free(r);
    if (st) return st;
    acc a = {0}, vanilla = {0};
    for (int i = 0; i < cr.n; i++) acc_add(&a, cr.hit[i]);
    for (size_t i = 0; i < n; i++)
        if (docs[i].rotation == 0) acc_add(&vanilla, s[i].score);
    if ((st = put_metric(res, "accuracy", &a, true, err)) || (st = put_metric(res, "vanilla_accuracy", &vanilla, true, err)))
        goto out;
    const char *names[2] = {"category", "l2-category"};
    mcq_group_score *gs[2] = {cr.categories, cr.l2_categories};
    int ng[2] = {cr.n_categories, cr.n_l2_categories};
    for (int k = 0; k < 2; k++) {
        if (!ng[k]) continue;
        cJSON *o = cJSON_AddObjectToObject(bd, names[k]);
        if (!o) {
            st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
            goto out;
        }
        for (int i = 0; i < ng[k]; i++) {
            cJSON *e = cJSON_AddObjectToObject(o, gs[k][i].name);
            if (!e || !cJSON_AddNumberToObject(e, "accuracy", gs[k][i].acc) ||
                !cJSON_AddNumberToObject(e, "n", gs[k][i].n)) {
                st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
                goto out;
            }
        }
    }
out:
    mcq_circular_result_free(&cr);
    return st;
}

vlmc_status eval_aggregate(const eval_task *t, const eval_doc *docs, eval_sample *s, size_t n, cJSON *res,
                           cJSON *bd, vlmc_error *err) {
    vlmc_status st = VLMC_OK;
    group_acc *groups = NULL, *l2 = NULL;
    size_t n_groups = 0, n_l2 = 0;
    size_t *cap_idx = calloc(n ? n : 1, sizeof *cap_idx);
    size_t n_cap = 0;
    if (!cap_idx) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (scorer_of(t, &docs[i]) == SC_CAPTION) cap_idx[n_cap++] = i;
    double cider = 0, bleu4 = 0;
    if ((st = caption_scores(t, docs, s, cap_idx, n_cap, &cider, &bleu4, err))) goto out;

    if (t->kind == EVAL_KIND_MCQ && t->circular != EVAL_CIRC_OFF) {
        int64_t offset = 1000000;
        int64_t max_group = 0;
        for (size_t i = 0; i < n; i++)
            if (docs[i].group > max_group) max_group = docs[i].group;
        if (t->circular == EVAL_CIRC_EXPAND) offset = mcq_circular_offset(max_group);
        st = aggregate_circular(t, docs, s, n, offset, res, bd, err);
        goto out;
    }
    switch (t->kind) {
    case EVAL_KIND_MCQ:
    case EVAL_KIND_VQA: {
        acc main = {0};
        for (size_t i = 0; i < n; i++) {
            acc_add(&main, s[i].score);
            if (docs[i].category && (st = add_group(&groups, &n_groups, docs[i].category, s[i].score, -3, err))) goto out;
            if (docs[i].l2_category && (st = add_group(&l2, &n_l2, docs[i].l2_category, s[i].score, -3, err))) goto out;
        }
        if ((st = put_metric(res, t->metrics[0], &main, true, err))) goto out;
        /* the other VQA metrics, recomputed from the responses */
        for (size_t m = 1; m < t->n_metrics; m++) {
            acc a = {0};
            for (size_t i = 0; i < n; i++) {
                double v = 0;
                const char *resp = s[i].response;
                const char *const *refs = (const char *const *)docs[i].refs;
                if (!strcmp(t->metrics[m], "exact_match")) st = exact_any(&docs[i], resp, &v, err);
                else if (!strcmp(t->metrics[m], "vqa_accuracy")) st = vqa_accuracy(resp, refs, docs[i].n_refs, &v, err);
                else st = anls_score(resp, refs, docs[i].n_refs, t->anls_threshold, &v, err);
                if (st) goto out;
                acc_add(&a, v);
            }
            if ((st = put_metric(res, t->metrics[m], &a, true, err))) goto out;
        }
        const char *metric = t->kind == EVAL_KIND_MCQ ? "accuracy" : t->metrics[0];
        if ((st = put_groups(bd, t->category_field ? t->category_field : "category", groups, n_groups, metric, false,
                             err)) ||
            (st = put_groups(bd, "l2-category", l2, n_l2, metric, false, err)))
            goto out;
        break;
    }
    case EVAL_KIND_GROUNDING: {
        acc hit = {0}, iou = {0};
        for (size_t i = 0; i < n; i++) {
            acc_add(&hit, s[i].score);
            acc_add(&iou, s[i].iou < 0 ? 0 : s[i].iou);
            if (docs[i].category &&
                (st = add_group(&groups, &n_groups, docs[i].category, s[i].score, s[i].iou, err)))
                goto out;
        }
        for (size_t m = 0; m < t->n_metrics; m++)
            if ((st = put_metric(res, t->metrics[m], !strcmp(t->metrics[m], "mean_iou") ? &iou : &hit, true, err)))
                goto out;
        if ((st = put_groups(bd, t->category_field ? t->category_field : "category", groups, n_groups, "iou_accuracy",
                             true, err)))
            goto out;
        break;
    }
    case EVAL_KIND_CAPTION: {
        acc a = {0};
        for (size_t i = 0; i < n; i++) acc_add(&a, s[i].score);
        for (size_t m = 0; m < t->n_metrics; m++) {
            if (!strcmp(t->metrics[m], "cider")) {
                if ((st = put_metric(res, "cider", &a, true, err))) goto out;
            } else if (!cJSON_AddNumberToObject(res, "bleu4", bleu4)) {
                st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
                goto out;
            }
        }
        break;
    }
    case EVAL_KIND_YESNO: {
        bool *pred = calloc(n ? n : 1, sizeof *pred), *label = calloc(n ? n : 1, sizeof *label);
        if (!pred || !label) {
            free(pred);
            free(label);
            st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
            goto out;
        }
        acc a = {0};
        for (size_t i = 0; i < n; i++) {
            pred[i] = s[i].parsed && !strcmp(s[i].parsed, "yes");
            label[i] = pope_label_is_yes(docs[i].target);
            acc_add(&a, s[i].score);
            if (docs[i].category && (st = add_group(&groups, &n_groups, docs[i].category, s[i].score, -3, err))) {
                free(pred);
                free(label);
                goto out;
            }
        }
        pope_metrics pm = pope_score(pred, label, n);
        free(pred);
        free(label);
        for (size_t m = 0; m < t->n_metrics; m++) {
            const char *k = t->metrics[m];
            if (!strcmp(k, "accuracy")) {
                if ((st = put_metric(res, "accuracy", &a, true, err))) goto out;
                continue;
            }
            double v = !strcmp(k, "precision") ? pm.precision : !strcmp(k, "recall") ? pm.recall
                       : !strcmp(k, "f1") ? pm.f1 : pm.yes_ratio;
            if (!cJSON_AddNumberToObject(res, k, v)) {
                st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
                goto out;
            }
        }
        if ((st = put_groups(bd, t->category_field ? t->category_field : "category", groups, n_groups, "accuracy",
                             false, err)))
            goto out;
        break;
    }
    case EVAL_KIND_SYNTH: {
        acc a = {0}, ground = {0}, cap = {0};
        for (size_t i = 0; i < n; i++) {
            scorer sc = scorer_of(t, &docs[i]);
            if (sc == SC_CAPTION) {
                acc_add(&cap, s[i].score);
                continue;
            }
            acc_add(&a, s[i].score);
            if (sc == SC_BOX) acc_add(&ground, s[i].score);
            if ((st = add_group(&groups, &n_groups, docs[i].subtask, s[i].score, sc == SC_BOX ? s[i].iou : -3, err)))
                goto out;
        }
        for (size_t m = 0; m < t->n_metrics; m++) {
            const char *k = t->metrics[m];
            const acc *src = !strcmp(k, "accuracy") ? &a : !strcmp(k, "iou_accuracy") ? &ground : &cap;
            if (src->n && (st = put_metric(res, k, src, true, err))) goto out;
        }
        if ((st = put_groups(bd, "task", groups, n_groups, "accuracy", true, err))) goto out;
        if (cap.n) {
            cJSON *o = cJSON_GetObjectItemCaseSensitive(bd, "task");
            if (!o) o = cJSON_AddObjectToObject(bd, "task");
            cJSON *e = o ? cJSON_AddObjectToObject(o, "caption") : NULL;
            if (!e || !cJSON_AddNumberToObject(e, "cider", acc_mean(&cap)) ||
                !cJSON_AddNumberToObject(e, "bleu4", bleu4) || !cJSON_AddNumberToObject(e, "n", (double)cap.n)) {
                st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
                goto out;
            }
        }
        break;
    }
    }
out:
    free(groups);
    free(l2);
    free(cap_idx);
    (void)cider;
    return st;
}
