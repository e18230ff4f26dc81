/* Rasterising synthetic scenes: background textures, shapes with 4x4
 * supersampled coverage (integer arithmetic only, so every machine draws the
 * same bytes), and words in a 5x7 bitmap font drawn here. */
#include "synth/synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the bitmap font -------------------------------------------------------- */

/* 'A'..'Z', 7 rows of 5 columns each; '#' is ink. */
static const char *const font[26][SYNTH_GLYPH_H] = {
    {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}, /* A */
    {"####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."}, /* B */
    {".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."}, /* C */
    {"####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."}, /* D */
    {"#####", "#....", "#....", "####.", "#....", "#....", "#####"}, /* E */
    {"#####", "#....", "#....", "####.", "#....", "#....", "#...."}, /* F */
    {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"}, /* G */
    {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}, /* H */
    {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}, /* I */
    {"..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."}, /* J */
    {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"}, /* K */
    {"#....", "#....", "#....", "#....", "#....", "#....", "#####"}, /* L */
    {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"}, /* M */
    {"#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"}, /* N */
    {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}, /* O */
    {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."}, /* P */
    {".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"}, /* Q */
    {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"}, /* R */
    {".####", "#....", "#....", ".###.", "....#", "....#", "####."}, /* S */
    {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."}, /* T */
    {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}, /* U */
    {"#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."}, /* V */
    {"#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."}, /* W */
    {"#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"}, /* X */
    {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."}, /* Y */
    {"#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"}, /* Z */
};

bool synth_glyph_pixel(char c, int col, int row) {
    if (c < 'A' || c > 'Z' || col < 0 || col >= SYNTH_GLYPH_W || row < 0 || row >= SYNTH_GLYPH_H) return false;
    return font[c - 'A'][row][col] == '#';
}

/* ---- shapes ----------------------------------------------------------------- */

/* cos and sin of -90 + 36k degrees, times 10000: the points of a star. */
static const int star_dir[10][2] = {
    {0, -10000}, {5878, -8090}, {9511, -3090}, {9511, 3090}, {5878, 8090},
    {0, 10000}, {-5878, 8090}, {-9511, 3090}, {-9511, -3090}, {-5878, -8090},
};

/* A shape ready for inside tests, relative to its centre (sub-pixel units). */
typedef struct {
    int shape, h;
    int q; /* square: half side; cross: half arm width */
    int poly[10][2]; /* star vertices */
} geom;

static void geom_init(geom *g, const synth_object *o) {
    memset(g, 0, sizeof *g);
    g->shape = o->shape;
    g->h = o->h;
    if (o->shape == SHAPE_SQUARE) g->q = o->h * 7 / 8; /* a square as big as the circle looks larger */
    if (o->shape == SHAPE_CROSS) g->q = o->h * 3 / 10;
    if (o->shape == SHAPE_STAR) {
        int inner = o->h * 45 / 100; /* a little fatter than the regular star's 0.38, to read at low resolution */
        for (int k = 0; k < 10; k++) {
            int rad = k % 2 ? inner : o->h;
            g->poly[k][0] = star_dir[k][0] * rad / 10000;
            g->poly[k][1] = star_dir[k][1] * rad / 10000;
        }
    }
}

/* Crossing-number test for a simple polygon, exact in integers. */
static bool in_polygon(const int (*v)[2], int n, int x, int y) {
    bool in = false;
    for (int i = 0, j = n - 1; i < n; j = i++) {
        int xi = v[i][0], yi = v[i][1], xj = v[j][0], yj = v[j][1];
        if ((yi > y) != (yj > y)) {
            /* x < xi + (y - yi) (xj - xi) / (yj - yi), without division. */
            int64_t lhs = (int64_t)(x - xi) * (yj - yi), rhs = (int64_t)(y - yi) * (xj - xi);
            if (yj > yi ? lhs < rhs : lhs > rhs) in = !in;
        }
    }
    return in;
}

/* The reference definition of each shape: is the point (dx, dy) from the
 * centre inside? The rasteriser below computes the same sets row by row. */
static bool inside(const geom *g, int dx, int dy) {
    int ax = abs(dx), ay = abs(dy), h = g->h;
    switch (g->shape) {
    case SHAPE_CIRCLE: return (int64_t)dx * dx + (int64_t)dy * dy <= (int64_t)h * h;
    case SHAPE_SQUARE: return ax <= g->q && ay <= g->q;
    case SHAPE_TRIANGLE: return dy >= -h && dy <= h && 2 * ax <= dy + h; /* apex up, base at the bottom */
    case SHAPE_STAR: return in_polygon((const int (*)[2])g->poly, 10, dx, dy);
    case SHAPE_CROSS: return (ax <= h && ay <= g->q) || (ax <= g->q && ay <= h);
    case SHAPE_DIAMOND: return ax + ay <= h;
    default: return false;
    }
}

bool synth_shape_inside(const synth_object *o, int dx, int dy) {
    geom g;
    geom_init(&g, o);
    return inside(&g, dx, dy);
}

static int64_t isqrt64(int64_t v) {
    if (v <= 0) return 0;
    int64_t r = (int64_t)sqrt((double)v);
    while (r * r > v) r--;
    while ((r + 1) * (r + 1) <= v) r++;
    return r;
}

/* floor(a / b) for b > 0. */
static int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

enum { MAX_SPANS = 5 };

/* The points of the row dy inside the shape, as inclusive intervals of dx;
 * returns how many. Exactly the points where inside() is true. */
static int row_spans(const geom *g, int dy, int lo[MAX_SPANS], int hi[MAX_SPANS]) {
    int ay = abs(dy), h = g->h, w = -1;
    switch (g->shape) {
    case SHAPE_CIRCLE:
        if (ay <= h) w = (int)isqrt64((int64_t)h * h - (int64_t)dy * dy);
        break;
    case SHAPE_SQUARE:
        if (ay <= g->q) w = g->q;
        break;
    case SHAPE_TRIANGLE:
        if (dy >= -h && dy <= h) w = (dy + h) / 2; /* dy + h >= 0 */
        break;
    case SHAPE_CROSS:
        w = ay <= g->q ? h : ay <= h ? g->q : -1;
        break;
    case SHAPE_DIAMOND:
        w = h - ay;
        break;
    case SHAPE_STAR: {
        /* in_polygon toggles for each edge crossing the row with x < X(edge);
         * for integer x that is x <= t, t the largest integer below X. With the
         * thresholds sorted, the inside is (t1, t2], (t3, t4], ... */
        int t[10], n = 0;
        for (int i = 0, j = 9; i < 10; j = i++) {
            int xi = g->poly[i][0], yi = g->poly[i][1], xj = g->poly[j][0], yj = g->poly[j][1];
            if ((yi > dy) == (yj > dy)) continue;
            /* X = xi + (dy - yi)(xj - xi) / (yj - yi); x < X  <=>  x <= ceil(X) - 1. */
            int64_t num = (int64_t)(dy - yi) * (xj - xi), den = yj - yi;
            if (den < 0) num = -num, den = -den;
            int64_t ceil_q = -floor_div(-num, den);
            t[n++] = (int)(xi + ceil_q - 1);
        }
        for (int i = 1; i < n; i++)
            for (int k = i; k > 0 && t[k - 1] > t[k]; k--) {
                int tmp = t[k];
                t[k] = t[k - 1];
                t[k - 1] = tmp;
            }
        int m = 0;
        for (int i = 0; i + 1 < n && m < MAX_SPANS; i += 2)
            if (t[i] + 1 <= t[i + 1]) {
                lo[m] = t[i] + 1;
                hi[m] = t[i + 1];
                m++;
            }
        return m;
    }
    default: break;
    }
    if (w < 0) return 0;
    lo[0] = -w;
    hi[0] = w;
    return 1;
}

/* Coverage (0..16) of pixels x0..x1 (inclusive) of pixel row y into out[0..]:
 * how many of each pixel's 4x4 sample points, at 2, 6, 10, 14 sub-pixel units
 * into the pixel, are inside the shape. */
static void cover_row(const geom *g, const synth_object *o, int y, int x0, int x1, uint8_t *out) {
    int lo[4][MAX_SPANS], hi[4][MAX_SPANS], n[4];
    for (int j = 0; j < 4; j++) n[j] = row_spans(g, y * SYNTH_SUB + 2 + 4 * j - o->cy, lo[j], hi[j]);
    for (int x = x0; x <= x1; x++) {
        int c = 0;
        for (int i = 0; i < 4; i++) {
            int dx = x * SYNTH_SUB + 2 + 4 * i - o->cx;
            for (int j = 0; j < 4; j++)
                for (int k = 0; k < n[j]; k++) c += lo[j][k] <= dx && dx <= hi[j][k];
        }
        out[x - x0] = (uint8_t)c;
    }
}

static int coverage(const geom *g, const synth_object *o, int x, int y) {
    uint8_t c;
    cover_row(g, o, y, x, x, &c);
    return c;
}

int synth_shape_coverage_at(const synth_object *o, int x, int y) {
    geom g;
    geom_init(&g, o);
    return coverage(&g, o, x, y);
}

/* The pixel range scanned for an object: its extent [c-h, c+h] with a pixel to spare, clipped. */
static void scan_range(int S, const synth_object *o, int *x0, int *y0, int *x1, int *y1) {
    *x0 = (o->cx - o->h) / SYNTH_SUB - 1, *x1 = (o->cx + o->h) / SYNTH_SUB + 1;
    *y0 = (o->cy - o->h) / SYNTH_SUB - 1, *y1 = (o->cy + o->h) / SYNTH_SUB + 1;
    if (*x0 < 0) *x0 = 0;
    if (*y0 < 0) *y0 = 0;
    if (*x1 > S - 1) *x1 = S - 1;
    if (*y1 > S - 1) *y1 = S - 1;
}

void synth_object_box(int S, synth_object *o) {
    geom g;
    geom_init(&g, o);
    int x0, y0, x1, y1;
    scan_range(S, o, &x0, &y0, &x1, &y1);
    int bx0 = S, by0 = S, bx1 = -1, by1 = -1;
    uint8_t row[SYNTH_MAX_SIZE];
    for (int y = y0; y <= y1; y++) {
        cover_row(&g, o, y, x0, x1, row);
        for (int x = x0; x <= x1; x++)
            if (row[x - x0]) {
                if (x < bx0) bx0 = x;
                if (x > bx1) bx1 = x;
                if (y < by0) by0 = y;
                if (y > by1) by1 = y;
            }
    }
    if (bx1 < 0) bx0 = by0 = 0, bx1 = by1 = -1; /* nothing drawn: an empty box */
    o->box[0] = bx0;
    o->box[1] = by0;
    o->box[2] = bx1 + 1;
    o->box[3] = by1 + 1;
}

void synth_object_coverage(const synth_scene *s, int i, uint8_t *mask) {
    int S = s->size, x0, y0, x1, y1;
    memset(mask, 0, (size_t)S * S);
    const synth_object *o = &s->obj[i];
    geom g;
    geom_init(&g, o);
    scan_range(S, o, &x0, &y0, &x1, &y1);
    for (int y = y0; y <= y1; y++)
        if (x0 <= x1) cover_row(&g, o, y, x0, x1, mask + (size_t)y * S + x0);
}

void synth_word_mask(const synth_scene *s, uint8_t *mask) {
    int S = s->size;
    memset(mask, 0, (size_t)S * S);
    if (!s->has_word) return;
    const synth_word *w = &s->word;
    int step = (SYNTH_GLYPH_W + 1) * w->scale;
    for (int k = 0; w->text[k]; k++)
        for (int row = 0; row < SYNTH_GLYPH_H; row++)
            for (int col = 0; col < SYNTH_GLYPH_W; col++) {
                if (!synth_glyph_pixel(w->text[k], col, row)) continue;
                int px = w->x + k * step + col * w->scale, py = w->y + row * w->scale;
                for (int dy = 0; dy < w->scale; dy++)
                    for (int dx = 0; dx < w->scale; dx++) {
                        int x = px + dx, y = py + dy;
                        if (x >= 0 && x < S && y >= 0 && y < S) mask[(size_t)y * S + x] = 1;
                    }
            }
}

bool synth_mask_box(const uint8_t *mask, int size, int box[4]) {
    int x0 = size, y0 = size, x1 = -1, y1 = -1;
    for (int y = 0; y < size; y++)
        for (int x = 0; x < size; x++)
            if (mask[(size_t)y * size + x]) {
                if (x < x0) x0 = x;
                if (x > x1) x1 = x;
                if (y < y0) y0 = y;
                if (y > y1) y1 = y;
            }
    if (x1 < 0) return false;
    box[0] = x0;
    box[1] = y0;
    box[2] = x1 + 1;
    box[3] = y1 + 1;
    return true;
}

/* ---- background ------------------------------------------------------------- */

static uint64_t hash64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53ull;
    x ^= x >> 33;
    return x;
}

static uint8_t clamp8(int v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

void synth_render_background(const synth_scene *s, uint8_t *rgb) {
    int S = s->size, p = s->bg_period > 0 ? s->bg_period : 1;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            uint8_t *px = rgb + ((size_t)y * S + x) * 3;
            const uint8_t *a = s->bg_rgb, *b = s->bg_rgb2;
            int along = s->bg_dir == 0 ? y : s->bg_dir == 1 ? x : (x + y) / 2;
            switch (s->bg) {
            case BG_STRIPES: memcpy(px, (along / p) % 2 ? b : a, 3); break;
            case BG_CHECKER: memcpy(px, (x / p + y / p) % 2 ? b : a, 3); break;
            case BG_NOISE: {
                /* Grey noise of +-12 around the base colour, per pixel. */
                int d = (int)(hash64(s->bg_seed ^ ((uint64_t)y * 65536u + (uint64_t)x)) % 25) - 12;
                for (int c = 0; c < 3; c++) px[c] = clamp8(a[c] + d);
                break;
            }
            case BG_GRADIENT:
                for (int c = 0; c < 3; c++) px[c] = clamp8(a[c] + (b[c] - a[c]) * along / (S > 1 ? S - 1 : 1));
                break;
            default: memcpy(px, a, 3);
            }
        }
}

/* ---- the whole scene -------------------------------------------------------- */

void synth_render(const synth_scene *s, uint8_t *rgb) {
    int S = s->size;
    synth_render_background(s, rgb);
    for (int i = 0; i < s->n_objects; i++) {
        const synth_object *o = &s->obj[i];
        const uint8_t *col = synth_color_rgb[o->color];
        geom g;
        geom_init(&g, o);
        /* Outside its tight box an object covers nothing. */
        uint8_t row[SYNTH_MAX_SIZE];
        for (int y = o->box[1]; y < o->box[3]; y++) {
            if (o->box[0] >= o->box[2]) break;
            cover_row(&g, o, y, o->box[0], o->box[2] - 1, row);
            for (int x = o->box[0]; x < o->box[2]; x++) {
                int c = row[x - o->box[0]];
                if (!c) continue;
                uint8_t *px = rgb + ((size_t)y * S + x) * 3;
                for (int k = 0; k < 3; k++)
                    px[k] = (uint8_t)((px[k] * (SYNTH_SUB - c) + col[k] * c + SYNTH_SUB / 2) / SYNTH_SUB);
            }
        }
    }
    if (s->has_word) {
        /* Solid font pixels, no anti-aliasing. Drawn from the glyphs directly
         * (same walk as synth_word_mask) to avoid a size*size scratch mask. */
        const synth_word *w = &s->word;
        const uint8_t *col = synth_color_rgb[w->color];
        int step = (SYNTH_GLYPH_W + 1) * w->scale;
        for (int k = 0; w->text[k]; k++)
            for (int row = 0; row < SYNTH_GLYPH_H; row++)
                for (int c = 0; c < SYNTH_GLYPH_W; c++) {
                    if (!synth_glyph_pixel(w->text[k], c, row)) continue;
                    int px = w->x + k * step + c * w->scale, py = w->y + row * w->scale;
                    for (int dy = 0; dy < w->scale; dy++)
                        for (int dx = 0; dx < w->scale; dx++) {
                            int x = px + dx, y = py + dy;
                            if (x >= 0 && x < S && y >= 0 && y < S) memcpy(rgb + ((size_t)y * S + x) * 3, col, 3);
                        }
                }
    }
}
