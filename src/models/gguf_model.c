/* llama.cpp's GGUF pair for the LLaVA and Idefics3 families: a text model (general.architecture "llama")
 * and an mmproj (clip.projector_type "mlp" for LLaVA, "idefics3"), with llama.cpp's tensor names and
 * metadata keys (gguf-py constants / tools/mtmd/clip-impl.h), written from an HF folder and read back.
 *
 *   HF (under the family's prefixes)                 GGUF
 *   embed_tokens / norm / lm_head                    token_embd / output_norm / output
 *   layers.N.input_layernorm, post_attention_layernorm   blk.N.attn_norm, blk.N.ffn_norm
 *   layers.N.self_attn.{q,k,v,o}_proj                blk.N.attn_{q,k,v,output}
 *   layers.N.mlp.{gate,up,down}_proj                 blk.N.ffn_{gate,up,down}
 *   vision embeddings class_embedding / patch_embedding / position_embedding   v.class_embd / v.patch_embd / v.position_embd
 *   vision pre_layrnorm / post_layernorm             v.pre_ln / v.post_ln
 *   vision encoder.layers.N.self_attn.{q,k,v,out}_proj   v.blk.N.attn_{q,k,v,out}
 *   vision encoder.layers.N.layer_norm{1,2}, mlp.fc{1,2}  v.blk.N.ln{1,2}, v.blk.N.ffn_{up,down}
 *   multi_modal_projector.linear_{1,2}               mm.0, mm.2
 *   connector.modality_projection.proj               mm.model.fc
 * As llama.cpp's converter does for the "llama" architecture, the rows of q_proj and k_proj are permuted
 * from HF's rotate-half rope layout to interleaved pairs (within each head: row 2j + t of the GGUF is row
 * t * head_dim/2 + j of HF); reading undoes it. LLaVA's tower keeps only the layers up to
 * vision_feature_layer and no post_layernorm (what llama.cpp's clip runs for "mlp" projectors). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "formats/gguf.h"
#include "formats/json.h"
#include "models/vlm.h"

/* ---- names ---- */

typedef struct name_pair {
    const char *hf, *gguf; /* "%d" = the layer */
} name_pair;

static const name_pair TEXT_NAMES[] = {
    {"embed_tokens.weight", "token_embd.weight"},
    {"norm.weight", "output_norm.weight"},
    {"layers.%d.input_layernorm.weight", "blk.%d.attn_norm.weight"},
    {"layers.%d.self_attn.q_proj.weight", "blk.%d.attn_q.weight"},
    {"layers.%d.self_attn.k_proj.weight", "blk.%d.attn_k.weight"},
    {"layers.%d.self_attn.v_proj.weight", "blk.%d.attn_v.weight"},
    {"layers.%d.self_attn.o_proj.weight", "blk.%d.attn_output.weight"},
    {"layers.%d.post_attention_layernorm.weight", "blk.%d.ffn_norm.weight"},
    {"layers.%d.mlp.gate_proj.weight", "blk.%d.ffn_gate.weight"},
    {"layers.%d.mlp.up_proj.weight", "blk.%d.ffn_up.weight"},
    {"layers.%d.mlp.down_proj.weight", "blk.%d.ffn_down.weight"},
};

static const name_pair VISION_NAMES[] = {
    {"embeddings.class_embedding", "v.class_embd"},
    {"embeddings.patch_embedding.weight", "v.patch_embd.weight"},
    {"embeddings.patch_embedding.bias", "v.patch_embd.bias"},
    {"embeddings.position_embedding.weight", "v.position_embd.weight"},
    {"pre_layrnorm.weight", "v.pre_ln.weight"},
    {"pre_layrnorm.bias", "v.pre_ln.bias"},
    {"post_layernorm.weight", "v.post_ln.weight"},
    {"post_layernorm.bias", "v.post_ln.bias"},
    {"encoder.layers.%d.self_attn.q_proj.weight", "v.blk.%d.attn_q.weight"},
    {"encoder.layers.%d.self_attn.q_proj.bias", "v.blk.%d.attn_q.bias"},
    {"encoder.layers.%d.self_attn.k_proj.weight", "v.blk.%d.attn_k.weight"},
    {"encoder.layers.%d.self_attn.k_proj.bias", "v.blk.%d.attn_k.bias"},
    {"encoder.layers.%d.self_attn.v_proj.weight", "v.blk.%d.attn_v.weight"},
    {"encoder.layers.%d.self_attn.v_proj.bias", "v.blk.%d.attn_v.bias"},
    {"encoder.layers.%d.self_attn.out_proj.weight", "v.blk.%d.attn_out.weight"},
    {"encoder.layers.%d.self_attn.out_proj.bias", "v.blk.%d.attn_out.bias"},
    {"encoder.layers.%d.layer_norm1.weight", "v.blk.%d.ln1.weight"},
    {"encoder.layers.%d.layer_norm1.bias", "v.blk.%d.ln1.bias"},
    {"encoder.layers.%d.layer_norm2.weight", "v.blk.%d.ln2.weight"},
    {"encoder.layers.%d.layer_norm2.bias", "v.blk.%d.ln2.bias"},
    {"encoder.layers.%d.mlp.fc1.weight", "v.blk.%d.ffn_up.weight"},
    {"encoder.layers.%d.mlp.fc1.bias", "v.blk.%d.ffn_up.bias"},
    {"encoder.layers.%d.mlp.fc2.weight", "v.blk.%d.ffn_down.weight"},
    {"encoder.layers.%d.mlp.fc2.bias", "v.blk.%d.ffn_down.bias"},
};

static const name_pair PROJECTOR_NAMES[] = {
    {"multi_modal_projector.linear_1.weight", "mm.0.weight"},
    {"multi_modal_projector.linear_1.bias", "mm.0.bias"},
    {"multi_modal_projector.linear_2.weight", "mm.2.weight"},
    {"multi_modal_projector.linear_2.bias", "mm.2.bias"},
    {"model.connector.modality_projection.proj.weight", "mm.model.fc.weight"},
};

/* The checkpoint prefixes of a family's parts. */
typedef struct family_names {
    bool idefics3;
    const char *text, *lm_head, *vision;
} family_names;

static family_names names_of(bool idefics3) {
    if (idefics3) return (family_names){true, "model.text_model.", "lm_head.weight", "model.vision_model."};
    return (family_names){false, "language_model.model.", "language_model.lm_head.weight", "vision_tower.vision_model."};
}

/* If name (after prefix) matches pattern `from` (with an optional %d), writes `to` with the same layer. */
static bool match_pair(const char *name, const char *prefix, const char *from, const char *to_prefix, const char *to,
                       char *out, size_t cap) {
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl)) return false;
    name += pl;
    const char *pct = strstr(from, "%d");
    int layer = -1;
    if (!pct) {
        if (strcmp(name, from)) return false;
    } else {
        size_t head = (size_t)(pct - from);
        if (strncmp(name, from, head)) return false;
        char *end;
        long v = strtol(name + head, &end, 10);
        if (end == name + head || v < 0 || v > 100000 || strcmp(end, pct + 2)) return false;
        layer = (int)v;
    }
    int k = pct ? snprintf(out, cap, "%s", to_prefix) : snprintf(out, cap, "%s%s", to_prefix, to);
    if (pct) k += snprintf(out + k, cap - (size_t)k, to, layer);
    return k > 0 && (size_t)k < cap;
}

/* HF name -> GGUF name (to_gguf) or back; false when the name is not one of the tables'. */
static bool map_name(const family_names *f, const char *name, bool to_gguf, char *out, size_t cap) {
    if (to_gguf && !strcmp(name, f->lm_head)) return snprintf(out, cap, "output.weight"), true;
    if (!to_gguf && !strcmp(name, "output.weight")) return snprintf(out, cap, "%s", f->lm_head), true;
    const struct { const name_pair *t; size_t n; const char *hf_prefix; } tables[] = {
        {TEXT_NAMES, sizeof TEXT_NAMES / sizeof TEXT_NAMES[0], f->text},
        {VISION_NAMES, sizeof VISION_NAMES / sizeof VISION_NAMES[0], f->vision},
        {PROJECTOR_NAMES, sizeof PROJECTOR_NAMES / sizeof PROJECTOR_NAMES[0], ""},
    };
    for (size_t k = 0; k < 3; k++)
        for (size_t i = 0; i < tables[k].n; i++) {
            const name_pair *p = &tables[k].t[i];
            if (to_gguf ? match_pair(name, tables[k].hf_prefix, p->hf, "", p->gguf, out, cap)
                        : match_pair(name, "", p->gguf, tables[k].hf_prefix, p->hf, out, cap))
                return true;
        }
    return false;
}

/* Rows of a [heads * head_dim, K] weight between HF's rope layout and llama.cpp's (see the top). */
static void permute_rows(const tensor *t, int heads, void *dst, bool to_gguf) {
    const int64_t rows = t->shape[0], hd = rows / heads, half = hd / 2;
    const size_t rb = tensor_nbytes(t) / (size_t)rows;
    for (int64_t h = 0; h < heads; h++)
        for (int64_t j = 0; j < half; j++)
            for (int64_t tt = 0; tt < 2; tt++) {
                const int64_t hf_row = h * hd + tt * half + j, gguf_row = h * hd + 2 * j + tt;
                const int64_t from = to_gguf ? hf_row : gguf_row, to = to_gguf ? gguf_row : hf_row;
                memcpy((char *)dst + (size_t)to * rb, (const char *)t->data + (size_t)from * rb, rb);
            }
}

/* Heads of a q_proj / k_proj weight (0 for other tensors). */
static int rope_heads(const hf_text_config *c, const char *gguf_name) {
    const size_t n = strlen(gguf_name), ns = strlen(".attn_q.weight");
    if (strncmp(gguf_name, "blk.", 4) || n < ns) return 0;
    if (!strcmp(gguf_name + n - ns, ".attn_q.weight")) return c->num_attention_heads;
    if (!strcmp(gguf_name + n - ns, ".attn_k.weight")) return c->num_key_value_heads;
    return 0;
}

/* ---- writing ---- */

/* The vocabulary as llama.cpp's "gpt2" BPE vocab: tokens in id order, token types (1 normal, 3 control for
 * special added tokens, 4 user-defined), merges. Without tokenizer.json: "<tok_i>" placeholders and no merges,
 * enough for llama.cpp to load the file and run benchmarks. */
static vlmc_status write_vocab(gguf_writer *w, const char *model_dir, int vocab, vlmc_error *err) {
    char **tokens = calloc((size_t)vocab, sizeof *tokens);
    int32_t *types = calloc((size_t)vocab, sizeof *types);
    const char **merges = NULL;
    size_t n_merges = 0;
    cJSON *tj = NULL;
    char *path = path_join(model_dir, "tokenizer.json");
    vlmc_status s = tokens && types && path ? VLMC_OK : vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    if (!s && file_exists(path)) s = json_parse_file(path, (size_t)1 << 28, &tj, err);
    if (!s && tj) {
        const cJSON *model = json_get(tj, "model"), *vocab_obj = json_get(model, "vocab"), *m = json_get(model, "merges");
        const cJSON *e;
        cJSON_ArrayForEach(e, vocab_obj) {
            int id = (int)e->valuedouble;
            if (cJSON_IsNumber(e) && id >= 0 && id < vocab && !tokens[id]) tokens[id] = strdup(e->string), types[id] = 1;
        }
        cJSON_ArrayForEach(e, json_get(tj, "added_tokens")) {
            int id = (int)json_int(e, "id", -1);
            const char *content = json_string(e, "content", NULL);
            if (id < 0 || id >= vocab || !content) continue;
            free(tokens[id]);
            tokens[id] = strdup(content);
            types[id] = json_bool(e, "special", false) ? 3 : 4;
        }
        int nm = cJSON_GetArraySize(m);
        merges = calloc((size_t)(nm > 0 ? nm : 1), sizeof *merges);
        char **owned_merges = calloc((size_t)(nm > 0 ? nm : 1), sizeof *owned_merges);
        cJSON_ArrayForEach(e, m) {
            if (!merges || !owned_merges) break;
            if (cJSON_IsString(e)) merges[n_merges++] = e->valuestring;
            else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2) { /* ["a", "b"] -> "a b" */
                const char *a = cJSON_GetArrayItem(e, 0)->valuestring, *b = cJSON_GetArrayItem(e, 1)->valuestring;
                if (!a || !b) continue;
                size_t len = strlen(a) + strlen(b) + 2;
                char *mm = malloc(len);
                if (!mm) continue;
                snprintf(mm, len, "%s %s", a, b);
                owned_merges[n_merges] = mm;
                merges[n_merges++] = mm;
            }
        }
        if (!s) s = gguf_set_string_array(w, "tokenizer.ggml.merges", merges, n_merges, err);
        for (int i = 0; owned_merges && i < nm; i++) free(owned_merges[i]);
        free(owned_merges);
    } else if (!s) {
        s = gguf_set_string_array(w, "tokenizer.ggml.merges", NULL, 0, err);
    }
    for (int i = 0; !s && i < vocab; i++)
        if (!tokens[i]) {
            char buf[32];
            snprintf(buf, sizeof buf, "<tok_%d>", i);
            tokens[i] = strdup(buf);
            types[i] = tj ? 5 : 1; /* unused ids in a real vocabulary */
        }
    for (int i = 0; !s && i < vocab; i++)
        if (!tokens[i]) s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    if (!s) s = gguf_set_string(w, "tokenizer.ggml.model", "gpt2", err);
    if (!s) s = gguf_set_string_array(w, "tokenizer.ggml.tokens", (const char *const *)tokens, (size_t)vocab, err);
    if (!s) s = gguf_set_array(w, "tokenizer.ggml.token_type", GGUF_INT32, types, (size_t)vocab, err);
    for (int i = 0; tokens && i < vocab; i++) free(tokens[i]);
    free(tokens), free(types), free(merges), free(path);
    cJSON_Delete(tj);
    return s;
}

/* llama.cpp's general.file_type for the type of the weight matrices. */
static uint32_t file_type(dtype t) {
    switch (t) {
    case DT_F16: return 1;
    case DT_Q4_0: return 2;
    case DT_Q8_0: return 7;
    case DT_Q4_K: return 15;
    case DT_Q6_K: return 18;
    case DT_BF16: return 32;
    default: return 0;
    }
}

typedef struct writer_set {
    gguf_writer *text, *mmproj;
    void **bufs;
    size_t n_bufs;
} writer_set;

static vlmc_status text_metadata(gguf_writer *w, const vlm_model *m, dtype wt, vlmc_error *err) {
    const hf_text_config *c = &m->cfg.text;
    vlmc_status s;
    if ((s = gguf_set_string(w, "general.architecture", "llama", err)) ||
        (s = gguf_set_string(w, "general.name", m->cfg.architecture[0] ? m->cfg.architecture : m->cfg.model_type, err)) ||
        (s = gguf_set_u32(w, "general.file_type", file_type(wt), err)) ||
        (s = gguf_set_u32(w, "llama.vocab_size", (uint32_t)c->vocab_size, err)) ||
        (s = gguf_set_u32(w, "llama.context_length", (uint32_t)c->max_position_embeddings, err)) ||
        (s = gguf_set_u32(w, "llama.embedding_length", (uint32_t)c->hidden_size, err)) ||
        (s = gguf_set_u32(w, "llama.block_count", (uint32_t)c->num_hidden_layers, err)) ||
        (s = gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)c->intermediate_size, err)) ||
        (s = gguf_set_u32(w, "llama.rope.dimension_count", (uint32_t)m->lm.rot_dim, err)) ||
        (s = gguf_set_u32(w, "llama.attention.head_count", (uint32_t)c->num_attention_heads, err)) ||
        (s = gguf_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->num_key_value_heads, err)) ||
        (s = gguf_set_u32(w, "llama.attention.key_length", (uint32_t)c->head_dim, err)) ||
        (s = gguf_set_u32(w, "llama.attention.value_length", (uint32_t)c->head_dim, err)) ||
        (s = gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", (float)c->rms_norm_eps, err)) ||
        (s = gguf_set_f32(w, "llama.rope.freq_base", (float)c->rope_theta, err)) ||
        (s = gguf_set_u32(w, "vlmc.image_token_id", (uint32_t)m->image_token_id, err)))
        return s;
    if (c->bos_token_id >= 0 && (s = gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)c->bos_token_id, err))) return s;
    if (c->n_eos > 0 && (s = gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)c->eos_token_ids[0], err))) return s;
    if (c->pad_token_id >= 0 && (s = gguf_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)c->pad_token_id, err)))
        return s;
    return VLMC_OK;
}

static vlmc_status mmproj_metadata(gguf_writer *w, const vlm_model *m, const char *model_dir, int n_layers, dtype wt,
                                   vlmc_error *err) {
    const hf_vision_config *v = &m->cfg.vision;
    const bool idefics3 = !strcmp(m->cfg.model_type, "idefics3");
    float mean[3] = {0.5f, 0.5f, 0.5f}, std[3] = {0.5f, 0.5f, 0.5f};
    char *pp = path_join(model_dir, "preprocessor_config.json");
    cJSON *pj = NULL;
    if (pp && file_exists(pp) && json_parse_file(pp, 1 << 20, &pj, NULL) == VLMC_OK)
        for (int i = 0; i < 3; i++) {
            const cJSON *a = cJSON_GetArrayItem(json_get(pj, "image_mean"), i), *b = cJSON_GetArrayItem(json_get(pj, "image_std"), i);
            if (cJSON_IsNumber(a)) mean[i] = (float)a->valuedouble;
            if (cJSON_IsNumber(b)) std[i] = (float)b->valuedouble;
        }
    cJSON_Delete(pj);
    free(pp);
    const bool gelu = strcmp(v->hidden_act, "quick_gelu") != 0;
    vlmc_status s;
    if ((s = gguf_set_string(w, "general.architecture", "clip", err)) ||
        (s = gguf_set_u32(w, "general.file_type", file_type(wt), err)) ||
        (s = gguf_set_string(w, "clip.projector_type", idefics3 ? "idefics3" : "mlp", err)) ||
        (s = gguf_set_bool(w, "clip.has_vision_encoder", true, err)) ||
        (s = gguf_set_bool(w, "clip.has_text_encoder", false, err)) ||
        (s = gguf_set_bool(w, "clip.has_llava_projector", !idefics3, err)) ||
        (s = gguf_set_bool(w, "clip.use_gelu", gelu, err)) ||
        (s = gguf_set_u32(w, "clip.vision.image_size", (uint32_t)v->image_size, err)) ||
        (s = gguf_set_u32(w, "clip.vision.patch_size", (uint32_t)v->patch_size, err)) ||
        (s = gguf_set_u32(w, "clip.vision.embedding_length", (uint32_t)v->hidden_size, err)) ||
        (s = gguf_set_u32(w, "clip.vision.feed_forward_length", (uint32_t)v->intermediate_size, err)) ||
        (s = gguf_set_u32(w, "clip.vision.projection_dim", (uint32_t)m->cfg.text.hidden_size, err)) ||
        (s = gguf_set_u32(w, "clip.vision.block_count", (uint32_t)n_layers, err)) ||
        (s = gguf_set_u32(w, "clip.vision.attention.head_count", (uint32_t)v->num_attention_heads, err)) ||
        (s = gguf_set_f32(w, "clip.vision.attention.layer_norm_epsilon", (float)v->layer_norm_eps, err)) ||
        (s = gguf_set_array(w, "clip.vision.image_mean", GGUF_FLOAT32, mean, 3, err)) ||
        (s = gguf_set_array(w, "clip.vision.image_std", GGUF_FLOAT32, std, 3, err)))
        return s;
    if (idefics3) return gguf_set_u32(w, "clip.vision.projector.scale_factor", (uint32_t)m->cfg.scale_factor, err);
    return VLMC_OK;
}

vlmc_status vlm_convert_gguf(const char *model_dir, const char *out_dir, vlmc_error *err) {
    vlm_model m;
    vlmc_status s = vlm_load(model_dir, &m, err);
    if (s) return s;
    const bool idefics3 = !strcmp(m.cfg.model_type, "idefics3");
    if (!m.has_vision || (!idefics3 && strcmp(m.cfg.model_type, "llava"))) {
        vlm_free(&m);
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: GGUF conversion covers llava and idefics3, not %s", model_dir,
                         m.cfg.model_type);
    }
    const family_names f = names_of(idefics3);
    /* LLaVA: the tower up to the feature layer (llama.cpp's clip runs every layer of the file) */
    int n_vlayers = m.cfg.vision.num_hidden_layers;
    if (!idefics3) {
        int fl = m.cfg.vision_feature_layers[0];
        if (m.cfg.n_vision_feature_layers != 1 || strcmp(m.cfg.vision_feature_select_strategy, "default")) {
            vlm_free(&m);
            return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: GGUF conversion wants one vision_feature_layer and the "
                             "\"default\" strategy", model_dir);
        }
        n_vlayers = fl < 0 ? n_vlayers + 1 + fl : fl;
    }
    writer_set ws = {0};
    const size_t n = safetensors_count(m.st);
    char *text_path = path_join(out_dir, "model.gguf"), *mm_path = path_join(out_dir, "mmproj.gguf");
    if (!(ws.bufs = calloc(n ? n : 1, sizeof *ws.bufs)) || !text_path || !mm_path)
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    if (!s) s = file_mkdirs(out_dir, err);
    if (!s) s = gguf_writer_new(&ws.text, err);
    if (!s) s = gguf_writer_new(&ws.mmproj, err);
    if (!s) s = text_metadata(ws.text, &m, m.lm.layers[0].wq.type, err);
    if (!s) s = write_vocab(ws.text, model_dir, m.cfg.text.vocab_size, err);
    if (!s) s = mmproj_metadata(ws.mmproj, &m, model_dir, n_vlayers, m.lm.layers[0].wq.type, err);
    for (size_t i = 0; !s && i < n; i++) {
        const st_entry *e = safetensors_at(m.st, i);
        char gname[512];
        if (!map_name(&f, e->name, true, gname, sizeof gname)) continue; /* e.g. rotary caches */
        const bool vision = !strncmp(gname, "v.", 2), text = !vision && strncmp(gname, "mm.", 3);
        int layer = -1;
        if (vision && sscanf(gname, "v.blk.%d.", &layer) == 1 && layer >= n_vlayers) continue;
        if (vision && !idefics3 && !strncmp(gname, "v.post_ln", 9)) continue;
        tensor t = e->t;
        const int heads = text ? rope_heads(&m.cfg.text, gname) : 0;
        if (heads) {
            if (!(ws.bufs[ws.n_bufs] = malloc(tensor_nbytes(&t)))) { s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory"); break; }
            permute_rows(&e->t, heads, ws.bufs[ws.n_bufs], true);
            t.data = ws.bufs[ws.n_bufs++];
        }
        s = gguf_add_tensor(text ? ws.text : ws.mmproj, gname, &t, err);
    }
    if (!s) s = gguf_writer_write(ws.text, text_path, err);
    if (!s) s = gguf_writer_write(ws.mmproj, mm_path, err);
    /* the folder keeps the tokenizer and processor files so that vlmc finds them next to the pair */
    const char *small[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                           "preprocessor_config.json", "chat_template.json", "chat_template.jinja", "processor_config.json"};
    for (size_t i = 0; !s && i < sizeof small / sizeof small[0]; i++) {
        char *src = path_join(model_dir, small[i]), *dst = path_join(out_dir, small[i]), *buf = NULL;
        size_t len = 0;
        if (!src || !dst) s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        else if (file_exists(src) && !(s = file_read_all(src, (size_t)1 << 30, &buf, &len, err)))
            s = file_write_all(dst, buf, len, err);
        free(buf), free(src), free(dst);
    }
    gguf_writer_free(ws.text);
    gguf_writer_free(ws.mmproj);
    for (size_t i = 0; i < ws.n_bufs; i++) free(ws.bufs[i]);
    free(ws.bufs), free(text_path), free(mm_path);
    vlm_free(&m);
    return s;
}

/* ---- reading ---- */

typedef struct rename_ctx {
    family_names f;
} rename_ctx;

static bool rename_from_gguf(const char *name, int file, char *out, size_t cap, void *user) {
    (void)file;
    return map_name(&((rename_ctx *)user)->f, name, false, out, cap);
}

static int64_t need_int(const gguf *g, const char *key, const char *path, vlmc_status *s, vlmc_error *err) {
    int64_t v = gguf_get_int(g, key, -1);
    if (v < 0 && !*s) *s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: metadata key %s is missing", path, key);
    return v;
}

/* config.json's equivalent from the pair's metadata. */
static vlmc_status pair_config(const gguf *tg, const gguf *mg, const char *text_path, const char *mm_path, cJSON **out,
                               bool *idefics3, vlmc_error *err) {
    vlmc_status s = VLMC_OK;
    char *arch = gguf_get_string(tg, "general.architecture"), *proj = gguf_get_string(mg, "clip.projector_type");
    if (!arch || strcmp(arch, "llama"))
        s = vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: general.architecture \"%s\" (vlmc reads \"llama\" text models)",
                      text_path, arch ? arch : "");
    else if (!proj || (strcmp(proj, "mlp") && strcmp(proj, "idefics3")))
        s = vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: clip.projector_type \"%s\" (vlmc reads \"mlp\" and \"idefics3\")",
                      mm_path, proj ? proj : "");
    if (s) {
        free(arch), free(proj);
        return s;
    }
    *idefics3 = !strcmp(proj, "idefics3");
    free(arch), free(proj);
    const gguf_tensor *emb = gguf_find_tensor(tg, "token_embd.weight");
    if (!emb || emb->t.ndim != 2) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: no 2-D token_embd.weight", text_path);
    cJSON *root = cJSON_CreateObject(), *tc = cJSON_CreateObject(), *vc = cJSON_CreateObject();
    const int64_t D = need_int(tg, "llama.embedding_length", text_path, &s, err),
                  H = need_int(tg, "llama.attention.head_count", text_path, &s, err);
    cJSON_AddStringToObject(tc, "model_type", "llama");
    cJSON_AddNumberToObject(tc, "vocab_size", (double)emb->t.shape[0]);
    cJSON_AddNumberToObject(tc, "hidden_size", (double)D);
    cJSON_AddNumberToObject(tc, "intermediate_size", (double)need_int(tg, "llama.feed_forward_length", text_path, &s, err));
    cJSON_AddNumberToObject(tc, "num_hidden_layers", (double)need_int(tg, "llama.block_count", text_path, &s, err));
    cJSON_AddNumberToObject(tc, "num_attention_heads", (double)H);
    cJSON_AddNumberToObject(tc, "num_key_value_heads", (double)gguf_get_int(tg, "llama.attention.head_count_kv", H));
    cJSON_AddNumberToObject(tc, "head_dim", (double)gguf_get_int(tg, "llama.attention.key_length", H > 0 ? D / H : 0));
    cJSON_AddNumberToObject(tc, "max_position_embeddings", (double)gguf_get_int(tg, "llama.context_length", 4096));
    cJSON_AddNumberToObject(tc, "rms_norm_eps", gguf_get_float(tg, "llama.attention.layer_norm_rms_epsilon", 1e-5));
    cJSON_AddNumberToObject(tc, "rope_theta", gguf_get_float(tg, "llama.rope.freq_base", 10000.0));
    cJSON_AddBoolToObject(tc, "tie_word_embeddings", gguf_find_tensor(tg, "output.weight") == NULL);
    const int64_t bos = gguf_get_int(tg, "tokenizer.ggml.bos_token_id", -1), eos = gguf_get_int(tg, "tokenizer.ggml.eos_token_id", -1);
    if (bos >= 0) cJSON_AddNumberToObject(tc, "bos_token_id", (double)bos);
    if (eos >= 0) cJSON_AddNumberToObject(tc, "eos_token_id", (double)eos);
    const bool gelu = gguf_get_bool(mg, "clip.use_gelu", false);
    cJSON_AddStringToObject(vc, "model_type", *idefics3 ? "idefics3_vision" : "clip_vision_model");
    cJSON_AddNumberToObject(vc, "hidden_size", (double)need_int(mg, "clip.vision.embedding_length", mm_path, &s, err));
    cJSON_AddNumberToObject(vc, "intermediate_size", (double)need_int(mg, "clip.vision.feed_forward_length", mm_path, &s, err));
    cJSON_AddNumberToObject(vc, "num_hidden_layers", (double)need_int(mg, "clip.vision.block_count", mm_path, &s, err));
    cJSON_AddNumberToObject(vc, "num_attention_heads", (double)need_int(mg, "clip.vision.attention.head_count", mm_path, &s, err));
    cJSON_AddNumberToObject(vc, "image_size", (double)need_int(mg, "clip.vision.image_size", mm_path, &s, err));
    cJSON_AddNumberToObject(vc, "patch_size", (double)need_int(mg, "clip.vision.patch_size", mm_path, &s, err));
    cJSON_AddNumberToObject(vc, "layer_norm_eps", gguf_get_float(mg, "clip.vision.attention.layer_norm_epsilon", 1e-6));
    cJSON_AddStringToObject(vc, "hidden_act", gelu ? "gelu_pytorch_tanh" : "quick_gelu");
    /* the image token: the text model's "<image>" token, else what vlmc convert recorded */
    int64_t image_token = gguf_get_int(tg, "vlmc.image_token_id", -1);
    const gguf_kv *toks = gguf_find_kv(tg, "tokenizer.ggml.tokens");
    for (uint64_t i = 0; toks && toks->str_items && i < toks->arr_count; i++)
        if (toks->str_items[i].len == 7 && !memcmp(toks->str_items[i].ptr, "<image>", 7)) image_token = (int64_t)i;
    if (image_token < 0 && !s) s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: no <image> token in the vocabulary", text_path);
    if (*idefics3) {
        cJSON_AddStringToObject(root, "model_type", "idefics3");
        cJSON_AddNumberToObject(root, "image_token_id", (double)image_token);
        cJSON_AddNumberToObject(root, "scale_factor", (double)gguf_get_int(mg, "clip.vision.projector.scale_factor", 2));
    } else {
        cJSON_AddStringToObject(root, "model_type", "llava");
        cJSON_AddNumberToObject(root, "image_token_index", (double)image_token);
        cJSON_AddNumberToObject(root, "vision_feature_layer", -1); /* the file holds the layers up to it */
        cJSON_AddStringToObject(root, "vision_feature_select_strategy", "default");
    }
    cJSON_AddItemToObject(root, "text_config", tc);
    cJSON_AddItemToObject(root, "vision_config", vc);
    if (s) {
        cJSON_Delete(root);
        return s;
    }
    *out = root;
    return VLMC_OK;
}

vlmc_status vlm_load_gguf(const char *text_path, const char *mmproj_path, vlm_model *m, vlmc_error *err) {
    memset(m, 0, sizeof *m);
    m->image_token_id = -1;
    gguf *tg = NULL, *mg = NULL;
    cJSON *cfg = NULL;
    bool idefics3 = false;
    vlmc_status s = gguf_open(text_path, &tg, err);
    if (!s) s = gguf_open(mmproj_path, &mg, err);
    if (!s) s = pair_config(tg, mg, text_path, mmproj_path, &cfg, &idefics3, err);
    if (!s) s = hf_config_parse(cfg, text_path, &m->cfg, err);
    rename_ctx rc = {names_of(idefics3)};
    const char *paths[2] = {text_path, mmproj_path};
    if (!s) s = safetensors_open_gguf(paths, 2, rename_from_gguf, &rc, &m->st, err);
    /* q / k rows back to HF's layout */
    for (int l = 0; !s && l < m->cfg.text.num_hidden_layers; l++)
        for (int k = 0; !s && k < 2; k++) {
            char gname[64], hname[512];
            snprintf(gname, sizeof gname, "blk.%d.attn_%c.weight", l, k ? 'k' : 'q');
            if (!map_name(&rc.f, gname, false, hname, sizeof hname)) continue;
            const st_entry *e = safetensors_find(m->st, hname);
            if (!e || e->t.ndim != 2) {
                s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor %s is missing", text_path, gname);
                break;
            }
            const int heads = k ? m->cfg.text.num_key_value_heads : m->cfg.text.num_attention_heads;
            const size_t nb = tensor_nbytes(&e->t);
            if (heads <= 0 || nb == (size_t)-1 || e->t.shape[0] % (2 * heads)) {
                s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %s has %lld rows, not a whole number of heads of %d", text_path,
                              gname, (long long)e->t.shape[0], heads);
                break;
            }
            void *buf = malloc(nb ? nb : 1);
            if (!buf) { s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory"); break; }
            permute_rows(&e->t, heads, buf, false);
            tensor t = e->t;
            s = safetensors_put_owned(m->st, hname, &t, buf, err);
        }
    /* LLaVA files have no post_layernorm (llama.cpp's clip would apply it); the selected layer's states do not
     * pass through it, so an identity stands in for the tower's loader. */
    if (!s && !idefics3) {
        const int64_t Dv = m->cfg.vision.hidden_size;
        for (int k = 0; !s && k < 2; k++) {
            char hname[256];
            snprintf(hname, sizeof hname, "%spost_layernorm.%s", rc.f.vision, k ? "bias" : "weight");
            if (safetensors_find(m->st, hname)) continue;
            float *v = malloc((size_t)Dv * sizeof *v);
            if (!v) { s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory"); break; }
            for (int64_t i = 0; i < Dv; i++) v[i] = k ? 0.0f : 1.0f;
            tensor t = tensor_view(DT_F32, v, 1, &Dv);
            s = safetensors_put_owned(m->st, hname, &t, v, err);
        }
    }
    if (!s) {
        m->fam = vlm_family_find(&m->cfg);
        s = m->fam ? m->fam->load(m, err) : vlmc_fail(err, VLMC_ERR_INTERNAL, "no family for %s", m->cfg.model_type);
    }
    cJSON_Delete(cfg);
    gguf_close(tg);
    gguf_close(mg);
    /* as vlm_load: whatever the family loaded before failing (decoder, tower) is freed with the weights */
    if (s) vlm_free(m);
    return s;
}
