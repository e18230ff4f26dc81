/* Image decoding as transformers.image_utils.load_image does it with Pillow 9.4:
 * PIL.Image.open, ImageOps.exif_transpose, .convert("RGB"). What that implies:
 *  - alpha is dropped by convert("RGB"), never composited (RGBA, LA, tRNS, WebP alpha);
 *  - grey is replicated; palette images go through their palette, and an index past
 *    the palette's end reads Pillow's initial grey ramp (i, i, i);
 *  - PNG 16-bit grey opens as mode "I" and convert clips each value to 0..255;
 *    16-bit RGB/RGBA/LA keep the high byte (rawmodes "RGB;16B" ...);
 *  - JPEG CMYK/YCCK is decoded by libjpeg to CMYK, inverted ("CMYK;I", Adobe
 *    convention, which Pillow always assumes) and converted with Pillow's cmyk2rgb;
 *  - GIF: the first frame, on a canvas of the logical screen (grown to the frame's
 *    extent), uncovered pixels = the transparent index if any, else index 0;
 *  - WebP: first frame through libwebp's animation decoder in RGBA, alpha dropped;
 *  - PPM/PGM: maxval other than 255 rescaled as Pillow does (see decode_pnm);
 *  - BMP: uncompressed 1/4/8/24/32-bit (BGR byte order or whole-byte bit masks);
 *  - EXIF Orientation (JPEG APP1, PNG eXIf, WebP EXIF) is applied; an unreadable
 *    EXIF block counts as orientation 1.
 * Every decoder checks width*height against the pixel limit before allocating, and
 * libjpeg/libpng errors come back through per-call setjmp contexts. */
#include "vision/image.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gif_lib.h>
#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include <webp/decode.h>
#include <webp/demux.h>

#include "core/file.h"

void image_limits_default(image_limits *l) {
    l->max_pixels = IMAGE_DEFAULT_MAX_PIXELS;
    l->max_file_bytes = IMAGE_DEFAULT_MAX_FILE_BYTES;
}

void rgb_image_free(rgb_image *im) {
    if (!im) return;
    free(im->data);
    im->data = NULL;
    im->width = im->height = 0;
}

static vlmc_status check_size(const char *name, uint64_t w, uint64_t h, const image_limits *lim, vlmc_error *err) {
    if (w == 0 || h == 0) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: image has no pixels (%llux%llu)", name,
                                           (unsigned long long)w, (unsigned long long)h);
    if (w > 0x7fffffff || h > 0x7fffffff || w * h > lim->max_pixels)
        return vlmc_fail(err, VLMC_ERR_LIMIT,
                         "%s: image is %llux%llu = %llu pixels, more than the limit of %llu (decompression bomb?)", name,
                         (unsigned long long)w, (unsigned long long)h, (unsigned long long)(w * h),
                         (unsigned long long)lim->max_pixels);
    return VLMC_OK;
}

static vlmc_status alloc_rgb(rgb_image *out, int w, int h, const char *name, vlmc_error *err) {
    out->width = w;
    out->height = h;
    out->data = malloc((size_t)w * (size_t)h * 3);
    if (!out->data) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory for %dx%d pixels", name, w, h);
    return VLMC_OK;
}

/* ---- EXIF --------------------------------------------------------------------- */

static unsigned rd16(const uint8_t *p, int be) { return be ? (unsigned)(p[0] << 8 | p[1]) : (unsigned)(p[1] << 8 | p[0]); }
static uint32_t rd32(const uint8_t *p, int be) {
    return be ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
              : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

int exif_orientation(const uint8_t *d, size_t len) {
    if (!d) return 1;
    if (len >= 6 && !memcmp(d, "Exif\0\0", 6)) {
        d += 6;
        len -= 6;
    }
    if (len < 8) return 1;
    int be;
    if (!memcmp(d, "II*\0", 4)) be = 0;
    else if (!memcmp(d, "MM\0*", 4)) be = 1;
    else return 1;
    uint32_t ifd = rd32(d + 4, be);
    if (ifd > len || len - ifd < 2) return 1;
    unsigned n = rd16(d + ifd, be);
    /* Pillow reads entries until the data ends; keep what is there. */
    for (unsigned i = 0; i < n; i++) {
        size_t e = (size_t)ifd + 2 + (size_t)i * 12;
        if (e + 12 > len) break;
        if (rd16(d + e, be) != 0x0112) continue;
        unsigned type = rd16(d + e + 2, be);
        uint32_t count = rd32(d + e + 4, be);
        unsigned v;
        if (count < 1) return 1;
        if (type == 3 /* SHORT */) v = rd16(d + e + 8, be);
        else if (type == 4 /* LONG */) v = rd32(d + e + 8, be);
        else if (type == 1 /* BYTE */) v = d[e + 8];
        else return 1;
        return (v >= 1 && v <= 8) ? (int)v : 1;
    }
    return 1;
}

vlmc_status image_apply_orientation(rgb_image *im, int o, vlmc_error *err) {
    if (o < 2 || o > 8) return VLMC_OK;
    int w = im->width, h = im->height;
    int swap = o >= 5; /* 5..8 transpose the axes */
    int ow = swap ? h : w, oh = swap ? w : h;
    uint8_t *dst = malloc((size_t)w * h * 3);
    if (!dst) return vlmc_fail(err, VLMC_ERR_NOMEM, "exif orientation: out of memory");
    const uint8_t *src = im->data;
#pragma omp parallel for schedule(static) if ((size_t)w * h > 262144)
    for (int y = 0; y < oh; y++) {
        for (int x = 0; x < ow; x++) {
            int sx, sy;
            switch (o) {
            case 2: sx = w - 1 - x; sy = y; break;         /* FLIP_LEFT_RIGHT */
            case 3: sx = w - 1 - x; sy = h - 1 - y; break; /* ROTATE_180 */
            case 4: sx = x; sy = h - 1 - y; break;         /* FLIP_TOP_BOTTOM */
            case 5: sx = y; sy = x; break;                 /* TRANSPOSE */
            case 6: sx = y; sy = h - 1 - x; break;         /* ROTATE_270 (clockwise 90) */
            case 7: sx = w - 1 - y; sy = h - 1 - x; break; /* TRANSVERSE */
            default: sx = w - 1 - y; sy = x; break;        /* 8: ROTATE_90 */
            }
            memcpy(dst + ((size_t)y * ow + x) * 3, src + ((size_t)sy * w + sx) * 3, 3);
        }
    }
    free(im->data);
    im->data = dst;
    im->width = ow;
    im->height = oh;
    return VLMC_OK;
}

/* ---- JPEG ----------------------------------------------------------------------- */

typedef struct jpeg_ctx {
    struct jpeg_error_mgr pub;
    struct jpeg_progress_mgr progress;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
    int reading_lines; /* an end of data while reading scanlines is a truncated file */
} jpeg_ctx;

static void jpeg_on_error(j_common_ptr cinfo) {
    jpeg_ctx *c = (jpeg_ctx *)cinfo->err;
    c->pub.format_message(cinfo, c->msg);
    longjmp(c->jb, 1);
}

static void jpeg_on_message(j_common_ptr cinfo, int level) {
    jpeg_ctx *c = (jpeg_ctx *)cinfo->err;
    /* Warnings (level -1) are not fatal for Pillow, except running out of data: Pillow
     * then reports "image file is truncated". */
    if (level == -1 && c->pub.msg_code == JWRN_JPEG_EOF) {
        snprintf(c->msg, sizeof c->msg, "truncated file (premature end of JPEG data)");
        longjmp(c->jb, 1);
    }
}

static void jpeg_on_progress(j_common_ptr cinfo) {
    jpeg_ctx *c = (jpeg_ctx *)cinfo->err;
    if (cinfo->is_decompressor) {
        j_decompress_ptr d = (j_decompress_ptr)cinfo;
        if (d->input_scan_number > 1000) { /* as libjpeg-turbo's TJFLAG_LIMITSCANS, against scan bombs */
            snprintf(c->msg, sizeof c->msg, "more than 1000 progressive scans");
            longjmp(c->jb, 1);
        }
    }
}

static const uint8_t *find_jpeg_exif(const uint8_t *d, size_t len, size_t *exif_len) {
    size_t p = 2;
    while (p + 4 <= len) {
        if (d[p] != 0xFF) return NULL;
        uint8_t m = d[p + 1];
        if (m == 0xFF) {
            p++;
            continue;
        }
        if (m == 0xD8 || (m >= 0xD0 && m <= 0xD7) || m == 0x01) {
            p += 2;
            continue;
        }
        if (m == 0xDA || m == 0xD9) return NULL;
        size_t seg = (size_t)d[p + 2] << 8 | d[p + 3];
        if (seg < 2 || p + 2 + seg > len) return NULL;
        if (m == 0xE1 && seg >= 2 + 5 && !memcmp(d + p + 4, "Exif\0", 5)) {
            *exif_len = seg - 2;
            return d + p + 4;
        }
        p += 2 + seg;
    }
    return NULL;
}

static vlmc_status decode_jpeg(const uint8_t *data, size_t len, const char *name, const image_limits *lim,
                               rgb_image *out, int *orientation, vlmc_error *err) {
    struct jpeg_decompress_struct cinfo;
    jpeg_ctx ctx;
    memset(&cinfo, 0, sizeof cinfo);
    memset(&ctx, 0, sizeof ctx);
    /* volatile: modified between setjmp and longjmp */
    uint8_t *volatile row = NULL;
    uint8_t *volatile pixels = NULL;
    vlmc_status st = VLMC_OK;

    cinfo.err = jpeg_std_error(&ctx.pub);
    ctx.pub.error_exit = jpeg_on_error;
    ctx.pub.emit_message = jpeg_on_message;
    if (setjmp(ctx.jb)) {
        st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: corrupt or truncated JPEG: %s", name, ctx.msg);
        goto done;
    }
    jpeg_create_decompress(&cinfo);
    ctx.progress.progress_monitor = jpeg_on_progress;
    cinfo.progress = &ctx.progress;
    jpeg_mem_src(&cinfo, data, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    st = check_size(name, cinfo.image_width, cinfo.image_height, lim, err);
    if (st) goto done;
    int comps = cinfo.num_components;
    if (comps == 1) cinfo.out_color_space = JCS_GRAYSCALE;
    else if (comps == 3) cinfo.out_color_space = JCS_RGB;
    else if (comps == 4) cinfo.out_color_space = JCS_CMYK;
    else {
        st = vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: JPEG with %d components", name, comps);
        goto done;
    }
    jpeg_start_decompress(&cinfo);
    int w = (int)cinfo.output_width, h = (int)cinfo.output_height, oc = cinfo.output_components;
    if ((comps == 1 && oc != 1) || (comps == 3 && oc != 3) || (comps == 4 && oc != 4)) {
        st = vlmc_fail(err, VLMC_ERR_INTERNAL, "%s: unexpected JPEG output components %d", name, oc);
        goto done;
    }
    row = malloc((size_t)w * oc);
    pixels = malloc((size_t)w * h * 3);
    if (!row || !pixels) {
        st = vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory for %dx%d pixels", name, w, h);
        goto done;
    }
    ctx.reading_lines = 1;
    while (cinfo.output_scanline < cinfo.output_height) {
        int y = (int)cinfo.output_scanline;
        JSAMPROW rp = row;
        if (jpeg_read_scanlines(&cinfo, &rp, 1) != 1) {
            st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: truncated JPEG", name);
            goto done;
        }
        uint8_t *o = pixels + (size_t)y * w * 3;
        if (oc == 1) {
            for (int x = 0; x < w; x++) o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = row[x];
        } else if (oc == 3) {
            memcpy(o, row, (size_t)w * 3);
        } else {
            for (int x = 0; x < w; x++) {
                /* "CMYK;I" then Pillow's cmyk2rgb: nk = 255-k; out = nk - nk*c/255 (rounded). */
                int c = 255 - row[4 * x], m = 255 - row[4 * x + 1], yy = 255 - row[4 * x + 2], k = 255 - row[4 * x + 3];
                int nk = 255 - k, t;
                int v[3] = {c, m, yy};
                for (int i = 0; i < 3; i++) {
                    t = v[i] * nk + 128;
                    int r = nk - (((t >> 8) + t) >> 8);
                    o[3 * x + i] = (uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
                }
            }
        }
    }
    out->width = w;
    out->height = h;
    out->data = pixels;
    pixels = NULL;
    size_t elen = 0;
    const uint8_t *exif = find_jpeg_exif(data, len, &elen);
    *orientation = exif ? exif_orientation(exif, elen) : 1;
done:
    jpeg_destroy_decompress(&cinfo);
    free(row);
    free(pixels);
    return st;
}

/* ---- PNG ------------------------------------------------------------------------ */

typedef struct png_ctx {
    jmp_buf jb;
    char msg[256];
    const uint8_t *data;
    size_t len, pos;
} png_ctx;

static void png_on_error(png_structp png, png_const_charp msg) {
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    longjmp(c->jb, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

static void png_read_mem(png_structp png, png_bytep dst, size_t n) {
    png_ctx *c = png_get_io_ptr(png);
    if (n > c->len - c->pos) png_error(png, "truncated file (read past the end of the data)");
    memcpy(dst, c->data + c->pos, n);
    c->pos += n;
}

static vlmc_status decode_png(const uint8_t *data, size_t len, const char *name, const image_limits *lim,
                              rgb_image *out, int *orientation, vlmc_error *err) {
    png_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.data = data;
    ctx.len = len;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_on_error, png_on_warning);
    if (!png) return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", name);
    png_infop info = png_create_info_struct(png);
    uint8_t *volatile raw = NULL;
    png_bytep *volatile rows = NULL;
    uint8_t *volatile pixels = NULL;
    vlmc_status st = VLMC_OK;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", name);
    }
    if (setjmp(ctx.jb)) {
        st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: corrupt or truncated PNG: %s", name, ctx.msg);
        goto done;
    }
    png_set_read_fn(png, &ctx, png_read_mem);
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_read_info(png, info);
    png_uint_32 w, h;
    int depth, ctype, interlace;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    st = check_size(name, w, h, lim, err);
    if (st) goto done;
    if (depth < 8) png_set_packing(png);
    if (interlace != PNG_INTERLACE_NONE) png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    raw = malloc(rowbytes * h);
    rows = malloc(sizeof(png_bytep) * h);
    pixels = malloc((size_t)w * h * 3);
    if (!raw || !rows || !pixels) {
        st = vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory for %ux%u pixels", name, (unsigned)w, (unsigned)h);
        goto done;
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = raw + (size_t)y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, info);

    /* Pillow's palette: the PLTE entries, then its initial grey ramp. */
    uint8_t pal[256][3];
    for (int i = 0; i < 256; i++) pal[i][0] = pal[i][1] = pal[i][2] = (uint8_t)i;
    if (ctype == PNG_COLOR_TYPE_PALETTE) {
        png_colorp plte = NULL;
        int np = 0;
        if (png_get_PLTE(png, info, &plte, &np) & PNG_INFO_PLTE) {
            for (int i = 0; i < np && i < 256; i++) {
                pal[i][0] = plte[i].red;
                pal[i][1] = plte[i].green;
                pal[i][2] = plte[i].blue;
            }
        }
    }
    int scale = depth == 1 ? 255 : depth == 2 ? 85 : depth == 4 ? 17 : 1; /* L;1, L;2, L;4 */
    for (png_uint_32 y = 0; y < h; y++) {
        const uint8_t *r = rows[y];
        uint8_t *o = pixels + (size_t)y * w * 3;
        for (png_uint_32 x = 0; x < w; x++, o += 3) {
            switch (ctype) {
            case PNG_COLOR_TYPE_GRAY: {
                unsigned v;
                if (depth == 16) {
                    v = (unsigned)r[2 * x] << 8 | r[2 * x + 1]; /* mode "I": convert clips */
                    if (v > 255) v = 255;
                } else {
                    v = r[x] * scale;
                }
                o[0] = o[1] = o[2] = (uint8_t)v;
                break;
            }
            case PNG_COLOR_TYPE_GRAY_ALPHA:
                o[0] = o[1] = o[2] = depth == 16 ? r[4 * x] : r[2 * x];
                break;
            case PNG_COLOR_TYPE_PALETTE:
                memcpy(o, pal[r[x]], 3);
                break;
            case PNG_COLOR_TYPE_RGB:
                if (depth == 16) {
                    o[0] = r[6 * x];
                    o[1] = r[6 * x + 2];
                    o[2] = r[6 * x + 4];
                } else {
                    memcpy(o, r + 3 * x, 3);
                }
                break;
            default: /* RGBA */
                if (depth == 16) {
                    o[0] = r[8 * x];
                    o[1] = r[8 * x + 2];
                    o[2] = r[8 * x + 4];
                } else {
                    memcpy(o, r + 4 * x, 3);
                }
                break;
            }
        }
    }
    out->width = (int)w;
    out->height = (int)h;
    out->data = pixels;
    pixels = NULL;
    *orientation = 1;
#ifdef PNG_eXIf_SUPPORTED
    {
        png_bytep exif = NULL;
        png_uint_32 elen = 0;
        if (png_get_eXIf_1(png, info, &elen, &exif) && exif) *orientation = exif_orientation(exif, elen);
    }
#endif
done:
    png_destroy_read_struct(&png, &info, NULL);
    free(raw);
    free(rows);
    free(pixels);
    return st;
}

/* ---- GIF ------------------------------------------------------------------------ */

typedef struct gif_src {
    const uint8_t *data;
    size_t len, pos;
} gif_src;

static int gif_read_mem(GifFileType *g, GifByteType *dst, int n) {
    gif_src *s = g->UserData;
    if (n < 0) return 0;
    size_t k = (size_t)n;
    if (k > s->len - s->pos) k = s->len - s->pos;
    memcpy(dst, s->data + s->pos, k);
    s->pos += k;
    return (int)k;
}

static vlmc_status decode_gif(const uint8_t *data, size_t len, const char *name, const image_limits *lim,
                              rgb_image *out, vlmc_error *err) {
    gif_src src = {data, len, 0};
    int gerr = 0;
    GifFileType *g = DGifOpen(&src, gif_read_mem, &gerr);
    if (!g) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: not a readable GIF: %s", name, GifErrorString(gerr));
    vlmc_status st = VLMC_OK;
    uint8_t *idx = NULL, *line = NULL;
    int transparent = -1;
    st = check_size(name, (uint64_t)(g->SWidth > 0 ? g->SWidth : 1), (uint64_t)(g->SHeight > 0 ? g->SHeight : 1), lim,
                    err);
    if (st) goto done;
    for (;;) {
        GifRecordType rt;
        if (DGifGetRecordType(g, &rt) == GIF_ERROR) {
            st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: corrupt or truncated GIF: %s", name, GifErrorString(g->Error));
            goto done;
        }
        if (rt == TERMINATE_RECORD_TYPE) {
            st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: GIF has no image", name);
            goto done;
        }
        if (rt == EXTENSION_RECORD_TYPE) {
            int code;
            GifByteType *ext;
            if (DGifGetExtension(g, &code, &ext) == GIF_ERROR) {
                st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: corrupt GIF extension", name);
                goto done;
            }
            if (code == GRAPHICS_EXT_FUNC_CODE && ext && ext[0] >= 4) transparent = (ext[1] & 1) ? ext[4] : -1;
            while (ext) {
                if (DGifGetExtensionNext(g, &ext) == GIF_ERROR) {
                    st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: corrupt GIF extension", name);
                    goto done;
                }
            }
            continue;
        }
        if (rt != IMAGE_DESC_RECORD_TYPE) continue;
        /* giflib reads through gif_read_mem unbuffered, so the descriptor's
         * left, top, width, height are next: check the canvas they imply before
         * giflib touches the rest (as Pillow's bomb check at open). */
        if (src.len - src.pos >= 8) {
            const uint8_t *q = src.data + src.pos;
            uint64_t L = q[0] | q[1] << 8, T = q[2] | q[3] << 8, FW = q[4] | q[5] << 8, FH = q[6] | q[7] << 8;
            uint64_t CW = L + FW > (uint64_t)g->SWidth ? L + FW : (uint64_t)g->SWidth;
            uint64_t CH = T + FH > (uint64_t)g->SHeight ? T + FH : (uint64_t)g->SHeight;
            if ((st = check_size(name, CW ? CW : 1, CH ? CH : 1, lim, err))) goto done;
        }
        if (DGifGetImageDesc(g) == GIF_ERROR) {
            st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: corrupt GIF image descriptor: %s", name, GifErrorString(g->Error));
            goto done;
        }
        GifImageDesc *d = &g->Image;
        int64_t fx = d->Left, fy = d->Top, fw = d->Width, fh = d->Height;
        int64_t W = g->SWidth, H = g->SHeight;
        if (fx + fw > W) W = fx + fw; /* Pillow grows the canvas to the first frame */
        if (fy + fh > H) H = fy + fh;
        st = check_size(name, (uint64_t)W, (uint64_t)H, lim, err);
        if (st) goto done;
        if (fw <= 0 || fh <= 0) {
            st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: GIF frame has no pixels", name);
            goto done;
        }
        idx = malloc((size_t)W * H);
        line = malloc((size_t)fw);
        if (!idx || !line) {
            st = vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory", name);
            goto done;
        }
        memset(idx, transparent >= 0 ? transparent : 0, (size_t)W * H);
        static const int start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
        int passes = d->Interlace ? 4 : 1;
        for (int p = 0; p < passes; p++) {
            int y0 = d->Interlace ? start[p] : 0, dy = d->Interlace ? step[p] : 1;
            for (int64_t y = y0; y < fh; y += dy) {
                if (DGifGetLine(g, line, (int)fw) == GIF_ERROR) {
                    st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: corrupt or truncated GIF image data: %s", name,
                                   GifErrorString(g->Error));
                    goto done;
                }
                memcpy(idx + (size_t)(fy + y) * W + fx, line, (size_t)fw);
            }
        }
        ColorMapObject *cm = d->ColorMap ? d->ColorMap : g->SColorMap;
        uint8_t pal[256][3];
        for (int i = 0; i < 256; i++) pal[i][0] = pal[i][1] = pal[i][2] = (uint8_t)i;
        if (cm && cm->Colors)
            for (int i = 0; i < cm->ColorCount && i < 256; i++) {
                pal[i][0] = cm->Colors[i].Red;
                pal[i][1] = cm->Colors[i].Green;
                pal[i][2] = cm->Colors[i].Blue;
            }
        st = alloc_rgb(out, (int)W, (int)H, name, err);
        if (st) goto done;
        for (size_t i = 0; i < (size_t)W * H; i++) memcpy(out->data + 3 * i, pal[idx[i]], 3);
        break;
    }
done:
    free(idx);
    free(line);
    DGifCloseFile(g, &gerr);
    return st;
}

/* ---- WebP ----------------------------------------------------------------------- */

static vlmc_status decode_webp(const uint8_t *data, size_t len, const char *name, const image_limits *lim,
                               rgb_image *out, int *orientation, vlmc_error *err) {
    WebPBitstreamFeatures f;
    if (WebPGetFeatures(data, len, &f) != VP8_STATUS_OK)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: not a readable WebP file", name);
    vlmc_status st = check_size(name, (uint64_t)f.width, (uint64_t)f.height, lim, err);
    if (st) return st;
    WebPData wd = {data, len};
    WebPAnimDecoderOptions opts;
    if (!WebPAnimDecoderOptionsInit(&opts)) return vlmc_fail(err, VLMC_ERR_INTERNAL, "%s: libwebp version mismatch", name);
    opts.color_mode = MODE_RGBA;
    opts.use_threads = 0;
    WebPAnimDecoder *dec = WebPAnimDecoderNew(&wd, &opts);
    if (!dec) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: corrupt WebP file", name);
    WebPAnimInfo ai;
    uint8_t *buf = NULL;
    int ts = 0;
    if (!WebPAnimDecoderGetInfo(dec, &ai) || !WebPAnimDecoderGetNext(dec, &buf, &ts) || !buf) {
        WebPAnimDecoderDelete(dec);
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: corrupt or truncated WebP image data", name);
    }
    st = check_size(name, ai.canvas_width, ai.canvas_height, lim, err);
    if (!st) st = alloc_rgb(out, (int)ai.canvas_width, (int)ai.canvas_height, name, err);
    if (!st) {
        size_t n = (size_t)ai.canvas_width * ai.canvas_height;
        for (size_t i = 0; i < n; i++) memcpy(out->data + 3 * i, buf + 4 * i, 3);
    }
    WebPAnimDecoderDelete(dec);
    *orientation = 1;
    if (!st) {
        WebPDemuxer *dmx = WebPDemux(&wd);
        if (dmx) {
            WebPChunkIterator it;
            if (WebPDemuxGetChunk(dmx, "EXIF", 1, &it)) {
                *orientation = exif_orientation(it.chunk.bytes, it.chunk.size);
                WebPDemuxReleaseChunkIterator(&it);
            }
            WebPDemuxDelete(dmx);
        }
    }
    return st;
}


/* ---- BMP (uncompressed 1/4/8/24/32-bit, BITFIELDS with byte masks) ---------------- */

static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static unsigned le16(const uint8_t *p) { return (unsigned)p[0] | (unsigned)p[1] << 8; }

static int mask_shift(uint32_t m) {
    static const uint32_t ok[4] = {0xffu, 0xff00u, 0xff0000u, 0xff000000u};
    for (int i = 0; i < 4; i++)
        if (m == ok[i]) return 8 * i;
    return -1;
}

static vlmc_status decode_bmp(const uint8_t *d, size_t len, const char *name, const image_limits *lim,
                              rgb_image *out, vlmc_error *err) {
    if (len < 26) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: truncated BMP header", name);
    uint32_t off = le32(d + 10), hsize = le32(d + 14);
    int64_t w, h;
    unsigned bpp, compression = 0;
    size_t pal_at = 14 + (size_t)hsize, pal_entry = 4;
    uint32_t ncolors = 0;
    if (hsize == 12) { /* OS/2 1.x core header */
        w = le16(d + 18);
        h = (int16_t)le16(d + 20);
        bpp = le16(d + 24);
        pal_entry = 3;
    } else if (hsize >= 40 && len >= 14 + (size_t)40) {
        w = (int32_t)le32(d + 18);
        h = (int32_t)le32(d + 22);
        bpp = le16(d + 28);
        compression = le32(d + 30);
        ncolors = le32(d + 46);
    } else {
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: BMP header of %u bytes", name, (unsigned)hsize);
    }
    int top_down = h < 0;
    if (h < 0) h = -h;
    if (w <= 0 || h <= 0) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: BMP of %lldx%lld pixels", name, (long long)w, (long long)h);
    vlmc_status st = check_size(name, (uint64_t)w, (uint64_t)h, lim, err);
    if (st) return st;
    int sh[3] = {16, 8, 0}; /* BGR(X) byte order */
    if (compression == 3 && (bpp == 32 || bpp == 24) && hsize >= 40) {
        size_t m = 14 + 40; /* after a 40-byte header, or inside a V4/V5 one: same place */
        if (len < m + 12) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: truncated BMP masks", name);
        for (int c = 0; c < 3; c++) sh[c] = mask_shift(le32(d + m + 4 * (size_t)c));
        if (sh[0] < 0 || sh[1] < 0 || sh[2] < 0)
            return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: BMP bit masks other than whole bytes", name);
        if (hsize == 40) pal_at += 12;
    } else if (compression != 0) {
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: compressed BMP (method %u) is not supported", name, compression);
    }
    if (bpp != 1 && bpp != 4 && bpp != 8 && bpp != 24 && bpp != 32)
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: %u-bit BMP is not supported", name, bpp);
    uint8_t pal[256][3];
    for (int i = 0; i < 256; i++) pal[i][0] = pal[i][1] = pal[i][2] = (uint8_t)i; /* Pillow's ramp */
    if (bpp <= 8) {
        uint32_t n = ncolors ? ncolors : 1u << bpp;
        if (n > 256) n = 256;
        for (uint32_t i = 0; i < n; i++) {
            size_t at = pal_at + (size_t)i * pal_entry;
            if (at + 3 > len || at + 3 > off) break;
            pal[i][0] = d[at + 2];
            pal[i][1] = d[at + 1];
            pal[i][2] = d[at];
        }
    }
    size_t stride = (((size_t)w * bpp + 31) / 32) * 4;
    if (off > len || (len - off) / stride < (size_t)h) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: truncated BMP pixel data", name);
    st = alloc_rgb(out, (int)w, (int)h, name, err);
    if (st) return st;
    for (int64_t y = 0; y < h; y++) {
        const uint8_t *r = d + off + (size_t)(top_down ? y : h - 1 - y) * stride;
        uint8_t *o = out->data + (size_t)y * w * 3;
        for (int64_t x = 0; x < w; x++, o += 3) {
            if (bpp <= 8) {
                unsigned per = 8 / bpp, byte = r[x / per], shift = (unsigned)(8 - bpp - (x % per) * bpp);
                memcpy(o, pal[(byte >> shift) & ((1u << bpp) - 1)], 3);
            } else {
                uint32_t v = bpp == 32 ? le32(r + x * 4) : (uint32_t)r[x * 3] | (uint32_t)r[x * 3 + 1] << 8 | (uint32_t)r[x * 3 + 2] << 16;
                for (int c = 0; c < 3; c++) o[c] = (uint8_t)(v >> sh[c]);
            }
        }
    }
    return VLMC_OK;
}

/* ---- PPM / PGM (binary P5/P6, maxval 1..65535) ------------------------------------- */

static int pnm_int(const uint8_t *d, size_t len, size_t *p, long *v) {
    for (;;) {
        while (*p < len && (d[*p] == ' ' || d[*p] == '\t' || d[*p] == '\r' || d[*p] == '\n')) (*p)++;
        if (*p < len && d[*p] == '#') {
            while (*p < len && d[*p] != '\n') (*p)++;
            continue;
        }
        break;
    }
    if (*p >= len || d[*p] < '0' || d[*p] > '9') return 0;
    long x = 0;
    while (*p < len && d[*p] >= '0' && d[*p] <= '9') {
        x = x * 10 + (d[*p] - '0');
        if (x > 0x7fffffff) return 0;
        (*p)++;
    }
    *v = x;
    return 1;
}

/* num/den rounded half to even (Python's round() of the exact quotient). */
static uint64_t round_half_even(uint64_t num, uint64_t den) {
    uint64_t q = num / den, r = num % den;
    if (2 * r > den || (2 * r == den && (q & 1))) q++;
    return q;
}

/* Pillow 9.4: maxval 255 is raw; otherwise samples are rescaled to 0..255 with round
 * half to even, except 16-bit grey, which opens as mode "I" scaled to 0..65535 and is
 * then clipped to 255 by convert("RGB"). Samples above maxval are clamped. */
static vlmc_status decode_pnm(const uint8_t *d, size_t len, const char *name, const image_limits *lim,
                              rgb_image *out, vlmc_error *err) {
    int color = d[1] == '6';
    size_t p = 2;
    long w, h, maxv;
    if (!pnm_int(d, len, &p, &w) || !pnm_int(d, len, &p, &h) || !pnm_int(d, len, &p, &maxv) || p >= len)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: bad PNM header", name);
    p++; /* one whitespace byte */
    if (maxv < 1 || maxv > 65535) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: PNM maxval %ld", name, maxv);
    vlmc_status st = check_size(name, (uint64_t)w, (uint64_t)h, lim, err);
    if (st) return st;
    size_t bps = maxv < 256 ? 1 : 2, ch = color ? 3 : 1;
    size_t samples = (size_t)w * h * ch;
    if ((len - p) / bps < samples) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: truncated PNM pixel data", name);
    st = alloc_rgb(out, (int)w, (int)h, name, err);
    if (st) return st;
    const uint8_t *s = d + p;
    for (size_t i = 0; i < samples; i++) {
        uint64_t v = bps == 1 ? s[i] : (uint64_t)s[2 * i] << 8 | s[2 * i + 1];
        if (v > (uint64_t)maxv) v = (uint64_t)maxv;
        uint64_t o;
        if (maxv == 255) o = v;
        else if (!color && maxv > 255) {
            o = round_half_even(v * 65535, (uint64_t)maxv);
            if (o > 255) o = 255;
        } else {
            o = round_half_even(v * 255, (uint64_t)maxv);
        }
        if (color) out->data[i] = (uint8_t)o;
        else out->data[3 * i] = out->data[3 * i + 1] = out->data[3 * i + 2] = (uint8_t)o;
    }
    return VLMC_OK;
}

/* ---- entry points ------------------------------------------------------------------ */

vlmc_status image_decode(const uint8_t *data, size_t len, const char *name, const image_limits *limits,
                         rgb_image *out, vlmc_error *err) {
    image_limits lim;
    if (limits) lim = *limits;
    else image_limits_default(&lim);
    if (!lim.max_pixels) lim.max_pixels = IMAGE_DEFAULT_MAX_PIXELS;
    if (!lim.max_file_bytes) lim.max_file_bytes = IMAGE_DEFAULT_MAX_FILE_BYTES;
    if (!name) name = "<image>";
    memset(out, 0, sizeof *out);
    if (!data && len) return vlmc_fail(err, VLMC_ERR_ARG, "%s: no data", name);
    if (len > lim.max_file_bytes)
        return vlmc_fail(err, VLMC_ERR_LIMIT, "%s: %zu bytes, more than the limit of %llu", name, len,
                         (unsigned long long)lim.max_file_bytes);
    int orientation = 1;
    vlmc_status st;
    if (len >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
        st = decode_jpeg(data, len, name, &lim, out, &orientation, err);
    else if (len >= 8 && !memcmp(data, "\x89PNG\r\n\x1a\n", 8))
        st = decode_png(data, len, name, &lim, out, &orientation, err);
    else if (len >= 6 && (!memcmp(data, "GIF87a", 6) || !memcmp(data, "GIF89a", 6)))
        st = decode_gif(data, len, name, &lim, out, err);
    else if (len >= 12 && !memcmp(data, "RIFF", 4) && !memcmp(data + 8, "WEBP", 4))
        st = decode_webp(data, len, name, &lim, out, &orientation, err);
    else if (len >= 3 && data[0] == 'P' && (data[1] == '5' || data[1] == '6'))
        st = decode_pnm(data, len, name, &lim, out, err);
    else if (len >= 2 && data[0] == 'B' && data[1] == 'M')
        st = decode_bmp(data, len, name, &lim, out, err);
    else
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: unknown image format (%zu bytes; JPEG, PNG, GIF, WebP, BMP, PPM/PGM are supported)",
                         name, len);
    if (st) {
        rgb_image_free(out);
        return st;
    }
    st = image_apply_orientation(out, orientation, err);
    if (st) rgb_image_free(out);
    return st;
}

vlmc_status image_decode_file(const char *path, const image_limits *limits, rgb_image *out, vlmc_error *err) {
    image_limits lim;
    if (limits) lim = *limits;
    else image_limits_default(&lim);
    if (!lim.max_file_bytes) lim.max_file_bytes = IMAGE_DEFAULT_MAX_FILE_BYTES;
    memset(out, 0, sizeof *out);
    char *buf = NULL;
    size_t len = 0;
    vlmc_status st = file_read_all(path, (size_t)lim.max_file_bytes, &buf, &len, err);
    if (st) return st;
    st = image_decode((const uint8_t *)buf, len, path, &lim, out, err);
    free(buf);
    return st;
}

static int b64_val(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

vlmc_status base64_decode(const char *s, size_t len, uint8_t **out, size_t *out_len, vlmc_error *err) {
    *out = NULL;
    *out_len = 0;
    uint8_t *buf = malloc(len / 4 * 3 + 3);
    if (!buf) return vlmc_fail(err, VLMC_ERR_NOMEM, "base64: out of memory");
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    int pad = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = b64_val(c);
        if (v < 0 || pad) {
            free(buf);
            return vlmc_fail(err, VLMC_ERR_FORMAT, "base64: invalid character at offset %zu", i);
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[n++] = (uint8_t)(acc >> bits);
        }
    }
    if (bits >= 6) { /* a single leftover character carries no whole byte */
        free(buf);
        return vlmc_fail(err, VLMC_ERR_FORMAT, "base64: truncated input");
    }
    *out = buf;
    *out_len = n;
    return VLMC_OK;
}

vlmc_status image_decode_data_url(const char *url, size_t len, const image_limits *limits, rgb_image *out,
                                  vlmc_error *err) {
    memset(out, 0, sizeof *out);
    const char *payload = url;
    size_t plen = len;
    if (len >= 5 && !strncmp(url, "data:", 5)) {
        const char *comma = memchr(url, ',', len);
        if (!comma) return vlmc_fail(err, VLMC_ERR_FORMAT, "data URL: no ',' before the payload");
        size_t hlen = (size_t)(comma - url);
        int is_b64 = hlen >= 7 && !strncmp(comma - 7, ";base64", 7);
        if (!is_b64) return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "data URL: only base64 payloads are supported");
        payload = comma + 1;
        plen = len - hlen - 1;
    }
    image_limits lim;
    if (limits) lim = *limits;
    else image_limits_default(&lim);
    if (!lim.max_file_bytes) lim.max_file_bytes = IMAGE_DEFAULT_MAX_FILE_BYTES;
    if (plen / 4 * 3 > lim.max_file_bytes + 3)
        return vlmc_fail(err, VLMC_ERR_LIMIT, "data URL: payload larger than the limit of %llu bytes",
                         (unsigned long long)lim.max_file_bytes);
    uint8_t *bytes;
    size_t n;
    vlmc_status st = base64_decode(payload, plen, &bytes, &n, err);
    if (st) return vlmc_fail_prefix(err, "data URL");
    st = image_decode(bytes, n, "data URL", &lim, out, err);
    free(bytes);
    return st;
}
