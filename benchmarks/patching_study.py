"""Entropy vs static vs space patching at matched compute: one command for the whole table.

    python -m benchmarks.patching_study --data 'books/*.txt' --seeds 0 1 2 --steps 600 --target 4 \\
        --root runs/study

Per seed, four runs of the same config (`--config`, default the toy), steps, batch, data and seed:
- `entropy (frozen, calibrated)`: phase 1 trains the entropy model alone once (`train.objective =
  entropy_model`, `--entropy_steps`), phase 2 freezes it and calibrates the threshold for `--target`
  bytes per patch on the training data (`model.patching.target_patch_len`);
- `entropy (online)`: the entropy model trained jointly (as `make train`), with the threshold that the
  frozen row calibrated (the config's own when that row is not run): an untrained model cannot be
  calibrated at start, and the config's threshold belongs to another corpus;
- `static`: patches of `--target` bytes;
- `space`: a patch per word.
Every run has the same `model.patching.max_patches` (the global transformer's slots per sequence,
`--slack` above seq_len / target), so the global transformer does the same work per byte in all four;
FLOPs per byte (`hybrid_jax.analysis.flops`) are printed with and without the entropy model. The score
is the held-out bits per byte at the last step (`eval.batches` windows of held-out documents). Prints
a Markdown table: mean and spread (sample standard deviation) over the seeds, and every seed's value.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys

from hybrid_jax.storage.workdir import Workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = ("entropy (frozen, calibrated)", "entropy (online)", "static", "space")


def short(mode: str) -> str:
    """The name of a mode on the command line and in workdir names: entropy, entropy_online, static, space."""
    return mode.split(" ")[0] + ("_online" if "online" in mode else "")


def train(config: str, workdir: str, overrides: list[str]) -> list[dict]:
    """Run `hybrid-jax train` (resuming a finished run is a no-op) and return its metric rows."""
    cmd = [sys.executable, "-m", "hybrid_jax", "train", "--config", config, "--workdir", workdir, *overrides]
    # Seeds of a mode compile the same programs: share JAX's persistent cache between the runs.
    env = {"JAX_COMPILATION_CACHE_DIR": os.path.join(ROOT, ".jax_cache"), **os.environ}
    r = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    from hybrid_jax.training.metrics import read_metrics
    return read_metrics(workdir)


def mode_overrides(mode: str, target: int, entropy_dir: str, threshold: float | None) -> list[str]:
    """The config overrides of one row; `threshold` (online only): the frozen model's calibrated one."""
    p = "--config.model.patching."
    off = "--config.model.entropy_model.trained_online=False"  # nothing to train it for
    if mode == "static":
        return [f"{p}mode=static", f"{p}patch_size={target}", off]
    if mode == "space":
        return [f"{p}mode=space", off]
    if mode == "entropy (online)":
        return [f"{p}mode=entropy", "--config.model.entropy_model.trained_online=True",
                *([f"{p}threshold={threshold}"] if threshold is not None else [])]
    return [f"{p}mode=entropy", f"{p}target_patch_len={target}", f"--config.model.entropy_model.init_from={entropy_dir}",
            "--config.model.entropy_model.trained_online=False"]


def flops_per_byte(config: str, overrides: list[str]) -> tuple[float, float]:
    """(training FLOPs per byte without, with the entropy model) of the config with `overrides`."""
    from hybrid_jax.analysis.flops import flops_per_sequence, forward_flops
    from hybrid_jax.config import apply_override, load_config

    cfg = load_config(config)
    for arg in overrides:
        key, _, value = arg[len("--config."):].partition("=")
        if key not in ("model.entropy_model.init_from", "model.patching.target_patch_len"):
            apply_override(cfg, key, value)
    seq = cfg.data.seq_len
    f = forward_flops(cfg.model, seq)
    total = flops_per_sequence(cfg.model, seq)
    factor = 3 if cfg.model.entropy_model.trained_online else 1
    return (total - factor * (f["entropy_matmul"] + f["entropy_attention"])) / seq, total / seq


def last(rows: list[dict], key: str) -> float:
    return [r[key] for r in rows if key in r][-1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/toy.py", help="base config")
    p.add_argument("--entropy_config", default="configs/toy_entropy.py", help="phase-1 config (same entropy model)")
    p.add_argument("--data", default="", help="training glob or prepared directory ('' = the standard library)")
    p.add_argument("--eval_data", default="", help="held-out glob ('' = a hash-chosen share of --data)")
    p.add_argument("--modes", nargs="+", choices=[short(m) for m in MODES],
                   help="only these rows (default: all four)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=600, help="training steps of every BLT run")
    p.add_argument("--entropy_steps", type=int, default=1500, help="phase-1 steps")
    p.add_argument("--target", type=int, default=4, help="bytes per patch (static size, calibration target)")
    p.add_argument("--slack", type=float, default=1.25, help="max_patches = slack * seq_len / target")
    p.add_argument("--eval_batches", type=int, default=16, help="held-out batches scored at the end")
    p.add_argument("--root", default="runs/patching_study", help="one workdir per run under it")
    p.add_argument("--entropy_dir", default="", help="a finished phase-1 run to use instead of training ROOT/entropy_model")
    p.add_argument("--extra", action="append", default=[],
                   help="one more --config.KEY=VALUE for every run (repeat; write --extra=--config.a.b=v)")
    args = p.parse_args(argv)

    from hybrid_jax.config import load_config
    seq = load_config(args.config).data.seq_len
    data = [f"--config.data.train={args.data}", f"--config.data.eval={args.eval_data}"]
    common = [*data, f"--config.train.steps={args.steps}",
              f"--config.eval.every={args.steps}", f"--config.eval.batches={args.eval_batches}",
              f"--config.model.patching.max_patches={math.ceil(args.slack * seq / args.target)}",
              "--config.model.patching.max_patch_length=0", *args.extra]
    entropy_dir = args.entropy_dir or os.path.join(args.root, "entropy_model")
    if not args.entropy_dir:
        rows = train(args.entropy_config, entropy_dir, [
            *data, f"--config.train.steps={args.entropy_steps}",
            f"--config.eval.every={args.entropy_steps}", "--config.train.objective=entropy_model",
            "--config.model.entropy_model.trained_online=False", *args.extra])
        print(f"phase 1: entropy model held-out bpb {last(rows, 'eval_bpb'):.4f} after {args.entropy_steps} "
              "steps", file=sys.stderr)
    results = {m: [] for m in MODES if not args.modes or short(m) in args.modes}
    for seed in args.seeds:
        for mode in results:
            frozen = Workdir(os.path.join(args.root, f"entropy_seed{seed}"))
            threshold = None
            if mode == MODES[1] and MODES[0] in results:  # borrow the frozen row's calibrated threshold
                threshold = frozen.model_config().patching.threshold
            overrides = [*common, f"--config.seed={seed}", *mode_overrides(mode, args.target, entropy_dir, threshold)]
            rows = train(args.config, os.path.join(args.root, f"{short(mode)}_seed{seed}"), overrides)
            results[mode].append({"bpb": last(rows, "eval_bpb"), "patch": last(rows, "eval_avg_patch_len"),
                                  "flops": flops_per_byte(args.config, overrides)})
            print(json.dumps({"mode": mode, "seed": seed, **results[mode][-1]}), file=sys.stderr)
    print_table(results, len(args.seeds))
    return 0


def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def print_table(results: dict[str, list[dict]], seeds: int) -> None:
    """The Markdown table. Seeds share data order, so most of a seed's luck is common to every row: the
    last column pairs each row with static by seed (negative: fewer bits than static)."""
    static = [r["bpb"] for r in results.get("static", [])]
    print(f"| patching | mean patch (bytes) | FLOPs/byte, global+local | FLOPs/byte, with entropy model | "
          f"held-out bpb, mean ± sd over {seeds} seeds | per seed | minus static, paired by seed |")
    print("|---|---|---|---|---|---|---|")
    for mode, runs in results.items():
        bpb = [r["bpb"] for r in runs]
        paired = mean_sd([b - s for b, s in zip(bpb, static)]) if static and mode != "static" else ""
        print(f"| {mode} | {statistics.mean(r['patch'] for r in runs):.2f} | {runs[0]['flops'][0] / 1e6:.2f} M | "
              f"{runs[0]['flops'][1] / 1e6:.2f} M | {mean_sd(bpb)} | {', '.join(f'{b:.4f}' for b in bpb)} | "
              f"{paired} |")


if __name__ == "__main__":
    sys.exit(main())
