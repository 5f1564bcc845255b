"""Every latent-reasoning mode on one generated task, several seeds: one command for the whole table.

    python -m benchmarks.coconut_study --task chains --modes coconut pause cot no-cot no-curriculum \\
        --seeds 0 1 2 --data_seed 0 [--json]

Generates the task's data from `--data_seed` (`hybrid-jax prosqa --task TASK`), trains each mode with
each seed on it (`hybrid_jax.training.train`, one CPU device; the same config, data, schedule and
steps for every mode, only `coconut.mode` and `seed` differ), and scores greedy answers on the
in-distribution test (`--n_test` questions) and, where the task has one, the out-of-distribution test
(longer chains). `positions_per_answer` is what the model runs after the question on the
in-distribution test: `<bot>`, thoughts and `<eot>` (marker modes) plus the bytes it writes, EOS
included. Prints a Markdown table (mean ± sample standard deviation over the seeds, and every seed);
`--json` adds ONE object on the last stdout line: {mode: {"accuracy", "accuracy_ood", "n",
"positions_per_answer", ...}} (means over the seeds; "per_seed" holds each seed's values).
A finished run in `--root` is reused (its scores are cached next to it), so an interrupted study resumes.
`--set KEY=VALUE` overrides any config key of every run (ablations: `--set coconut.c_thought=2`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = ("coconut", "pause", "cot", "no-cot", "no-curriculum")
# task -> (config, data arguments of `hybrid-jax prosqa`, file prefix, has an out-of-distribution test)
TASKS = {
    "chains": ("configs/chains.py", ["--task", "chains"], "chains", True),
    "prosqa-nano": ("configs/prosqa_tiny.py", ["--nano"], "prosqa", False),
}


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.coconut_study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="chains", choices=sorted(TASKS), help="the data family (default chains)")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES, help="modes to train")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds")
    p.add_argument("--data_seed", type=int, default=0, help="seed of the generated data")
    p.add_argument("--n_train", type=int, default=6000, help="training questions")
    p.add_argument("--n_test", type=int, default=500, help="test questions (each test)")
    p.add_argument("--root", default="runs/coconut_study", help="data and run directories go here")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every run, e.g. coconut.num_epochs=8 (repeatable)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object last")
    args = p.parse_args(argv)
    if args.n_test < 1 or args.n_train < 1:
        p.error("--n_train and --n_test must be >= 1")
    for s in args.set:
        if "=" not in s:
            p.error(f"--set expects KEY=VALUE, got {s!r}")
    return args


def make_data(args) -> dict[str, str]:
    """{split: path} of the study's data (generated once per task, seed and sizes)."""
    from hybrid_jax.cli import prosqa
    _, extra, prefix, has_ood = TASKS[args.task]
    out = os.path.join(args.root, f"data-{args.task}-s{args.data_seed}-n{args.n_train}-t{args.n_test}")
    splits = ("train", "valid", "test") + (("test_ood",) if has_ood else ())
    paths = {s: os.path.join(out, f"{prefix}_{s}.json") for s in splits}
    if not all(os.path.exists(p) for p in paths.values()):
        prosqa.main(["--out", out, "--seed", str(args.data_seed), "--n_train", str(args.n_train),
                     "--n_valid", "200", "--n_test", str(args.n_test), "--force", *extra])
    return paths


def run_config(args, paths: dict, mode: str, seed: int):
    from hybrid_jax.config import apply_override, load_config
    cfg = load_config(os.path.join(ROOT, TASKS[args.task][0]))
    # No validation inside training: the study scores the test files once, at the end.
    cfg.data.train, cfg.data.eval = paths["train"], ""
    cfg.coconut.mode, cfg.seed = mode, seed
    cfg.mesh.update(data=1, fsdp=1)
    cfg.checkpoint.update(every=10 ** 9, keep=1, async_save=False)
    for s in args.set:
        apply_override(cfg, *s.split("=", 1))
    return cfg


def score(workdir: str, path: str, cc, stage: int) -> dict:
    """{"accuracy", "n", "positions_per_answer"} of the trained run on one test file."""
    from hybrid_jax.data import curriculum as cur
    from hybrid_jax.data.coconut import load_examples
    from hybrid_jax.evaluation.qa import answer_records
    from hybrid_jax.storage.loading import load_any
    examples = load_examples(path)
    recs = answer_records(load_any(workdir), examples, cc, cc.mode, stage, batch_size=100,
                          max_new=cc.max_new_bytes)
    markers = 2 if cur.has_markers(cc.mode) else 0
    positions = [markers + r["thoughts"] + len(r["written"]) + 1 for r in recs]
    return {"accuracy": sum(r["correct"] for r in recs) / len(recs), "n": len(recs),
            "positions_per_answer": statistics.fmean(positions)}


def run_one(args, paths: dict, mode: str, seed: int) -> dict:
    """Train (or reuse) one run and score it: {"accuracy", "accuracy_ood", "n", "positions_per_answer",
    "steps", "train_s"}."""
    import jax

    from hybrid_jax.cli.evaluate import run_coconut
    from hybrid_jax.training import train
    from hybrid_jax.training.metrics import read_metrics
    tag = "-".join(s.replace("=", "_").replace("coconut.", "").replace("train.", "") for s in args.set)
    workdir = os.path.join(args.root, f"{args.task}-d{args.data_seed}-n{args.n_train}" + (f"-{tag}" if tag else ""),
                           f"{mode}-s{seed}")
    cached = os.path.join(workdir, "study_scores.json")
    if os.path.exists(cached):
        with open(cached) as f:
            return json.load(f)
    start = time.perf_counter()
    train(run_config(args, paths, mode, seed), workdir, devices=jax.devices()[:1])
    train_s = time.perf_counter() - start  # wall clock, compilation included
    rows = read_metrics(workdir)
    cc, stage = run_coconut(workdir)
    res = score(workdir, paths["test"], cc, stage)
    res["accuracy_ood"] = score(workdir, paths["test_ood"], cc, stage)["accuracy"] if "test_ood" in paths else None
    res["steps"] = max(r["step"] for r in rows)
    res["train_s"] = train_s
    with open(cached, "w") as f:
        json.dump(res, f)
    return res


def mean_sd(xs: list) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.fmean(xs):.3f} ± {sd:.3f}"


def summary(results: dict) -> dict:
    """{mode: means over seeds + per_seed} from {mode: {seed: run result}}."""
    out = {}
    for mode, by_seed in results.items():
        runs = list(by_seed.values())
        ood = [r["accuracy_ood"] for r in runs]
        out[mode] = {
            "accuracy": statistics.fmean(r["accuracy"] for r in runs),
            "accuracy_ood": statistics.fmean(ood) if None not in ood else None,
            "n": runs[0]["n"],
            "positions_per_answer": statistics.fmean(r["positions_per_answer"] for r in runs),
            "accuracy_sd": statistics.stdev([r["accuracy"] for r in runs]) if len(runs) > 1 else 0.0,
            "per_seed": {str(s): r for s, r in by_seed.items()},
        }
    return out


def table(results: dict) -> str:
    lines = ["| mode | test (mean ± sd) | every seed | OOD test (mean ± sd) | every seed | positions per answer | steps |",
             "|---|---|---|---|---|---|---|"]
    for mode, by_seed in results.items():
        runs = list(by_seed.values())
        each = " / ".join(f"{r['accuracy']:.3f}" for r in runs)
        each_ood = " / ".join("–" if r["accuracy_ood"] is None else f"{r['accuracy_ood']:.3f}" for r in runs)
        pos = statistics.fmean(r["positions_per_answer"] for r in runs)
        lines.append(f"| {mode} | {mean_sd([r['accuracy'] for r in runs])} | {each} | "
                     f"{mean_sd([r['accuracy_ood'] for r in runs])} | {each_ood} | {pos:.1f} | {runs[0]['steps']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    paths = make_data(args)
    results: dict = {}
    for mode in args.modes:
        for seed in args.seeds:
            r = run_one(args, paths, mode, seed)
            results.setdefault(mode, {})[seed] = r
            print(f"{mode} seed {seed}: test {r['accuracy']:.3f}, OOD {r['accuracy_ood']}, "
                  f"{r['positions_per_answer']:.1f} positions, {r['steps']} steps", file=sys.stderr, flush=True)
    print(f"task {args.task}, data seed {args.data_seed}, {args.n_train} training questions, "
          f"{args.n_test} per test; overrides: {args.set or 'none'}")
    print(table(results))
    if args.json:
        print(json.dumps(summary(results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
