/* Rectangle outlines on RGB8 images. See draw.h. */
#include "vision/draw.h"

#include <stddef.h>

static void fill(uint8_t *pixels, int width, int height, int x1, int y1, int x2, int y2, const uint8_t rgb[3]) {
    if (x1 < 0) x1 = 0;
    if (y1 < 0) y1 = 0;
    if (x2 >= width) x2 = width - 1;
    if (y2 >= height) y2 = height - 1;
    for (int y = y1; y <= y2; y++)
        for (int x = x1; x <= x2; x++) {
            uint8_t *p = pixels + ((size_t)y * width + x) * 3;
            p[0] = rgb[0];
            p[1] = rgb[1];
            p[2] = rgb[2];
        }
}

void draw_rect_outline(uint8_t *pixels, int width, int height, int x1, int y1, int x2, int y2, int thickness,
                       const uint8_t rgb[3]) {
    if (x2 < x1) { int t = x1; x1 = x2; x2 = t; }
    if (y2 < y1) { int t = y1; y1 = y2; y2 = t; }
    if (thickness < 1) thickness = 1;
    int t = thickness - 1;
    fill(pixels, width, height, x1, y1, x2, y1 + t, rgb); /* top */
    fill(pixels, width, height, x1, y2 - t, x2, y2, rgb); /* bottom */
    fill(pixels, width, height, x1, y1, x1 + t, y2, rgb); /* left */
    fill(pixels, width, height, x2 - t, y1, x2, y2, rgb); /* right */
}
