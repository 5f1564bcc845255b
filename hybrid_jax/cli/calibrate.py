"""`hybrid-jax calibrate --ckpt SRC --data GLOB --target_patch_len 4.5 [--rule global|monotonic] [--json]`:
the entropy threshold at which a model's patcher cuts a sample of real data into patches of the target
mean length (`hybrid_jax/analysis/calibrate.py`)."""

from __future__ import annotations

import json
import sys

from hybrid_jax.cli.parser import ArgumentParser


def parse(argv):
    p = ArgumentParser(prog="hybrid-jax calibrate",
                           description="Find the entropy threshold that gives a target mean patch length on a "
                                       "sample of DATA, with SRC's entropy model and patcher.",
                           example="hybrid-jax calibrate --ckpt runs/entropy --data 'books/*.txt' "
                                   "--target_patch_len 4.5 --json")
    p.add_argument("--ckpt", required=True,
                   help="workdir (WORKDIR@STEP), checkpoints/<step> dir, Hugging Face BLT dir or Hub id whose "
                        "entropy model and patching rules are used")
    p.add_argument("--data", required=True, help="glob of text / JSONL / ArrayRecord files, or a prepared directory")
    p.add_argument("--target_patch_len", type=float, required=True, help="mean bytes per patch wanted")
    p.add_argument("--rule", choices=("global", "monotonic"), default=None,
                   help="entropy rule; omitted: the model's own")
    p.add_argument("--seq_len", type=int, default=0,
                   help="bytes per sampled window (0: the checkpoint's training data.seq_len, else 512)")
    p.add_argument("--samples", type=int, default=64, help="windows sampled from DATA")
    p.add_argument("--seed", type=int, default=0, help="which windows are sampled")
    p.add_argument("--text_field", default="text", help="JSONL field holding the document")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.target_patch_len < 1 or args.samples < 1 or args.seq_len < 0:
        raise ValueError("--target_patch_len must be >= 1, --samples >= 1 and --seq_len >= 0")
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    from hybrid_jax.analysis.calibrate import calibrate, sample_windows
    from hybrid_jax.storage.loading import context_of, load_any, resolve_source

    src = resolve_source(args.ckpt)
    model = load_any(src)
    seq_len = args.seq_len or ((context_of(src) or 513) - 1)
    ids = sample_windows(args.data, seq_len, args.samples, args.seed, args.text_field)
    print(f"calibrating on {len(ids)} windows of {seq_len} bytes of {args.data}", file=sys.stderr)
    result = calibrate(model.entropy_model, model.config.patching, ids, args.target_patch_len, args.rule)
    if args.json:
        print(json.dumps({**result.as_dict(), "target_patch_len": args.target_patch_len}))
    else:
        print(f"threshold {result.threshold:.6f} ({result.rule} rule): mean patch {result.mean_patch_len:.3f} bytes "
              f"(target {args.target_patch_len}); rows' means spread {result.row_std:.3f}; patch lengths "
              f"p10/p50/p90 {result.p10:g}/{result.p50:g}/{result.p90:g}")
        print(f"train with it: --config.model.patching.threshold={result.threshold:.6f}"
              + (" --config.model.patching.monotonicity=True" if result.rule == "monotonic" else ""))
    return 0

