/* A Jinja2 interpreter for Hugging Face chat templates.
 *
 * Renders templates the way transformers' apply_chat_template does: Jinja2's
 * ImmutableSandboxedEnvironment with trim_blocks=True, lstrip_blocks=True,
 * keep_trailing_newline=False, the loopcontrols extension (break/continue),
 * `{% generation %}` blocks rendered unchanged, globals raise_exception() and
 * strftime_now(), and tojson as json.dumps(ensure_ascii=False, sort_keys=False).
 *
 * The template is parsed once into an AST (jinja_parse) and may be rendered
 * many times (jinja_render). Everything a template can do is bounded (nesting,
 * recursion, loop iterations, memory, output size) so that a hostile template
 * fails with VLMC_ERR_LIMIT instead of hanging or exhausting memory. Errors
 * name the template and the line. */
#ifndef VLMC_TEXT_JINJA_H
#define VLMC_TEXT_JINJA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/error.h"

typedef struct jinja_template jinja_template;

typedef struct jinja_options {
    /* Frozen clock for strftime_now as "YYYY-MM-DD HH:MM:SS" (local time);
     * NULL uses the current local time. */
    const char *now;
    /* Limits; 0 picks the default. */
    size_t max_output;      /* bytes of rendered text (default 16 MiB) */
    size_t max_memory;      /* bytes of values built while rendering (default 256 MiB) */
    uint64_t max_steps;     /* loop iterations + macro calls + filter items (default 10 M) */
} jinja_options;

/* cJSON keeps only a double per number, so JSON `1.0` and `1` look alike. A
 * number node whose type carries this bit (set by jinja_mark_json_floats) is a
 * Python float even when integral; other integral numbers are ints. */
#define JINJA_JSON_FLOAT (1 << 12)

/* Sets JINJA_JSON_FLOAT on the numbers of root (parsed from text[0..len)) that
 * the text writes with a fraction or an exponent. */
void jinja_mark_json_floats(const char *text, size_t len, cJSON *root);

/* Parses src[0..len) (UTF-8). `name` names the template in error messages. */
vlmc_status jinja_parse(const char *src, size_t len, const char *name, jinja_template **out, vlmc_error *err);
void jinja_free(jinja_template *t);

/* Renders with the variables of the JSON object `vars` (may be NULL). Each
 * top-level key becomes a template variable; JSON null becomes None.
 * *out is malloc'ed and NUL-terminated; *out_len (may be NULL) gets its length. */
vlmc_status jinja_render(const jinja_template *t, const cJSON *vars, const jinja_options *opt, char **out,
                         size_t *out_len, vlmc_error *err);

#endif
