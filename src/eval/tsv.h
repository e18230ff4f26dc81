/* Tab-separated tables as pandas.read_csv(sep='\t') reads the benchmark TSVs of
 * VLMEvalKit (MMBench and friends): the first row is the header; a field that
 * starts with '"' is quoted (it may then hold tabs and newlines, and "" is one
 * quote); rows end at '\n' (a '\r' before it is dropped); blank lines are
 * skipped. Outside data: every size is bounded (see the limits below). */
#ifndef VLMC_EVAL_TSV_H
#define VLMC_EVAL_TSV_H

#include <stddef.h>

#include "core/error.h"

#define TSV_MAX_COLUMNS 256
#define TSV_MAX_ROWS 10000000

typedef struct tsv_table {
    size_t n_cols;   /* header fields */
    size_t n_rows;   /* data rows (header excluded) */
    char **header;   /* [n_cols] */
    char **cells;    /* [n_rows * n_cols], row-major; missing trailing fields are "". A reader may take a
                        cell (set it to NULL and free it itself): tsv_cell then gives "" */
} tsv_table;

/* Parses data[0..len). `name` names the source in errors ("FILE:LINE: ..."). A row
 * with more fields than the header, an unterminated quote or a duplicate header
 * name is VLMC_ERR_FORMAT. */
vlmc_status tsv_parse(const char *data, size_t len, const char *name, tsv_table *out, vlmc_error *err);
/* The column of a header name, or -1. */
int tsv_column(const tsv_table *t, const char *name);
/* Cell (row, col); "" when col < 0. */
const char *tsv_cell(const tsv_table *t, size_t row, int col);
void tsv_free(tsv_table *t);

#endif
