/* The BPE model of tokenizer.json: vocabulary and merge tables as open
 * addressing hash maps, the merge loop as a linked list of symbols plus a
 * binary min-heap of candidate merges (rank, then position: the `tokenizers`
 * library's order), and a bounded cache of whole-word results.
 *
 * Why a heap rather than "find the best pair, rebuild the string": the rebuild
 * is O(n^2) in the word length and allocates; the heap is O(n log n) and works
 * on small integer arrays that live on the stack for ordinary words. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/file.h"
#include "core/utf8.h"
#include "formats/json.h"
#include "text/tokenizer.h"

bool tk_json_id(const void *json, int64_t limit, int32_t *out) {
    const cJSON *j = json;
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    if (!(d >= 0 && d < (double)limit) || d != (double)(int64_t)d) return false;
    *out = (int32_t)d;
    return true;
}

/* ---- hashing ------------------------------------------------------------------ */

uint64_t tk_hash(const char *s, size_t n) {
    /* FNV-1a over 8-byte words with a final avalanche: short keys dominate */
    uint64_t h = 0xcbf29ce484222325ull ^ (n * 0x9e3779b97f4a7c15ull);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    uint64_t w = 0;
    if (i < n) memcpy(&w, s + i, n - i);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    return h;
}

static uint64_t hash_pair(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return k;
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c *= 2;
    return c;
}

/* Equality of short byte strings without a libc call per probe. */
static inline bool bytes_eq(const char *a, const char *b, size_t n) {
    if (n > 16) return !memcmp(a, b, n);
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return false;
    return true;
}

int32_t tk_bpe_lookup(const tk_bpe *b, const char *s, size_t n) {
    if (!b->vocab.slots) return -1;
    size_t i = (size_t)tk_hash(s, n) & b->vocab.mask;
    for (;;) {
        int32_t id = b->vocab.slots[i];
        if (id < 0) return -1;
        if ((size_t)b->tok_len[id] == n && bytes_eq(b->pool + b->tok_off[id], s, n)) return id;
        i = (i + 1) & b->vocab.mask;
    }
}

/* ---- cache of word -> ids ---------------------------------------------------------- */

#define CACHE_SLOTS (1u << 16)
#define CACHE_POOL ((size_t)8 << 20)
#define CACHE_MAX_WORD 128

struct tk_cache {
    pthread_mutex_t mu;
    uint32_t *slot_off; /* offset+1 into pool, 0 = empty; allocated on first use */
    size_t used;
    char *pool; /* grows by doubling up to CACHE_POOL */
    size_t pool_len, pool_cap;
};

static tk_cache *cache_new(void) {
    tk_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    if (pthread_mutex_init(&c->mu, NULL)) {
        free(c);
        return NULL;
    }
    return c;
}

static void cache_free(tk_cache *c) {
    if (!c) return;
    pthread_mutex_destroy(&c->mu);
    free(c->slot_off);
    free(c->pool);
    free(c);
}

/* Entry layout in the pool: u32 word length, u32 id count, word bytes, ids (4-aligned). */
static size_t entry_size(size_t wn, size_t k) { return 8 + ((wn + 3) & ~(size_t)3) + 4 * k; }

static bool cache_get(tk_cache *c, uint64_t h, const char *w, size_t n, int32_t **ids, size_t *n_ids, size_t *cap) {
    bool found = false;
    pthread_mutex_lock(&c->mu);
    for (size_t i = h & (CACHE_SLOTS - 1); c->slot_off; i = (i + 1) & (CACHE_SLOTS - 1)) {
        uint32_t o = c->slot_off[i];
        if (!o) break;
        const char *e = c->pool + (o - 1);
        uint32_t wn, k;
        memcpy(&wn, e, 4);
        memcpy(&k, e + 4, 4);
        if (wn == n && bytes_eq(e + 8, w, n)) {
            if (*n_ids + k > *cap) {
                size_t nc = (*cap ? *cap : 64);
                while (nc < *n_ids + k) nc *= 2;
                int32_t *p = realloc(*ids, nc * sizeof *p);
                if (!p) break;
                *ids = p;
                *cap = nc;
            }
            memcpy(*ids + *n_ids, e + 8 + ((wn + 3) & ~(size_t)3), 4 * (size_t)k);
            *n_ids += k;
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return found;
}

static void cache_put(tk_cache *c, uint64_t h, const char *w, size_t n, const int32_t *ids, size_t k) {
    size_t sz = entry_size(n, k);
    pthread_mutex_lock(&c->mu);
    if (!c->slot_off && !(c->slot_off = calloc(CACHE_SLOTS, sizeof *c->slot_off))) goto done;
    if (c->pool_len + sz > c->pool_cap && c->pool_cap < CACHE_POOL) {
        size_t cap = c->pool_cap ? c->pool_cap * 2 : (size_t)64 << 10;
        char *p = realloc(c->pool, cap);
        if (p) {
            c->pool = p;
            c->pool_cap = cap;
        }
    }
    if (c->pool_len + sz > c->pool_cap || c->used * 4 >= CACHE_SLOTS * 3) {
        /* full: start over (simple, and the hot words come back at once) */
        memset(c->slot_off, 0, CACHE_SLOTS * sizeof *c->slot_off);
        c->used = 0;
        c->pool_len = 0;
        if (sz > c->pool_cap) goto done;
    }
    size_t i = h & (CACHE_SLOTS - 1);
    while (c->slot_off[i]) {
        const char *e = c->pool + (c->slot_off[i] - 1);
        uint32_t wn;
        memcpy(&wn, e, 4);
        if (wn == n && !memcmp(e + 8, w, n)) goto done; /* another thread won */
        i = (i + 1) & (CACHE_SLOTS - 1);
    }
    char *e = c->pool + c->pool_len;
    uint32_t wn = (uint32_t)n, kk = (uint32_t)k;
    memcpy(e, &wn, 4);
    memcpy(e + 4, &kk, 4);
    memcpy(e + 8, w, n);
    memcpy(e + 8 + ((n + 3) & ~(size_t)3), ids, 4 * k);
    c->slot_off[i] = (uint32_t)(c->pool_len + 1);
    c->pool_len += sz;
    c->used++;
done:
    pthread_mutex_unlock(&c->mu);
}

/* ---- building the model ------------------------------------------------------------ */

static vlmc_status merge_insert(tk_bpe *b, int32_t left, int32_t right, uint32_t rank, int32_t new_id) {
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    size_t i = (size_t)hash_pair(key) & b->merge_mask;
    while (b->merges[i].new_id >= 0) {
        if (b->merges[i].key == key) break; /* a repeated merge: the later rank wins, as in HF */
        i = (i + 1) & b->merge_mask;
    }
    if (b->merges[i].new_id < 0) b->n_merges++;
    b->merges[i].key = key;
    b->merges[i].rank = rank;
    b->merges[i].new_id = new_id;
    return VLMC_OK;
}

static inline bool merge_find(const tk_bpe *b, int32_t left, int32_t right, uint32_t *rank, int32_t *new_id) {
    if (!b->merges) return false;
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    size_t i = (size_t)hash_pair(key) & b->merge_mask;
    while (b->merges[i].new_id >= 0) {
        if (b->merges[i].key == key) {
            *rank = b->merges[i].rank;
            *new_id = b->merges[i].new_id;
            return true;
        }
        i = (i + 1) & b->merge_mask;
    }
    return false;
}

/* Vocabulary from parallel (string, id) lists. Strings are copied into one pool. */
typedef struct vocab_src {
    const char **s;
    size_t *len;
    int32_t *id;
    size_t n;
} vocab_src;

static vlmc_status build_vocab(tk_bpe *b, const vocab_src *v, const char *file, vlmc_error *err) {
    size_t total = 0;
    int32_t max_id = -1;
    for (size_t i = 0; i < v->n; i++) {
        if (v->id[i] < 0 || v->id[i] >= TK_MAX_VOCAB)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: model.vocab: id %d of \"%.60s\" is out of range [0, %d)", file,
                             (int)v->id[i], v->s[i], TK_MAX_VOCAB);
        if (v->id[i] > max_id) max_id = v->id[i];
        total += v->len[i] + 1;
        if (total > UINT32_MAX - 1) return vlmc_fail(err, VLMC_ERR_LIMIT, "%s: model.vocab is too large", file);
    }
    b->n_ids = (size_t)(max_id + 1);
    b->pool = malloc(total ? total : 1);
    b->tok_off = calloc(b->n_ids ? b->n_ids : 1, sizeof *b->tok_off);
    b->tok_len = malloc((b->n_ids ? b->n_ids : 1) * sizeof *b->tok_len);
    size_t cap = pow2_at_least(v->n * 2 + 1);
    b->vocab.slots = malloc(cap * sizeof *b->vocab.slots);
    if (!b->pool || !b->tok_off || !b->tok_len || !b->vocab.slots)
        return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory for the vocabulary", file);
    b->vocab.mask = cap - 1;
    memset(b->vocab.slots, 0xff, cap * sizeof *b->vocab.slots);
    for (size_t i = 0; i < b->n_ids; i++) b->tok_len[i] = -1;
    for (size_t i = 0; i < v->n; i++) {
        int32_t id = v->id[i];
        /* A key given twice keeps its last id (a JSON object read into a map). */
        int32_t old = tk_bpe_lookup(b, v->s[i], v->len[i]);
        if (old >= 0 && old != id) {
            /* re-point the slot holding `old` to the new id */
            size_t k = (size_t)tk_hash(v->s[i], v->len[i]) & b->vocab.mask;
            while (b->vocab.slots[k] != old) k = (k + 1) & b->vocab.mask;
            b->vocab.slots[k] = id;
        }
        if (b->tok_len[id] < 0) {
            memcpy(b->pool + b->pool_len, v->s[i], v->len[i]);
            b->pool[b->pool_len + v->len[i]] = 0; /* handed out as C strings */
            b->tok_off[id] = (uint32_t)b->pool_len;
            b->tok_len[id] = (int32_t)v->len[i];
            b->pool_len += v->len[i] + 1;
        } else if (old < 0) {
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: model.vocab: id %d is given to both \"%.60s\" and \"%.*s\"",
                             file, (int)id, v->s[i], (int)(b->tok_len[id] < 60 ? b->tok_len[id] : 60),
                             b->pool + b->tok_off[id]);
        }
        if (old < 0) {
            size_t k = (size_t)tk_hash(v->s[i], v->len[i]) & b->vocab.mask;
            while (b->vocab.slots[k] >= 0) k = (k + 1) & b->vocab.mask;
            b->vocab.slots[k] = id;
        }
    }
    return VLMC_OK;
}

static vlmc_status add_merge(tk_bpe *b, const char *l, size_t ln, const char *r, size_t rn, uint32_t rank,
                             const char *file, vlmc_error *err) {
    int32_t a = tk_bpe_lookup(b, l, ln), c = tk_bpe_lookup(b, r, rn);
    if (a < 0) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: merge %u: \"%.*s\" is not in the vocabulary", file, rank + 1, (int)(ln < 60 ? ln : 60), l);
    if (c < 0) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: merge %u: \"%.*s\" is not in the vocabulary", file, rank + 1, (int)(rn < 60 ? rn : 60), r);
    if (b->prefix_len && rn >= b->prefix_len && !memcmp(r, b->prefix, b->prefix_len)) {
        r += b->prefix_len;
        rn -= b->prefix_len;
    }
    char stackbuf[256];
    char *m = ln + rn <= sizeof stackbuf ? stackbuf : malloc(ln + rn);
    if (!m) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file);
    memcpy(m, l, ln);
    memcpy(m + ln, r, rn);
    int32_t id = tk_bpe_lookup(b, m, ln + rn);
    vlmc_status s = VLMC_OK;
    if (id < 0)
        s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: merge %u: the merged token \"%.*s\" is not in the vocabulary", file,
                      rank + 1, (int)(ln + rn < 60 ? ln + rn : 60), m);
    else
        merge_insert(b, a, c, rank, id);
    if (m != stackbuf) free(m);
    return s;
}

static vlmc_status alloc_merges(tk_bpe *b, size_t n, const char *file, vlmc_error *err) {
    size_t cap = pow2_at_least(n * 2 + 1);
    b->merges = malloc(cap * sizeof *b->merges);
    if (!b->merges)
        return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory for the merges", file);
    for (size_t i = 0; i < cap; i++) b->merges[i].new_id = -1;
    b->merge_mask = cap - 1;
    return VLMC_OK;
}

/* Lookups that every word needs: byte-fallback pieces and single characters. */
static vlmc_status finish_model(tk_bpe *b, const char *unk, const char *file, vlmc_error *err) {
    b->unk_id = -1;
    if (unk) {
        b->unk_id = tk_bpe_lookup(b, unk, strlen(unk));
        /* HF fails only when an unknown character actually needs it; vlmc then
         * drops the character, which is the same output minus the error. */
    }
    for (int i = 0; i < 256; i++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", i);
        b->byte_ids[i] = tk_bpe_lookup(b, name, 6);
    }
    for (uint32_t cp = 0; cp < 0x800; cp++) {
        char tmp[4];
        size_t k = utf8_encode(cp, tmp);
        b->char_ids[cp] = (!b->prefix && !b->suffix && k) ? tk_bpe_lookup(b, tmp, k) : -1;
    }
    b->cache = cache_new();
    if (!b->cache) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file);
    return VLMC_OK;
}

static vlmc_status opt_string(const cJSON *m, const char *key, char **out, size_t *len, const char *file,
                              vlmc_error *err) {
    const cJSON *v = json_get(m, key);
    *out = NULL;
    *len = 0;
    if (!v) return VLMC_OK;
    if (!cJSON_IsString(v)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: model.%s must be a string", file, key);
    if (!v->valuestring[0]) return VLMC_OK; /* "" means none */
    *out = strdup(v->valuestring);
    if (!*out) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file);
    *len = strlen(*out);
    return VLMC_OK;
}

vlmc_status tk_bpe_parse(const void *model_json, tk_bpe *b, const char *file, vlmc_error *err) {
    const cJSON *m = model_json;
    memset(b, 0, sizeof *b);
    b->unk_id = -1;
    const char *type = json_string(m, "type", NULL);
    if (!cJSON_IsObject(m)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: \"model\" must be an object", file);
    if (type && strcmp(type, "BPE"))
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: model type \"%s\" is not supported (only BPE)", file, type);
    const cJSON *vocab = json_get(m, "vocab"), *merges = json_get(m, "merges");
    if (!cJSON_IsObject(vocab)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: model.vocab must be an object", file);
    if (merges && !cJSON_IsArray(merges)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: model.merges must be an array", file);
    vlmc_status s;
    if ((s = opt_string(m, "continuing_subword_prefix", &b->prefix, &b->prefix_len, file, err))) return s;
    if ((s = opt_string(m, "end_of_word_suffix", &b->suffix, &b->suffix_len, file, err))) return s;
    b->fuse_unk = json_bool(m, "fuse_unk", false);
    b->byte_fallback = json_bool(m, "byte_fallback", false);
    b->ignore_merges = json_bool(m, "ignore_merges", false);
    const cJSON *unk = json_get(m, "unk_token");
    if (unk && !cJSON_IsString(unk)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: model.unk_token must be a string", file);

    int n = cJSON_GetArraySize(vocab);
    if (n > TK_MAX_VOCAB) return vlmc_fail(err, VLMC_ERR_LIMIT, "%s: model.vocab has %d entries (limit %d)", file, n, TK_MAX_VOCAB);
    vocab_src v = {0};
    v.s = malloc(((size_t)n + 1) * sizeof *v.s);
    v.len = malloc(((size_t)n + 1) * sizeof *v.len);
    v.id = malloc(((size_t)n + 1) * sizeof *v.id);
    if (!v.s || !v.len || !v.id) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file);
        goto out;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        int32_t idv;
        if (!tk_json_id(it, TK_MAX_VOCAB, &idv)) {
            s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: model.vocab[\"%.60s\"] must be an id in [0, %d)", file,
                          it->string ? it->string : "", TK_MAX_VOCAB);
            goto out;
        }
        v.s[v.n] = it->string ? it->string : "";
        v.len[v.n] = strlen(v.s[v.n]);
        v.id[v.n] = idv;
        v.n++;
    }
    if ((s = build_vocab(b, &v, file, err))) goto out;

    int nm = merges ? cJSON_GetArraySize(merges) : 0;
    if ((s = alloc_merges(b, (size_t)nm, file, err))) goto out;
    uint32_t rank = 0;
    cJSON_ArrayForEach(it, merges) {
        if (cJSON_IsString(it)) {
            /* "left right": exactly one space */
            const char *str = it->valuestring, *sp = strchr(str, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: merge %u (\"%.60s\") is not two tokens separated by one space",
                              file, rank + 1, str);
                goto out;
            }
            s = add_merge(b, str, (size_t)(sp - str), sp + 1, strlen(sp + 1), rank, file, err);
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(it->child) &&
                   cJSON_IsString(it->child->next)) {
            const char *l = it->child->valuestring, *r = it->child->next->valuestring;
            s = add_merge(b, l, strlen(l), r, strlen(r), rank, file, err);
        } else {
            s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: merge %u is neither \"a b\" nor [\"a\", \"b\"]", file, rank + 1);
        }
        if (s) goto out;
        rank++;
    }
    s = finish_model(b, unk ? unk->valuestring : NULL, file, err);
out:
    free(v.s);
    free(v.len);
    free(v.id);
    return s;
}

/* GPT-2's slow-tokenizer files: vocab.json ({"token": id}) and merges.txt
 * ("#version" line, then "left right" per line). */
vlmc_status tk_bpe_from_files(const char *vocab_path, const char *merges_path, tk_bpe *b, vlmc_error *err) {
    memset(b, 0, sizeof *b);
    b->unk_id = -1;
    cJSON *root = NULL;
    vlmc_status s = json_parse_file(vocab_path, TK_MAX_FILE_BYTES, &root, err);
    if (s) return s;
    char *text = NULL;
    size_t len = 0;
    if (!cJSON_IsObject(root)) {
        s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: must be a JSON object of token: id", vocab_path);
        goto out;
    }
    /* Reuse the tokenizer.json parser on a synthesized model object. */
    cJSON *model = cJSON_CreateObject();
    if (!model) { s = vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", vocab_path); goto out; }
    cJSON_AddItemReferenceToObject(model, "vocab", root);
    s = tk_bpe_parse(model, b, vocab_path, err);
    cJSON_Delete(model);
    if (s) goto out;
    if ((s = file_read_all(merges_path, TK_MAX_FILE_BYTES, &text, &len, err))) goto out;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    free(b->merges);
    b->merges = NULL;
    b->n_merges = 0;
    if ((s = alloc_merges(b, lines, merges_path, err))) goto out;
    uint32_t rank = 0;
    size_t lineno = 0;
    for (size_t i = 0; i < len;) {
        size_t e = i;
        while (e < len && text[e] != '\n') e++;
        lineno++;
        size_t le = e;
        if (le > i && text[le - 1] == '\r') le--;
        if (le > i && !(lineno == 1 && text[i] == '#')) {
            const char *l = text + i, *sp = memchr(l, ' ', le - i);
            if (!sp || memchr(sp + 1, ' ', (size_t)(text + le - sp - 1))) {
                s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: line %zu is not two tokens separated by one space",
                              merges_path, lineno);
                goto out;
            }
            if ((s = add_merge(b, l, (size_t)(sp - l), sp + 1, (size_t)(text + le - sp - 1), rank, merges_path, err)))
                goto out;
            rank++;
        }
        i = e + 1;
    }
out:
    free(text);
    cJSON_Delete(root);
    return s;
}

void tk_bpe_free(tk_bpe *b) {
    free(b->pool);
    free(b->tok_off);
    free(b->tok_len);
    free(b->vocab.slots);
    free(b->merges);
    free(b->prefix);
    free(b->suffix);
    cache_free(b->cache);
    free(b->pair_keys);
    memset(b, 0, sizeof *b);
}

#define PAIR_EMPTY UINT64_MAX

static bool pair_insert(uint64_t *keys, size_t mask, uint64_t k) {
    size_t i = (size_t)hash_pair(k) & mask;
    while (keys[i] != PAIR_EMPTY) {
        if (keys[i] == k) return false;
        i = (i + 1) & mask;
    }
    keys[i] = k;
    return true;
}

static bool pair_has(const tk_bpe *b, uint32_t a, uint32_t c) {
    uint64_t k = ((uint64_t)a << 32) | c;
    size_t i = (size_t)hash_pair(k) & b->pair_mask;
    while (b->pair_keys[i] != PAIR_EMPTY) {
        if (b->pair_keys[i] == k) return true;
        i = (i + 1) & b->pair_mask;
    }
    return false;
}

vlmc_status tk_bpe_build_pairs(tk_bpe *b, const char *file, vlmc_error *err) {
    if (b->prefix || b->suffix) return VLMC_OK;
    /* at most one pair per byte of the pool */
    size_t cap = pow2_at_least(b->pool_len + 1), used = 0;
    uint64_t *keys = malloc(cap * sizeof *keys);
    if (!keys) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file);
    memset(keys, 0xff, cap * sizeof *keys);
    for (size_t id = 0; id < b->n_ids; id++) {
        if (b->tok_len[id] < 0) continue;
        const char *s = b->pool + b->tok_off[id];
        size_t n = (size_t)b->tok_len[id], i = 0;
        uint32_t prev = 0;
        bool have = false;
        while (i < n) {
            uint32_t cp;
            size_t k = utf8_decode(s + i, n - i, &cp);
            if (!k) { have = false; i++; continue; }
            if (have && pair_insert(keys, cap - 1, ((uint64_t)prev << 32) | cp)) used++;
            prev = cp;
            have = true;
            i += k;
        }
    }
    /* shrink to a load factor of at most 1/2 */
    size_t cap2 = pow2_at_least(used * 2 + 1);
    uint64_t *k2 = malloc(cap2 * sizeof *k2);
    if (!k2) {
        free(keys);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", file);
    }
    memset(k2, 0xff, cap2 * sizeof *k2);
    for (size_t i = 0; i < cap; i++)
        if (keys[i] != PAIR_EMPTY) pair_insert(k2, cap2 - 1, keys[i]);
    free(keys);
    b->pair_keys = k2;
    b->pair_mask = cap2 - 1;
    return VLMC_OK;
}

/* ---- the merge loop ------------------------------------------------------------------ */

typedef struct sym {
    int32_t id;
    int32_t prev, next;
    bool gone;
} sym;

typedef struct cand {
    uint32_t rank;
    int32_t pos;
    int32_t new_id;
} cand;

static inline bool cand_less(cand a, cand b) { return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos; }

static void heap_push(cand *h, size_t *n, cand c) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(c, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static cand heap_pop(cand *h, size_t *n) {
    cand top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= *n) break;
        size_t c = (l + 1 < *n && cand_less(h[l + 1], h[l])) ? l + 1 : l;
        if (!cand_less(h[c], last)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

static bool push_id(int32_t **ids, size_t *n, size_t *cap, int32_t id) {
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        int32_t *p = realloc(*ids, nc * sizeof *p);
        if (!p) return false;
        *ids = p;
        *cap = nc;
    }
    (*ids)[(*n)++] = id;
    return true;
}

/* The id of one character of the word, with the subword prefix / word suffix
 * attached as the model's config asks. -1 when not in the vocabulary. */
static int32_t char_id(const tk_bpe *b, const char *c, size_t k, bool first, bool last) {
    if (!b->prefix && !b->suffix) {
        uint32_t cp;
        if (k <= 2 && utf8_decode(c, k, &cp) == k && cp < 0x800) return b->char_ids[cp];
        return tk_bpe_lookup(b, c, k);
    }
    char stackbuf[256];
    size_t pn = (!first && b->prefix) ? b->prefix_len : 0, sn = (last && b->suffix) ? b->suffix_len : 0;
    size_t tot = pn + k + sn;
    char *t = tot <= sizeof stackbuf ? stackbuf : malloc(tot);
    if (!t) return -1;
    if (pn) memcpy(t, b->prefix, pn);
    memcpy(t + pn, c, k);
    if (sn) memcpy(t + pn + k, b->suffix, sn);
    int32_t id = tk_bpe_lookup(b, t, tot);
    if (t != stackbuf) free(t);
    return id;
}

static vlmc_status bpe_merge_word(const tk_bpe *b, const char *w, size_t n, int32_t **ids, size_t *n_ids, size_t *cap) {
    sym stack_syms[64];
    cand stack_heap[128];
    /* a character of k bytes yields at most k * (1 + |prefix| + |suffix|) symbols */
    size_t scap = n * (1 + b->prefix_len + b->suffix_len) + 1;
    sym *sy = scap <= 64 ? stack_syms : malloc(scap * sizeof *sy);
    size_t ns = 0;
    vlmc_status st = VLMC_OK;
    if (!sy) return VLMC_ERR_NOMEM;
    /* pending unknown run (fuse_unk joins neighbouring unknown characters) */
    int32_t unk_pending = -1;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_decode(w + i, n - i, &cp);
        if (!k) k = 1; /* not reached with valid input */
        bool first = i == 0, last = i + k >= n;
        int32_t id = char_id(b, w + i, k, first, last);
        if (id >= 0) {
            if (unk_pending >= 0) { sy[ns++] = (sym){unk_pending, 0, 0, false}; unk_pending = -1; }
            sy[ns++] = (sym){id, 0, 0, false};
        } else {
            bool done = false;
            if (b->byte_fallback) {
                /* the bytes of the (prefixed) character, all or nothing */
                size_t pn = (!first && b->prefix) ? b->prefix_len : 0, sn = (last && b->suffix) ? b->suffix_len : 0;
                bool all = true;
                for (size_t j = 0; j < pn + k + sn && all; j++) {
                    unsigned char c = (unsigned char)(j < pn ? b->prefix[j] : j < pn + k ? w[i + j - pn] : b->suffix[j - pn - k]);
                    all = b->byte_ids[c] >= 0;
                }
                if (all) {
                    for (size_t j = 0; j < pn + k + sn; j++) {
                        unsigned char c = (unsigned char)(j < pn ? b->prefix[j] : j < pn + k ? w[i + j - pn] : b->suffix[j - pn - k]);
                        sy[ns++] = (sym){b->byte_ids[c], 0, 0, false};
                    }
                    done = true;
                }
            }
            if (!done && b->unk_id >= 0) {
                if (unk_pending >= 0 && !b->fuse_unk) sy[ns++] = (sym){unk_pending, 0, 0, false};
                unk_pending = b->unk_id;
            }
        }
        i += k;
    }
    if (unk_pending >= 0) sy[ns++] = (sym){unk_pending, 0, 0, false};
    for (size_t i = 0; i < ns; i++) {
        sy[i].prev = (int32_t)i - 1;
        sy[i].next = i + 1 < ns ? (int32_t)i + 1 : -1;
    }
    if (ns >= 2) {
        /* every merge removes a symbol and pushes at most two candidates */
        size_t hcap = 3 * ns + 4, hn = 0;
        cand *h = hcap <= 128 ? stack_heap : malloc(hcap * sizeof *h);
        if (!h) { st = VLMC_ERR_NOMEM; goto out; }
        for (size_t i = 0; i + 1 < ns; i++) {
            uint32_t r;
            int32_t nid;
            if (merge_find(b, sy[i].id, sy[i + 1].id, &r, &nid)) heap_push(h, &hn, (cand){r, (int32_t)i, nid});
        }
        while (hn) {
            cand c = heap_pop(h, &hn);
            sym *s = &sy[c.pos];
            if (s->gone || s->next < 0) continue;
            sym *r = &sy[s->next];
            uint32_t rank;
            int32_t nid;
            if (!merge_find(b, s->id, r->id, &rank, &nid) || nid != c.new_id) continue;
            s->id = c.new_id;
            r->gone = true;
            s->next = r->next;
            if (r->next >= 0) sy[r->next].prev = c.pos;
            if (hn + 2 > hcap) break; /* cannot happen: see hcap */
            if (s->prev >= 0 && merge_find(b, sy[s->prev].id, s->id, &rank, &nid))
                heap_push(h, &hn, (cand){rank, s->prev, nid});
            if (s->next >= 0 && merge_find(b, s->id, sy[s->next].id, &rank, &nid))
                heap_push(h, &hn, (cand){rank, c.pos, nid});
        }
        if (h != stack_heap) free(h);
    }
    for (int32_t i = ns ? 0 : -1; i >= 0; i = sy[i].next)
        if (!push_id(ids, n_ids, cap, sy[i].id)) { st = VLMC_ERR_NOMEM; break; }
out:
    if (sy != stack_syms) free(sy);
    return st;
}

/* One word (or a part of one), through the cache. */
static vlmc_status word_cached(const tk_bpe *b, const char *w, size_t n, int32_t **ids, size_t *n_ids, size_t *cap) {
    uint64_t h = 0;
    bool cacheable = b->cache && n <= CACHE_MAX_WORD;
    if (cacheable) {
        h = tk_hash(w, n);
        if (cache_get(b->cache, h, w, n, ids, n_ids, cap)) return VLMC_OK;
    }
    size_t before = *n_ids;
    vlmc_status s = bpe_merge_word(b, w, n, ids, n_ids, cap);
    if (!s && cacheable && *n_ids > before) cache_put(b->cache, h, w, n, *ids + before, *n_ids - before);
    return s;
}

vlmc_status tk_bpe_word(const tk_bpe *b, const char *w, size_t n, int32_t **ids, size_t *n_ids, size_t *cap) {
    if (n == 0) return VLMC_OK;
    if (b->ignore_merges) { /* the whole word only: its parts are merged normally */
        int32_t id = tk_bpe_lookup(b, w, n);
        if (id >= 0) return push_id(ids, n_ids, cap, id) ? VLMC_OK : VLMC_ERR_NOMEM;
    }
    if (!b->pair_keys || n <= 32) return word_cached(b, w, n, ids, n_ids, cap);
    /* cut between two in-vocabulary characters that no token joins */
    size_t start = 0, i = 0;
    uint32_t prev = 0;
    bool prev_ok = false;
    while (i < n) {
        uint32_t cp;
        size_t k = utf8_decode(w + i, n - i, &cp);
        if (!k) return word_cached(b, w, n, ids, n_ids, cap); /* not reached with valid input */
        bool ok = char_id(b, w + i, k, false, false) >= 0;
        if (ok && prev_ok && i > start && !pair_has(b, prev, cp)) {
            vlmc_status s = word_cached(b, w + start, i - start, ids, n_ids, cap);
            if (s) return s;
            start = i;
        }
        prev = cp;
        prev_ok = ok;
        i += k;
    }
    return word_cached(b, w + start, n - start, ids, n_ids, cap);
}
