"""PNG of the patches: per-byte entropy bars with the threshold line (entropy patching) or per-patch
length bars (static, space), bytes as x tick labels, patches shaded in alternating colours and patch
starts marked by vertical lines. Long texts wrap into rows of `per_row` bytes; compared views stack."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hybrid_jax.viz.glyphs import byte_labels  # noqa: E402
from hybrid_jax.viz.render import HTML_BACKGROUNDS  # noqa: E402
from hybrid_jax.viz.view import PatchView, summary  # noqa: E402

# Inches; multiples of 1/4, so that sizes in pixels are whole numbers when dpi is a multiple of 4.
BYTE_WIDTH = 0.25
MARGIN_WIDTH = 1.5
ROW_HEIGHT = 2.0
TITLE_HEIGHT = 0.75
MIN_COLUMNS = 16
BAR, START_BAR, BOUNDARY, THRESHOLD = "#5b7fb0", "#e0812b", "#333333", "#c0392b"


def figure_size(n_bytes: int, n_views: int = 1, per_row: int = 64) -> tuple[float, float]:
    """(width, height) in inches of the figure for `n_views` views of an `n_bytes` text."""
    columns = max(min(per_row, n_bytes), MIN_COLUMNS)
    rows = math.ceil(n_bytes / per_row)
    return columns * BYTE_WIDTH + MARGIN_WIDTH, n_views * (rows * ROW_HEIGHT + TITLE_HEIGHT)


# Fallbacks for characters DejaVu Sans lacks (CJK, ...), used when installed.
FALLBACK_FONTS = ("Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans", "Droid Sans Fallback", "Arial Unicode MS")


def _font_family() -> list[str]:
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return ["DejaVu Sans"] + [f for f in FALLBACK_FONTS if f in installed]


def _tex_safe(s: str) -> str:
    """Keep `$` literal: matplotlib reads text between two `$` as math."""
    return s.replace("$", r"\$")


def _y_top(views: Sequence[PatchView]) -> float:
    """One y range for every row of every view, so that bars compare across panels."""
    if views[0].entropies is not None and all(v.entropies is not None for v in views):
        return 1.1 * max(max(float(v.entropies.max()), v.threshold) for v in views)
    return 1.15 * max(int(v.lengths.max()) for v in views)


def _draw_row(ax, view: PatchView, lo: int, hi: int, columns: int, labels: list[str], y_top: float):
    """Bytes `[lo, hi)` of `view` on one axes."""
    x = np.arange(lo, hi)
    for k, (a, b) in enumerate(view.spans):
        if b <= lo or a >= hi:
            continue
        ax.axvspan(max(a, lo) - 0.5, min(b, hi) - 0.5, color=HTML_BACKGROUNDS[k % 2], lw=0, zorder=0)
        if view.entropies is None:  # one bar per patch, as tall as the patch is long
            ax.bar((max(a, lo) + min(b, hi) - 1) / 2, b - a, width=min(b, hi) - max(a, lo) - 0.2,
                   color=BAR, zorder=2)
        if a >= lo:
            ax.axvline(a - 0.5, color=BOUNDARY, lw=1.2, zorder=3)
    if view.entropies is not None:
        colors = np.where(view.starts[lo:hi], START_BAR, BAR)
        ax.bar(x, view.entropies[lo:hi], width=0.8, color=colors, zorder=2)
        ax.axhline(view.threshold, color=THRESHOLD, ls="--", lw=1.2, zorder=4)
        ax.set_ylabel("entropy (nats)", fontsize=8)
    else:
        ax.set_ylabel("patch length", fontsize=8)
    ax.set_xlim(lo - 0.5, lo + columns - 0.5)
    ax.set_ylim(0, y_top)
    ax.set_xticks(x, [_tex_safe(s) for s in labels[lo:hi]], fontsize=8)
    ax.tick_params(axis="x", length=0)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(f"bytes {lo}-{hi - 1}", loc="left", fontsize=7, color="#555")


def _draw_view(fig, view: PatchView, per_row: int, y_top: float, heading: str):
    n = len(view.data)
    rows = math.ceil(n / per_row)
    columns = max(min(per_row, n), MIN_COLUMNS)
    labels = byte_labels(view.data)
    axes = np.atleast_1d(fig.subplots(rows, 1))
    for r, ax in enumerate(axes):
        _draw_row(ax, view, r * per_row, min(n, (r + 1) * per_row), columns, labels, y_top)
    fig.suptitle(_tex_safe(heading + summary(view)), fontsize=9, x=0.01, ha="left")
    if view.entropies is not None:
        handles = [plt.Rectangle((0, 0), 1, 1, color=START_BAR), plt.Line2D([], [], color=THRESHOLD, ls="--")]
        fig.legend(handles, ["byte starts a patch", "threshold"], fontsize=7, loc="outside upper right",
                   ncols=2, frameon=False)


def plot_png(views: PatchView | Sequence[PatchView], path: str, per_row: int = 64, dpi: int = 100
             ) -> tuple[int, int]:
    """Write the PNG of one view, or of several stacked top to bottom (compare mode), to `path`.

    All views must be of the same text. Returns the image's (width, height) in pixels: `figure_size(...)`
    times `dpi` (whole numbers when dpi is a multiple of 4, e.g. the default 100).
    """
    views = [views] if isinstance(views, PatchView) else list(views)
    if per_row < 1:
        raise ValueError(f"per_row must be >= 1, got {per_row}")
    width, height = figure_size(len(views[0].data), len(views), per_row)
    with matplotlib.rc_context({"font.family": _font_family()}):
        _plot(views, path, per_row, dpi, (width, height))
    return round(width * dpi), round(height * dpi)


def _plot(views: list[PatchView], path: str, per_row: int, dpi: int, size: tuple[float, float]):
    fig = plt.figure(figsize=size, dpi=dpi, layout="constrained")
    try:
        subfigs = np.atleast_1d(fig.subfigures(len(views), 1)) if len(views) > 1 else [fig]
        y_top = _y_top(views)
        for k, (sub, view) in enumerate(zip(subfigs, views)):
            _draw_view(sub, view, per_row, y_top, f"{chr(ord('A') + k)}: " if len(views) > 1 else "")
        with warnings.catch_warnings():
            # Fonts without a glyph (e.g. CJK) draw a box; that is fine for a diagnostic plot.
            warnings.filterwarnings("ignore", message="Glyph .* missing from")
            fig.savefig(path, dpi=dpi)  # no bbox_inches="tight": the size stays what figure_size says
    finally:
        plt.close(fig)
