/* moondream2: HfMoondream → MoondreamModel, the original code of vikhyat/moondream (moondream/torch/{moondream,
 * vision,text,image_crops,layers,rope}.py at 84663ac, the code line of the vikhyatk/moondream2 revisions
 * 2025-01-09 .. 2025-04-14), config.json model_type "moondream1" with the "config" dict (hf_config.c: MoondreamConfig
 * defaults for absent keys). Classes and functions matched: prepare_crops, overlap_crop_image (src/vision/
 * overlap_crops.h), vision_encoder, reconstruct_from_crops, vision_projection, text_decoder / _produce_hidden, lm_head.
 *
 * Config keys read: text.{dim, ff_dim, n_layers, vocab_size, max_context, n_heads, n_kv_heads},
 * vision.{enc_dim, enc_patch_size, enc_n_layers, enc_ff_dim, enc_n_heads, proj_inner_dim, proj_out_dim, crop_size,
 * in_channels, max_crops, overlap_margin}, tokenizer.{bos_id, eos_id, templates.query}.
 * Tensors (HfMoondream's state_dict): model.vision.{patch_emb, pos_emb, blocks.<i>.{ln1, attn.qkv, attn.proj, ln2,
 * mlp.fc1, mlp.fc2}, post_ln, proj_mlp.fc1, proj_mlp.fc2}, model.text.{wte, blocks.<i>.{ln, attn.qkv, attn.proj,
 * mlp.fc1, mlp.fc2}, post_ln, lm_head}; model.region.* (the detect / point head) is not used by queries.
 *
 * Forward of a query (Dv = enc_dim, S = crop_size / patch = 27 patches per crop side, D = text dim):
 *   prepare_crops    the global crop + tiles_h × tiles_w overlapping crops of a LANCZOS-resized copy, pixels in
 *                    float16 arithmetic: [n, 3, crop, crop], n = 1 + tiles_h · tiles_w
 *   vision_encoder   per crop: patch_emb(P×P patches, (c, y, x) order) + pos_emb → enc_n_layers pre-LN blocks
 *                    (fused qkv, softmax attention, proj; fc1, gelu tanh, fc2) → post_ln: [n, S², Dv] (vit.c, SigLIP-like)
 *   reconstruct      the local crops' [S, S, Dv] grids stitched, each keeping its margin m = overlap_margin only on
 *                    the image's outer edges: [(S - 2m)·tiles_h + 2m, (S - 2m)·tiles_w + 2m, Dv]
 *   pooling          adaptive_avg_pool2d to [enc_n_layers, enc_n_layers, Dv] (= S × S)
 *   vision_projection concat [global features, pooled] [S², 2·Dv] → proj_mlp (fc1, gelu tanh, fc2) → [S², D]
 *   text             [bos, S² image rows, query tokens]: the first 1 + S² positions attend to each other both ways,
 *                    the rest causally; each block x + attn(ln(x)) + mlp(ln(x)) (parallel, one LayerNorm), qkv one
 *                    Linear with bias split [n_heads, n_kv, n_kv] × 64, rotary on the first 32 of 64 head dims; post_ln,
 *                    lm_head with bias. rope.py writes the rotated pairs interleaved, q and k alike, which changes no
 *                    score: llama.c's rotate-half rotation of the same pairs is used (its Phi-style options).
 * Prompt (MoondreamModel.query): [bos] + image + templates.query.prefix + tokens(" " + question) + .suffix, which for
 * the published tokenizer reads "\n\nQuestion: <question>\n\nAnswer:". Image slots in input_ids_full are -1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "formats/json.h"
#include "kernels/matmul.h"
#include "models/rope.h"
#include "models/vlm.h"
#include "vision/overlap_crops.h"

/* rope.py's apply_rotary_emb hard-codes rot_dim = 32 for freqs of head_dim / 2 dimensions */
enum { MD_ROT_DIM = 32 };

/* ---- loading ------------------------------------------------------------------------------------------------ */

static vlmc_status get_tensor(const safetensors *st, const char *name, int ndim, int64_t d0, int64_t d1, tensor *out,
                              vlmc_error *err) {
    int64_t shape[2] = {d0, d1};
    vlmc_status s = safetensors_get(st, name, ndim, shape, out, err);
    if (s) return s;
    if (!matmul_dtype_ok(out->type))
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s; moondream2 reads F32, F16 or BF16",
                         safetensors_file_path(st, 0), name, dtype_name(out->type));
    return VLMC_OK;
}

/* The text model into llama.c's decoder with its Phi-style options. */
static vlmc_status load_text(vlm_model *m, vlmc_error *err) {
    const hf_text_config *c = &m->cfg.text;
    llama_model *lm = &m->lm;
    const safetensors *st = m->st;
    vlmc_status s = llama_model_dims(lm, c, err); /* act: gelu_pytorch_tanh (hf_config.c) */
    if (s) return s;
    lm->layer_norm = lm->parallel_block = true;
    lm->eps = (float)c->layer_norm_eps;
    if (lm->rot_dim != MD_ROT_DIM)
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED,
                         "config.json: text head dim %d (dim / n_heads); moondream2's rotary code takes 64 (it rotates "
                         "a hard-coded 32 = head_dim / 2 dimensions)", lm->head_dim);
    const int64_t D = lm->dim, QD = (int64_t)lm->n_heads * lm->head_dim, KD = (int64_t)lm->n_kv_heads * lm->head_dim,
                  I = lm->ffn_dim, V = lm->vocab;
    if ((s = get_tensor(st, "model.text.wte", 2, V, D, &lm->tok_emb, err)) ||
        (s = get_tensor(st, "model.text.post_ln.weight", 1, D, 0, &lm->final_norm, err)) ||
        (s = get_tensor(st, "model.text.post_ln.bias", 1, D, 0, &lm->final_norm_b, err)) ||
        (s = get_tensor(st, "model.text.lm_head.weight", 2, V, D, &lm->lm_head, err)) ||
        (s = get_tensor(st, "model.text.lm_head.bias", 1, V, 0, &lm->lm_head_b, err)))
        return s;
    for (int l = 0; l < lm->n_layers; l++) {
        llama_layer *L = &lm->layers[l];
        char n[10][96];
        static const char *const sub[10] = {"ln.weight", "ln.bias", "attn.qkv.weight", "attn.qkv.bias",
                                            "attn.proj.weight", "attn.proj.bias", "mlp.fc1.weight", "mlp.fc1.bias",
                                            "mlp.fc2.weight", "mlp.fc2.bias"};
        for (int i = 0; i < 10; i++) snprintf(n[i], sizeof n[i], "model.text.blocks.%d.%s", l, sub[i]);
        tensor qkv_w, qkv_b;
        if ((s = get_tensor(st, n[0], 1, D, 0, &L->attn_norm, err)) ||
            (s = get_tensor(st, n[1], 1, D, 0, &L->attn_norm_b, err)) ||
            (s = get_tensor(st, n[2], 2, QD + 2 * KD, D, &qkv_w, err)) ||
            (s = get_tensor(st, n[3], 1, QD + 2 * KD, 0, &qkv_b, err)) ||
            (s = get_tensor(st, n[4], 2, D, QD, &L->wo, err)) || (s = get_tensor(st, n[5], 1, D, 0, &L->bo, err)) ||
            (s = get_tensor(st, n[6], 2, I, D, &L->w_up, err)) || (s = get_tensor(st, n[7], 1, I, 0, &L->b_up, err)) ||
            (s = get_tensor(st, n[8], 2, D, I, &L->w_down, err)) || (s = get_tensor(st, n[9], 1, D, 0, &L->b_down, err)))
            return s;
        /* the fused qkv as stored: rows [q | k | v] */
        L->wq = vit_row_slice(&qkv_w, 0, QD);
        L->wk = vit_row_slice(&qkv_w, QD, KD);
        L->wv = vit_row_slice(&qkv_w, QD + KD, KD);
        L->bq = vit_row_slice(&qkv_b, 0, QD);
        L->bk = vit_row_slice(&qkv_b, QD, KD);
        L->bv = vit_row_slice(&qkv_b, QD + KD, KD);
    }
    /* MoondreamModel.attn_mask: the bos + image prefix is bidirectional */
    const int side = m->cfg.vision.image_size / m->cfg.vision.patch_size;
    lm->prefix_attn = 1 + side * side;
    return VLMC_OK;
}

/* The vision encoder into vit.c's SigLIP-like tower. */
static vlmc_status load_vision(vlm_model *m, vlmc_error *err) {
    const hf_vision_config *c = &m->cfg.vision;
    vit_model *v = &m->vit;
    const safetensors *st = m->st;
    vlmc_status s = vit_init(st, c, VIT_SIGLIP, v, err); /* act: gelu_pytorch_tanh, eps 1e-5 (hf_config.c) */
    if (s) return s;
    if (c->image_size % c->patch_size)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: config.vision: crop_size %d is not a multiple of enc_patch_size %d",
                         v->file, c->image_size, c->patch_size);
    /* vision_projection pools the stitched grid to enc_n_layers × enc_n_layers and concatenates it with the global
     * crop's S × S features */
    if (v->side != v->L)
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: config.vision: enc_n_layers %d differs from crop_size / "
                         "enc_patch_size = %d (moondream2 pools the local features to enc_n_layers²)", v->file, v->L,
                         v->side);
    const int64_t D = v->D, F = v->F, CPP = (int64_t)v->C * v->P * v->P;
    if ((s = vit_load_matrix(v, st, "model.vision.patch_emb.weight", 2, (int64_t[]){D, CPP}, &v->patch_w, err)) ||
        (s = vit_load_f32(v, st, "model.vision.patch_emb.bias", 1, (int64_t[]){D}, &v->patch_b, err)) ||
        (s = vit_load_f32(v, st, "model.vision.pos_emb", 3, (int64_t[]){1, v->n_pos, D}, &v->pos_emb, err)) ||
        (s = vit_load_f32(v, st, "model.vision.post_ln.weight", 1, (int64_t[]){D}, &v->post_ln_w, err)) ||
        (s = vit_load_f32(v, st, "model.vision.post_ln.bias", 1, (int64_t[]){D}, &v->post_ln_b, err)))
        return s;
    if (!(v->layers = calloc((size_t)v->L, sizeof *v->layers)))
        return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for %d vision layers", v->L);
    for (int l = 0; l < v->L; l++) {
        vit_layer *ly = &v->layers[l];
        char n[12][96];
        static const char *const sub[12] = {"ln1.weight", "ln1.bias", "attn.qkv.weight", "attn.qkv.bias",
                                            "attn.proj.weight", "attn.proj.bias", "ln2.weight", "ln2.bias",
                                            "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"};
        for (int i = 0; i < 12; i++) snprintf(n[i], sizeof n[i], "model.vision.blocks.%d.%s", l, sub[i]);
        tensor qkv;
        const float *qkv_b;
        if ((s = vit_load_f32(v, st, n[0], 1, (int64_t[]){D}, &ly->ln1_w, err)) ||
            (s = vit_load_f32(v, st, n[1], 1, (int64_t[]){D}, &ly->ln1_b, err)) ||
            (s = vit_load_matrix(v, st, n[2], 2, (int64_t[]){3 * D, D}, &qkv, err)) ||
            (s = vit_load_f32(v, st, n[3], 1, (int64_t[]){3 * D}, &qkv_b, err)) ||
            (s = vit_load_matrix(v, st, n[4], 2, (int64_t[]){D, D}, &ly->o_w, err)) ||
            (s = vit_load_f32(v, st, n[5], 1, (int64_t[]){D}, &ly->o_b, err)) ||
            (s = vit_load_f32(v, st, n[6], 1, (int64_t[]){D}, &ly->ln2_w, err)) ||
            (s = vit_load_f32(v, st, n[7], 1, (int64_t[]){D}, &ly->ln2_b, err)) ||
            (s = vit_load_matrix(v, st, n[8], 2, (int64_t[]){F, D}, &ly->fc1_w, err)) ||
            (s = vit_load_f32(v, st, n[9], 1, (int64_t[]){F}, &ly->fc1_b, err)) ||
            (s = vit_load_matrix(v, st, n[10], 2, (int64_t[]){D, F}, &ly->fc2_w, err)) ||
            (s = vit_load_f32(v, st, n[11], 1, (int64_t[]){D}, &ly->fc2_b, err)))
            return s;
        /* layers.attn: q, k, v = linear(x, qkv).chunk(3) */
        vit_layer_split_qkv(ly, &qkv, qkv_b, D);
    }
    return VLMC_OK;
}

static vlmc_status md_load(vlm_model *m, vlmc_error *err) {
    const char *file = safetensors_file_path(m->st, 0);
    if (!m->cfg.moondream_layout)
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED,
                         "%s: model_type moondream1 without HfMoondream's \"config\" dict (the 2024 moondream2 layout, "
                         "architectures \"Moondream\") is not supported", file);
    const hf_moondream_config *md = &m->cfg.moondream;
    if (md->proj_out_dim != m->cfg.text.hidden_size)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: config.vision.proj_out_dim %d differs from config.text.dim %d", file,
                         md->proj_out_dim, m->cfg.text.hidden_size);
    vlmc_status s;
    if ((s = load_text(m, err)) || (s = load_vision(m, err)) ||
        (s = projector_load_mlp(m->st, "model.vision.proj_mlp.fc1.weight", "model.vision.proj_mlp.fc1.bias",
                                "model.vision.proj_mlp.fc2.weight", "model.vision.proj_mlp.fc2.bias", 2 * m->vit.D,
                                md->proj_inner_dim, md->proj_out_dim, ACT_GELU_TANH, &m->proj, err))) {
        llama_model_free(&m->lm);
        vit_free(&m->vit);
        return s;
    }
    m->has_vision = true;
    m->image_token_id = -1; /* input_ids_full's image slots */
    return VLMC_OK;
}

/* ---- image ---------------------------------------------------------------------------------------------------- */

static void tiling_of(const vlm_model *m, int height, int width, int *tiles_h, int *tiles_w) {
    const int P = m->vit.P, margin = m->cfg.moondream.overlap_margin * P;
    const int window = (m->vit.side - 2 * m->cfg.moondream.overlap_margin) * P;
    select_tiling(height - 2 * margin, width - 2 * margin, window, m->cfg.moondream.max_crops, tiles_h, tiles_w);
}

static vlmc_status md_preprocess(const vlm_model *m, const uint8_t *rgb, int height, int width, vlm_prepared *out,
                                    vlm_dump_out *extras, vlmc_error *err) {
    memset(out, 0, sizeof *out);
    overlap_crops c;
    vlmc_status s = overlap_crop_image(rgb, height, width, m->cfg.moondream.overlap_margin, m->cfg.moondream.max_crops,
                                       m->vit.image_size, m->vit.P, &c, err);
    if (s) return s;
    const int64_t S = c.size;
    float lut[256];
    moondream_pixel_lut(lut);
    if (!(out->pixels = malloc((size_t)c.n_crops * 3 * S * S * sizeof(float)))) {
        overlap_crops_free(&c);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "moondream2: out of memory for %d crops", c.n_crops);
    }
    overlap_crops_to_pixels(&c, lut, out->pixels);
    out->n_tiles = c.n_crops;
    out->height = out->width = c.size;
    out->image_size[0] = height;
    out->image_size[1] = width;
    const int32_t tiling[2] = {c.tiles_h, c.tiles_w};
    if ((s = vlm_dump_add_copy(extras, "crops_u8", ARRAY_U8, 4, (int64_t[]){c.n_crops, S, S, 3}, c.crops,
                            "overlap_crop_image crops [n_crops, S, S, 3]; [0] = global resize, [1..] = tiles", err)) ||
        (s = vlm_dump_add_copy(extras, "tiling", ARRAY_I32, 1, (int64_t[]){2}, tiling, "(tiles_h, tiles_w)", err)) ||
        (s = vlm_dump_add_copy(extras, "pixel_values_crop0", ARRAY_F32, 4, (int64_t[]){1, 3, S, S}, out->pixels,
                            "prepare_crops output for the global crop", err)))
        vlm_prepared_free(out);
    overlap_crops_free(&c);
    return s;
}

/* reconstruct_from_crops(patch_size=1): local [th·tw, S, S, Dv] → out [(S - 2m)·th + 2m, (S - 2m)·tw + 2m, Dv]; each
 * crop keeps its margin only where it touches the image's border. */
static void reconstruct_from_crops(const float *local, int th, int tw, int S, int m, int Dv, float *out) {
    const int step = S - 2 * m, W = step * tw + 2 * m;
    for (int i = 0; i < th * tw; i++) {
        const int ty = i / tw, tx = i % tw;
        const int x0 = tx == 0 ? 0 : m, x1 = tx == tw - 1 ? S : S - m;
        const int y0 = ty == 0 ? 0 : m, y1 = ty == th - 1 ? S : S - m;
        for (int y = y0; y < y1; y++)
            memcpy(out + ((size_t)(ty * step + y) * W + tx * step + x0) * Dv, local + (((size_t)i * S + y) * S + x0) * Dv,
                   (size_t)(x1 - x0) * Dv * sizeof(float));
    }
}

/* F.adaptive_avg_pool2d on [H, W, C] → [oh, ow, C]: cell (i, j) averages rows floor(i·H/oh) .. ceil((i+1)·H/oh) - 1
 * and the same for columns, summed in order, then / rows / columns as torch's CPU kernel does. */
static void adaptive_avg_pool(const float *in, int H, int W, int C, int oh, int ow, float *out) {
    for (int i = 0; i < oh; i++) {
        const int y0 = i * H / oh, y1 = ((i + 1) * H + oh - 1) / oh;
        for (int j = 0; j < ow; j++) {
            const int x0 = j * W / ow, x1 = ((j + 1) * W + ow - 1) / ow;
            float *o = out + ((size_t)i * ow + j) * C;
            for (int c = 0; c < C; c++) {
                float sum = 0.0f;
                for (int y = y0; y < y1; y++)
                    for (int x = x0; x < x1; x++) sum += in[((size_t)y * W + x) * C + c];
                o[c] = sum / (float)(y1 - y0) / (float)(x1 - x0);
            }
        }
    }
}

static vlmc_status md_features_len(const vlm_model *m, const vlm_images *im, size_t *n, vlmc_error *err) {
    (void)err;
    *n = (size_t)im->n_images * m->vit.side * m->vit.side;
    return VLMC_OK;
}

/* One image: its crops [n, C, crop, crop] → feat [S², D] (+ the dump's intermediates into extras). */
static vlmc_status encode_image(const vlm_model *m, const float *pixels, int n, int height, int width, float *feat,
                                vlm_dump_out *extras, vlmc_error *err) {
    const int S = m->vit.side, T = S * S, Dv = m->vit.D, Lv = m->vit.L, margin = m->cfg.moondream.overlap_margin;
    int th, tw;
    tiling_of(m, height, width, &th, &tw);
    if (n != 1 + th * tw)
        return vlmc_fail(err, VLMC_ERR_ARG, "moondream2: a %d×%d image has 1 + %d×%d crops, got %d", height, width, th, tw,
                         n);
    const int RH = (S - 2 * margin) * th + 2 * margin, RW = (S - 2 * margin) * tw + 2 * margin;
    float *enc = malloc((size_t)n * T * Dv * sizeof(float));              /* post_ln output [n, T, Dv] */
    float *hs = extras ? malloc((size_t)(Lv + 1) * n * T * Dv * sizeof(float)) : NULL; /* [Lv+1, n, T, Dv] */
    float *recon = malloc((size_t)RH * RW * Dv * sizeof(float));
    float *cat = malloc((size_t)T * 2 * Dv * sizeof(float));              /* [T, 2·Dv] */
    float *pooled = malloc((size_t)T * Dv * sizeof(float));
    vlmc_status s = VLMC_OK;
    if (!enc || (extras && !hs) || !recon || !cat || !pooled) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "moondream2: out of memory for %d crops", n);
        goto done;
    }
    /* vision_encoder on every crop */
    vit_outputs o = {.hidden_states = hs, .last_hidden_state = enc};
    if ((s = vit_encode(&m->vit, pixels, n, m->vit.image_size, m->vit.image_size, NULL, &o, err))) goto done;
    /* stitch the local crops (1..n-1), pool back to S × S */
    reconstruct_from_crops(enc + (size_t)T * Dv, th, tw, S, margin, Dv, recon);
    adaptive_avg_pool(recon, RH, RW, Dv, S, S, pooled);
    /* torch.cat([global_features, reconstructed], dim=-1) → proj_mlp */
    for (int t = 0; t < T; t++) {
        memcpy(cat + (size_t)t * 2 * Dv, enc + (size_t)t * Dv, (size_t)Dv * sizeof(float));
        memcpy(cat + (size_t)t * 2 * Dv + Dv, pooled + (size_t)t * Dv, (size_t)Dv * sizeof(float));
    }
    if ((s = projector_forward(&m->proj, cat, 1, T, 2 * Dv, feat, err))) goto done;
    if (extras) {
        const int64_t D = m->lm.dim;
        /* the global crop's residual stream after each block: hs[1..Lv][crop 0] */
        float *blocks = malloc((size_t)Lv * T * Dv * sizeof(float));
        if (!blocks) { s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory"); goto done; }
        for (int l = 0; l < Lv; l++)
            memcpy(blocks + (size_t)l * T * Dv, hs + (size_t)(l + 1) * n * T * Dv, (size_t)T * Dv * sizeof(float));
        s = vlm_dump_add_copy(extras, "vision_embeddings", ARRAY_F32, 3, (int64_t[]){n, T, Dv}, hs,
                           "patch_emb + pos_emb per crop [n_crops, S², enc_dim]", err);
        if (!s) s = vlm_dump_add_copy(extras, "vision_block_outputs_crop0", ARRAY_F32, 3, (int64_t[]){Lv, T, Dv}, blocks,
                                   "residual stream after each block, global crop", err);
        free(blocks);
        if (s || (s = vlm_dump_add_copy(extras, "vision_encoder_output", ARRAY_F32, 3, (int64_t[]){n, T, Dv}, enc,
                                     "post_ln output per crop", err)) ||
            (s = vlm_dump_add_copy(extras, "reconstructed_local", ARRAY_F32, 3, (int64_t[]){RH, RW, Dv}, recon,
                                "reconstruct_from_crops of the local crops' features", err)) ||
            (s = vlm_dump_add_copy(extras, "pooled_local", ARRAY_F32, 3, (int64_t[]){S, S, Dv}, pooled,
                                "adaptive_avg_pool2d(reconstructed)", err)) ||
            (s = vlm_dump_add_copy(extras, "projector_input", ARRAY_F32, 2, (int64_t[]){T, 2 * Dv}, cat,
                                "concat(global, pooled local)", err)) ||
            (s = vlm_dump_add_copy(extras, "image_embeddings", ARRAY_F32, 2, (int64_t[]){T, D}, feat,
                                "vision_projection output (proj_mlp)", err)))
            goto done;
    }
done:
    free(enc);
    free(hs);
    free(recon);
    free(cat);
    free(pooled);
    return s;
}

static vlmc_status md_encode(const vlm_model *m, const vlm_images *im, vlm_vision_out *out, vlmc_error *err) {
    const int T = m->vit.side * m->vit.side;
    const size_t tile = (size_t)m->vit.C * im->height * im->width;
    if (!im->image_sizes)
        return vlmc_fail(err, VLMC_ERR_ARG, "moondream2: the images' sizes are needed (the crop tiling follows them)");
    if (im->height != m->vit.image_size || im->width != m->vit.image_size)
        return vlmc_fail(err, VLMC_ERR_ARG, "moondream2: crops are %d×%d, the model takes %d×%d", im->height, im->width,
                         m->vit.image_size, m->vit.image_size);
    int first = 0;
    for (int i = 0; i < im->n_images; i++) {
        if (im->tiles[i] < 1 || first + im->tiles[i] > im->n_tiles)
            return vlmc_fail(err, VLMC_ERR_ARG, "moondream2: image %d has %d crops of %d in all", i, im->tiles[i],
                             im->n_tiles);
        /* the dump's intermediates are those of the first image */
        vlmc_status s = encode_image(m, im->pixels + (size_t)first * tile, im->tiles[i], im->image_sizes[2 * i],
                                     im->image_sizes[2 * i + 1], out->features + (size_t)i * T * m->lm.dim,
                                     i == 0 ? out->own_out : NULL, err);
        if (s) return s;
        first += im->tiles[i];
    }
    out->vit_tokens = out->proj_tokens = T;
    out->n_features = (size_t)im->n_images * T;
    return VLMC_OK;
}

static vlmc_status md_image_prompt(const vlm_model *m, const vlm_image_info *info, strbuf *out, vlmc_error *err) {
    (void)m;
    (void)info;
    (void)out;
    return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "moondream2 has no chat template: its prompt is built from ids");
}

/* ---- prompt ----------------------------------------------------------------------------------------------------- */

/* Appends n ids to the growing *ids (capacity *cap). */
static vlmc_status push_ids(int32_t **ids, size_t *n, size_t *cap, const int32_t *add, size_t k, vlmc_error *err) {
    if (*n + k > *cap) {
        size_t c = (*n + k) * 2;
        int32_t *p = realloc(*ids, c * sizeof *p);
        if (!p) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for the prompt");
        *ids = p;
        *cap = c;
    }
    memcpy(*ids + *n, add, k * sizeof *add);
    *n += k;
    return VLMC_OK;
}

/* The text of a message: its "text" parts joined (a plain string content too). */
static const char *message_text(const cJSON *msg, strbuf *b) {
    const cJSON *content = json_get(msg, "content"), *part;
    if (cJSON_IsString(content)) return content->valuestring;
    cJSON_ArrayForEach(part, content) {
        const char *t = json_string(part, "text", NULL);
        if (t && !strcmp(json_string(part, "type", ""), "text")) strbuf_puts(b, t);
    }
    return b->data ? b->data : "";
}

/* MoondreamModel.query's prompt, turn after turn: [bos] + image slots, then per question templates.query.prefix +
 * tokens(" " + question) + templates.query.suffix, per answer its tokens. The original answers one question about one
 * image; later turns continue the same sequence. */
static vlmc_status md_conversation_ids(const vlm_model *m, const cJSON *messages, int n_images, vlm_tokenize_fn tokenize,
                                       void *user, int32_t **out, size_t *n_out, vlmc_error *err) {
    const hf_moondream_config *md = &m->cfg.moondream;
    *out = NULL;
    *n_out = 0;
    if (md->n_query_prefix < 0 || md->n_query_suffix < 0)
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "config.json: tokenizer.templates.query is null: this moondream "
                         "model takes no questions");
    if (n_images != 1)
        return vlmc_fail(err, VLMC_ERR_ARG, "moondream2 answers questions about one image; the conversation has %d",
                         n_images);
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    const int T = m->vit.side * m->vit.side;
    const int32_t bos = m->cfg.text.bos_token_id, slot = m->image_token_id;
    vlmc_status s = push_ids(&ids, &n, &cap, &bos, 1, err);
    for (int i = 0; !s && i < T; i++) s = push_ids(&ids, &n, &cap, &slot, 1, err);
    const cJSON *msg;
    int turn = 0;
    cJSON_ArrayForEach(msg, messages) {
        if (s) break;
        const char *role = json_string(msg, "role", "");
        const cJSON *part, *content = json_get(msg, "content");
        cJSON_ArrayForEach(part, content) {
            if (turn > 0 && !strcmp(json_string(part, "type", ""), "image")) {
                s = vlmc_fail(err, VLMC_ERR_ARG, "moondream2: the image must come with the first question");
                break;
            }
        }
        if (s) break;
        strbuf text = {0}, q = {0};
        const char *t = message_text(msg, &text);
        int32_t *tok = NULL;
        size_t nt = 0;
        if (!strcmp(role, "user")) {
            strbuf_puts(&q, " "); /* query(): tokenizer.encode(" " + question) */
            strbuf_puts(&q, t);
            if (q.failed) s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
            if (!s) s = push_ids(&ids, &n, &cap, (const int32_t *)md->query_prefix, (size_t)md->n_query_prefix, err);
            if (!s) s = tokenize(user, q.data, &tok, &nt, err);
            if (!s) s = push_ids(&ids, &n, &cap, tok, nt, err);
            if (!s) s = push_ids(&ids, &n, &cap, (const int32_t *)md->query_suffix, (size_t)md->n_query_suffix, err);
            turn++;
        } else if (!strcmp(role, "assistant")) {
            s = tokenize(user, t, &tok, &nt, err);
            if (!s) s = push_ids(&ids, &n, &cap, tok, nt, err);
        } else {
            s = vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "moondream2 takes questions and answers, not \"%s\" messages", role);
        }
        free(tok);
        strbuf_free(&text);
        strbuf_free(&q);
    }
    if (s) {
        free(ids);
        return s;
    }
    *out = ids;
    *n_out = n;
    return VLMC_OK;
}

static const char *const md_types[] = {"moondream1", NULL};

const vlm_family vlm_family_moondream2 = {
    .model_types = md_types,
    .hf_class = "HfMoondream",
    .legacy_unmask_padding = false,
    .load = md_load,
    .features_len = md_features_len,
    .encode = md_encode,
    .image_prompt = md_image_prompt,
    .preprocess = md_preprocess,
    .own_dump_names = true,
    .embeds_name = "merged_embeddings",
    .conversation_ids = md_conversation_ids,
};
