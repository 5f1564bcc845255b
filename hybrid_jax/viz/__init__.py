"""Pictures of how a BLT cuts bytes into patches: terminal text, HTML and PNG (see `hybrid-jax inspect`)."""

from hybrid_jax.viz.plot import figure_size, plot_png
from hybrid_jax.viz.render import render_ansi, render_html, render_plain, render_text
from hybrid_jax.viz.view import PatchView, patch_view, summary

__all__ = ["PatchView", "patch_view", "summary", "render_plain", "render_ansi", "render_text",
           "render_html", "plot_png", "figure_size"]
