/* vlmc_dump: the `vlmc dump` seam of ../shared/CHECKS.md. Runs a model (any family of the registry) on the
 * arrays of a manifest folder and writes its outputs under the fixtures' names and shapes (src/formats/arrays.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlmc.h"
#include "core/error.h"
#include "core/file.h"
#include "formats/arrays.h"
#include "formats/json.h"
#include "models/vlm.h"
#include "vision/processors.h"

/* Inputs of the seam that no family here uses. */
static const char *const other_inputs[] = {"image_grid_thw", "images_seq_mask", "images_emb_mask", "input_ids_full",
                                           "image_raw",      NULL};

typedef struct dump_in {
    named_array *ids, *mask, *pos, *pixels, *sizes, *pmask, *labels, *grid;
    named_array *img_pos;             /* kosmos-2: image_embeds_position_mask */
    named_array *patches, *patch_idx; /* fuyu: image_patches [1, n, P·P·C], image_patches_indices [B, T] */
    named_array *token_types;         /* paligemma: token_type_ids [B, T] (0 = image + prefix, 1 = suffix) */
    named_array *seq_mask, *emb_mask; /* DeepSeek-VL's original inputs (uint8) */
    named_array *image_raw;           /* [H, W, 3] uint8: DeepSeek-VL, families with their own image processing */
} dump_in;

/* Families whose loss the dump computes from the logits here (their decoders have no training graph yet). */
static bool loss_from_logits(const char *mt) { return !strcmp(mt, "paligemma") || !strcmp(mt, "fuyu"); }

static array_dtype input_dtype(const char *n) {
    if (!strcmp(n, "pixel_values") || !strcmp(n, "image_patches")) return ARRAY_F32;
    if (!strcmp(n, "images_seq_mask") || !strcmp(n, "images_emb_mask") || !strcmp(n, "image_raw")) return ARRAY_U8;
    return ARRAY_I32;
}

static vlmc_status check_inputs(const array_set *set, const char *dir, const vlm_model *m, dump_in *in,
                                vlmc_error *err) {
    memset(in, 0, sizeof *in);
    const char *mt = m->cfg.model_type;
    for (int i = 0; i < set->count; i++) {
        named_array *a = &set->arrays[i];
        const char *n = a->name;
        const bool own = m->fam->preprocess != NULL; /* moondream2: input_ids_full and image_raw */
        if (!strcmp(n, "input_ids") || (own && !strcmp(n, "input_ids_full"))) in->ids = a;
        else if (!strcmp(n, "image_raw") && (own || m->fam->original_inputs)) in->image_raw = a;
        else if (!strcmp(n, "attention_mask")) in->mask = a;
        else if (!strcmp(n, "position_ids")) in->pos = a;
        else if (!strcmp(n, "pixel_values") && m->has_vision && strcmp(mt, "fuyu")) in->pixels = a;
        else if (!strcmp(n, "image_sizes") && !strcmp(mt, "llava_next")) in->sizes = a;
        else if (!strcmp(n, "pixel_attention_mask") && !strcmp(mt, "idefics3")) in->pmask = a;
        else if (!strcmp(n, "image_grid_thw") && m->fam->rope_index) in->grid = a;
        else if (!strcmp(n, "image_patches") && !strcmp(mt, "fuyu")) in->patches = a;
        else if (!strcmp(n, "image_patches_indices") && !strcmp(mt, "fuyu")) in->patch_idx = a;
        else if (!strcmp(n, "token_type_ids") && !strcmp(mt, "paligemma")) in->token_types = a;
        else if (!strcmp(n, "labels")) in->labels = a;
        else if (!strcmp(n, "image_embeds_position_mask") && !strcmp(mt, "kosmos-2")) in->img_pos = a;
        else if (!strcmp(n, "images_seq_mask") && m->fam->original_inputs) in->seq_mask = a;
        else if (!strcmp(n, "images_emb_mask") && m->fam->original_inputs) in->emb_mask = a;
        else {
            bool known = !strcmp(n, "pixel_values") || !strcmp(n, "image_sizes") || !strcmp(n, "pixel_attention_mask") ||
                         !strcmp(n, "image_embeds_position_mask") || !strcmp(n, "image_patches") ||
                         !strcmp(n, "image_patches_indices") || !strcmp(n, "token_type_ids");
            for (const char *const *o = other_inputs; *o; o++) known |= !strcmp(*o, n);
            if (known)
                return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: input %s is not used by model_type \"%s\"", dir, n, mt);
            return vlmc_fail(err, VLMC_ERR_ARG, "%s: array %s is not an input of vlmc dump", dir, n);
        }
        if (a->dtype != input_dtype(n))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %s has dtype %s, expected %s", dir, n, array_dtype_name(a->dtype),
                             array_dtype_name(input_dtype(n)));
    }
    if (!in->ids) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: no input_ids", dir);
    if (m->fam->preprocess && in->pixels)
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: model_type \"%s\" makes its crops itself: give image_raw, not "
                         "pixel_values", dir, mt);
    if (in->ids->ndim != 2 || in->ids->shape[0] < 1 || in->ids->shape[1] < 1 || in->ids->shape[0] > 4096 ||
        in->ids->shape[1] > 1 << 20)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: input_ids must be [B, T]", dir);
    /* M-RoPE (qwen2_vl) also takes position_ids [3, B, T], as get_rope_index makes them */
    const bool pos3 = in->pos && m->fam->rope_index && in->pos->ndim == 3 && in->pos->shape[0] == 3 &&
                      in->pos->shape[1] == in->ids->shape[0] && in->pos->shape[2] == in->ids->shape[1];
    named_array *same[7] = {in->mask,    pos3 ? NULL : in->pos, in->labels,  in->img_pos,
                            in->patch_idx, in->token_types,     in->seq_mask};
    for (int i = 0; i < 7; i++)
        if (same[i] && (same[i]->ndim != 2 || same[i]->shape[0] != in->ids->shape[0] ||
                        same[i]->shape[1] != in->ids->shape[1]))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %s must have the shape of input_ids", dir, same[i]->name);
    if (!strcmp(mt, "llava_next") && in->pixels && !in->sizes)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: llava_next needs image_sizes with pixel_values", dir);
    if (!strcmp(mt, "kosmos-2") && in->labels)
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED,
                         "%s: labels: the loss goes through the training graph, which does not cover kosmos-2", dir);
    if (!strcmp(mt, "kosmos-2") && in->pixels && !in->img_pos)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: kosmos-2 needs image_embeds_position_mask with pixel_values", dir);
    if ((in->sizes || in->pmask || in->grid || in->img_pos) && !in->pixels)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: image_sizes / pixel_attention_mask / image_grid_thw / "
                         "image_embeds_position_mask without pixel_values", dir);
    if (m->fam->rope_index && in->pixels && !in->grid)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %s needs image_grid_thw with pixel_values", dir, mt);
    if (in->labels && m->fam->rope_index)
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: labels (the loss) are not supported for %s yet", dir, mt);
    if (!in->patches != !in->patch_idx)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: fuyu needs image_patches and image_patches_indices together", dir);
    if (in->patches) {
        const int64_t ppc = m->proj.in_dim;
        if (in->patches->ndim != 3 || in->patches->shape[0] != in->ids->shape[0] || in->patches->shape[1] < 1 ||
            in->patches->shape[1] > 1 << 20 || in->patches->shape[2] != ppc)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: image_patches must be [B, patches, %lld] (patch² · channels)", dir,
                             (long long)ppc);
        const int32_t *ix = in->patch_idx->data;
        for (int64_t i = 0; i < named_array_numel(in->patch_idx); i++)
            if (ix[i] >= in->patches->shape[1])
                return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: image_patches_indices[%lld] = %d, but there are %lld patches",
                                 dir, (long long)i, ix[i], (long long)in->patches->shape[1]);
    }
    if (in->token_types && in->labels) {
        /* HF's training mask: image + prefix (0) then suffix (1); a prefix token after the suffix would also be
         * seen by the earlier rows, which llama_input.prefix_mask does represent, so only the values are checked */
        const int32_t *tt = in->token_types->data;
        for (int64_t i = 0; i < named_array_numel(in->token_types); i++)
            if (tt[i] != 0 && tt[i] != 1)
                return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: token_type_ids must be 0 or 1", dir);
    }
    if (in->image_raw && (in->image_raw->ndim != 3 || in->image_raw->shape[2] != 3 || in->image_raw->shape[0] < 1 ||
                          in->image_raw->shape[1] < 1 || in->image_raw->shape[0] > 1 << 15 || in->image_raw->shape[1] > 1 << 15))
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: image_raw must be one uint8 image [H, W, 3] (sides up to 32768)", dir);
    if (in->emb_mask && (in->emb_mask->ndim != 3 || in->emb_mask->shape[0] != in->ids->shape[0]))
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: images_emb_mask must be [B, n_images, n_image_tokens]", dir);
    if (in->emb_mask && !in->seq_mask)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: images_emb_mask without images_seq_mask", dir);
    return VLMC_OK;
}

/* image_raw → the model folder's image processor (VLMImageProcessor): pixel_values [1, 1, 3, S, S] and the uint8
 * image after resize and pad, [S, S, 3]. *pixels and *u8 are malloc'ed. */
static vlmc_status preprocess_raw(const char *model_dir, const named_array *raw, float **pixels, uint8_t **u8, int *side,
                                  vlmc_error *err) {
    char *path = path_join(model_dir, "preprocessor_config.json");
    cJSON *j = NULL;
    image_proc p;
    proc_output o = {0};
    vlmc_status s = path ? json_parse_file(path, 1u << 20, &j, err) : vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    if (!s) s = image_proc_from_json(j, path, &p, err);
    rgb_image im = {.width = (int)raw->shape[1], .height = (int)raw->shape[0], .data = raw->data};
    if (!s) s = image_proc_run(&p, &im, &o, err);
    if (!s && (o.n_frames != 1 || o.frame_h != o.frame_w))
        s = vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: image_raw needs a processor that makes one square image", path);
    if (!s) {
        const size_t plane = (size_t)o.frame_h * o.frame_w;
        *side = o.frame_h;
        *pixels = o.pixel_values;
        o.pixel_values = NULL;
        if (!(*u8 = malloc(plane * 3))) s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        else
            for (size_t i = 0; i < plane; i++)
                for (int c = 0; c < 3; c++) (*u8)[i * 3 + c] = o.u8[(size_t)c * plane + i];
    }
    proc_output_free(&o);
    cJSON_Delete(j);
    free(path);
    return s;
}

/* pixel_values (+ image_sizes, pixel_attention_mask) → the family's vlm_images, tiles packed contiguously.
 * *buf / *mbuf / *tiles are malloc'ed here when the layout needs repacking. */
static vlmc_status gather_images(const vlm_model *m, const dump_in *in, const char *dir, vlm_images *vi, float **buf,
                                 int32_t **mbuf, int **tiles, vlmc_error *err) {
    const named_array *px = in->pixels;
    memset(vi, 0, sizeof *vi);
    *buf = NULL;
    *mbuf = NULL;
    *tiles = NULL;
    int nd = px->ndim;
    if (in->grid) { /* qwen2_vl: pixel_values [patches, C·tps·P·P], image_grid_thw [N, 3] */
        const hf_vision_config *v = &m->cfg.vision;
        const int64_t row = (int64_t)v->num_channels * v->temporal_patch_size * v->patch_size * v->patch_size;
        const named_array *g = in->grid;
        if (nd != 2 || px->shape[1] != row || px->shape[0] < 1 || px->shape[0] > 1 << 22 || g->ndim != 2 ||
            g->shape[1] != 3 || g->shape[0] < 1 || g->shape[0] > 4096)
            return vlmc_fail(err, VLMC_ERR_FORMAT,
                             "%s: %s needs pixel_values [patches, %lld] and image_grid_thw [images, 3]", dir,
                             m->cfg.model_type, (long long)row);
        vi->n_images = (int)g->shape[0];
        vi->n_tiles = (int)px->shape[0];
        vi->pixels = px->data;
        vi->grid_thw = g->data;
        return VLMC_OK;
    }
    if (nd != 4 && nd != 5) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: pixel_values must have 4 or 5 dimensions", dir);
    int64_t N = px->shape[0], M = nd == 5 ? px->shape[1] : 1, C = px->shape[nd - 3], H = px->shape[nd - 2],
            W = px->shape[nd - 1];
    if (N < 1 || M < 1 || N * M > 1 << 16 || C != m->vit.C || H < 1 || W < 1 || H > 1 << 14 || W > 1 << 14)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: pixel_values shape does not fit the vision tower (%d channels)", dir,
                         m->vit.C);
    const size_t tile = (size_t)C * H * W;
    const float *src = px->data;
    vi->height = (int)H;
    vi->width = (int)W;
    if (m->fam->original_inputs) { /* [B, n_images, C, H, W] (or [n, C, H, W]): every image is one tile */
        if (!(*tiles = malloc((size_t)(N * M) * sizeof(int)))) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; i < N * M; i++) (*tiles)[i] = 1;
        vi->n_images = vi->n_tiles = (int)(N * M);
        vi->pixels = src;
    } else if (!strcmp(m->cfg.model_type, "llava") || !strcmp(m->cfg.model_type, "kosmos-2") ||
               !strcmp(m->cfg.model_type, "paligemma")) {
        if (nd != 4) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %s pixel_values must be [N, C, H, W]", dir, m->cfg.model_type);
        if (!(*tiles = malloc((size_t)N * sizeof(int)))) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; i < N; i++) (*tiles)[i] = 1;
        vi->n_images = vi->n_tiles = (int)N;
        vi->pixels = src;
    } else if (!strcmp(m->cfg.model_type, "llava_next")) {
        const named_array *sz = in->sizes;
        if (nd != 5 || sz->ndim != 2 || sz->shape[0] != N || sz->shape[1] != 2)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: llava_next needs pixel_values [N, tiles, C, H, W], image_sizes [N, 2]",
                             dir);
        if (!(*tiles = malloc((size_t)N * sizeof(int))) || !(*buf = malloc((size_t)(N * M) * tile * sizeof(float))))
            return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        const int32_t *isz = sz->data;
        int total = 0;
        for (int64_t i = 0; i < N; i++) {
            int nt = 0;
            vlmc_status s = llava_next_num_tiles(&m->proj, isz[2 * i], isz[2 * i + 1], &nt, err);
            if (s) return s;
            if (nt > M)
                return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: image %lld needs %d tiles, pixel_values has %lld", dir,
                                 (long long)i, nt, (long long)M);
            memcpy(*buf + (size_t)total * tile, src + (size_t)i * M * tile, (size_t)nt * tile * sizeof(float));
            (*tiles)[i] = nt;
            total += nt;
        }
        vi->n_images = (int)N;
        vi->n_tiles = total;
        vi->pixels = *buf;
        vi->image_sizes = isz;
    } else { /* idefics3: [B, N, C, H, W]; all-zero images are the batch's padding (real_images_inds) */
        const named_array *pm = in->pmask;
        if (nd != 5 || (pm && (pm->ndim != 4 || pm->shape[0] != N || pm->shape[1] != M || pm->shape[2] != H ||
                               pm->shape[3] != W)))
            return vlmc_fail(err, VLMC_ERR_FORMAT,
                             "%s: idefics3 needs pixel_values [B, N, C, H, W] and pixel_attention_mask [B, N, H, W]", dir);
        if (!(*tiles = malloc((size_t)(N * M) * sizeof(int))) || !(*buf = malloc((size_t)(N * M) * tile * sizeof(float))) ||
            !(*mbuf = malloc((size_t)(N * M) * H * W * sizeof(int32_t))))
            return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        int k = 0;
        for (int64_t i = 0; i < N * M; i++) {
            const float *t = src + (size_t)i * tile;
            bool zero = true;
            for (size_t j = 0; j < tile && zero; j++) zero = t[j] == 0.0f;
            if (zero) continue;
            memcpy(*buf + (size_t)k * tile, t, tile * sizeof(float));
            for (size_t j = 0; j < (size_t)H * W; j++)
                (*mbuf)[(size_t)k * H * W + j] = pm ? ((const int32_t *)pm->data)[(size_t)i * H * W + j] : 1;
            (*tiles)[k++] = 1;
        }
        vi->n_images = vi->n_tiles = k;
        vi->pixels = *buf;
        vi->pixel_mask = *mbuf;
    }
    vi->tiles = *tiles;
    return VLMC_OK;
}

/* loss = mean over b, t < T-1 with labels[b, t+1] != -100 (and mask[b, t+1] != 0 when mask is given) of
 * logsumexp(logits[b, t]) - logits[b, t, labels[b, t+1]]: nn.CrossEntropyLoss on the shifted logits. */
static vlmc_status shifted_ce_loss(const float *logits, const int32_t *labels, const int32_t *mask, int B, int T,
                                   int64_t V, float *loss, vlmc_error *err) {
    double sum = 0.0;
    size_t n = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t + 1 < T; t++) {
            const size_t next = (size_t)b * T + t + 1;
            const int32_t y = labels[next];
            if ((mask && !mask[next]) || y == -100) continue;
            if (y < 0 || y >= V)
                return vlmc_fail(err, VLMC_ERR_ARG, "labels[%d, %d] = %d is outside the vocabulary (%lld)", b, t + 1, y,
                                 (long long)V);
            const float *row = logits + ((size_t)b * T + t) * V;
            float mx = row[0];
            for (int64_t v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
            double se = 0.0;
            for (int64_t v = 0; v < V; v++) se += exp((double)row[v] - mx);
            sum += log(se) + mx - row[y];
            n++;
        }
    *loss = n ? (float)(sum / (double)n) : NAN; /* torch: the mean of nothing is nan */
    return VLMC_OK;
}

enum { MAX_OUT = 20 + VLM_MAX_EXTRAS };

typedef struct outs {
    named_array a[MAX_OUT];
    int n;
} outs;

static void out_add(outs *o, const char *name, array_dtype dt, int ndim, const int64_t *shape, void *data,
                    const char *note) {
    o->a[o->n++] = named_array_make(name, dt, ndim, shape, data, note);
}

static cJSON *dump_meta(const vlm_model *m) {
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddStringToObject(meta, "model", m->cfg.architecture[0] ? m->cfg.architecture : m->fam->hf_class);
    cJSON_AddStringToObject(meta, "model_type", m->cfg.model_type);
    cJSON_AddStringToObject(meta, "producer", "vlmc_dump");
    return meta;
}

static const char dump_format[] = "Each array is a raw little-endian C-order file <file> with no header; dtype is one of "
                                  "float32, int32, uint8; shape lists dimensions outermost first.";

/* Families whose fixtures come from their original code read their own inputs and name their own outputs. */
static vlmc_status family_dump(const vlm_model *m, const array_set *set, const char *inputs_dir, const char *out_dir,
                               int generate_n, int grads, vlmc_error *err) {
    if (grads || array_set_find(set, "labels"))
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: labels / --grads are not supported for %s", inputs_dir,
                         m->fam->hf_class);
    vlm_dump_out o = {0};
    vlmc_status s = m->fam->dump(m, set, inputs_dir, generate_n, &o, err);
    if (!s) {
        cJSON *meta = dump_meta(m);
        s = arrays_write_dir(out_dir, dump_format, meta, o.a, o.n, err);
        cJSON_Delete(meta);
    }
    vlm_dump_out_free(&o);
    return s;
}

vlmc_status vlmc_dump(const char *model_dir, const char *inputs_dir, const char *out_dir, int generate_n, int grads,
                      vlmc_error *err) {
    if (!model_dir || !inputs_dir || !out_dir) return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_dump: NULL argument");
    if (generate_n < 0 || generate_n > 1 << 20) return vlmc_fail(err, VLMC_ERR_ARG, "generate_n must be >= 0");
    array_set set = {0};
    vlm_model m;
    memset(&m, 0, sizeof m);
    bool loaded = false, have_ctx = false;
    llama_ctx c;
    float *buf = NULL, *vh = NULL, *vsel = NULL, *vlast = NULL, *vproj = NULL, *feat = NULL, *embeds = NULL;
    float *logits = NULL, *hidden = NULL, *steps = NULL;
    int32_t *mbuf = NULL, *gen = NULL, *mpos = NULL, *pos3 = NULL, *deltas = NULL, *prefix = NULL;
    int *tiles = NULL;
    cJSON *meta = NULL;
    vlm_dump_out extras = {0}; /* a family's own intermediates (moondream2) */
    vlm_prepared prep = {0};
    char *grads_path = NULL;
    float *raw_pixels = NULL; /* image_raw preprocessed */
    uint8_t *raw_u8 = NULL;
    vlm_vision_out vo;
    memset(&vo, 0, sizeof vo);
    vlmc_status s = arrays_read_dir(inputs_dir, 1, &set, err);
    if (s) goto done;
    if ((s = vlm_load(model_dir, &m, err))) goto done;
    loaded = true;
    if (m.fam->dump) {
        s = family_dump(&m, &set, inputs_dir, out_dir, generate_n, grads, err);
        goto done;
    }
    dump_in in;
    if ((s = check_inputs(&set, inputs_dir, &m, &in, err))) goto done;
    const int B = (int)in.ids->shape[0], T = (int)in.ids->shape[1];
    const int64_t V = m.lm.vocab, D = m.lm.dim, L = m.lm.n_layers;
    outs o = {.n = 0};
    /* images */
    vlm_images vi = {0};
    size_t n_feat = 0;
    if (in.image_raw && m.fam->preprocess) { /* the family's own processing, its intermediates under the reference's names */
        if ((s = m.fam->preprocess(&m, in.image_raw->data, (int)in.image_raw->shape[0], (int)in.image_raw->shape[1], &prep,
                                   &extras, err)))
            goto done;
        if (!(tiles = malloc(sizeof(int)))) { s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory"); goto done; }
        tiles[0] = prep.n_tiles;
        vi = (vlm_images){.n_images = 1, .pixels = prep.pixels, .n_tiles = prep.n_tiles, .height = prep.height,
                          .width = prep.width, .tiles = tiles, .image_sizes = prep.image_size};
        if ((s = m.fam->features_len(&m, &vi, &n_feat, err))) goto done;
        if (!(feat = malloc((n_feat ? n_feat : 1) * D * sizeof(float)))) {
            s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
            goto done;
        }
        vo = (vlm_vision_out){.features = feat, .own_out = &extras};
        if ((s = m.fam->encode(&m, &vi, &vo, err))) goto done;
        if (o.n + extras.n > MAX_OUT) { s = vlmc_fail(err, VLMC_ERR_INTERNAL, "too many dump outputs"); goto done; }
        for (int i = 0; i < extras.n; i++) o.a[o.n++] = extras.a[i];
    }
    named_array raw_px = {0};
    if (in.image_raw && !m.fam->preprocess) { /* the folder's processor on the raw image (pixel_values, when given too, stay the input) */
        int side = 0;
        if ((s = preprocess_raw(model_dir, in.image_raw, &raw_pixels, &raw_u8, &side, err))) goto done;
        out_add(&o, "image_resized_padded", ARRAY_U8, 3, (int64_t[]){side, side, 3}, raw_u8,
                "the image processor's resized and padded uint8 image, HxWx3");
        out_add(&o, "pixel_values", ARRAY_F32, 5, (int64_t[]){1, 1, 3, side, side}, raw_pixels,
                "image processor output [1, n_images, 3, S, S]");
        raw_px = o.a[o.n - 1];
        if (!in.pixels) in.pixels = &raw_px;
    }
    if (in.pixels && !(in.image_raw && m.fam->preprocess)) {
        if ((s = gather_images(&m, &in, inputs_dir, &vi, &buf, &mbuf, &tiles, err))) goto done;
        size_t nh, ns, nl, np;
        if (vi.grid_thw) { /* qwen2_vl: patch rows; ns holds the rotary angles [patches, head_dim / 2] */
            const hf_vision_config *v = &m.cfg.vision;
            nh = (size_t)(v->num_hidden_layers + 1) * vi.n_tiles * v->hidden_size;
            ns = (size_t)vi.n_tiles * (v->hidden_size / v->num_attention_heads / 2);
            nl = 1;
            np = (size_t)vi.n_tiles * D;
        } else {
            vlm_vision_sizes(&m, vi.n_tiles, vi.height, vi.width, &nh, &ns, &nl, &np);
        }
        if ((s = m.fam->features_len(&m, &vi, &n_feat, err))) goto done;
        if (np < n_feat * D) np = n_feat * D;
        vh = malloc(nh * sizeof(float));
        vsel = malloc(ns * sizeof(float));
        vlast = malloc(nl * sizeof(float));
        vproj = malloc(np * sizeof(float));
        feat = malloc((n_feat ? n_feat : 1) * D * sizeof(float));
        if (!vh || !vsel || !vlast || !vproj || !feat) { s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory"); goto done; }
        vo = (vlm_vision_out){.hidden_states = vh, .selected = vi.grid_thw ? NULL : vsel, .last_hidden_state = vlast,
                              .projector_output = vproj, .features = feat, .rotary_freqs = vi.grid_thw ? vsel : NULL,
                              .want_extras = true};
        if ((s = m.fam->encode(&m, &vi, &vo, err))) goto done;
        if (vi.grid_thw) {
            const int64_t Lv = m.cfg.vision.num_hidden_layers, Np = vi.n_tiles, Dv = m.cfg.vision.hidden_size;
            out_add(&o, "vision_patch_embeds", ARRAY_F32, 2, (int64_t[]){Np, Dv}, vh, "patch_embed output [patches, Dv]");
            out_add(&o, "vision_rotary_freqs", ARRAY_F32, 2, (int64_t[]){Np, (int64_t)(ns / Np)}, vsel,
                    "rot_pos_emb(grid_thw): [patches, head_dim/2] = (h angles, w angles)");
            out_add(&o, "vision_block_outputs", ARRAY_F32, 3, (int64_t[]){Lv, Np, Dv}, vh + Np * Dv,
                    "output of every vision block [depth, patches, Dv]");
            out_add(&o, "vision_merger_output", ARRAY_F32, 2, (int64_t[]){(int64_t)vo.n_features, D}, feat,
                    "PatchMerger output = image embeddings [patches / merge^2, D]");
        }
    }
    if (in.pixels && !vi.grid_thw) {
        const int64_t Lv = m.vit.L, n = vi.n_tiles, Dv = m.vit.D;
        const bool kosmos2 = !strcmp(m.cfg.model_type, "kosmos-2");
        if (vo.vit_tokens)
            out_add(&o, "vision_hidden_states", ARRAY_F32, 4, (int64_t[]){Lv + 1, n, vo.vit_tokens, Dv}, vh,
                    "vision tower hidden states [L+1, tiles, tokens, Dv]; [0] = embeddings");
        for (int i = 0; i < vo.n_extras; i++)
            out_add(&o, vo.extras[i].name, ARRAY_F32, vo.extras[i].ndim, vo.extras[i].shape, vo.extras[i].data,
                    "an intermediate of the family's vision path (see its reference fixture)");
        if (kosmos2) {
            out_add(&o, "vision_post_layernorm", ARRAY_F32, 3, (int64_t[]){n, vo.vit_tokens, Dv}, vlast,
                    "post_layernorm over the whole last hidden state");
            out_add(&o, "vision_normalized", ARRAY_F32, 3, (int64_t[]){n, vo.vit_tokens, Dv}, vsel,
                    "L2-normalised along the feature dim");
            out_add(&o, "image_embeds", ARRAY_F32, 3, (int64_t[]){n, vo.proj_tokens, D}, vproj,
                    "image_to_text_projection output [images, latent_query_num, D]");
        } else if (vo.sel_tokens)
            out_add(&o, "vision_selected_features", ARRAY_F32, 3, (int64_t[]){n, vo.sel_tokens, vo.sel_features}, vsel,
                    "vision_feature_layer selection per tile");
        if (!strcmp(m.cfg.model_type, "idefics3"))
            out_add(&o, "vision_last_hidden_state", ARRAY_F32, 3, (int64_t[]){n, vo.vit_tokens, Dv}, vlast,
                    "post_layernorm(last layer) = connector input");
        if (!strcmp(m.cfg.model_type, "paligemma")) {
            out_add(&o, "vision_last_hidden_state", ARRAY_F32, 3, (int64_t[]){n, vo.vit_tokens, Dv}, vlast,
                    "post_layernorm(last layer) = projector input");
            out_add(&o, "image_features", ARRAY_F32, 3, (int64_t[]){n, vo.proj_tokens, D}, vproj,
                    "multi_modal_projector(last_hidden_state) / sqrt(hidden_size)");
        } else if (!kosmos2) {
            out_add(&o, "projector_output", ARRAY_F32, 3, (int64_t[]){n, vo.proj_tokens, D}, vproj,
                    "projector / connector output per tile");
        }
        if (!strcmp(m.cfg.model_type, "llava_next"))
            out_add(&o, "packed_image_features", ARRAY_F32, 2, (int64_t[]){(int64_t)vo.n_features, D}, feat,
                    "anyres packing of every image, concatenated");
    }
    /* decoder: embeddings with the image features spliced in, full pass, then greedy generation */
    const bool all_layers = m.fam->own_dump_names; /* [L+2]: the last layer's output too */
    const int64_t n_hidden = all_layers ? L + 2 : L + 1;
    embeds = malloc((size_t)B * T * D * sizeof(float));
    logits = malloc((size_t)B * T * V * sizeof(float));
    hidden = malloc((size_t)n_hidden * B * T * D * sizeof(float));
    if (generate_n) {
        gen = malloc((size_t)B * generate_n * sizeof(int32_t));
        steps = malloc((size_t)B * generate_n * V * sizeof(float));
    }
    if (!embeds || !logits || !hidden || (generate_n && (!gen || !steps))) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for the outputs");
        goto done;
    }
    if (in.patches) {
        /* fuyu: patch_embeddings [B, n, D] = vision_embed_tokens(image_patches), each row replacing the token at the
         * positions image_patches_indices names (gather_continuous_embeddings) */
        const int64_t n = in.patches->shape[1];
        if (!(feat = malloc((size_t)B * n * D * sizeof(float)))) { s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory"); goto done; }
        if ((s = projector_forward(&m.proj, in.patches->data, B, (int)n, (int)m.proj.in_dim, feat, err)) ||
            (s = llama_embed_tokens(&m.lm, in.ids->data, (int64_t)B * T, embeds, err)))
            goto done;
        const int32_t *ix = in.patch_idx->data;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
                if (ix[(size_t)b * T + t] >= 0)
                    memcpy(embeds + ((size_t)b * T + t) * D, feat + ((size_t)b * n + ix[(size_t)b * T + t]) * D,
                           (size_t)D * sizeof(float));
        out_add(&o, "patch_embeddings", ARRAY_F32, B == 1 ? 2 : 3, B == 1 ? (int64_t[]){n, D} : (int64_t[]){B, n, D}, feat,
                "vision_embed_tokens(image_patches) [n_patches, D]");
    } else if (in.seq_mask) { /* DeepSeek-VL: inputs_embeds[images_seq_mask] = images_embeds[images_emb_mask] */
        uint8_t *all = NULL;
        const uint8_t *em = in.emb_mask ? in.emb_mask->data : NULL;
        if (em && (size_t)named_array_numel(in.emb_mask) != vo.n_features) {
            s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: images_emb_mask has %lld entries for %zu image embeddings", inputs_dir,
                          (long long)named_array_numel(in.emb_mask), vo.n_features);
            goto done;
        }
        if (!em && vo.n_features && !(em = all = malloc(vo.n_features))) {
            s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
            goto done;
        }
        if (all) memset(all, 1, vo.n_features);
        s = vlm_embed_masked(&m, in.ids->data, (size_t)B * T, in.seq_mask->data, feat, em,
                             vo.n_features, embeds, err);
        free(all);
        if (s) goto done;
    } else if ((s = vlm_embed_at(&m, in.ids->data, (size_t)B * T, in.img_pos ? in.img_pos->data : NULL,
                                 feat, vo.n_features, 0, true, embeds, NULL, err))) {
        goto done;
    }
    /* PaliGemma's prefix LM: in training (labels) the image + prefix tokens (token_type_ids 0) are seen by every
     * row and the suffix is causal; at inference the whole prompt attends both ways. Labels without token_type_ids
     * get them as PaliGemmaProcessor makes them: the suffix is where the labels are set (not -100). */
    if (m.fam->prefix_lm) {
        if (!(prefix = malloc((size_t)B * T * sizeof(int32_t)))) { s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory"); goto done; }
        const int32_t *tt = in.token_types ? in.token_types->data : NULL, *lb = in.labels ? in.labels->data : NULL;
        for (size_t i = 0; i < (size_t)B * T; i++) prefix[i] = !lb ? 1 : tt ? tt[i] == 0 : lb[i] == -100;
    }
    if (m.fam->original_inputs)
        out_add(&o, "inputs_embeds", ARRAY_F32, 3, (int64_t[]){B, T, D}, embeds,
                "token embeddings with the image embeddings spliced in [B, T, D]");
    if ((s = llama_ctx_init(&c, &m.lm, B, T + generate_n, T, err))) goto done;
    have_ctx = true;
    c.position_offset = m.fam->position_offset;
    llama_input li = {.n_tokens = T, .embeds = embeds, .attention_mask = in.mask ? in.mask->data : NULL,
                      .position_ids = in.pos ? in.pos->data : NULL, .prefix_mask = prefix};
    if (m.fam->rope_index) { /* M-RoPE: get_rope_index's [3, B, T] positions (or the given ones) and rope_deltas */
        if (!(mpos = malloc((size_t)B * T * 3 * sizeof(int32_t))) || !(pos3 = malloc((size_t)3 * B * T * sizeof(int32_t))) ||
            !(deltas = malloc((size_t)B * sizeof(int32_t)))) {
            s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
            goto done;
        }
        if (in.pos && in.pos->ndim == 3) {
            for (size_t r = 0; r < (size_t)B * T; r++)
                for (int a = 0; a < 3; a++) mpos[r * 3 + a] = ((const int32_t *)in.pos->data)[(size_t)a * B * T + r];
        } else if ((s = m.fam->rope_index(&m, in.ids->data, li.attention_mask, B, T, in.grid ? in.grid->data : NULL,
                                          in.grid ? (int)in.grid->shape[0] : 0, mpos, deltas, err))) {
            goto done;
        }
        if (!in.pos || in.pos->ndim == 3) {
            li.position_ids = NULL;
            li.mrope_pos = mpos;
            for (size_t r = 0; r < (size_t)B * T; r++)
                for (int a = 0; a < 3; a++) pos3[(size_t)a * B * T + r] = mpos[r * 3 + a];
            if (!in.pos) {
                out_add(&o, "position_ids", ARRAY_I32, 3, (int64_t[]){3, B, T}, pos3,
                        "M-RoPE position ids from get_rope_index [3 (t,h,w), B, T]");
                out_add(&o, "rope_deltas", ARRAY_I32, 2, (int64_t[]){B, 1}, deltas,
                        "max position + 1 - T; generated token k gets position T + k + delta on all 3 axes");
            }
        }
    }
    if ((s = llama_forward(&c, &li,
                           &(llama_output){.logits = logits, .hidden_states = hidden, .hidden_states_all = all_layers},
                           err)))
        goto done;
    if (generate_n) {
        llama_ctx_reset(&c);
        c.legacy_unmask_padding_on_decode = m.fam->legacy_unmask_padding;
        if ((s = llama_generate_greedy(&c, &li, generate_n, gen, steps, err))) goto done;
    }
    if (m.fam->embeds_name)
        out_add(&o, m.fam->embeds_name, ARRAY_F32, 3, (int64_t[]){B, T, D}, embeds,
                "[B, T, D]: token embeddings with the image features in the image slots");
    out_add(&o, "logits", ARRAY_F32, 3, (int64_t[]){B, T, V}, logits, "[B, T, vocab]");
    out_add(&o, m.has_vision ? "text_hidden_states" : "hidden_states", ARRAY_F32, 4, (int64_t[]){n_hidden, B, T, D},
            hidden,
            all_layers ? "[num_layers+2, B, T, D]; [0] = input embeddings (image features merged), [i] = output of "
                         "layer i, last = final norm output"
                       : "[num_layers+1, B, T, D]; [0] = input embeddings (image features merged), last = final RMSNorm "
                         "output");
    if (generate_n) {
        out_add(&o, "generated_ids", ARRAY_I32, 2, (int64_t[]){B, generate_n}, gen,
                "greedy continuation (KV-cache path, no EOS stop)");
        out_add(&o, "generation_step_logits", ARRAY_F32, 3, (int64_t[]){B, generate_n, V}, steps,
                "raw logits that produced each generated token [B, n, vocab]");
    }
    /* labels: the loss (and with grads the gradients) through the training graph, on the same inputs */
    float loss = 0.0f;
    if (grads && !in.labels) {
        s = vlmc_fail(err, VLMC_ERR_ARG, "%s: --grads needs labels among the inputs", inputs_dir);
        goto done;
    }
    if (in.labels && loss_from_logits(m.cfg.model_type)) {
        if (grads) {
            s = vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: --grads: model_type \"%s\" has no training graph yet",
                          model_dir, m.cfg.model_type);
            goto done;
        }
        /* PaliGemma drops the positions whose next token has attention_mask 0; Fuyu (ForCausalLMLoss) does not */
        const bool pali = !strcmp(m.cfg.model_type, "paligemma");
        if ((s = shifted_ce_loss(logits, in.labels->data, pali && in.mask ? in.mask->data : NULL, B, T, V, &loss, err)))
            goto done;
        out_add(&o, "loss", ARRAY_F32, 1, (int64_t[]){1}, &loss,
                "mean cross-entropy over the shifted labels that are not -100 (and, PaliGemma, not padding)");
    } else if (in.labels) {
        if ((s = file_mkdirs(out_dir, err))) goto done;
        grads_path = path_join(out_dir, grads ? "grads.safetensors" : ".vlmc-grads.tmp");
        if (!grads_path) { s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory"); goto done; }
        s = vlmc_compute_grads(model_dir, inputs_dir, grads_path, &loss, err);
        if (!grads) remove(grads_path);
        if (s) goto done;
        out_add(&o, "loss", ARRAY_F32, 1, (int64_t[]){1}, &loss,
                "mean cross-entropy over non-ignored shifted labels (HF's ForCausalLMLoss)");
    }
    meta = dump_meta(&m);
    s = arrays_write_dir(out_dir, dump_format, meta, o.a, o.n, err);
done:
    free(grads_path);
    cJSON_Delete(meta);
    vlm_dump_out_free(&extras);
    vlm_prepared_free(&prep);
    if (have_ctx) llama_ctx_free(&c);
    if (loaded) vlm_free(&m);
    array_set_free(&set);
    free(buf); free(vh); free(vsel); free(vlast); free(vproj); free(feat); free(embeds);
    free(logits); free(hidden); free(steps); free(mbuf); free(gen); free(tiles); free(mpos); free(pos3); free(deltas);
    free(prefix); free(raw_pixels); free(raw_u8);
    vlm_vision_out_free_extras(&vo);
    return s;
}
