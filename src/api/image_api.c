/* The image functions of include/vlmc.h, over src/vision. */
#include <stdlib.h>
#include <string.h>

#include "vlmc.h"
#include "core/error.h"
#include "core/file.h"
#include "formats/arrays.h"
#include "formats/json.h"
#include "models/vlm.h"
#include "vision/image.h"
#include "vision/processors.h"

struct vlmc_image {
    rgb_image im;
};

struct vlmc_image_processor {
    image_proc p;
};

static void to_limits(const vlmc_image_limits *in, image_limits *out) {
    image_limits_default(out);
    if (in) {
        if (in->max_pixels) out->max_pixels = in->max_pixels;
        if (in->max_file_bytes) out->max_file_bytes = in->max_file_bytes;
    }
}

static vlmc_status wrap(rgb_image *im, vlmc_image **out, vlmc_error *err) {
    vlmc_image *h = malloc(sizeof *h);
    if (!h) {
        rgb_image_free(im);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    }
    h->im = *im;
    *out = h;
    return VLMC_OK;
}

vlmc_status vlmc_image_load_file(const char *path, const vlmc_image_limits *limits, vlmc_image **out,
                                 vlmc_error *err) {
    if (!out || !path) return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_image_load_file: NULL argument");
    *out = NULL;
    image_limits lim;
    to_limits(limits, &lim);
    rgb_image im;
    vlmc_status st = image_decode_file(path, &lim, &im, err);
    return st ? st : wrap(&im, out, err);
}

vlmc_status vlmc_image_load_memory(const void *data, size_t len, const char *name, const vlmc_image_limits *limits,
                                   vlmc_image **out, vlmc_error *err) {
    if (!out || (!data && len)) return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_image_load_memory: NULL argument");
    *out = NULL;
    image_limits lim;
    to_limits(limits, &lim);
    rgb_image im;
    vlmc_status st = image_decode(data, len, name ? name : "<memory>", &lim, &im, err);
    return st ? st : wrap(&im, out, err);
}

vlmc_status vlmc_image_load_data_url(const char *url, const vlmc_image_limits *limits, vlmc_image **out,
                                     vlmc_error *err) {
    if (!out || !url) return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_image_load_data_url: NULL argument");
    *out = NULL;
    image_limits lim;
    to_limits(limits, &lim);
    rgb_image im;
    vlmc_status st = image_decode_data_url(url, strlen(url), &lim, &im, err);
    return st ? st : wrap(&im, out, err);
}

vlmc_status vlmc_image_from_rgb(const uint8_t *rgb, int width, int height, vlmc_image **out, vlmc_error *err) {
    if (!out || !rgb || width < 1 || height < 1 || (uint64_t)width * (uint64_t)height > IMAGE_DEFAULT_MAX_PIXELS)
        return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_image_from_rgb: invalid arguments (%dx%d)", width, height);
    *out = NULL;
    rgb_image im = {width, height, malloc((size_t)width * height * 3)};
    if (!im.data) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for %dx%d pixels", width, height);
    memcpy(im.data, rgb, (size_t)width * height * 3);
    return wrap(&im, out, err);
}

int vlmc_image_width(const vlmc_image *im) { return im ? im->im.width : 0; }
int vlmc_image_height(const vlmc_image *im) { return im ? im->im.height : 0; }
const uint8_t *vlmc_image_rgb(const vlmc_image *im) { return im ? im->im.data : NULL; }

void vlmc_image_free(vlmc_image *im) {
    if (!im) return;
    rgb_image_free(&im->im);
    free(im);
}

vlmc_status vlmc_image_processor_load(const char *path, vlmc_image_processor **out, vlmc_error *err) {
    if (!out || !path) return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_image_processor_load: NULL argument");
    *out = NULL;
    int is_dir = file_is_dir(path);
    char *cfg_path = is_dir ? path_join(path, "preprocessor_config.json") : strdup(path);
    if (!cfg_path) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    cJSON *cfg = NULL;
    vlmc_status st = json_parse_file(cfg_path, 4u << 20, &cfg, err);
    vlmc_image_processor *h = NULL;
    if (!st) {
        h = calloc(1, sizeof *h);
        if (!h) st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    }
    if (!st) st = image_proc_from_json(cfg, cfg_path, &h->p, err);
    /* The model's config.json and processor_config.json (next to the preprocessor
     * config) hold what the image-token count needs; both are optional. */
    char *dir = !st ? (is_dir ? strdup(path) : path_dirname(path)) : NULL;
    if (dir) {
        static const char *names[2] = {"config.json", "processor_config.json"};
        for (int i = 0; i < 2; i++) {
            char *mc = path_join(dir, names[i]);
            cJSON *model = NULL;
            vlmc_error ignored;
            if (mc && file_exists(mc) && json_parse_file(mc, 16u << 20, &model, &ignored) == VLMC_OK)
                image_proc_set_model_config(&h->p, model);
            cJSON_Delete(model);
            free(mc);
        }
        free(dir);
    }
    cJSON_Delete(cfg);
    free(cfg_path);
    if (st) {
        free(h);
        return st;
    }
    *out = h;
    return VLMC_OK;
}

const char *vlmc_image_processor_type(const vlmc_image_processor *p) { return p ? p->p.type_name : NULL; }

void vlmc_image_processor_set_token_params(vlmc_image_processor *p, int patch_size, int cls_token, int image_seq_len) {
    if (!p) return;
    if (patch_size >= 0) p->p.patch_size = patch_size;
    if (cls_token >= 0) p->p.strategy_full = cls_token != 0;
    if (image_seq_len >= 0) p->p.image_seq_len = image_seq_len;
}

void vlmc_image_processor_free(vlmc_image_processor *p) { free(p); }

vlmc_status vlmc_preprocess(const vlmc_image_processor *p, const vlmc_image *im, vlmc_preprocessed *out,
                            vlmc_error *err) {
    if (!out) return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_preprocess: NULL output");
    memset(out, 0, sizeof *out);
    out->num_image_tokens = -1;
    if (!p || !im) return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_preprocess: NULL argument");
    proc_output o;
    vlmc_status st = image_proc_run(&p->p, &im->im, &o, err);
    if (st) return st;
    out->pixel_values = o.pixel_values;
    out->pixels_u8 = o.u8;
    out->ndim = o.ndim;
    memcpy(out->shape, o.shape, sizeof out->shape);
    out->has_image_sizes = o.has_image_sizes;
    memcpy(out->image_sizes, o.image_sizes, sizeof out->image_sizes);
    out->pixel_attention_mask = o.pixel_attention_mask;
    if (o.pixel_attention_mask) {
        out->mask_ndim = 4;
        out->mask_shape[0] = 1;
        out->mask_shape[1] = o.n_frames;
        out->mask_shape[2] = o.frame_h;
        out->mask_shape[3] = o.frame_w;
    }
    out->has_grid_thw = o.has_grid_thw;
    memcpy(out->image_grid_thw, o.grid_thw, sizeof out->image_grid_thw);
    out->has_rows_cols = o.has_rows_cols;
    out->rows = o.rows;
    out->cols = o.cols;
    out->num_image_tokens = o.num_image_tokens;
    return VLMC_OK;
}

void vlmc_preprocessed_free(vlmc_preprocessed *out) {
    if (!out) return;
    free(out->pixel_values);
    free(out->pixels_u8);
    free(out->pixel_attention_mask);
    memset(out, 0, sizeof *out);
    out->num_image_tokens = -1;
}

vlmc_status vlmc_preprocessed_save(const vlmc_image_processor *p, const vlmc_image *im, const vlmc_preprocessed *pp,
                                   const char *out_dir, vlmc_error *err) {
    if (!p || !im || !pp || !out_dir || !pp->pixel_values)
        return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_preprocessed_save: NULL argument");
    named_array a[10];
    int n = 0;
    memset(a, 0, sizeof a);
    int32_t rows = pp->rows, cols = pp->cols, ntok = (int32_t)pp->num_image_tokens;
    a[n] = (named_array){.name = "image_rgb", .dtype = ARRAY_U8, .ndim = 3,
                         .shape = {im->im.height, im->im.width, 3}, .data = im->im.data,
                         .note = "load_image output, HxWx3 uint8"};
    n++;
    a[n] = (named_array){.name = "pixel_values", .dtype = ARRAY_F32, .ndim = pp->ndim, .data = pp->pixel_values};
    memcpy(a[n].shape, pp->shape, sizeof pp->shape);
    n++;
    if (pp->has_image_sizes) {
        a[n] = (named_array){.name = "image_sizes", .dtype = ARRAY_I32, .ndim = 2, .shape = {1, 2},
                             .data = (void *)pp->image_sizes, .note = "[1, 2] (height, width)"};
        n++;
    }
    if (pp->pixel_attention_mask) {
        a[n] = (named_array){.name = "pixel_attention_mask", .dtype = ARRAY_I32, .ndim = pp->mask_ndim,
                             .data = pp->pixel_attention_mask};
        memcpy(a[n].shape, pp->mask_shape, sizeof pp->mask_shape);
        n++;
    }
    if (pp->has_grid_thw) {
        a[n] = (named_array){.name = "image_grid_thw", .dtype = ARRAY_I32, .ndim = 2, .shape = {1, 3},
                             .data = (void *)pp->image_grid_thw, .note = "[1, 3] (t, h, w) in patches"};
        n++;
    }
    if (pp->has_rows_cols) {
        a[n] = (named_array){.name = "rows", .dtype = ARRAY_I32, .ndim = 1, .shape = {1}, .data = &rows};
        n++;
        a[n] = (named_array){.name = "cols", .dtype = ARRAY_I32, .ndim = 1, .shape = {1}, .data = &cols};
        n++;
    }
    if (pp->num_image_tokens >= 0) {
        a[n] = (named_array){.name = "num_image_tokens", .dtype = ARRAY_I32, .ndim = 1, .shape = {1}, .data = &ntok};
        n++;
    }
    /* Fuyu: the patches preprocess_with_tokenizer_info cuts from the padded image (the model's input) */
    float *patches = NULL;
    if (p->p.kind == PROC_FUYU && pp->has_rows_cols && pp->ndim == 4) {
        const int P = p->p.patch_size, C = (int)pp->shape[1], H = (int)pp->shape[2], W = (int)pp->shape[3];
        const size_t n_patches = (size_t)pp->rows * pp->cols, ppc = (size_t)P * P * C;
        if (!(patches = malloc(n_patches * ppc * sizeof(float)))) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        fuyu_patchify(pp->pixel_values, C, H, W, pp->rows, pp->cols, P, patches);
        a[n] = (named_array){.name = "image_patches", .dtype = ARRAY_F32, .ndim = 3,
                             .shape = {1, (int64_t)n_patches, (int64_t)ppc}, .data = patches,
                             .note = "[1, patches, patch·patch·C] row by row, each (y, x, channel)"};
        n++;
    }
    cJSON *meta = cJSON_CreateObject();
    if (!meta) {
        free(patches);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    }
    cJSON_AddStringToObject(meta, "processor", p->p.type_name);
    cJSON_AddNumberToObject(meta, "image_height", im->im.height);
    cJSON_AddNumberToObject(meta, "image_width", im->im.width);
    if (pp->ndim == 5) cJSON_AddNumberToObject(meta, "num_tiles", (double)pp->shape[1]);
    if (pp->has_grid_thw) {
        cJSON *g = cJSON_CreateIntArray(pp->image_grid_thw, 3);
        if (g) cJSON_AddItemToObject(meta, "image_grid_thw", g);
    }
    if (pp->has_rows_cols) {
        cJSON_AddNumberToObject(meta, "rows", rows);
        cJSON_AddNumberToObject(meta, "cols", cols);
    }
    if (pp->num_image_tokens >= 0) cJSON_AddNumberToObject(meta, "num_image_tokens", (double)pp->num_image_tokens);
    else cJSON_AddNullToObject(meta, "num_image_tokens");
    vlmc_status st = arrays_write_dir(out_dir,
                                      "Each array is a raw little-endian C-order file <file> with no header; dtype is one "
                                      "of float32, int32, uint8; shape lists dimensions outermost first.",
                                      meta, a, n, err);
    cJSON_Delete(meta);
    free(patches);
    return st;
}
