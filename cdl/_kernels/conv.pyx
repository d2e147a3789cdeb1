# Rendered from conv.pyx.tp by setup.py: edit the template, not this file.
"""Convolution over channels-last images, by im2col and one matrix product.

Layouts (row-major, channels last, as Keras):

- image ``X`` (n, H, W, C), kernel ``W`` (kh, kw, C, F), bias ``b`` (F,),
  output ``Z``/``Y`` (n, OH, OW, F);
- a 1-D convolution is the case H = kh = 1 (the layer passes views).

The geometry is given by ``strides`` (sh, sw), ``dilation`` (dh, dw) and
explicit ``padding`` (top, bottom, left, right), with the output size
``OH = (H + top + bottom - ((kh - 1) * dh + 1)) // sh + 1`` (and alike for
OW). The layers turn "same", "valid" and integer paddings into these four
numbers.

How it is computed: the rows of the column matrix ``col``
(n * OH * OW, kh * kw * C) hold, for each output position, the input
patch it sees (zeros where the patch hangs over the padding), laid out
like a (kh * kw * C, F) view of the kernel, so that

    forward     Z = col @ W + b                       (one gemm), Y = f(Z)
    backward    dZ = f'(.) * dY
                dW = col^T @ dZ                       (one gemm)
                db = sum of the rows of dZ
                dX = col2im(dZ @ W^T)                 (one gemm, then a scatter-add)

The caller owns ``col``, a (rows, kh * kw * C) scratch array, so that a
layer reuses one buffer across calls. Its row count picks the chunking:
``rows // (OH * OW)`` samples go through each product, the whole batch
when the buffer is large enough (one gemm per batch), fewer otherwise (a
gemm per chunk of samples; at least one sample must fit). A 1x1 kernel
with unit strides and no padding needs no columns at all (``col`` may
then be None): the image itself is the column matrix.

The transposed convolution (``transpose_forward``/``transpose_backward``)
is the adjoint of the same map: its forward is the convolution's
input-gradient computation, its backward the convolution's forward.
"""
from cython cimport floating
from libc.string cimport memset

from cdl._kernels._blas cimport (
    _gemm, NoTrans, Trans, BLAS_INT_MAX, blas_int, check_blas_int)
from cdl._kernels._checks cimport check_float_array, check_same_dtype, data_ptr, is_float32
from cdl._kernels.activations cimport (
    act_forward, act_backward, backward_needs_input, ACT_LINEAR, ACT_LAST)


cdef struct Geom:
    # The convolution maps an image (H, W, C) to an output (OH, OW, F).
    Py_ssize_t H, W, C
    Py_ssize_t OH, OW, F
    Py_ssize_t kh, kw
    Py_ssize_t sh, sw, dh, dw
    Py_ssize_t pt, pl          # padding before (top, left); the rest follows from OH, OW
    bint direct                 # 1x1 kernel, unit strides, no padding: col is the image


# --- im2col and col2im -------------------------------------------------------

cdef inline void _valid_taps(Py_ssize_t start, Py_ssize_t size, Py_ssize_t taps,
                             Py_ssize_t dilation, Py_ssize_t* lo,
                             Py_ssize_t* hi) noexcept nogil:
    """Taps t in [lo, hi) with 0 <= start + t * dilation < size."""
    cdef Py_ssize_t first = 0, last
    if start < 0:
        first = (-start + dilation - 1) // dilation
    if start >= size:
        last = 0
    else:
        last = (size - 1 - start) // dilation + 1
        if last > taps:
            last = taps
    if first > last:
        first = last
    lo[0] = first
    hi[0] = last


cdef void im2col(const Geom* g, Py_ssize_t ns, const floating* X,
                 floating* col) noexcept nogil:
    """Fill ``col`` (ns * OH * OW, kh * kw * C) from ``ns`` images at ``X``."""
    cdef Py_ssize_t C = g.C, kw = g.kw, dw = g.dw
    cdef Py_ssize_t rowlen = kw * C, K = g.kh * kw * C
    cdef Py_ssize_t n, oh, ow, i, j, c, ih, iw0, jlo, jhi, ilo, ihi
    cdef const floating* img
    cdef const floating* src
    cdef floating* row = col
    cdef floating* dst
    for n in range(ns):
        img = X + n * g.H * g.W * C
        for oh in range(g.OH):
            _valid_taps(oh * g.sh - g.pt, g.H, g.kh, g.dh, &ilo, &ihi)
            for ow in range(g.OW):
                iw0 = ow * g.sw - g.pl
                _valid_taps(iw0, g.W, kw, dw, &jlo, &jhi)
                if ilo > 0:
                    memset(row, 0, ilo * rowlen * sizeof(floating))
                if ihi < g.kh:
                    memset(row + ihi * rowlen, 0, (g.kh - ihi) * rowlen * sizeof(floating))
                for i in range(ilo, ihi):
                    ih = oh * g.sh - g.pt + i * g.dh
                    dst = row + i * rowlen
                    if jlo > 0:
                        memset(dst, 0, jlo * C * sizeof(floating))
                    if jhi < kw:
                        memset(dst + jhi * C, 0, (kw - jhi) * C * sizeof(floating))
                    if jlo == jhi:
                        continue
                    # First valid tap; the taps are dw pixels apart in the input.
                    src = img + (ih * g.W + iw0 + jlo * dw) * C
                    dst += jlo * C
                    if dw == 1:
                        # The valid taps are one contiguous run of the input row.
                        for c in range((jhi - jlo) * C):
                            dst[c] = src[c]
                    else:
                        for j in range(jhi - jlo):
                            for c in range(C):
                                dst[j * C + c] = src[j * dw * C + c]
                row += K


cdef void col2im(const Geom* g, Py_ssize_t ns, const floating* col,
                 floating* X) noexcept nogil:
    """Scatter-add ``col`` (ns * OH * OW, kh * kw * C) into ``ns`` images at ``X``.

    The adjoint of ``im2col``; ``X`` is added to, not overwritten.
    """
    cdef Py_ssize_t C = g.C, kw = g.kw, dw = g.dw
    cdef Py_ssize_t rowlen = kw * C, K = g.kh * kw * C
    cdef Py_ssize_t n, oh, ow, i, j, c, ih, iw0, jlo, jhi, ilo, ihi
    cdef floating* img
    cdef floating* dst
    cdef const floating* row = col
    cdef const floating* src
    for n in range(ns):
        img = X + n * g.H * g.W * C
        for oh in range(g.OH):
            _valid_taps(oh * g.sh - g.pt, g.H, g.kh, g.dh, &ilo, &ihi)
            for ow in range(g.OW):
                iw0 = ow * g.sw - g.pl
                _valid_taps(iw0, g.W, kw, dw, &jlo, &jhi)
                if jlo == jhi:
                    row += K
                    continue
                for i in range(ilo, ihi):
                    ih = oh * g.sh - g.pt + i * g.dh
                    src = row + i * rowlen + jlo * C
                    dst = img + (ih * g.W + iw0 + jlo * dw) * C
                    if dw == 1:
                        for c in range((jhi - jlo) * C):
                            dst[c] += src[c]
                    else:
                        for j in range(jhi - jlo):
                            for c in range(C):
                                dst[j * dw * C + c] += src[j * C + c]
                row += K


# --- convolution -------------------------------------------------------------

cdef inline void _fill_rows(Py_ssize_t rows, Py_ssize_t cols, const floating* b,
                            floating* Z) noexcept nogil:
    """Every row of Z (rows, cols) set to b, or to zero if b is NULL."""
    cdef Py_ssize_t r, j
    if b == NULL:
        memset(Z, 0, rows * cols * sizeof(floating))
        return
    for r in range(rows):
        for j in range(cols):
            Z[r * cols + j] = b[j]


cdef inline void _add_row_sums(Py_ssize_t rows, Py_ssize_t cols, const floating* G,
                               floating* db) noexcept nogil:
    cdef Py_ssize_t r, j
    for r in range(rows):
        for j in range(cols):
            db[j] += G[r * cols + j]


cdef void conv_forward(const Geom* g, Py_ssize_t n, Py_ssize_t chunk,
                       const floating* X, const floating* Wt, const floating* b,
                       int act, double param, floating* col,
                       floating* Z, floating* Y) noexcept nogil:
    """Z = im2col(X) @ W + b and Y = f(Z), ``chunk`` samples per product."""
    cdef Py_ssize_t P = g.OH * g.OW, K = g.kh * g.kw * g.C, F = g.F
    cdef Py_ssize_t n0 = 0, ns, m
    cdef const floating* A
    cdef floating* Zc
    cdef floating* Yc
    cdef floating beta = 0 if b == NULL else 1
    while n0 < n:
        ns = chunk if chunk < n - n0 else n - n0
        m = ns * P
        Zc = Z + n0 * P * F
        Yc = Y + n0 * P * F
        if g.direct:
            A = X + n0 * P * K
        else:
            im2col(g, ns, X + n0 * g.H * g.W * g.C, col)
            A = col
        if b != NULL:
            _fill_rows(m, F, b, Zc)
        _gemm(NoTrans, NoTrans, <blas_int>m, <blas_int>F, <blas_int>K,
              <floating>1, A, <blas_int>K, Wt, <blas_int>F, beta, Zc, <blas_int>F)
        if act != ACT_LINEAR or Zc != Yc:
            act_forward(act, param, m, F, Zc, Yc)
        n0 += ns


cdef void conv_backward(const Geom* g, Py_ssize_t n, Py_ssize_t chunk,
                        const floating* X, const floating* Wt,
                        int act, double param, const floating* S,
                        const floating* dY, floating* dZ,
                        floating* dW, floating* db, floating* dX,
                        floating* col, bint col_filled) noexcept nogil:
    """Gradients of ``conv_forward``; ``S`` is the saved Z or Y (what ``act`` reads).

    ``col_filled``: ``col`` still holds im2col(X) of the whole batch. ``col``
    is overwritten (with dZ @ W^T). ``db`` and ``dX`` may be NULL.
    """
    cdef Py_ssize_t P = g.OH * g.OW, K = g.kh * g.kw * g.C, F = g.F
    cdef Py_ssize_t img = g.H * g.W * g.C
    cdef Py_ssize_t n0 = 0, ns, m, j
    cdef const floating* A
    cdef const floating* G
    cdef floating* dXc
    cdef floating beta = 0
    if db != NULL:
        for j in range(F):
            db[j] = 0
    if n * P == 0:
        memset(dW, 0, K * F * sizeof(floating))
        if dX != NULL:
            memset(dX, 0, n * img * sizeof(floating))
        return
    while n0 < n:
        ns = chunk if chunk < n - n0 else n - n0
        m = ns * P
        G = dY + n0 * P * F
        if act != ACT_LINEAR:
            act_backward(act, param, m, F, S + n0 * P * F, S + n0 * P * F,
                         G, dZ + n0 * P * F)
            G = dZ + n0 * P * F
        if db != NULL:
            _add_row_sums(m, F, G, db)
        if g.direct:
            A = X + n0 * img
        else:
            if not col_filled:
                im2col(g, ns, X + n0 * img, col)
            A = col
        # dW (K, F) += col^T (K, m) @ dZ (m, F)
        _gemm(Trans, NoTrans, <blas_int>K, <blas_int>F, <blas_int>m,
              <floating>1, A, <blas_int>K, G, <blas_int>F, beta, dW, <blas_int>F)
        beta = 1
        if dX != NULL:
            dXc = dX + n0 * img
            if g.direct:
                _gemm(NoTrans, Trans, <blas_int>m, <blas_int>K, <blas_int>F,
                      <floating>1, G, <blas_int>F, Wt, <blas_int>F,
                      <floating>0, dXc, <blas_int>K)
            else:
                _gemm(NoTrans, Trans, <blas_int>m, <blas_int>K, <blas_int>F,
                      <floating>1, G, <blas_int>F, Wt, <blas_int>F,
                      <floating>0, col, <blas_int>K)
                memset(dXc, 0, ns * img * sizeof(floating))
                col2im(g, ns, col, dXc)
        n0 += ns


# --- transposed convolution --------------------------------------------------
# Here the image side of the geometry is the OUTPUT (n, H, W, C) and the
# "conv output" side the INPUT (n, OH, OW, F); the kernel is (kh, kw, C, F).

cdef void convT_forward(const Geom* g, Py_ssize_t n, Py_ssize_t chunk,
                            const floating* X, const floating* Wt, const floating* b,
                            int act, double param, floating* col,
                            floating* Z, floating* Y) noexcept nogil:
    """Z = col2im(X @ W^T) + b and Y = f(Z)."""
    cdef Py_ssize_t P = g.OH * g.OW, K = g.kh * g.kw * g.C, F = g.F
    cdef Py_ssize_t img = g.H * g.W * g.C, pix = g.H * g.W
    cdef Py_ssize_t n0 = 0, ns, m
    cdef const floating* Xc
    cdef floating* Zc
    while n0 < n:
        ns = chunk if chunk < n - n0 else n - n0
        m = ns * P
        Xc = X + n0 * P * F
        Zc = Z + n0 * img
        _fill_rows(ns * pix, g.C, b, Zc)
        if g.direct:
            _gemm(NoTrans, Trans, <blas_int>m, <blas_int>K, <blas_int>F,
                  <floating>1, Xc, <blas_int>F, Wt, <blas_int>F,
                  <floating>1, Zc, <blas_int>K)
        else:
            _gemm(NoTrans, Trans, <blas_int>m, <blas_int>K, <blas_int>F,
                  <floating>1, Xc, <blas_int>F, Wt, <blas_int>F,
                  <floating>0, col, <blas_int>K)
            col2im(g, ns, col, Zc)
        if act != ACT_LINEAR or Z != Y:
            act_forward(act, param, ns * pix, g.C, Zc, Y + n0 * img)
        n0 += ns


cdef void convT_backward(const Geom* g, Py_ssize_t n, Py_ssize_t chunk,
                             const floating* X, const floating* Wt,
                             int act, double param, const floating* S,
                             const floating* dY, floating* dZ,
                             floating* dW, floating* db, floating* dX,
                             floating* col) noexcept nogil:
    """Gradients of ``convT_forward``: dX = im2col(dZ) @ W, dW = im2col(dZ)^T @ X."""
    cdef Py_ssize_t P = g.OH * g.OW, K = g.kh * g.kw * g.C, F = g.F
    cdef Py_ssize_t img = g.H * g.W * g.C, pix = g.H * g.W
    cdef Py_ssize_t n0 = 0, ns, m, j
    cdef const floating* A
    cdef const floating* G
    cdef floating beta = 0
    if db != NULL:
        for j in range(g.C):
            db[j] = 0
    if n * P == 0:
        memset(dW, 0, K * F * sizeof(floating))
        if dX != NULL:
            memset(dX, 0, n * P * F * sizeof(floating))
        return
    while n0 < n:
        ns = chunk if chunk < n - n0 else n - n0
        m = ns * P
        G = dY + n0 * img
        if act != ACT_LINEAR:
            act_backward(act, param, ns * pix, g.C, S + n0 * img, S + n0 * img,
                         G, dZ + n0 * img)
            G = dZ + n0 * img
        if db != NULL:
            _add_row_sums(ns * pix, g.C, G, db)
        if g.direct:
            A = G
        else:
            im2col(g, ns, G, col)
            A = col
        # dW (K, F) += im2col(dZ)^T (K, m) @ X (m, F)
        _gemm(Trans, NoTrans, <blas_int>K, <blas_int>F, <blas_int>m,
              <floating>1, A, <blas_int>K, X + n0 * P * F, <blas_int>F,
              beta, dW, <blas_int>F)
        beta = 1
        if dX != NULL:
            _gemm(NoTrans, NoTrans, <blas_int>m, <blas_int>F, <blas_int>K,
                  <floating>1, A, <blas_int>K, Wt, <blas_int>F,
                  <floating>0, dX + n0 * P * F, <blas_int>F)
        n0 += ns


# --- entry points ------------------------------------------------------------

# They check every array (dtype, C-contiguity, shapes, 32-bit BLAS sizes)
# with the GIL, then run one of the kernels above without it.

def _check_activation(int act):
    if act < ACT_LINEAR or act > ACT_LAST:
        raise ValueError(f"unknown activation code {act}")


cdef Py_ssize_t _positive(value, str what) except -1:
    cdef Py_ssize_t v = value
    if v < 1:
        raise ValueError(f"{what} must be >= 1, got {value}")
    return v


cdef Py_ssize_t _non_negative(value, str what) except -1:
    cdef Py_ssize_t v = value
    if v < 0:
        raise ValueError(f"{what} must be >= 0, got {value}")
    return v


cdef Py_ssize_t _out_size(Py_ssize_t size, Py_ssize_t before, Py_ssize_t after,
                          Py_ssize_t k, Py_ssize_t stride, Py_ssize_t dilation,
                          str axis, tuple image_shape, tuple kernel_shape) except -1:
    cdef Py_ssize_t span = (k - 1) * dilation + 1
    if size + before + after < span:
        raise ValueError(
            f"the kernel of shape {kernel_shape} (dilated {axis} extent {span}) is larger "
            f"than the padded image of shape {image_shape} ({axis} {size} + padding "
            f"{before} + {after})")
    return (size + before + after - span) // stride + 1


cdef int _make_geom(Geom* g, tuple image_shape, tuple kernel_shape,
                    strides, dilation, padding) except -1:
    """Fill ``g`` for an image (n, H, W, C) and a kernel (kh, kw, C, F)."""
    if len(strides) != 2 or len(dilation) != 2 or len(padding) != 4:
        raise ValueError("strides and dilation take 2 values, padding 4 "
                         "(top, bottom, left, right)")
    g.H, g.W, g.C = image_shape[1], image_shape[2], image_shape[3]
    g.kh, g.kw, g.F = kernel_shape[0], kernel_shape[1], kernel_shape[3]
    if g.kh < 1 or g.kw < 1 or g.F < 1 or g.C < 1:
        raise ValueError(f"the kernel has shape {kernel_shape} and the image "
                         f"{image_shape}; kernel sizes and channels must be >= 1")
    g.sh = _positive(strides[0], "stride")
    g.sw = _positive(strides[1], "stride")
    g.dh = _positive(dilation[0], "dilation")
    g.dw = _positive(dilation[1], "dilation")
    g.pt = _non_negative(padding[0], "padding")
    cdef Py_ssize_t pb = _non_negative(padding[1], "padding")
    g.pl = _non_negative(padding[2], "padding")
    cdef Py_ssize_t pr = _non_negative(padding[3], "padding")
    g.OH = _out_size(g.H, g.pt, pb, g.kh, g.sh, g.dh, "height", image_shape, kernel_shape)
    g.OW = _out_size(g.W, g.pl, pr, g.kw, g.sw, g.dw, "width", image_shape, kernel_shape)
    g.direct = (g.kh == 1 and g.kw == 1 and g.sh == 1 and g.sw == 1
                and g.pt == 0 and g.pl == 0 and g.OH == g.H and g.OW == g.W)
    check_blas_int(g.kh * g.kw * g.C, "convolution patch size (kh * kw * channels)")
    check_blas_int(g.F, "convolution channel count")
    return 0


cdef int _check_shape(a, str name, tuple shape, ref, bint writable) except -1:
    check_float_array(a, name, len(shape), writable)
    check_same_dtype(ref, a, "X", name)
    if a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
    return 0


cdef Py_ssize_t _chunk(const Geom* g, Py_ssize_t n, col, ref) except -1:
    """Samples per matrix product: as many as ``col`` has rows for, at most n."""
    cdef Py_ssize_t K = g.kh * g.kw * g.C, P = g.OH * g.OW, chunk
    if g.direct:
        chunk = BLAS_INT_MAX // P
    else:
        if col is None:
            raise ValueError("col (the im2col buffer) is needed unless the kernel is "
                             "1x1 with unit strides and no padding")
        check_float_array(col, "col", 2, True)
        check_same_dtype(ref, col, "X", "col")
        if col.shape[1] != K or col.shape[0] < P:
            raise ValueError(
                f"col has shape {col.shape}, expected (rows, {K}) with rows >= {P} "
                "(the output positions of one sample)")
        chunk = col.shape[0] // P
    if chunk > n:
        chunk = n
    if chunk < 1:
        chunk = 1
    check_blas_int(chunk * P, "rows of one convolution product")
    check_blas_int(chunk * g.H * g.W, "rows of one convolution product")
    return chunk


cdef void* _saved_ptr(int act, Z, Y, tuple shape, ref) except? NULL:
    """The saved array the activation's backward reads (NULL for linear)."""
    if act == ACT_LINEAR:
        return NULL
    saved, name = (Z, "Z") if backward_needs_input(act) else (Y, "Y")
    if saved is None:
        raise ValueError(f"this activation's backward needs {name}, got None")
    _check_shape(saved, name, shape, ref, False)
    return data_ptr(saved)


def forward(X, W, b, Z, Y, col, strides, dilation, padding,
            int act=ACT_LINEAR, double param=0.0):
    """Z = conv(X, W) + b and Y = f(Z), written in place.

    Parameters
    ----------
    X : ndarray of shape (n, H, W, C)
    W : ndarray of shape (kh, kw, C, F)
    b : ndarray of shape (F,) or None
    Z, Y : ndarrays of shape (n, OH, OW, F)
        Pre-activation and output; ``Z`` may be ``Y`` when the activation's
        backward reads only its output.
    col : ndarray of shape (rows, kh * kw * C), or None for a direct 1x1
        convolution. Scratch; ``rows // (OH * OW)`` samples are done per
        matrix product. On return it holds the columns of the last chunk.
    strides, dilation : pairs of ints >= 1 (height, width)
    padding : 4 ints >= 0 (top, bottom, left, right)
    act : int
        Activation code from ``cdl._kernels.activations.CODES``.
    param : float
        Leaky ReLU slope or ELU alpha.
    """
    _check_activation(act)
    check_float_array(X, "X", 4, False)
    check_float_array(W, "W", 4, False)
    check_same_dtype(X, W, "X", "W")
    if W.shape[2] != X.shape[3]:
        raise ValueError(f"W has shape {W.shape}, made for {W.shape[2]} input channels, "
                         f"but X has shape {X.shape} ({X.shape[3]} channels)")
    cdef Geom g
    _make_geom(&g, X.shape, W.shape, strides, dilation, padding)
    cdef Py_ssize_t n = X.shape[0]
    out_shape = (n, g.OH, g.OW, g.F)
    if b is not None:
        _check_shape(b, "b", (g.F,), X, False)
    _check_shape(Z, "Z", out_shape, X, True)
    _check_shape(Y, "Y", out_shape, X, True)
    cdef Py_ssize_t chunk = _chunk(&g, n, col, X)
    cdef void* px = data_ptr(X)
    cdef void* pw = data_ptr(W)
    cdef void* pb = data_ptr(b) if b is not None else NULL
    cdef void* pcol = data_ptr(col) if col is not None else NULL
    cdef void* pz = data_ptr(Z)
    cdef void* py = data_ptr(Y)
    if is_float32(X):
        with nogil:
            conv_forward(&g, n, chunk, <float*>px, <float*>pw, <float*>pb, act, param,
                         <float*>pcol, <float*>pz, <float*>py)
    else:
        with nogil:
            conv_forward(&g, n, chunk, <double*>px, <double*>pw, <double*>pb, act, param,
                         <double*>pcol, <double*>pz, <double*>py)
    return Y


def backward(X, W, Z, Y, dY, dZ, dW, db, dX, col, strides, dilation, padding,
             int act=ACT_LINEAR, double param=0.0, bint col_filled=False):
    """Gradients of ``forward``, written in place.

    Parameters
    ----------
    X, W : the forward inputs, shapes (n, H, W, C) and (kh, kw, C, F)
    Z, Y : the forward pre-activation and output, shape (n, OH, OW, F)
        Only the one the activation's backward reads is used; the other may
        be None (both, for a linear activation).
    dY : ndarray of shape (n, OH, OW, F), gradient with respect to Y
    dZ : ndarray like dY, scratch for the gradient w.r.t. Z (may be ``dY``,
        which is then overwritten; unused for a linear activation)
    dW : ndarray of shape (kh, kw, C, F), overwritten
    db : ndarray of shape (F,) or None, overwritten
    dX : ndarray of shape (n, H, W, C) or None, overwritten
    col : the im2col buffer, as for ``forward``; overwritten
    strides, dilation, padding : as for ``forward``
    col_filled : bool
        ``col`` still holds the columns of the whole batch ``X``, left by
        ``forward`` with a buffer large enough for every sample, so that
        they need not be recomputed.
    """
    _check_activation(act)
    check_float_array(X, "X", 4, False)
    check_float_array(W, "W", 4, False)
    check_same_dtype(X, W, "X", "W")
    if W.shape[2] != X.shape[3]:
        raise ValueError(f"W has shape {W.shape}, made for {W.shape[2]} input channels, "
                         f"but X has shape {X.shape} ({X.shape[3]} channels)")
    cdef Geom g
    _make_geom(&g, X.shape, W.shape, strides, dilation, padding)
    cdef Py_ssize_t n = X.shape[0]
    out_shape = (n, g.OH, g.OW, g.F)
    _check_shape(dY, "dY", out_shape, X, False)
    _check_shape(dW, "dW", W.shape, X, True)
    if db is not None:
        _check_shape(db, "db", (g.F,), X, True)
    if dX is not None:
        _check_shape(dX, "dX", X.shape, X, True)
    cdef void* ps = _saved_ptr(act, Z, Y, out_shape, X)
    cdef void* pdz = NULL
    if act != ACT_LINEAR:
        _check_shape(dZ, "dZ", out_shape, X, True)
        pdz = data_ptr(dZ)
    cdef Py_ssize_t chunk = _chunk(&g, n, col, X)
    if col_filled and chunk < n:
        raise ValueError(f"col_filled needs a col buffer holding the whole batch of {n}, "
                         f"it holds {chunk} samples")
    cdef void* px = data_ptr(X)
    cdef void* pw = data_ptr(W)
    cdef void* pdy = data_ptr(dY)
    cdef void* pdw = data_ptr(dW)
    cdef void* pdb = data_ptr(db) if db is not None else NULL
    cdef void* pdx = data_ptr(dX) if dX is not None else NULL
    cdef void* pcol = data_ptr(col) if col is not None else NULL
    if is_float32(X):
        with nogil:
            conv_backward(&g, n, chunk, <float*>px, <float*>pw, act, param, <float*>ps,
                          <float*>pdy, <float*>pdz, <float*>pdw, <float*>pdb, <float*>pdx,
                          <float*>pcol, col_filled)
    else:
        with nogil:
            conv_backward(&g, n, chunk, <double*>px, <double*>pw, act, param, <double*>ps,
                          <double*>pdy, <double*>pdz, <double*>pdw, <double*>pdb, <double*>pdx,
                          <double*>pcol, col_filled)
    return dX


cdef int _transpose_geom(Geom* g, X, W, tuple image_shape, strides, dilation,
                         padding) except -1:
    """Geometry of the convolution whose adjoint maps X (n, h, w, F) to an
    image of ``image_shape`` (n, H, W, C), with W of shape (kh, kw, C, F)."""
    check_float_array(X, "X", 4, False)
    check_float_array(W, "W", 4, False)
    check_same_dtype(X, W, "X", "W")
    if W.shape[3] != X.shape[3]:
        raise ValueError(f"W has shape {W.shape}, made for {W.shape[3]} input channels, "
                         f"but X has shape {X.shape} ({X.shape[3]} channels)")
    if len(image_shape) != 4 or image_shape[0] != X.shape[0] \
            or image_shape[3] != W.shape[2]:
        raise ValueError(f"the output has shape {image_shape}, expected "
                         f"({X.shape[0]}, height, width, {W.shape[2]})")
    _make_geom(g, image_shape, W.shape, strides, dilation, padding)
    if g.OH != X.shape[1] or g.OW != X.shape[2]:
        raise ValueError(
            f"an output of shape {image_shape} does not correspond to X of shape "
            f"{X.shape} under this geometry (it maps back to {g.OH} x {g.OW})")
    return 0


def transpose_forward(X, W, b, Z, Y, col, strides, dilation, padding,
                      int act=ACT_LINEAR, double param=0.0):
    """Transposed convolution: Z = conv_input_gradient(X, W) + b, Y = f(Z).

    Parameters
    ----------
    X : ndarray of shape (n, h, w, F)
    W : ndarray of shape (kh, kw, C, F)
    b : ndarray of shape (C,) or None
    Z, Y : ndarrays of shape (n, H, W, C), with (h, w) the output size of
        the convolution of an (H, W) image by this geometry; ``Z`` may be
        ``Y`` as in ``forward``.
    col : ndarray of shape (rows, kh * kw * C) (rows >= h * w), or None for
        a direct 1x1 kernel
    strides, dilation, padding : the geometry of that convolution
    act, param : activation, as in ``forward``
    """
    _check_activation(act)
    check_float_array(Y, "Y", 4, True)
    cdef Geom g
    _transpose_geom(&g, X, W, tuple(Y.shape), strides, dilation, padding)
    cdef Py_ssize_t n = X.shape[0]
    if b is not None:
        _check_shape(b, "b", (g.C,), X, False)
    _check_shape(Z, "Z", Y.shape, X, True)
    _check_shape(Y, "Y", Y.shape, X, True)
    cdef Py_ssize_t chunk = _chunk(&g, n, col, X)
    cdef void* px = data_ptr(X)
    cdef void* pw = data_ptr(W)
    cdef void* pb = data_ptr(b) if b is not None else NULL
    cdef void* pcol = data_ptr(col) if col is not None else NULL
    cdef void* pz = data_ptr(Z)
    cdef void* py = data_ptr(Y)
    if is_float32(X):
        with nogil:
            convT_forward(&g, n, chunk, <float*>px, <float*>pw, <float*>pb, act, param,
                              <float*>pcol, <float*>pz, <float*>py)
    else:
        with nogil:
            convT_forward(&g, n, chunk, <double*>px, <double*>pw, <double*>pb, act, param,
                              <double*>pcol, <double*>pz, <double*>py)
    return Y


def transpose_backward(X, W, Z, Y, dY, dZ, dW, db, dX, col, strides, dilation, padding,
                       int act=ACT_LINEAR, double param=0.0):
    """Gradients of ``transpose_forward``, written in place.

    Parameters are as for ``backward``, with the shapes of
    ``transpose_forward``: dY, dZ, Z, Y (n, H, W, C), dW (kh, kw, C, F),
    db (C,) or None, dX (n, h, w, F) or None. ``col`` is overwritten.
    """
    _check_activation(act)
    check_float_array(dY, "dY", 4, False)
    cdef Geom g
    _transpose_geom(&g, X, W, tuple(dY.shape), strides, dilation, padding)
    cdef Py_ssize_t n = X.shape[0]
    image_shape = tuple(dY.shape)
    _check_shape(dY, "dY", image_shape, X, False)
    _check_shape(dW, "dW", W.shape, X, True)
    if db is not None:
        _check_shape(db, "db", (g.C,), X, True)
    if dX is not None:
        _check_shape(dX, "dX", X.shape, X, True)
    cdef void* ps = _saved_ptr(act, Z, Y, image_shape, X)
    cdef void* pdz = NULL
    if act != ACT_LINEAR:
        _check_shape(dZ, "dZ", image_shape, X, True)
        pdz = data_ptr(dZ)
    cdef Py_ssize_t chunk = _chunk(&g, n, col, X)
    cdef void* px = data_ptr(X)
    cdef void* pw = data_ptr(W)
    cdef void* pdy = data_ptr(dY)
    cdef void* pdw = data_ptr(dW)
    cdef void* pdb = data_ptr(db) if db is not None else NULL
    cdef void* pdx = data_ptr(dX) if dX is not None else NULL
    cdef void* pcol = data_ptr(col) if col is not None else NULL
    if is_float32(X):
        with nogil:
            convT_backward(&g, n, chunk, <float*>px, <float*>pw, act, param,
                               <float*>ps, <float*>pdy, <float*>pdz, <float*>pdw,
                               <float*>pdb, <float*>pdx, <float*>pcol)
    else:
        with nogil:
            convT_backward(&g, n, chunk, <double*>px, <double*>pw, act, param,
                               <double*>ps, <double*>pdy, <double*>pdz, <double*>pdw,
                               <double*>pdb, <double*>pdx, <double*>pcol)
    return dX
