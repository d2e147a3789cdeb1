"""`python -m cdl demo` runs end to end and draws its training curves, with
matplotlib or, without it, with cdl's own PNG renderer."""
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from cdl import _plotting, demo
from cdl.callbacks import History


def read_png(path):
    """Check a PNG file's structure and return ``(width, height, pixels)``.

    Checks the signature, every chunk's CRC, the IHDR fields and that the
    IDAT data inflates to exactly one filter byte plus one row of pixels per
    row. ``pixels`` is the (height, width, 3) uint8 image when every row is
    unfiltered 8-bit RGB (what cdl writes), else None.
    """
    raw = open(path, "rb").read()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    chunks, pos = [], 8
    while pos < len(raw):
        length, kind = struct.unpack(">I4s", raw[pos:pos + 8])
        data = raw[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", raw[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + data) & 0xFFFFFFFF, f"bad CRC in {kind!r}"
        chunks.append((kind, data))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert width > 0 and height > 0 and depth == 8 and interlace == 0
    channels = {2: 3, 6: 4}[color]  # RGB or RGBA
    inflated = zlib.decompress(b"".join(data for kind, data in chunks if kind == b"IDAT"))
    assert len(inflated) == height * (1 + width * channels)
    rows = np.frombuffer(inflated, np.uint8).reshape(height, 1 + width * channels)
    if channels != 3 or rows[:, 0].any():
        return width, height, None
    return width, height, rows[:, 1:].reshape(height, width, 3)


def count_color(pixels, color):
    return int(np.all(pixels == np.array(color, np.uint8), axis=-1).sum())


def test_demo_trains_saves_and_reloads(tmp_path):
    out_dir = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "cdl", "demo", "--out", str(out_dir)],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    accuracy = float(re.search(r"test accuracy: ([\d.]+)", result.stdout).group(1))
    seconds = float(re.search(r"training time: ([\d.]+) s", result.stdout).group(1))
    assert accuracy >= 0.97
    assert seconds < 60
    reloaded = float(re.search(r"reloaded from .*: test accuracy ([\d.]+)", result.stdout)
                     .group(1))
    assert reloaded == accuracy and "predictions identical" in result.stdout
    assert (out_dir / "digits.cdl").stat().st_size > 0
    # Drawn by matplotlib or, when it is not installed, by cdl itself.
    assert f"training curves saved to {out_dir / 'curves.png'}" in result.stdout
    width, height, _ = read_png(out_dir / "curves.png")
    assert width >= 800 and height >= 300


def test_demo_draws_its_curves_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes import fail
    printed = []
    result = demo.run(str(tmp_path / "demo"), epochs=3, verbose=0, print_fn=printed.append)
    assert result["curves_path"] == str(tmp_path / "demo" / "curves.png")
    assert f"training curves saved to {result['curves_path']}" in printed
    width, height, pixels = read_png(result["curves_path"])
    assert (width, height) == (1000, 400)  # loss and accuracy, 500x400 each
    for panel in (pixels[:, :500], pixels[:, 500:]):
        assert count_color(panel, _plotting.TRAIN_COLOR) > 100
        assert count_color(panel, _plotting.VALIDATION_COLOR) > 100


def history_of(**curves):
    history = History()
    history.epoch = list(range(len(next(iter(curves.values())))))
    history.history = {key: list(values) for key, values in curves.items()}
    return history


def test_curves_follow_the_values(tmp_path):
    epochs = np.arange(20)
    loss = np.exp(-epochs / 5)
    history = history_of(loss=loss, val_loss=loss + 0.2, lr=np.full(20, 0.1))
    width, height, pixels = read_png(_plotting.curves_png(history, tmp_path / "c.png"))
    assert (width, height) == (500, 400)  # one panel: lr is not drawn
    for color, values in ((_plotting.TRAIN_COLOR, loss), (_plotting.VALIDATION_COLOR,
                                                          loss + 0.2)):
        rows, cols = np.nonzero(np.all(pixels == np.array(color, np.uint8), axis=-1))
        assert rows.size > 300
        # A falling curve: its left end is drawn higher up than its right end
        # (the legend, top right, lies between the two).
        left, right = cols.min(), cols.max()
        assert rows[cols == left].min() < rows[cols == right].max() - 100
    # The validation curve lies above the training curve, column by column
    # (the lowest pixel of a colour in a column is its curve's, not the legend's).
    train = np.all(pixels == np.array(_plotting.TRAIN_COLOR, np.uint8), axis=-1)
    val = np.all(pixels == np.array(_plotting.VALIDATION_COLOR, np.uint8), axis=-1)
    shared = [c for c in range(pixels.shape[1]) if train[:, c].any() and val[:, c].any()]
    assert len(shared) > 300
    assert all(np.nonzero(val[:, c])[0].max() < np.nonzero(train[:, c])[0].max()
               for c in shared)


def test_axes_ticks_and_labels_are_drawn(tmp_path):
    history = history_of(loss=[1.0, 0.5, 0.25, 0.2])
    _, _, pixels = read_png(_plotting.curves_png(history, tmp_path / "c.png"))
    ink = np.all(pixels == np.array(_plotting._INK, np.uint8), axis=-1)
    left = np.argmax(ink.sum(axis=0) > 200)   # the frame's left edge: a long ink column
    assert 20 < left < 150
    assert ink[:, :left - 5].sum() > 200      # tick labels and the rotated "loss"
    assert ink[-60:, :].sum() > 200           # tick labels and "epoch" underneath


def test_a_single_epoch_and_nan_values_are_drawn(tmp_path):
    history = history_of(loss=[0.5], val_loss=[float("nan")])
    _, _, pixels = read_png(_plotting.curves_png(history, tmp_path / "c.png"))
    assert count_color(pixels, _plotting.TRAIN_COLOR) > 30   # a dot, and the legend


@pytest.mark.parametrize("history, keys, match", [
    (History(), None, "nothing to plot"),
    (history_of(loss=[1.0, 0.5]), ["accuracy"], r"keys not in the history: \['accuracy'\]"),
    (history_of(loss=[1.0, 0.5], val_loss=[1.0]), None, r"history\['val_loss'\] has 1"),
])
def test_curves_png_rejects_what_it_cannot_draw(history, keys, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        _plotting.curves_png(history, tmp_path / "c.png", keys=keys)


def test_write_png_round_trips(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    width, height, pixels = read_png(_plotting.write_png(tmp_path / "i.png", image))
    assert (width, height) == (5, 7)
    np.testing.assert_array_equal(pixels, image)


@pytest.mark.parametrize("image", [
    np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.uint8),
    np.zeros((4, 4, 4), np.uint8), np.zeros((0, 4, 3), np.uint8)])
def test_write_png_rejects_other_images(image, tmp_path):
    with pytest.raises(ValueError, match=r"uint8 array of shape \(height, width, 3\)"):
        _plotting.write_png(tmp_path / "i.png", image)


@pytest.mark.parametrize("low, high, expected, decimals", [
    (0.0, 1.0, [0.0, 0.5, 1.0], 1),
    (-0.45, 30.45, [0, 10, 20, 30], 0),
    (0.62, 1.02, [0.7, 0.8, 0.9, 1.0], 1),
    (2e-4, 9e-4, [2e-4, 4e-4, 6e-4, 8e-4], 4),
])
def test_nice_ticks(low, high, expected, decimals):
    ticks, places = _plotting.nice_ticks(low, high)
    np.testing.assert_allclose(ticks, expected, rtol=1e-12, atol=1e-15)
    assert places == decimals


@pytest.mark.parametrize("value, decimals, label", [
    (0.5, 1, "0.5"), (0.0, 4, "0.0000"), (10000.0, 0, "10000"), (2e11, 0, "2e11"),
    (-3e12, 0, "-3e12"), (1.5e-7, 8, "1.5e-7"), (0.0, 9, "0")])
def test_tick_labels_stay_short(value, decimals, label):
    assert _plotting.tick_label(value, decimals) == label


def test_a_diverged_loss_is_drawn_with_short_labels(tmp_path):
    history = history_of(loss=np.logspace(12, 3, 10), accuracy=np.linspace(1e-7, 3e-7, 10))
    width, height, pixels = read_png(_plotting.curves_png(history, tmp_path / "c.png"))
    assert (width, height) == (1000, 400)
    assert count_color(pixels, _plotting.TRAIN_COLOR) > 600


@pytest.mark.parametrize("low, high", [(1.0, 1.0), (2.0, 1.0), (0.0, float("inf")),
                                       (float("nan"), 1.0)])
def test_nice_ticks_rejects_empty_or_infinite_ranges(low, high):
    with pytest.raises(ValueError, match="tick range"):
        _plotting.nice_ticks(low, high)


def test_the_font_has_a_glyph_for_every_character_of_metric_names():
    for char in "0123456789.-+_ abcdefghijklmnopqrstuvwxyz":
        rows = _plotting._GLYPHS[char].split()
        assert len(rows) <= 9 and all(len(row) == 5 and set(row) <= set(".#")
                                      for row in rows), char
    digits = [_plotting.text_mask(d, scale=1).tobytes() for d in "0123456789"]
    assert len(set(digits)) == 10
    mask = _plotting.text_mask("loss", scale=2)
    assert mask.shape == (18, 2 * (4 * 5 + 3))   # 4 glyphs, 3 one-pixel gaps
