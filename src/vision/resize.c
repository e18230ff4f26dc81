/* Pillow-exact resampling; see resize.h. Written from the facts of Pillow's
 * src/libImaging/Resample.c and Geometry.c (ImagingScaleAffine). */
#include "vision/resize.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS (32 - 8 - 2)

typedef struct filter_def {
    double (*fn)(double x);
    double support;
} filter_def;

static double box_fn(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }

static double bilinear_fn(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double hamming_fn(double x) {
    if (x < 0.0) x = -x;
    if (x == 0.0) return 1.0;
    if (x >= 1.0) return 0.0;
    x = x * M_PI;
    return sin(x) / x * (0.54f + 0.46f * cos(x));
}

static double bicubic_fn(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double sinc_fn(double x) {
    if (x == 0.0) return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

static double lanczos_fn(double x) {
    if (-3.0 <= x && x < 3.0) return sinc_fn(x) * sinc_fn(x / 3);
    return 0.0;
}

static const filter_def *filter_for(resample_filter f) {
    static const filter_def box = {box_fn, 0.5}, bilinear = {bilinear_fn, 1.0}, hamming = {hamming_fn, 1.0},
                            bicubic = {bicubic_fn, 2.0}, lanczos = {lanczos_fn, 3.0};
    switch (f) {
    case RESAMPLE_BOX: return &box;
    case RESAMPLE_BILINEAR: return &bilinear;
    case RESAMPLE_HAMMING: return &hamming;
    case RESAMPLE_BICUBIC: return &bicubic;
    case RESAMPLE_LANCZOS: return &lanczos;
    default: return NULL;
    }
}

/* One axis: for each output index, the first input index, the count, and ksize
 * double weights (normalised to sum 1). Returns ksize, 0 on failure. */
static int precompute(int in_size, int out_size, const filter_def *fd, int **bounds_out, double **kk_out) {
    float in0 = 0.0f, in1 = (float)in_size; /* the box, as Pillow holds it */
    double scale, filterscale;
    filterscale = scale = (double)(in1 - in0) / out_size;
    if (filterscale < 1.0) filterscale = 1.0;
    double support = fd->support * filterscale;
    if (support > 1e8) return 0;
    int ksize = (int)ceil(support) * 2 + 1;
    /* Pillow's overflow check, plus a cap on the coefficient table (2 GiB of doubles) */
    if ((size_t)out_size * (size_t)ksize > ((size_t)1 << 28)) return 0;
    double *kk = malloc((size_t)out_size * (size_t)ksize * sizeof(double));
    int *bounds = malloc((size_t)out_size * 2 * sizeof(int));
    if (!kk || !bounds) {
        free(kk);
        free(bounds);
        return 0;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double *k = &kk[(size_t)xx * ksize];
        int x;
        for (x = 0; x < xmax; x++) {
            double w = fd->fn((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0) k[x] /= ww;
        for (; x < ksize; x++) k[x] = 0;
        bounds[xx * 2] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    *bounds_out = bounds;
    *kk_out = kk;
    return ksize;
}

static int32_t *fixed_coeffs(const double *kk, size_t n) {
    int32_t *out = malloc(n * sizeof(int32_t));
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (kk[i] < 0) out[i] = (int32_t)(-0.5 + kk[i] * (1 << PRECISION_BITS));
        else out[i] = (int32_t)(0.5 + kk[i] * (1 << PRECISION_BITS));
    }
    return out;
}

/* clamp(v >> 22) to 0..255, as Pillow's clip8 lookup table (it covers -640..639). */
static inline uint8_t clip8(int64_t v) {
    int64_t s = v >> PRECISION_BITS; /* arithmetic shift, as Pillow's int */
    if (s < 0) return 0;
    if (s > 255) return 255;
    return (uint8_t)s;
}

static vlmc_status nearest_u8(const uint8_t *src, int in_w, int in_h, int ch, uint8_t *dst, int out_w, int out_h,
                              vlmc_error *err) {
    /* ImagingScaleAffine with a[0] = in_w/out_w, a[4] = in_h/out_h, offsets 0. */
    int *xin = malloc((size_t)out_w * sizeof(int));
    if (!xin) return vlmc_fail(err, VLMC_ERR_NOMEM, "resize: out of memory");
    double ax = (double)(float)in_w / out_w, ay = (double)(float)in_h / out_h;
    double xo = 0.0 + ax * 0.5;
    for (int x = 0; x < out_w; x++) {
        int xi = xo < 0.0 ? -1 : (int)xo;
        xin[x] = (xi >= 0 && xi < in_w) ? xi : -1;
        xo += ax;
    }
    double yo = 0.0 + ay * 0.5;
    for (int y = 0; y < out_h; y++) {
        int yi = yo < 0.0 ? -1 : (int)yo;
        uint8_t *out = dst + (size_t)y * out_w * ch;
        if (yi < 0 || yi >= in_h) {
            memset(out, 0, (size_t)out_w * ch);
        } else {
            const uint8_t *in = src + (size_t)yi * in_w * ch;
            for (int x = 0; x < out_w; x++) {
                if (xin[x] < 0) memset(out + (size_t)x * ch, 0, (size_t)ch);
                else memcpy(out + (size_t)x * ch, in + (size_t)xin[x] * ch, (size_t)ch);
            }
        }
        yo += ay;
    }
    free(xin);
    return VLMC_OK;
}

static vlmc_status check_args(int in_w, int in_h, int ch, int out_w, int out_h, resample_filter filter,
                              vlmc_error *err) {
    if (in_w <= 0 || in_h <= 0 || out_w <= 0 || out_h <= 0 || ch < 1 || ch > 4)
        return vlmc_fail(err, VLMC_ERR_ARG, "resize: invalid sizes %dx%dx%d -> %dx%d", in_w, in_h, ch, out_w, out_h);
    if (filter != RESAMPLE_NEAREST && !filter_for(filter))
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "resize: unknown resample filter %d", (int)filter);
    return VLMC_OK;
}

vlmc_status resize_u8(const uint8_t *src, int in_w, int in_h, int ch, uint8_t *dst, int out_w, int out_h,
                      resample_filter filter, vlmc_error *err) {
    vlmc_status st = check_args(in_w, in_h, ch, out_w, out_h, filter, err);
    if (st) return st;
    if (in_w == out_w && in_h == out_h) { /* Pillow returns a copy */
        memcpy(dst, src, (size_t)in_w * in_h * ch);
        return VLMC_OK;
    }
    if (filter == RESAMPLE_NEAREST) return nearest_u8(src, in_w, in_h, ch, dst, out_w, out_h, err);

    const filter_def *fd = filter_for(filter);
    int *bh = NULL, *bv = NULL;
    double *kh = NULL, *kv = NULL;
    int32_t *ih = NULL, *iv = NULL;
    uint8_t *tmp = NULL;
    st = VLMC_OK;
    int ksh = precompute(in_w, out_w, fd, &bh, &kh);
    int ksv = ksh ? precompute(in_h, out_h, fd, &bv, &kv) : 0;
    if (!ksh || !ksv) {
        st = vlmc_fail(err, VLMC_ERR_LIMIT, "resize: %dx%d -> %dx%d needs too large a coefficient table", in_w, in_h, out_w, out_h);
        goto done;
    }
    int need_h = out_w != in_w, need_v = out_h != in_h;
    int ybox_first = bv[0], ybox_last = bv[out_h * 2 - 2] + bv[out_h * 2 - 1];
    const uint8_t *cur = src;
    int cur_w = in_w;
    int row0 = 0; /* first input row of cur */
    if (need_h) {
        ih = fixed_coeffs(kh, (size_t)out_w * ksh);
        int rows = ybox_last - ybox_first;
        tmp = malloc((size_t)out_w * rows * ch);
        if (!ih || !tmp) {
            st = vlmc_fail(err, VLMC_ERR_NOMEM, "resize: out of memory");
            goto done;
        }
#pragma omp parallel for schedule(static) if ((size_t)rows * out_w > 65536)
        for (int yy = 0; yy < rows; yy++) {
            const uint8_t *in = src + (size_t)(yy + ybox_first) * in_w * ch;
            uint8_t *out = tmp + (size_t)yy * out_w * ch;
            for (int xx = 0; xx < out_w; xx++) {
                int xmin = bh[xx * 2], xmax = bh[xx * 2 + 1];
                const int32_t *k = &ih[(size_t)xx * ksh];
                for (int c = 0; c < ch; c++) {
                    int64_t ss = 1 << (PRECISION_BITS - 1);
                    for (int x = 0; x < xmax; x++) ss += (int64_t)in[(size_t)(x + xmin) * ch + c] * k[x];
                    out[(size_t)xx * ch + c] = clip8(ss);
                }
            }
        }
        cur = tmp;
        cur_w = out_w;
        row0 = ybox_first;
    }
    if (need_v) {
        iv = fixed_coeffs(kv, (size_t)out_h * ksv);
        if (!iv) {
            st = vlmc_fail(err, VLMC_ERR_NOMEM, "resize: out of memory");
            goto done;
        }
#pragma omp parallel for schedule(static) if ((size_t)out_h * cur_w > 65536)
        for (int yy = 0; yy < out_h; yy++) {
            int ymin = bv[yy * 2] - row0, ymax = bv[yy * 2 + 1];
            const int32_t *k = &iv[(size_t)yy * ksv];
            uint8_t *out = dst + (size_t)yy * cur_w * ch;
            for (int xx = 0; xx < cur_w * ch; xx++) {
                int64_t ss = 1 << (PRECISION_BITS - 1);
                for (int y = 0; y < ymax; y++) ss += (int64_t)cur[(size_t)(y + ymin) * cur_w * ch + xx] * k[y];
                out[xx] = clip8(ss);
            }
        }
    } else {
        memcpy(dst, cur, (size_t)out_w * out_h * ch);
    }
done:
    free(bh);
    free(bv);
    free(kh);
    free(kv);
    free(ih);
    free(iv);
    free(tmp);
    return st;
}

vlmc_status resize_f32(const float *src, int in_w, int in_h, int ch, float *dst, int out_w, int out_h,
                       resample_filter filter, vlmc_error *err) {
    vlmc_status st = check_args(in_w, in_h, ch, out_w, out_h, filter, err);
    if (st) return st;
    if (in_w == out_w && in_h == out_h) {
        memcpy(dst, src, (size_t)in_w * in_h * ch * sizeof(float));
        return VLMC_OK;
    }
    if (filter == RESAMPLE_NEAREST) {
        /* Same index mapping as the uint8 path. */
        double ax = (double)(float)in_w / out_w, ay = (double)(float)in_h / out_h;
        double yo = ay * 0.5;
        for (int y = 0; y < out_h; y++, yo += ay) {
            int yi = yo < 0.0 ? -1 : (int)yo;
            double xo = ax * 0.5;
            for (int x = 0; x < out_w; x++, xo += ax) {
                int xi = xo < 0.0 ? -1 : (int)xo;
                for (int c = 0; c < ch; c++)
                    dst[((size_t)y * out_w + x) * ch + c] =
                        (yi >= 0 && yi < in_h && xi >= 0 && xi < in_w) ? src[((size_t)yi * in_w + xi) * ch + c] : 0.0f;
            }
        }
        return VLMC_OK;
    }
    const filter_def *fd = filter_for(filter);
    int *bh = NULL, *bv = NULL;
    double *kh = NULL, *kv = NULL;
    float *tmp = NULL;
    int ksh = precompute(in_w, out_w, fd, &bh, &kh);
    int ksv = ksh ? precompute(in_h, out_h, fd, &bv, &kv) : 0;
    if (!ksh || !ksv) {
        st = vlmc_fail(err, VLMC_ERR_LIMIT, "resize: %dx%d -> %dx%d needs too large a coefficient table", in_w, in_h, out_w, out_h);
        goto done;
    }
    int need_h = out_w != in_w, need_v = out_h != in_h;
    int ybox_first = bv[0], ybox_last = bv[out_h * 2 - 2] + bv[out_h * 2 - 1];
    const float *cur = src;
    int cur_w = in_w, row0 = 0;
    if (need_h) {
        int rows = ybox_last - ybox_first;
        tmp = malloc((size_t)out_w * rows * ch * sizeof(float));
        if (!tmp) {
            st = vlmc_fail(err, VLMC_ERR_NOMEM, "resize: out of memory");
            goto done;
        }
#pragma omp parallel for schedule(static) if ((size_t)rows * out_w > 65536)
        for (int yy = 0; yy < rows; yy++) {
            const float *in = src + (size_t)(yy + ybox_first) * in_w * ch;
            for (int xx = 0; xx < out_w; xx++) {
                int xmin = bh[xx * 2], xmax = bh[xx * 2 + 1];
                const double *k = &kh[(size_t)xx * ksh];
                for (int c = 0; c < ch; c++) {
                    double ss = 0.0;
                    for (int x = 0; x < xmax; x++) ss += in[(size_t)(x + xmin) * ch + c] * k[x];
                    tmp[((size_t)yy * out_w + xx) * ch + c] = (float)ss;
                }
            }
        }
        cur = tmp;
        cur_w = out_w;
        row0 = ybox_first;
    }
    if (need_v) {
#pragma omp parallel for schedule(static) if ((size_t)out_h * cur_w > 65536)
        for (int yy = 0; yy < out_h; yy++) {
            int ymin = bv[yy * 2] - row0, ymax = bv[yy * 2 + 1];
            const double *k = &kv[(size_t)yy * ksv];
            for (int xx = 0; xx < cur_w * ch; xx++) {
                double ss = 0.0;
                for (int y = 0; y < ymax; y++) ss += cur[(size_t)(y + ymin) * cur_w * ch + xx] * k[y];
                dst[(size_t)yy * cur_w * ch + xx] = (float)ss;
            }
        }
    } else {
        memcpy(dst, cur, (size_t)out_w * out_h * ch * sizeof(float));
    }
done:
    free(bh);
    free(bv);
    free(kh);
    free(kv);
    free(tmp);
    return st;
}
