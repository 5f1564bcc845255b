"""`hybrid-jax inspect` / `hybrid_jax.viz`: patch views agree with the model, and every output is sound."""

import html.parser
import os
import re
import subprocess
import sys

import jax.numpy as jnp
import matplotlib.image
import numpy as np
import pytest
from flax import nnx

from hybrid_jax import cli
from hybrid_jax.cli import inspect as hinspect
from hybrid_jax.model import BLT
from hybrid_jax.storage.checkpoint import save_model
from model_helpers import tiny
from hybrid_jax.viz import (figure_size, patch_view, plot_png, render_ansi, render_html, render_plain,
                            render_text)
from hybrid_jax.viz.render import ANSI_BACKGROUNDS
from hybrid_jax.viz.view import describe

pytestmark = pytest.mark.integration

TEXT = "The quick brown fox jumps over the lazy dog, then naps. Entropy decides where patches start!"


def model_lengths(model, data: bytes) -> list[int]:
    """The model's own patch lengths for the real bytes: without BOS's patch and the unseen next byte."""
    ids = jnp.asarray([[1] + [b + 4 for b in data]], jnp.int32)
    lengths = np.asarray(model.patch(ids).lengths[0])
    lengths = lengths[lengths > 0][1:]
    if lengths.sum() > len(data):
        lengths = lengths[:-1]
    return lengths.tolist()


def bracket_lengths(line: str) -> list[int]:
    """Patch lengths in characters of a `[..][..]` line (ASCII text: one character per byte)."""
    assert re.fullmatch(r"(\[[^\[\]]*\])+", line), line
    return [len(p) for p in re.findall(r"\[([^\[\]]*)\]", line)]


class PageParser(html.parser.HTMLParser):
    """Collects the views, their patch spans (data-bytes, text) and cell titles; checks tag nesting."""

    VOID = {"meta", "br"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.views, self.in_patch = [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag not in self.VOID:
            self.stack.append(tag)
        cls = attrs.get("class", "").split()
        if tag == "section" and "view" in cls:
            self.views.append([])
        if tag == "span" and "patch" in cls:
            self.in_patch = {"bytes": int(attrs["data-bytes"]), "start": int(attrs["data-start"]),
                             "text": "", "titles": []}
            self.views[-1].append(self.in_patch)
        elif tag == "span" and "c" in cls:
            self.in_patch["titles"].append(attrs["title"])

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (self.stack, tag)
        self.stack.pop()
        if tag == "span" and "span" not in self.stack:
            self.in_patch = None

    def handle_data(self, data):
        if self.in_patch is not None:
            self.in_patch["text"] += data


def parse_page(page: str) -> list[list[dict]]:
    p = PageParser()
    p.feed(page)
    p.close()
    assert p.stack == [], p.stack
    return p.views


@pytest.fixture(scope="module")
def threshold():
    """A threshold that cuts TEXT into patches of mixed lengths under the random tiny model."""
    ents = patch_view(BLT(tiny(), nnx.Rngs(0)), TEXT).entropies
    return float(np.median(ents[1:]))


@pytest.fixture(scope="module")
def model(threshold):
    return BLT(tiny("entropy", threshold=threshold, max_patch_length=6), nnx.Rngs(0))


@pytest.fixture(scope="module")
def workdir(model, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("inspect") / "run1")
    save_model(model, path)
    return path


def run_cli(capsys, *argv):
    rc = cli.run(hinspect.main, list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("mode,extra", [("entropy", {}), ("static", dict(patch_size=3)),
                                        ("space", dict(max_patch_length=4)),
                                        ("entropy", dict(threshold_add=0.0))])
def test_shown_patches_are_the_models_patches(mode, extra, threshold):
    model = BLT(tiny(mode, threshold=threshold, **extra), nnx.Rngs(0))
    data = TEXT.encode()
    expected = model_lengths(model, data)
    view = patch_view(model, data)
    assert len(set(expected)) > 1, expected  # the check below means something
    assert view.lengths.tolist() == expected
    assert bracket_lengths(render_plain(view)) == expected
    (patches,) = parse_page(render_html([view]))
    assert [p["bytes"] for p in patches] == expected
    assert [p["start"] for p in patches] == np.cumsum([0] + expected[:-1]).tolist()
    assert "".join(p["text"] for p in patches) == TEXT
    assert (view.entropies is not None) == (mode == "entropy")
    assert ("rise over 0" in describe(view)) == ("threshold_add" in extra)


def test_overrides_match_a_model_built_with_them(model, threshold):
    data = TEXT.encode()
    for kwargs, cfg in [(dict(threshold=threshold + 0.02), tiny(threshold=threshold + 0.02, max_patch_length=6)),
                        (dict(mode="static", patch_size=5, max_patch_length=0), tiny("static", patch_size=5)),
                        (dict(mode="space", max_patch_length=3), tiny("space", max_patch_length=3))]:
        view = patch_view(model, data, **kwargs)
        assert view.lengths.tolist() == model_lengths(BLT(cfg, nnx.Rngs(0)), data), kwargs


def test_entropy_bars_line_up_with_patch_starts(model, threshold):
    view = patch_view(model, TEXT, max_patch_length=0)
    assert view.starts[0] and view.entropies.shape == (len(TEXT),)
    np.testing.assert_array_equal(view.starts[1:], view.entropies[1:] > threshold)


def test_png_is_an_image_of_the_stated_size(model, tmp_path):
    view = patch_view(model, TEXT[:100])  # 92 bytes: two rows of 64
    path = str(tmp_path / "p.png")
    size = plot_png(view, path, per_row=64, dpi=100)
    w, h = figure_size(len(TEXT), 1, 64)
    assert (w, h) == (64 * 0.25 + 1.5, 2 * 2.0 + 0.75)
    assert size == (1750, 475)
    img = matplotlib.image.imread(path)
    assert img.shape[:2] == (475, 1750) and img.shape[2] in (3, 4)
    assert img[..., :3].std() > 0.05  # something was drawn


def test_png_without_entropies_and_short_text(tmp_path):
    model = BLT(tiny("space"), nnx.Rngs(0))
    view = patch_view(model, "hi there")
    path = str(tmp_path / "s.png")
    assert figure_size(8) == (16 * 0.25 + 1.5, 2.0 + 0.75)  # short texts get at least 16 columns
    assert plot_png(view, path, dpi=40) == (220, 110)
    assert matplotlib.image.imread(path).shape[:2] == (110, 220)


def test_html_escapes_and_shows_entropy_on_hover(model):
    text = 'a <b>bold</b> & "quoted" \'x\' </span><script>alert(1)</script>\nnext line'
    view = patch_view(model, text)
    page = render_html([view], title="<t>")
    assert "<script>" not in page and "<b>" not in page and "<t>" not in page
    (patches,) = parse_page(page)
    assert [p["bytes"] for p in patches] == view.lengths.tolist()
    shown = "".join(p["text"] for p in patches)
    assert shown == text.replace("\n", "\u21b5\n")  # newline: a visible ↵, then a real line break
    titles = [t for p in patches for t in p["titles"]]
    assert len(titles) == len(text) and all("entropy" in t and "nats" in t for t in titles)
    first = float(re.search(r"entropy ([\d.]+) nats", titles[0]).group(1))
    assert first == pytest.approx(float(view.entropies[0]), abs=1e-3)


def test_ansi_alternates_backgrounds_per_patch(model):
    view = patch_view(model, TEXT)
    line = render_ansi(view)
    codes = re.findall(r"\x1b\[[0-9;]*m", line)
    backgrounds = [c for c in codes if c in ANSI_BACKGROUNDS]
    assert len(backgrounds) == len(view.lengths)
    assert backgrounds == [ANSI_BACKGROUNDS[k % 2] for k in range(len(backgrounds))]
    assert re.sub(r"\x1b\[[0-9;]*m", "", line) == TEXT
    assert "\n" not in render_text([view], color=True).rstrip("\n").split("\n")[0]


@pytest.mark.slow  # one more model
def test_non_utf8_bytes_show_replacement_characters(model, tmp_path):
    data = b"ok \xff\xfe bad \xc3( \xe2\x82 end \xed\xa0\x80\x00\x1b[31m"  # invalid, truncated, surrogate, controls
    view = patch_view(model, data)
    assert view.lengths.tolist() == model_lengths(model, data)
    plain = render_plain(view)
    assert "\ufffd" in plain and "\x1b" not in plain and "\x00" not in plain
    (patches,) = parse_page(render_html([view]))
    assert [p["bytes"] for p in patches] == view.lengths.tolist()
    assert sum(len(p["titles"]) for p in patches) >= 1
    plot_png(view, str(tmp_path / "bad.png"))
    assert os.path.getsize(tmp_path / "bad.png") > 0


def test_a_character_cut_by_a_patch_shows_once_with_dots_after():
    # Space patching ends a patch at a UTF-8 lead byte, so "é" (c3 a9) is cut in two.
    view = patch_view(BLT(tiny("space"), nnx.Rngs(0)), "café ok")
    assert view.lengths.tolist() == [4, 2, 2]
    assert render_plain(view) == "[café][\u00b7 ][ok]"


def test_empty_text_is_an_error(model):
    with pytest.raises(ValueError, match="empty text"):
        patch_view(model, b"")


@pytest.mark.slow  # inspect subprocess
def test_cli_prints_brackets_when_not_a_tty(workdir, model, capsys):
    rc, out, err = run_cli(capsys, "--ckpt", workdir, "--text", TEXT)
    assert rc == 0, err
    line, summary = out.rstrip("\n").split("\n")
    expected = model_lengths(model, TEXT.encode())
    assert bracket_lengths(line) == expected
    assert summary.startswith(f"{len(TEXT)} bytes, {len(expected)} patches, patch length mean ")
    assert f"max {max(expected)}" in summary and "mean entropy" in summary
    rc, out, _ = run_cli(capsys, "--ckpt", workdir, "--text", TEXT, "--color", "always")
    assert rc == 0 and out.count(ANSI_BACKGROUNDS[0]) + out.count(ANSI_BACKGROUNDS[1]) == len(expected)


def test_cli_truncates_long_input_with_a_note(workdir, capsys):
    rc, out, err = run_cli(capsys, "--ckpt", workdir, "--text", "h\u00e9llo world", "--max_bytes", "2")
    assert rc == 0 and "truncated to the first 2 bytes" in err
    assert out.split("\n")[1].startswith("2 bytes") and "\ufffd" in out.split("\n")[0]  # half of é


def test_cli_compare_thresholds(workdir, threshold, tmp_path, capsys):
    png, page = str(tmp_path / "c.png"), str(tmp_path / "c.html")
    t1, t2 = threshold - 0.02, threshold + 0.02
    rc, out, err = run_cli(capsys, "--ckpt", workdir, "--text", TEXT, "--threshold", str(t1),
                           "--compare_threshold", str(t2), "--out", png, "--html", page)
    assert rc == 0, err
    lines = out.rstrip("\n").split("\n")
    assert [s[:3] for s in lines] == ["A: ", "B: ", "A: ", "B: "]
    for line, t in zip(lines[:2], (t1, t2)):
        want = model_lengths(BLT(tiny(threshold=t, max_patch_length=6), nnx.Rngs(0)), TEXT.encode())
        assert bracket_lengths(line[3:]) == want
    assert f"threshold {t1:.4g}" in lines[2] and f"threshold {t2:.4g}" in lines[3]
    w, h = figure_size(len(TEXT), 2)
    assert matplotlib.image.imread(png).shape[:2] == (round(h * 100), round(w * 100))
    with open(page, encoding="utf-8") as f:
        views = parse_page(f.read())
    assert len(views) == 2
    assert [[p["bytes"] for p in v] for v in views] == [bracket_lengths(s[3:]) for s in lines[:2]]


def test_cli_compare_checkpoints(workdir, threshold, tmp_path, capsys):
    other = BLT(tiny(threshold=threshold), nnx.Rngs(1))
    save_model(other, str(tmp_path / "run2"))
    rc, out, err = run_cli(capsys, "--ckpt", workdir, "--compare", "--compare_ckpt", str(tmp_path / "run2"),
                           "--text", TEXT, "--out", str(tmp_path / "c.png"))
    assert rc == 0, err
    lines = out.rstrip("\n").split("\n")
    assert len(lines) == 4
    assert bracket_lengths(lines[1][3:]) == model_lengths(other, TEXT.encode())
    assert lines[2].startswith("A: run1: ") and lines[3].startswith("B: run2: ")


def test_cli_reads_non_utf8_files_and_hf_directories(model, tmp_path, capsys):
    from hybrid_jax.storage.hf import to_hf

    hf = str(tmp_path / "hf")
    to_hf(model, model.config, hf)
    path = tmp_path / "in.bin"
    path.write_bytes(b"abc\xff\xfe def \xc3")
    rc, out, err = run_cli(capsys, "--ckpt", hf, "--file", str(path), "--html", str(tmp_path / "x.html"))
    assert rc == 0, err
    assert "\ufffd" in out.split("\n")[0] and out.split("\n")[1].startswith("11 bytes")
    with open(tmp_path / "x.html", encoding="utf-8") as f:
        (patches,) = parse_page(f.read())
    assert [p["bytes"] for p in patches] == model_lengths(model, path.read_bytes())


@pytest.mark.parametrize("args,fragment", [
    (["--ckpt", "/nonexistent/ckpt", "--text", "x"], "no such checkpoint directory"),
    (["--text", ""], "empty text"),
    (["--file", "/nonexistent/file.txt"], "No such file"),
    ([], "--text --file is required"),
    (["--text", "x", "--patching", "static", "--threshold", "2"], "only to entropy patching"),
    (["--text", "x", "--patch_size", "0", "--patching", "static"], "patch_size must be >= 1"),
    (["--text", "x", "--compare"], "--compare needs"),
    (["--text", "x", "--per_row", "0"], "--per_row must be >= 1"),
])
def test_cli_bad_input_is_one_line_exit_2(args, fragment, workdir, capsys):
    if "--ckpt" not in args:
        args = ["--ckpt", workdir] + args
    rc, out, err = run_cli(capsys, *args)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err


def test_cli_rejects_a_directory_that_is_no_model(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"something": 1}')
    rc, _, err = run_cli(capsys, "--ckpt", str(tmp_path), "--text", "x")
    assert rc == 2 and err.count("\n") == 1 and "neither a hybrid_jax workdir" in err


@pytest.mark.slow  # inspect subprocesses
def test_module_runs_as_a_program(workdir, tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    png = str(tmp_path / "m.png")
    r = subprocess.run([sys.executable, "-m", "hybrid_jax", "inspect", "--ckpt", workdir, "--text", "hello there",
                        "--out", png], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("[") and os.path.isfile(png)
    r = subprocess.run([sys.executable, "-m", "hybrid_jax", "inspect", "--ckpt", workdir, "--text", ""],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and r.stderr == "error: empty text: nothing to patch\n"
