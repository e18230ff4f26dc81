/* vlmc_dump: the `vlmc dump` seam of ../shared/CHECKS.md. Runs a model (any family of the registry) on the
 * arrays of a manifest folder and writes its outputs under the fixtures' names and shapes (src/formats/arrays.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlmc.h"
#include "core/error.h"
#include "core/file.h"
#include "formats/arrays.h"
#include "models/vlm.h"

/* Inputs of the seam that no family here uses. */
static const char *const other_inputs[] = {"image_grid_thw",   "image_patches",   "image_patches_indices",
                                           "image_embeds_position_mask", "images_seq_mask", "images_emb_mask",
                                           "input_ids_full",   "image_raw",       NULL};

typedef struct dump_in {
    named_array *ids, *mask, *pos, *pixels, *sizes, *pmask, *labels;
    named_array *raw; /* image_raw [H, W, 3] uint8, for families with their own image processing */
} dump_in;

static vlmc_status check_inputs(const array_set *set, const char *dir, const vlm_model *m, dump_in *in,
                                vlmc_error *err) {
    memset(in, 0, sizeof *in);
    const char *mt = m->cfg.model_type;
    for (int i = 0; i < set->count; i++) {
        named_array *a = &set->arrays[i];
        const char *n = a->name;
        const bool own = m->fam->prepare_image != NULL;
        if (!strcmp(n, "input_ids") || (own && !strcmp(n, "input_ids_full"))) in->ids = a;
        else if (own && !strcmp(n, "image_raw")) in->raw = a;
        else if (!strcmp(n, "attention_mask")) in->mask = a;
        else if (!strcmp(n, "position_ids")) in->pos = a;
        else if (!strcmp(n, "pixel_values") && m->has_vision) in->pixels = a;
        else if (!strcmp(n, "image_sizes") && !strcmp(mt, "llava_next")) in->sizes = a;
        else if (!strcmp(n, "pixel_attention_mask") && !strcmp(mt, "idefics3")) in->pmask = a;
        else if (!strcmp(n, "labels")) in->labels = a;
        else {
            bool known = !strcmp(n, "pixel_values") || !strcmp(n, "image_sizes") || !strcmp(n, "pixel_attention_mask");
            for (const char *const *o = other_inputs; *o; o++) known |= !strcmp(*o, n);
            if (known)
                return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: input %s is not used by model_type \"%s\"", dir, n, mt);
            return vlmc_fail(err, VLMC_ERR_ARG, "%s: array %s is not an input of vlmc dump", dir, n);
        }
        const array_dtype want = !strcmp(n, "pixel_values") ? ARRAY_F32 : a == in->raw ? ARRAY_U8 : ARRAY_I32;
        if (a->dtype != want)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %s has dtype %s, expected %s", dir, n, array_dtype_name(a->dtype),
                             array_dtype_name(want));
    }
    if (!in->ids) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: no input_ids", dir);
    if (in->raw && (in->raw->ndim != 3 || in->raw->shape[2] != 3 || in->raw->shape[0] < 1 || in->raw->shape[1] < 1 ||
                    in->raw->shape[0] > 1 << 15 || in->raw->shape[1] > 1 << 15))
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: image_raw must be [H, W, 3] uint8 (sides up to 32768)", dir);
    if (in->raw && in->pixels)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: image_raw and pixel_values together: give one of them", dir);
    if (m->fam->prepare_image && in->pixels)
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: model_type \"%s\" makes its crops itself: give image_raw, not "
                         "pixel_values", dir, mt);
    if (in->ids->ndim != 2 || in->ids->shape[0] < 1 || in->ids->shape[1] < 1 || in->ids->shape[0] > 4096 ||
        in->ids->shape[1] > 1 << 20)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: input_ids must be [B, T]", dir);
    named_array *same[3] = {in->mask, in->pos, in->labels};
    for (int i = 0; i < 3; i++)
        if (same[i] && (same[i]->ndim != 2 || same[i]->shape[0] != in->ids->shape[0] ||
                        same[i]->shape[1] != in->ids->shape[1]))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %s must have the shape of input_ids", dir, same[i]->name);
    if (!strcmp(mt, "llava_next") && in->pixels && !in->sizes)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: llava_next needs image_sizes with pixel_values", dir);
    if ((in->sizes || in->pmask) && !in->pixels)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: image_sizes / pixel_attention_mask without pixel_values", dir);
    return VLMC_OK;
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
    if (!strcmp(m->cfg.model_type, "llava")) {
        if (nd != 4) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: llava pixel_values must be [N, C, H, W]", dir);
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

enum { MAX_OUT = 12 + 2 * VLM_MAX_EXTRAS };

typedef struct outs {
    named_array a[MAX_OUT];
    int n;
} outs;

static void out_add(outs *o, const char *name, array_dtype dt, int ndim, const int64_t *shape, void *data,
                    const char *note) {
    o->a[o->n++] = named_array_make(name, dt, ndim, shape, data, note);
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
    int32_t *mbuf = NULL, *gen = NULL;
    int *tiles = NULL;
    cJSON *meta = NULL;
    vlm_extras extras = {0};
    vlm_prepared prep = {0};
    char *grads_path = NULL;
    vlmc_status s = arrays_read_dir(inputs_dir, 1, &set, err);
    if (s) goto done;
    if ((s = vlm_load(model_dir, &m, err))) goto done;
    loaded = true;
    dump_in in;
    if ((s = check_inputs(&set, inputs_dir, &m, &in, err))) goto done;
    const int B = (int)in.ids->shape[0], T = (int)in.ids->shape[1];
    const int64_t V = m.lm.vocab, D = m.lm.dim, L = m.lm.n_layers;
    outs o = {.n = 0};
    /* images */
    vlm_images vi = {0};
    vlm_vision_out vo = {0};
    size_t n_feat = 0;
    if (in.raw) { /* the family's own processing of image_raw, its intermediates under the reference's names */
        if ((s = m.fam->prepare_image(&m, in.raw->data, (int)in.raw->shape[0], (int)in.raw->shape[1], &prep, &extras,
                                      err)))
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
        vo = (vlm_vision_out){.features = feat, .extras = &extras};
        if ((s = m.fam->encode(&m, &vi, &vo, err))) goto done;
        for (int i = 0; i < extras.n; i++) o.a[o.n++] = extras.a[i];
    } else if (in.pixels) {
        if ((s = gather_images(&m, &in, inputs_dir, &vi, &buf, &mbuf, &tiles, err))) goto done;
        size_t nh, ns, nl, np;
        vlm_vision_sizes(&m, vi.n_tiles, vi.height, vi.width, &nh, &ns, &nl, &np);
        if ((s = m.fam->features_len(&m, &vi, &n_feat, err))) goto done;
        vh = malloc(nh * sizeof(float));
        vsel = malloc(ns * sizeof(float));
        vlast = malloc(nl * sizeof(float));
        vproj = malloc(np * sizeof(float));
        feat = malloc((n_feat ? n_feat : 1) * D * sizeof(float));
        if (!vh || !vsel || !vlast || !vproj || !feat) { s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory"); goto done; }
        vo = (vlm_vision_out){.hidden_states = vh, .selected = vsel, .last_hidden_state = vlast,
                              .projector_output = vproj, .features = feat};
        if ((s = m.fam->encode(&m, &vi, &vo, err))) goto done;
        const int64_t Lv = m.vit.L, n = vi.n_tiles, Dv = m.vit.D;
        out_add(&o, "vision_hidden_states", ARRAY_F32, 4, (int64_t[]){Lv + 1, n, vo.vit_tokens, Dv}, vh,
                "vision tower hidden states [L+1, tiles, tokens, Dv]; [0] = embeddings");
        if (vo.sel_tokens)
            out_add(&o, "vision_selected_features", ARRAY_F32, 3, (int64_t[]){n, vo.sel_tokens, vo.sel_features}, vsel,
                    "vision_feature_layer selection per tile");
        if (!strcmp(m.cfg.model_type, "idefics3"))
            out_add(&o, "vision_last_hidden_state", ARRAY_F32, 3, (int64_t[]){n, vo.vit_tokens, Dv}, vlast,
                    "post_layernorm(last layer) = connector input");
        out_add(&o, "projector_output", ARRAY_F32, 3, (int64_t[]){n, vo.proj_tokens, D}, vproj,
                "projector / connector output per tile");
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
    if ((s = vlm_embed(&m, in.ids->data, (size_t)B * T, feat, vo.n_features, 0, true, embeds, NULL, err))) goto done;
    if ((s = llama_ctx_init(&c, &m.lm, B, T + generate_n, T, err))) goto done;
    have_ctx = true;
    llama_input li = {.n_tokens = T, .embeds = embeds, .attention_mask = in.mask ? in.mask->data : NULL,
                      .position_ids = in.pos ? in.pos->data : NULL};
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
    if (in.labels) {
        if ((s = file_mkdirs(out_dir, err))) goto done;
        grads_path = path_join(out_dir, grads ? "grads.safetensors" : ".vlmc-grads.tmp");
        if (!grads_path) { s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory"); goto done; }
        s = vlmc_compute_grads(model_dir, inputs_dir, grads_path, &loss, err);
        if (!grads) remove(grads_path);
        if (s) goto done;
        out_add(&o, "loss", ARRAY_F32, 1, (int64_t[]){1}, &loss,
                "mean cross-entropy over non-ignored shifted labels (HF's ForCausalLMLoss)");
    }
    meta = cJSON_CreateObject();
    cJSON_AddStringToObject(meta, "model", m.cfg.architecture[0] ? m.cfg.architecture : m.fam->hf_class);
    cJSON_AddStringToObject(meta, "model_type", m.cfg.model_type);
    cJSON_AddStringToObject(meta, "producer", "vlmc_dump");
    s = arrays_write_dir(out_dir,
                         "Each array is a raw little-endian C-order file <file> with no header; dtype is one of float32, "
                         "int32, uint8; shape lists dimensions outermost first.",
                         meta, o.a, o.n, err);
done:
    free(grads_path);
    cJSON_Delete(meta);
    vlm_extras_free(&extras);
    vlm_prepared_free(&prep);
    if (have_ctx) llama_ctx_free(&c);
    if (loaded) vlm_free(&m);
    array_set_free(&set);
    free(buf); free(vh); free(vsel); free(vlast); free(vproj); free(feat); free(embeds);
    free(logits); free(hidden); free(steps); free(mbuf); free(gen); free(tiles);
    return s;
}
