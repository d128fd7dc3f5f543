/* Fused CPU kernels of ACON-C, two-piece DY-ReLU and FReLU (float32), built and loaded by native.py.
 *
 * Every function works on one block of (sample, channel) planes: nb x cb planes of L contiguous floats, plane (i, j)
 * of a tensor t at t + i * ts0 + j * ts1 (strides in elements; a stride of 0 broadcasts). Coefficients are rows of
 * floats at coef + i * cs0 + j * cs1. The kernels are single-threaded: the Python worker pool shares the blocks of a
 * pass among threads (ctypes releases the GIL for the call), so that a descheduled thread delays nothing but its own
 * block. Each pass reads and writes every element once. Sums over a plane are vectorised float reductions
 * (`omp simd`, built with -fopenmp-simd: no OpenMP runtime), each lane summing every 8th or 16th element.
 *
 * The exponential is the Cephes single-precision expf scheme (Moshier): 2^n e^r with n = round(x / ln 2), r reduced in
 * two parts, e^r a degree-6 polynomial; error about 1 ulp, infinity above ln FLT_MAX (from 88.38 on: e^x is within
 * 2x of FLT_MAX there), 0 below ln FLT_MIN (no subnormals), NaN for NaN. Plain arithmetic and selects, so that the
 * loops vectorise without -ffast-math.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(YAS_CLONES)
#define YAS_TARGETS __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define YAS_TARGETS
#endif

static inline float yas_exp(float x) {
    /* clamped to [ln FLT_MIN, ln FLT_MAX]: at the top n = 128 and 2^n is the bit pattern of infinity */
    const float xc0 = x < 88.7228393555f ? x : 88.7228393555f;
    const float xc = xc0 > -87.3365447504f ? xc0 : -87.3365447504f;
    const float t = xc * 1.44269504088896341f + 12582912.0f; /* round(x / ln 2) in the low mantissa bits */
    const float n = t - 12582912.0f;
    union { float f; int32_t i; } u = {t};
    const float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } e = {(u.i - 0x4B400000 + 127) << 23}; /* 2^n */
    const float y = x < -87.3365447504f ? 0.0f : p * e.f; /* under FLT_MIN: flushed to 0 */
    return x != x ? x : y;                                  /* NaN stays NaN */
}

static inline float yas_sigmoid(float v) { return 1.0f / (1.0f + yas_exp(-v)); }

/* ACON-C forward, coefficient row (beta d, d, p2): y = x (d sigmoid(beta d x) + p2). */
YAS_TARGETS
void yas_acon_forward(const float *restrict x, float *restrict y, const float *restrict coef, int64_t nb, int64_t cb,
                      int64_t len, int64_t xs0, int64_t xs1, int64_t ys0, int64_t ys1, int64_t cs0, int64_t cs1) {
    for (int64_t i = 0; i < nb; i++)
        for (int64_t j = 0; j < cb; j++) {
            const float *xp = x + i * xs0 + j * xs1;
            float *yp = y + i * ys0 + j * ys1;
            const float *c = coef + i * cs0 + j * cs1;
            const float bd = c[0], d = c[1], p2 = c[2];
            for (int64_t l = 0; l < len; l++) yp[l] = xp[l] * (d * yas_sigmoid(bd * xp[l]) + p2);
        }
}

/* ACON-C backward: gx = g (d q + p2) (gx may be NULL) with v = beta d x, s = sigmoid(v), q = s + v s (1 - s); per
 * plane, sums[0..2] = sum g x, sum g x q, sum g x^2 s (1 - s). */
YAS_TARGETS
void yas_acon_backward(const float *restrict x, const float *restrict g, float *restrict gx,
                       const float *restrict coef, float *restrict sums, int64_t nb, int64_t cb, int64_t len,
                       int64_t xs0, int64_t xs1, int64_t gs0, int64_t gs1, int64_t gxs0, int64_t gxs1, int64_t cs0,
                       int64_t cs1, int64_t ss0, int64_t ss1) {
    for (int64_t i = 0; i < nb; i++)
        for (int64_t j = 0; j < cb; j++) {
            const float *xp = x + i * xs0 + j * xs1, *gp = g + i * gs0 + j * gs1, *c = coef + i * cs0 + j * cs1;
            float *gxp = gx ? gx + i * gxs0 + j * gxs1 : 0;
            const float bd = c[0], d = c[1], p2 = c[2];
            float s0 = 0, s1 = 0, s2 = 0;
            if (gxp) {
#pragma omp simd reduction(+ : s0, s1, s2)
                for (int64_t l = 0; l < len; l++) {
                    const float v = bd * xp[l], s = yas_sigmoid(v), sd = s - s * s, q = s + v * sd, gxv = gp[l] * xp[l];
                    s0 += gxv, s1 += gxv * q, s2 += gxv * xp[l] * sd;
                    gxp[l] = gp[l] * (d * q + p2);
                }
            } else {
#pragma omp simd reduction(+ : s0, s1, s2)
                for (int64_t l = 0; l < len; l++) {
                    const float v = bd * xp[l], s = yas_sigmoid(v), sd = s - s * s, q = s + v * sd, gxv = gp[l] * xp[l];
                    s0 += gxv, s1 += gxv * q, s2 += gxv * xp[l] * sd;
                }
            }
            float *sp = sums + i * ss0 + j * ss1;
            sp[0] = s0, sp[1] = s1, sp[2] = s2;
        }
}

/* DY-ReLU, two pieces, forward, coefficient row (a0, a1, b0, b1): y = max(a0 x + b0, a1 x + b1). */
YAS_TARGETS
void yas_dyrelu2_forward(const float *restrict x, float *restrict y, const float *restrict coef, int64_t nb,
                         int64_t cb, int64_t len, int64_t xs0, int64_t xs1, int64_t ys0, int64_t ys1, int64_t cs0,
                         int64_t cs1) {
    for (int64_t i = 0; i < nb; i++)
        for (int64_t j = 0; j < cb; j++) {
            const float *xp = x + i * xs0 + j * xs1;
            float *yp = y + i * ys0 + j * ys1;
            const float *c = coef + i * cs0 + j * cs1;
            const float a0 = c[0], a1 = c[1], b0 = c[2], b1 = c[3];
            for (int64_t l = 0; l < len; l++) {
                const float t0 = a0 * xp[l] + b0, t1 = a1 * xp[l] + b1;
                yp[l] = t1 > t0 ? t1 : t0;
            }
        }
}

/* DY-ReLU, two pieces, backward, coefficient row (a0, b0, a1 - a0, b1 - b0): piece 1 wins where
 * z = (a1 - a0) x + (b1 - b0) > 0 (gm = g there, else 0); gx = a0 g + (a1 - a0) gm (gx may be NULL); per plane,
 * sums[0..3] = sum g x, sum gm x, sum g, sum gm. */
YAS_TARGETS
void yas_dyrelu2_backward(const float *restrict x, const float *restrict g, float *restrict gx,
                          const float *restrict coef, float *restrict sums, int64_t nb, int64_t cb, int64_t len,
                          int64_t xs0, int64_t xs1, int64_t gs0, int64_t gs1, int64_t gxs0, int64_t gxs1, int64_t cs0,
                          int64_t cs1, int64_t ss0, int64_t ss1) {
    for (int64_t i = 0; i < nb; i++)
        for (int64_t j = 0; j < cb; j++) {
            const float *xp = x + i * xs0 + j * xs1, *gp = g + i * gs0 + j * gs1, *c = coef + i * cs0 + j * cs1;
            float *gxp = gx ? gx + i * gxs0 + j * gxs1 : 0;
            const float a0 = c[0], da = c[2], db = c[3]; /* c[1] = b0: not needed */
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            if (gxp) {
#pragma omp simd reduction(+ : s0, s1, s2, s3)
                for (int64_t l = 0; l < len; l++) {
                    const float gm = da * xp[l] + db > 0.0f ? gp[l] : 0.0f;
                    s0 += gp[l] * xp[l], s1 += gm * xp[l], s2 += gp[l], s3 += gm;
                    gxp[l] = a0 * gp[l] + da * gm;
                }
            } else {
#pragma omp simd reduction(+ : s0, s1, s2, s3)
                for (int64_t l = 0; l < len; l++) {
                    const float gm = da * xp[l] + db > 0.0f ? gp[l] : 0.0f;
                    s0 += gp[l] * xp[l], s1 += gm * xp[l], s2 += gp[l], s3 += gm;
                }
            }
            float *sp = sums + i * ss0 + j * ss1;
            sp[0] = s0, sp[1] = s1, sp[2] = s2, sp[3] = s3;
        }
}

/* ------------------------------------------------------------------------------------------------------------------
 * FReLU, y = max(x, A dwconv(x) + B) per channel, with A = gamma invstd and B = beta - mean A (training: the batch's
 * statistics; eval: the running ones, or A = 1 and B = 0 after fuse(), the BN folded into the conv's bias). The
 * depthwise k x k conv (stride 1, zero padding p = k / 2) of an H x W plane is computed on a zero-padded copy of the
 * plane, rows of WP = W + 2p floats laid end to end: output (i, j) is at i WP + j and reads pad[i WP + j + u WP + v],
 * so each of the k^2 taps is one long contiguous loop over H WP outputs (the j >= W columns are computed and
 * ignored). The conv is recomputed wherever it is needed instead of being kept: nothing map-sized is saved between
 * the passes. Channel parameters (w: k * k per channel, bias, A and B, the BN backward's k, a, b) are indexed by the
 * block's channel j alone; a plane's sums are stored as double. Functions return -1 when their buffers cannot be
 * allocated, else 0.
 * ------------------------------------------------------------------------------------------------------------------ */

#define CONV_TILE 1024 /* outputs per tile: a tile stays in L1 across the k^2 taps */

typedef struct {
    int64_t h, wd, k, p, wp, n; /* n = h * wp outputs, output (i, j) at q = i wp + j */
    float *pad;  /* the padded input plane; xq = pad + p wp + p is x at q, 0 in the columns j >= W */
    float *out;  /* conv output (then the forward's result, or the transposed conv) at q */
    float *gbuf; /* the upstream gradient at q (0 in the columns j >= W), then g - gt (backward only) */
    float *mask; /* 1 at q where j < W, else 0 (backward only) */
    float *gpad; /* the padded conv-output gradient, gc at q of gpad + p wp + p (backward only) */
} planes_t;

static void planes_free(planes_t *b) {
    free(b->pad);
    free(b->out);
    free(b->gbuf);
    free(b->mask);
    free(b->gpad);
}

static int planes_init(planes_t *b, int64_t h, int64_t wd, int64_t k, int backward) {
    b->h = h, b->wd = wd, b->k = k, b->p = k / 2, b->wp = wd + 2 * (k / 2), b->n = h * b->wp;
    const size_t padded = (size_t)((h + k) * b->wp + k), n = (size_t)b->n;
    b->pad = calloc(padded, sizeof(float)); /* borders stay zero: only the interior is ever written */
    b->out = malloc(n * sizeof(float));
    b->gbuf = backward ? calloc(n, sizeof(float)) : 0;
    b->mask = backward ? malloc(n * sizeof(float)) : 0;
    b->gpad = backward ? calloc(padded, sizeof(float)) : 0;
    if (!b->pad || !b->out || (backward && (!b->gbuf || !b->mask || !b->gpad))) {
        planes_free(b);
        return -1;
    }
    for (int64_t q = 0; backward && q < b->n; q++) b->mask[q] = q % b->wp < wd ? 1.0f : 0.0f;
    return 0;
}

/* rows of W floats at src into rows of WP floats at dst (the columns in between keep their zeros) */
static inline void rows_in(const planes_t *b, float *dst, const float *src) {
    for (int64_t i = 0; i < b->h; i++) memcpy(dst + i * b->wp, src + i * b->wd, (size_t)b->wd * sizeof(float));
}

static inline void rows_out(const planes_t *b, float *dst, const float *src) {
    for (int64_t i = 0; i < b->h; i++) memcpy(dst + i * b->wd, src + i * b->wp, (size_t)b->wd * sizeof(float));
}

static inline void load_plane(const planes_t *b, const float *restrict x) {
    rows_in(b, b->pad + b->p * b->wp + b->p, x);
}

/* out[q] = bias + sum_{u, v} w[u k + v] src[q + u WP + v] for q < n (flip: the kernel rotated by 180 degrees). For
 * k = 3 the nine taps are one expression per output (nine loads, one store per vector); other sizes run tap by tap
 * over tiles that stay in L1. */
static inline __attribute__((always_inline)) void conv_flat(const planes_t *b, const float *restrict src,
                                                            float *restrict out, const float *restrict w, float bias,
                                                            int flip) {
    const int64_t k = b->k, kk = k * k, wp = b->wp, n = b->n;
    if (k == 3) {
        float t[9];
        for (int q = 0; q < 9; q++) t[q] = w[flip ? 8 - q : q];
        const float *r0 = src, *r1 = src + wp, *r2 = src + 2 * wp;
        for (int64_t q = 0; q < n; q++)
            out[q] = bias + t[0] * r0[q] + t[1] * r0[q + 1] + t[2] * r0[q + 2] + t[3] * r1[q] + t[4] * r1[q + 1] +
                     t[5] * r1[q + 2] + t[6] * r2[q] + t[7] * r2[q + 1] + t[8] * r2[q + 2];
        return;
    }
    for (int64_t q0 = 0; q0 < n; q0 += CONV_TILE) {
        const int64_t q1 = q0 + CONV_TILE < n ? q0 + CONV_TILE : n;
        for (int64_t q = q0; q < q1; q++) out[q] = bias;
        for (int64_t u = 0; u < k; u++)
            for (int64_t v = 0; v < k; v++) {
                const float wv = w[flip ? kk - 1 - (u * k + v) : u * k + v];
                const float *sp = src + u * wp + v;
                for (int64_t q = q0; q < q1; q++) out[q] += wv * sp[q];
            }
    }
}

/* gw[u k + v] = sum_q gc[q] src[q + u WP + v] for q < n: for k = 3 the nine sums in one sweep. */
static inline __attribute__((always_inline)) void conv_weight_grad(const planes_t *b, const float *restrict gc,
                                                                   const float *restrict src, double *gw) {
    const int64_t k = b->k, wp = b->wp, n = b->n;
    if (k != 3) {
        for (int64_t u = 0; u < k; u++)
            for (int64_t v = 0; v < k; v++) {
                const float *sp = src + u * wp + v;
                float s = 0;
#pragma omp simd reduction(+ : s)
                for (int64_t q = 0; q < n; q++) s += gc[q] * sp[q];
                gw[u * k + v] = s;
            }
        return;
    }
    const float *r0 = src, *r1 = src + wp, *r2 = src + 2 * wp;
    float t0 = 0, t1 = 0, t2 = 0, t3 = 0, t4 = 0, t5 = 0, t6 = 0, t7 = 0, t8 = 0;
#pragma omp simd reduction(+ : t0, t1, t2, t3, t4, t5, t6, t7, t8)
    for (int64_t q = 0; q < n; q++) {
        const float g = gc[q];
        t0 += g * r0[q], t1 += g * r0[q + 1], t2 += g * r0[q + 2];
        t3 += g * r1[q], t4 += g * r1[q + 1], t5 += g * r1[q + 2];
        t6 += g * r2[q], t7 += g * r2[q + 1], t8 += g * r2[q + 2];
    }
    gw[0] = t0, gw[1] = t1, gw[2] = t2, gw[3] = t3, gw[4] = t4, gw[5] = t5, gw[6] = t6, gw[7] = t7, gw[8] = t8;
}

/* Training forward, first pass: per plane, sums[0..1] = sum c, sum c^2 of the conv output c (the BN's statistics). */
YAS_TARGETS
int yas_frelu_stats(const float *restrict x, const float *restrict w, const float *restrict bias,
                    double *restrict sums, int64_t nb, int64_t cb, int64_t h, int64_t wd, int64_t k, int64_t xs0,
                    int64_t xs1, int64_t ss0, int64_t ss1) {
    planes_t b;
    if (planes_init(&b, h, wd, k, 0)) return -1; /* freed what it had allocated */
    for (int64_t i0 = 0; i0 < nb; i0++)
        for (int64_t j0 = 0; j0 < cb; j0++) {
            load_plane(&b, x + i0 * xs0 + j0 * xs1);
            conv_flat(&b, b.pad, b.out, w + j0 * k * k, bias ? bias[j0] : 0.0f, 0);
            for (int64_t i = 0; i < h; i++) /* the columns j >= W out of the sums */
                for (int64_t j = wd; j < b.wp; j++) b.out[i * b.wp + j] = 0.0f;
            const float *o = b.out;
            float s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
            for (int64_t q = 0; q < b.n; q++) s1 += o[q], s2 += o[q] * o[q];
            double *sp = sums + i0 * ss0 + j0 * ss1;
            sp[0] = s1, sp[1] = s2;
        }
    planes_free(&b);
    return 0;
}

/* Forward (training second pass, or eval): y = max(x, A c + B), ab = (A, B) per channel. */
YAS_TARGETS
int yas_frelu_forward(const float *restrict x, const float *restrict w, const float *restrict bias,
                      const float *restrict ab, float *restrict y, int64_t nb, int64_t cb, int64_t h, int64_t wd,
                      int64_t k, int64_t xs0, int64_t xs1, int64_t ys0, int64_t ys1) {
    planes_t b;
    if (planes_init(&b, h, wd, k, 0)) return -1; /* freed what it had allocated */
    const float *xq = b.pad + b.p * b.wp + b.p;
    for (int64_t i0 = 0; i0 < nb; i0++)
        for (int64_t j0 = 0; j0 < cb; j0++) {
            const float a = ab[2 * j0], c0 = ab[2 * j0 + 1];
            load_plane(&b, x + i0 * xs0 + j0 * xs1);
            conv_flat(&b, b.pad, b.out, w + j0 * k * k, bias ? bias[j0] : 0.0f, 0);
            for (int64_t q = 0; q < b.n; q++) {
                const float t = a * b.out[q] + c0;
                b.out[q] = t > xq[q] ? t : xq[q];
            }
            rows_out(&b, y + i0 * ys0 + j0 * ys1, b.out);
        }
    planes_free(&b);
    return 0;
}

/* Backward, first pass: per plane, sums[0..1] = sum gt, sum gt c, where gt = g where the funnel won (A c + B > x). */
YAS_TARGETS
int yas_frelu_backward_sums(const float *restrict x, const float *restrict g, const float *restrict w,
                            const float *restrict bias, const float *restrict ab, double *restrict sums, int64_t nb,
                            int64_t cb, int64_t h, int64_t wd, int64_t k, int64_t xs0, int64_t xs1, int64_t gs0,
                            int64_t gs1, int64_t ss0, int64_t ss1) {
    planes_t b;
    if (planes_init(&b, h, wd, k, 1)) return -1; /* freed what it had allocated */
    const float *xq = b.pad + b.p * b.wp + b.p;
    for (int64_t i0 = 0; i0 < nb; i0++)
        for (int64_t j0 = 0; j0 < cb; j0++) {
            const float a = ab[2 * j0], c0 = ab[2 * j0 + 1];
            load_plane(&b, x + i0 * xs0 + j0 * xs1);
            rows_in(&b, b.gbuf, g + i0 * gs0 + j0 * gs1);
            conv_flat(&b, b.pad, b.out, w + j0 * k * k, bias ? bias[j0] : 0.0f, 0);
            const float *o = b.out, *gq = b.gbuf;
            float s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
            for (int64_t q = 0; q < b.n; q++) {
                const float gt = a * o[q] + c0 > xq[q] ? gq[q] : 0.0f;
                s1 += gt, s2 += gt * o[q];
            }
            double *sp = sums + i0 * ss0 + j0 * ss1;
            sp[0] = s1, sp[1] = s2;
        }
    planes_free(&b);
    return 0;
}

/* Backward, second pass, kab = (k, a, b) per channel: the conv output's gradient gc = k gt + a c + b (batch-statistics
 * BN) is formed for the whole plane in the padded gradient buffer (0 in the columns j >= W); then gx = g - gt +
 * conv(gc, rotated w) (gx may be NULL), and per plane gw[u k + v] = sum gc[i][j] x[i + u - p][j + v - p] and
 * gb = sum gc (each may be NULL). */
YAS_TARGETS
int yas_frelu_backward(const float *restrict x, const float *restrict g, const float *restrict w,
                       const float *restrict bias, const float *restrict ab, const float *restrict kab,
                       float *restrict gx, double *restrict gw, double *restrict gb, int64_t nb, int64_t cb, int64_t h,
                       int64_t wd, int64_t k, int64_t xs0, int64_t xs1, int64_t gs0, int64_t gs1, int64_t gxs0,
                       int64_t gxs1, int64_t gws0, int64_t gws1, int64_t gbs0, int64_t gbs1) {
    planes_t b;
    if (planes_init(&b, h, wd, k, 1)) return -1; /* freed what it had allocated */
    const float *xq = b.pad + b.p * b.wp + b.p;
    float *gcq = b.gpad + b.p * b.wp + b.p;
    for (int64_t i0 = 0; i0 < nb; i0++)
        for (int64_t j0 = 0; j0 < cb; j0++) {
            const float *wc = w + j0 * k * k;
            const float a = ab[2 * j0], c0 = ab[2 * j0 + 1];
            const float kk = kab[3 * j0], ka = kab[3 * j0 + 1], kb = kab[3 * j0 + 2];
            load_plane(&b, x + i0 * xs0 + j0 * xs1);
            rows_in(&b, b.gbuf, g + i0 * gs0 + j0 * gs1);
            conv_flat(&b, b.pad, b.out, wc, bias ? bias[j0] : 0.0f, 0);
            for (int64_t q = 0; q < b.n; q++) {
                const float c = b.out[q], gv = b.gbuf[q], gt = a * c + c0 > xq[q] ? gv : 0.0f;
                gcq[q] = b.mask[q] * (kk * gt + ka * c + kb);
                b.gbuf[q] = gv - gt;
            }
            if (gw) conv_weight_grad(&b, gcq, b.pad, gw + i0 * gws0 + j0 * gws1);
            if (gb) {
                float s = 0;
#pragma omp simd reduction(+ : s)
                for (int64_t q = 0; q < b.n; q++) s += gcq[q];
                gb[i0 * gbs0 + j0 * gbs1] = s;
            }
            if (gx) { /* the identity branch's g - gt plus the conv's input gradient (the rotated kernel over gc) */
                conv_flat(&b, b.gpad, b.out, wc, 0.0f, 1);
                for (int64_t q = 0; q < b.n; q++) b.out[q] += b.gbuf[q];
                rows_out(&b, gx + i0 * gxs0 + j0 * gxs1, b.out);
            }
        }
    planes_free(&b);
    return 0;
}

/* ------------------------------------------------------------------------------------------------------------------
 * Two-piece DY-ReLU with DY-ReLU-C's spatial attention pi (one row of L per sample, shared by its channels):
 * y = pi max(a0 x + b0, a1 x + b1). The backward multiplies g by pi, and (gpi not NULL) adds sum_c g max(...) per
 * pixel into gpi (nb rows of L, zeroed by the caller: the block's part of pi's gradient).
 * ------------------------------------------------------------------------------------------------------------------ */
YAS_TARGETS
void yas_dyrelu2_pi_forward(const float *restrict x, const float *restrict pi, float *restrict y,
                            const float *restrict coef, int64_t nb, int64_t cb, int64_t len, int64_t xs0, int64_t xs1,
                            int64_t ps0, int64_t ys0, int64_t ys1, int64_t cs0, int64_t cs1) {
    for (int64_t i = 0; i < nb; i++)
        for (int64_t j = 0; j < cb; j++) {
            const float *xp = x + i * xs0 + j * xs1, *pp = pi + i * ps0;
            float *yp = y + i * ys0 + j * ys1;
            const float *c = coef + i * cs0 + j * cs1;
            const float a0 = c[0], a1 = c[1], b0 = c[2], b1 = c[3];
            for (int64_t l = 0; l < len; l++) {
                const float t0 = a0 * xp[l] + b0, t1 = a1 * xp[l] + b1;
                yp[l] = pp[l] * (t1 > t0 ? t1 : t0);
            }
        }
}

/* one plane of yas_dyrelu2_pi_backward; write_gx and write_gpi are constants at each call, so that every copy
 * vectorises */
static inline __attribute__((always_inline)) void dyrelu2_pi_plane(const float *restrict xp, const float *restrict gp,
                                                                   const float *restrict pp, float *restrict gxp,
                                                                   float *restrict gpp, const float *restrict c,
                                                                   float *restrict sp, int64_t len,
                                                                   const int write_gx, const int write_gpi) {
    const float a0 = c[0], b0 = c[1], da = c[2], db = c[3];
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
    for (int64_t l = 0; l < len; l++) {
        const float z = da * xp[l] + db, ga = gp[l] * pp[l], gm = z > 0.0f ? ga : 0.0f;
        s0 += ga * xp[l], s1 += gm * xp[l], s2 += ga, s3 += gm;
        if (write_gx) gxp[l] = a0 * ga + da * gm;
        if (write_gpi) gpp[l] += gp[l] * (a0 * xp[l] + b0 + (z > 0.0f ? z : 0.0f)); /* g max(t0, t1) */
    }
    sp[0] = s0, sp[1] = s1, sp[2] = s2, sp[3] = s3;
}

/* coefficient row (a0, b0, a1 - a0, b1 - b0) as in yas_dyrelu2_backward, with g multiplied by pi; gx and gpi may be
 * NULL */
YAS_TARGETS
void yas_dyrelu2_pi_backward(const float *restrict x, const float *restrict g, const float *restrict pi,
                             float *restrict gx, float *restrict gpi, const float *restrict coef,
                             float *restrict sums, int64_t nb, int64_t cb, int64_t len, int64_t xs0, int64_t xs1,
                             int64_t gs0, int64_t gs1, int64_t ps0, int64_t gxs0, int64_t gxs1, int64_t gps0,
                             int64_t cs0, int64_t cs1, int64_t ss0, int64_t ss1) {
    for (int64_t i = 0; i < nb; i++)
        for (int64_t j = 0; j < cb; j++) {
            const float *xp = x + i * xs0 + j * xs1, *gp = g + i * gs0 + j * gs1, *pp = pi + i * ps0;
            const float *c = coef + i * cs0 + j * cs1;
            float *gxp = gx ? gx + i * gxs0 + j * gxs1 : 0, *gpp = gpi ? gpi + i * gps0 : 0;
            float *sp = sums + i * ss0 + j * ss1;
            if (gxp && gpp)
                dyrelu2_pi_plane(xp, gp, pp, gxp, gpp, c, sp, len, 1, 1);
            else if (gxp)
                dyrelu2_pi_plane(xp, gp, pp, gxp, 0, c, sp, len, 1, 0);
            else if (gpp)
                dyrelu2_pi_plane(xp, gp, pp, 0, gpp, c, sp, len, 0, 1);
            else
                dyrelu2_pi_plane(xp, gp, pp, 0, 0, c, sp, len, 0, 0);
        }
}
