/* Element functions of the activations and their derivatives, for one
 * floating type. Included by _vact.h once per type, with CDL_T (the type),
 * CDL_N(name) (the name with the type's suffix), CDL_SEL (a branch-free
 * select), the math functions CDL_EXP_NEG and CDL_EXPM1_NEG (exp and expm1,
 * called with x <= 0 only), CDL_TANH, CDL_PHI (the normal distribution
 * function), CDL_SIGMOID, CDL_LOG1P_EXP, CDL_ABS, and CDL_C(v) (a constant of the
 * type: a bare literal is a double and would promote float arithmetic).
 *
 * Forward: f(x, p, q); backward: f(s, d, p, q) with s the saved input or
 * output (see backward_needs_input in activations.pyx.tp) and d the
 * upstream gradient. p is the slope of leaky ReLU, the alpha of ELU and
 * the beta of softplus, q the threshold of softplus. Conventions at the
 * kinks and for NaN follow PyTorch, as documented in activations.pyx.tp.
 */

CDL_VINLINE CDL_T CDL_N(relu_f)(CDL_T x, CDL_T p, CDL_T q) {
    (void)p; (void)q;
    return CDL_SEL(x <= CDL_C(0.0), CDL_C(0.0), x);    /* NaN stays NaN */
}
CDL_VINLINE CDL_T CDL_N(relu_b)(CDL_T y, CDL_T d, CDL_T p, CDL_T q) {
    (void)p; (void)q;
    return CDL_SEL(y <= CDL_C(0.0), CDL_C(0.0), d);
}
CDL_VINLINE CDL_T CDL_N(leaky_relu_f)(CDL_T x, CDL_T p, CDL_T q) {
    (void)q;
    return CDL_SEL(x > CDL_C(0.0), x, x * p);
}
CDL_VINLINE CDL_T CDL_N(leaky_relu_b)(CDL_T x, CDL_T d, CDL_T p, CDL_T q) {
    (void)q;
    return CDL_SEL(x > CDL_C(0.0), d, d * p);
}
CDL_VINLINE CDL_T CDL_N(sigmoid_f)(CDL_T x, CDL_T p, CDL_T q) {
    (void)p; (void)q;
    return CDL_SIGMOID(x);
}
CDL_VINLINE CDL_T CDL_N(sigmoid_b)(CDL_T y, CDL_T d, CDL_T p, CDL_T q) {
    (void)p; (void)q;
    return d * y * (CDL_C(1.0) - y);
}
CDL_VINLINE CDL_T CDL_N(tanh_f)(CDL_T x, CDL_T p, CDL_T q) {
    (void)p; (void)q;
    return CDL_TANH(x);
}
CDL_VINLINE CDL_T CDL_N(tanh_b)(CDL_T y, CDL_T d, CDL_T p, CDL_T q) {
    (void)p; (void)q;
    return d * (CDL_C(1.0) - y * y);
}
/* x Phi(x) = x (1 + erf(x / sqrt 2)) / 2 */
CDL_VINLINE CDL_T CDL_N(gelu_f)(CDL_T x, CDL_T p, CDL_T q) {
    (void)p; (void)q;
    return x * CDL_PHI(x);
}
/* Phi(x) + x phi(x) */
CDL_VINLINE CDL_T CDL_N(gelu_b)(CDL_T x, CDL_T d, CDL_T p, CDL_T q) {
    (void)p; (void)q;
    CDL_T pdf = CDL_C(0.39894228040143267794) * CDL_EXP_NEG(CDL_C(-0.5) * (x * x));
    return d * (CDL_PHI(x) + x * pdf);
}
CDL_VINLINE CDL_T CDL_N(elu_f)(CDL_T x, CDL_T p, CDL_T q) {
    (void)q;
    return CDL_SEL(x > CDL_C(0.0), x, p * CDL_EXPM1_NEG(CDL_NONPOS(x)));
}
CDL_VINLINE CDL_T CDL_N(elu_b)(CDL_T x, CDL_T d, CDL_T p, CDL_T q) {
    (void)q;
    return CDL_SEL(x > CDL_C(0.0), d, d * p * CDL_EXP_NEG(CDL_NONPOS(x)));
}
CDL_VINLINE CDL_T CDL_N(selu_f)(CDL_T x, CDL_T p, CDL_T q) {
    (void)p; (void)q;
    return CDL_SEL(x > CDL_C(0.0), x * CDL_C(CDL_SELU_SCALE),
                   CDL_EXPM1_NEG(CDL_NONPOS(x)) * CDL_C(CDL_SELU_ALPHA_SCALE));
}
CDL_VINLINE CDL_T CDL_N(selu_b)(CDL_T x, CDL_T d, CDL_T p, CDL_T q) {
    (void)p; (void)q;
    return CDL_SEL(x > CDL_C(0.0), d * CDL_C(CDL_SELU_SCALE),
                   d * CDL_C(CDL_SELU_ALPHA_SCALE) * CDL_EXP_NEG(CDL_NONPOS(x)));
}
/* x sigmoid(x), the sigmoid from exp(-|x|), which cannot overflow. */
CDL_VINLINE CDL_T CDL_N(silu_f)(CDL_T x, CDL_T p, CDL_T q) {
    (void)p; (void)q;
    CDL_T e = CDL_EXP_NEG(-CDL_ABS(x));
    CDL_T s = CDL_SEL(x >= CDL_C(0.0), CDL_C(1.0), e) / (CDL_C(1.0) + e);
    return x * s;
}
/* s (1 + x (1 - s)), with 1 - s computed directly. */
CDL_VINLINE CDL_T CDL_N(silu_b)(CDL_T x, CDL_T d, CDL_T p, CDL_T q) {
    (void)p; (void)q;
    CDL_T e = CDL_EXP_NEG(-CDL_ABS(x));
    CDL_T r = CDL_C(1.0) / (CDL_C(1.0) + e);
    CDL_T s = CDL_SEL(x >= CDL_C(0.0), CDL_C(1.0), e) * r;
    CDL_T sc = CDL_SEL(x >= CDL_C(0.0), e, CDL_C(1.0)) * r;
    return d * (s * (CDL_C(1.0) + x * sc));
}
/* x tanh(softplus(x)); with e = exp(-|x|), tanh(log(1 + exp(x))) is
 * e (e + 2) / (e (e + 2) + 2) for x <= 0 and (1 + 2e) / (1 + 2e + 2e^2)
 * for x > 0: no overflow, no cancellation. */
CDL_VINLINE CDL_T CDL_N(mish_f)(CDL_T x, CDL_T p, CDL_T q) {
    (void)p; (void)q;
    CDL_T e = CDL_EXP_NEG(-CDL_ABS(x));
    int pos = x > CDL_C(0.0);
    CDL_T num = CDL_SEL(pos, CDL_C(1.0) + CDL_C(2.0) * e, e * (e + CDL_C(2.0)));
    CDL_T den = num + CDL_SEL(pos, CDL_C(2.0) * e * e, CDL_C(2.0));
    return x * (num / den);
}
/* t + x (1 - t^2) sigmoid(x), and (1 - t^2) sigmoid(x) = 4 (1 + e) g / den^2,
 * g = e^2 (x > 0) or e. */
CDL_VINLINE CDL_T CDL_N(mish_b)(CDL_T x, CDL_T d, CDL_T p, CDL_T q) {
    (void)p; (void)q;
    CDL_T e = CDL_EXP_NEG(-CDL_ABS(x));
    int pos = x > CDL_C(0.0);
    CDL_T num = CDL_SEL(pos, CDL_C(1.0) + CDL_C(2.0) * e, e * (e + CDL_C(2.0)));
    CDL_T den = num + CDL_SEL(pos, CDL_C(2.0) * e * e, CDL_C(2.0));
    CDL_T g = CDL_SEL(pos, e * e, e);
    CDL_T r = CDL_C(1.0) / den;
    return d * (num * r + x * (CDL_C(4.0) * (CDL_C(1.0) + e) * g * (r * r)));
}
/* log(1 + exp(p x)) / p, or x where p x > q (PyTorch). */
CDL_VINLINE CDL_T CDL_N(softplus_f)(CDL_T x, CDL_T p, CDL_T q) {
    CDL_T z = x * p;
    CDL_T sp = CDL_LOG1P_EXP(z) * (CDL_C(1.0) / p);    /* 1 / p leaves the loop */
    return CDL_SEL(z > q, x, sp);
}
/* d sigmoid(p x), or d where p x > q. */
CDL_VINLINE CDL_T CDL_N(softplus_b)(CDL_T x, CDL_T d, CDL_T p, CDL_T q) {
    CDL_T z = x * p;
    CDL_T e = CDL_EXP_NEG(-CDL_ABS(z));
    CDL_T s = CDL_SEL(z >= CDL_C(0.0), CDL_C(1.0), e) / (CDL_C(1.0) + e);
    return CDL_SEL(z > q, d, d * s);
}
CDL_VINLINE CDL_T CDL_N(softsign_f)(CDL_T x, CDL_T p, CDL_T q) {
    (void)p; (void)q;
    return x / (CDL_C(1.0) + CDL_ABS(x));
}
CDL_VINLINE CDL_T CDL_N(softsign_b)(CDL_T x, CDL_T d, CDL_T p, CDL_T q) {
    (void)p; (void)q;
    CDL_T r = CDL_C(1.0) / (CDL_C(1.0) + CDL_ABS(x));
    return d * (r * r);
}
/* min(max(x + 3, 0), 6) / 6, clamped after the division; NaN stays NaN. */
CDL_VINLINE CDL_T CDL_N(hard_sigmoid_f)(CDL_T x, CDL_T p, CDL_T q) {
    (void)p; (void)q;
    CDL_T c = (x + CDL_C(3.0)) / CDL_C(6.0);
    c = CDL_SEL(c < CDL_C(0.0), CDL_C(0.0), c);
    return CDL_SEL(c > CDL_C(1.0), CDL_C(1.0), c);
}
/* 1/6 strictly inside (-3, 3), else 0 (NaN too); the slope multiplies d,
 * so a NaN upstream gradient stays NaN. */
CDL_VINLINE CDL_T CDL_N(hard_sigmoid_b)(CDL_T x, CDL_T d, CDL_T p, CDL_T q) {
    (void)p; (void)q;
    CDL_T a = CDL_SEL(CDL_ABS(x) < CDL_C(3.0), CDL_C(1.0) / CDL_C(6.0), CDL_C(0.0));
    return d * a;
}
CDL_VINLINE CDL_T CDL_N(hard_swish_f)(CDL_T x, CDL_T p, CDL_T q) {
    (void)p; (void)q;
    CDL_T c = x + CDL_C(3.0);
    c = CDL_SEL(c < CDL_C(0.0), CDL_C(0.0), c);
    c = CDL_SEL(c > CDL_C(6.0), CDL_C(6.0), c);
    return x * c / CDL_C(6.0);
}
/* 0 up to -3, x / 3 + 1/2 on (-3, 3), 1 from 3 on and for NaN: x is
 * replaced by -3/2 or 3/2 outside (-3, 3), where x / 3 + 1/2 is exactly
 * 0 or 1. */
CDL_VINLINE CDL_T CDL_N(hard_swish_b)(CDL_T x, CDL_T d, CDL_T p, CDL_T q) {
    (void)p; (void)q;
    CDL_T v = CDL_SEL(x < CDL_C(3.0), x, CDL_C(1.5));
    v = CDL_SEL(x <= CDL_C(-3.0), CDL_C(-1.5), v);
    return d * (v / CDL_C(3.0) + CDL_C(0.5));
}
CDL_VINLINE CDL_T CDL_N(relu6_f)(CDL_T x, CDL_T p, CDL_T q) {
    (void)p; (void)q;
    CDL_T v = CDL_SEL(x <= CDL_C(0.0), CDL_C(0.0), x);
    return CDL_SEL(v >= CDL_C(6.0), CDL_C(6.0), v);
}
/* From the output: 1 strictly inside (0, 6), 0 at and beyond the kinks. */
CDL_VINLINE CDL_T CDL_N(relu6_b)(CDL_T y, CDL_T d, CDL_T p, CDL_T q) {
    (void)p; (void)q;
    return CDL_SEL((y <= CDL_C(0.0)) | (y >= CDL_C(6.0)), CDL_C(0.0), d);
}
CDL_VINLINE CDL_T CDL_N(linear_f)(CDL_T x, CDL_T p, CDL_T q) {
    (void)p; (void)q;
    return x;
}
CDL_VINLINE CDL_T CDL_N(linear_b)(CDL_T s, CDL_T d, CDL_T p, CDL_T q) {
    (void)s; (void)p; (void)q;
    return d;
}
/* exp(x - m), a softmax row's numerators. */
CDL_VINLINE CDL_T CDL_N(exp_shift_f)(CDL_T x, CDL_T m, CDL_T q) {
    (void)q;
    return CDL_EXP_NEG(x - m);
}

/* The sum of a[i] b[i] (or of a[i] when b is NULL) in double, in 8
 * interleaved partial sums: vectorised, and in the same order on every path
 * and for any thread count. */
CDL_VINLINE double CDL_N(dot)(ptrdiff_t n, const CDL_T* a, const CDL_T* b) {
    ptrdiff_t i, j;
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, total;
    if (b != NULL) {
        for (i = 0; i + 8 <= n; i += 8)
            for (j = 0; j < 8; j++) acc[j] += (double)a[i + j] * (double)b[i + j];
    } else {
        for (i = 0; i + 8 <= n; i += 8)
            for (j = 0; j < 8; j++) acc[j] += (double)a[i + j];
    }
    total = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) total += (double)a[i] * (b != NULL ? (double)b[i] : 1.0);
    return total;
}

/* Y *= s, computed in double (a softmax row's normalisation). */
CDL_VINLINE void CDL_N(scale_rows)(ptrdiff_t n, double s, CDL_T* Y) {
    ptrdiff_t i;
    for (i = 0; i < n; i++) Y[i] = (CDL_T)((double)Y[i] * s);
}
