/* Drawing on RGB8 images (for showing grounded answers): rectangle outlines. */
#ifndef VLMC_VISION_DRAW_H
#define VLMC_VISION_DRAW_H

#include <stdint.h>

/* The outline of the pixel rectangle [x1, x2] × [y1, y2] (inclusive; corners in any order), `thickness` pixels
 * wide inwards, in colour rgb, on an image of width × height RGB8 pixels (rows packed). Whatever falls outside
 * the image is clipped. */
void draw_rect_outline(uint8_t *pixels, int width, int height, int x1, int y1, int x2, int y2, int thickness,
                       const uint8_t rgb[3]);

#endif
