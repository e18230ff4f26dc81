/* The synthetic visual world behind `vlmc synth` (internal interface).
 *
 * A scene is a square image of side S pixels: a background (plain or a mild
 * texture around mid grey), 1..6 shapes that never overlap (their extents are
 * kept apart by a gap), and at most one upper-case word drawn with the bitmap
 * font in render.c. Everything is integer arithmetic and every random choice
 * comes from a synth_rng seeded from (seed, image index), so an image, its
 * questions and its files depend on nothing else: not on the thread that made
 * them, not on how many images came before.
 *
 *   world.c      scene sampling (placement, sizes, colours, the word)
 *   render.c     rasterising shapes (4x4 supersampled coverage), textures, the font
 *   questions.c  questions and answers about a scene, one per conversation turn
 *   writer.c     the dataset on disk (PNG + JSONL + meta.json), vlmc_synth_generate
 *   png_write.c  RGB8 -> PNG in memory through libpng
 */
#ifndef VLMC_SYNTH_H
#define VLMC_SYNTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vlmc.h"
#include "core/rng.h"

/* ---- vocabulary ------------------------------------------------------------- */

enum { SYNTH_N_COLORS = 8, SYNTH_N_SHAPES = 6, SYNTH_N_SIZES = 2, SYNTH_N_POSITIONS = 9, SYNTH_N_BGS = 5 };
enum { SYNTH_MAX_OBJECTS = 6, SYNTH_MAX_WORD = 5, SYNTH_MIN_SIZE = 64, SYNTH_MAX_SIZE = 512 };

typedef enum { SHAPE_CIRCLE, SHAPE_SQUARE, SHAPE_TRIANGLE, SHAPE_STAR, SHAPE_CROSS, SHAPE_DIAMOND } synth_shape;
typedef enum { SIZE_SMALL, SIZE_LARGE } synth_size;
typedef enum { BG_PLAIN, BG_STRIPES, BG_CHECKER, BG_NOISE, BG_GRADIENT } synth_bg;

extern const char *const synth_color_names[SYNTH_N_COLORS];
extern const uint8_t synth_color_rgb[SYNTH_N_COLORS][3];
extern const char *const synth_shape_names[SYNTH_N_SHAPES];
extern const char *const synth_shape_plurals[SYNTH_N_SHAPES];
extern const char *const synth_size_names[SYNTH_N_SIZES];
extern const char *const synth_bg_names[SYNTH_N_BGS];
/* 3x3 grid cells, row-major from the top left: "top left", "top", ..., "bottom right". */
extern const char *const synth_position_names[SYNTH_N_POSITIONS];
/* The fixed word list (3-5 upper-case letters). */
extern const char *const synth_words[];
extern const int synth_n_words;
/* Word colours: indices into synth_color_names (white and black only). */
enum { SYNTH_WORD_WHITE = 6, SYNTH_WORD_BLACK = 7 };

/* ---- random numbers --------------------------------------------------------- */

/* core/rng.h's generator; each image has its own streams. */
typedef rng synth_rng;

/* Seeds the stream for (seed, image index, purpose); purposes keep the scene
 * independent of how many questions are asked about it. */
void synth_rng_seed(synth_rng *r, uint64_t seed, uint64_t index, uint64_t purpose);
uint64_t synth_rng_next(synth_rng *r);
/* Uniform in [0, n) without modulo bias; n > 0. */
uint32_t synth_rng_below(synth_rng *r, uint32_t n);
/* Uniform in [lo, hi] inclusive. */
int synth_rng_range(synth_rng *r, int lo, int hi);
/* true with probability num/den. */
bool synth_rng_chance(synth_rng *r, uint32_t num, uint32_t den);
void synth_rng_shuffle(synth_rng *r, int *a, int n);

/* ---- scenes ----------------------------------------------------------------- */

/* Geometry is in sub-pixel units: SYNTH_SUB units per pixel. */
enum { SYNTH_SUB = 16 };

typedef struct synth_object {
    int shape, color, size; /* synth_shape, index into synth_color_names, synth_size */
    int cx, cy;             /* centre, sub-pixel units */
    int h;                  /* half extent, sub-pixel units: the shape fits in [cx-h, cx+h] x [cy-h, cy+h] */
    int box[4];             /* tight box of the drawn pixels: x0, y0, x1, y1 (x1, y1 exclusive), pixels */
} synth_object;

typedef struct synth_word {
    char text[SYNTH_MAX_WORD + 1];
    int color; /* SYNTH_WORD_WHITE or SYNTH_WORD_BLACK */
    int x, y;  /* top-left pixel of the first glyph cell */
    int scale; /* each font pixel is scale x scale image pixels */
    int box[4];
} synth_word;

typedef struct synth_scene {
    int size; /* side in pixels */
    int bg;   /* synth_bg */
    uint8_t bg_rgb[3], bg_rgb2[3];
    int bg_period, bg_dir; /* stripes / checker period in pixels; stripe direction 0..2 */
    uint64_t bg_seed;      /* for the noise texture */
    int n_objects;
    synth_object obj[SYNTH_MAX_OBJECTS];
    bool has_word;
    synth_word word;
} synth_scene;

typedef struct synth_world_params {
    int size;        /* image side, SYNTH_MIN_SIZE..SYNTH_MAX_SIZE */
    int min_objects; /* 1..max_objects */
    int max_objects; /* ..SYNTH_MAX_OBJECTS */
    int text_percent; /* chance (0..100) that a scene has a word */
} synth_world_params;

/* Samples scene number `index` of the dataset with this seed. Never fails for
 * valid params (objects that find no room are dropped; n_objects >= 1). */
void synth_scene_sample(const synth_world_params *p, uint64_t seed, uint64_t index, synth_scene *out);

/* The centre of an object in pixels (rounded down), for positions and relations. */
void synth_object_center_px(const synth_object *o, int *x, int *y);

/* ---- rendering -------------------------------------------------------------- */

/* Draws the scene into rgb (size*size*3 bytes, row-major RGB). */
void synth_render(const synth_scene *s, uint8_t *rgb);
/* Only the background. */
void synth_render_background(const synth_scene *s, uint8_t *rgb);
/* Coverage of object i at every pixel, 0..SYNTH_SUB (4x4 samples each): mask is size*size bytes. */
void synth_object_coverage(const synth_scene *s, int i, uint8_t *mask);
/* 1 where the word's glyph pixels are, else 0. */
void synth_word_mask(const synth_scene *s, uint8_t *mask);
/* The tight pixel box of the non-zero entries of mask, or false when all are zero. */
bool synth_mask_box(const uint8_t *mask, int size, int box[4]);
/* Sets o->box to the tight box of the pixels o covers in an image of side S. */
void synth_object_box(int S, synth_object *o);
/* The reference point test: is (dx, dy) sub-pixel units from o's centre inside o?
 * Coverage counts the sample points for which this holds (the rasteriser
 * computes the same row by row). */
bool synth_shape_inside(const synth_object *o, int dx, int dy);
/* Coverage of object o at pixel (x, y), 0..SYNTH_SUB. */
int synth_shape_coverage_at(const synth_object *o, int x, int y);
/* Whether font pixel (col, row) of an upper-case letter is set (false for other characters). */
bool synth_glyph_pixel(char c, int col, int row);
enum { SYNTH_GLYPH_W = 5, SYNTH_GLYPH_H = 7 };

/* ---- questions -------------------------------------------------------------- */

typedef enum {
    TASK_CAPTION, TASK_COLOR, TASK_SHAPE, TASK_COUNT, TASK_POSITION, TASK_RELATION,
    TASK_YESNO, TASK_EXISTS, TASK_GROUNDING, TASK_OCR, TASK_MCQ, SYNTH_N_TASKS
} synth_task;
extern const char *const synth_task_names[SYNTH_N_TASKS];

enum { SYNTH_QA_TEXT = 320, SYNTH_MCQ_OPTIONS = 4 };

typedef struct synth_qa {
    int task;
    char question[SYNTH_QA_TEXT];
    char answer[SYNTH_QA_TEXT];
    int n_options; /* mcq: the options, in order A, B, C, D */
    char options[SYNTH_MCQ_OPTIONS][24];
    bool has_box; /* grounding: the box, 0..1000 */
    int box[4];
} synth_qa;

/* Writes up to max distinct questions about s (fewer only when the scene
 * cannot support more); returns how many. rng drives the choices. Only the
 * tasks whose bit (1 << task) is set in task_mask are asked. */
int synth_questions(const synth_scene *s, synth_rng *rng, synth_qa *out, int max, unsigned task_mask);
/* The mask of a comma-separated list of task names (NULL or empty: every task);
 * false, with the offending name in bad (up to bad_size bytes), for an unknown one. */
bool synth_task_mask(const char *list, unsigned *mask, char *bad, size_t bad_size);

/* A pixel box (x1, y1 exclusive) as 0..1000 coordinates that enclose it:
 * floor for the left/top edge, ceil for the right/bottom edge. */
void synth_box_norm(const int px[4], int size, int out[4]);

/* ---- PNG -------------------------------------------------------------------- */

/* Encodes an 8-bit RGB image as PNG (no timestamps, fixed settings) into a
 * malloc'ed buffer. */
vlmc_status synth_png_encode(const uint8_t *rgb, int w, int h, unsigned char **out, size_t *out_len, vlmc_error *err);

#endif
