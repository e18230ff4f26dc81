/* RGB8 -> PNG in memory through libpng, for the synthetic dataset. Fixed
 * settings (zlib level 1, no row filters, no time or text chunks), so equal
 * pixels give equal bytes. Thread-safe: all state is per call. */
#include "synth/synth.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

typedef struct {
    unsigned char *data;
    size_t len, cap;
    bool nomem;
} membuf;

static void write_fn(png_structp png, png_bytep bytes, png_size_t n) {
    membuf *m = png_get_io_ptr(png);
    if (m->nomem) return;
    if (m->len + n > m->cap) {
        size_t cap = m->cap ? m->cap : 4096;
        while (cap < m->len + n) cap *= 2;
        unsigned char *p = realloc(m->data, cap);
        if (!p) {
            m->nomem = true;
            return;
        }
        m->data = p;
        m->cap = cap;
    }
    memcpy(m->data + m->len, bytes, n);
    m->len += n;
}

static void flush_fn(png_structp png) { (void)png; }

/* libpng reports errors by longjmp; the message is kept for vlmc_fail. */
static void error_fn(png_structp png, png_const_charp msg) {
    char *dst = png_get_error_ptr(png);
    if (dst) snprintf(dst, 200, "%s", msg);
    png_longjmp(png, 1);
}

static void warning_fn(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

vlmc_status synth_png_encode(const uint8_t *rgb, int w, int h, unsigned char **out, size_t *out_len, vlmc_error *err) {
    *out = NULL;
    *out_len = 0;
    if (w <= 0 || h <= 0) return vlmc_fail(err, VLMC_ERR_ARG, "png: bad image size %dx%d", w, h);
    char msg[200] = "unknown libpng error";
    membuf m = {0};
    png_bytep *rows = malloc(sizeof(png_bytep) * (size_t)h);
    if (!rows) return vlmc_fail(err, VLMC_ERR_NOMEM, "png: out of memory");
    for (int y = 0; y < h; y++) rows[y] = (png_bytep)(rgb + (size_t)y * (size_t)w * 3);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, msg, error_fn, warning_fn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, NULL);
        free(rows);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "png: out of memory");
    }
    /* volatile: these are read after a longjmp back here. */
    membuf *volatile mp = &m;
    png_bytep *volatile rowsp = rows;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(mp->data);
        free(rowsp);
        return vlmc_fail(err, VLMC_ERR_INTERNAL, "png: %s", msg);
    }
    png_set_write_fn(png, mp, write_fn, flush_fn);
    /* zlib level 1 without row filters: 4x faster than the defaults here, and
     * the files are hardly larger (flat areas compress either way, noise not at all). */
    png_set_compression_level(png, 1);
    png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_FILTER_NONE);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_write_image(png, rowsp);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rowsp);
    if (mp->nomem) {
        free(mp->data);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "png: out of memory");
    }
    *out = mp->data;
    *out_len = mp->len;
    return VLMC_OK;
}
