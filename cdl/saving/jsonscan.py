"""Bounding JSON text before it is parsed: ``scan_json`` counts, on the raw
bytes, what a parser would build.

Used for the model file's header (``cdl.saving.reader``) and for files of
other packages (``cdl.text.storage``); it imports nothing of cdl but the
format's limits, so that any package may use it.
"""
import numpy as np

from cdl.saving import format as spec

__all__ = ["scan_json", "SCAN_CHUNK"]

#: Header bytes scanned at a time before parsing (one NumPy pass each).
SCAN_CHUNK = 2 ** 18


def scan_json(raw, max_items=spec.MAX_JSON_ITEMS, max_depth=spec.MAX_DEPTH,
              max_digits=spec.MAX_DIGITS):
    """Count, in the JSON text ``raw``, what lies outside its strings: the
    values and keys (commas, colons and opening brackets), the object members
    (colons), the deepest nesting, the longest run of digits, and whether the
    brackets pair up. NumPy over fixed-size chunks, carrying the state across
    them (inside a string or not, the run of backslashes and of digits, the
    depth), so that the work is linear and the memory a few chunks whatever
    the text. A quote ends or starts a string unless an odd run of
    backslashes precedes it. Counting stops early once ``max_items``,
    ``max_depth`` or ``max_digits`` is passed (the text is then refused
    whatever follows, and ``paired`` is meaningless). Returns (items,
    members, depth, digits, paired)."""
    data = np.frombuffer(raw, dtype=np.uint8)
    inside = False
    backslashes = digits = depth = deepest = longest = items = members = 0
    paired = True
    for start in range(0, data.size, SCAN_CHUNK):
        a = data[start:start + SCAN_CHUNK]
        index = np.arange(a.size)
        # The last byte at or before each position that is not a backslash.
        last = np.maximum.accumulate(np.where(a == ord("\\"), -1, index))
        quotes = np.flatnonzero(a == ord('"'))
        before = np.maximum(quotes - 1, 0)
        run = np.where(quotes == 0, backslashes,
                       np.where(last[before] < 0, quotes + backslashes, quotes - 1 - last[before]))
        toggles = np.zeros(a.size, dtype=np.int8)
        toggles[quotes[run % 2 == 0]] = 1
        in_string = (np.cumsum(toggles, dtype=np.int32) % 2).astype(bool) ^ inside
        outside = a[~in_string]
        inside = bool(in_string[-1])
        backslashes = int(a.size if last[-1] < 0 else a.size - 1 - last[-1]) + (
            backslashes if last[-1] < 0 else 0)
        opening = (outside == ord("[")) | (outside == ord("{"))
        closing = (outside == ord("]")) | (outside == ord("}"))
        colons = int(np.count_nonzero(outside == ord(":")))
        members += colons
        items += colons + int(np.count_nonzero(outside == ord(","))) + int(opening.sum())
        steps = opening[opening | closing].astype(np.int32) * 2 - 1
        if steps.size:
            levels = depth + np.cumsum(steps)
            deepest = max(deepest, int(levels.max()))
            paired = paired and int(levels.min()) >= 0
            depth = int(levels[-1])
        is_digit = (outside >= ord("0")) & (outside <= ord("9"))
        if is_digit.size:
            spot = np.arange(is_digit.size)
            last_other = np.maximum.accumulate(np.where(is_digit, -1, spot))
            runs = spot - last_other + np.where(last_other < 0, digits, 0)
            longest = max(longest, int(runs[is_digit].max(initial=0)))
            digits = int(runs[-1]) if is_digit[-1] else 0
        if items > max_items or deepest > max_depth or longest > max_digits:
            break   # refused whatever follows
    return items, members, deepest, longest, paired and depth == 0
