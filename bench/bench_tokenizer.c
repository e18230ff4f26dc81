/* Tokenizer throughput: encode (and decode) MB/s on ~10 MB of text made by
 * repeating the reference inputs of ../shared/data/tokenizers, for each
 * tokenizer named on the command line (default: gpt2, qwen2.5, llama-spm).
 * Not a test: `make bench-tokenizer` builds and runs it.
 *
 * Two encode figures: one call on the whole 10 MB string, and one call per
 * input line (the chat-sized case). Repeated text favours the word cache, so a
 * third figure encodes once with the cache still cold on fresh,
 * pseudo-random words. Times are CPU seconds (see now()). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vlmc.h"
#include "formats/json.h"

/* CPU time of the process: the benchmark is single-threaded, and CPU time
 * stays meaningful on a shared, loaded machine where wall time does not. */
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const char *shared = getenv("VLMC_SHARED") ? getenv("VLMC_SHARED") : "../shared";
    char path[4096];
    snprintf(path, sizeof path, "%s/data/tokenizers/expected/inputs.json", shared);
    cJSON *j = NULL;
    vlmc_error err = {0};
    if (json_parse_file(path, 1 << 24, &j, &err)) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.message);
        return 1;
    }
    /* the inputs, joined by newlines, repeated to ~10 MB */
    size_t cap = 11u << 20, len = 0;
    char *text = malloc(cap);
    size_t n_lines = 0, *line_off = NULL, *line_len = NULL;
    const cJSON *it;
    size_t one = 0;
    cJSON_ArrayForEach(it, json_get(j, "inputs")) one += strlen(json_string(it, "text", "")) + 1;
    size_t reps = (10u << 20) / (one ? one : 1) + 1;
    line_off = malloc(reps * 200 * sizeof *line_off);
    line_len = malloc(reps * 200 * sizeof *line_len);
    for (size_t r = 0; r < reps; r++) {
        cJSON_ArrayForEach(it, json_get(j, "inputs")) {
            const char *s = json_string(it, "text", "");
            size_t l = strlen(s);
            if (len + l + 1 > cap || n_lines >= reps * 200) break;
            line_off[n_lines] = len;
            line_len[n_lines++] = l;
            memcpy(text + len, s, l);
            len += l;
            text[len++] = '\n';
        }
    }
    /* fresh words: letters drawn from a fixed LCG, never repeating in practice */
    size_t cold_len = 2u << 20;
    char *cold = malloc(cold_len);
    uint32_t seed = 42;
    for (size_t i = 0; i < cold_len; i++) {
        seed = seed * 1664525u + 1013904223u;
        unsigned r = (seed >> 24) % 32;
        cold[i] = r < 26 ? (char)('a' + r) : r < 30 ? ' ' : r == 30 ? '.' : '\n';
    }
    const char *defaults[] = {"gpt2", "qwen2.5", "llama-spm"};
    int n_tok = argc > 1 ? argc - 1 : 3;
    printf("text: %.1f MB (%zu lines); cold text %.1f MB of random words\n", len / 1e6, n_lines, cold_len / 1e6);
    for (int k = 0; k < n_tok; k++) {
        const char *name = argc > 1 ? argv[k + 1] : defaults[k];
        snprintf(path, sizeof path, "%s/data/tokenizers/files/%s", shared, name);
        vlmc_tokenizer *t = NULL;
        double t0 = now();
        if (vlmc_tokenizer_load(path, &t, &err)) {
            fprintf(stderr, "bench_tokenizer: %s\n", err.message);
            continue;
        }
        double t_load = now() - t0;
        int32_t *ids = NULL;
        size_t n = 0;
        t0 = now();
        if (vlmc_tokenizer_encode(t, cold, cold_len, 0, &ids, &n, &err)) { fprintf(stderr, "%s\n", err.message); return 1; }
        double t_cold = now() - t0;
        vlmc_free(ids);
        t0 = now();
        if (vlmc_tokenizer_encode(t, text, len, 0, &ids, &n, &err)) { fprintf(stderr, "%s\n", err.message); return 1; }
        double t_big = now() - t0;
        char *out = NULL;
        size_t ol = 0;
        t0 = now();
        if (vlmc_tokenizer_decode(t, ids, n, 0, &out, &ol, &err)) { fprintf(stderr, "%s\n", err.message); return 1; }
        double t_dec = now() - t0;
        size_t n_big = n;
        /* streaming decode of the first 200k ids, one push per id */
        size_t n_stream = n < 200000 ? n : 200000, streamed = 0;
        vlmc_decode_stream *ds = NULL;
        t0 = now();
        if (vlmc_decode_stream_new(t, 0, &ds, &err)) { fprintf(stderr, "%s\n", err.message); return 1; }
        for (size_t i = 0; i <= n_stream; i++) {
            const char *piece;
            size_t pl;
            vlmc_status st = i < n_stream ? vlmc_decode_stream_push(ds, ids[i], &piece, &pl, &err)
                                          : vlmc_decode_stream_flush(ds, &piece, &pl, &err);
            if (st) { fprintf(stderr, "%s\n", err.message); return 1; }
            streamed += pl;
        }
        vlmc_decode_stream_free(ds);
        double t_stream = now() - t0;
        vlmc_free(ids);
        vlmc_free(out);
        t0 = now();
        size_t total_ids = 0;
        for (size_t i = 0; i < n_lines; i++) {
            if (vlmc_tokenizer_encode(t, text + line_off[i], line_len[i], 1, &ids, &n, &err)) { fprintf(stderr, "%s\n", err.message); return 1; }
            total_ids += n;
            vlmc_free(ids);
        }
        double t_lines = now() - t0;
        printf("%-16s load %.2f s CPU | encode: one 10 MB call %.1f MB/s (%zu ids), per line %.1f MB/s, cold random words %.1f MB/s | "
               "decode %.1f MB/s | stream %.2f us/id\n",
               name, t_load, len / 1e6 / t_big, n_big, len / 1e6 / t_lines, cold_len / 1e6 / t_cold, ol / 1e6 / t_dec,
               1e6 * t_stream / (double)(n_stream ? n_stream : 1));
        (void)streamed;
        (void)total_ids;
        vlmc_tokenizer_free(t);
    }
    free(text);
    free(cold);
    free(line_off);
    free(line_len);
    cJSON_Delete(j);
    return 0;
}
