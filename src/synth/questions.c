/* Questions and answers about a synthetic scene, one per conversation turn.
 *
 * Every question has exactly one right answer given the picture:
 *  - an object is named only by a phrase ("circle", "red circle", "large red
 *    circle", "red object", ...) that fits exactly one object in the scene;
 *  - positions are asked only when the object's centre is clearly inside one
 *    cell of the 3x3 grid (at least 5% of the side away from the thirds);
 *  - relations only along an axis on which the two tight boxes are apart by a
 *    clear gap (at least max(2, S/32) pixels);
 *  - yes/no and existence questions are balanced between yes and no.
 * Answers come from a fixed vocabulary: colour, shape and size names, digits,
 * yes/no, the nine grid positions, the word list, option letters, boxes and
 * captions built from the same words. */
#include "synth/synth.h"

#include <stdio.h>
#include <string.h>

const char *const synth_task_names[SYNTH_N_TASKS] = {
    "caption", "color", "shape", "count", "position", "relation",
    "yesno", "exists", "grounding", "ocr", "mcq",
};

/* Attributes a phrase may mention. */
enum { A_SIZE = 1, A_COLOR = 2, A_SHAPE = 4 };

typedef struct {
    const synth_scene *s;
    synth_rng *r;
} ctx;

static bool matches(const synth_object *o, int mask, int size, int color, int shape) {
    return (!(mask & A_SIZE) || o->size == size) && (!(mask & A_COLOR) || o->color == color) &&
           (!(mask & A_SHAPE) || o->shape == shape);
}

static int count_matching(const synth_scene *s, int mask, int size, int color, int shape) {
    int n = 0;
    for (int i = 0; i < s->n_objects; i++) n += matches(&s->obj[i], mask, size, color, shape);
    return n;
}

/* "large red circle", "red object", ... for the attributes in mask. */
static void phrase(char *out, size_t cap, int mask, int size, int color, int shape) {
    snprintf(out, cap, "%s%s%s%s%s", mask & A_SIZE ? synth_size_names[size] : "", mask & A_SIZE ? " " : "",
             mask & A_COLOR ? synth_color_names[color] : "", mask & A_COLOR ? " " : "",
             mask & A_SHAPE ? synth_shape_names[shape] : "object");
}

/* A phrase naming object i alone, with one of the attribute sets in `masks`
 * (chosen at random among those that fit only object i). false if none does. */
static bool refer(ctx *c, int i, const int *masks, int n_masks, char *out, size_t cap) {
    const synth_object *o = &c->s->obj[i];
    int ok[8], n = 0;
    for (int k = 0; k < n_masks; k++)
        if (count_matching(c->s, masks[k], o->size, o->color, o->shape) == 1) ok[n++] = masks[k];
    if (!n) return false;
    int m = ok[synth_rng_below(c->r, (uint32_t)n)];
    phrase(out, cap, m, o->size, o->color, o->shape);
    return true;
}

static const int any_ref[] = {A_SHAPE, A_COLOR | A_SHAPE, A_SIZE | A_SHAPE, A_SIZE | A_COLOR | A_SHAPE};
static const int no_color_ref[] = {A_SHAPE, A_SIZE | A_SHAPE};
static const int no_size_ref[] = {A_SHAPE, A_COLOR | A_SHAPE};
static const int no_shape_ref[] = {A_COLOR, A_SIZE, A_SIZE | A_COLOR};
#define NREF(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* The objects in a random order, to try each as the subject of a question. */
static int random_order(ctx *c, int *idx) {
    int n = c->s->n_objects;
    for (int i = 0; i < n; i++) idx[i] = i;
    synth_rng_shuffle(c->r, idx, n);
    return n;
}

static void set(synth_qa *q, int task, const char *question, const char *answer) {
    q->task = task;
    snprintf(q->question, sizeof q->question, "%s", question);
    snprintf(q->answer, sizeof q->answer, "%s", answer);
}

/* a or an */
static const char *article(const char *word) { return strchr("aeiou", word[0]) ? "an" : "a"; }

void synth_box_norm(const int px[4], int size, int out[4]) {
    out[0] = px[0] * 1000 / size;
    out[1] = px[1] * 1000 / size;
    out[2] = (px[2] * 1000 + size - 1) / size;
    out[3] = (px[3] * 1000 + size - 1) / size;
}

/* ---- the tasks -------------------------------------------------------------- */

/* "A large red circle, a small blue star and the word CAT on a striped background."
 * Objects from left to right (by centre; ties top to bottom). */
static bool gen_caption(ctx *c, synth_qa *q) {
    const synth_scene *s = c->s;
    int idx[SYNTH_MAX_OBJECTS], n = s->n_objects;
    for (int i = 0; i < n; i++) idx[i] = i;
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0; j--) {
            const synth_object *a = &s->obj[idx[j - 1]], *b = &s->obj[idx[j]];
            if (a->cx > b->cx || (a->cx == b->cx && a->cy > b->cy)) {
                int t = idx[j];
                idx[j] = idx[j - 1];
                idx[j - 1] = t;
            } else break;
        }
    char items[SYNTH_MAX_OBJECTS + 1][48];
    int m = 0;
    for (int i = 0; i < n; i++) {
        const synth_object *o = &s->obj[idx[i]];
        snprintf(items[m++], sizeof items[0], "a %s %s %s", synth_size_names[o->size], synth_color_names[o->color],
                 synth_shape_names[o->shape]);
    }
    if (s->has_word) snprintf(items[m++], sizeof items[0], "the word %s", s->word.text);
    char ans[SYNTH_QA_TEXT];
    size_t len = 0;
    for (int i = 0; i < m; i++) {
        const char *sep = i == 0 ? "" : i == m - 1 ? " and " : ", ";
        len += (size_t)snprintf(ans + len, sizeof ans - len, "%s%s", sep, items[i]);
    }
    snprintf(ans + len, sizeof ans - len, " on a %s background.", synth_bg_names[s->bg]);
    ans[0] = (char)(ans[0] - 'a' + 'A');
    set(q, TASK_CAPTION, "Describe the image.", ans);
    return true;
}

static bool gen_color(ctx *c, synth_qa *q) {
    int idx[SYNTH_MAX_OBJECTS], n = random_order(c, idx);
    char ref[64], text[SYNTH_QA_TEXT];
    for (int k = 0; k < n; k++)
        if (refer(c, idx[k], no_color_ref, NREF(no_color_ref), ref, sizeof ref)) {
            snprintf(text, sizeof text, "What color is the %s?", ref);
            set(q, TASK_COLOR, text, synth_color_names[c->s->obj[idx[k]].color]);
            return true;
        }
    return false;
}

static bool gen_shape(ctx *c, synth_qa *q) {
    int idx[SYNTH_MAX_OBJECTS], n = random_order(c, idx);
    char ref[64], text[SYNTH_QA_TEXT];
    for (int k = 0; k < n; k++)
        if (refer(c, idx[k], no_shape_ref, NREF(no_shape_ref), ref, sizeof ref)) {
            snprintf(text, sizeof text, "What shape is the %s?", ref);
            set(q, TASK_SHAPE, text, synth_shape_names[c->s->obj[idx[k]].shape]);
            return true;
        }
    return false;
}

/* A shape or colour to count: two times in three one that is present, else any
 * (so that 0 is a common answer too). */
static int pick_value(ctx *c, bool shape) {
    const synth_scene *s = c->s;
    if (synth_rng_chance(c->r, 2, 3)) {
        const synth_object *o = &s->obj[synth_rng_below(c->r, (uint32_t)s->n_objects)];
        return shape ? o->shape : o->color;
    }
    return (int)synth_rng_below(c->r, shape ? SYNTH_N_SHAPES : SYNTH_N_COLORS);
}

static bool gen_count(ctx *c, synth_qa *q) {
    const synth_scene *s = c->s;
    char text[SYNTH_QA_TEXT], ans[8];
    int kind = (int)synth_rng_below(c->r, 3), n;
    if (kind == 0) {
        snprintf(text, sizeof text, "How many shapes are there?");
        n = s->n_objects;
    } else if (kind == 1) {
        int sh = pick_value(c, true);
        snprintf(text, sizeof text, "How many %s are there?", synth_shape_plurals[sh]);
        n = count_matching(s, A_SHAPE, 0, 0, sh);
    } else {
        int co = pick_value(c, false);
        snprintf(text, sizeof text, "How many %s shapes are there?", synth_color_names[co]);
        n = count_matching(s, A_COLOR, 0, co, 0);
    }
    snprintf(ans, sizeof ans, "%d", n);
    set(q, TASK_COUNT, text, ans);
    return true;
}

static bool abs_diff_lt(int a, int b, int m) { return (a > b ? a - b : b - a) < m; }

/* The grid cell (0..8) of object o, or -1 when its centre is within 5% of the
 * side of a line between cells. Computed in sub-pixel units. */
static int grid_cell(const synth_scene *s, const synth_object *o) {
    int side = s->size * SYNTH_SUB, margin = 3 * side / 20; /* 5% of the side, times 3 */
    int v[2] = {o->cx, o->cy}, cell[2];
    for (int a = 0; a < 2; a++) {
        int t = 3 * v[a];
        if (abs_diff_lt(t, side, margin) || abs_diff_lt(t, 2 * side, margin)) return -1;
        cell[a] = t < side ? 0 : t < 2 * side ? 1 : 2;
    }
    return cell[1] * 3 + cell[0];
}

static bool gen_position(ctx *c, synth_qa *q) {
    int idx[SYNTH_MAX_OBJECTS], n = random_order(c, idx);
    char ref[64], text[SYNTH_QA_TEXT];
    for (int k = 0; k < n; k++) {
        int cell = grid_cell(c->s, &c->s->obj[idx[k]]);
        if (cell < 0 || !refer(c, idx[k], any_ref, NREF(any_ref), ref, sizeof ref)) continue;
        snprintf(text, sizeof text, "Where is the %s?", ref);
        set(q, TASK_POSITION, text, synth_position_names[cell]);
        return true;
    }
    return false;
}

/* The clear gap relations need between two tight boxes, in pixels. */
static int relation_gap(const synth_scene *s) { return s->size / 32 < 2 ? 2 : s->size / 32; }

static const char *const relation_words[4] = {"to the left of", "to the right of", "above", "below"};

/* Whether relation rel (0 left of, 1 right of, 2 above, 3 below) between a and
 * b is clear, and if so (*holds) whether it is true. Clear means the boxes
 * are apart by the gap along that relation's axis. */
static bool relation_clear(const synth_scene *s, const synth_object *a, const synth_object *b, int rel, bool *holds) {
    int g = relation_gap(s), ax = rel < 2 ? 0 : 1;
    bool a_first = a->box[ax + 2] + g <= b->box[ax], b_first = b->box[ax + 2] + g <= a->box[ax];
    if (!a_first && !b_first) return false;
    *holds = (rel == 0 || rel == 2) ? a_first : b_first;
    return true;
}

static bool gen_relation(ctx *c, synth_qa *q) {
    const synth_scene *s = c->s;
    if (s->n_objects < 2) return false;
    bool want = synth_rng_chance(c->r, 1, 2); /* yes or no */
    /* Every (a, b, relation) with a clear answer equal to `want`. */
    int cand[SYNTH_MAX_OBJECTS * SYNTH_MAX_OBJECTS * 4][3], n = 0;
    for (int a = 0; a < s->n_objects; a++)
        for (int b = 0; b < s->n_objects; b++) {
            if (a == b) continue;
            for (int rel = 0; rel < 4; rel++) {
                bool holds;
                if (relation_clear(s, &s->obj[a], &s->obj[b], rel, &holds) && holds == want) {
                    cand[n][0] = a;
                    cand[n][1] = b;
                    cand[n][2] = rel;
                    n++;
                }
            }
        }
    for (int tries = 0; tries < 8 && n > 0; tries++) {
        int *k = cand[synth_rng_below(c->r, (uint32_t)n)];
        char ra[64], rb[64], text[SYNTH_QA_TEXT];
        if (!refer(c, k[0], any_ref, NREF(any_ref), ra, sizeof ra) || !refer(c, k[1], any_ref, NREF(any_ref), rb, sizeof rb))
            continue;
        snprintf(text, sizeof text, "Is the %s %s the %s?", ra, relation_words[k[2]], rb);
        set(q, TASK_RELATION, text, want ? "yes" : "no");
        return true;
    }
    return false;
}

/* Is the <object> <colour / size>? Is the <object> a <shape>? Half yes, half no. */
static bool gen_yesno(ctx *c, synth_qa *q) {
    int idx[SYNTH_MAX_OBJECTS], n = random_order(c, idx);
    int kind = (int)synth_rng_below(c->r, 3);
    bool yes = synth_rng_chance(c->r, 1, 2);
    char ref[64], text[SYNTH_QA_TEXT];
    for (int k = 0; k < n; k++) {
        const synth_object *o = &c->s->obj[idx[k]];
        if (kind == 0 && refer(c, idx[k], no_color_ref, NREF(no_color_ref), ref, sizeof ref)) {
            int col = yes ? o->color : (o->color + 1 + (int)synth_rng_below(c->r, SYNTH_N_COLORS - 1)) % SYNTH_N_COLORS;
            snprintf(text, sizeof text, "Is the %s %s?", ref, synth_color_names[col]);
        } else if (kind == 1 && refer(c, idx[k], no_size_ref, NREF(no_size_ref), ref, sizeof ref)) {
            snprintf(text, sizeof text, "Is the %s %s?", ref, synth_size_names[yes ? o->size : 1 - o->size]);
        } else if (kind == 2 && refer(c, idx[k], no_shape_ref, NREF(no_shape_ref), ref, sizeof ref)) {
            int sh = yes ? o->shape : (o->shape + 1 + (int)synth_rng_below(c->r, SYNTH_N_SHAPES - 1)) % SYNTH_N_SHAPES;
            snprintf(text, sizeof text, "Is the %s %s %s?", ref, article(synth_shape_names[sh]), synth_shape_names[sh]);
        } else continue;
        set(q, TASK_YESNO, text, yes ? "yes" : "no");
        return true;
    }
    return false;
}

/* Is there a <description>? / Is there any text? Half yes, half no. */
static bool gen_exists(ctx *c, synth_qa *q) {
    const synth_scene *s = c->s;
    char desc[64], text[SYNTH_QA_TEXT];
    if (synth_rng_chance(c->r, 1, 6)) {
        set(q, TASK_EXISTS, "Is there any text in the image?", s->has_word ? "yes" : "no");
        return true;
    }
    static const int masks[] = {A_SHAPE, A_COLOR | A_SHAPE, A_SIZE | A_SHAPE, A_SIZE | A_COLOR | A_SHAPE};
    bool yes = synth_rng_chance(c->r, 1, 2);
    int mask = masks[synth_rng_below(c->r, 4)], size, color, shape;
    if (yes) {
        const synth_object *o = &s->obj[synth_rng_below(c->r, (uint32_t)s->n_objects)];
        size = o->size, color = o->color, shape = o->shape;
    } else {
        /* A description that fits nothing; there is always one with few objects,
         * but give up after a few draws rather than loop. */
        int tries = 0;
        do {
            size = (int)synth_rng_below(c->r, SYNTH_N_SIZES);
            color = (int)synth_rng_below(c->r, SYNTH_N_COLORS);
            shape = (int)synth_rng_below(c->r, SYNTH_N_SHAPES);
        } while (count_matching(s, mask, size, color, shape) > 0 && ++tries < 20);
        if (tries == 20) return false;
    }
    phrase(desc, sizeof desc, mask, size, color, shape);
    snprintf(text, sizeof text, "Is there %s %s?", article(desc), desc);
    set(q, TASK_EXISTS, text, yes ? "yes" : "no");
    return true;
}

/* The box as answered: "[x1, y1, x2, y2]" in 0..1000. */
static void box_answer(synth_qa *q, const int px[4], int size) {
    synth_box_norm(px, size, q->box);
    q->has_box = true;
    snprintf(q->answer, sizeof q->answer, "[%d, %d, %d, %d]", q->box[0], q->box[1], q->box[2], q->box[3]);
}

static bool gen_grounding(ctx *c, synth_qa *q) {
    const synth_scene *s = c->s;
    char ref[64], text[SYNTH_QA_TEXT];
    if (s->has_word && synth_rng_chance(c->r, 1, 5)) {
        set(q, TASK_GROUNDING, "Give the bounding box of the text.", "");
        box_answer(q, s->word.box, s->size);
        return true;
    }
    int idx[SYNTH_MAX_OBJECTS], n = random_order(c, idx);
    for (int k = 0; k < n; k++)
        if (refer(c, idx[k], any_ref, NREF(any_ref), ref, sizeof ref)) {
            snprintf(text, sizeof text, "Give the bounding box of the %s.", ref);
            set(q, TASK_GROUNDING, text, "");
            box_answer(q, s->obj[idx[k]].box, s->size);
            return true;
        }
    return false;
}

static bool gen_ocr(ctx *c, synth_qa *q) {
    if (!c->s->has_word) return false;
    set(q, TASK_OCR, "What word is written in the image?", c->s->word.text);
    return true;
}

/* Puts `answer` and three distinct other entries of vocab at random letters. */
static void mcq_options(ctx *c, synth_qa *q, const char *stem, const char *const *vocab, int n_vocab, int answer) {
    int pick[SYNTH_MCQ_OPTIONS], n = 0;
    pick[n++] = answer;
    while (n < SYNTH_MCQ_OPTIONS) {
        int v = (int)synth_rng_below(c->r, (uint32_t)n_vocab);
        bool dup = false;
        for (int k = 0; k < n; k++) dup |= pick[k] == v;
        if (!dup) pick[n++] = v;
    }
    synth_rng_shuffle(c->r, pick, n);
    char text[SYNTH_QA_TEXT];
    size_t len = (size_t)snprintf(text, sizeof text, "%s", stem);
    q->n_options = n;
    for (int k = 0; k < n; k++) {
        snprintf(q->options[k], sizeof q->options[k], "%s", vocab[pick[k]]);
        len += (size_t)snprintf(text + len, sizeof text - len, "\n%c. %s", 'A' + k, vocab[pick[k]]);
        if (pick[k] == answer) snprintf(q->answer, sizeof q->answer, "%c", 'A' + k);
    }
    snprintf(text + len, sizeof text - len, "\nAnswer with the letter.");
    q->task = TASK_MCQ;
    snprintf(q->question, sizeof q->question, "%s", text);
}

static const char *const count_words[SYNTH_MAX_OBJECTS + 1] = {"0", "1", "2", "3", "4", "5", "6"};

/* Multiple choice: an object's colour or shape, the number of shapes, or the word. */
static bool gen_mcq(ctx *c, synth_qa *q) {
    const synth_scene *s = c->s;
    int kind = (int)synth_rng_below(c->r, s->has_word ? 4 : 3);
    char ref[64], stem[SYNTH_QA_TEXT];
    int idx[SYNTH_MAX_OBJECTS], n = random_order(c, idx);
    if (kind == 0) {
        for (int k = 0; k < n; k++)
            if (refer(c, idx[k], no_color_ref, NREF(no_color_ref), ref, sizeof ref)) {
                snprintf(stem, sizeof stem, "What color is the %s?", ref);
                mcq_options(c, q, stem, synth_color_names, SYNTH_N_COLORS, s->obj[idx[k]].color);
                return true;
            }
        return false;
    }
    if (kind == 1) {
        for (int k = 0; k < n; k++)
            if (refer(c, idx[k], no_shape_ref, NREF(no_shape_ref), ref, sizeof ref)) {
                snprintf(stem, sizeof stem, "What shape is the %s?", ref);
                mcq_options(c, q, stem, synth_shape_names, SYNTH_N_SHAPES, s->obj[idx[k]].shape);
                return true;
            }
        return false;
    }
    if (kind == 2) {
        /* Options among 1..6 (the possible numbers of shapes). */
        mcq_options(c, q, "How many shapes are there?", count_words + 1, SYNTH_MAX_OBJECTS, s->n_objects - 1);
        return true;
    }
    int w = 0;
    while (w < synth_n_words && strcmp(synth_words[w], s->word.text)) w++;
    if (w == synth_n_words) return false;
    mcq_options(c, q, "What word is written in the image?", synth_words, synth_n_words, w);
    return true;
}

typedef bool (*gen_fn)(ctx *, synth_qa *);
static const gen_fn generators[SYNTH_N_TASKS] = {
    gen_caption, gen_color, gen_shape, gen_count, gen_position, gen_relation,
    gen_yesno, gen_exists, gen_grounding, gen_ocr, gen_mcq,
};

/* Whether two questions ask the same thing: equal up to the first line break
 * (multiple-choice questions with the same stem count as one). */
static bool same_stem(const char *a, const char *b) {
    size_t la = strcspn(a, "\n"), lb = strcspn(b, "\n");
    return la == lb && !memcmp(a, b, la);
}

bool synth_task_mask(const char *list, unsigned *mask, char *bad, size_t bad_size) {
    *mask = 0;
    if (!list || !*list) {
        *mask = (1u << SYNTH_N_TASKS) - 1;
        return true;
    }
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        int t = 0;
        while (t < SYNTH_N_TASKS && !(strlen(synth_task_names[t]) == len && !memcmp(synth_task_names[t], p, len))) t++;
        if (t == SYNTH_N_TASKS) {
            snprintf(bad, bad_size, "%.*s", (int)len, p);
            return false;
        }
        *mask |= 1u << t;
        p += len;
        if (*p == ',') p++;
    }
    return true;
}

int synth_questions(const synth_scene *s, synth_rng *rng, synth_qa *out, int max, unsigned task_mask) {
    ctx c = {s, rng};
    int n = 0, order[SYNTH_N_TASKS], pos = SYNTH_N_TASKS;
    /* Rounds over the tasks in shuffled order, so that a conversation covers
     * different tasks before it repeats one; tasks the scene cannot support
     * (no word to read, no object nameable alone) are skipped. */
    for (int attempt = 0; n < max && attempt < 12 * max + 2 * SYNTH_N_TASKS; attempt++) {
        if (pos == SYNTH_N_TASKS) {
            for (int t = 0; t < SYNTH_N_TASKS; t++) order[t] = t;
            synth_rng_shuffle(rng, order, SYNTH_N_TASKS);
            pos = 0;
        }
        int task = order[pos++];
        if (!(task_mask & (1u << task))) continue;
        synth_qa q;
        memset(&q, 0, sizeof q);
        if (!generators[task](&c, &q)) continue;
        bool dup = false;
        for (int k = 0; k < n && !dup; k++) dup = same_stem(out[k].question, q.question);
        if (!dup) out[n++] = q;
    }
    /* The caption, if any, goes last: earlier it would give away the answers
     * to the questions after it, and the model should read those off the image. */
    for (int k = 0; k + 1 < n; k++)
        if (out[k].task == TASK_CAPTION) {
            synth_qa c = out[k];
            memmove(&out[k], &out[k + 1], sizeof out[0] * (size_t)(n - 1 - k));
            out[n - 1] = c;
            break;
        }
    return n;
}
