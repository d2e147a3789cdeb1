/* Elementwise activation loops, compiled for three instruction sets and
 * chosen at run time.
 *
 * Wheels are built for baseline x86-64 (SSE2). Each loop here is compiled
 * three times: for that baseline, for AVX2 with FMA, and for AVX-512; the
 * first call reads the CPU's features (and the environment variable
 * CDL_SIMD, which may lower the choice to "avx2" or "default", for tests
 * and comparisons) and every later call takes the same path. Other
 * compilers and architectures get the baseline loop alone.
 *
 * The element functions (_vact_elem.h) are branch-free, so each loop
 * vectorises at the width of its instruction set; float32 uses the
 * approximations of _vmath.h, float64 libm (whose calls keep those loops
 * scalar where a transcendental function is involved).
 */
#ifndef CDL_VACT_H
#define CDL_VACT_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "_vmath.h"

/* Activation codes: the values of the Activation enum in activations.pxd
 * (the module checks that they agree when it loads). */
#define CDL_ACT_LINEAR 0
#define CDL_ACT_RELU 1
#define CDL_ACT_LEAKY_RELU 2
#define CDL_ACT_SIGMOID 3
#define CDL_ACT_TANH 4
#define CDL_ACT_GELU 5
#define CDL_ACT_ELU 6
#define CDL_ACT_SOFTMAX 7
#define CDL_ACT_SELU 8
#define CDL_ACT_SILU 9
#define CDL_ACT_MISH 10
#define CDL_ACT_SOFTPLUS 11
#define CDL_ACT_SOFTSIGN 12
#define CDL_ACT_HARD_SIGMOID 13
#define CDL_ACT_HARD_SWISH 14
#define CDL_ACT_RELU6 15
#define CDL_ACT_LOG_SOFTMAX 16

#define CDL_SELU_SCALE 1.0507009873554804934193349852946
#define CDL_SELU_ALPHA_SCALE (1.6732632423543772848170429916717 * 1.0507009873554804934193349852946)

/* ---- run-time choice of the instruction set ---------------------------- */

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define CDL_DISPATCH 1
#define CDL_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define CDL_TARGET_AVX512 \
    __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma,prefer-vector-width=512")))
#else
#define CDL_DISPATCH 0
#endif

#define CDL_SIMD_DEFAULT 0
#define CDL_SIMD_AVX2 1
#define CDL_SIMD_AVX512 2

static int cdl_simd_level_cached = -1;

/* The instruction set the loops use: the best the CPU (and the operating
 * system) supports, lowered by CDL_SIMD if set. */
static int __attribute__((unused)) cdl_simd_level(void) {
    int level = cdl_simd_level_cached;
    if (level >= 0)
        return level;
    level = CDL_SIMD_DEFAULT;
#if CDL_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        level = CDL_SIMD_AVX2;
    if (level == CDL_SIMD_AVX2 && __builtin_cpu_supports("avx512f")
            && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")
            && __builtin_cpu_supports("avx512bw"))
        level = CDL_SIMD_AVX512;
    {
        const char* want = getenv("CDL_SIMD");
        if (want != NULL) {
            if (strcmp(want, "default") == 0 || strcmp(want, "sse2") == 0)
                level = CDL_SIMD_DEFAULT;
            else if (strcmp(want, "avx2") == 0 && level > CDL_SIMD_AVX2)
                level = CDL_SIMD_AVX2;
        }
    }
#endif
    cdl_simd_level_cached = level;
    return level;
}

static __attribute__((unused)) const char* cdl_simd_name(void) {
    switch (cdl_simd_level()) {
        case CDL_SIMD_AVX512: return "avx512f";
        case CDL_SIMD_AVX2: return "avx2";
        default: return "sse2/default";
    }
}

/* ---- element functions, once per type ---------------------------------- */

CDL_VINLINE double cdl_seld(int c, double a, double b) {
    union { double f; uint64_t u; } va, vb, r;
    uint64_t m = (uint64_t)0 - (uint64_t)c;
    va.f = a;
    vb.f = b;
    r.u = (va.u & m) | (vb.u & ~m);
    return r.f;
}

CDL_VINLINE double cdl_sigmoidd(double x) {
    double e = exp(-fabs(x));
    return cdl_seld(x >= 0.0, 1.0, e) / (1.0 + e);
}

CDL_VINLINE double cdl_log1p_expd(double x) {
    return cdl_seld(x > 0.0, x, 0.0) + log1p(exp(-fabs(x)));
}

/* Phi(x) = erfc(-x / sqrt 2) / 2: no cancellation in the negative tail. */
CDL_VINLINE double cdl_phid(double x) {
    return 0.5 * erfc(-x * 0.70710678118654752440);
}

CDL_VINLINE float cdl_absf(float x) {
    return cdl_u2f(cdl_f2u(x) & 0x7fffffffu);
}

#define CDL_T float
#define CDL_N(name) cdl_##name##_f32
#define CDL_SEL cdl_self
#define CDL_C(v) ((float)(v))
#define CDL_EXP_NEG cdl_exp_negf
#define CDL_EXPM1_NEG cdl_expm1_negf
#define CDL_NONPOS(x) cdl_self((x) > 0.0f, 0.0f, (x))
#define CDL_TANH cdl_tanhf
#define CDL_PHI cdl_phif
#define CDL_SIGMOID cdl_sigmoidf
#define CDL_LOG1P_EXP cdl_log1p_expf
#define CDL_ABS cdl_absf
#include "_vact_elem.h"
#undef CDL_T
#undef CDL_N
#undef CDL_SEL
#undef CDL_C
#undef CDL_EXP_NEG
#undef CDL_EXPM1_NEG
#undef CDL_NONPOS
#undef CDL_TANH
#undef CDL_PHI
#undef CDL_SIGMOID
#undef CDL_LOG1P_EXP
#undef CDL_ABS

#define CDL_T double
#define CDL_N(name) cdl_##name##_f64
#define CDL_SEL cdl_seld
#define CDL_C(v) ((double)(v))
#define CDL_EXP_NEG exp
#define CDL_EXPM1_NEG expm1
#define CDL_NONPOS(x) (x)
#define CDL_TANH tanh
#define CDL_PHI cdl_phid
#define CDL_SIGMOID cdl_sigmoidd
#define CDL_LOG1P_EXP cdl_log1p_expd
#define CDL_ABS fabs
#include "_vact_elem.h"
#undef CDL_T
#undef CDL_N
#undef CDL_SEL
#undef CDL_C
#undef CDL_EXP_NEG
#undef CDL_EXPM1_NEG
#undef CDL_NONPOS
#undef CDL_TANH
#undef CDL_PHI
#undef CDL_SIGMOID
#undef CDL_LOG1P_EXP
#undef CDL_ABS

/* ---- loops ------------------------------------------------------------- */

/* One loop body per activation and direction, switched on outside the
 * loop; the switch body is compiled once per instruction set. */
#define CDL_FWD_CASE(CODE, NAME, S) \
    case CODE: for (i = 0; i < n; i++) Y[i] = cdl_##NAME##_f_##S(X[i], p, q); return 1;
#define CDL_BWD_CASE(CODE, NAME, S) \
    case CODE: for (i = 0; i < n; i++) dX[i] = cdl_##NAME##_b_##S(V[i], dY[i], p, q); return 1;

#define CDL_ACT_CASES(CASE, S) \
    CASE(CDL_ACT_LINEAR, linear, S) \
    CASE(CDL_ACT_RELU, relu, S) \
    CASE(CDL_ACT_LEAKY_RELU, leaky_relu, S) \
    CASE(CDL_ACT_SIGMOID, sigmoid, S) \
    CASE(CDL_ACT_TANH, tanh, S) \
    CASE(CDL_ACT_GELU, gelu, S) \
    CASE(CDL_ACT_ELU, elu, S) \
    CASE(CDL_ACT_SELU, selu, S) \
    CASE(CDL_ACT_SILU, silu, S) \
    CASE(CDL_ACT_MISH, mish, S) \
    CASE(CDL_ACT_SOFTPLUS, softplus, S) \
    CASE(CDL_ACT_SOFTSIGN, softsign, S) \
    CASE(CDL_ACT_HARD_SIGMOID, hard_sigmoid, S) \
    CASE(CDL_ACT_HARD_SWISH, hard_swish, S) \
    CASE(CDL_ACT_RELU6, relu6, S)

/* Y = f(X) (forward) and dX = f'(V) dY (backward) on n elements; X may be
 * Y and dY may be dX. Return 0 for a code that is not elementwise. */
#define CDL_DEFINE_LOOPS(T, S, ISA, ATTR) \
    ATTR static int cdl_act_fwd_##S##_##ISA(int act, ptrdiff_t n, T p, T q, \
                                             const T* X, T* Y) { \
        ptrdiff_t i; \
        switch (act) { CDL_ACT_CASES(CDL_FWD_CASE, S) default: return 0; } \
    } \
    ATTR static int cdl_act_bwd_##S##_##ISA(int act, ptrdiff_t n, T p, T q, const T* V, \
                                             const T* dY, T* dX) { \
        ptrdiff_t i; \
        switch (act) { CDL_ACT_CASES(CDL_BWD_CASE, S) default: return 0; } \
    } \
    /* The largest element (NaN only if X[0] is NaN, as in a running \
     * "x > max" scan), from 8 interleaved partial maxima. */ \
    ATTR static T cdl_row_max_##S##_##ISA(ptrdiff_t n, const T* X) { \
        ptrdiff_t i, j; \
        T part[8], m; \
        for (j = 0; j < 8; j++) part[j] = X[0]; \
        for (i = 0; i + 8 <= n; i += 8) \
            for (j = 0; j < 8; j++) part[j] = X[i + j] > part[j] ? X[i + j] : part[j]; \
        m = part[0]; \
        for (j = 1; j < 8; j++) m = part[j] > m ? part[j] : m; \
        for (; i < n; i++) m = X[i] > m ? X[i] : m; \
        return m; \
    } \
    /* exp(X - m) into Y and the sum of Y in double, in 8 interleaved \
     * partial sums: vectorised, and the same order on every path. */ \
    ATTR static double cdl_exp_shift_sum_##S##_##ISA(ptrdiff_t n, T m, const T* X, T* Y) { \
        ptrdiff_t i, j; \
        double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, total; \
        for (i = 0; i < n; i++) Y[i] = cdl_exp_shift_f_##S(X[i], m, (T)0); \
        for (i = 0; i + 8 <= n; i += 8) \
            for (j = 0; j < 8; j++) acc[j] += (double)Y[i + j]; \
        total = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])); \
        for (; i < n; i++) total += (double)Y[i]; \
        return total; \
    }

#if CDL_DISPATCH
#define CDL_DEFINE_ALL(T, S) \
    CDL_DEFINE_LOOPS(T, S, default, ) \
    CDL_DEFINE_LOOPS(T, S, avx2, CDL_TARGET_AVX2) \
    CDL_DEFINE_LOOPS(T, S, avx512, CDL_TARGET_AVX512) \
    static int __attribute__((unused)) cdl_act_fwd_##S(int act, ptrdiff_t n, T p, T q, \
                                                       const T* X, T* Y) { \
        switch (cdl_simd_level()) { \
            case CDL_SIMD_AVX512: return cdl_act_fwd_##S##_avx512(act, n, p, q, X, Y); \
            case CDL_SIMD_AVX2: return cdl_act_fwd_##S##_avx2(act, n, p, q, X, Y); \
            default: return cdl_act_fwd_##S##_default(act, n, p, q, X, Y); \
        } \
    } \
    static int __attribute__((unused)) cdl_act_bwd_##S(int act, ptrdiff_t n, T p, T q, \
                                                       const T* V, const T* dY, T* dX) { \
        switch (cdl_simd_level()) { \
            case CDL_SIMD_AVX512: return cdl_act_bwd_##S##_avx512(act, n, p, q, V, dY, dX); \
            case CDL_SIMD_AVX2: return cdl_act_bwd_##S##_avx2(act, n, p, q, V, dY, dX); \
            default: return cdl_act_bwd_##S##_default(act, n, p, q, V, dY, dX); \
        } \
    } \
    static T __attribute__((unused)) cdl_row_max_##S(ptrdiff_t n, const T* X) { \
        switch (cdl_simd_level()) { \
            case CDL_SIMD_AVX512: return cdl_row_max_##S##_avx512(n, X); \
            case CDL_SIMD_AVX2: return cdl_row_max_##S##_avx2(n, X); \
            default: return cdl_row_max_##S##_default(n, X); \
        } \
    } \
    static double __attribute__((unused)) cdl_exp_shift_sum_##S(ptrdiff_t n, T m, \
                                                                 const T* X, T* Y) { \
        switch (cdl_simd_level()) { \
            case CDL_SIMD_AVX512: return cdl_exp_shift_sum_##S##_avx512(n, m, X, Y); \
            case CDL_SIMD_AVX2: return cdl_exp_shift_sum_##S##_avx2(n, m, X, Y); \
            default: return cdl_exp_shift_sum_##S##_default(n, m, X, Y); \
        } \
    }
#else
#define CDL_DEFINE_ALL(T, S) \
    CDL_DEFINE_LOOPS(T, S, default, ) \
    static int cdl_act_fwd_##S(int act, ptrdiff_t n, T p, T q, const T* X, T* Y) { \
        return cdl_act_fwd_##S##_default(act, n, p, q, X, Y); \
    } \
    static int cdl_act_bwd_##S(int act, ptrdiff_t n, T p, T q, const T* V, const T* dY, \
                               T* dX) { \
        return cdl_act_bwd_##S##_default(act, n, p, q, V, dY, dX); \
    } \
    static double cdl_exp_shift_sum_##S(ptrdiff_t n, T m, const T* X, T* Y) { \
        return cdl_exp_shift_sum_##S##_default(n, m, X, Y); \
    } \
    static T cdl_row_max_##S(ptrdiff_t n, const T* X) { \
        return cdl_row_max_##S##_default(n, X); \
    }
#endif

CDL_DEFINE_ALL(float, f32)
CDL_DEFINE_ALL(double, f64)

#endif /* CDL_VACT_H */
