"""See the patches: `python -m hybrid_jax inspect --ckpt DIR --text "..." [--out plot.png] [--html page.html]`.

Prints the text cut into patches (alternating background colours on a terminal, `[..]` brackets
otherwise) and a one-line summary; optionally writes a PNG of per-byte entropy and patch boundaries
and a self-contained HTML page. `--compare_threshold T2` and/or `--compare_ckpt DIR2` show a second
patching of the same text below the first. DIR is a hybrid_jax workdir (`WORKDIR@STEP`: one step), a
`checkpoints/<step>` directory of one, a Hugging Face BLT directory, or a Hugging Face Hub model id
`org/name[@revision]` (an existing local path wins).
"""

from __future__ import annotations

import dataclasses
import os
import sys

from hybrid_jax.cli.parser import ArgumentParser
from hybrid_jax.storage.loading import hub_id, load_any as load
from hybrid_jax.storage.workdir import Workdir

DEFAULT_MAX_BYTES = 2048


def ckpt_name(path: str) -> str:
    """A short name for a checkpoint path, e.g. `run1` or `run1/checkpoints/500`; a Hub id (or
    `WORKDIR@STEP`) as given."""
    if not os.path.exists(path) and hub_id(path):
        return path
    split = Workdir.split_step_dir(path)
    if split is not None:
        workdir, step = split
        return f"{workdir.name}/{Workdir(workdir).step_dir(step).relative_to(workdir)}"
    return os.path.basename(os.path.abspath(path)) or path


def parse(argv):
    p = ArgumentParser(prog="hybrid-jax inspect",
                example="hybrid-jax inspect --ckpt runs/toy --text 'def main():' --out patches.png",
                description="Show how a BLT cuts a text into patches: terminal, PNG and HTML.")
    p.add_argument("--ckpt", required=True,
                   help="hybrid_jax workdir (WORKDIR@STEP: one step), checkpoints/<step> dir, HF BLT dir or Hub "
                        "model id org/name[@revision] (a local path wins)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="text to patch")
    src.add_argument("--file", help="file whose bytes to patch (need not be UTF-8)")
    p.add_argument("--patching", choices=("entropy", "static", "space"), help="override the model's patcher")
    p.add_argument("--threshold", type=float, help="entropy threshold in nats (entropy patching)")
    p.add_argument("--patch_size", type=int, help="bytes per patch (static patching)")
    p.add_argument("--max_patch_length", type=int, help="split longer patches (0: no limit)")
    p.add_argument("--compare", action="store_true",
                   help="compare two patchings (implied by --compare_threshold / --compare_ckpt)")
    p.add_argument("--compare_threshold", type=float, help="second view: this threshold")
    p.add_argument("--compare_ckpt", help="second view: this checkpoint (any form --ckpt takes)")
    p.add_argument("--out", help="write a PNG plot here")
    p.add_argument("--html", help="write an HTML page here")
    p.add_argument("--per_row", type=int, default=64, help="bytes per row in the PNG (default 64)")
    p.add_argument("--max_bytes", type=int, default=DEFAULT_MAX_BYTES,
                   help=f"truncate longer input (default {DEFAULT_MAX_BYTES})")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="ANSI colours; auto (the default) uses them when stdout is a terminal")
    args = p.parse_args(argv)
    comparing = args.compare_threshold is not None or args.compare_ckpt is not None
    if args.compare and not comparing:
        raise ValueError("--compare needs --compare_threshold T2 or --compare_ckpt DIR2")
    if args.per_row < 1:
        raise ValueError(f"--per_row must be >= 1, got {args.per_row}")
    if args.max_bytes < 1:
        raise ValueError(f"--max_bytes must be >= 1, got {args.max_bytes}")
    return args


def read_input(args) -> bytes:
    """The bytes to patch, from --text (as given on the command line, even if not UTF-8) or --file."""
    if args.file is not None:
        with open(args.file, "rb") as f:
            data = f.read(args.max_bytes + 1)
    else:
        # Python decodes argv with surrogateescape; this gives back the exact bytes of the argument.
        data = args.text.encode("utf-8", errors="surrogateescape")
    if not data:
        raise ValueError("empty text: nothing to patch")
    if len(data) > args.max_bytes:
        print(f"note: input truncated to the first {args.max_bytes} bytes (--max_bytes)", file=sys.stderr)
        data = data[:args.max_bytes]
    return data


def build_views(args, data: bytes) -> list:
    """The first view, plus the compared one when asked for."""
    from hybrid_jax.viz import patch_view

    overrides = dict(mode=args.patching, patch_size=args.patch_size, max_patch_length=args.max_patch_length)
    model = load(args.ckpt)
    first = patch_view(model, data, threshold=args.threshold, **overrides)
    if args.compare_threshold is None and args.compare_ckpt is None:
        return [first]
    other = load(args.compare_ckpt) if args.compare_ckpt is not None else model
    threshold = args.compare_threshold if args.compare_threshold is not None else args.threshold
    second = patch_view(other, data, threshold=threshold, **overrides)
    # The summary line already names the patching; the label names the checkpoint.
    return [dataclasses.replace(first, label=ckpt_name(args.ckpt)),
            dataclasses.replace(second, label=ckpt_name(args.compare_ckpt or args.ckpt))]


def main(argv: list[str]) -> int:
    args = parse(argv)
    for flag, path in (("--out", args.out), ("--html", args.html)):
        if path and os.path.isdir(path):
            raise ValueError(f"{flag} {path}: a directory; give the name of the file to write")
    data = read_input(args)
    views = build_views(args, data)
    from hybrid_jax.viz import plot_png, render_html, render_text

    if hasattr(sys.stdout, "reconfigure"):
        # A terminal that cannot show a character gets an escape, not a crash.
        sys.stdout.reconfigure(errors="backslashreplace")
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    sys.stdout.write(render_text(views, color))
    if args.out:
        plot_png(views, args.out, per_row=args.per_row)
        print(f"wrote {args.out}", file=sys.stderr)
    if args.html:
        with open(args.html, "w", encoding="utf-8") as f:
            f.write(render_html(views, title=f"BLT patches: {ckpt_name(args.ckpt)}"))
        print(f"wrote {args.html}", file=sys.stderr)
    return 0

