"""Plotting for cdl: matplotlib behind the ``plot`` methods, and a small
PNG renderer of training curves that needs only NumPy and the standard
library (what ``cdl demo`` falls back on when matplotlib is not installed)."""
import math
import os
import struct
import zlib

import numpy as np


def pyplot(who):
    """``matplotlib.pyplot`` on the file-writing Agg backend (the plots are
    saved, never shown), or an ImportError naming ``who`` and the install."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(f"{who} needs matplotlib, an optional dependency: "
                          "pip install matplotlib") from None
    return plt


# --- PNG -----------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def write_png(path, image):
    """Write an RGB image as an 8-bit PNG file.

    Parameters
    ----------
    path : str or path-like
    image : ndarray of uint8, shape (height, width, 3)

    Returns
    -------
    path

    Examples
    --------
    >>> import numpy as np
    >>> from cdl._plotting import write_png
    >>> _ = write_png("red.png", np.full((2, 3, 3), (255, 0, 0), np.uint8))
    >>> open("red.png", "rb").read(8)
    b'\\x89PNG\\r\\n\\x1a\\n'
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 \
            or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError("image must be a non-empty uint8 array of shape (height, width, 3), "
                         f"got {image.dtype} of shape {image.shape}")
    height, width = image.shape[:2]
    # Filter type 0 (none) in front of every row; zlib does the compressing.
    rows = np.concatenate([np.zeros((height, 1), np.uint8), image.reshape(height, -1)], axis=1)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    with open(os.fspath(path), "wb") as f:
        f.write(PNG_SIGNATURE + _chunk(b"IHDR", header)
                + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 9)) + _chunk(b"IEND", b""))
    return path


# --- text: a 5x9 bitmap font (rows 0-1 ascenders, 2-6 x-height, 7-8 descenders) --

_GLYPHS = {
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.",
    "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####",
    "3": "##### ...#. ..#.. ...#. ....# #...# .###.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
    "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.",
    "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.",
    "9": ".###. #...# #...# .#### ....# ...#. .##..",
    ".": "..... ..... ..... ..... ..... .##.. .##..",
    "-": "..... ..... ..... ##### ..... ..... .....",
    "+": "..... ..#.. ..#.. ##### ..#.. ..#.. .....",
    "_": "..... ..... ..... ..... ..... ..... ..... ..... #####",
    " ": "",
    "a": "..... ..... .###. ....# .#### #...# .####",
    "b": "#.... #.... #.##. ##..# #...# #...# ####.",
    "c": "..... ..... .###. #.... #.... #...# .###.",
    "d": "....# ....# .##.# #..## #...# #...# .####",
    "e": "..... ..... .###. #...# ##### #.... .###.",
    "f": "..##. .#..# .#... ###.. .#... .#... .#...",
    "g": "..... ..... .#### #...# #...# .#### ....# #...# .###.",
    "h": "#.... #.... #.##. ##..# #...# #...# #...#",
    "i": "..#.. ..... .##.. ..#.. ..#.. ..#.. .###.",
    "j": "...#. ..... ..##. ...#. ...#. ...#. ...#. #..#. .##..",
    "k": "#.... #.... #..#. #.#.. ##... #.#.. #..#.",
    "l": ".##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "m": "..... ..... ##.#. #.#.# #.#.# #.#.# #.#.#",
    "n": "..... ..... #.##. ##..# #...# #...# #...#",
    "o": "..... ..... .###. #...# #...# #...# .###.",
    "p": "..... ..... ####. #...# #...# #...# ####. #.... #....",
    "q": "..... ..... .#### #...# #...# #...# .#### ....# ....#",
    "r": "..... ..... #.##. ##..# #.... #.... #....",
    "s": "..... ..... .#### #.... .###. ....# ####.",
    "t": ".#... .#... ###.. .#... .#... .#..# ..##.",
    "u": "..... ..... #...# #...# #...# #..## .##.#",
    "v": "..... ..... #...# #...# #...# .#.#. ..#..",
    "w": "..... ..... #...# #...# #.#.# #.#.# .#.#.",
    "x": "..... ..... #...# .#.#. ..#.. .#.#. #...#",
    "y": "..... ..... #...# #...# #...# .#### ....# #...# .###.",
    "z": "..... ..... ##### ...#. ..#.. .#... #####",
    # Characters without a glyph of their own are drawn as this box.
    "\0": "..... ##### #...# #...# #...# #...# #####",
}
_GLYPH_ROWS, _GLYPH_COLS = 9, 5


def _glyph(char):
    rows = _GLYPHS.get(char, _GLYPHS.get(char.lower(), _GLYPHS["\0"])).split()
    mask = np.zeros((_GLYPH_ROWS, _GLYPH_COLS), bool)
    for i, row in enumerate(rows):
        mask[i] = [c == "#" for c in row]
    return mask


def text_mask(text, scale=2):
    """A boolean bitmap of ``text`` in the built-in font (one pixel of space
    between characters), each font pixel drawn as ``scale`` x ``scale``."""
    if not text:
        return np.zeros((_GLYPH_ROWS * scale, 0), bool)
    gap = np.zeros((_GLYPH_ROWS, 1), bool)
    parts = []
    for char in text:
        parts += [_glyph(char), gap]
    mask = np.concatenate(parts[:-1], axis=1)
    return mask.repeat(scale, axis=0).repeat(scale, axis=1)


# --- drawing on an RGB canvas ------------------------------------------------------

#: matplotlib's first two default colours, so both renderers draw alike.
TRAIN_COLOR = (31, 119, 180)
VALIDATION_COLOR = (255, 127, 14)
_INK = (38, 38, 38)
_GRID = (230, 230, 230)
_FRAME = (204, 204, 204)
_WHITE = (255, 255, 255)


def _blit(canvas, mask, top, left, color):
    """Paint ``mask``'s true pixels at (top, left), clipped to the canvas."""
    height, width = canvas.shape[:2]
    t0, l0 = max(top, 0), max(left, 0)
    t1, l1 = min(top + mask.shape[0], height), min(left + mask.shape[1], width)
    if t0 < t1 and l0 < l1:
        region = canvas[t0:t1, l0:l1]
        region[mask[t0 - top:t1 - top, l0 - left:l1 - left]] = color


def _rect(canvas, top, left, bottom, right, color):
    canvas[max(top, 0):max(bottom, 0), max(left, 0):max(right, 0)] = color


def _polyline(canvas, xs, ys, color, width=2):
    """Draw straight segments through the points (pixel coordinates, floats)."""
    points = []
    for x0, y0, x1, y1 in zip(xs, ys, xs[1:], ys[1:]):
        steps = 2 * int(math.ceil(max(abs(x1 - x0), abs(y1 - y0)))) + 1
        t = np.linspace(0.0, 1.0, steps)
        points.append(np.stack([x0 + (x1 - x0) * t, y0 + (y1 - y0) * t], axis=1))
    if not points:  # a single point: a square dot big enough to be seen
        points = [np.array([[xs[0], ys[0]]], float)]
        width = max(width, 6)
    points = np.concatenate(points)
    height, width_px = canvas.shape[:2]
    for dx in range(width):
        for dy in range(width):
            cols = np.round(points[:, 0] - (width - 1) / 2 + dx).astype(int)
            rows = np.round(points[:, 1] - (width - 1) / 2 + dy).astype(int)
            inside = (cols >= 0) & (cols < width_px) & (rows >= 0) & (rows < height)
            canvas[rows[inside], cols[inside]] = color


def axis_limits(low, high, margin=0.05):
    """The range shown for data in ``[low, high]``: a ``margin`` of the data's
    span added on each side (as matplotlib does), and some room around a
    single value."""
    if not (math.isfinite(low) and math.isfinite(high)) or high < low:
        raise ValueError(f"data range must be finite and ordered, got [{low}, {high}]")
    if high == low:
        pad = abs(low) * 0.1 or 1.0
        return low - pad, high + pad
    return low - margin * (high - low), high + margin * (high - low)


def nice_ticks(low, high, count=5):
    """Round tick values inside ``[low, high]`` (steps of 1, 2 or 5 times a
    power of ten), about ``count`` of them, and the decimals they need."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        raise ValueError(f"tick range must be finite and not empty, got [{low}, {high}]")
    raw = (high - low) / max(count - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9))
    first = math.ceil(low / step - 1e-9)
    last = math.floor(high / step + 1e-9)
    ticks = [i * step for i in range(first, last + 1)]
    decimals = max(0, -int(math.floor(math.log10(step) + 1e-9)))
    return ticks, decimals


def tick_label(value, decimals):
    """``value`` with ``decimals`` decimals, or in exponent notation when
    that would take more than 7 characters (a diverged loss of 1e12)."""
    text = f"{value:.{decimals}f}"
    if len(text) <= 7:
        return text
    if value == 0:
        return "0"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _panel(key, epochs, train, validation, width, height, scale):
    """One RGB panel: the curves of ``key`` against the epoch, with axes,
    ticks, grid, labels and a legend (laid out like ``History.plot``)."""
    canvas = np.full((height, width, 3), _WHITE, np.uint8)
    series = [(f"train {key}", train, TRAIN_COLOR)]
    if validation is not None:
        series.append((f"validation {key}", validation, VALIDATION_COLOR))
    values = np.concatenate([np.asarray(s, float) for _, s, _ in series])
    values = values[np.isfinite(values)]
    y_low, y_high = axis_limits(*((values.min(), values.max()) if values.size else (0.0, 1.0)))
    y_ticks, y_decimals = nice_ticks(y_low, y_high)
    x_low, x_high = axis_limits(epochs[0], epochs[-1])
    x_ticks, _ = nice_ticks(x_low, x_high, count=6)
    # Epochs are whole numbers: no tick between two of them.
    x_ticks = [t for t in x_ticks if float(t).is_integer()] or [epochs[0]]

    line = _GLYPH_ROWS * scale
    y_labels = [text_mask(tick_label(t, y_decimals), scale) for t in y_ticks]
    left = 6 + line + 8 + max(m.shape[1] for m in y_labels) + 8
    right, top, bottom = width - 16, 12, height - (6 + line + 6 + line + 10)
    if right - left < 40 or bottom - top < 40:
        raise ValueError(f"a {width}x{height} panel is too small for the curves")

    def px(x):
        return left + (np.asarray(x, float) - x_low) / (x_high - x_low) * (right - left)

    def py(y):
        return bottom - (np.asarray(y, float) - y_low) / (y_high - y_low) * (bottom - top)

    for t, mask in zip(y_ticks, y_labels):
        row = int(round(float(py(t))))
        _rect(canvas, row, left, row + 1, right, _GRID)
        _rect(canvas, row, left - 5, row + 1, left, _INK)
        _blit(canvas, mask, row - 7 * scale // 2, left - 8 - mask.shape[1], _INK)
    for t in x_ticks:
        col = int(round(float(px(t))))
        _rect(canvas, top, col, bottom, col + 1, _GRID)
        _rect(canvas, bottom, col, bottom + 5, col + 1, _INK)
        mask = text_mask(f"{t:.0f}", scale)
        _blit(canvas, mask, bottom + 8, col - mask.shape[1] // 2, _INK)
    # The frame, then the axis labels: "epoch" below, the key rotated on the left.
    for r0, c0, r1, c1 in ((top, left, top + 1, right + 1), (bottom, left, bottom + 1, right + 1),
                           (top, left, bottom + 1, left + 1), (top, right, bottom + 1, right + 1)):
        _rect(canvas, r0, c0, r1, c1, _INK)
    xlabel = text_mask("epoch", scale)
    _blit(canvas, xlabel, height - 6 - line, (left + right - xlabel.shape[1]) // 2, _INK)
    ylabel = np.rot90(text_mask(key, scale))
    _blit(canvas, ylabel, (top + bottom - ylabel.shape[0]) // 2, 6, _INK)

    curve_points = []
    for _, ys, color in series:
        ys = np.asarray(ys, float)
        keep = np.isfinite(ys)
        xs_px, ys_px = px(np.asarray(epochs, float)[keep]), py(ys[keep])
        if xs_px.size:
            _polyline(canvas, xs_px, ys_px, color)
            curve_points.append(np.stack([xs_px, ys_px], axis=1))

    # The legend goes into the corner of the plot that the curves cross least.
    labels = [text_mask(label, scale) for label, _, _ in series]
    box_w = 10 + 24 + 8 + max(m.shape[1] for m in labels) + 10
    box_h = 8 + len(labels) * (line + 6) + 2
    points = np.concatenate(curve_points) if curve_points else np.zeros((0, 2))
    corners = [(top + 8, right - 8 - box_w), (top + 8, left + 8),
               (bottom - 8 - box_h, right - 8 - box_w), (bottom - 8 - box_h, left + 8)]

    def crossings(corner):
        r, c = corner
        return int(np.sum((points[:, 0] >= c) & (points[:, 0] <= c + box_w)
                          & (points[:, 1] >= r) & (points[:, 1] <= r + box_h)))

    box_top, box_left = min(corners, key=crossings)
    _rect(canvas, box_top, box_left, box_top + box_h, box_left + box_w, _FRAME)
    _rect(canvas, box_top + 1, box_left + 1, box_top + box_h - 1, box_left + box_w - 1, _WHITE)
    for i, ((_, _, color), mask) in enumerate(zip(series, labels)):
        row = box_top + 8 + i * (line + 6)
        _rect(canvas, row + 7 * scale // 2 - 1, box_left + 10,
              row + 7 * scale // 2 + 1, box_left + 34, color)
        _blit(canvas, mask, row, box_left + 42, _INK)
    return canvas


def curves_png(history, path, keys=None, panel_size=(500, 400), scale=2):
    """Draw a training history's curves to a PNG file without matplotlib.

    The picture is laid out like ``History.plot``'s: one panel per training
    key (default: every key except ``lr`` and the ``val_`` ones), each with
    the training curve and, if recorded, the validation curve against the
    epoch, with axes, ticks, grid lines and a legend.

    Parameters
    ----------
    history : cdl.callbacks.History
        What ``fit`` returned (its ``history`` dict and ``epoch`` list).
    path : str or path-like
    keys : list of str, optional
    panel_size : (int, int)
        Width and height of one panel in pixels.
    scale : int
        Size of a font pixel, in pixels.

    Returns
    -------
    path

    Raises
    ------
    ValueError
        If there is nothing to draw, or a key is not in the history.

    Examples
    --------
    >>> from cdl.callbacks import History
    >>> from cdl._plotting import curves_png
    >>> history = History()
    >>> history.epoch = [0, 1, 2]
    >>> history.history = {"loss": [1.0, 0.6, 0.4], "val_loss": [1.1, 0.8, 0.7]}
    >>> curves_png(history, "curves.png")
    'curves.png'
    """
    records = history.history
    epochs = [e + 1 for e in history.epoch]
    keys = list(keys) if keys is not None else [
        k for k in records if k != "lr" and not k.startswith("val_")]
    if not keys or not epochs:
        raise ValueError("there is nothing to plot: the history is empty")
    unknown = [k for k in keys if k not in records]
    if unknown:
        raise ValueError(f"keys not in the history: {unknown} (it has {sorted(records)})")
    for key in keys + [f"val_{k}" for k in keys if f"val_{k}" in records]:
        if len(records[key]) != len(epochs):
            raise ValueError(f"history[{key!r}] has {len(records[key])} values "
                             f"for {len(epochs)} epochs")
    width, height = panel_size
    panels = [_panel(key, epochs, records[key], records.get(f"val_{key}"), width, height, scale)
              for key in keys]
    return write_png(path, np.concatenate(panels, axis=1))
