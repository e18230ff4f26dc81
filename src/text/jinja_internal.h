/* Internals shared by the Jinja parser (jinja_parse.c) and evaluator
 * (jinja_eval.c). Not part of any public interface. */
#ifndef VLMC_TEXT_JINJA_INTERNAL_H
#define VLMC_TEXT_JINJA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "text/jinja.h"

/* ---- a bump allocator with a byte budget ----------------------------------
 * Everything of a parse (tokens, AST) or a render (values) lives in one pool
 * and is freed at once. The budget is how hostile templates are kept from
 * exhausting memory: an allocation past it fails and the caller reports
 * VLMC_ERR_LIMIT. */
typedef struct jpool_chunk jpool_chunk;
typedef struct jpool {
    jpool_chunk *head;
    size_t used;  /* bytes handed out */
    size_t limit; /* budget */
    bool over;    /* an allocation failed because of the budget */
} jpool;

void jpool_init(jpool *p, size_t limit);
void *jpool_alloc(jpool *p, size_t n); /* zeroed, 16-byte aligned; NULL when over budget */
char *jpool_strndup(jpool *p, const char *s, size_t n);
void jpool_free(jpool *p);

/* ---- AST ---------------------------------------------------------------- */
typedef enum {
    /* expressions */
    N_CONST_STR, N_CONST_INT, N_CONST_FLOAT, N_CONST_BOOL, N_CONST_NONE,
    N_NAME, N_NSREF, N_GETATTR, N_GETITEM, N_SLICE, N_CALL, N_FILTER, N_TEST,
    N_NOT, N_NEG, N_POS, N_BINOP, N_CONCAT, N_AND, N_OR, N_COMPARE, N_COND,
    N_LIST, N_TUPLE, N_DICT,
    /* statements */
    N_BODY, N_TEXT, N_OUTPUT, N_FOR, N_IF, N_SET, N_SETBLOCK, N_MACRO, N_CALLBLOCK,
    N_FILTERBLOCK, N_WITH, N_BREAK, N_CONTINUE,
} node_kind;

typedef enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW } binop;
typedef enum { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE, CMP_IN, CMP_NOTIN } cmpop;

typedef struct node node;
struct node {
    node_kind kind;
    int line;
    int op;           /* binop / negation flags */
    const char *str;  /* name, attribute, filter/test name, string constant */
    size_t len;       /* length of str */
    int64_t ival;
    double fval;
    node *a, *b, *c, *d;    /* children, meaning depends on kind (see parser) */
    node **args;            /* positional arguments / list items / body statements */
    size_t nargs;
    const char **kwnames;   /* keyword argument names (calls) / macro parameter names */
    node **kwvals;          /* keyword argument values / macro parameter defaults (may be NULL) */
    size_t nkw;
    int *cmpops;            /* N_COMPARE: the operators for args[0..nargs) */
    unsigned flags;         /* N_MACRO: uses varargs/kwargs/caller */
};

#define MACRO_USES_VARARGS 1u
#define MACRO_USES_KWARGS 2u
#define MACRO_USES_CALLER 4u

/* The names of Jinja2's built-in filters and tests (plus transformers' tojson),
 * NULL-terminated. A name outside these is a template error, as in Jinja2. */
extern const char *const jinja_filter_names[];
extern const char *const jinja_test_names[];
bool jinja_name_in(const char *const *names, const char *name);

struct jinja_template {
    jpool pool;   /* AST and strings */
    node *root;   /* N_BODY */
    char *name;   /* for error messages */
};

#endif
