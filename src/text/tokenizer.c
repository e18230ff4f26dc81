/* Loading tokenizer.json (+ tokenizer_config.json), added tokens, the encode
 * pipeline, post-processing and the public vlmc_tokenizer_* functions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <utf8proc.h>

#include "core/file.h"
#include "core/utf8.h"
#include "formats/json.h"
#include "text/tokenizer.h"

/* ---- added tokens: trie and matching ---------------------------------------- */

static int32_t trie_node(tk_trie *t, unsigned char byte) {
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        tk_trie_node *v = realloc(t->nodes, cap * sizeof *v);
        if (!v) return -1;
        t->nodes = v;
        t->cap = cap;
    }
    t->nodes[t->n] = (tk_trie_node){.first_child = -1, .next_sibling = -1, .token = -1, .byte = byte};
    return (int32_t)t->n++;
}

static int32_t trie_child(const tk_trie *t, int32_t node, unsigned char byte) {
    for (int32_t c = t->nodes[node].first_child; c >= 0; c = t->nodes[c].next_sibling)
        if (t->nodes[c].byte == byte) return c;
    return -1;
}

static bool trie_add(tk_trie *t, const char *s, size_t n, int32_t token) {
    if (!t->n && trie_node(t, 0) < 0) return false;
    int32_t cur = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        int32_t c = trie_child(t, cur, b);
        if (c < 0) {
            c = trie_node(t, b);
            if (c < 0) return false;
            t->nodes[c].next_sibling = t->nodes[cur].first_child;
            t->nodes[cur].first_child = c;
        }
        cur = c;
    }
    /* the same string twice: the first token keeps it */
    if (t->nodes[cur].token < 0) t->nodes[cur].token = token;
    if (n) t->first_byte[(unsigned char)s[0]] = true;
    return true;
}

/* Longest token match starting at s[0..n); returns its length, or 0. */
static size_t trie_longest(const tk_trie *t, const char *s, size_t n, int32_t *token) {
    size_t best = 0;
    int32_t cur = 0;
    for (size_t i = 0; i < n; i++) {
        cur = trie_child(t, cur, (unsigned char)s[i]);
        if (cur < 0) break;
        if (t->nodes[cur].token >= 0) {
            best = i + 1;
            *token = t->nodes[cur].token;
        }
    }
    return best;
}

static bool is_word_char(uint32_t c) {
    if (c == '_') return true;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) || (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO);
}

static uint32_t last_char(const char *s, size_t n) {
    if (!n) return 0;
    size_t st = n - 1;
    while (st > 0 && ((unsigned char)s[st] & 0xc0) == 0x80) st--;
    uint32_t c = 0;
    return utf8_decode(s + st, n - st, &c) ? c : 0;
}

/* Splits s[0..n) around the added tokens of one trie, as the `tokenizers`
 * AddedVocabulary::find_matches: leftmost-longest, then single_word, lstrip and
 * rstrip adjustments. Appends pieces (token pieces carry their id). */
static void split_added(const vlmc_tokenizer *t, const tk_trie *trie, const char *s, size_t n, bool at_start,
                        tk_pieces *out) {
    if (!trie->n) {
        tk_pieces_add(out, s, n, -1, at_start);
        return;
    }
    size_t start_off = 0, i = 0;
    while (i < n) {
        if (!trie->first_byte[(unsigned char)s[i]]) { i++; continue; }
        int32_t ti = -1;
        size_t m = trie_longest(trie, s + i, n - i, &ti);
        if (!m) { i++; continue; }
        const tk_added *a = &t->added[ti];
        size_t start = i, stop = i + m;
        i = stop; /* the search resumes after this match, used or not */
        if (a->single_word) {
            bool start_space = start == 0 || !is_word_char(last_char(s, start));
            uint32_t nc = 0;
            bool stop_space = stop == n || (utf8_decode(s + stop, n - stop, &nc) && !is_word_char(nc));
            if (!start_space || !stop_space) continue;
        }
        if (a->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                size_t st = ns - 1;
                while (st > 0 && ((unsigned char)s[st] & 0xc0) == 0x80) st--;
                uint32_t c;
                if (!utf8_decode(s + st, ns - st, &c) || !tk_is_whitespace(c)) break;
                ns = st;
            }
            start = ns > start_off ? ns : start_off;
        }
        if (a->rstrip) {
            uint32_t c;
            size_t k;
            while (stop < n && (k = utf8_decode(s + stop, n - stop, &c)) && tk_is_whitespace(c)) stop += k;
        }
        /* As HF: a match inside whitespace an rstrip already took (only possible
         * for tokens that begin with whitespace) still yields its token, and
         * the offset moves to its end. */
        if (start_off < start) tk_pieces_add(out, s + start_off, start - start_off, -1, at_start && start_off == 0);
        tk_pieces_add(out, s + start, stop - start, a->id, at_start && start == 0);
        start_off = stop;
    }
    if (start_off < n || n == 0) tk_pieces_add(out, s + start_off, n - start_off, -1, at_start && start_off == 0);
}

/* ---- loading ------------------------------------------------------------------ */

const char *tk_id_to_token(const vlmc_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || (size_t)id >= t->n_ids) return NULL;
    int32_t a = t->added_of_id[id];
    if (a >= 0) {
        *len = t->added[a].len;
        return t->added[a].content;
    }
    if ((size_t)id < t->bpe.n_ids && t->bpe.tok_len[id] >= 0) {
        *len = (size_t)t->bpe.tok_len[id];
        return t->bpe.pool + t->bpe.tok_off[id];
    }
    return NULL;
}

static int32_t token_to_id(const vlmc_tokenizer *t, const char *s, size_t n) {
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && !memcmp(t->added[i].content, s, n)) return t->added[i].id;
    return tk_bpe_lookup(&t->bpe, s, n);
}

static vlmc_status add_token(vlmc_tokenizer *t, const cJSON *j, int64_t id, const char *file, const char *what,
                             vlmc_error *err) {
    const cJSON *c = json_get(j, "content");
    if (!cJSON_IsString(c)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %s needs a string \"content\"", file, what);
    if (id < 0 || id >= TK_MAX_VOCAB) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %s has id %lld out of range", file, what, (long long)id);
    /* a repeated id is resolved in finish_added: the first entry (tokenizer.json's
     * before tokenizer_config.json's) wins */
    if (t->n_added == t->cap_added) {
        size_t cap = t->cap_added ? 2 * t->cap_added : 64;
        tk_added *na = realloc(t->added, cap * sizeof *na);
        if (!na) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file);
        t->added = na;
        t->cap_added = cap;
    }
    tk_added *a = &t->added[t->n_added];
    memset(a, 0, sizeof *a);
    a->content = strdup(c->valuestring);
    if (!a->content) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file);
    t->n_added++;
    a->len = strlen(a->content);
    a->id = (int32_t)id;
    a->special = json_bool(j, "special", false);
    a->lstrip = json_bool(j, "lstrip", false);
    a->rstrip = json_bool(j, "rstrip", false);
    a->single_word = json_bool(j, "single_word", false);
    a->normalized = json_bool(j, "normalized", !a->special);
    return VLMC_OK;
}

/* The single-sequence template of a post-processor, as ids with -1 for the text. */
static vlmc_status post_parse(const cJSON *j, int32_t **tmpl, size_t *n, int depth, const vlmc_tokenizer *t,
                              const char *file, vlmc_error *err) {
    const char *type = json_string(j, "type", NULL);
    *tmpl = NULL;
    *n = 0;
    if (depth > TK_MAX_DEPTH) return vlmc_fail(err, VLMC_ERR_LIMIT, "%s: post-processors nested too deeply", file);
    if (!type) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: post_processor without a \"type\"", file);
    int32_t *v = NULL;
    size_t k = 0, cap = 0;
#define PUSH(x)                                                                                  \
    do {                                                                                         \
        if (k == cap) {                                                                          \
            cap = cap ? cap * 2 : 8;                                                             \
            int32_t *nv = realloc(v, cap * sizeof *nv);                                          \
            if (!nv) { free(v); return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file); } \
            v = nv;                                                                              \
        }                                                                                        \
        v[k++] = (x);                                                                            \
    } while (0)
    if (!strcmp(type, "ByteLevel")) {
        PUSH(-1);
    } else if (!strcmp(type, "TemplateProcessing")) {
        const cJSON *single = json_get(j, "single"), *specials = json_get(j, "special_tokens"), *it;
        if (!cJSON_IsArray(single))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: TemplateProcessing needs a \"single\" array", file);
        cJSON_ArrayForEach(it, single) {
            const cJSON *sp = json_get(it, "SpecialToken"), *sq = json_get(it, "Sequence");
            if (sq) {
                PUSH(-1);
            } else if (sp) {
                const char *name = json_string(sp, "id", NULL);
                const cJSON *def = name ? json_get(specials, name) : NULL, *ids = json_get(def, "ids"), *x;
                if (!cJSON_IsArray(ids)) {
                    free(v);
                    return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: TemplateProcessing special token \"%s\" is not defined",
                                     file, name ? name : "?");
                }
                cJSON_ArrayForEach(x, ids) {
                    int32_t d;
                    if (!tk_json_id(x, (int64_t)t->n_ids, &d)) {
                        free(v);
                        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: TemplateProcessing special token \"%s\" has an id outside the vocabulary",
                                         file, name);
                    }
                    PUSH(d);
                }
            } else {
                free(v);
                return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: TemplateProcessing item is neither SpecialToken nor Sequence", file);
            }
        }
    } else if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        const cJSON *cls = json_get(j, "cls"), *sep = json_get(j, "sep");
        if (!cJSON_IsArray(cls) || !cJSON_IsArray(sep) || cJSON_GetArraySize(cls) != 2 || cJSON_GetArraySize(sep) != 2)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %s needs \"cls\" and \"sep\" as [token, id]", file, type);
        int32_t c, s;
        if (!tk_json_id(cJSON_GetArrayItem(cls, 1), (int64_t)t->n_ids, &c) ||
            !tk_json_id(cJSON_GetArrayItem(sep, 1), (int64_t)t->n_ids, &s))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %s ids are outside the vocabulary", file, type);
        PUSH(c);
        PUSH(-1);
        PUSH(s);
    } else if (!strcmp(type, "Sequence")) {
        const cJSON *arr = json_get(j, "processors"), *it;
        if (!cJSON_IsArray(arr)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: Sequence post_processor needs \"processors\"", file);
        PUSH(-1);
        cJSON_ArrayForEach(it, arr) {
            int32_t *inner;
            size_t ni;
            vlmc_status s = post_parse(it, &inner, &ni, depth + 1, t, file, err);
            if (s) { free(v); return s; }
            /* compose: the inner template wraps what we have so far */
            int32_t *prev = v;
            size_t pk = k;
            v = NULL;
            k = cap = 0;
            for (size_t a = 0; a < ni; a++) {
                if (inner[a] < 0)
                    for (size_t b = 0; b < pk; b++) PUSH(prev[b]);
                else
                    PUSH(inner[a]);
            }
            free(prev);
            free(inner);
        }
    } else {
        free(v);
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: post_processor type \"%s\" is not supported", file, type);
    }
#undef PUSH
    *tmpl = v;
    *n = k;
    return VLMC_OK;
}

/* A special token named in tokenizer_config.json: a string or {"content": ...}. */
static int32_t config_token_id(const vlmc_tokenizer *t, const cJSON *cfg, const char *key) {
    const cJSON *v = json_get(cfg, key);
    if (cJSON_IsObject(v)) v = json_get(v, "content");
    if (!cJSON_IsString(v)) return -1;
    return token_to_id(t, v->valuestring, strlen(v->valuestring));
}

static vlmc_status load_config(vlmc_tokenizer *t, const char *dir, cJSON **cfg_out, vlmc_error *err) {
    *cfg_out = NULL;
    char *cp = path_join(dir, "tokenizer_config.json");
    if (!cp) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    vlmc_status s = VLMC_OK;
    if (file_exists(cp)) {
        s = json_parse_file(cp, TK_MAX_CONFIG_BYTES, cfg_out, err);
        if (!s && !cJSON_IsObject(*cfg_out)) s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: must be a JSON object", cp);
        if (!s) {
            /* added_tokens_decoder: {"<id>": {content, special, ...}} */
            const cJSON *atd = json_get(*cfg_out, "added_tokens_decoder"), *it;
            cJSON_ArrayForEach(it, atd) {
                char *end = NULL;
                long long id = it->string ? strtoll(it->string, &end, 10) : -1;
                if (!it->string || !*it->string || *end || !cJSON_IsObject(it)) {
                    s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: added_tokens_decoder key \"%s\" is not an id", cp,
                                  it->string ? it->string : "");
                    break;
                }
                if ((s = add_token(t, it, id, cp, "added_tokens_decoder entry", err))) break;
            }
        }
    }
    free(cp);
    return s;
}

static vlmc_status finish_added(vlmc_tokenizer *t, const char *file, vlmc_error *err) {
    size_t n_ids = t->bpe.n_ids;
    for (size_t i = 0; i < t->n_added; i++)
        if ((size_t)t->added[i].id + 1 > n_ids) n_ids = (size_t)t->added[i].id + 1;
    t->n_ids = n_ids;
    free(t->added_of_id);
    free(t->special_of_id);
    t->added_of_id = malloc((n_ids ? n_ids : 1) * sizeof *t->added_of_id);
    t->special_of_id = calloc(n_ids ? n_ids : 1, sizeof *t->special_of_id);
    if (!t->added_of_id || !t->special_of_id) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file);
    memset(t->added_of_id, 0xff, (n_ids ? n_ids : 1) * sizeof *t->added_of_id);
    tk_buf nb = {0};
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file);
    vlmc_status s = VLMC_OK;
    for (size_t i = 0; i < t->n_added && !s; i++) {
        tk_added *a = &t->added[i];
        if (t->added_of_id[a->id] >= 0) continue; /* a later entry for the same id */
        t->added_of_id[a->id] = (int32_t)i;
        if (a->special) {
            /* HF skips by content: a model token spelled like a special one goes too */
            t->special_of_id[a->id] = true;
            int32_t vid = tk_bpe_lookup(&t->bpe, a->content, a->len);
            if (vid >= 0) t->special_of_id[vid] = true;
        }
        free(a->match);
        a->match = NULL;
        if (a->normalized && t->normalizer) {
            if ((s = tk_normalize(t->normalizer, md, a->content, a->len, &nb))) {
                s = vlmc_fail(err, s, "%s: cannot normalize added token \"%.60s\"", file, a->content);
                break;
            }
            a->match = malloc(nb.n + 1);
            if (a->match) {
                memcpy(a->match, nb.p ? nb.p : "", nb.n);
                a->match[nb.n] = 0;
            }
            a->match_len = nb.n;
        } else {
            a->match = strdup(a->content);
            a->match_len = a->len;
        }
        if (!a->match) { s = vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file); break; }
        if (!a->match_len) continue; /* an empty token can never be matched */
        if (!trie_add(a->normalized ? &t->trie_norm : &t->trie_raw, a->match, a->match_len, (int32_t)i))
            s = vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file);
    }
    pcre2_match_data_free(md);
    tk_buf_free(&nb);
    return s;
}

static vlmc_status parse_tokenizer_json(vlmc_tokenizer *t, const cJSON *root, const char *file, vlmc_error *err) {
    vlmc_status s;
    if (!cJSON_IsObject(root)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: must be a JSON object", file);
    const cJSON *model = json_get(root, "model");
    if (!model) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: no \"model\"", file);
    if ((s = tk_bpe_parse(model, &t->bpe, file, err))) return s;
    const cJSON *j;
    if ((j = json_get(root, "normalizer"))) {
        t->normalizer = calloc(1, sizeof *t->normalizer);
        if (!t->normalizer) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file);
        if ((s = tk_normalizer_parse(j, t->normalizer, 0, file, err))) return s;
    }
    if ((j = json_get(root, "pre_tokenizer"))) {
        t->pretok = calloc(1, sizeof *t->pretok);
        if (!t->pretok) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file);
        if ((s = tk_pretok_parse(j, t->pretok, 0, file, err))) return s;
    }
    if ((j = json_get(root, "decoder"))) {
        t->decoder = calloc(1, sizeof *t->decoder);
        if (!t->decoder) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file);
        if ((s = tk_decoder_parse(j, t->decoder, 0, file, err))) return s;
    }
    const cJSON *added = json_get(root, "added_tokens"), *it;
    if (added && !cJSON_IsArray(added)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: \"added_tokens\" must be an array", file);
    size_t k = 0;
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = json_get(it, "id");
        char what[64];
        snprintf(what, sizeof what, "added_tokens[%zu]", k++);
        int32_t idv;
        if (!tk_json_id(id, TK_MAX_VOCAB, &idv))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %s needs an integer \"id\" in [0, %d)", file, what, TK_MAX_VOCAB);
        if ((s = add_token(t, it, idv, file, what, err))) return s;
    }
    return VLMC_OK;
}

/* Builds t from tokenizer.json text (mem, when given), a tokenizer.json file,
 * or the slow files in dir; the config is read from dir when dir is given. */
static vlmc_status tokenizer_build(vlmc_tokenizer *t, const char *json_path, const char *mem, size_t mem_len,
                                   const char *dir, vlmc_error *err) {
    vlmc_status s;
    cJSON *root = NULL, *cfg = NULL;
    if (mem) {
        if (mem_len > TK_MAX_FILE_BYTES)
            return vlmc_fail(err, VLMC_ERR_LIMIT, "%s: %zu bytes is over the limit", json_path, mem_len);
        if ((s = json_parse(mem, mem_len, json_path, &root, err))) return s;
        if ((s = parse_tokenizer_json(t, root, json_path, err))) goto out;
    } else if (json_path) {
        if ((s = json_parse_file(json_path, TK_MAX_FILE_BYTES, &root, err))) return s;
        if ((s = parse_tokenizer_json(t, root, json_path, err))) goto out;
    } else {
        /* vocab.json + merges.txt: GPT-2's byte-level BPE */
        char *vp = path_join(dir, "vocab.json"), *mp = path_join(dir, "merges.txt");
        if (!vp || !mp) s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        else s = tk_bpe_from_files(vp, mp, &t->bpe, err);
        free(vp);
        free(mp);
        if (s) return s;
        t->pretok = calloc(1, sizeof *t->pretok);
        t->decoder = calloc(1, sizeof *t->decoder);
        if (!t->pretok || !t->decoder) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        cJSON *pj = cJSON_Parse("{\"type\":\"ByteLevel\",\"add_prefix_space\":false}");
        cJSON *dj = cJSON_Parse("{\"type\":\"ByteLevel\"}");
        s = (!pj || !dj) ? vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory") : VLMC_OK;
        if (!s) s = tk_pretok_parse(pj, t->pretok, 0, t->path, err);
        if (!s) s = tk_decoder_parse(dj, t->decoder, 0, t->path, err);
        cJSON_Delete(pj);
        cJSON_Delete(dj);
        if (s) return s;
        t->legacy_added_spacing = true;
        /* added_tokens.json: {"content": id}; all of them act as special */
        char *ap = path_join(dir, "added_tokens.json");
        if (ap && file_exists(ap)) {
            cJSON *aj = NULL;
            s = json_parse_file(ap, TK_MAX_CONFIG_BYTES, &aj, err);
            const cJSON *it, *list = s ? NULL : aj;
            cJSON_ArrayForEach(it, list) {
                int32_t idv;
                if (!tk_json_id(it, TK_MAX_VOCAB, &idv) || !it->string) {
                    s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: values must be ids", ap);
                    break;
                }
                cJSON *tokj = cJSON_CreateObject();
                if (!tokj || !cJSON_AddStringToObject(tokj, "content", it->string) || !cJSON_AddTrueToObject(tokj, "special")) {
                    cJSON_Delete(tokj);
                    s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
                    break;
                }
                s = add_token(t, tokj, idv, ap, "added token", err);
                cJSON_Delete(tokj);
                if (s) break;
            }
            cJSON_Delete(aj);
        }
        free(ap);
        if (s) return s;
    }
    if (!t->pretok && (s = tk_bpe_build_pairs(&t->bpe, json_path ? json_path : t->path, err))) goto out;
    if (dir && (s = load_config(t, dir, &cfg, err))) goto out;
    const char *file = json_path ? json_path : t->path;
    if ((s = finish_added(t, file, err))) goto out;
    t->has_bytefallback_decoder = tk_decoder_has(t->decoder, TD_BYTEFALLBACK);
    t->clean_up_spaces = json_bool(cfg, "clean_up_tokenization_spaces", false);
    t->bos_id = config_token_id(t, cfg, "bos_token");
    t->eos_id = config_token_id(t, cfg, "eos_token");
    t->pad_id = config_token_id(t, cfg, "pad_token");
    t->unk_id = config_token_id(t, cfg, "unk_token");
    if (json_path) {
        /* the post-processor needs the final id range, so it is read last */
        const cJSON *pp = json_get(root, "post_processor");
        if (pp) {
            s = post_parse(pp, &t->post.tmpl, &t->post.n_tmpl, 0, t, json_path, err);
            t->post.has = !s;
        }
        if (s) goto out;
    }
    if (!t->post.has) {
        /* no post-processor: tokenizer_config's add_bos_token / add_eos_token */
        bool bos = json_bool(cfg, "add_bos_token", false) && t->bos_id >= 0;
        bool eos = json_bool(cfg, "add_eos_token", false) && t->eos_id >= 0;
        t->post.tmpl = malloc(3 * sizeof *t->post.tmpl);
        if (!t->post.tmpl) { s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory"); goto out; }
        if (bos) t->post.tmpl[t->post.n_tmpl++] = t->bos_id;
        t->post.tmpl[t->post.n_tmpl++] = -1;
        if (eos) t->post.tmpl[t->post.n_tmpl++] = t->eos_id;
        t->post.has = true;
    }
out:
    cJSON_Delete(cfg);
    cJSON_Delete(root);
    return s;
}

vlmc_status vlmc_tokenizer_load(const char *path, vlmc_tokenizer **out, vlmc_error *err) {
    *out = NULL;
    if (!path) return vlmc_fail(err, VLMC_ERR_ARG, "tokenizer: no path given");
    vlmc_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", path);
    t->bos_id = t->eos_id = t->pad_id = t->unk_id = -1;
    t->bpe.unk_id = -1;
    vlmc_status s;
    char *json_path = NULL, *dir = NULL;
    if (file_is_dir(path)) {
        dir = strdup(path);
        json_path = path_join(path, "tokenizer.json");
        if (!dir || !json_path) { s = vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", path); goto fail; }
        if (!file_exists(json_path)) {
            free(json_path);
            json_path = NULL;
            char *v = path_join(path, "vocab.json"), *m = path_join(path, "merges.txt"), *sp = path_join(path, "tokenizer.model");
            bool slow = v && m && file_exists(v) && file_exists(m), spm = sp && file_exists(sp);
            free(v);
            free(m);
            free(sp);
            if (!slow) {
                s = spm ? vlmc_fail(err, VLMC_ERR_UNSUPPORTED,
                                    "%s: only tokenizer.model (SentencePiece) is present; vlmc reads tokenizer.json "
                                    "(convert it with transformers' LlamaTokenizerFast.save_pretrained)", path)
                        : vlmc_fail(err, VLMC_ERR_IO, "%s: no tokenizer.json (nor vocab.json + merges.txt) in this folder", path);
                goto fail;
            }
        }
    } else {
        if (!file_exists(path)) { s = vlmc_fail(err, VLMC_ERR_IO, "%s: no such file or folder", path); goto fail; }
        json_path = strdup(path);
        dir = path_dirname(path);
        if (!json_path || !dir) { s = vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", path); goto fail; }
    }
    t->path = strdup(json_path ? json_path : dir);
    if (!t->path) { s = vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", path); goto fail; }
    if ((s = tokenizer_build(t, json_path, NULL, 0, dir, err))) goto fail;
    free(json_path);
    free(dir);
    *out = t;
    return VLMC_OK;
fail:
    free(json_path);
    free(dir);
    vlmc_tokenizer_free(t);
    return s;
}

vlmc_status tk_load_memory(const char *json, size_t len, const char *name, vlmc_tokenizer **out, vlmc_error *err) {
    *out = NULL;
    vlmc_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", name);
    t->bos_id = t->eos_id = t->pad_id = t->unk_id = -1;
    t->bpe.unk_id = -1;
    t->path = strdup(name);
    vlmc_status s = t->path ? tokenizer_build(t, t->path, json, len, NULL, err)
                            : vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", name);
    if (s) {
        vlmc_tokenizer_free(t);
        return s;
    }
    *out = t;
    return VLMC_OK;
}

void vlmc_tokenizer_free(vlmc_tokenizer *t) {
    if (!t) return;
    free(t->path);
    tk_normalizer_free(t->normalizer);
    free(t->normalizer);
    tk_pretok_free(t->pretok);
    free(t->pretok);
    tk_decoder_free(t->decoder);
    free(t->decoder);
    tk_bpe_free(&t->bpe);
    for (size_t i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        free(t->added[i].match);
    }
    free(t->added);
    free(t->trie_raw.nodes);
    free(t->trie_norm.nodes);
    free(t->added_of_id);
    free(t->special_of_id);
    free(t->post.tmpl);
    free(t);
}

/* ---- encoding ----------------------------------------------------------------- */

vlmc_status vlmc_tokenizer_encode(const vlmc_tokenizer *t, const char *text, size_t len, int add_special,
                                  int32_t **ids_out, size_t *n_out, vlmc_error *err) {
    *ids_out = NULL;
    *n_out = 0;
    if (!t || (!text && len)) return vlmc_fail(err, VLMC_ERR_ARG, "tokenizer encode: no tokenizer or text");
    if (!text) text = "";
    if (!utf8_valid(text, len)) return vlmc_fail(err, VLMC_ERR_ARG, "%s: encode: the text is not valid UTF-8", t->path);
    tk_pieces a = {0}, b = {0}, c = {0};
    tk_buf norm = {0};
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    vlmc_status s = VLMC_OK;
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md) { s = VLMC_ERR_NOMEM; goto out; }

    /* 1. added tokens that match the raw text */
    split_added(t, &t->trie_raw, text, len, true, &a);
    /* 2. normalize the rest, 3. added tokens that match normalized text */
    for (size_t i = 0; i < a.n && !s; i++) {
        if (a.v[i].id >= 0) {
            tk_pieces_add(&b, tk_piece_str(&a, i), a.v[i].len, a.v[i].id, a.v[i].at_start);
            continue;
        }
        if ((s = tk_normalize(t->normalizer, md, tk_piece_str(&a, i), a.v[i].len, &norm))) break;
        split_added(t, &t->trie_norm, norm.p ? norm.p : "", norm.n, a.v[i].at_start, &b);
    }
    if (!s && tk_pieces_oom(&b)) s = VLMC_ERR_NOMEM;
    /* 4. pre-tokenize */
    tk_pieces *words = &b;
    if (!s && t->pretok) {
        s = tk_pretokenize(t->pretok, md, &b, &c);
        words = &c;
    }
    /* 5. the model */
    for (size_t i = 0; !s && i < words->n; i++) {
        if (words->v[i].id >= 0) {
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 64;
                int32_t *p = realloc(ids, nc * sizeof *p);
                if (!p) { s = VLMC_ERR_NOMEM; break; }
                ids = p;
                cap = nc;
            }
            ids[n++] = words->v[i].id;
        } else
            s = tk_bpe_word(&t->bpe, tk_piece_str(words, i), words->v[i].len, &ids, &n, &cap);
    }
    /* 6. post-process */
    if (!s && add_special && t->post.has) {
        size_t extra = t->post.n_tmpl, total = 0;
        for (size_t k = 0; k < extra; k++) total += t->post.tmpl[k] < 0 ? n : 1;
        int32_t *p = malloc((total ? total : 1) * sizeof *p);
        if (!p) s = VLMC_ERR_NOMEM;
        else {
            size_t w = 0;
            for (size_t k = 0; k < extra; k++) {
                if (t->post.tmpl[k] < 0) {
                    if (n) memcpy(p + w, ids, n * sizeof *ids);
                    w += n;
                } else
                    p[w++] = t->post.tmpl[k];
            }
            free(ids);
            ids = p;
            n = w;
        }
    }
out:
    if (md) pcre2_match_data_free(md);
    tk_pieces_free(&a);
    tk_pieces_free(&b);
    tk_pieces_free(&c);
    tk_buf_free(&norm);
    if (s) {
        free(ids);
        return vlmc_fail(err, s, "%s: encode failed (%s)", t->path, vlmc_status_name(s));
    }
    if (!ids) ids = malloc(sizeof *ids); /* a valid pointer even for no ids */
    if (!ids) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", t->path);
    *ids_out = ids;
    *n_out = n;
    return VLMC_OK;
}

/* ---- decoding and small queries ------------------------------------------------------ */

vlmc_status vlmc_tokenizer_decode(const vlmc_tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **text,
                                  size_t *len, vlmc_error *err) {
    *text = NULL;
    if (len) *len = 0;
    if (!t || (!ids && n)) return vlmc_fail(err, VLMC_ERR_ARG, "tokenizer decode: no tokenizer or ids");
    tk_buf out = {0};
    vlmc_status s = tk_decode_raw(t, ids, n, skip_special != 0, &out);
    if (!s && t->clean_up_spaces) tk_cleanup(&out);
    if (!s && !out.p) tk_buf_put(&out, "", 0);
    if (!s && out.oom) s = VLMC_ERR_NOMEM;
    if (s) {
        tk_buf_free(&out);
        return vlmc_fail(err, s, "%s: decode failed (%s)", t->path, vlmc_status_name(s));
    }
    *text = out.p;
    if (len) *len = out.n;
    return VLMC_OK;
}

size_t vlmc_tokenizer_vocab_size(const vlmc_tokenizer *t) { return t ? t->n_ids : 0; }

const char *vlmc_tokenizer_id_to_token(const vlmc_tokenizer *t, int32_t id) {
    size_t len;
    /* every stored token string is NUL-terminated */
    return t ? tk_id_to_token(t, id, &len) : NULL;
}

int32_t vlmc_tokenizer_token_to_id(const vlmc_tokenizer *t, const char *token) {
    if (!t || !token) return -1;
    return token_to_id(t, token, strlen(token));
}

int32_t vlmc_tokenizer_bos_id(const vlmc_tokenizer *t) { return t ? t->bos_id : -1; }
int32_t vlmc_tokenizer_eos_id(const vlmc_tokenizer *t) { return t ? t->eos_id : -1; }
int32_t vlmc_tokenizer_pad_id(const vlmc_tokenizer *t) { return t ? t->pad_id : -1; }

int vlmc_tokenizer_is_special(const vlmc_tokenizer *t, int32_t id) {
    if (!t || id < 0 || (size_t)id >= t->n_ids) return 0;
    return t->special_of_id[id] ? 1 : 0;
}

/* ---- the --jsonl seam ------------------------------------------------------------------ */

static void json_str(tk_buf *b, const char *s, size_t n) {
    tk_buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[8];
        switch (c) {
        case '"': tk_buf_put(b, "\\\"", 2); break;
        case '\\': tk_buf_put(b, "\\\\", 2); break;
        case '\n': tk_buf_put(b, "\\n", 2); break;
        case '\r': tk_buf_put(b, "\\r", 2); break;
        case '\t': tk_buf_put(b, "\\t", 2); break;
        default:
            if (c < 0x20 || c == 0x7f) {
                snprintf(tmp, sizeof tmp, "\\u%04x", c);
                tk_buf_put(b, tmp, 6);
            } else
                tk_buf_putc(b, (char)c);
        }
    }
    tk_buf_putc(b, '"');
}

static int hexval(char c) {
    return (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
}

static bool hex4(const char *p, const char *end, uint32_t *v) {
    if (end - p < 4) return false;
    *v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0) return false;
        *v = *v * 16 + (uint32_t)h;
    }
    return true;
}

/* One JSON string literal (with surrounding whitespace) into out, keeping
 * \u0000 as a NUL byte, which cJSON's C strings would cut off. */
static bool parse_json_string(const char *s, size_t n, tk_buf *out) {
    const char *p = s, *end = s + n;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    if (p >= end || *p++ != '"') return false;
    for (;;) {
        if (p >= end) return false;
        unsigned char c = (unsigned char)*p++;
        if (c == '"') break;
        if (c < 0x20) return false;
        if (c != '\\') { tk_buf_putc(out, (char)c); continue; }
        if (p >= end) return false;
        char e = *p++;
        uint32_t cp;
        switch (e) {
        case '"': tk_buf_putc(out, '"'); break;
        case '\\': tk_buf_putc(out, '\\'); break;
        case '/': tk_buf_putc(out, '/'); break;
        case 'b': tk_buf_putc(out, '\b'); break;
        case 'f': tk_buf_putc(out, '\f'); break;
        case 'n': tk_buf_putc(out, '\n'); break;
        case 'r': tk_buf_putc(out, '\r'); break;
        case 't': tk_buf_putc(out, '\t'); break;
        case 'u':
            if (!hex4(p, end, &cp)) return false;
            p += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) { /* a surrogate pair */
                uint32_t lo;
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || !hex4(p + 2, end, &lo) || lo < 0xdc00 || lo > 0xdfff)
                    return false;
                p += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp <= 0xdfff)
                return false;
            tk_buf_put_cp(out, cp);
            break;
        default: return false;
        }
    }
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    return p == end && !out->oom;
}

vlmc_status vlmc_tokenizer_jsonl(const vlmc_tokenizer *t, const char *line, size_t len, int add_special,
                                 char **json_out, vlmc_error *err) {
    *json_out = NULL;
    if (!t || !line) return vlmc_fail(err, VLMC_ERR_ARG, "tokenize jsonl: no tokenizer or line");
    tk_buf in = {0};
    if (!utf8_valid(line, len) || !parse_json_string(line, len, &in)) {
        tk_buf_free(&in);
        return vlmc_fail(err, VLMC_ERR_FORMAT, "jsonl input line: expected one JSON string");
    }
    tk_buf_put(&in, "", 0);
    int32_t *ids = NULL;
    size_t n = 0;
    char *d1 = NULL, *d2 = NULL;
    size_t l1 = 0, l2 = 0;
    tk_buf b = {0};
    vlmc_status s = vlmc_tokenizer_encode(t, in.p, in.n, add_special, &ids, &n, err);
    if (!s) s = vlmc_tokenizer_decode(t, ids, n, 0, &d1, &l1, err);
    if (!s) s = vlmc_tokenizer_decode(t, ids, n, 1, &d2, &l2, err);
    if (!s) {
        tk_buf_put(&b, "{\"ids\": [", 9);
        for (size_t i = 0; i < n; i++) {
            char tmp[24];
            int k = snprintf(tmp, sizeof tmp, "%s%d", i ? ", " : "", (int)ids[i]);
            tk_buf_put(&b, tmp, (size_t)k);
        }
        tk_buf_put(&b, "], \"tokens\": [", 14);
        for (size_t i = 0; i < n; i++) {
            size_t tl = 0;
            const char *ts = tk_id_to_token(t, ids[i], &tl);
            if (i) tk_buf_put(&b, ", ", 2);
            json_str(&b, ts ? ts : "", ts ? tl : 0);
        }
        tk_buf_put(&b, "], \"decoded\": ", 14);
        json_str(&b, d1, l1);
        tk_buf_put(&b, ", \"decoded_skip_special\": ", 26);
        json_str(&b, d2, l2);
        tk_buf_putc(&b, '}');
        if (b.oom) s = vlmc_fail(err, VLMC_ERR_NOMEM, "jsonl: out of memory");
    }
    tk_buf_free(&in);
    free(ids);
    free(d1);
    free(d2);
    if (s) {
        tk_buf_free(&b);
        return s;
    }
    *json_out = b.p;
    return VLMC_OK;
}
