/* vlmc_answer_boxes and vlmc_image_save_png_with_boxes: grounded answers (src/text/grounding.h) in an image's
 * pixels, and drawn on it (src/vision/draw.h, PNG through the synth layer's libpng writer). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vlmc.h"
#include "core/error.h"
#include "core/file.h"
#include "synth/synth.h"
#include "text/grounding.h"
#include "vision/draw.h"

vlmc_status vlmc_answer_boxes(const char *text, size_t len, int width, int height, vlmc_box **boxes, size_t *n,
                              vlmc_error *err) {
    if (!boxes || !n || (!text && len)) return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_answer_boxes: NULL argument");
    *boxes = NULL;
    *n = 0;
    if (width < 0 || height < 0) return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_answer_boxes: image of %d x %d", width, height);
    grounding_box *g = NULL;
    size_t ng = 0;
    vlmc_status s = grounding_find_boxes(text ? text : "", len, &g, &ng, err);
    if (s || !ng) return s;
    vlmc_box *b = calloc(ng, sizeof *b);
    if (!b) {
        grounding_boxes_free(g, ng);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    }
    const double sx = width && height ? width : 1.0, sy = width && height ? height : 1.0;
    for (size_t i = 0; i < ng; i++) {
        b[i] = (vlmc_box){.label = g[i].label, .x1 = g[i].box.x1 * sx, .y1 = g[i].box.y1 * sy, .x2 = g[i].box.x2 * sx,
                          .y2 = g[i].box.y2 * sy};
        g[i].label = NULL; /* moved */
    }
    grounding_boxes_free(g, ng);
    *boxes = b;
    *n = ng;
    return VLMC_OK;
}

void vlmc_boxes_free(vlmc_box *boxes, size_t n) {
    for (size_t i = 0; boxes && i < n; i++) free(boxes[i].label);
    free(boxes);
}

/* a pixel coordinate as an int that the drawing can clip (NaN → 0) */
static int to_pixel(double v) {
    if (!(v > -1e6)) return v != v ? 0 : -1000000;
    if (v > 1e6) return 1000000;
    return (int)floor(v);
}

vlmc_status vlmc_image_save_png_with_boxes(const vlmc_image *im, const vlmc_box *boxes, size_t n, const char *path,
                                           vlmc_error *err) {
    if (!im || !path || (!boxes && n)) return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_image_save_png_with_boxes: NULL argument");
    static const uint8_t palette[][3] = {{230, 25, 75},  {60, 180, 75},  {0, 130, 200}, {255, 225, 25},
                                         {245, 130, 48}, {145, 30, 180}, {70, 240, 240}, {240, 50, 230}};
    const int w = vlmc_image_width(im), h = vlmc_image_height(im);
    const size_t bytes = (size_t)w * h * 3;
    uint8_t *px = malloc(bytes ? bytes : 1);
    if (!px) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory for a %d x %d image", path, w, h);
    memcpy(px, vlmc_image_rgb(im), bytes);
    const int thickness = (w < h ? w : h) >= 300 ? (w < h ? w : h) / 150 : 1;
    for (size_t i = 0; i < n; i++) {
        /* [x1, x2) in pixels: the last column drawn is the one before x2 */
        int x1 = to_pixel(boxes[i].x1), y1 = to_pixel(boxes[i].y1), x2 = to_pixel(ceil(boxes[i].x2) - 1),
            y2 = to_pixel(ceil(boxes[i].y2) - 1);
        draw_rect_outline(px, w, h, x1, y1, x2, y2, thickness, palette[i % (sizeof palette / sizeof palette[0])]);
    }
    unsigned char *png = NULL;
    size_t len = 0;
    vlmc_status s = synth_png_encode(px, w, h, &png, &len, err);
    free(px);
    if (!s) s = file_write_all(path, png, len, err);
    free(png);
    return s;
}
