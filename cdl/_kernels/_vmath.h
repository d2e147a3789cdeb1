/* Vectorisable float32 transcendental functions.
 *
 * Each function is branch-free straight-line arithmetic (range reduction
 * through the float's bits, a polynomial, selects for the edges) and calls
 * no libm function, so that GCC vectorises a loop that calls it. Accuracy,
 * checked against correctly rounded mpmath values in
 * tests/kernels/test_vmath.py over a strided sweep of every float32 bit
 * pattern and the edges (NaN, +-inf, +-0, denormals, the overflow and
 * underflow thresholds):
 *
 *   cdl_expf, cdl_expm1f, cdl_logf, cdl_log1pf   <= 2 ulp
 *   cdl_exp_negf, cdl_expm1_negf (x <= 0)        <= 2 ulp
 *   cdl_tanhf, cdl_sigmoidf, cdl_erff            <= 3 ulp
 *   cdl_phif (x >= -1.4)                         <= 12 ulp
 *   cdl_phif (-4 sqrt 2 <= x < -1.4)             <= 64 ulp (2^-18 relative)
 *   cdl_phif (x < -4 sqrt 2, Phi < 8e-9)         35% relative
 *
 * NaN gives NaN, and the edges are exact in kind: exp overflows to +inf
 * above 88.72284, underflows gradually through the denormals to +0 below
 * -103.97; log(0) = -inf, log(x < 0) = NaN; tanh and erf reach +-1 exactly
 * and keep the sign of -0; the sigmoid stays in [0, 1].
 *
 * Where FMA is available (the AVX2 and AVX-512 paths of the dispatched
 * loops) the compiler may contract a multiply and an add, so the last bit
 * of a result can differ between paths; every path keeps the bound.
 *
 * The float64 kernels keep libm (see _math.pxd).
 */
#ifndef CDL_VMATH_H
#define CDL_VMATH_H

#include <stdint.h>

#if defined(__GNUC__)
#define CDL_VINLINE static inline __attribute__((always_inline, unused))
#else
#define CDL_VINLINE static inline
#endif

CDL_VINLINE uint32_t cdl_f2u(float x) {
    union { float f; uint32_t u; } v;
    v.f = x;
    return v.u;
}

CDL_VINLINE float cdl_u2f(uint32_t x) {
    union { float f; uint32_t u; } v;
    v.u = x;
    return v.f;
}

/* c ? a : b for c in {0, 1}, as a bit mask. A float select written with
 * ?: lets GCC sink the arithmetic of either operand into a branch, and
 * under -ftrapping-math (the default) it then cannot if-convert the loop
 * back: the loop stays scalar and branchy. Masks keep it straight-line. */
CDL_VINLINE float cdl_self(int c, float a, float b) {
    uint32_t m = (uint32_t)0 - (uint32_t)c;
    return cdl_u2f((cdl_f2u(a) & m) | (cdl_f2u(b) & ~m));
}

/* 2^n for -126 <= n <= 127, built from the exponent field. */
CDL_VINLINE float cdl_pow2i(int32_t n) {
    return cdl_u2f((uint32_t)(n + 127) << 23);
}

/* exp(x). Range reduction x = n ln2 + r, |r| <= ln2 / 2 (n rounded with the
 * 1.5 * 2^23 shifter, read back from the sum's low bits), Cephes' degree-7
 * polynomial for exp(r), and 2^n applied in two halves so that n up to 128
 * overflows to inf and n down to -150 rounds once into the denormals. */
CDL_VINLINE float cdl_expf(float x) {
    const float shifter = 12582912.0f;   /* 1.5 * 2^23 */
    /* The clamps keep NaN (both tests fail) and bound n to [-150, 129]. */
    x = cdl_self(x > 89.0f, 89.0f, x);
    x = cdl_self(x < -104.0f, -104.0f, x);
    float t = x * 1.44269504088896341f + shifter;
    int32_t n = (int32_t)(cdl_f2u(t) - cdl_f2u(shifter));
    float fn = t - shifter;
    /* ln2 split so that fn * 0.693359375 is exact. */
    float r = x - fn * 0.693359375f;
    r = r + fn * 2.12194440e-4f;
    float r2 = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r2 + r + 1.0f;
    int32_t n1 = n >> 1;
    return (p * cdl_pow2i(n1)) * cdl_pow2i(n - n1);
}

/* exp(x) for x <= 0 (or NaN; a positive x gives garbage): what every
 * activation needs (exp(-|x|), exp(x - max), exp(-x^2 / 2)). The same
 * reduction and polynomial as cdl_expf, but 2^n (-150 <= n <= 0) is applied
 * as 2^(n + 64), a normal number built straight from the shifted sum's low
 * bits, times 2^-64: the first product is exact, the second rounds once
 * into the denormals, so the result keeps cdl_expf's bound down to the
 * underflow to +0 below -103.97 in about half its operations. */
CDL_VINLINE float cdl_exp_negf(float x) {
    const float shifter = 12582912.0f;   /* 1.5 * 2^23 */
    x = cdl_self(x < -104.0f, -104.0f, x);   /* keeps NaN; n >= -150 */
    float t = x * 1.44269504088896341f + shifter;
    float fn = t - shifter;
    float r = x - fn * 0.693359375f;
    r = r + fn * 2.12194440e-4f;
    float r2 = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r2 + r + 1.0f;
    /* The low bits of t hold n (two's complement), and shifter's bits vanish
     * under the shift: (bits(t) << 23) + ((127 + 64) << 23) is 2^(n + 64). */
    float s = cdl_u2f((cdl_f2u(t) << 23) + (191u << 23));
    return (p * s) * 5.42101086242752217e-20f;   /* 2^-64 */
}

/* exp(x) - 1, without cancellation near 0: with x = n ln2 + r,
 * expm1(x) = 2^n expm1(r) + (2^n - 1), expm1(r) from its Taylor series to
 * r^7 (truncation < 2e-8 relative on |r| <= ln2 / 2). Above 16 the
 * "- 1" no longer matters and 2^n may overflow: (1 + expm1(r)) 2^n - 1. */
CDL_VINLINE float cdl_expm1f(float x) {
    const float shifter = 12582912.0f;
    float xc = cdl_self(x > 89.0f, 89.0f, x);
    xc = cdl_self(xc < -20.0f, -20.0f, xc);   /* expm1 rounds to -1 from -17.4 */
    float t = xc * 1.44269504088896341f + shifter;
    int32_t n = (int32_t)(cdl_f2u(t) - cdl_f2u(shifter));
    float fn = t - shifter;
    float r = xc - fn * 0.693359375f;
    r = r + fn * 2.12194440e-4f;
    float q = 1.98412698e-4f;          /* 1/5040 */
    q = q * r + 1.38888889e-3f;        /* 1/720 */
    q = q * r + 8.33333333e-3f;        /* 1/120 */
    q = q * r + 4.16666667e-2f;        /* 1/24 */
    q = q * r + 1.66666667e-1f;        /* 1/6 */
    q = q * r + 0.5f;
    float pm1 = r + (r * r) * q;
    int32_t n1 = n >> 1;
    float s1 = cdl_pow2i(n1), s2 = cdl_pow2i(n - n1);
    float s = s1 * s2;
    float small = s * pm1 + (s - 1.0f);
    float big = ((pm1 + 1.0f) * s1) * s2 - 1.0f;
    float res = cdl_self(xc > 16.0f, big, small);
    /* -0 stays -0 (the polynomial gives +0). */
    return cdl_self(x == 0.0f, x, res);
}

/* expm1(x) for x <= 0 (or NaN; a positive x gives garbage), the negative
 * side of ELU and SELU: cdl_expm1f's small-argument form alone, 2^n
 * (-29 <= n <= 0) built straight from the shifted sum's bits. */
CDL_VINLINE float cdl_expm1_negf(float x) {
    const float shifter = 12582912.0f;
    float xc = cdl_self(x < -20.0f, -20.0f, x);   /* keeps NaN */
    float t = xc * 1.44269504088896341f + shifter;
    float fn = t - shifter;
    float r = xc - fn * 0.693359375f;
    r = r + fn * 2.12194440e-4f;
    float q = 1.98412698e-4f;
    q = q * r + 1.38888889e-3f;
    q = q * r + 8.33333333e-3f;
    q = q * r + 4.16666667e-2f;
    q = q * r + 1.66666667e-1f;
    q = q * r + 0.5f;
    float pm1 = r + (r * r) * q;
    float s = cdl_u2f((cdl_f2u(t) << 23) + (127u << 23));
    float res = s * pm1 + (s - 1.0f);
    return cdl_self(x == 0.0f, x, res);   /* -0 stays -0 */
}

/* log(x): x = m 2^e with m in [sqrt(1/2), sqrt(2)), Cephes' polynomial for
 * log(m), e ln2 added in two parts. Denormals are scaled by 2^25 first. */
CDL_VINLINE float cdl_logf(float x) {
    int tiny = x < 1.17549435e-38f;
    float xs = cdl_self(tiny, x * 33554432.0f, x);
    uint32_t u = cdl_f2u(xs);
    int32_t e = (int32_t)(u >> 23) - 126;   /* x = m 2^e, m in [0.5, 1) */
    e = e - 25 * tiny;
    float m = cdl_u2f((u & 0x007fffffu) | 0x3f000000u);
    int lt = m < 0.707106781186547524f;
    e = e - lt;
    float m2 = m + m;
    float f = cdl_self(lt, m2, m) - 1.0f;
    float z = f * f;
    float y = 7.0376836292e-2f;
    y = y * f - 1.1514610310e-1f;
    y = y * f + 1.1676998740e-1f;
    y = y * f - 1.2420140846e-1f;
    y = y * f + 1.4249322787e-1f;
    y = y * f - 1.6668057665e-1f;
    y = y * f + 2.0000714765e-1f;
    y = y * f - 2.4999993993e-1f;
    y = y * f + 3.3333331174e-1f;
    y = y * f * z;
    float fe = (float)e;
    y = y - 2.12194440e-4f * fe;
    y = y - 0.5f * z;
    float r = f + y;
    r = r + 0.693359375f * fe;
    r = cdl_self(x < 0.0f, cdl_u2f(0x7fc00000u), r);
    r = cdl_self(x == 0.0f, cdl_u2f(0xff800000u), r);
    r = cdl_self(x == cdl_u2f(0x7f800000u), x, r);
    return cdl_self(x != x, x, r);
}

/* log(1 + x): log(u) for u = 1 + x, corrected by the rounding of u,
 * ((u - 1) - x) / u (Goldberg), so that tiny x gives x. */
CDL_VINLINE float cdl_log1pf(float x) {
    float u = 1.0f + x;
    float r = cdl_logf(u) - ((u - 1.0f) - x) / u;
    r = cdl_self(u == 0.0f, cdl_u2f(0xff800000u), r);   /* x = -1 */
    r = cdl_self(x == cdl_u2f(0x7f800000u), x, r);
    r = cdl_self(x == 0.0f, x, r);                      /* keeps -0 */
    return cdl_self(x != x, x, r);
}

/* 1 / (1 + exp(-x)), from one t = exp(-|x|) <= 1 (no overflow): with
 * u = t for x >= 0 and u = 1 / t below (that is, exp(-x)), 1 / (1 + u).
 * Each step is monotone and rounding preserves order, so the result is
 * monotone in x, which e / (1 + e) for x < 0 is not. Below -87, where 1 / t
 * nears overflow and 1 + exp(x) rounds to 1, t itself, so that the denormal
 * tail keeps its accuracy (neighbouring inputs there differ by ~100 ulp of
 * output, so the switch cannot reverse their order). */
CDL_VINLINE float cdl_sigmoidf(float x) {
    float t = cdl_exp_negf(-cdl_u2f(cdl_f2u(x) & 0x7fffffffu));
    float u = cdl_self(x >= 0.0f, t, 1.0f / t);
    float s = 1.0f / (1.0f + u);
    return cdl_self(x < -87.0f, t, s);
}

/* log(1 + t) for t in [0, 1] (or NaN), without a division: for
 * t > sqrt(2) - 1, log 2 + log1p((t - 1) / 2), where t - 1 is exact; else
 * log1p(t). Either argument f lies in [-0.293, 0.415] and is exact, and
 * log1p(f) = f - f^2 / 2 + f^3 P(f) with Cephes' log polynomial. */
CDL_VINLINE float cdl_log1p_unitf(float t) {
    int hi = t > 0.41421356f;
    float f = cdl_self(hi, (t - 1.0f) * 0.5f, t);
    float fe = cdl_self(hi, 1.0f, 0.0f);
    float z = f * f;
    float y = 7.0376836292e-2f;
    y = y * f - 1.1514610310e-1f;
    y = y * f + 1.1676998740e-1f;
    y = y * f - 1.2420140846e-1f;
    y = y * f + 1.4249322787e-1f;
    y = y * f - 1.6668057665e-1f;
    y = y * f + 2.0000714765e-1f;
    y = y * f - 2.4999993993e-1f;
    y = y * f + 3.3333331174e-1f;
    y = y * f * z;
    y = y - 2.12194440e-4f * fe;
    y = y - 0.5f * z;
    return (f + y) + 0.693359375f * fe;
}

/* log(1 + exp(x)) (softplus): max(x, 0) + log1p(exp(-|x|)). */
CDL_VINLINE float cdl_log1p_expf(float x) {
    float a = cdl_u2f(cdl_f2u(x) & 0x7fffffffu);
    float m = cdl_self(x > 0.0f, x, 0.0f);
    float r = m + cdl_log1p_unitf(cdl_exp_negf(-a));
    return cdl_self(x != x, x, r);
}

/* tanh(x): on |x| < 0.625, x + x^3 P(x^2) (degree-5 minimax, 5e-9
 * relative); above, (1 - e) / (1 + e) with e = exp(-2|x|) <= 0.29: one
 * exp of a non-positive argument and one division, reaching 1 exactly once
 * e drops below half an ulp of 1. The sign is copied from x (so -0 gives
 * -0). */
CDL_VINLINE float cdl_tanhf(float x) {
    uint32_t sign = cdl_f2u(x) & 0x80000000u;
    float a = cdl_u2f(cdl_f2u(x) & 0x7fffffffu);
    float z = a * a;
    float p = 2.2947276e-3f;
    p = p * z - 8.3458945e-3f;
    p = p * z + 2.176959e-2f;
    p = p * z - 5.3959355e-2f;
    p = p * z + 1.3333304e-1f;
    p = p * z - 3.3333334e-1f;
    float small = a + a * z * p;
    float e = cdl_exp_negf(-(a + a));
    float big = (1.0f - e) / (1.0f + e);
    float t = cdl_self(a < 0.625f, small, big);
    return cdl_u2f(cdl_f2u(t) | sign);
}

/* The two pieces of erf for a = |x|: x P(x^2) (degree-6 minimax, 1.2e-9
 * relative on |x| < 1), and erfc(a) = exp(S(a) - a^2) on [1, 4], with
 * S(a) = log(erfc(a)) + a^2 a degree-9 polynomial in a - 2.5. Beyond 4,
 * where erf rounds to 1, S continues along its tangent at 4 (slope
 * -0.2346), which keeps erfc decreasing and within 35% of itself down to
 * its underflow (what GELU's negative tail sees). */
CDL_VINLINE float cdl_erf_smallf(float x, float z) {
    float p = 7.857913e-05f;
    p = p * z - 8.011423e-04f;
    p = p * z + 5.188468e-03f;
    p = p * z - 2.6853886e-02f;
    p = p * z + 1.1283587e-01f;
    p = p * z - 3.7612626e-01f;
    p = p * z + 1.1283791e+00f;
    return x * p;
}

CDL_VINLINE float cdl_erfc_bigf(float a) {
    float ac = cdl_self(a > 4.0f, 4.0f, a);   /* keeps NaN */
    float v = ac - 2.5f;
    float s = -3.3170127977655284e-08f;
    s = s * v + 1.6212256923608948e-06f;
    s = s * v - 1.3140975170244928e-05f;
    s = s * v + 7.736220140941441e-05f;
    s = s * v - 4.204298893455416e-04f;
    s = s * v + 2.165205543860793e-03f;
    s = s * v - 1.085833739489317e-02f;
    s = s * v + 5.6106340140104294e-02f;
    s = s * v - 3.526807129383087e-01f;
    s = s * v - 1.556815266609192e+00f;
    s = s - 0.2346f * (a - ac);
    return cdl_exp_negf(s - a * a);
}

/* erf(x): the small piece on |x| < 1, 1 - erfc(|x|) from 1 on (from 4 on
 * erf rounds to 1). Sign copied from x. */
CDL_VINLINE float cdl_erff(float x) {
    uint32_t sign = cdl_f2u(x) & 0x80000000u;
    float a = cdl_u2f(cdl_f2u(x) & 0x7fffffffu);
    float small = cdl_erf_smallf(a, a * a);
    float big = 1.0f - cdl_erfc_bigf(a);
    float t = cdl_self(a < 1.0f, small, big);
    return cdl_u2f(cdl_f2u(t) | sign);
}

/* Phi(x) = (1 + erf(x / sqrt 2)) / 2, the normal distribution function (the
 * GELU's gate). With u = x / sqrt 2: (1 + erf_small(u)) / 2 on |u| < 1;
 * beyond, 1 - erfc(|u|) / 2 for x > 0 and erfc(|u|) / 2 for x < 0, so that
 * the negative tail keeps its relative accuracy instead of cancelling in
 * 1 + erf (relative error <= 2^-18 there, from the rounding of u^2; on
 * (-1.4, 0) the small piece cancels a little, to <= 12 ulp; see
 * tests/kernels/test_vmath.py). Below -4 sqrt 2 (where float32's 1 + erf
 * is already 0) the tail stays within 35% of Phi, down to its underflow. */
CDL_VINLINE float cdl_phif(float x) {
    float u = x * 0.70710678118654752440f;
    float a = cdl_u2f(cdl_f2u(u) & 0x7fffffffu);
    float small = 0.5f + 0.5f * cdl_erf_smallf(u, u * u);
    float h = 0.5f * cdl_erfc_bigf(a);
    float big = cdl_self(x > 0.0f, 1.0f - h, h);
    float r = cdl_self(a < 1.0f, small, big);
    return cdl_self(x != x, x, r);
}

#endif /* CDL_VMATH_H */
