/* Scene sampling for the synthetic world: the vocabulary, the seeded PRNG and
 * the placement of shapes and words. See synth.h for the model of a scene. */
#include "synth/synth.h"

#include <string.h>

/* ---- vocabulary ------------------------------------------------------------- */

/* Saturated colours that stand out from the mid-grey backgrounds (luma 78..178). */
const char *const synth_color_names[SYNTH_N_COLORS] = {"red", "green", "blue", "yellow",
                                                       "purple", "orange", "white", "black"};
const uint8_t synth_color_rgb[SYNTH_N_COLORS][3] = {
    {220, 30, 30}, {30, 170, 50}, {40, 80, 230}, {245, 215, 30},
    {150, 60, 200}, {250, 140, 20}, {250, 250, 250}, {20, 20, 20},
};
const char *const synth_shape_names[SYNTH_N_SHAPES] = {"circle", "square", "triangle", "star", "cross", "diamond"};
const char *const synth_shape_plurals[SYNTH_N_SHAPES] = {"circles", "squares", "triangles",
                                                         "stars", "crosses", "diamonds"};
const char *const synth_size_names[SYNTH_N_SIZES] = {"small", "large"};
const char *const synth_bg_names[SYNTH_N_BGS] = {"plain", "striped", "checkered", "noisy", "gradient"};
const char *const synth_position_names[SYNTH_N_POSITIONS] = {
    "top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right",
};
/* 3-5 letters, upper case, none equal to an answer word (no STAR, RED, ...);
 * together they use every letter A-Z. */
const char *const synth_words[] = {
    "CAT", "DOG", "SUN", "BOX", "CAR", "HAT", "PEN", "CUP", "MAP", "KEY", "BUS", "FOX",
    "OWL", "BEE", "EGG", "ICE", "JAM", "ZOO", "BIRD", "FISH", "TREE", "MOON", "BOOK", "LAMP",
    "DOOR", "SHIP", "KITE", "FROG", "CAKE", "RAIN", "SNOW", "WIND", "GOLD", "PARK", "ROAD", "MILK",
    "APPLE", "HOUSE", "TRAIN", "CLOCK", "PLANT", "RIVER", "CHAIR", "BREAD", "MOUSE", "WATER", "LIGHT", "QUEEN",
    "ZEBRA", "PIZZA", "JUICE", "VOICE",
};
const int synth_n_words = (int)(sizeof synth_words / sizeof synth_words[0]);

/* ---- random numbers --------------------------------------------------------- */

void synth_rng_seed(synth_rng *r, uint64_t seed, uint64_t index, uint64_t purpose) {
    /* Mix the three numbers through splitmix64 so that nearby seeds and indices
     * give unrelated streams. */
    uint64_t x = seed;
    uint64_t a = splitmix64(&x);
    x = a ^ (index * 0xD1B54A32D192ED03ull);
    uint64_t b = splitmix64(&x);
    x = b ^ (purpose * 0x8CB92BA72F3D8DD7ull);
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

uint64_t synth_rng_next(synth_rng *r) { return rng_next(r); }

uint32_t synth_rng_below(synth_rng *r, uint32_t n) { return rng_below(r, n); }

int synth_rng_range(synth_rng *r, int lo, int hi) {
    if (hi <= lo) return lo;
    return lo + (int)synth_rng_below(r, (uint32_t)(hi - lo + 1));
}

bool synth_rng_chance(synth_rng *r, uint32_t num, uint32_t den) { return synth_rng_below(r, den) < num; }

void synth_rng_shuffle(synth_rng *r, int *a, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)synth_rng_below(r, (uint32_t)i + 1);
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* ---- placement -------------------------------------------------------------- */

/* Rectangles in sub-pixel units, x1/y1 inclusive. */
typedef struct { int x0, y0, x1, y1; } rect;

/* true when a and b are apart by at least gap along some axis. */
static bool apart(rect a, rect b, int gap) {
    return a.x1 + gap <= b.x0 || b.x1 + gap <= a.x0 || a.y1 + gap <= b.y0 || b.y1 + gap <= a.y0;
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Half extent (sub-pixel units) for a size class: small is 6-7.5% of the side,
 * large 12-15%, so that the two classes never meet. */
static int sample_half_extent(synth_rng *r, int S, int size) {
    int lo = size == SIZE_LARGE ? 120 : 60, hi = size == SIZE_LARGE ? 150 : 75;
    return synth_rng_range(r, S * SYNTH_SUB * lo / 1000, S * SYNTH_SUB * hi / 1000);
}

static void sample_background(synth_rng *r, synth_scene *s) {
    int S = s->size;
    s->bg = (int)synth_rng_below(r, SYNTH_N_BGS);
    /* A mid grey with a slight tint, and a second tone a little lighter or darker. */
    int g = synth_rng_range(r, 100, 156);
    int delta = synth_rng_range(r, 14, 22) * (synth_rng_chance(r, 1, 2) ? 1 : -1);
    for (int c = 0; c < 3; c++) {
        int v = g + synth_rng_range(r, -10, 10);
        s->bg_rgb[c] = (uint8_t)clampi(v, 0, 255);
        s->bg_rgb2[c] = (uint8_t)clampi(v + delta, 0, 255);
    }
    s->bg_period = clampi(synth_rng_range(r, S / 16, S / 6), 4, S);
    s->bg_dir = (int)synth_rng_below(r, 3);
    s->bg_seed = synth_rng_next(r);
}

static void sample_word(synth_rng *r, synth_scene *s) {
    int S = s->size, margin = 2;
    synth_word *w = &s->word;
    memset(w, 0, sizeof *w);
    const char *text = synth_words[synth_rng_below(r, (uint32_t)synth_n_words)];
    memcpy(w->text, text, strlen(text) + 1);
    w->color = synth_rng_chance(r, 1, 2) ? SYNTH_WORD_WHITE : SYNTH_WORD_BLACK;
    /* Glyphs of 5x7 font pixels, one blank column between letters; large enough
     * to read at 64-224 px: at least 2 image pixels per font pixel. */
    w->scale = S / 64 < 2 ? 2 : S / 64;
    int len = (int)strlen(w->text);
    int width = (len * (SYNTH_GLYPH_W + 1) - 1) * w->scale, height = SYNTH_GLYPH_H * w->scale;
    w->x = synth_rng_range(r, margin, S - margin - width);
    w->y = synth_rng_range(r, margin, S - margin - height);
    /* The tight box of the ink (some letters, like I, leave their edge columns blank). */
    int x0 = S, y0 = S, x1 = -1, y1 = -1;
    for (int k = 0; k < len; k++)
        for (int row = 0; row < SYNTH_GLYPH_H; row++)
            for (int col = 0; col < SYNTH_GLYPH_W; col++) {
                if (!synth_glyph_pixel(w->text[k], col, row)) continue;
                int px = w->x + (k * (SYNTH_GLYPH_W + 1) + col) * w->scale, py = w->y + row * w->scale;
                if (px < x0) x0 = px;
                if (px + w->scale > x1) x1 = px + w->scale;
                if (py < y0) y0 = py;
                if (py + w->scale > y1) y1 = py + w->scale;
            }
    w->box[0] = x0;
    w->box[1] = y0;
    w->box[2] = x1;
    w->box[3] = y1;
}

void synth_scene_sample(const synth_world_params *p, uint64_t seed, uint64_t index, synth_scene *out) {
    synth_rng r;
    synth_rng_seed(&r, seed, index, 1);
    synth_scene *s = out;
    memset(s, 0, sizeof *s);
    int S = s->size = p->size;
    sample_background(&r, s);

    rect taken[SYNTH_MAX_OBJECTS + 1];
    int n_taken = 0;
    /* Everything keeps at least this far apart (and from the border), so no
     * object hides another and relations are read off clean gaps. */
    int gap = (S / 32 < 2 ? 2 : S / 32) * SYNTH_SUB, border = 2 * SYNTH_SUB;

    s->has_word = synth_rng_chance(&r, (uint32_t)p->text_percent, 100);
    if (s->has_word) {
        sample_word(&r, s);
        const int *b = s->word.box;
        taken[n_taken++] = (rect){b[0] * SYNTH_SUB, b[1] * SYNTH_SUB, b[2] * SYNTH_SUB - 1, b[3] * SYNTH_SUB - 1};
    }

    int want = synth_rng_range(&r, p->min_objects, p->max_objects);
    for (int i = 0; i < want; i++) {
        synth_object o = {0};
        o.shape = (int)synth_rng_below(&r, SYNTH_N_SHAPES);
        o.color = (int)synth_rng_below(&r, SYNTH_N_COLORS);
        o.size = (int)synth_rng_below(&r, SYNTH_N_SIZES);
        bool placed = false;
        /* Up to 100 random spots; a large object that finds none becomes small
         * and tries again; one that still finds none is left out. */
        for (int attempt = 0; attempt < 200 && !placed; attempt++) {
            if (attempt == 0 || attempt == 100) {
                if (attempt == 100) {
                    if (o.size == SIZE_SMALL) break;
                    o.size = SIZE_SMALL;
                }
                o.h = sample_half_extent(&r, S, o.size);
            }
            int lo = o.h + border, hi = S * SYNTH_SUB - 1 - o.h - border;
            o.cx = synth_rng_range(&r, lo, hi);
            o.cy = synth_rng_range(&r, lo, hi);
            rect e = {o.cx - o.h, o.cy - o.h, o.cx + o.h, o.cy + o.h};
            placed = true;
            for (int k = 0; k < n_taken && placed; k++) placed = apart(e, taken[k], gap);
            if (placed) taken[n_taken++] = e;
        }
        if (!placed) continue;
        synth_object_box(S, &o);
        s->obj[s->n_objects++] = o;
    }
    if (s->n_objects == 0) {
        /* Rare (a small image crowded by its word): drop the word and put one
         * small object in the middle, so that every scene has an object. */
        synth_object o = {0};
        o.shape = (int)synth_rng_below(&r, SYNTH_N_SHAPES);
        o.color = (int)synth_rng_below(&r, SYNTH_N_COLORS);
        o.size = SIZE_SMALL;
        o.h = sample_half_extent(&r, S, o.size);
        o.cx = o.cy = S * SYNTH_SUB / 2;
        synth_object_box(S, &o);
        s->obj[s->n_objects++] = o;
        s->has_word = false;
        memset(&s->word, 0, sizeof s->word);
    }
}

void synth_object_center_px(const synth_object *o, int *x, int *y) {
    *x = o->cx / SYNTH_SUB;
    *y = o->cy / SYNTH_SUB;
}
