/* POPE yes/no parsing and metrics (RUCAIBox/POPE evaluate.py). See metrics.h. */
#include "eval/metrics.h"

#include <string.h>

bool pope_parse_yes(const char *text) {
    if (!text) return true;
    size_t n = strlen(text);
    const char *dot = memchr(text, '.', n);
    if (dot) n = (size_t)(dot - text); /* text.split('.')[0] */
    /* text.replace(',', '').split(' '): words between single spaces, commas deleted. */
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && text[j] != ' ') j++;
        char w[4];
        size_t wl = 0;
        bool long_word = false;
        for (size_t k = i; k < j; k++) {
            if (text[k] == ',') continue;
            if (wl == 3) {
                long_word = true;
                break;
            }
            w[wl++] = text[k];
        }
        if (!long_word) {
            w[wl] = '\0';
            if (strcmp(w, "No") == 0 || strcmp(w, "no") == 0 || strcmp(w, "not") == 0) return false;
        }
        i = j + 1;
    }
    return true;
}

bool pope_label_is_yes(const char *label) { return !(label && strcmp(label, "no") == 0); }

pope_metrics pope_score(const bool *pred_yes, const bool *label_yes, size_t n) {
    pope_metrics m = {0};
    if (!pred_yes || !label_yes || n == 0) return m;
    size_t yes = 0;
    for (size_t i = 0; i < n; i++) {
        yes += pred_yes[i];
        if (pred_yes[i] && label_yes[i]) m.tp++;
        else if (pred_yes[i] && !label_yes[i]) m.fp++;
        else if (!pred_yes[i] && !label_yes[i]) m.tn++;
        else m.fn++;
    }
    m.yes_ratio = (double)yes / (double)n;
    m.accuracy = (double)(m.tp + m.tn) / (double)n;
    m.precision = m.tp + m.fp ? (double)m.tp / (m.tp + m.fp) : 0.0;
    m.recall = m.tp + m.fn ? (double)m.tp / (m.tp + m.fn) : 0.0;
    m.f1 = m.precision + m.recall > 0 ? 2 * m.precision * m.recall / (m.precision + m.recall) : 0.0;
    return m;
}
