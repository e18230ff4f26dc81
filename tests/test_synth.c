/* The synthetic dataset: the rasteriser against the reference shapes, scenes
 * against their pictures, every answer re-derived from the scene by parsing
 * the question, and the files on disk (determinism, JSONL, splits). */
#include <cjson/cJSON.h>
#include <png.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testlib.h"
#include "synth/synth.h"
#include "vlmc.h"

static const int sizes[] = {64, 96, 128, 160, 224};
#define N_SIZES ((int)(sizeof sizes / sizeof sizes[0]))

static synth_world_params world(int size) { return (synth_world_params){size, 1, 6, 50}; }

static void test_rng(void) {
    synth_rng a, b, c;
    synth_rng_seed(&a, 7, 3, 1);
    synth_rng_seed(&b, 7, 3, 1);
    synth_rng_seed(&c, 7, 4, 1);
    int same = 1, diff = 0, in_range = 1, hist[6] = {0};
    for (int i = 0; i < 6000; i++) {
        uint64_t x = synth_rng_next(&a), y = synth_rng_next(&b);
        same &= x == y;
        diff += x != synth_rng_next(&c);
        int v = synth_rng_range(&a, -2, 3);
        synth_rng_next(&b);
        in_range &= v >= -2 && v <= 3;
        if (v >= -2 && v <= 3) hist[v + 2]++;
    }
    CHECK(same, "same seed, same stream");
    CHECK(diff > 5990, "another index, another stream");
    CHECK(in_range, "range bounds");
    for (int k = 0; k < 6; k++) CHECK(hist[k] > 850 && hist[k] < 1150, "uniform: bucket %d has %d", k, hist[k]);
}

/* The row-by-row rasteriser covers exactly the sample points the reference point test accepts. */
static void test_raster_matches_reference(void) {
    synth_rng r;
    synth_rng_seed(&r, 99, 0, 0);
    int bad = 0, checked = 0;
    for (int t = 0; t < 240; t++) {
        synth_object o = {0};
        o.shape = t % SYNTH_N_SHAPES;
        o.h = synth_rng_range(&r, 3 * SYNTH_SUB, 40 * SYNTH_SUB);
        o.cx = synth_rng_range(&r, o.h + 2 * SYNTH_SUB, 128 * SYNTH_SUB - o.h - 2 * SYNTH_SUB);
        o.cy = synth_rng_range(&r, o.h + 2 * SYNTH_SUB, 128 * SYNTH_SUB - o.h - 2 * SYNTH_SUB);
        synth_object_box(128, &o);
        int box[4] = {128, 128, 0, 0};
        for (int y = 0; y < 128; y++)
            for (int x = 0; x < 128; x++) {
                int ref = 0;
                for (int j = 0; j < 4; j++)
                    for (int i = 0; i < 4; i++)
                        ref += synth_shape_inside(&o, x * SYNTH_SUB + 2 + 4 * i - o.cx, y * SYNTH_SUB + 2 + 4 * j - o.cy);
                int got = synth_shape_coverage_at(&o, x, y);
                if (got != ref && bad++ < 5) CHECK(0, "shape %d at (%d,%d): coverage %d, reference %d", o.shape, x, y, got, ref);
                checked++;
                if (ref) {
                    if (x < box[0]) box[0] = x;
                    if (y < box[1]) box[1] = y;
                    if (x + 1 > box[2]) box[2] = x + 1;
                    if (y + 1 > box[3]) box[3] = y + 1;
                }
            }
        CHECK(!memcmp(box, o.box, sizeof box), "shape %d: box [%d %d %d %d], reference [%d %d %d %d]", o.shape, o.box[0],
              o.box[1], o.box[2], o.box[3], box[0], box[1], box[2], box[3]);
    }
    CHECK(bad == 0, "%d of %d pixels differ", bad, checked);
}

static bool boxes_apart(const int a[4], const int b[4], int gap) {
    return a[2] + gap <= b[0] || b[2] + gap <= a[0] || a[3] + gap <= b[1] || b[3] + gap <= a[1];
}

/* Scenes against their pictures: boxes are tight and inside, nothing overlaps,
 * the picture differs from the background only inside boxes, every object shows. */
static void test_scenes_and_pictures(void) {
    int scenes = 0, with_word = 0, n_count[SYNTH_MAX_OBJECTS + 1] = {0};
    for (int si = 0; si < N_SIZES; si++) {
        int S = sizes[si];
        synth_world_params wp = world(S);
        uint8_t *img = malloc((size_t)S * S * 3), *bg = malloc((size_t)S * S * 3), *mask = malloc((size_t)S * S);
        for (int idx = 0; idx < 120; idx++) {
            synth_scene s;
            synth_scene_sample(&wp, 11, (uint64_t)idx, &s);
            scenes++;
            with_word += s.has_word;
            if (!CHECK(s.n_objects >= 1 && s.n_objects <= SYNTH_MAX_OBJECTS, "object count %d", s.n_objects)) continue;
            n_count[s.n_objects]++;
            synth_render(&s, img);
            synth_render_background(&s, bg);
            int boxes[SYNTH_MAX_OBJECTS + 1][4], nb = 0;
            for (int i = 0; i < s.n_objects; i++) {
                const synth_object *o = &s.obj[i];
                synth_object_coverage(&s, i, mask);
                int mb[4], full = 0, wrong_colour = 0;
                CHECK(synth_mask_box(mask, S, mb), "object %d draws something", i);
                CHECK(!memcmp(mb, o->box, sizeof mb), "S=%d scene %d object %d: box is tight", S, idx, i);
                CHECK(o->box[0] >= 0 && o->box[1] >= 0 && o->box[2] <= S && o->box[3] <= S, "box inside the image");
                for (int p = 0; p < S * S; p++)
                    if (mask[p] == SYNTH_SUB) {
                        full++;
                        wrong_colour += memcmp(img + 3 * p, synth_color_rgb[o->color], 3) != 0;
                    }
                CHECK(full >= 4, "S=%d scene %d object %d is visible (%d solid pixels)", S, idx, i, full);
                CHECK(wrong_colour == 0, "S=%d scene %d object %d: %d solid pixels of another colour", S, idx, i, wrong_colour);
                memcpy(boxes[nb++], o->box, sizeof o->box);
            }
            if (s.has_word) {
                synth_word_mask(&s, mask);
                int mb[4], wrong = 0;
                CHECK(synth_mask_box(mask, S, mb) && !memcmp(mb, s.word.box, sizeof mb), "word box is tight");
                for (int p = 0; p < S * S; p++) wrong += mask[p] && memcmp(img + 3 * p, synth_color_rgb[s.word.color], 3);
                CHECK(wrong == 0, "word pixels have the word's colour");
                CHECK(strlen(s.word.text) >= 3 && strlen(s.word.text) <= 5, "word length");
                memcpy(boxes[nb++], s.word.box, sizeof s.word.box);
            }
            for (int a = 0; a < nb; a++)
                for (int b = a + 1; b < nb; b++)
                    CHECK(boxes_apart(boxes[a], boxes[b], 1), "S=%d scene %d: things %d and %d overlap", S, idx, a, b);
            int outside = 0;
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++) {
                    size_t p = (size_t)y * S + x;
                    if (!memcmp(img + 3 * p, bg + 3 * p, 3)) continue;
                    bool in = false;
                    for (int k = 0; k < nb && !in; k++)
                        in = x >= boxes[k][0] && x < boxes[k][2] && y >= boxes[k][1] && y < boxes[k][3];
                    outside += !in;
                }
            CHECK(outside == 0, "S=%d scene %d: %d changed pixels outside every box", S, idx, outside);
        }
        free(img);
        free(bg);
        free(mask);
    }
    CHECK(with_word > scenes / 3 && with_word < 2 * scenes / 3, "about half the scenes have a word: %d of %d", with_word, scenes);
    for (int k = 1; k <= SYNTH_MAX_OBJECTS; k++) CHECK(n_count[k] > scenes / 12, "%d objects: %d scenes", k, n_count[k]);
}

/* The PNG writer round-trips through libpng's reader, pixel for pixel. */
static void test_png_roundtrip(void) {
    for (int si = 0; si < N_SIZES; si++) {
        int S = sizes[si];
        synth_world_params wp = world(S);
        synth_scene s;
        synth_scene_sample(&wp, 8, (uint64_t)si, &s);
        uint8_t *img = malloc((size_t)S * S * 3), *back = malloc((size_t)S * S * 3);
        synth_render(&s, img);
        unsigned char *png = NULL;
        size_t len = 0;
        vlmc_error err = {0};
        if (CHECK(synth_png_encode(img, S, S, &png, &len, &err) == VLMC_OK, "encode: %s", err.message)) {
            png_image im;
            memset(&im, 0, sizeof im);
            im.version = PNG_IMAGE_VERSION;
            bool ok = png_image_begin_read_from_memory(&im, png, len);
            CHECK(ok && im.width == (png_uint_32)S && im.height == (png_uint_32)S, "PNG header");
            im.format = PNG_FORMAT_RGB;
            if (ok) ok = png_image_finish_read(&im, NULL, back, 0, NULL);
            CHECK(ok && !memcmp(img, back, (size_t)S * S * 3), "S=%d: decoded pixels equal the rendered ones", S);
            png_image_free(&im);
        }
        free(png);
        free(img);
        free(back);
    }
}

/* ---- answers re-derived from the scene ---------------------------------------- */

static int find_name(const char *const *names, int n, const char *w) {
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], w)) return i;
    return -1;
}

/* Resolves "large red circle", "red object", ... to the objects it fits; returns
 * how many, the last in *which; -1 if a word is not in the vocabulary.
 * *mentions gets 1 for size, 2 for colour, 4 for shape. */
static int resolve(const synth_scene *s, const char *phrase, int *which, int *mentions) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", phrase);
    int size = -1, color = -1, shape = -1;
    *mentions = 0;
    for (char *w = strtok(buf, " "); w; w = strtok(NULL, " ")) {
        int v;
        if ((v = find_name(synth_size_names, SYNTH_N_SIZES, w)) >= 0) size = v, *mentions |= 1;
        else if ((v = find_name(synth_color_names, SYNTH_N_COLORS, w)) >= 0) color = v, *mentions |= 2;
        else if ((v = find_name(synth_shape_names, SYNTH_N_SHAPES, w)) >= 0) shape = v, *mentions |= 4;
        else if (strcmp(w, "object")) return -1;
    }
    int n = 0;
    for (int i = 0; i < s->n_objects; i++) {
        const synth_object *o = &s->obj[i];
        if ((size < 0 || o->size == size) && (color < 0 || o->color == color) && (shape < 0 || o->shape == shape)) {
            n++;
            *which = i;
        }
    }
    return n;
}

/* The object named by a phrase, which must fit exactly one; -1 otherwise (and a failure). */
static int the(const synth_scene *s, const char *phrase, const char *q, int *mentions) {
    int which = -1, m = 0, n = resolve(s, phrase, &which, &m);
    if (mentions) *mentions = m;
    if (!CHECK(n == 1, "'%s': '%s' fits %d objects", q, phrase, n)) return -1;
    return which;
}

/* Copies the text between prefix and suffix of q into out when q has that form. */
static bool between(const char *q, const char *prefix, const char *suffix, char *out, size_t cap) {
    size_t lp = strlen(prefix), ls = strlen(suffix), lq = strlen(q);
    if (lq < lp + ls || strncmp(q, prefix, lp) || strcmp(q + lq - ls, suffix)) return false;
    size_t n = lq - lp - ls;
    if (n >= cap) return false;
    memcpy(out, q + lp, n);
    out[n] = '\0';
    return true;
}

static int expected_cell(const synth_scene *s, const synth_object *o) {
    double side = (double)s->size * SYNTH_SUB, v[2] = {o->cx / side, o->cy / side};
    int cell[2];
    for (int a = 0; a < 2; a++) {
        if (v[a] > 1.0 / 3 - 0.0499 && v[a] < 1.0 / 3 + 0.0499) return -1;
        if (v[a] > 2.0 / 3 - 0.0499 && v[a] < 2.0 / 3 + 0.0499) return -1;
        cell[a] = v[a] < 1.0 / 3 ? 0 : v[a] < 2.0 / 3 ? 1 : 2;
    }
    return cell[1] * 3 + cell[0];
}

/* The answer to a (non-mcq) question, worked out from the scene; NULL when the
 * question is not one the generator asks. out holds the text. */
static const char *derive(const synth_scene *s, const char *q, char *out, size_t cap) {
    char ref[128], ref2[128];
    int m, i, j;
    int S = s->size, gap = S / 32 < 2 ? 2 : S / 32;
    if (!strcmp(q, "Describe the image.")) return "<caption>";
    if (between(q, "What color is the ", "?", ref, sizeof ref)) {
        if ((i = the(s, ref, q, &m)) < 0) return NULL;
        CHECK(!(m & 2), "'%s' names the colour it asks", q);
        return synth_color_names[s->obj[i].color];
    }
    if (between(q, "What shape is the ", "?", ref, sizeof ref)) {
        if ((i = the(s, ref, q, &m)) < 0) return NULL;
        CHECK(!(m & 4), "'%s' names the shape it asks", q);
        return synth_shape_names[s->obj[i].shape];
    }
    if (!strcmp(q, "How many shapes are there?")) {
        snprintf(out, cap, "%d", s->n_objects);
        return out;
    }
    if (between(q, "How many ", " shapes are there?", ref, sizeof ref)) {
        int c = find_name(synth_color_names, SYNTH_N_COLORS, ref), n = 0;
        if (c < 0) return NULL;
        for (int k = 0; k < s->n_objects; k++) n += s->obj[k].color == c;
        snprintf(out, cap, "%d", n);
        return out;
    }
    if (between(q, "How many ", " are there?", ref, sizeof ref)) {
        int sh = find_name(synth_shape_plurals, SYNTH_N_SHAPES, ref), n = 0;
        if (sh < 0) return NULL;
        for (int k = 0; k < s->n_objects; k++) n += s->obj[k].shape == sh;
        snprintf(out, cap, "%d", n);
        return out;
    }
    if (between(q, "Where is the ", "?", ref, sizeof ref)) {
        if ((i = the(s, ref, q, NULL)) < 0) return NULL;
        int cell = expected_cell(s, &s->obj[i]);
        if (!CHECK(cell >= 0, "'%s': the centre is near a grid line", q)) return NULL;
        /* The tight box's centre agrees. */
        const int *b = s->obj[i].box;
        int bx = (b[0] + b[2]) * 3 / (2 * S), by = (b[1] + b[3]) * 3 / (2 * S);
        CHECK(by * 3 + bx == cell, "'%s': box centre in cell %d, centre in %d", q, by * 3 + bx, cell);
        return synth_position_names[cell];
    }
    static const char *const rels[4] = {" to the left of the ", " to the right of the ", " above the ", " below the "};
    if (between(q, "Is the ", "?", ref, sizeof ref)) {
        for (int r = 0; r < 4; r++) {
            char *at = strstr(ref, rels[r]);
            if (!at) continue;
            snprintf(ref2, sizeof ref2, "%s", at + strlen(rels[r]));
            *at = '\0';
            if ((i = the(s, ref, q, NULL)) < 0 || (j = the(s, ref2, q, NULL)) < 0) return NULL;
            const int *a = s->obj[i].box, *b = s->obj[j].box;
            int ax = r < 2 ? 0 : 1;
            bool a_first = a[ax + 2] + gap <= b[ax], b_first = b[ax + 2] + gap <= a[ax];
            if (!CHECK(i != j && (a_first || b_first), "'%s': not clearly apart", q)) return NULL;
            return (r % 2 == 0 ? a_first : b_first) ? "yes" : "no";
        }
        /* Is the <ref> <colour|size>? / Is the <ref> a <shape>? */
        char *last = strrchr(ref, ' ');
        if (!last) return NULL;
        *last++ = '\0';
        char *art = strrchr(ref, ' ');
        if (art && (!strcmp(art + 1, "a") || !strcmp(art + 1, "an"))) {
            *art = '\0';
            int sh = find_name(synth_shape_names, SYNTH_N_SHAPES, last);
            if (sh < 0 || (i = the(s, ref, q, &m)) < 0) return NULL;
            CHECK(!(m & 4) && !strcmp(art + 1, strchr("aeiou", last[0]) ? "an" : "a"), "'%s': form", q);
            return s->obj[i].shape == sh ? "yes" : "no";
        }
        int c = find_name(synth_color_names, SYNTH_N_COLORS, last), z = find_name(synth_size_names, SYNTH_N_SIZES, last);
        if ((c < 0 && z < 0) || (i = the(s, ref, q, &m)) < 0) return NULL;
        CHECK(!(m & (c >= 0 ? 2 : 1)), "'%s' names what it asks", q);
        return (c >= 0 ? s->obj[i].color == c : s->obj[i].size == z) ? "yes" : "no";
    }
    if (!strcmp(q, "Is there any text in the image?")) return s->has_word ? "yes" : "no";
    if (between(q, "Is there a ", "?", ref, sizeof ref) || between(q, "Is there an ", "?", ref, sizeof ref)) {
        CHECK(!strncmp(q, strchr("aeiou", ref[0]) ? "Is there an " : "Is there a ", 11), "'%s': article", q);
        int which, n = resolve(s, ref, &which, &m);
        if (n < 0) return NULL;
        return n > 0 ? "yes" : "no";
    }
    if (!strcmp(q, "Give the bounding box of the text.")) {
        if (!CHECK(s->has_word, "box of absent text")) return NULL;
        int nb[4];
        synth_box_norm(s->word.box, S, nb);
        snprintf(out, cap, "[%d, %d, %d, %d]", nb[0], nb[1], nb[2], nb[3]);
        return out;
    }
    if (between(q, "Give the bounding box of the ", ".", ref, sizeof ref)) {
        if ((i = the(s, ref, q, NULL)) < 0) return NULL;
        /* The box encloses every covered pixel and is within a pixel of tight. */
        const int *b = s->obj[i].box;
        int nb[4];
        synth_box_norm(b, S, nb);
        for (int k = 0; k < 4; k++) CHECK(nb[k] >= 0 && nb[k] <= 1000, "box in 0..1000");
        CHECK(nb[0] * S <= b[0] * 1000 && nb[1] * S <= b[1] * 1000 && nb[2] * S >= b[2] * 1000 && nb[3] * S >= b[3] * 1000,
              "normalised box encloses the pixels");
        CHECK((b[0] + 1) * 1000 > nb[0] * S && (b[2] - 1) * 1000 < nb[2] * S, "normalised box is tight");
        snprintf(out, cap, "[%d, %d, %d, %d]", nb[0], nb[1], nb[2], nb[3]);
        return out;
    }
    if (!strcmp(q, "What word is written in the image?")) return s->has_word ? s->word.text : NULL;
    return NULL;
}

static void check_caption(const synth_scene *s, const char *a) {
    char want[64];
    CHECK(a[0] >= 'A' && a[0] <= 'Z', "caption starts with a capital");
    snprintf(want, sizeof want, " on a %s background.", synth_bg_names[s->bg]);
    CHECK(strlen(a) > strlen(want) && !strcmp(a + strlen(a) - strlen(want), want), "caption ends with the background: %s", a);
    for (int i = 0; i < s->n_objects; i++) {
        const synth_object *o = &s->obj[i];
        snprintf(want, sizeof want, "%s %s %s", synth_size_names[o->size], synth_color_names[o->color],
                 synth_shape_names[o->shape]);
        int n_scene = 0, n_caption = 0;
        for (int k = 0; k < s->n_objects; k++)
            n_scene += s->obj[k].size == o->size && s->obj[k].color == o->color && s->obj[k].shape == o->shape;
        for (const char *p = a; (p = strstr(p, want)); p++) n_caption++;
        CHECK(n_scene == n_caption, "caption '%s' mentions '%s' %d times, scene has %d", a, want, n_caption, n_scene);
    }
    snprintf(want, sizeof want, "the word %s", s->word.text);
    CHECK(s->has_word == (strstr(a, "the word ") != NULL) && (!s->has_word || strstr(a, want)), "caption and the word");
}

static void test_answers_follow_from_scene(void) {
    int per_task[SYNTH_N_TASKS] = {0}, yes = 0, no = 0, letters[4] = {0}, n_q = 0, wrong = 0;
    for (int si = 0; si < N_SIZES; si++) {
        synth_world_params wp = world(sizes[si]);
        for (int idx = 0; idx < 400; idx++) {
            synth_scene s;
            synth_scene_sample(&wp, 5, (uint64_t)idx, &s);
            synth_rng r;
            synth_rng_seed(&r, 5, (uint64_t)idx, 2);
            synth_qa qa[16];
            int n = synth_questions(&s, &r, qa, 12, (1u << SYNTH_N_TASKS) - 1);
            CHECK(n >= 6, "scene %d: only %d questions", idx, n);
            for (int k = 0; k < n; k++) {
                const synth_qa *q = &qa[k];
                n_q++;
                per_task[q->task]++;
                for (int l = 0; l < k; l++)
                    CHECK(strncmp(qa[l].question, q->question, strcspn(q->question, "\n") + 1), "repeated question %s", q->question);
                CHECK(q->task != TASK_CAPTION || k == n - 1, "the caption comes last");
                char buf[SYNTH_QA_TEXT];
                const char *want;
                if (q->task == TASK_MCQ) {
                    /* Stem, four distinct options A-D, "Answer with the letter."; the
                     * lettered option is the derived answer and no other option is. */
                    char stem[SYNTH_QA_TEXT];
                    snprintf(stem, sizeof stem, "%s", q->question);
                    char *nl = strchr(stem, '\n');
                    if (!CHECK(nl && q->n_options == 4, "mcq form: %s", q->question)) continue;
                    *nl = '\0';
                    char expect_text[SYNTH_QA_TEXT];
                    int len = snprintf(expect_text, sizeof expect_text, "%s", stem);
                    for (int o = 0; o < 4; o++) len += snprintf(expect_text + len, sizeof expect_text - (size_t)len, "\n%c. %s", 'A' + o, q->options[o]);
                    snprintf(expect_text + len, sizeof expect_text - (size_t)len, "\nAnswer with the letter.");
                    CHECK(!strcmp(expect_text, q->question), "mcq text: %s", q->question);
                    want = derive(&s, stem, buf, sizeof buf);
                    if (!CHECK(want != NULL, "mcq stem not understood: %s", stem)) continue;
                    int right = 0, letter = -1;
                    for (int o = 0; o < 4; o++) {
                        for (int p = 0; p < o; p++) CHECK(strcmp(q->options[o], q->options[p]), "distinct options");
                        if (!strcmp(q->options[o], want)) right++, letter = o;
                    }
                    CHECK(right == 1 && q->answer[0] == 'A' + letter && !q->answer[1], "mcq '%s': answer %s", q->question, q->answer);
                    if (letter >= 0) letters[letter]++;
                    continue;
                }
                want = derive(&s, q->question, buf, sizeof buf);
                if (!CHECK(want != NULL, "question not understood: %s", q->question)) {
                    wrong++;
                    continue;
                }
                if (!strcmp(want, "<caption>")) {
                    CHECK(q->task == TASK_CAPTION, "caption task");
                    check_caption(&s, q->answer);
                    continue;
                }
                if (!CHECK(!strcmp(want, q->answer), "S=%d scene %d: '%s' answered '%s', the scene says '%s'", sizes[si], idx,
                           q->question, q->answer, want))
                    wrong++;
                if (q->task == TASK_GROUNDING) {
                    char txt[64];
                    snprintf(txt, sizeof txt, "[%d, %d, %d, %d]", q->box[0], q->box[1], q->box[2], q->box[3]);
                    CHECK(q->has_box && !strcmp(txt, q->answer), "grounding box field equals the answer");
                }
                if (q->task == TASK_RELATION || q->task == TASK_YESNO || q->task == TASK_EXISTS) {
                    yes += !strcmp(q->answer, "yes");
                    no += !strcmp(q->answer, "no");
                }
            }
        }
    }
    CHECK(wrong == 0, "%d wrong answers of %d", wrong, n_q);
    for (int t = 0; t < SYNTH_N_TASKS; t++) CHECK(per_task[t] > n_q / 40, "task %s asked %d times of %d", synth_task_names[t], per_task[t], n_q);
    CHECK(yes > (yes + no) * 2 / 5 && no > (yes + no) * 2 / 5, "yes/no balance: %d yes, %d no", yes, no);
    for (int l = 0; l < 4; l++) CHECK(letters[l] > 100, "mcq letter %c right %d times", 'A' + l, letters[l]);
}

/* ---- the files ------------------------------------------------------------------ */

/* Compares every file under a and b (recursively); counts files into *n. */
static bool same_tree(const char *a, const char *b, int *n) {
    DIR *d = opendir(a);
    if (!d) return false;
    bool ok = true;
    struct dirent *e;
    int entries_a = 0;
    while (ok && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        entries_a++;
        char pa[1024], pb[1024];
        snprintf(pa, sizeof pa, "%s/%s", a, e->d_name);
        snprintf(pb, sizeof pb, "%s/%s", b, e->d_name);
        struct stat st;
        if (stat(pa, &st) != 0) ok = false;
        else if (S_ISDIR(st.st_mode)) ok = same_tree(pa, pb, n);
        else {
            size_t la, lb;
            char *da = test_read_file(pa, &la), *db = test_read_file(pb, &lb);
            ok = da && db && la == lb && !memcmp(da, db, la);
            if (!ok) CHECK(0, "%s and %s differ", pa, pb);
            free(da);
            free(db);
            (*n)++;
        }
    }
    closedir(d);
    /* b has nothing more. */
    int entries_b = 0;
    if ((d = opendir(b))) {
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) entries_b++;
        closedir(d);
    }
    return ok && entries_a == entries_b;
}

static char *dir_in_tmp(const char *name) {
    static char bufs[4][512];
    static int k;
    char *p = bufs[k++ % 4];
    snprintf(p, 512, "%s/%s", test_tmpdir(), name);
    return p;
}

static void test_determinism(void) {
    vlmc_synth_params p;
    vlmc_synth_default_params(&p);
    p.n = 60;
    p.seed = 3;
    vlmc_error err = {0};
    const char *a = dir_in_tmp("det_a"), *b = dir_in_tmp("det_b"), *c = dir_in_tmp("det_c");
    p.threads = 1;
    CHECK(vlmc_synth_generate(&p, a, &err) == VLMC_OK, "generate: %s", err.message);
    p.threads = 3; /* another thread count, the same files */
    CHECK(vlmc_synth_generate(&p, b, &err) == VLMC_OK, "generate: %s", err.message);
    int n = 0;
    CHECK(same_tree(a, b, &n), "same seed, byte-identical trees");
    CHECK(n == 60 + 7, "60 images, 6 JSONL files and meta.json: %d files", n);
    p.seed = 4;
    CHECK(vlmc_synth_generate(&p, c, &err) == VLMC_OK, "generate: %s", err.message);
    char pa[600], pc[600];
    snprintf(pa, sizeof pa, "%s/train.jsonl", a);
    snprintf(pc, sizeof pc, "%s/train.jsonl", c);
    size_t la, lc;
    char *da = test_read_file(pa, &la), *dc = test_read_file(pc, &lc);
    CHECK(da && dc && (la != lc || memcmp(da, dc, la)), "another seed, other data");
    free(da);
    free(dc);
    snprintf(pa, sizeof pa, "%s/images/train/000001.png", a);
    snprintf(pc, sizeof pc, "%s/images/train/000001.png", c);
    da = test_read_file(pa, &la);
    dc = test_read_file(pc, &lc);
    CHECK(da && dc && (la != lc || memcmp(da, dc, la)), "another seed, another image");
    free(da);
    free(dc);
}

static const char *str_field(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Checks one split's files; adds its ids to seen (indexed by id - 1). */
static void check_split(const char *dir, const char *split, int expect, int n_total, int questions, char *seen) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s.jsonl", dir, split);
    char *text = test_read_file(path, NULL);
    if (!CHECK(text != NULL, "read %s", path)) return;
    int rows = 0, turns_total = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        rows++;
        cJSON *j = cJSON_Parse(line);
        if (!CHECK(j != NULL, "%s line %d parses", split, rows)) continue;
        const char *id = str_field(j, "id");
        const cJSON *images = cJSON_GetObjectItemCaseSensitive(j, "images"), *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages"),
                    *tasks = cJSON_GetObjectItemCaseSensitive(j, "tasks"), *scene = cJSON_GetObjectItemCaseSensitive(j, "scene");
        if (!CHECK(id && cJSON_IsArray(images) && cJSON_GetArraySize(images) == 1 && cJSON_IsArray(msgs) && cJSON_IsArray(tasks) &&
                       cJSON_IsObject(scene),
                   "%s line %d fields", split, rows)) {
            cJSON_Delete(j);
            continue;
        }
        int idn = atoi(id);
        CHECK(idn >= 1 && idn <= n_total && !seen[idn - 1], "%s: id %s new and in range", split, id);
        if (idn >= 1 && idn <= n_total) seen[idn - 1] = 1;
        char want_img[64], img_path[800];
        snprintf(want_img, sizeof want_img, "images/%s/%s.png", split, id);
        const char *img = cJSON_GetArrayItem(images, 0)->valuestring;
        CHECK(img && !strcmp(img, want_img), "image path %s", img ? img : "(null)");
        snprintf(img_path, sizeof img_path, "%s/%s", dir, want_img);
        size_t plen;
        char *png = test_read_file(img_path, &plen);
        CHECK(png && plen > 8 && !memcmp(png, "\x89PNG\r\n\x1a\n", 8), "%s is a PNG", img_path);
        free(png);
        int n_msgs = cJSON_GetArraySize(msgs), turns = n_msgs / 2;
        CHECK(n_msgs % 2 == 0 && turns == cJSON_GetArraySize(tasks) && turns >= 1 && turns <= questions, "turns %d", turns);
        turns_total += turns;
        for (int m = 0; m < n_msgs; m++) {
            const cJSON *msg = cJSON_GetArrayItem(msgs, m), *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
            const char *role = str_field(msg, "role");
            CHECK(role && !strcmp(role, m % 2 ? "assistant" : "user"), "roles alternate");
            int parts = cJSON_GetArraySize(content);
            CHECK(parts == (m == 0 ? 2 : 1), "the image comes once, in the first user turn");
            const cJSON *last = cJSON_GetArrayItem(content, parts - 1);
            const char *type = str_field(last, "type"), *txt = str_field(last, "text");
            CHECK(type && !strcmp(type, "text") && txt && *txt, "text part");
            if (m == 0) {
                const char *t0 = str_field(cJSON_GetArrayItem(content, 0), "type");
                CHECK(t0 && !strcmp(t0, "image"), "image part first");
            }
        }
        for (int t = 0; t < cJSON_GetArraySize(tasks); t++) {
            const cJSON *tv = cJSON_GetArrayItem(tasks, t);
            bool known = false;
            for (int k = 0; k < SYNTH_N_TASKS && cJSON_IsString(tv); k++) known |= !strcmp(tv->valuestring, synth_task_names[k]);
            CHECK(known, "task names");
        }
        cJSON_Delete(j);
    }
    CHECK(rows == expect, "%s has %d rows, expected %d", split, rows, expect);
    free(text);

    snprintf(path, sizeof path, "%s/%s_qa.jsonl", dir, split);
    text = test_read_file(path, NULL);
    if (!CHECK(text != NULL, "read %s", path)) return;
    int qrows = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        qrows++;
        cJSON *j = cJSON_Parse(line);
        if (!CHECK(j != NULL, "%s_qa line %d parses", split, qrows)) continue;
        const char *task = str_field(j, "task"), *q = str_field(j, "question"), *a = str_field(j, "answer");
        CHECK(str_field(j, "id") && str_field(j, "image") && task && q && a, "qa fields");
        const cJSON *opts = cJSON_GetObjectItemCaseSensitive(j, "options"), *box = cJSON_GetObjectItemCaseSensitive(j, "box");
        if (task) {
            CHECK(!strcmp(task, "mcq") == (cJSON_IsArray(opts) && cJSON_GetArraySize(opts) == 4), "options exactly for mcq");
            CHECK(!strcmp(task, "grounding") == (cJSON_IsArray(box) && cJSON_GetArraySize(box) == 4), "box exactly for grounding");
        }
        cJSON_Delete(j);
    }
    CHECK(qrows == turns_total, "%s_qa has one row per turn: %d vs %d", split, qrows, turns_total);
    free(text);
}

static void test_files(void) {
    vlmc_synth_params p;
    vlmc_synth_default_params(&p);
    p.n = 80;
    p.seed = 21;
    p.questions = 6;
    p.val_fraction = 0.1;
    p.test_fraction = 0.15;
    p.image_size = 96;
    const char *dir = dir_in_tmp("files");
    vlmc_error err = {0};
    if (!CHECK(vlmc_synth_generate(&p, dir, &err) == VLMC_OK, "generate: %s", err.message)) return;
    char seen[80] = {0};
    check_split(dir, "train", 60, 80, 6, seen);
    check_split(dir, "val", 8, 80, 6, seen);
    check_split(dir, "test", 12, 80, 6, seen);
    int all = 1;
    for (int i = 0; i < 80; i++) all &= seen[i];
    CHECK(all, "every id in exactly one split");

    char path[600];
    snprintf(path, sizeof path, "%s/meta.json", dir);
    char *text = test_read_file(path, NULL);
    cJSON *m = text ? cJSON_Parse(text) : NULL;
    if (CHECK(m != NULL, "meta.json parses")) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(m, "splits");
        CHECK(cJSON_GetObjectItemCaseSensitive(sp, "train")->valueint == 60 &&
                  cJSON_GetObjectItemCaseSensitive(sp, "val")->valueint == 8 &&
                  cJSON_GetObjectItemCaseSensitive(sp, "test")->valueint == 12,
              "meta split sizes");
        CHECK(cJSON_GetObjectItemCaseSensitive(m, "seed")->valueint == 21 && cJSON_GetObjectItemCaseSensitive(m, "n")->valueint == 80,
              "meta seed and n");
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(m, "words")) == synth_n_words, "meta words");
        CHECK(cJSON_GetObjectItemCaseSensitive(m, "format_version")->valueint == 1, "format version");
    }
    cJSON_Delete(m);
    free(text);
}

static bool file_is_dir_check(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void test_bad_params(void) {
    vlmc_synth_params p;
    vlmc_error err = {0};
    const char *dir = dir_in_tmp("bad");
    struct { const char *what; int field, value; } cases[] = {
        {"n", 0, 0}, {"image size", 1, 32}, {"image size", 1, 4096}, {"max objects", 2, 7},
        {"min objects", 3, 0}, {"questions", 4, 0}, {"text percent", 5, 101},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        vlmc_synth_default_params(&p);
        int *f[] = {&p.n, &p.image_size, &p.max_objects, &p.min_objects, &p.questions, &p.text_percent};
        *f[cases[k].field] = cases[k].value;
        vlmc_status s = vlmc_synth_generate(&p, dir, &err);
        CHECK(s == VLMC_ERR_ARG && strstr(err.message, cases[k].what), "%s %d: %s", cases[k].what, cases[k].value, err.message);
    }
    vlmc_synth_default_params(&p);
    p.val_fraction = 0.6;
    p.test_fraction = 0.6;
    CHECK(vlmc_synth_generate(&p, dir, &err) == VLMC_ERR_ARG && strstr(err.message, "fraction"), "fractions: %s", err.message);
    vlmc_synth_default_params(&p);
    p.n = 2;
    CHECK(vlmc_synth_generate(&p, "/proc/no/such/dir", &err) == VLMC_ERR_IO, "unwritable folder: %s", err.message);
    CHECK(!file_is_dir_check(dir), "nothing written for bad parameters");
}

int main(void) {
    tests_begin("synth");
    TEST_RUN(test_rng);
    TEST_RUN(test_raster_matches_reference);
    TEST_RUN(test_scenes_and_pictures);
    TEST_RUN(test_png_roundtrip);
    TEST_RUN(test_answers_follow_from_scene);
    TEST_RUN(test_determinism);
    TEST_RUN(test_files);
    TEST_RUN(test_bad_params);
    return tests_end();
}
