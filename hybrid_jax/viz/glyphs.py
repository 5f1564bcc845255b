"""What each byte looks like on screen.

Patches are byte spans, so they can cut a UTF-8 character in two. The display unit is a `Cell`: a run of
bytes inside one patch. A character whose bytes all sit in one patch is one cell showing the character.
A character cut by a patch boundary shows the character in the patch of its first byte and one `·` per
byte in the later patches. Bytes that are not valid UTF-8 show U+FFFD, one per byte. Invisible or
terminal-unsafe characters (controls, format characters such as bidi overrides, line separators) show
as visible stand-ins, so no input can garble a terminal or hide itself.
"""

from __future__ import annotations

import unicodedata
from typing import NamedTuple

REPLACEMENT = "\ufffd"
CONTINUATION = "\u00b7"  # "·", a byte of a character shown in an earlier patch
_NAMED = {"\n": "\u21b5", "\t": "\u21e5", "\x7f": "\u2421"}  # ↵ ⇥ ␡


class Cell(NamedTuple):
    """Bytes `[start, end)` of the text, all in one patch, shown as `text`.

    `char` is the character the bytes belong to (None for invalid UTF-8); `whole` is False when a patch
    boundary cuts that character.
    """
    start: int
    end: int
    text: str
    char: str | None
    whole: bool


def _utf8_len(lead: int) -> int:
    """Length of the UTF-8 sequence a lead byte announces; 0 for bytes that cannot lead one."""
    if lead < 0x80:
        return 1
    if 0xC2 <= lead < 0xE0:
        return 2
    if 0xE0 <= lead < 0xF0:
        return 3
    if 0xF0 <= lead < 0xF5:
        return 4
    return 0


def char_spans(data: bytes) -> list[tuple[int, int, str | None]]:
    """`data` as (start, end, char): each valid UTF-8 character, and each other byte alone (char None)."""
    out, i = [], 0
    while i < len(data):
        k = _utf8_len(data[i])
        if k:
            try:
                # Strict decoding also rejects overlong forms, surrogates and truncated sequences.
                out.append((i, i + k, data[i:i + k].decode("utf-8")))
                i += k
                continue
            except UnicodeDecodeError:
                pass
        out.append((i, i + 1, None))
        i += 1
    return out


def glyph(ch: str | None) -> str:
    """A visible, single-line, terminal-safe stand-in for one character (None: an invalid byte)."""
    if ch is None:
        return REPLACEMENT
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if code < 0x20:
        return chr(0x2400 + code)  # Unicode "control pictures", e.g. ␀ ␍
    category = unicodedata.category(ch)
    if ch != REPLACEMENT and (category[0] == "C" or category in ("Zl", "Zp")):
        return f"<U+{code:04X}>"
    if category[0] == "M":
        return "\u25cc" + ch  # a combining mark on a dotted circle, so it cannot merge with a neighbour
    return ch


def patch_cells(data: bytes, spans: list[tuple[int, int]]) -> list[list[Cell]]:
    """The cells of each patch; `spans` are the patches' `[start, end)` byte ranges, covering `data`."""
    chars = char_spans(data)
    out, c = [], 0
    for a, b in spans:
        cells = []
        while c < len(chars) and chars[c][0] < b:
            cs, ce, ch = chars[c]
            lo, hi = max(cs, a), min(ce, b)
            whole = lo == cs and hi == ce
            text = glyph(ch) if lo == cs else CONTINUATION * (hi - lo)
            cells.append(Cell(lo, hi, text, ch, whole))
            if ce > b:
                break  # the rest of this character belongs to the next patch
            c += 1
        out.append(cells)
    return out


def byte_labels(data: bytes) -> list[str]:
    """One short label per byte (for plot ticks): the character at its first byte, `·` after it."""
    labels = [""] * len(data)
    for start, end, ch in char_spans(data):
        labels[start] = "\u2423" if ch == " " else glyph(ch)  # ␣: a space must be visible on an axis
        for i in range(start + 1, end):
            labels[i] = CONTINUATION
    return labels
