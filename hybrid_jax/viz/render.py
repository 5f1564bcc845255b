"""Patches as text: `[..]` brackets, ANSI background colours, or a self-contained HTML page."""

from __future__ import annotations

import html
from collections.abc import Sequence

from hybrid_jax.viz.glyphs import Cell, patch_cells
from hybrid_jax.viz.view import PatchView, summary

# Two light backgrounds with black text, alternating per patch (xterm-256 colours 153 and 223).
ANSI_BACKGROUNDS = ("\x1b[38;5;16;48;5;153m", "\x1b[38;5;16;48;5;223m")
ANSI_RESET = "\x1b[0m"
HTML_BACKGROUNDS = ("#afd7ff", "#ffd7af")  # the same two colours


def patch_texts(view: PatchView) -> list[str]:
    """The on-screen text of each patch (see `hybrid_jax.viz.glyphs` for how bytes are shown)."""
    return ["".join(c.text for c in cells) for cells in patch_cells(view.data, view.spans)]


def render_plain(view: PatchView) -> str:
    """One line, each patch in brackets: `[Hel][lo ][world]`."""
    return "".join(f"[{t}]" for t in patch_texts(view))


def render_ansi(view: PatchView) -> str:
    """One line, patches on alternating background colours (ANSI escapes; for terminals)."""
    return "".join(f"{ANSI_BACKGROUNDS[k % 2]}{t}{ANSI_RESET}" for k, t in enumerate(patch_texts(view)))


def render_text(views: Sequence[PatchView], color: bool) -> str:
    """Terminal output: one patch line per view (prefixed A:, B: when comparing), then the summaries."""
    render = render_ansi if color else render_plain
    if len(views) == 1:
        return f"{render(views[0])}\n{summary(views[0])}\n"
    names = [chr(ord("A") + k) for k in range(len(views))]
    lines = [f"{n}: {render(v)}" for n, v in zip(names, views)]
    lines += [f"{n}: {summary(v)}" for n, v in zip(names, views)]
    return "\n".join(lines) + "\n"


def _cell_title(view: PatchView, cell: Cell) -> str:
    """Hover text of a cell: byte offsets, character, hex bytes and per-byte entropies."""
    where = f"byte {cell.start}" if cell.end - cell.start == 1 else f"bytes {cell.start}-{cell.end - 1}"
    if cell.char is None:
        what = "invalid UTF-8"
    else:
        what = f"U+{ord(cell.char):04X} {cell.char!r}" + ("" if cell.whole else " (split by a patch boundary)")
    hexes = " ".join(f"0x{b:02x}" for b in view.data[cell.start:cell.end])
    title = f"{where}: {what} ({hexes})"
    if view.entropies is not None:
        ents = ", ".join(f"{float(e):.3f}" for e in view.entropies[cell.start:cell.end])
        title += f"; entropy {ents} nats"
    return title


def _cell_html(view: PatchView, cell: Cell) -> str:
    text = html.escape(cell.text)
    if cell.char == "\n":
        text += "\n"  # show ↵ and also break the line (the text block keeps white space)
    return f'<span class="c" title="{html.escape(_cell_title(view, cell))}">{text}</span>'


def _view_html(view: PatchView, name: str) -> str:
    spans = []
    for k, ((a, b), cells) in enumerate(zip(view.spans, patch_cells(view.data, view.spans))):
        inner = "".join(_cell_html(view, c) for c in cells)
        spans.append(f'<span class="patch p{k % 2}" data-start="{a}" data-bytes="{b - a}">{inner}</span>')
    head = f"{name}: " if name else ""
    return (f'<section class="view">\n<h2>{html.escape(head + (view.label or "patches"))}</h2>\n'
            f'<p class="summary">{html.escape(summary(view))}</p>\n'
            f'<div class="text">{"".join(spans)}</div>\n</section>')


_STYLE = f"""
body {{ font-family: sans-serif; margin: 2em; }}
.text {{ font-family: monospace; font-size: 18px; line-height: 1.8; white-space: pre-wrap;
        overflow-wrap: anywhere; }}
.patch {{ border-left: 1px solid #0004; }}
.p0 {{ background: {HTML_BACKGROUNDS[0]}; }}
.p1 {{ background: {HTML_BACKGROUNDS[1]}; }}
.c:hover {{ outline: 2px solid #c00; }}
.summary {{ color: #444; }}
"""


def render_html(views: Sequence[PatchView], title: str = "BLT patches") -> str:
    """A self-contained HTML page: one block per view, patches on alternating backgrounds, and each
    character's bytes and entropies in its hover title. All text is escaped."""
    names = [chr(ord("A") + k) if len(views) > 1 else "" for k in range(len(views))]
    blocks = "\n".join(_view_html(v, n) for v, n in zip(views, names))
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n"
            f"<p>Patches alternate background colours; hover a character for its bytes and entropy.</p>\n"
            f"{blocks}\n</body>\n</html>\n")
