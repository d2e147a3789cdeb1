"""Which rows of a global batch a process trains on, and per-sample noise.

In data-parallel training every process takes a contiguous part of each
global batch. Random layers (dropout, Gaussian noise) must give a sample
the same noise whichever process trains it, or the result would depend
on the number of processes: while a ``window`` is open, they draw their
numbers for the whole global batch, from a generator that every process
keeps in the same state, and keep the rows of their own part. Outside a
window (single-process training) they draw for the batch as before.
"""
import contextlib
import threading

__all__ = ["shard_bounds", "window", "current", "per_sample", "fill_uniforms"]

_local = threading.local()


def shard_bounds(total, rank, size):
    """Rows ``[start, stop)`` of a batch of ``total`` rows that process
    ``rank`` of ``size`` takes: contiguous, sizes differing by at most one,
    the larger parts first (so rank 0 has a row whenever ``total >= 1``).

    Examples
    --------
    >>> [shard_bounds(5, r, 2) for r in range(2)]
    [(0, 3), (3, 5)]
    """
    base, extra = divmod(total, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


@contextlib.contextmanager
def window(start, stop, total):
    """Random layers in this thread draw for ``total`` rows and keep
    ``start:stop`` until the block ends."""
    previous = getattr(_local, "window", None)
    _local.window = (start, stop, total)
    try:
        yield
    finally:
        _local.window = previous


def current():
    """The open window ``(start, stop, total)`` of this thread, or None."""
    return getattr(_local, "window", None)


def per_sample(rng, shape, dtype, normal=False):
    """Uniform [0, 1) (or standard normal) numbers of ``shape``, whose first
    axis is the batch: inside a window, the rows of this process's part of
    numbers drawn for the whole global batch."""
    draw = rng.standard_normal if normal else rng.random
    open_window = current()
    if open_window is None:
        return draw(shape, dtype=dtype)
    start, stop, total = open_window
    if shape[0] != stop - start:
        raise RuntimeError(f"a layer drew noise for {shape[0]} samples inside a window "
                           f"of {stop - start}")
    return draw((total,) + tuple(shape[1:]), dtype=dtype)[start:stop]


def fill_uniforms(rng, out, rows, width, dtype):
    """Fill ``out[:rows * width]`` with the uniforms of ``rows`` samples of
    ``width`` numbers each (see ``per_sample``), as the fused step's
    dropout layers read them."""
    if current() is None:
        rng.random(out=out[:rows * width], dtype=dtype)
    else:
        out[:rows * width] = per_sample(rng, (rows, width), dtype).reshape(-1)

