/* The synthetic dataset on disk: vlmc_synth_generate.
 *
 * Image i (0-based over the whole dataset) has id i+1 written with at least 6
 * digits; images [0, n_train) form the train split, then val, then test. Each
 * image's scene and questions come from PRNG streams seeded by (seed, i), so
 * images are made in parallel (OpenMP, in chunks) and the text rows are
 * written in index order afterwards: the files do not depend on the number of
 * threads. */
#include "vlmc.h"

#include <inttypes.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/file.h"
#include "core/strbuf.h"
#include "synth/synth.h"

enum { FORMAT_VERSION = 1, CHUNK = 256, MAX_QUESTIONS = 32, MAX_IMAGES = 10000000 };

static const char *const split_names[3] = {"train", "val", "test"};

void vlmc_synth_default_params(vlmc_synth_params *p) {
    memset(p, 0, sizeof *p);
    p->seed = 0;
    p->n = 1000;
    p->image_size = 128;
    p->min_objects = 1;
    p->max_objects = SYNTH_MAX_OBJECTS;
    p->questions = 8;
    p->text_percent = 50;
    p->val_fraction = 0.05;
    p->test_fraction = 0.05;
    p->threads = 0;
}

static vlmc_status check_params(const vlmc_synth_params *p, int sizes[3], vlmc_error *err) {
    if (p->n < 1 || p->n > MAX_IMAGES) return vlmc_fail(err, VLMC_ERR_ARG, "synth: n must be 1..%d, not %d", MAX_IMAGES, p->n);
    if (p->image_size < SYNTH_MIN_SIZE || p->image_size > SYNTH_MAX_SIZE)
        return vlmc_fail(err, VLMC_ERR_ARG, "synth: image size must be %d..%d pixels, not %d", SYNTH_MIN_SIZE,
                         SYNTH_MAX_SIZE, p->image_size);
    if (p->max_objects < 1 || p->max_objects > SYNTH_MAX_OBJECTS)
        return vlmc_fail(err, VLMC_ERR_ARG, "synth: max objects must be 1..%d, not %d", SYNTH_MAX_OBJECTS, p->max_objects);
    if (p->min_objects < 1 || p->min_objects > p->max_objects)
        return vlmc_fail(err, VLMC_ERR_ARG, "synth: min objects must be 1..%d (the maximum), not %d", p->max_objects,
                         p->min_objects);
    if (p->questions < 1 || p->questions > MAX_QUESTIONS)
        return vlmc_fail(err, VLMC_ERR_ARG, "synth: questions per image must be 1..%d, not %d", MAX_QUESTIONS, p->questions);
    if (p->text_percent < 0 || p->text_percent > 100)
        return vlmc_fail(err, VLMC_ERR_ARG, "synth: text percent must be 0..100, not %d", p->text_percent);
    if (!(p->val_fraction >= 0 && p->val_fraction <= 1) || !(p->test_fraction >= 0 && p->test_fraction <= 1) ||
        p->val_fraction + p->test_fraction > 1)
        return vlmc_fail(err, VLMC_ERR_ARG, "synth: split fractions must be in 0..1 with val + test <= 1 (got %g and %g)",
                         p->val_fraction, p->test_fraction);
    unsigned mask;
    char bad[64];
    if (!synth_task_mask(p->tasks, &mask, bad, sizeof bad))
        return vlmc_fail(err, VLMC_ERR_ARG, "synth: unknown task '%s' (tasks: caption, color, shape, count, position, "
                         "relation, yesno, exists, grounding, ocr, mcq)", bad);
    /* Rounded to the nearest image; train has the rest. */
    sizes[1] = (int)floor(p->n * p->val_fraction + 0.5);
    sizes[2] = (int)floor(p->n * p->test_fraction + 0.5);
    if (sizes[1] + sizes[2] > p->n) sizes[2] = p->n - sizes[1];
    sizes[0] = p->n - sizes[1] - sizes[2];
    return VLMC_OK;
}

static int split_of(int i, const int sizes[3]) { return i < sizes[0] ? 0 : i < sizes[0] + sizes[1] ? 1 : 2; }

/* ---- JSON rows -------------------------------------------------------------- */

static void json_box(strbuf *b, const int box[4]) { strbuf_printf(b, "[%d, %d, %d, %d]", box[0], box[1], box[2], box[3]); }

/* The scene as data, for evaluation and analysis: boxes in 0..1000. */
static void json_scene(strbuf *b, const synth_scene *s) {
    int nb[4];
    strbuf_printf(b, "{\"background\": \"%s\", \"objects\": [", synth_bg_names[s->bg]);
    for (int i = 0; i < s->n_objects; i++) {
        const synth_object *o = &s->obj[i];
        synth_box_norm(o->box, s->size, nb);
        strbuf_printf(b, "%s{\"shape\": \"%s\", \"color\": \"%s\", \"size\": \"%s\", \"box\": ", i ? ", " : "",
                      synth_shape_names[o->shape], synth_color_names[o->color], synth_size_names[o->size]);
        json_box(b, nb);
        strbuf_puts(b, "}");
    }
    strbuf_puts(b, "], \"word\": ");
    if (s->has_word) {
        synth_box_norm(s->word.box, s->size, nb);
        strbuf_printf(b, "{\"text\": \"%s\", \"color\": \"%s\", \"box\": ", s->word.text, synth_color_names[s->word.color]);
        json_box(b, nb);
        strbuf_puts(b, "}");
    } else strbuf_puts(b, "null");
    strbuf_puts(b, "}");
}

/* One line of <split>.jsonl: the conversation in the Hugging Face messages format. */
static void json_row(strbuf *b, const char *id, const char *image, const synth_scene *s, const synth_qa *qa, int n) {
    strbuf_puts(b, "{\"id\": ");
    strbuf_json_string(b, id);
    strbuf_puts(b, ", \"images\": [");
    strbuf_json_string(b, image);
    strbuf_puts(b, "], \"messages\": [");
    for (int k = 0; k < n; k++) {
        strbuf_printf(b, "%s{\"role\": \"user\", \"content\": [%s{\"type\": \"text\", \"text\": ", k ? ", " : "",
                      k == 0 ? "{\"type\": \"image\"}, " : "");
        strbuf_json_string(b, qa[k].question);
        strbuf_puts(b, "}]}, {\"role\": \"assistant\", \"content\": [{\"type\": \"text\", \"text\": ");
        strbuf_json_string(b, qa[k].answer);
        strbuf_puts(b, "}]}");
    }
    strbuf_puts(b, "], \"tasks\": [");
    for (int k = 0; k < n; k++) strbuf_printf(b, "%s\"%s\"", k ? ", " : "", synth_task_names[qa[k].task]);
    strbuf_puts(b, "], \"scene\": ");
    json_scene(b, s);
    strbuf_puts(b, "}\n");
}

/* The lines of <split>_qa.jsonl: one per question. */
static void json_qa_rows(strbuf *b, const char *id, const char *image, const synth_qa *qa, int n) {
    for (int k = 0; k < n; k++) {
        strbuf_puts(b, "{\"id\": ");
        strbuf_json_string(b, id);
        strbuf_puts(b, ", \"image\": ");
        strbuf_json_string(b, image);
        strbuf_printf(b, ", \"turn\": %d, \"task\": \"%s\", \"question\": ", k, synth_task_names[qa[k].task]);
        strbuf_json_string(b, qa[k].question);
        strbuf_puts(b, ", \"answer\": ");
        strbuf_json_string(b, qa[k].answer);
        if (qa[k].n_options) {
            strbuf_puts(b, ", \"options\": [");
            for (int o = 0; o < qa[k].n_options; o++) {
                if (o) strbuf_puts(b, ", ");
                strbuf_json_string(b, qa[k].options[o]);
            }
            strbuf_puts(b, "]");
        }
        if (qa[k].has_box) {
            strbuf_puts(b, ", \"box\": ");
            json_box(b, qa[k].box);
        }
        strbuf_puts(b, "}\n");
    }
}

static void json_list(strbuf *b, const char *key, const char *const *v, int n, bool last) {
    strbuf_printf(b, "  \"%s\": [", key);
    for (int i = 0; i < n; i++) {
        if (i) strbuf_puts(b, ", ");
        strbuf_json_string(b, v[i]);
    }
    strbuf_printf(b, "]%s\n", last ? "" : ",");
}

static void json_meta(strbuf *b, const vlmc_synth_params *p, const int sizes[3], int id_width) {
    strbuf_printf(b, "{\n  \"format_version\": %d,\n  \"generator\": \"vlmc synth\",\n", FORMAT_VERSION);
    strbuf_printf(b, "  \"seed\": %" PRIu64 ",\n  \"n\": %d,\n", p->seed, p->n);
    strbuf_printf(b, "  \"image_size\": %d,\n  \"min_objects\": %d,\n  \"max_objects\": %d,\n", p->image_size,
                  p->min_objects, p->max_objects);
    strbuf_printf(b, "  \"questions_per_image\": %d,\n  \"text_percent\": %d,\n", p->questions, p->text_percent);
    strbuf_printf(b, "  \"splits\": {\"train\": %d, \"val\": %d, \"test\": %d},\n", sizes[0], sizes[1], sizes[2]);
    strbuf_printf(b, "  \"split_ranges\": {\"train\": [1, %d], \"val\": [%d, %d], \"test\": [%d, %d]},\n", sizes[0],
                  sizes[0] + 1, sizes[0] + sizes[1], sizes[0] + sizes[1] + 1, p->n);
    strbuf_printf(b, "  \"id_digits\": %d,\n", id_width);
    strbuf_puts(b, "  \"box_format\": \"[x1, y1, x2, y2]: integers 0..1000, x to the right and y down from the top left; "
                   "x1 = floor(1000 * left / width), x2 = ceil(1000 * right / width) with left and right the edges "
                   "of the outermost drawn pixels (likewise y), so the box encloses every pixel of the shape or word\",\n");
    json_list(b, "tasks", synth_task_names, SYNTH_N_TASKS, false);
    unsigned mask;
    char bad[64];
    const char *asked[SYNTH_N_TASKS];
    int n_asked = 0;
    synth_task_mask(p->tasks, &mask, bad, sizeof bad);
    for (int t = 0; t < SYNTH_N_TASKS; t++)
        if (mask & (1u << t)) asked[n_asked++] = synth_task_names[t];
    json_list(b, "asked_tasks", asked, n_asked, false);
    json_list(b, "colors", synth_color_names, SYNTH_N_COLORS, false);
    strbuf_puts(b, "  \"color_rgb\": {");
    for (int i = 0; i < SYNTH_N_COLORS; i++)
        strbuf_printf(b, "%s\"%s\": [%d, %d, %d]", i ? ", " : "", synth_color_names[i], synth_color_rgb[i][0],
                      synth_color_rgb[i][1], synth_color_rgb[i][2]);
    strbuf_puts(b, "},\n");
    json_list(b, "shapes", synth_shape_names, SYNTH_N_SHAPES, false);
    json_list(b, "shape_plurals", synth_shape_plurals, SYNTH_N_SHAPES, false);
    json_list(b, "sizes", synth_size_names, SYNTH_N_SIZES, false);
    json_list(b, "positions", synth_position_names, SYNTH_N_POSITIONS, false);
    json_list(b, "backgrounds", synth_bg_names, SYNTH_N_BGS, false);
    static const char *const yesno[] = {"yes", "no"}, *const counts[] = {"0", "1", "2", "3", "4", "5", "6"},
                             *const letters[] = {"A", "B", "C", "D"};
    json_list(b, "yes_no", yesno, 2, false);
    json_list(b, "counts", counts, SYNTH_MAX_OBJECTS + 1, false);
    json_list(b, "option_letters", letters, SYNTH_MCQ_OPTIONS, false);
    json_list(b, "words", synth_words, synth_n_words, true);
    strbuf_puts(b, "}\n");
}

/* ---- one image -------------------------------------------------------------- */

typedef struct {
    char *row, *qa; /* malloc'ed JSONL text */
    vlmc_status status;
    vlmc_error err;
} image_result;

static void make_image(const vlmc_synth_params *p, const char *out_dir, const int sizes[3], int id_width, int i,
                       uint8_t *rgb, image_result *res) {
    synth_world_params wp = {p->image_size, p->min_objects, p->max_objects, p->text_percent};
    synth_scene scene;
    synth_scene_sample(&wp, p->seed, (uint64_t)i, &scene);
    synth_render(&scene, rgb);

    char id[24], rel[64];
    snprintf(id, sizeof id, "%0*d", id_width, i + 1);
    snprintf(rel, sizeof rel, "images/%s/%s.png", split_names[split_of(i, sizes)], id);

    unsigned char *png = NULL;
    size_t png_len = 0;
    res->status = synth_png_encode(rgb, scene.size, scene.size, &png, &png_len, &res->err);
    if (res->status != VLMC_OK) return;
    char *path = path_join(out_dir, rel);
    if (!path) {
        free(png);
        res->status = vlmc_fail(&res->err, VLMC_ERR_NOMEM, "synth: out of memory");
        return;
    }
    res->status = file_write_all(path, png, png_len, &res->err);
    free(path);
    free(png);
    if (res->status != VLMC_OK) return;

    synth_rng r;
    synth_rng_seed(&r, p->seed, (uint64_t)i, 2);
    synth_qa qa[MAX_QUESTIONS];
    unsigned task_mask;
    char bad[64];
    synth_task_mask(p->tasks, &task_mask, bad, sizeof bad); /* checked by check_params */
    int nq = synth_questions(&scene, &r, qa, p->questions, task_mask);
    strbuf row = {0}, q = {0};
    json_row(&row, id, rel, &scene, qa, nq);
    json_qa_rows(&q, id, rel, qa, nq);
    res->row = strbuf_take(&row);
    res->qa = strbuf_take(&q);
    if (!res->row || !res->qa) res->status = vlmc_fail(&res->err, VLMC_ERR_NOMEM, "synth: out of memory");
}

/* ---- the dataset ------------------------------------------------------------ */

static vlmc_status write_str(FILE *f, const char *s, const char *path, vlmc_error *err) {
    size_t n = strlen(s);
    if (fwrite(s, 1, n, f) != n) return vlmc_fail(err, VLMC_ERR_IO, "%s: write failed", path);
    return VLMC_OK;
}

vlmc_status vlmc_synth_generate(const vlmc_synth_params *p, const char *out_dir, vlmc_error *err) {
    if (!p || !out_dir || !*out_dir) return vlmc_fail(err, VLMC_ERR_ARG, "synth: no parameters or output folder");
    int sizes[3];
    vlmc_status st = check_params(p, sizes, err);
    if (st != VLMC_OK) return st;
    int id_width = 6;
    for (int m = 1000000; m <= p->n && id_width < 9; m *= 10) id_width++;

    /* Folders, then the six JSONL files. */
    FILE *files[6] = {0};
    char *paths[6] = {0};
    image_result *res = NULL;
    uint8_t *pixels = NULL;
    for (int k = 0; k < 3 && st == VLMC_OK; k++) {
        char sub[32];
        snprintf(sub, sizeof sub, "images/%s", split_names[k]);
        char *d = path_join(out_dir, sub);
        st = d ? file_mkdirs(d, err) : vlmc_fail(err, VLMC_ERR_NOMEM, "synth: out of memory");
        free(d);
    }
    for (int k = 0; k < 6 && st == VLMC_OK; k++) {
        char name[32];
        snprintf(name, sizeof name, "%s%s.jsonl", split_names[k % 3], k < 3 ? "" : "_qa");
        paths[k] = path_join(out_dir, name);
        if (!paths[k]) st = vlmc_fail(err, VLMC_ERR_NOMEM, "synth: out of memory");
        else if (!(files[k] = fopen(paths[k], "wb"))) st = vlmc_fail(err, VLMC_ERR_IO, "%s: cannot create", paths[k]);
    }

    int threads = p->threads > 256 ? 256 : p->threads > 0 ? p->threads : 0; /* one image buffer per thread */
    int n_buf = 1;
#ifdef _OPENMP
    n_buf = threads > 0 ? threads : omp_get_max_threads();
#endif
    if (n_buf < 1) n_buf = 1;
    size_t img_bytes = (size_t)p->image_size * (size_t)p->image_size * 3;
    if (st == VLMC_OK) {
        res = calloc(CHUNK, sizeof *res);
        pixels = malloc(img_bytes * (size_t)n_buf);
        if (!res || !pixels) st = vlmc_fail(err, VLMC_ERR_NOMEM, "synth: out of memory");
    }

    for (int start = 0; start < p->n && st == VLMC_OK; start += CHUNK) {
        int count = p->n - start < CHUNK ? p->n - start : CHUNK;
        memset(res, 0, sizeof *res * CHUNK);
#pragma omp parallel for schedule(dynamic) num_threads(n_buf)
        for (int k = 0; k < count; k++) {
            int t = 0;
#ifdef _OPENMP
            t = omp_get_thread_num();
#endif
            make_image(p, out_dir, sizes, id_width, start + k, pixels + img_bytes * (size_t)t, &res[k]);
        }
        /* In index order: the first failure is reported, rows are appended. */
        for (int k = 0; k < count && st == VLMC_OK; k++) {
            if (res[k].status != VLMC_OK) {
                if (err) *err = res[k].err;
                st = res[k].status;
                break;
            }
            int sp = split_of(start + k, sizes);
            st = write_str(files[sp], res[k].row, paths[sp], err);
            if (st == VLMC_OK) st = write_str(files[3 + sp], res[k].qa, paths[3 + sp], err);
        }
        for (int k = 0; k < count; k++) {
            free(res[k].row);
            free(res[k].qa);
        }
    }
    for (int k = 0; k < 6; k++)
        if (files[k] && fclose(files[k]) != 0 && st == VLMC_OK) st = vlmc_fail(err, VLMC_ERR_IO, "%s: write failed", paths[k]);

    if (st == VLMC_OK) {
        strbuf meta = {0};
        json_meta(&meta, p, sizes, id_width);
        char *path = path_join(out_dir, "meta.json");
        const char *text = strbuf_cstr(&meta);
        if (!path || !text) st = vlmc_fail(err, VLMC_ERR_NOMEM, "synth: out of memory");
        else st = file_write_all(path, text, strlen(text), err);
        free(path);
        strbuf_free(&meta);
    }
    for (int k = 0; k < 6; k++) free(paths[k]);
    free(res);
    free(pixels);
    return st;
}
