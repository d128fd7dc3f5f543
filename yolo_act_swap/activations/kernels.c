/* Fused CPU kernels of ACON-C and two-piece DY-ReLU (float32), built and loaded by native.py.
 *
 * Every function works on one block of (sample, channel) planes: nb x cb planes of L contiguous floats, plane (i, j)
 * of a tensor t at t + i * ts0 + j * ts1 (strides in elements; a stride of 0 broadcasts). Coefficients are rows of
 * floats at coef + i * cs0 + j * cs1. The kernels are single-threaded: the Python worker pool shares the blocks of a
 * pass among threads (ctypes releases the GIL for the call), so that a descheduled thread delays nothing but its own
 * block. Each pass reads and writes every element once; sums over a plane run in LANES independent float partial sums
 * (what a vectorised reduction does) and are added up in double.
 *
 * The exponential is the Cephes single-precision expf scheme (Moshier): 2^n e^r with n = round(x / ln 2), r reduced in
 * two parts, e^r a degree-6 polynomial; error about 1 ulp, infinity above ln FLT_MAX (from 88.38 on: e^x is within
 * 2x of FLT_MAX there), 0 below ln FLT_MIN (no subnormals), NaN for NaN. Plain arithmetic and selects, so that the
 * loops vectorise without -ffast-math.
 */
#include <stdint.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(YAS_CLONES)
#define YAS_TARGETS __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define YAS_TARGETS
#endif

#define LANES 16

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
            for (int64_t l = 0; l < len; l++) {
                const float v = xp[l];
                yp[l] = v * (d * yas_sigmoid(bd * v) + p2);
            }
        }
}

/* One plane of ACON-C's backward; write (whether gx is written) is a constant at each call, so that both copies
 * vectorise. */
static inline __attribute__((always_inline)) void acon_backward_plane(const float *restrict xp,
                                                                      const float *restrict gp, float *restrict gxp,
                                                                      const float *c, float *sp, int64_t len,
                                                                      const int write) {
    const float bd = c[0], d = c[1], p2 = c[2];
    float a0[LANES] = {0}, a1[LANES] = {0}, a2[LANES] = {0};
    int64_t l = 0;
    for (; l + LANES <= len; l += LANES)
        for (int k = 0; k < LANES; k++) {
            const float xv = xp[l + k], gv = gp[l + k];
            const float v = bd * xv, s = yas_sigmoid(v), sd = s - s * s, q = s + v * sd, gxv = gv * xv;
            a0[k] += gxv;
            a1[k] += gxv * q;
            a2[k] += gxv * xv * sd;
            if (write) gxp[l + k] = gv * (d * q + p2);
        }
    for (int k = 0; l < len; l++, k++) {
        const float xv = xp[l], gv = gp[l];
        const float v = bd * xv, s = yas_sigmoid(v), sd = s - s * s, q = s + v * sd, gxv = gv * xv;
        a0[k] += gxv;
        a1[k] += gxv * q;
        a2[k] += gxv * xv * sd;
        if (write) gxp[l] = gv * (d * q + p2);
    }
    double t0 = 0, t1 = 0, t2 = 0;
    for (int k = 0; k < LANES; k++) {
        t0 += a0[k];
        t1 += a1[k];
        t2 += a2[k];
    }
    sp[0] = (float)t0;
    sp[1] = (float)t1;
    sp[2] = (float)t2;
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
            float *sp = sums + i * ss0 + j * ss1;
            if (gx)
                acon_backward_plane(xp, gp, gx + i * gxs0 + j * gxs1, c, sp, len, 1);
            else
                acon_backward_plane(xp, gp, 0, c, sp, len, 0);
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
                const float v = xp[l], t0 = a0 * v + b0, t1 = a1 * v + b1;
                yp[l] = t1 > t0 ? t1 : t0;
            }
        }
}

/* One plane of two-piece DY-ReLU's backward (write as in acon_backward_plane). */
static inline __attribute__((always_inline)) void dyrelu2_backward_plane(const float *restrict xp,
                                                                         const float *restrict gp,
                                                                         float *restrict gxp, const float *c,
                                                                         float *sp, int64_t len, const int write) {
    const float a0 = c[0], da = c[2], db = c[3]; /* c[1] = b0: not needed */
    float s0[LANES] = {0}, s1[LANES] = {0}, s2[LANES] = {0}, s3[LANES] = {0};
    int64_t l = 0;
    for (; l + LANES <= len; l += LANES)
        for (int k = 0; k < LANES; k++) {
            const float xv = xp[l + k], gv = gp[l + k];
            const float gm = da * xv + db > 0.0f ? gv : 0.0f;
            s0[k] += gv * xv;
            s1[k] += gm * xv;
            s2[k] += gv;
            s3[k] += gm;
            if (write) gxp[l + k] = a0 * gv + da * gm;
        }
    for (int k = 0; l < len; l++, k++) {
        const float xv = xp[l], gv = gp[l];
        const float gm = da * xv + db > 0.0f ? gv : 0.0f;
        s0[k] += gv * xv;
        s1[k] += gm * xv;
        s2[k] += gv;
        s3[k] += gm;
        if (write) gxp[l] = a0 * gv + da * gm;
    }
    double t0 = 0, t1 = 0, t2 = 0, t3 = 0;
    for (int k = 0; k < LANES; k++) {
        t0 += s0[k];
        t1 += s1[k];
        t2 += s2[k];
        t3 += s3[k];
    }
    sp[0] = (float)t0;
    sp[1] = (float)t1;
    sp[2] = (float)t2;
    sp[3] = (float)t3;
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
            float *sp = sums + i * ss0 + j * ss1;
            if (gx)
                dyrelu2_backward_plane(xp, gp, gx + i * gxs0 + j * gxs1, c, sp, len, 1);
            else
                dyrelu2_backward_plane(xp, gp, 0, c, sp, len, 0);
        }
}
