/* TSV reader (see tsv.h). */
#include "eval/tsv.h"

#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"

typedef struct row_buf {
    char **f;
    size_t n, cap;
} row_buf;

static int row_push(row_buf *r, char *s) {
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        char **f = realloc(r->f, cap * sizeof *f);
        if (!f) return 0;
        r->f = f;
        r->cap = cap;
    }
    r->f[r->n++] = s;
    return 1;
}

static void row_clear(row_buf *r) {
    for (size_t i = 0; i < r->n; i++) free(r->f[i]);
    r->n = 0;
}

/* Reads one row starting at *pos; *pos moves past its newline. Returns 0 on
 * success, or a status. line counts newlines for messages. */
static vlmc_status read_row(const char *d, size_t len, size_t *pos, size_t *line, row_buf *row, const char *name,
                            vlmc_error *err) {
    size_t p = *pos;
    size_t start_line = *line;
    for (;;) {
        strbuf b = {0};
        if (p < len && d[p] == '"') {
            p++;
            for (;;) {
                if (p >= len) {
                    strbuf_free(&b);
                    return vlmc_fail(err, VLMC_ERR_FORMAT, "%s:%zu: unterminated quoted field", name, start_line);
                }
                if (d[p] == '"') {
                    if (p + 1 < len && d[p + 1] == '"') {
                        strbuf_append(&b, "\"", 1);
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                const char *qp = memchr(d + p, '"', len - p);
                size_t q = qp ? (size_t)(qp - d) : len;
                for (const char *nl = d + p; (nl = memchr(nl, '\n', (size_t)(d + q - nl))) != NULL; nl++) (*line)++;
                strbuf_append(&b, d + p, q - p);
                p = q;
            }
            /* pandas appends text after the closing quote to the field */
            size_t q = p;
            while (q < len && d[q] != '\t' && d[q] != '\n') q++;
            strbuf_append(&b, d + p, q - p);
            p = q;
        } else {
            size_t q = p;
            while (q < len && d[q] != '\t' && d[q] != '\n') q++;
            strbuf_append(&b, d + p, q - p);
            p = q;
        }
        char *s = strbuf_take(&b);
        if (!s) s = calloc(1, 1);
        if (!s || !row_push(row, s)) {
            free(s);
            return vlmc_fail(err, VLMC_ERR_NOMEM, "%s:%zu: out of memory", name, start_line);
        }
        if (row->n > TSV_MAX_COLUMNS)
            return vlmc_fail(err, VLMC_ERR_LIMIT, "%s:%zu: more than %d fields", name, start_line, TSV_MAX_COLUMNS);
        if (p >= len || d[p] == '\n') {
            if (p < len) {
                p++;
                (*line)++;
            }
            break;
        }
        p++; /* the tab */
    }
    /* drop a '\r' ending the last field */
    char *last = row->f[row->n - 1];
    size_t ll = strlen(last);
    if (ll && last[ll - 1] == '\r') last[ll - 1] = '\0';
    *pos = p;
    return VLMC_OK;
}

vlmc_status tsv_parse(const char *data, size_t len, const char *name, tsv_table *out, vlmc_error *err) {
    memset(out, 0, sizeof *out);
    if (!name) name = "TSV";
    row_buf row = {0};
    size_t pos = 0, line = 1, cap = 0;
    vlmc_status st = VLMC_OK;
    char **cells = NULL;
    size_t n_rows = 0;
    int have_header = 0;
    while (pos < len) {
        if (data[pos] == '\n' || (data[pos] == '\r' && pos + 1 < len && data[pos + 1] == '\n')) {
            pos += data[pos] == '\r' ? 2 : 1; /* blank line */
            line++;
            continue;
        }
        size_t row_line = line;
        row_clear(&row);
        st = read_row(data, len, &pos, &line, &row, name, err);
        if (st) goto fail;
        if (!have_header) {
            for (size_t i = 0; i < row.n; i++)
                for (size_t j = 0; j < i; j++)
                    if (!strcmp(row.f[i], row.f[j])) {
                        st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s:%zu: header names column '%s' twice", name,
                                       row_line, row.f[i]);
                        goto fail;
                    }
            out->header = row.f;
            out->n_cols = row.n;
            row = (row_buf){0};
            have_header = 1;
            continue;
        }
        if (row.n > out->n_cols) {
            st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s:%zu: %zu fields, but the header has %zu", name, row_line, row.n,
                           out->n_cols);
            goto fail;
        }
        if (n_rows >= TSV_MAX_ROWS) {
            st = vlmc_fail(err, VLMC_ERR_LIMIT, "%s:%zu: more than %d rows", name, row_line, TSV_MAX_ROWS);
            goto fail;
        }
        if ((n_rows + 1) * out->n_cols > cap) {
            size_t nc = cap ? cap * 2 : out->n_cols * 64;
            while (nc < (n_rows + 1) * out->n_cols) nc *= 2;
            char **c = realloc(cells, nc * sizeof *c);
            if (!c) {
                st = vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", name);
                goto fail;
            }
            cells = c;
            cap = nc;
        }
        for (size_t i = 0; i < out->n_cols; i++) {
            char *s = i < row.n ? row.f[i] : calloc(1, 1);
            if (!s) {
                for (size_t k = 0; k < i; k++) free(cells[n_rows * out->n_cols + k]);
                for (size_t k = i; k < row.n; k++) free(row.f[k]);
                row.n = 0;
                st = vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", name);
                goto fail;
            }
            cells[n_rows * out->n_cols + i] = s;
        }
        row.n = 0;
        n_rows++;
    }
    if (!have_header) {
        st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: empty file (no header row)", name);
        goto fail;
    }
    row_clear(&row);
    free(row.f);
    out->cells = cells;
    out->n_rows = n_rows;
    return VLMC_OK;
fail:
    row_clear(&row);
    free(row.f);
    out->cells = cells;
    out->n_rows = n_rows;
    tsv_free(out);
    return st;
}

int tsv_column(const tsv_table *t, const char *name) {
    for (size_t i = 0; i < t->n_cols; i++)
        if (!strcmp(t->header[i], name)) return (int)i;
    return -1;
}

const char *tsv_cell(const tsv_table *t, size_t row, int col) {
    if (col < 0 || (size_t)col >= t->n_cols || row >= t->n_rows) return "";
    const char *c = t->cells[row * t->n_cols + (size_t)col];
    return c ? c : ""; /* a cell taken by its reader */
}

void tsv_free(tsv_table *t) {
    if (!t) return;
    if (t->cells)
        for (size_t i = 0; i < t->n_rows * t->n_cols; i++) free(t->cells[i]);
    free(t->cells);
    if (t->header)
        for (size_t i = 0; i < t->n_cols; i++) free(t->header[i]);
    free(t->header);
    memset(t, 0, sizeof *t);
}
