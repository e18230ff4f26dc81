/* `vlmc quantize -m DIR --type T --out DIR`: the same model folder with its weight matrices in a
 * GGUF block format (see vlmc_quantize in include/vlmc.h). The weights go to OUT/model.gguf under
 * their checkpoint names, which safetensors_open reads like a .safetensors file, so every family
 * loads a quantized folder with its own loader; the matmul kernels pick the quantized path by dtype. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlmc.h"
#include "core/file.h"
#include "core/quant.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "models/vlm.h"

/* The folder's files that are not weights. */
static const char *const SMALL_FILES[] = {
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "added_tokens.json", "vocab.json", "merges.txt", "preprocessor_config.json", "processor_config.json",
    "chat_template.json", "chat_template.jinja",
};

static vlmc_status copy_file(const char *from_dir, const char *to_dir, const char *name, vlmc_error *err) {
    char *src = path_join(from_dir, name), *dst = path_join(to_dir, name), *buf = NULL;
    size_t len = 0;
    vlmc_status s = VLMC_OK;
    if (!src || !dst) s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    else if (file_exists(src) && !(s = file_read_all(src, (size_t)1 << 30, &buf, &len, err)))
        s = file_write_all(dst, buf, len, err);
    free(buf), free(src), free(dst);
    return s;
}

static bool parse_type(const char *name, dtype *out) {
    static const struct { const char *name; dtype t; } types[] = {
        {"q8_0", DT_Q8_0}, {"q4_0", DT_Q4_0}, {"q4_k", DT_Q4_K}, {"q6_k", DT_Q6_K}, {"f32", DT_F32}, {"bf16", DT_BF16},
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcasecmp(name, types[i].name)) return *out = types[i].t, true;
    return false;
}

/* The type a tensor is stored in: weight matrices in the asked type (K-quants fall back to the 32-blocks
 * when a row is not a multiple of 256, as llama.cpp falls back), everything else in f32. */
static dtype storage_type(const st_entry *e, dtype want) {
    const char *n = e->name;
    size_t len = strlen(n);
    bool matrix = e->t.ndim == 2 && len > 7 && !strcmp(n + len - 7, ".weight") && !strstr(n, "position_embedding") &&
                  !strstr(n, "patch_embedding");
    if (!matrix || want == DT_F32) return DT_F32;
    const int64_t K = e->t.shape[1];
    if (want == DT_Q4_K && K % QK_K) want = DT_Q4_0;
    if (want == DT_Q6_K && K % QK_K) want = DT_Q8_0;
    if (dtype_is_quantized(want) && K % dtype_block_size(want)) return DT_F32;
    return want;
}

vlmc_status vlmc_quantize(const char *model_dir, const char *type, const char *out_dir, vlmc_error *err) {
    dtype want;
    if (!type || !parse_type(type, &want))
        return vlmc_fail(err, VLMC_ERR_ARG, "--type %s: expected q8_0, q4_0, q4_k, q6_k, f32 or bf16", type ? type : "");
    safetensors *st = NULL;
    vlmc_status s = safetensors_open(model_dir, &st, err);
    if (s) return s;
    gguf_writer *w = NULL;
    const size_t n = safetensors_count(st);
    void **bufs = calloc(n ? n : 1, sizeof *bufs);
    char *path = path_join(out_dir, "model.gguf");
    if (!bufs || !path) s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    if (!s) s = file_mkdirs(out_dir, err);
    for (size_t i = 0; !s && i < sizeof SMALL_FILES / sizeof SMALL_FILES[0]; i++) s = copy_file(model_dir, out_dir, SMALL_FILES[i], err);
    if (!s) s = gguf_writer_new(&w, err);
    if (!s) s = gguf_set_string(w, "general.architecture", "vlmc-hf-checkpoint", err);
    if (!s) s = gguf_set_string(w, "vlmc.quantized_type", type, err);
    for (size_t i = 0; !s && i < n; i++) {
        const st_entry *e = safetensors_at(st, i);
        const dtype t = storage_type(e, want);
        const int64_t numel = tensor_numel(&e->t);
        tensor out = tensor_view(t, NULL, e->t.ndim, e->t.shape);
        const size_t nb = tensor_nbytes(&out);
        float *f32 = malloc((size_t)(numel ? numel : 1) * sizeof *f32);
        if (!f32 || nb == (size_t)-1 || !(bufs[i] = malloc(nb ? nb : 1))) {
            free(f32);
            s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for tensor '%s'", e->name);
            break;
        }
        s = convert_to_f32(f32, e->t.data, e->t.type, (size_t)numel, err);
        if (!s) {
            if (t == DT_F32) memcpy(bufs[i], f32, (size_t)numel * sizeof *f32);
            else if (t == DT_BF16)
                for (int64_t k = 0; k < numel; k++) ((uint16_t *)bufs[i])[k] = f32_to_bf16(f32[k]);
            else {
                const int64_t rows = e->t.shape[0], K = e->t.shape[1];
                const size_t rb = nb / (size_t)rows;
                #pragma omp parallel for schedule(dynamic, 16)
                for (int64_t r = 0; r < rows; r++) quantize_row(t, f32 + r * K, (char *)bufs[i] + (size_t)r * rb, K);
            }
            out.data = bufs[i];
            s = gguf_add_tensor(w, e->name, &out, err);
        }
        free(f32);
    }
    if (!s) s = gguf_writer_write(w, path, err);
    gguf_writer_free(w);
    for (size_t i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    free(path);
    safetensors_close(st);
    return s;
}

vlmc_status vlmc_convert(const char *model_dir, const char *to, const char *out_dir, vlmc_error *err) {
    if (!to || strcmp(to, "gguf")) return vlmc_fail(err, VLMC_ERR_ARG, "--to %s: only gguf is supported", to ? to : "");
    return vlm_convert_gguf(model_dir, out_dir, err);
}
