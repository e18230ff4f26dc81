/* Hugging Face image processors (transformers 4.47.1) on load_image()-style RGB
 * images; see processors.h. Every size computation below mirrors the Python
 * expression it replaces, in the same double arithmetic and int() truncation.
 *
 * preprocessor_config.json keys read (absent or null = the class's __init__ default):
 *   all:          image_processor_type, do_resize, size, resample, do_rescale,
 *                 rescale_factor, do_normalize, image_mean, image_std, do_convert_rgb
 *                 (inputs are already RGB, so it changes nothing)
 *   CLIPImageProcessor       (transformers.CLIPImageProcessor):  + do_center_crop, crop_size
 *                 size {shortest_edge} | {height, width} | int (= shortest_edge)
 *   SiglipImageProcessor     (transformers.SiglipImageProcessor): size {height, width} | int
 *   LlavaNextImageProcessor  (transformers.LlavaNextImageProcessor): + do_center_crop,
 *                 crop_size, image_grid_pinpoints, do_pad (pads the tile count of a
 *                 batch: a no-op for one image)
 *   Idefics3ImageProcessor   (transformers.Idefics3ImageProcessor): size {longest_edge} |
 *                 {height, width}, do_image_splitting, max_image_size {longest_edge},
 *                 do_pad (to the largest frame; frames of one split image are equal)
 *   Qwen2VLImageProcessor    (transformers.Qwen2VLImageProcessor): min_pixels, max_pixels (or size
 *                 {min_pixels, max_pixels} / {shortest_edge, longest_edge}), patch_size,
 *                 temporal_patch_size, merge_size
 *   FuyuImageProcessor       (transformers.FuyuImageProcessor): size {height, width}, do_pad, padding_value,
 *                 padding_mode (constant), patch_size {height, width} (square)
 * Model parameters for the image-token count (config.json / processor_config.json):
 *   patch_size / vision_config.patch_size, vision_feature_select_strategy,
 *   image_seq_len, or scale_factor + vision_config.image_size (Idefics3). */
#include "vision/processors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/json.h"

/* ---- configuration ---------------------------------------------------------------- */

static const double OPENAI_CLIP_MEAN[3] = {0.48145466, 0.4578275, 0.40821073};
static const double OPENAI_CLIP_STD[3] = {0.26862954, 0.26130258, 0.27577711};
static const double IMAGENET_STANDARD_MEAN[3] = {0.5, 0.5, 0.5};
static const double IMAGENET_STANDARD_STD[3] = {0.5, 0.5, 0.5};

static vlmc_status read_triplet(const cJSON *cfg, const char *key, const double def[3], double out[3],
                                const char *what, vlmc_error *err) {
    const cJSON *v = json_get(cfg, key);
    if (!v || cJSON_IsNull(v)) {
        memcpy(out, def, 3 * sizeof(double));
        return VLMC_OK;
    }
    if (cJSON_IsNumber(v)) {
        out[0] = out[1] = out[2] = v->valuedouble;
        return VLMC_OK;
    }
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 3) {
        for (int i = 0; i < 3; i++) {
            const cJSON *e = cJSON_GetArrayItem(v, i);
            if (!cJSON_IsNumber(e)) break;
            out[i] = e->valuedouble;
            if (i == 2) return VLMC_OK;
        }
    }
    return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: \"%s\" must be a number or a list of 3 numbers", what, key);
}

static vlmc_status read_dim(const cJSON *obj, const char *key, int *out, const char *what, vlmc_error *err) {
    const cJSON *v = json_get(obj, key);
    if (!v) return VLMC_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 65536 || v->valuedouble != floor(v->valuedouble))
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: \"%s\" must be an integer in 1..65536", what, key);
    *out = (int)v->valuedouble;
    return VLMC_OK;
}

static int read_flag(const cJSON *cfg, const char *key, int def) { return json_bool(cfg, key, def != 0) ? 1 : 0; }

/* size: {"shortest_edge"} | {"longest_edge"} | {"height","width"} | int (meaning
 * depends on the class, as get_size_dict's default_to_square). */
static vlmc_status read_size(const cJSON *cfg, image_proc *p, int int_is_square, const char *what, vlmc_error *err) {
    const cJSON *s = json_get(cfg, "size");
    if (!s) return VLMC_OK;
    int n = 0;
    if (cJSON_IsNumber(s)) {
        if (s->valuedouble < 1 || s->valuedouble > 65536 || s->valuedouble != floor(s->valuedouble))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: \"size\" must be a positive integer", what);
        n = (int)s->valuedouble;
        p->size_shortest_edge = p->size_longest_edge = p->size_height = p->size_width = 0;
        if (int_is_square) p->size_height = p->size_width = n;
        else p->size_shortest_edge = n;
        return VLMC_OK;
    }
    if (!cJSON_IsObject(s)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: \"size\" must be an object", what);
    int se = 0, le = 0, h = 0, w = 0;
    vlmc_status st;
    if ((st = read_dim(s, "shortest_edge", &se, what, err)) || (st = read_dim(s, "longest_edge", &le, what, err)) ||
        (st = read_dim(s, "height", &h, what, err)) || (st = read_dim(s, "width", &w, what, err)))
        return st;
    p->size_shortest_edge = p->size_longest_edge = p->size_height = p->size_width = 0;
    if (h && w) {
        p->size_height = h;
        p->size_width = w;
    } else if (se) {
        p->size_shortest_edge = se;
    } else if (le) {
        p->size_longest_edge = le;
    } else {
        return vlmc_fail(err, VLMC_ERR_FORMAT,
                         "%s: \"size\" needs shortest_edge, longest_edge, or height and width", what);
    }
    return VLMC_OK;
}

static vlmc_status read_crop(const cJSON *cfg, image_proc *p, const char *what, vlmc_error *err) {
    const cJSON *c = json_get(cfg, "crop_size");
    if (!c) return VLMC_OK;
    if (cJSON_IsNumber(c)) {
        if (c->valuedouble < 1 || c->valuedouble > 65536 || c->valuedouble != floor(c->valuedouble))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: \"crop_size\" must be a positive integer", what);
        p->crop_height = p->crop_width = (int)c->valuedouble;
        return VLMC_OK;
    }
    int h = 0, w = 0;
    vlmc_status st;
    if (!cJSON_IsObject(c)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: \"crop_size\" must be an object", what);
    if ((st = read_dim(c, "height", &h, what, err)) || (st = read_dim(c, "width", &w, what, err))) return st;
    if (!h || !w) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: \"crop_size\" needs height and width", what);
    p->crop_height = h;
    p->crop_width = w;
    return VLMC_OK;
}

/* An integer key in lo..hi when present. */
static vlmc_status read_int64(const cJSON *obj, const char *key, int64_t lo, int64_t hi, int64_t *out, const char *what,
                              vlmc_error *err) {
    const cJSON *v = json_get(obj, key);
    if (!v) return VLMC_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble < (double)lo || v->valuedouble > (double)hi ||
        v->valuedouble != floor(v->valuedouble))
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: \"%s\" must be an integer in %lld..%lld", what, key, (long long)lo,
                         (long long)hi);
    *out = (int64_t)v->valuedouble;
    return VLMC_OK;
}

/* Qwen2VLImageProcessor's keys (4.47: min_pixels / max_pixels at the top level win over size, which later
 * versions spell {shortest_edge, longest_edge}). */
static vlmc_status qwen2_vl_config(const cJSON *cfg, image_proc *p, const char *what, vlmc_error *err) {
    const int64_t big = (int64_t)1 << 40;
    int64_t ps = p->qwen_patch_size, tps = p->temporal_patch_size, ms = p->merge_size;
    const cJSON *size = json_get(cfg, "size");
    vlmc_status st;
    if (cJSON_IsObject(size) &&
        ((st = read_int64(size, "shortest_edge", 1, big, &p->qwen_min_pixels, what, err)) ||
         (st = read_int64(size, "longest_edge", 1, big, &p->qwen_max_pixels, what, err)) ||
         (st = read_int64(size, "min_pixels", 1, big, &p->qwen_min_pixels, what, err)) ||
         (st = read_int64(size, "max_pixels", 1, big, &p->qwen_max_pixels, what, err))))
        return st;
    if ((st = read_int64(cfg, "min_pixels", 1, big, &p->qwen_min_pixels, what, err)) ||
        (st = read_int64(cfg, "max_pixels", 1, big, &p->qwen_max_pixels, what, err)) ||
        (st = read_int64(cfg, "patch_size", 1, 1024, &ps, what, err)) ||
        (st = read_int64(cfg, "temporal_patch_size", 1, 64, &tps, what, err)) ||
        (st = read_int64(cfg, "merge_size", 1, 64, &ms, what, err)))
        return st;
    p->qwen_patch_size = (int)ps;
    p->temporal_patch_size = (int)tps;
    p->merge_size = (int)ms;
    return VLMC_OK;
}

/* FuyuImageProcessor's own keys. np.pad writes padding_value into the uint8 image (before rescale), so it must be
 * a value a uint8 holds. */
static vlmc_status read_fuyu(const cJSON *cfg, image_proc *p, const char *what, vlmc_error *err) {
    if (!(p->size_height && p->size_width))
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: FuyuImageProcessor needs size height and width", what);
    const cJSON *pv = json_get(cfg, "padding_value");
    if (pv) {
        if (!cJSON_IsNumber(pv) || !(pv->valuedouble >= 0 && pv->valuedouble < 256))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: \"padding_value\" must be a number in 0..255", what);
        p->pad_value = (int)pv->valuedouble; /* numpy's cast to uint8 */
    }
    const char *mode = json_string(cfg, "padding_mode", "constant");
    if (strcmp(mode, "constant"))
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: padding_mode \"%s\" is not supported (constant is)", what, mode);
    const cJSON *ps = json_get(cfg, "patch_size");
    if (ps) {
        int h = 0, w = 0;
        vlmc_status st;
        if (!cJSON_IsObject(ps)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: \"patch_size\" must be an object", what);
        if ((st = read_dim(ps, "height", &h, what, err)) || (st = read_dim(ps, "width", &w, what, err))) return st;
        if (!h || h != w)
            return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: patch_size must be square (height = width)", what);
        p->patch_size = h;
    }
    return VLMC_OK;
}

vlmc_status image_proc_from_json(const cJSON *cfg, const char *what, image_proc *p, vlmc_error *err) {
    memset(p, 0, sizeof *p);
    if (!what) what = "preprocessor_config.json";
    if (!cJSON_IsObject(cfg)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: not a JSON object", what);
    const char *type = json_string(cfg, "image_processor_type", NULL);
    if (!type) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: no \"image_processor_type\"", what);
    snprintf(p->type_name, sizeof p->type_name, "%s", type);
    const double *mean = OPENAI_CLIP_MEAN, *std = OPENAI_CLIP_STD;
    /* Class defaults (each class's __init__). */
    p->do_resize = p->do_rescale = p->do_normalize = 1;
    p->rescale_factor = 1.0 / 255.0;
    p->resample = RESAMPLE_BICUBIC;
    int int_is_square = 0;
    if (!strcmp(type, "CLIPImageProcessor")) {
        p->kind = PROC_CLIP;
        p->size_shortest_edge = 224;
        p->do_center_crop = 1;
        p->crop_height = p->crop_width = 224;
        p->do_convert_rgb = 1;
    } else if (!strcmp(type, "SiglipImageProcessor")) {
        p->kind = PROC_SIGLIP;
        p->size_height = p->size_width = 224;
        mean = IMAGENET_STANDARD_MEAN;
        std = IMAGENET_STANDARD_STD;
        int_is_square = 1;
    } else if (!strcmp(type, "LlavaNextImageProcessor")) {
        p->kind = PROC_LLAVA_NEXT;
        p->size_shortest_edge = 224;
        p->do_center_crop = 1;
        p->crop_height = p->crop_width = 224;
        p->do_pad = p->do_convert_rgb = 1;
        static const int defpp[5][2] = {{336, 672}, {672, 336}, {672, 672}, {1008, 336}, {336, 1008}};
        p->n_pinpoints = 5;
        memcpy(p->pinpoints, defpp, sizeof defpp);
    } else if (!strcmp(type, "Idefics3ImageProcessor")) {
        p->kind = PROC_IDEFICS3;
        p->size_longest_edge = 4 * 364;
        p->max_image_size = 364;
        p->resample = RESAMPLE_LANCZOS;
        p->do_image_splitting = p->do_pad = p->do_convert_rgb = 1;
        mean = IMAGENET_STANDARD_MEAN;
        std = IMAGENET_STANDARD_STD;
    } else if (!strcmp(type, "Qwen2VLImageProcessor")) {
        p->kind = PROC_QWEN2_VL;
        p->do_convert_rgb = 1;
        p->qwen_min_pixels = 56 * 56;
        p->qwen_max_pixels = 28 * 28 * 1280;
        p->qwen_patch_size = 14;
        p->temporal_patch_size = 2;
        p->merge_size = 2;
    } else if (!strcmp(type, "FuyuImageProcessor")) {
        p->kind = PROC_FUYU;
        p->size_height = 1080;
        p->size_width = 1920;
        p->resample = RESAMPLE_BILINEAR;
        p->do_pad = 1;
        p->pad_value = 1;
        p->patch_size = 30;
        mean = IMAGENET_STANDARD_MEAN;
        std = IMAGENET_STANDARD_STD;
    } else if (!strcmp(type, "VLMImageProcessor")) {
        p->kind = PROC_VLM;
        p->min_size = 14;
    } else {
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED,
                         "%s: image_processor_type \"%s\" is not supported (CLIPImageProcessor, SiglipImageProcessor, "
                         "LlavaNextImageProcessor, Idefics3ImageProcessor, Qwen2VLImageProcessor, FuyuImageProcessor, "
                         "VLMImageProcessor are)",
                         what, type);
    }
    vlmc_status st;
    p->do_resize = read_flag(cfg, "do_resize", p->do_resize);
    p->do_center_crop = read_flag(cfg, "do_center_crop", p->do_center_crop);
    p->do_rescale = read_flag(cfg, "do_rescale", p->do_rescale);
    p->do_normalize = read_flag(cfg, "do_normalize", p->do_normalize);
    p->do_pad = read_flag(cfg, "do_pad", p->do_pad);
    p->do_convert_rgb = read_flag(cfg, "do_convert_rgb", p->do_convert_rgb);
    p->do_image_splitting = read_flag(cfg, "do_image_splitting", p->do_image_splitting);
    const cJSON *rs = json_get(cfg, "resample");
    if (rs) {
        if (!cJSON_IsNumber(rs) || rs->valuedouble < 0 || rs->valuedouble > 5 || rs->valuedouble != floor(rs->valuedouble))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: \"resample\" must be a PIL filter number 0..5", what);
        p->resample = (resample_filter)(int)rs->valuedouble;
    }
    const cJSON *rf = json_get(cfg, "rescale_factor");
    if (rf) {
        if (!cJSON_IsNumber(rf) || !isfinite(rf->valuedouble))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: \"rescale_factor\" must be a number", what);
        p->rescale_factor = rf->valuedouble;
    }
    if ((st = read_triplet(cfg, "image_mean", mean, p->mean, what, err)) ||
        (st = read_triplet(cfg, "image_std", std, p->std, what, err)))
        return st;
    for (int c = 0; c < 3; c++)
        if (p->do_normalize && (p->std[c] == 0 || !isfinite(p->std[c]) || !isfinite(p->mean[c])))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: image_std must be finite and non-zero", what);
    if (p->kind == PROC_QWEN2_VL) return qwen2_vl_config(cfg, p, what, err);
    if ((st = read_size(cfg, p, int_is_square, what, err))) return st;
    if ((st = read_crop(cfg, p, what, err))) return st;
    if (p->kind == PROC_VLM) {
        /* VLMImageProcessor(image_size, min_size, ...): always rescales; its __init__ sets background_color to
         * int(x * 255) of image_mean (the config's background_color key is overwritten), (127, 127, 127) for None */
        p->do_rescale = 1;
        p->size_longest_edge = 0;
        if ((st = read_dim(cfg, "image_size", &p->size_longest_edge, what, err)) ||
            (st = read_dim(cfg, "min_size", &p->min_size, what, err)))
            return st;
        if (!p->size_longest_edge) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: VLMImageProcessor needs image_size", what);
        const cJSON *mv = json_get(cfg, "image_mean");
        for (int c = 0; c < 3; c++) {
            double b = cJSON_IsNull(mv) ? 127 : p->mean[c] * 255;
            p->background[c] = b < 0 ? 0 : b > 255 ? 255 : (int)b;
        }
        if (cJSON_IsNull(mv) && p->do_normalize)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: do_normalize needs image_mean", what);
    }
    if (p->kind == PROC_SIGLIP && !(p->size_height && p->size_width))
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: SiglipImageProcessor needs size height and width", what);
    if (p->kind == PROC_IDEFICS3) {
        if (!p->size_longest_edge && !(p->size_height && p->size_width))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: Idefics3ImageProcessor needs size longest_edge", what);
        const cJSON *m = json_get(cfg, "max_image_size");
        if (m) {
            if (!cJSON_IsObject(m)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: \"max_image_size\" must be an object", what);
            if ((st = read_dim(m, "longest_edge", &p->max_image_size, what, err))) return st;
        }
    }
    if (p->kind == PROC_FUYU && (st = read_fuyu(cfg, p, what, err))) return st;
    if (p->kind == PROC_CLIP || p->kind == PROC_LLAVA_NEXT) {
        if (p->size_longest_edge)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %s size must have shortest_edge or height and width", what, type);
    }
    if (p->kind == PROC_LLAVA_NEXT) {
        const cJSON *pp = json_get(cfg, "image_grid_pinpoints");
        if (pp) {
            int n = cJSON_IsArray(pp) ? cJSON_GetArraySize(pp) : -1;
            if (n < 1 || n > PROC_MAX_PINPOINTS)
                return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: \"image_grid_pinpoints\" must be a list of 1..%d pairs", what,
                                 PROC_MAX_PINPOINTS);
            for (int i = 0; i < n; i++) {
                const cJSON *e = cJSON_GetArrayItem(pp, i);
                const cJSON *a = cJSON_GetArrayItem(e, 0), *b = cJSON_GetArrayItem(e, 1);
                if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 2 || !cJSON_IsNumber(a) || !cJSON_IsNumber(b) ||
                    a->valuedouble < 1 || b->valuedouble < 1 || a->valuedouble > 65536 || b->valuedouble > 65536 ||
                    a->valuedouble != floor(a->valuedouble) || b->valuedouble != floor(b->valuedouble))
                    return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: image_grid_pinpoints[%d] must be [height, width]", what, i);
                p->pinpoints[i][0] = (int)a->valuedouble;
                p->pinpoints[i][1] = (int)b->valuedouble;
            }
            p->n_pinpoints = n;
        }
    }
    return VLMC_OK;
}

void image_proc_set_model_config(image_proc *p, const cJSON *config) {
    if (!cJSON_IsObject(config)) return;
    if (p->kind == PROC_FUYU) return; /* its patch_size is its own */
    const cJSON *vc = json_get(config, "vision_config");
    const cJSON *src = cJSON_IsObject(vc) ? vc : config;
    int64_t ps = json_int(src, "patch_size", 0);
    if (!ps && cJSON_IsObject(vc)) {
        /* save_pretrained omits nested fields equal to their class defaults */
        const char *vt = json_string(vc, "model_type", "");
        if (!strcmp(vt, "clip_vision_model") || !strcmp(vt, "idefics3_vision")) ps = 32;
        else if (!strcmp(vt, "siglip_vision_model")) ps = 16;
    }
    if (ps > 0 && ps <= 65536) p->patch_size = (int)ps;
    const char *strat = json_string(config, "vision_feature_select_strategy", NULL);
    if (strat) p->strategy_full = !strcmp(strat, "full");
    /* processor_config.json spells some of these out directly */
    int64_t seq = json_int(config, "image_seq_len", json_int(config, "num_image_tokens", 0)); /* VLChatProcessor */
    if (seq > 0 && seq < 1000000000) p->image_seq_len = (int)seq;
    if (p->kind == PROC_IDEFICS3 && !seq) {
        int64_t is = json_int(src, "image_size", cJSON_IsObject(vc) ? 224 : 0); /* Idefics3VisionConfig default */
        double sf = json_number(config, "scale_factor", cJSON_IsObject(vc) ? 2 : 0);
        if (ps > 0 && is > 0 && sf > 0) {
            double n = (double)((is / ps) * (is / ps)) / (sf * sf); /* int(((image_size // patch_size) ** 2) / (scale_factor**2)) */
            if (n >= 1 && n < 1e9) p->image_seq_len = (int)n;
        }
    }
}

/* ---- pixel helpers ------------------------------------------------------------------ */

void proc_make_lut(const image_proc *p, float lut[3][256]) {
    for (int c = 0; c < 3; c++) {
        float m = (float)p->mean[c], s = (float)p->std[c];
        for (int v = 0; v < 256; v++) {
            float x = p->do_rescale ? (float)((double)v * p->rescale_factor) : (float)v;
            if (p->do_normalize) x = (x - m) / s;
            lut[c][v] = x;
        }
    }
}

/* Python's int() on a positive float, saturated far above any allowed size. */
static int dtoi(double v) {
    if (!(v < 1073741824.0)) return 1073741824;
    if (v < 0) return 0;
    return (int)v;
}

/* math.ceil(v / m) * m, saturated. */
static int ceil_mult(int v, int m) {
    int64_t r = (int64_t)ceil((double)v / m) * m;
    return r > 1073741824 ? 1073741824 : (int)r;
}

static int64_t floordiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
    return q;
}

static uint64_t max_px(const image_proc *p) { return p->max_pixels ? p->max_pixels : PROC_DEFAULT_MAX_PIXELS; }

static vlmc_status img_new(rgb_image *im, int w, int h, vlmc_error *err) {
    im->data = NULL;
    if (w < 1 || h < 1 || (uint64_t)w * (uint64_t)h > PROC_DEFAULT_MAX_PIXELS)
        return vlmc_fail(err, VLMC_ERR_LIMIT, "image processor: intermediate image of %dx%d pixels", w, h);
    im->width = w;
    im->height = h;
    im->data = calloc((size_t)w * h, 3);
    if (!im->data) return vlmc_fail(err, VLMC_ERR_NOMEM, "image processor: out of memory for %dx%d", w, h);
    return VLMC_OK;
}

static vlmc_status check_px(const image_proc *p, int w, int h, vlmc_error *err) {
    if ((uint64_t)(w > 0 ? w : 0) * (uint64_t)(h > 0 ? h : 0) > max_px(p))
        return vlmc_fail(err, VLMC_ERR_LIMIT, "%s: an intermediate image of %dx%d is over the limit of %llu pixels",
                         p->type_name, w, h, (unsigned long long)max_px(p));
    return VLMC_OK;
}

static vlmc_status img_resize(const rgb_image *in, int w, int h, resample_filter f, rgb_image *out, vlmc_error *err) {
    if (w < 1 || h < 1)
        return vlmc_fail(err, VLMC_ERR_ARG, "image processor: resize of %dx%d to %dx%d", in->width, in->height, w, h);
    vlmc_status st = img_new(out, w, h, err);
    if (st) return st;
    st = resize_u8(in->data, in->width, in->height, 3, out->data, w, h, f, err);
    if (st) rgb_image_free(out);
    return st;
}

/* Copies the rectangle [y0, y0+h) x [x0, x0+w) of in (zeros outside in). */
static vlmc_status img_crop(const rgb_image *in, int x0, int y0, int w, int h, rgb_image *out, vlmc_error *err) {
    vlmc_status st = img_new(out, w, h, err);
    if (st) return st;
    for (int y = 0; y < h; y++) {
        int sy = y0 + y;
        if (sy < 0 || sy >= in->height) continue;
        for (int x = 0; x < w; x++) {
            int sx = x0 + x;
            if (sx < 0 || sx >= in->width) continue;
            memcpy(out->data + ((size_t)y * w + x) * 3, in->data + ((size_t)sy * in->width + sx) * 3, 3);
        }
    }
    return VLMC_OK;
}

/* image_transforms.center_crop, including its zero padding when the image is smaller. */
static vlmc_status img_center_crop(const rgb_image *in, int ch, int cw, rgb_image *out, vlmc_error *err) {
    int oh = in->height, ow = in->width;
    int64_t top = floordiv(oh - ch, 2), left = floordiv(ow - cw, 2);
    int64_t bottom = top + ch, right = left + cw;
    if (top >= 0 && bottom <= oh && left >= 0 && right <= ow) return img_crop(in, (int)left, (int)top, cw, ch, out, err);
    int nh = ch > oh ? ch : oh, nw = cw > ow ? cw : ow;
    int top_pad = (nh - oh + 1) / 2, left_pad = (nw - ow + 1) / 2; /* ceil(x / 2) */
    top += top_pad;
    bottom += top_pad;
    left += left_pad;
    right += left_pad;
    int64_t t = top > 0 ? top : 0, b = bottom < nh ? bottom : nh;
    int64_t l = left > 0 ? left : 0, r = right < nw ? right : nw;
    /* The padded canvas holds the image at (top_pad, left_pad). */
    return img_crop(in, (int)(l - left_pad), (int)(t - top_pad), (int)(r - l), (int)(b - t), out, err);
}

/* get_resize_output_image_size(default_to_square=False) for shortest_edge s: (h, w). */
static void shortest_edge_size(int h, int w, int s, int *oh, int *ow) {
    int shrt = w <= h ? w : h, lng = w <= h ? h : w;
    int new_long = dtoi((double)((int64_t)s * lng) / shrt);
    if (w <= h) {
        *oh = new_long;
        *ow = s;
    } else {
        *oh = s;
        *ow = new_long;
    }
}

/* CLIPImageProcessor.preprocess for one image: resize, center crop (uint8). */
static vlmc_status clip_like(const image_proc *p, const rgb_image *in, rgb_image *out, vlmc_error *err) {
    rgb_image a = {0}, b = {0};
    vlmc_status st = VLMC_OK;
    const rgb_image *cur = in;
    if (p->do_resize) {
        int h, w;
        if (p->size_shortest_edge) shortest_edge_size(in->height, in->width, p->size_shortest_edge, &h, &w);
        else {
            h = p->size_height;
            w = p->size_width;
        }
        if ((st = check_px(p, w, h, err)) || (st = img_resize(cur, w, h, p->resample, &a, err))) return st;
        cur = &a;
    }
    if (p->do_center_crop && p->crop_height && p->crop_width) {
        if ((st = check_px(p, p->crop_width, p->crop_height, err))) {
            rgb_image_free(&a);
            return st;
        }
        if ((st = img_center_crop(cur, p->crop_height, p->crop_width, &b, err))) {
            rgb_image_free(&a);
            return st;
        }
        rgb_image_free(&a);
        *out = b;
        return VLMC_OK;
    }
    if (cur == &a) *out = a;
    else {
        st = img_crop(in, 0, 0, in->width, in->height, out, err);
    }
    return st;
}

/* VLMImageProcessor.resize: the longest side to image_size (the other max(int(side / longest · image_size),
 * min_size)), PIL bicubic, then expand2square: centred ((long - short) // 2) on a square of the background colour. */
static vlmc_status vlm_resize_pad(const image_proc *p, const rgb_image *in, rgb_image *out, vlmc_error *err) {
    const int S = p->size_longest_edge, W = in->width, H = in->height, mx = W > H ? W : H;
    int h = dtoi((double)H / mx * S), w = dtoi((double)W / mx * S);
    if (h < p->min_size) h = p->min_size;
    if (w < p->min_size) w = p->min_size;
    rgb_image r = {0};
    vlmc_status st;
    if ((st = check_px(p, w, h, err)) || (st = img_resize(in, w, h, RESAMPLE_BICUBIC, &r, err))) return st;
    const int side = w > h ? w : h;
    if ((st = check_px(p, side, side, err)) || (st = img_new(out, side, side, err))) {
        rgb_image_free(&r);
        return st;
    }
    for (size_t i = 0; i < (size_t)side * side; i++)
        for (int c = 0; c < 3; c++) out->data[i * 3 + c] = (uint8_t)p->background[c];
    const int y0 = (side - h) / 2, x0 = (side - w) / 2;
    for (int y = 0; y < h; y++) memcpy(out->data + ((size_t)(y0 + y) * side + x0) * 3, r.data + (size_t)y * w * 3, (size_t)w * 3);
    rgb_image_free(&r);
    return VLMC_OK;
}

/* ---- output assembly ------------------------------------------------------------------ */

static vlmc_status frames_to_output(const image_proc *p, rgb_image *frames, int n, proc_output *o, vlmc_error *err) {
    int H = 0, W = 0;
    for (int i = 0; i < n; i++) {
        if (frames[i].height > H) H = frames[i].height;
        if (frames[i].width > W) W = frames[i].width;
    }
    if (p->kind != PROC_IDEFICS3)
        for (int i = 0; i < n; i++)
            if (frames[i].height != H || frames[i].width != W)
                return vlmc_fail(err, VLMC_ERR_UNSUPPORTED,
                                 "%s: the processor makes tiles of different sizes (%dx%d and %dx%d); check crop_size and "
                                 "image_grid_pinpoints",
                                 p->type_name, frames[0].width, frames[0].height, frames[i].width, frames[i].height);
    if ((uint64_t)n * H * W > max_px(p))
        return vlmc_fail(err, VLMC_ERR_LIMIT, "%s: output of %d frames of %dx%d is over the limit of %llu pixels",
                         p->type_name, n, W, H, (unsigned long long)max_px(p));
    o->n_frames = n;
    o->frame_h = H;
    o->frame_w = W;
    size_t plane = (size_t)H * W, per = plane * 3;
    o->u8 = calloc((size_t)n * per, 1);
    o->pixel_values = malloc((size_t)n * per * sizeof(float));
    if (!o->u8 || !o->pixel_values) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", p->type_name);
    proc_make_lut(p, o->lut);
    if (p->kind == PROC_IDEFICS3) {
        o->pixel_attention_mask = calloc((size_t)n * plane, sizeof(int32_t));
        if (!o->pixel_attention_mask) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", p->type_name);
    }
    for (int i = 0; i < n; i++) {
        const rgb_image *f = &frames[i];
        uint8_t *u = o->u8 + (size_t)i * per;
        float *pv = o->pixel_values + (size_t)i * per;
        for (size_t k = 0; k < per; k++) pv[k] = 0.0f; /* Idefics3 pads after normalising, with 0 */
        for (int y = 0; y < f->height; y++)
            for (int x = 0; x < f->width; x++)
                for (int c = 0; c < 3; c++) {
                    uint8_t v = f->data[((size_t)y * f->width + x) * 3 + c];
                    u[c * plane + (size_t)y * W + x] = v;
                    pv[c * plane + (size_t)y * W + x] = o->lut[c][v];
                }
        if (o->pixel_attention_mask)
            for (int y = 0; y < f->height; y++)
                for (int x = 0; x < f->width; x++) o->pixel_attention_mask[(size_t)i * plane + (size_t)y * W + x] = 1;
    }
    if (p->kind == PROC_CLIP || p->kind == PROC_SIGLIP || p->kind == PROC_FUYU || p->kind == PROC_VLM) {
        o->ndim = 4;
        o->shape[0] = 1;
        o->shape[1] = 3;
        o->shape[2] = H;
        o->shape[3] = W;
    } else {
        o->ndim = 5;
        o->shape[0] = 1;
        o->shape[1] = n;
        o->shape[2] = 3;
        o->shape[3] = H;
        o->shape[4] = W;
    }
    return VLMC_OK;
}

/* ---- LLaVA-NeXT ------------------------------------------------------------------------- */

void llava_next_best_resolution(const image_proc *p, int oh, int ow, int *best_h, int *best_w) {
    int64_t max_eff = 0;
    double min_waste = INFINITY;
    *best_h = *best_w = 0;
    for (int i = 0; i < p->n_pinpoints; i++) {
        int h = p->pinpoints[i][0], w = p->pinpoints[i][1];
        double sw = (double)w / ow, sh = (double)h / oh;
        double scale = sw < sh ? sw : sh;
        int64_t dw = (int64_t)(ow * scale), dh = (int64_t)(oh * scale);
        int64_t eff = dw * dh, orig = (int64_t)ow * oh;
        if (orig < eff) eff = orig;
        double waste = (double)((int64_t)w * h - eff);
        if (eff > max_eff || (eff == max_eff && waste < min_waste)) {
            max_eff = eff;
            min_waste = waste;
            *best_h = h;
            *best_w = w;
        }
    }
}

static double py_round7(double x) { return nearbyint(x * 1e7) / 1e7; }

int64_t llava_next_num_tokens(const image_proc *p, int orig_h, int orig_w) {
    if (p->patch_size <= 0 || !p->crop_height || !p->crop_width) return -1;
    int bh, bw;
    llava_next_best_resolution(p, orig_h, orig_w, &bh, &bw);
    int height = p->crop_height, width = p->crop_width;
    int64_t scale_h = bh / height, scale_w = bw / width;
    int64_t ph = height / p->patch_size, pw = width / p->patch_size;
    int64_t cur_h = ph * scale_h, cur_w = pw * scale_w;
    if (cur_h <= 0 || cur_w <= 0) return -1;
    double orig_ar = (double)orig_w / orig_h, cur_ar = (double)cur_w / (double)cur_h;
    if (orig_ar > cur_ar) {
        int64_t new_h = (int64_t)py_round7(orig_h * ((double)cur_w / orig_w));
        int64_t pad = floordiv(cur_h - new_h, 2);
        cur_h -= pad * 2;
    } else {
        int64_t new_w = (int64_t)py_round7(orig_w * ((double)cur_h / orig_h));
        int64_t pad = floordiv(cur_w - new_w, 2);
        cur_w -= pad * 2;
    }
    return cur_h * cur_w + cur_h + ph * pw + (p->strategy_full ? 1 : 0);
}

static vlmc_status run_llava_next(const image_proc *p, const rgb_image *im, proc_output *o, vlmc_error *err) {
    if (!p->crop_height || p->n_pinpoints < 1)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: needs crop_size and image_grid_pinpoints", p->type_name);
    int H = im->height, W = im->width, P = p->crop_height;
    int bh, bw;
    llava_next_best_resolution(p, H, W, &bh, &bw);
    if (bh <= 0 || bw <= 0) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: no usable image_grid_pinpoints", p->type_name);
    /* get_patch_output_size */
    double sw = (double)bw / W, sh = (double)bh / H;
    int nh, nw;
    if (sw < sh) {
        nw = bw;
        double t = ceil(H * sw);
        nh = t < bh ? (int)t : bh;
    } else {
        nh = bh;
        double t = ceil(W * sh);
        nw = t < bw ? (int)t : bw;
    }
    int64_t ntiles = (int64_t)((bh + P - 1) / P) * ((bw + P - 1) / P);
    if (ntiles > PROC_MAX_FRAMES) return vlmc_fail(err, VLMC_ERR_LIMIT, "%s: %lld tiles", p->type_name, (long long)ntiles);
    rgb_image resized = {0}, padded = {0}, base = {0};
    rgb_image *raw = calloc((size_t)ntiles + 1, sizeof(rgb_image));
    rgb_image *frames = calloc((size_t)ntiles + 1, sizeof(rgb_image));
    int nraw = 0, nfr = 0;
    vlmc_status st = VLMC_OK;
    if (!raw || !frames) {
        st = vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", p->type_name);
        goto done;
    }
    if ((st = check_px(p, bw, bh, err)) || (st = img_resize(im, nw, nh, p->resample, &resized, err))) goto done;
    /* _pad_for_patching as in 4.47.1: paste = (target - new) // 2 zeros on BOTH sides, so an
     * odd remainder leaves the padded image one pixel short of the pinpoint; the last
     * row/column of tiles is then narrower and _preprocess resizes it (shortest edge)
     * and center-crops it back to crop_size. */
    int paste_x = (bw - nw) / 2, paste_y = (bh - nh) / 2;
    int pw = nw + 2 * paste_x, ph = nh + 2 * paste_y;
    if ((st = img_crop(&resized, -paste_x, -paste_y, pw, ph, &padded, err))) goto done;
    /* resized_original_image = resize(image, (S, S)) with S = shortest_edge or min(height, width) */
    int S = p->size_shortest_edge ? p->size_shortest_edge
                                  : (p->size_height < p->size_width ? p->size_height : p->size_width);
    if ((st = check_px(p, S, S, err)) || (st = img_resize(im, S, S, p->resample, &raw[nraw], err))) goto done;
    nraw++;
    for (int i = 0; i < ph; i += P)
        for (int j = 0; j < pw; j += P) {
            int th = i + P <= ph ? P : ph - i, tw = j + P <= pw ? P : pw - j;
            if ((st = img_crop(&padded, j, i, tw, th, &raw[nraw], err))) goto done;
            nraw++;
        }
    for (int i = 0; i < nraw; i++) {
        if ((st = clip_like(p, &raw[i], &frames[i], err))) goto done;
        nfr++;
    }
    if ((st = frames_to_output(p, frames, nfr, o, err))) goto done;
    o->has_image_sizes = 1;
    o->image_sizes[0] = H;
    o->image_sizes[1] = W;
    o->num_image_tokens = llava_next_num_tokens(p, H, W);
done:
    rgb_image_free(&resized);
    rgb_image_free(&padded);
    rgb_image_free(&base);
    if (raw)
        for (int i = 0; i < nraw; i++) rgb_image_free(&raw[i]);
    if (frames)
        for (int i = 0; i < nfr; i++) rgb_image_free(&frames[i]);
    free(raw);
    free(frames);
    return st;
}

/* ---- Idefics3 ---------------------------------------------------------------------------- */

static void idefics3_resize_size(int h, int w, int max_len, int *oh, int *ow) {
    /* _resize_output_size_rescale_to_max_len(min_len=1) */
    double ar = (double)w / h;
    if (w >= h) {
        w = max_len;
        h = dtoi(w / ar);
        if (h % 2 != 0) h += 1;
    } else {
        h = max_len;
        w = dtoi(h * ar);
        if (w % 2 != 0) w += 1;
    }
    if (h < 1) h = 1;
    if (w < 1) w = 1;
    /* Later transformers versions then clamp the longest side to 1820
     * (_resize_output_size_scale_below_upper_bound); 4.47.1 does not, as the SmolVLM
     * fixture (longest_edge 2048) shows bit-exactly. */
    *oh = h;
    *ow = w;
}

static vlmc_status run_idefics3(const image_proc *p, const rgb_image *im, proc_output *o, vlmc_error *err) {
    rgb_image a = {0}, b = {0};
    rgb_image *frames = NULL;
    int nfr = 0, rows = 0, cols = 0;
    vlmc_status st = VLMC_OK;
    const rgb_image *cur = im;
    if (p->do_resize) {
        int h, w;
        if (p->size_longest_edge) idefics3_resize_size(im->height, im->width, p->size_longest_edge, &h, &w);
        else {
            h = p->size_height;
            w = p->size_width;
        }
        if ((st = check_px(p, w, h, err)) || (st = img_resize(cur, w, h, p->resample, &a, err))) goto done;
        cur = &a;
    }
    if (p->do_image_splitting) {
        int M = p->max_image_size;
        if (M <= 0) {
            st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: needs max_image_size.longest_edge", p->type_name);
            goto done;
        }
        /* resize_for_vision_encoder */
        int h = cur->height, w = cur->width;
        double ar = (double)w / h;
        if (w >= h) {
            w = ceil_mult(w, M);
            h = dtoi(w / ar);
            h = ceil_mult(h, M);
        } else {
            h = ceil_mult(h, M);
            w = dtoi(h * ar);
            w = ceil_mult(w, M);
        }
        if (h < 1 || w < 1) {
            st = vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: image aspect ratio too extreme (%dx%d)", p->type_name,
                           im->width, im->height);
            goto done;
        }
        if ((st = check_px(p, w, h, err)) || (st = check_px(p, M, M, err)) ||
            (st = img_resize(cur, w, h, p->resample, &b, err)))
            goto done;
        cur = &b;
        /* split_image */
        if (h > M || w > M) {
            rows = (int)ceil((double)h / M);
            cols = (int)ceil((double)w / M);
            if ((int64_t)rows * cols + 1 > PROC_MAX_FRAMES) {
                st = vlmc_fail(err, VLMC_ERR_LIMIT, "%s: %d x %d tiles", p->type_name, rows, cols);
                goto done;
            }
            int opt_h = (int)ceil((double)h / rows), opt_w = (int)ceil((double)w / cols);
            frames = calloc((size_t)rows * cols + 1, sizeof(rgb_image));
            if (!frames) {
                st = vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", p->type_name);
                goto done;
            }
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++) {
                    int sx = c * opt_w, sy = r * opt_h;
                    int ex = sx + opt_w < w ? sx + opt_w : w, ey = sy + opt_h < h ? sy + opt_h : h;
                    if ((st = img_crop(cur, sx, sy, ex - sx, ey - sy, &frames[nfr], err))) goto done;
                    nfr++;
                }
            if ((st = img_resize(cur, M, M, p->resample, &frames[nfr], err))) goto done;
            nfr++;
        }
    }
    if (!frames) {
        frames = calloc(1, sizeof(rgb_image));
        if (!frames) {
            st = vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", p->type_name);
            goto done;
        }
        if ((st = img_crop(cur, 0, 0, cur->width, cur->height, &frames[0], err))) goto done;
        nfr = 1;
    }
    if ((st = frames_to_output(p, frames, nfr, o, err))) goto done;
    o->has_rows_cols = 1;
    o->rows = rows;
    o->cols = cols;
    o->num_image_tokens = p->image_seq_len > 0 ? (int64_t)p->image_seq_len * nfr : -1;
done:
    rgb_image_free(&a);
    rgb_image_free(&b);
    if (frames)
        for (int i = 0; i < nfr; i++) rgb_image_free(&frames[i]);
    free(frames);
    return st;
}

/* ---- Qwen2-VL ------------------------------------------------------------------------------ */

/* smart_resize (4.47): both sides rounded (Python's round, half to even) to multiples of factor, then scaled by a
 * common beta into [min_pixels, max_pixels]. */
static vlmc_status smart_resize(const image_proc *p, int h, int w, int factor, int *oh, int *ow, vlmc_error *err) {
    if (h < factor || w < factor)
        return vlmc_fail(err, VLMC_ERR_ARG, "%s: height:%d or width:%d must be larger than factor:%d", p->type_name, h, w,
                         factor);
    if ((double)(h > w ? h : w) / (h > w ? w : h) > 200)
        return vlmc_fail(err, VLMC_ERR_ARG, "%s: absolute aspect ratio must be smaller than 200, got %g", p->type_name,
                         (double)(h > w ? h : w) / (h > w ? w : h));
    int64_t hb = (int64_t)nearbyint((double)h / factor) * factor, wb = (int64_t)nearbyint((double)w / factor) * factor;
    if (hb * wb > p->qwen_max_pixels) {
        double beta = sqrt((double)((int64_t)h * w) / (double)p->qwen_max_pixels);
        hb = (int64_t)floor((double)h / beta / factor) * factor;
        wb = (int64_t)floor((double)w / beta / factor) * factor;
    } else if (hb * wb < p->qwen_min_pixels) {
        double beta = sqrt((double)p->qwen_min_pixels / (double)((int64_t)h * w));
        hb = (int64_t)ceil((double)h * beta / factor) * factor;
        wb = (int64_t)ceil((double)w * beta / factor) * factor;
    }
    if (hb < factor || wb < factor || hb > 65536 || wb > 65536)
        return vlmc_fail(err, VLMC_ERR_LIMIT, "%s: smart_resize of %dx%d gives %lldx%lld", p->type_name, w, h,
                         (long long)wb, (long long)hb);
    *oh = (int)hb;
    *ow = (int)wb;
    return VLMC_OK;
}

/* Qwen2VLImageProcessor._preprocess for one image: smart_resize (PIL on uint8), rescale / normalize (the lut),
 * the frame repeated temporal_patch_size times, patches flattened as rows (t, h/m, w/m, m, m) of
 * (channel, temporal, patch row, patch column). */
static vlmc_status run_qwen2_vl(const image_proc *p, const rgb_image *im, proc_output *o, vlmc_error *err) {
    const int P = p->qwen_patch_size, M = p->merge_size, TP = p->temporal_patch_size;
    rgb_image a = {0};
    const rgb_image *cur = im;
    vlmc_status st;
    if (p->do_resize) {
        int h = 0, w = 0;
        if ((st = smart_resize(p, im->height, im->width, P * M, &h, &w, err)) || (st = check_px(p, w, h, err)) ||
            (st = img_resize(im, w, h, p->resample, &a, err)))
            return st;
        cur = &a;
    }
    const int H = cur->height, W = cur->width;
    if (H % (P * M) || W % (P * M)) {
        rgb_image_free(&a);
        return vlmc_fail(err, VLMC_ERR_ARG, "%s: a %dx%d image is not a whole number of %d-pixel merged patches",
                         p->type_name, W, H, P * M);
    }
    const int gh = H / P, gw = W / P;
    const size_t rows = (size_t)gh * gw, row = (size_t)3 * TP * P * P;
    if ((uint64_t)rows * P * P * TP > max_px(p)) {
        rgb_image_free(&a);
        return vlmc_fail(err, VLMC_ERR_LIMIT, "%s: output of %zu patches × %d frames is over the limit of %llu pixels",
                         p->type_name, rows, TP, (unsigned long long)max_px(p));
    }
    o->u8 = malloc(rows * row);
    o->pixel_values = malloc(rows * row * sizeof(float));
    if (!o->u8 || !o->pixel_values) {
        rgb_image_free(&a);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", p->type_name);
    }
    proc_make_lut(p, o->lut);
    size_t r = 0;
    for (int bh = 0; bh < gh / M; bh++)
        for (int bw = 0; bw < gw / M; bw++)
            for (int mh = 0; mh < M; mh++)
                for (int mw = 0; mw < M; mw++, r++) {
                    const int y0 = (bh * M + mh) * P, x0 = (bw * M + mw) * P;
                    uint8_t *u = o->u8 + r * row;
                    float *pv = o->pixel_values + r * row;
                    for (int c = 0; c < 3; c++)
                        for (int t = 0; t < TP; t++)
                            for (int y = 0; y < P; y++)
                                for (int x = 0; x < P; x++) {
                                    size_t k = (((size_t)c * TP + t) * P + y) * P + x;
                                    u[k] = cur->data[((size_t)(y0 + y) * W + x0 + x) * 3 + c];
                                    pv[k] = o->lut[c][u[k]];
                                }
                }
    o->n_frames = 1;
    o->frame_h = H;
    o->frame_w = W;
    o->ndim = 2;
    o->shape[0] = (int64_t)rows;
    o->shape[1] = (int64_t)row;
    o->has_grid_thw = 1;
    o->grid_thw[0] = 1;
    o->grid_thw[1] = gh;
    o->grid_thw[2] = gw;
    o->num_image_tokens = (int64_t)rows / ((int64_t)M * M);
    rgb_image_free(&a);
    return VLMC_OK;
}

/* ---- Fuyu ------------------------------------------------------------------------------------ */

/* FuyuImageProcessor.preprocess for one image: resize (only when larger than size, keeping the aspect ratio:
 * int(side * min(target_h / h, target_w / w))), pad bottom / right to size with padding_value on the uint8 image;
 * the unpadded size and the patch grid over it (preprocess_with_tokenizer_info: ceil(side / patch)). */
static vlmc_status run_fuyu(const image_proc *p, const rgb_image *im, proc_output *o, vlmc_error *err) {
    rgb_image a = {0}, f = {0};
    const rgb_image *cur = im;
    const int H = p->size_height, W = p->size_width;
    vlmc_status st = VLMC_OK;
    if (p->do_resize && (im->width > W || im->height > H)) {
        double s = fmin((double)H / im->height, (double)W / im->width);
        int nh = dtoi(im->height * s), nw = dtoi(im->width * s);
        if ((st = img_resize(im, nw, nh, p->resample, &a, err))) return st;
        cur = &a;
    }
    if (p->do_pad && (cur->width > W || cur->height > H)) {
        rgb_image_free(&a);
        return vlmc_fail(err, VLMC_ERR_ARG, "%s: a %dx%d image does not fit the %dx%d canvas (do_resize is off)",
                         p->type_name, cur->width, cur->height, W, H);
    }
    const int uh = cur->height, uw = cur->width;
    if (p->do_pad) {
        if ((st = check_px(p, W, H, err)) || (st = img_new(&f, W, H, err))) goto done;
        memset(f.data, p->pad_value, (size_t)W * H * 3);
        for (int y = 0; y < uh; y++) memcpy(f.data + (size_t)y * W * 3, cur->data + (size_t)y * uw * 3, (size_t)uw * 3);
    } else if ((st = img_crop(cur, 0, 0, uw, uh, &f, err))) {
        goto done;
    }
    if ((st = frames_to_output(p, &f, 1, o, err))) goto done;
    o->has_image_sizes = 1;
    o->image_sizes[0] = uh;
    o->image_sizes[1] = uw;
    o->has_rows_cols = 1;
    o->rows = (uh + p->patch_size - 1) / p->patch_size;
    o->cols = (uw + p->patch_size - 1) / p->patch_size;
    o->num_image_tokens = (int64_t)o->rows * (o->cols + 1); /* |SPEAKER| per patch, |NEWLINE| per row */
done:
    rgb_image_free(&a);
    rgb_image_free(&f);
    return st;
}

/* ---- entry point ---------------------------------------------------------------------------- */

vlmc_status image_proc_run(const image_proc *p, const rgb_image *im, proc_output *o, vlmc_error *err) {
    memset(o, 0, sizeof *o);
    o->num_image_tokens = -1;
    if (!im || !im->data || im->width < 1 || im->height < 1)
        return vlmc_fail(err, VLMC_ERR_ARG, "%s: empty image", p->type_name);
    vlmc_status st;
    if (p->kind == PROC_LLAVA_NEXT) st = run_llava_next(p, im, o, err);
    else if (p->kind == PROC_IDEFICS3) st = run_idefics3(p, im, o, err);
    else if (p->kind == PROC_QWEN2_VL) st = run_qwen2_vl(p, im, o, err);
    else if (p->kind == PROC_FUYU) st = run_fuyu(p, im, o, err);
    else if (p->kind == PROC_VLM) {
        rgb_image f = {0};
        st = vlm_resize_pad(p, im, &f, err);
        if (!st) st = frames_to_output(p, &f, 1, o, err);
        rgb_image_free(&f);
        if (!st && p->image_seq_len > 0) o->num_image_tokens = p->image_seq_len;
    } else {
        rgb_image f = {0};
        st = clip_like(p, im, &f, err);
        if (!st) st = frames_to_output(p, &f, 1, o, err);
        rgb_image_free(&f);
        if (!st && p->patch_size > 0)
            o->num_image_tokens = (int64_t)(o->frame_h / p->patch_size) * (o->frame_w / p->patch_size) +
                                  (p->kind == PROC_CLIP && p->strategy_full ? 1 : 0);
    }
    if (st) proc_output_free(o);
    return st;
}

void proc_output_free(proc_output *o) {
    if (!o) return;
    free(o->u8);
    free(o->pixel_values);
    free(o->pixel_attention_mask);
    memset(o, 0, sizeof *o);
    o->num_image_tokens = -1;
}
