/* The elementwise part of one sample's recurrent step (the gates), forward
 * and backward, compiled for three instruction sets and chosen at run time
 * like the activation loops of _vact.h (whose dispatch this shares).
 *
 * The equations and array layouts are those of recurrent.pyx.tp: xp holds
 * a sample's gate pre-activations (x W + bi) on entry and its activated
 * gates on exit, hq its recurrent projection (h U + bh), and each gate is a
 * block of H values (SimpleRNN 1, LSTM 4: i f g o, GRU 3: r z n). Every
 * function touches one sample's rows, which never overlap, hence restrict.
 * float32 uses the branch-free approximations of _vmath.h, so each loop
 * vectorises; float64 uses libm.
 */
#ifndef CDL_VRNN_H
#define CDL_VRNN_H

#include "_vact.h"

/* SimpleRNN activation codes: the ACT_* enum of recurrent.pyx.tp. */
#define CDL_RNN_TANH 0
#define CDL_RNN_RELU 1
#define CDL_RNN_SIGMOID 2
#define CDL_RNN_LINEAR 3

#define CDL_RNN_LOOPS(T, S, ISA, ATTR, SIG, TANH) \
    /* SimpleRNN: h = act(xp + hq), kept in xp too. */ \
    ATTR static void cdl_rnn_fwd_##S##_##ISA(int act, ptrdiff_t H, T* restrict xp, \
                                              const T* restrict hq, T* restrict h) { \
        ptrdiff_t j; \
        switch (act) { \
            case CDL_RNN_TANH: for (j = 0; j < H; j++) h[j] = TANH(xp[j] + hq[j]); break; \
            case CDL_RNN_RELU: \
                for (j = 0; j < H; j++) { T a = xp[j] + hq[j]; h[j] = a > 0 ? a : (T)0; } \
                break; \
            case CDL_RNN_SIGMOID: for (j = 0; j < H; j++) h[j] = SIG(xp[j] + hq[j]); break; \
            default: for (j = 0; j < H; j++) h[j] = xp[j] + hq[j]; break; \
        } \
        for (j = 0; j < H; j++) xp[j] = h[j]; \
    } \
    /* LSTM: c' = f c + i g, h' = o tanh(c'); tanh(c') into hn. */ \
    ATTR static void cdl_lstm_fwd_##S##_##ISA(ptrdiff_t H, T* restrict xp, \
                                               const T* restrict hq, T* restrict c, \
                                               T* restrict hn, T* restrict h) { \
        ptrdiff_t j; \
        for (j = 0; j < H; j++) { \
            T ig = SIG(xp[j] + hq[j]); \
            T fg = SIG(xp[H + j] + hq[H + j]); \
            T gg = TANH(xp[2 * H + j] + hq[2 * H + j]); \
            T og = SIG(xp[3 * H + j] + hq[3 * H + j]); \
            T cn = fg * c[j] + ig * gg; \
            T tc = TANH(cn); \
            xp[j] = ig; \
            xp[H + j] = fg; \
            xp[2 * H + j] = gg; \
            xp[3 * H + j] = og; \
            c[j] = cn; \
            hn[j] = tc; \
            h[j] = og * tc; \
        } \
    } \
    /* GRU: n = tanh(xp_n + r hq_n), h' = (1 - z) n + z h; hq_n into hn. */ \
    ATTR static void cdl_gru_fwd_##S##_##ISA(ptrdiff_t H, T* restrict xp, \
                                              const T* restrict hq, T* restrict hn, \
                                              T* restrict h) { \
        ptrdiff_t j; \
        for (j = 0; j < H; j++) { \
            T r = SIG(xp[j] + hq[j]); \
            T z = SIG(xp[H + j] + hq[H + j]); \
            T hv = hq[2 * H + j]; \
            T nn = TANH(xp[2 * H + j] + r * hv); \
            xp[j] = r; \
            xp[H + j] = z; \
            xp[2 * H + j] = nn; \
            hn[j] = hv; \
            h[j] = (1 - z) * nn + z * h[j]; \
        } \
    } \
    /* SimpleRNN backward: dx = dh act'(y) (y the saved output g); dh = 0. */ \
    ATTR static void cdl_rnn_bwd_##S##_##ISA(int act, ptrdiff_t H, const T* restrict g, \
                                              T* restrict dh, T* restrict dx) { \
        ptrdiff_t j; \
        switch (act) { \
            case CDL_RNN_TANH: for (j = 0; j < H; j++) dx[j] = dh[j] * (1 - g[j] * g[j]); break; \
            case CDL_RNN_RELU: \
                for (j = 0; j < H; j++) dx[j] = dh[j] * (g[j] > 0 ? (T)1 : (T)0); \
                break; \
            case CDL_RNN_SIGMOID: \
                for (j = 0; j < H; j++) dx[j] = dh[j] * (g[j] * (1 - g[j])); \
                break; \
            default: for (j = 0; j < H; j++) dx[j] = dh[j] * (T)1; break; \
        } \
        for (j = 0; j < H; j++) dh[j] = 0; \
    } \
    /* LSTM backward from the saved gates g, cell state cp entering the \
     * step and tanh(c') tc: the gate gradients dx, dc for the state \
     * entering the step; dh = 0. */ \
    ATTR static void cdl_lstm_bwd_##S##_##ISA(ptrdiff_t H, const T* restrict g, \
                                               const T* restrict cp, const T* restrict tcs, \
                                               T* restrict dh, T* restrict dc, \
                                               T* restrict dx) { \
        ptrdiff_t j; \
        for (j = 0; j < H; j++) { \
            T ig = g[j], fg = g[H + j], gg = g[2 * H + j], og = g[3 * H + j]; \
            T tc = tcs[j], d = dh[j]; \
            T dct = dc[j] + d * og * (1 - tc * tc); \
            dx[j] = dct * gg * ig * (1 - ig); \
            dx[H + j] = dct * cp[j] * fg * (1 - fg); \
            dx[2 * H + j] = dct * ig * (1 - gg * gg); \
            dx[3 * H + j] = d * tc * og * (1 - og); \
            dc[j] = dct * fg; \
            dh[j] = 0; \
        } \
    } \
    /* GRU backward from the saved gates g, state hp entering the step and \
     * hq_n: the gradients dx of the input projections, dhp of the \
     * recurrent ones; dh becomes the part of the entering state's \
     * gradient that bypasses the recurrent product. */ \
    ATTR static void cdl_gru_bwd_##S##_##ISA(ptrdiff_t H, const T* restrict g, \
                                              const T* restrict hp, const T* restrict hv, \
                                              T* restrict dh, T* restrict dx, \
                                              T* restrict dhp) { \
        ptrdiff_t j; \
        for (j = 0; j < H; j++) { \
            T r = g[j], z = g[H + j], nn = g[2 * H + j], d = dh[j]; \
            T da = d * (1 - z) * (1 - nn * nn); \
            T dr = da * hv[j] * r * (1 - r); \
            T dz = d * (hp[j] - nn) * z * (1 - z); \
            dx[j] = dr; \
            dx[H + j] = dz; \
            dx[2 * H + j] = da; \
            dhp[j] = dr; \
            dhp[H + j] = dz; \
            dhp[2 * H + j] = da * r; \
            dh[j] = d * z; \
        } \
    }

#if CDL_DISPATCH
#define CDL_RNN_PICK(S, NAME, ARGS) \
    switch (cdl_simd_level()) { \
        case CDL_SIMD_AVX512: cdl_##NAME##_##S##_avx512 ARGS; return; \
        case CDL_SIMD_AVX2: cdl_##NAME##_##S##_avx2 ARGS; return; \
        default: cdl_##NAME##_##S##_default ARGS; return; \
    }
#define CDL_RNN_ALL_LOOPS(T, S, SIG, TANH) \
    CDL_RNN_LOOPS(T, S, default, , SIG, TANH) \
    CDL_RNN_LOOPS(T, S, avx2, CDL_TARGET_AVX2, SIG, TANH) \
    CDL_RNN_LOOPS(T, S, avx512, CDL_TARGET_AVX512, SIG, TANH)
#else
#define CDL_RNN_PICK(S, NAME, ARGS) cdl_##NAME##_##S##_default ARGS;
#define CDL_RNN_ALL_LOOPS(T, S, SIG, TANH) CDL_RNN_LOOPS(T, S, default, , SIG, TANH)
#endif

#define CDL_RNN_DEFINE(T, S, SIG, TANH) \
    CDL_RNN_ALL_LOOPS(T, S, SIG, TANH) \
    static void __attribute__((unused)) cdl_rnn_fwd_##S(int act, ptrdiff_t H, T* xp, \
                                                        const T* hq, T* h) { \
        CDL_RNN_PICK(S, rnn_fwd, (act, H, xp, hq, h)) \
    } \
    static void __attribute__((unused)) cdl_lstm_fwd_##S(ptrdiff_t H, T* xp, const T* hq, \
                                                         T* c, T* hn, T* h) { \
        CDL_RNN_PICK(S, lstm_fwd, (H, xp, hq, c, hn, h)) \
    } \
    static void __attribute__((unused)) cdl_gru_fwd_##S(ptrdiff_t H, T* xp, const T* hq, \
                                                        T* hn, T* h) { \
        CDL_RNN_PICK(S, gru_fwd, (H, xp, hq, hn, h)) \
    } \
    static void __attribute__((unused)) cdl_rnn_bwd_##S(int act, ptrdiff_t H, const T* g, \
                                                        T* dh, T* dx) { \
        CDL_RNN_PICK(S, rnn_bwd, (act, H, g, dh, dx)) \
    } \
    static void __attribute__((unused)) cdl_lstm_bwd_##S(ptrdiff_t H, const T* g, \
                                                         const T* cp, const T* tcs, T* dh, \
                                                         T* dc, T* dx) { \
        CDL_RNN_PICK(S, lstm_bwd, (H, g, cp, tcs, dh, dc, dx)) \
    } \
    static void __attribute__((unused)) cdl_gru_bwd_##S(ptrdiff_t H, const T* g, \
                                                        const T* hp, const T* hv, T* dh, \
                                                        T* dx, T* dhp) { \
        CDL_RNN_PICK(S, gru_bwd, (H, g, hp, hv, dh, dx, dhp)) \
    }

CDL_RNN_DEFINE(float, f32, cdl_sigmoidf, cdl_tanhf)
CDL_RNN_DEFINE(double, f64, cdl_sigmoidd, tanh)

#endif /* CDL_VRNN_H */
