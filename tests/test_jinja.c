/* Jinja chat templates: every reference case of ../shared/data/templates/chat_templates.json
 * (rendered by Python Jinja2 as transformers does) must render byte for byte, or fail where
 * the reference failed; plus unit tests of the language, its errors and its limits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "formats/json.h"
#include "text/chat_template.h"
#include "text/jinja.h"
#include "vlmc.h"

/* ---- helpers ------------------------------------------------------------------ */

/* Renders src with variables from JSON text; returns malloc'ed output or NULL (err filled). */
static char *render(const char *src, const char *vars_json, vlmc_error *err) {
    jinja_template *t = NULL;
    cJSON *vars = NULL;
    char *out = NULL;
    if (vars_json && json_parse(vars_json, strlen(vars_json), "vars", &vars, err)) return NULL;
    if (jinja_parse(src, strlen(src), "t", &t, err) == VLMC_OK) {
        jinja_options opt = {.now = "2025-07-10 12:00:00"};
        jinja_render(t, vars, &opt, &out, NULL, err);
    }
    jinja_free(t);
    cJSON_Delete(vars);
    return out;
}

/* Checks that src renders to want. */
#define EXPECT(src, vars, want) expect_at(__FILE__, __LINE__, src, vars, want)
static void expect_at(const char *file, int line, const char *src, const char *vars, const char *want) {
    vlmc_error err = {0};
    char *got = render(src, vars, &err);
    if (!got) check_at(false, file, line, "%s: error %s", src, err.message);
    else check_at(!strcmp(got, want), file, line, "%s: got [%s] want [%s]", src, got, want);
    free(got);
}

/* Checks that src fails with a message containing `part`. */
#define EXPECT_ERR(src, vars, part) expect_err_at(__FILE__, __LINE__, src, vars, part)
static void expect_err_at(const char *file, int line, const char *src, const char *vars, const char *part) {
    vlmc_error err = {0};
    char *got = render(src, vars, &err);
    if (got) check_at(false, file, line, "%s: rendered [%s], wanted an error", src, got);
    else check_at(strstr(err.message, part) != NULL, file, line, "%s: error [%s] lacks [%s]", src, err.message, part);
    free(got);
}

/* ---- the reference cases ---------------------------------------------------------- */

static const cJSON *cur_template, *cur_case;
static const char *cur_name;
static int n_ok, n_bad, n_skipped;

static void run_case(void) {
    const cJSON *c = cur_case;
    const char *src = json_string(cur_template, "template", NULL);
    if (!src) {
        CHECK(false, "no template text");
        return;
    }
    vlmc_error err = {0};
    chat_template *ct = NULL;
    char *out = NULL;
    vlmc_status st = chat_template_from_source(src, strlen(src), cur_name, &ct, &err);
    if (!st) {
        cJSON *req = cJSON_Duplicate(c, true);
        cJSON_AddStringToObject(req, "vlmc_now", "2025-07-10 12:00:00"); /* the instant the reference froze */
        st = chat_template_render(ct, req, &out, &err);
        cJSON_Delete(req);
    }
    const char *expected = json_string(c, "expected", NULL);
    bool repr = json_bool(c, "python_repr_in_output", false);
    if (expected) {
        if (st) {
            if (repr) {
                test_skip("python repr in output; vlmc failed: %s", err.message);
                n_skipped++;
            } else {
                CHECK(false, "render failed: %s", err.message);
                n_bad++;
            }
        } else if (strcmp(out, expected)) {
            size_t i = 0;
            while (out[i] && out[i] == expected[i]) i++;
            if (repr) {
                test_skip("python repr in output differs at byte %zu", i);
                n_skipped++;
            } else {
                size_t from = i > 40 ? i - 40 : 0;
                CHECK(false, "first difference at byte %zu: got [%.80s] want [%.80s] (context from byte %zu)", i, out + from,
                      expected + from, from);
                n_bad++;
            }
        } else {
            n_ok++;
        }
    } else {
        if (!st) {
            CHECK(false, "rendered but the reference fails with %s", cJSON_PrintUnformatted(json_get(c, "error")));
            n_bad++;
        } else {
            n_ok++;
            if (getenv("JINJA_VERBOSE"))
                printf("    expected error %s\n    vlmc: %s\n", json_string(json_get(c, "error"), "message", "?"), err.message);
        }
    }
    free(out);
    chat_template_free(ct);
}

/* The reference file, or NULL when ../shared (or $VLMC_SHARED) does not have it. */
static const char *reference_path(void) {
    static char path[4096];
    const char *dir = getenv("VLMC_SHARED") ? getenv("VLMC_SHARED") : "../shared";
    snprintf(path, sizeof path, "%s/data/templates/chat_templates.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fclose(f);
    return path;
}

static void test_reference_cases_absent(void) {
    if (shared_dir()) test_skip("%s/data/templates/chat_templates.json is absent", shared_dir());
}

static void test_reference_cases(void) {
    const char *path = reference_path();
    cJSON *root = NULL;
    vlmc_error err = {0};
    if (json_parse_file(path, 64u << 20, &root, &err)) {
        CHECK(false, "%s", err.message);
        return;
    }
    for (const cJSON *t = root->child; t; t = t->next) {
        cur_template = t;
        cur_name = t->string;
        for (const cJSON *c = json_get(t, "cases")->child; c; c = c->next) {
            cur_case = c;
            char name[512];
            snprintf(name, sizeof name, "case %s / %s", t->string, json_string(c, "id", "?"));
            test_run(name, run_case);
        }
    }
    printf("reference cases: %d passed, %d failed, %d skipped\n", n_ok, n_bad, n_skipped);
    cJSON_Delete(root);
}

static void test_basics(void) {
    EXPECT("Hello {{ name }}!", "{\"name\": \"W\"}", "Hello W!");
    EXPECT("{{ 1 + 2 * 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ -7 % 3 }}|{{ 7 / 2 }}|{{ 2 ** 10 }}|{{ 2 ** -1 }}", NULL,
           "7|3|-4|2|3.5|1024|0.5");
    EXPECT("{{ 'a' ~ 1 ~ none ~ true }}|{{ 'ab' * 2 }}|{{ [1] + [2] }}|{{ 1 == 1.0 }}|{{ 1 < 2 < 3 }}", NULL,
           "a1NoneTrue|abab|[1, 2]|True|True");
    EXPECT("{{ 'yes' if x else 'no' }}|{{ 0 or 'b' }}|{{ 1 and 'c' }}|{{ not none }}|{{ 'a' in 'cat' }}|{{ 3 not in [1] }}",
           NULL, "no|b|c|True|True|True");
    EXPECT("{{ '\\u00e9\\x41\\n'|tojson }}|{{ \"it's\" }}|{{ 'a' 'b' }}", NULL, "\"\xc3\xa9" "A\\n\"|it's|ab");
}

static void test_python_output(void) {
    /* values print as Python prints them */
    EXPECT("{{ [1, 'a', none, true, 1.5, (1,), {'k': \"it's\"}] }}", NULL, "[1, 'a', None, True, 1.5, (1,), {'k': \"it's\"}]");
    EXPECT("{{ 1.0 }}|{{ 1e16 }}|{{ 1e-5 }}|{{ 0.0001 }}|{{ 0.1 + 0.2 }}|{{ 10 / 2 }}", NULL,
           "1.0|1e+16|1e-05|0.0001|0.30000000000000004|5.0");
    EXPECT("{{ {'a': [1, 2.5, none, true, 'x\\ny']}|tojson }}", NULL, "{\"a\": [1, 2.5, null, true, \"x\\ny\"]}");
    EXPECT("{{ [1, {}]|tojson(indent=2) }}", NULL, "[\n  1,\n  {}\n]");
    EXPECT("{{ x }}|{{ x|length }}|{% for a in x %}no{% endfor %}|{{ x is defined }}|{{ none }}", NULL, "|0||False|None");
}

static void test_whitespace(void) {
    /* trim_blocks drops the newline after a tag; lstrip_blocks the indentation before it */
    EXPECT("{% if true %}\n  x\n{% endif %}\ny", NULL, "  x\ny");
    EXPECT("  {% if true %}\n    a\n  {% endif %}\nb", NULL, "    a\nb");
    EXPECT("a  {{- ' b ' -}}  c", NULL, "a b c");
    EXPECT("a\n  {%- if true %} x {% endif -%}\n  b", NULL, "a x b");
    EXPECT("x  {%+ if true %}y{% endif %}", NULL, "x  y");
    EXPECT("{% if true +%}\nkeep{% endif %}", NULL, "\nkeep");
    EXPECT("a {# c #} b\n  {# own line #}\nc", NULL, "a  b\nc");
    EXPECT("{% raw %}{{ x }}{% if %}{% endraw %}", NULL, "{{ x }}{% if %}");
    EXPECT("line\n", NULL, "line");     /* one trailing newline is dropped */
    EXPECT("line\n\n", NULL, "line\n"); /* only one */
    EXPECT("a\r\nb", NULL, "a\nb");     /* newlines normalised */
    EXPECT("  {{ 'v' }}", NULL, "  v"); /* lstrip_blocks leaves {{ }} alone */
}

static void test_loops(void) {
    EXPECT("{% for x in [3, 1, 2] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first }}{{ loop.last }}"
           "{{ loop.length }}{{ loop.previtem }}{{ loop.nextitem }};{% endfor %}",
           NULL, "103TrueFalse31;212FalseFalse332;321FalseTrue31;");
    EXPECT("{% for x in [1, 2, 3, 4] if x is even %}{{ x }}/{{ loop.length }} {% else %}none{% endfor %}", NULL, "2/2 4/2 ");
    EXPECT("{% for x in [] %}x{% else %}empty{% endfor %}", NULL, "empty");
    EXPECT("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }},{% endfor %}", NULL, "a=1,b=2,");
    EXPECT("{% for x in range(10) %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}"
           "{% endfor %}",
           NULL, "023");
    EXPECT("{% for c in 'h\xc3\xa9' %}[{{ c }}]{% endfor %}", NULL, "[h][\xc3\xa9]");
    /* a set inside a loop does not leak, and each iteration starts afresh */
    EXPECT("{% set x = 0 %}{% for i in [1, 2] %}{% set x = i %}{% endfor %}{{ x }}", NULL, "0");
    EXPECT("{% set ns = namespace(n=0, l=[]) %}{% for i in [1, 2, 3] %}{% set ns.n = ns.n + i %}{% set ns.l = ns.l + [i] %}"
           "{% endfor %}{{ ns.n }}{{ ns.l }}",
           NULL, "6[1, 2, 3]");
    EXPECT("{% for x in [1, 2, 3] %}{{ loop.cycle('a', 'b') }}{% endfor %}", NULL, "aba");
    EXPECT_ERR("{% for x in none %}{% endfor %}", NULL, "'NoneType' object is not iterable");
}

static void test_assignments_and_macros(void) {
    EXPECT("{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t %}[{{ a }}]{% endset %}{{ t }}{% set u | upper %}x{% endset %}{{ u }}",
           NULL, "12[1]X");
    EXPECT("{% macro m(a, b=2, c='x') %}{{ a }}{{ b }}{{ c }}{% endmacro %}{{ m(1) }}|{{ m(1, 3) }}|{{ m(1, c='y') }}", NULL,
           "12x|13x|12y");
    EXPECT("{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, k=3) }}", NULL, "1(2,){'k': 3}");
    EXPECT("{% macro m(a) %}<{{ caller(a) }}>{% endmacro %}{% call(x) m(5) %}got {{ x }}{% endcall %}", NULL, "<got 5>");
    EXPECT("{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(3) }}", NULL, "321");
    EXPECT("{% filter upper %}ab{{ 'c' }}{% endfilter %}|{% with a = 1 %}{{ a }}{% endwith %}{{ a }}", NULL, "ABC|1");
    EXPECT_ERR("{% macro m(*a) %}{% endmacro %}", NULL, "expected a parameter name"); /* as Jinja2 */
    EXPECT("{% set args = [1, 2] %}{% macro m(a, b) %}{{ a + b }}{% endmacro %}{{ m(*args) }}{{ m(**{'a': 3, 'b': 4}) }}",
           NULL, "37");
    EXPECT_ERR("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", NULL, "takes not more than 1 argument");
    EXPECT_ERR("{% set x = 1 %}{% set x.y = 2 %}", NULL, "non-namespace");
}

static void test_filters(void) {
    const char *v = "{\"l\": [3, 1, 2], \"d\": {\"b\": 2, \"a\": 1}, \"names\": [\"b\", \"A\", \"c\"],"
                    " \"ms\": [{\"role\": \"user\", \"n\": 1}, {\"role\": \"bot\", \"n\": 2}]}";
    EXPECT("{{ '  x '|trim }}|{{ 'xax'|trim('x') }}|{{ 'ab'|upper }}|{{ 'AB'|lower }}|{{ 'hello-world x'|title }}|"
           "{{ 'hELLO'|capitalize }}",
           v, "x|a|AB|ab|Hello-World X|Hello");
    EXPECT("{{ l|length }}|{{ l|count }}|{{ l|first }}|{{ l|last }}|{{ l|sort }}|{{ l|sort(reverse=true) }}|{{ l|min }}|"
           "{{ l|max }}|{{ l|sum }}|{{ l|reverse|list }}|{{ l|join(',') }}|{{ l|list }}",
           v, "3|3|3|2|[1, 2, 3]|[3, 2, 1]|1|3|6|[2, 1, 3]|3,1,2|[3, 1, 2]");
    EXPECT("{{ names|sort }}|{{ names|sort(case_sensitive=true) }}|{{ ['a', 'A', 'b']|unique|list }}", v,
           "['A', 'b', 'c']|['A', 'b', 'c']|['a', 'b']");
    EXPECT("{{ d|items|list }}|{{ d|dictsort }}|{{ d|dictsort(by='value', reverse=true) }}", v,
           "[('b', 2), ('a', 1)]|[('a', 1), ('b', 2)]|[('b', 2), ('a', 1)]");
    EXPECT("{{ ms|selectattr('role', 'equalto', 'user')|map(attribute='n')|list }}|{{ ms|rejectattr('role', 'eq', 'user')|"
           "map(attribute='role')|join }}|{{ [1, 2, 3, 4]|select('odd')|list }}|{{ [1, 2, 3]|reject('in', [2])|list }}|"
           "{{ l|map('string')|join('-') }}",
           v, "[1]|bot|[1, 3]|[1, 3]|3-1-2");
    EXPECT("{{ x|default('d') }}|{{ ''|default('d', true) }}|{{ none|d('z') }}|{{ 3.7|int }}|{{ '42'|int }}|{{ 'x'|int(5) }}|"
           "{{ '2.5'|float }}|{{ -3|abs }}|{{ 2.5|round }}|{{ 2.675|round(2) }}|{{ 2.1|round(0, 'ceil') }}",
           v, "d|d|None|3|42|5|2.5|3|2.0|2.67|3.0");
    EXPECT("{{ 'a\\nb\\n\\nc'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a b'|replace(' ', '_') }}|{{ 'a b c'|wordcount }}|"
           "{{ [1, 2, 3]|batch(2)|list }}|{{ '%s=%d'|format('x', 3) }}|{{ '<&>'|e }}|{{ 1|string ~ 'x' }}",
           v, "a\n  b\n\n  c|  a\n  b|a_b|3|[[1, 2], [3]]|x=3|&lt;&amp;&gt;|1x");
    EXPECT("{{ {'b': 1, 'a': [1]}|tojson(sort_keys=true) }}|{{ 'é'|tojson }}", NULL, "{\"a\": [1], \"b\": 1}|\"\xc3\xa9\"");
    EXPECT_ERR("{{ l|nosuchfilter }}", v, "t:1: template syntax error: no filter named 'nosuchfilter'");
    EXPECT_ERR("{{ l is nosuchtest }}", v, "no test named 'nosuchtest'");
    /* as Jinja2: unknown names are compile errors, even in a loop that never runs ... */
    EXPECT_ERR("{% for x in [] %}\n{{ x|nosuch }}{% endfor %}", v, "t:2: template syntax error: no filter named 'nosuch'");
    /* ... but inside an if they only fail when reached */
    EXPECT("{% if false %}{{ x|nosuch }}{% endif %}{{ 1 if true else x|nosuch }}", v, "1");
    EXPECT_ERR("{% if true %}{{ x|nosuch }}{% endif %}", v, "no filter named 'nosuch'");
}

static void test_generators(void) {
    /* select/map/unique/items/reverse give Python generators: always truthy, no len(), used up once */
    EXPECT("{{ 'yes' if [1]|select('none') else 'no' }}|{{ [1, 2]|map('string')|list }}|{{ [3, 1]|reverse|list }}", NULL,
           "yes|['1', '2']|[1, 3]");
    EXPECT("{% set g = [1, 2]|select %}{{ g|list }}{{ g|list }}", NULL, "[1, 2][]");
    EXPECT("{% for x in [1, 2, 3]|reject('odd') %}{{ x }}/{{ loop.length }}{% endfor %}", NULL, "2/1");
    EXPECT_ERR("{{ [1]|select|length }}", NULL, "object of type 'generator' has no len()");
    EXPECT("{{ '%s-%s' % (1, 'a') }}|{{ '%d%%' % 5 }}", NULL, "1-a|5%");
}

static void test_tests(void) {
    EXPECT("{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 'a' is string }}{{ {} is mapping }}{{ [] is iterable }}"
           "{{ [] is sequence }}{{ none is none }}{{ true is boolean }}{{ 1.5 is number }}{{ 1 is integer }}{{ 1.0 is float }}",
           NULL, "TrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrue");
    EXPECT("{{ x is undefined }}{{ x is not defined }}{{ 1 is eq 1 }}{{ 1 is equalto 2 }}{{ 2 is in [2] }}{{ 'ab' is lower }}"
           "{{ 'AB' is upper }}{{ true is true }}{{ false is false }}{{ 3 is gt 2 }}{{ 1 is ne 1 }}",
           NULL, "TrueTrueTrueFalseTrueTrueTrueTrueTrueTrueFalse");
}

static void test_methods_and_access(void) {
    const char *v = "{\"s\": \"Hello World\", \"d\": {\"a\": 1}, \"m\": [{\"role\": \"user\", \"content\": \"hi\"}]}";
    EXPECT("{{ s.split() }}|{{ s.split('o', 1) }}|{{ s.rsplit('o', 1) }}|{{ ' x '.strip() }}|{{ 'xyx'.strip('x') }}|"
           "{{ s.lstrip('H') }}|{{ s.startswith('He') }}|{{ s.endswith(('x', 'ld')) }}|{{ s.find('o') }}|{{ s.count('l') }}|"
           "{{ s.replace('l', 'L') }}|{{ s.upper() }}|{{ s.title() }}|{{ 'a\\nb'.splitlines() }}|{{ '-'.join(['a', 'b']) }}",
           v,
           "['Hello', 'World']|['Hell', ' World']|['Hello W', 'rld']|x|y|ello World|True|True|4|3|HeLLo WorLd|"
           "HELLO WORLD|Hello World|['a', 'b']|a-b");
    EXPECT("{{ d.get('a') }}{{ d.get('z') }}{{ d.get('z', 5) }}|{{ d.keys()|list }}|{{ d.values()|list }}|{{ d.items()|list }}",
           v, "1None5|['a']|[1]|[('a', 1)]");
    EXPECT("{{ m[0].role }}|{{ m[0]['content'] }}|{{ m.0.role }}|{{ m[-1].content }}|{{ m[5] is defined }}|{{ d.z is defined }}",
           v, "user|hi|user|hi|False|False");
    EXPECT("{{ s[0] }}|{{ s[-1] }}|{{ s[1:3] }}|{{ s[::-1] }}|{{ s[-5:] }}|{{ [1, 2, 3][::2] }}|{{ 'h\xc3\xa9llo'[1] }}", v,
           "H|d|el|dlroW olleH|World|[1, 3]|\xc3\xa9");
    EXPECT("{{ '{} {x}'.format(1, x=2) }}|{{ [1, 2, 1].count(1) }}|{{ [1, 2].index(2) }}", v, "1 2|2|1");
    EXPECT_ERR("{{ m[0].content + m }}", v, "can only concatenate str (not \"list\") to str");
    EXPECT_ERR("{{ m.strip() }}", v, "'list object' has no attribute 'strip'");
    EXPECT_ERR("{{ m.append(1) }}", v, "unsafe");
}

static void test_errors(void) {
    /* syntax errors name the line */
    EXPECT_ERR("a\nb\n{% if %}", NULL, "t:3:");
    EXPECT_ERR("{% for x in y %}\n{{ x }}", NULL, "expected 'endfor'");
    EXPECT_ERR("\n{% nosuchtag %}", NULL, "t:2: template syntax error: encountered unknown tag 'nosuchtag'");
    EXPECT_ERR("{{ 1 + }}", NULL, "unexpected");
    EXPECT_ERR("{{ 'abc }}", NULL, "unterminated string");
    EXPECT_ERR("{# open", NULL, "missing end of comment");
    EXPECT_ERR("{% raw %}x", NULL, "missing end of raw");
    EXPECT_ERR("{% break %}", NULL, "outside of a loop");
    EXPECT_ERR("{{ (1 }}", NULL, "");
    EXPECT_ERR("{{ x }", NULL, "");
    EXPECT_ERR("{% endif %}", NULL, "unexpected tag 'endif'");
    /* runtime errors name the line too */
    EXPECT_ERR("ok\n\n{{ raise_exception('Roles must alternate') }}", NULL, "t:3: TemplateError: Roles must alternate");
    EXPECT_ERR("\n{{ x.y }}", NULL, "t:2: UndefinedError: 'x' is undefined");
    EXPECT_ERR("{{ 1 / 0 }}", NULL, "ZeroDivisionError");
    EXPECT_ERR("{{ 'a' + 1 }}", NULL, "TypeError");
    EXPECT_ERR("{{ x() }}", NULL, "'x' is undefined");
    EXPECT_ERR("{{ 3 > 'a' }}", NULL, "not supported between instances of 'int' and 'str'");
    EXPECT_ERR("{{ 9223372036854775807 + 1 }}", NULL, "64-bit");
    /* an invalid template is never a silently wrong prompt */
    vlmc_error err = {0};
    jinja_template *t = NULL;
    CHECK(jinja_parse("\xff", 1, "bad", &t, &err) == VLMC_ERR_FORMAT && !t, "invalid UTF-8 rejected");
}

static void test_limits(void) {
    /* hostile templates fail with VLMC_ERR_LIMIT instead of hanging or exhausting memory */
    const char *cases[] = {
        "{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}",                                  /* recursion */
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",        /* steps */
        "{{ range(1000000)|length }}",                                                             /* range size */
        "{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", /* memory */
        "{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}",                              /* output */
        "{{ 'x' * 10000000000 }}",                                                                 /* repetition */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vlmc_error err = {0};
        jinja_template *t = NULL;
        char *out = NULL;
        CHECK(jinja_parse(cases[i], strlen(cases[i]), "hostile", &t, &err) == VLMC_OK, "%s: parse %s", cases[i], err.message);
        jinja_options opt = {.max_memory = 64u << 20, .max_output = 4u << 20};
        vlmc_status st = jinja_render(t, NULL, &opt, &out, NULL, &err);
        CHECK(st == VLMC_ERR_LIMIT, "%s: status %d (%s)", cases[i], st, err.message);
        CHECK(out == NULL, "no output on failure");
        jinja_free(t);
    }
    /* deep nesting is a parse error, not a stack overflow */
    size_t n = 20000;
    char *deep = malloc(2 * n + 8);
    strcpy(deep, "{{ ");
    for (size_t i = 0; i < n; i++) deep[3 + i] = '(';
    deep[3 + n] = '\0';
    vlmc_error err = {0};
    jinja_template *t = NULL;
    CHECK(jinja_parse(deep, strlen(deep), "deep", &t, &err) != VLMC_OK, "deep parentheses rejected");
    memset(deep, 0, 2 * n + 8);
    strcpy(deep, "{{ 1");
    for (size_t i = 0; i < n; i++) strcat(deep + 4 + 2 * i, "+1");
    strcat(deep, " }}");
    /* a 20000-term sum makes a left-deep tree: rejected up front rather than recursed through */
    CHECK(jinja_parse(deep, strlen(deep), "long", &t, &err) != VLMC_OK && strstr(err.message, "nested too deeply"),
          "long flat sum: %s", err.message);
    free(deep);
    /* a shallower one renders, and the evaluator's own depth bound still holds */
    const char *sum = "{{ 1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1 }}";
    char *out = NULL;
    CHECK(jinja_parse(sum, strlen(sum), "sum", &t, &err) == VLMC_OK && jinja_render(t, NULL, NULL, &out, NULL, &err) == VLMC_OK &&
              !strcmp(out, "20"),
          "sum of 20");
    free(out);
    jinja_free(t);
}

static void test_chat_template_layer(void) {
    /* model folder: tokenizer_config.json with a named list and AddedToken dicts */
    char path[512];
    snprintf(path, sizeof path, "%s/model", test_tmpdir());
    char cmd[700];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path);
    CHECK(system(cmd) == 0, "mkdir");
    char file[600];
    snprintf(file, sizeof file, "%s/tokenizer_config.json", path);
    FILE *f = fopen(file, "w");
    fputs("{\"bos_token\": {\"content\": \"<s>\", \"special\": true}, \"eos_token\": \"</s>\", \"unk_token\": null,"
          " \"chat_template\": [{\"name\": \"default\", \"template\": \"{{ bos_token }}{% for m in messages %}{{ m.role }}:"
          "{{ m.content }}{{ eos_token }}{% endfor %}{{ tools is none }}{{ unk_token is defined }}{% if add_generation_prompt %}"
          "A:{% endif %}\"}, {\"name\": \"rag\", \"template\": \"x\"}]}",
          f);
    fclose(f);
    vlmc_error err = {0};
    vlmc_chat_template *t = NULL;
    char *out = NULL;
    CHECK(vlmc_chat_template_load(path, &t, &err) == VLMC_OK, "load: %s", err.message);
    CHECK(vlmc_chat_template_render(t, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"add_generation_prompt\": true}",
                                    &out, &err) == VLMC_OK,
          "render: %s", err.message);
    CHECK(out && !strcmp(out, "<s>user:hi</s>TrueFalseA:"), "got [%s]", out ? out : "");
    vlmc_free(out);
    /* the request overrides tokens; a null token is left undefined; extra_context adds variables */
    CHECK(vlmc_chat_template_render(t, "{\"messages\": [], \"bos_token\": null, \"eos_token\": \"E\", \"extra_context\": "
                                       "{\"tools\": [1], \"unk_token\": \"?\"}}",
                                    &out, &err) == VLMC_OK,
          "render 2: %s", err.message);
    CHECK(out && !strcmp(out, "FalseTrue"), "got [%s]", out ? out : "");
    vlmc_free(out);
    vlmc_chat_template_free(t);
    /* chat_template.jinja takes precedence */
    snprintf(file, sizeof file, "%s/chat_template.jinja", path);
    f = fopen(file, "w");
    fputs("J{{ messages|length }}\n", f);
    fclose(f);
    CHECK(vlmc_chat_template_load(path, &t, &err) == VLMC_OK, "load jinja: %s", err.message);
    CHECK(vlmc_chat_template_render(t, "{\"messages\": [{}, {}]}", &out, &err) == VLMC_OK && !strcmp(out, "J2"), "got [%s]",
          out ? out : "");
    vlmc_free(out);
    vlmc_chat_template_free(t);
    /* a template file: errors name it */
    f = fopen(file, "w");
    fputs("ok\n{{ messages[0].x.y }}", f);
    fclose(f);
    CHECK(vlmc_chat_template_from_file(file, &t, &err) == VLMC_OK, "from_file: %s", err.message);
    CHECK(vlmc_chat_template_render(t, "{\"messages\": [{}]}", &out, &err) == VLMC_ERR_FORMAT && !out &&
              strstr(err.message, "chat_template.jinja:2: UndefinedError"),
          "error names the file and line: %s", err.message);
    vlmc_chat_template_free(t);
    /* one-shot render, frozen clock */
    CHECK(vlmc_template_render("{{ strftime_now('%d %b %Y') }}", "{\"vlmc_now\": \"2025-07-10 12:00:00\"}", &out, &err) ==
                  VLMC_OK && !strcmp(out, "10 Jul 2025"),
          "strftime_now: [%s] %s", out ? out : "", err.message);
    vlmc_free(out);
    CHECK(vlmc_template_render("{% if %}", "{}", &out, &err) == VLMC_ERR_FORMAT && !out, "syntax error status");
    /* JSON 1.0 stays a float, 1 an int, as json.loads gives them */
    CHECK(vlmc_template_render("{{ a }} {{ b }} {{ c|tojson }} {{ d }}", "{\"a\": 1.0, \"b\": 1, \"c\": [2e0, \"3.0\", -0.5], \"d\": 1E2}",
                               &out, &err) == VLMC_OK &&
              !strcmp(out, "1.0 1 [2.0, \"3.0\", -0.5] 100.0"),
          "floats: [%s] %s", out ? out : "", err.message);
    vlmc_free(out);
    CHECK(vlmc_chat_template_load("/nonexistent-dir", &t, &err) != VLMC_OK && !t, "missing folder");
}

int main(void) {
    tests_begin("jinja");
    TEST_RUN(test_basics);
    TEST_RUN(test_python_output);
    TEST_RUN(test_whitespace);
    TEST_RUN(test_loops);
    TEST_RUN(test_assignments_and_macros);
    TEST_RUN(test_filters);
    TEST_RUN(test_tests);
    TEST_RUN(test_generators);
    TEST_RUN(test_methods_and_access);
    TEST_RUN(test_errors);
    TEST_RUN(test_limits);
    TEST_RUN(test_chat_template_layer);
    /* each reference case is a test of its own; without ../shared they are one skipped test */
    if (reference_path()) test_reference_cases();
    else TEST_RUN(test_reference_cases_absent);
    return tests_end();
}
