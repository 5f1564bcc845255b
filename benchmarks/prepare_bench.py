"""Corpora larger than memory: `hybrid-jax prepare` throughput, time to the first training step and peak
RSS of `train` on prepared synthetic text of several sizes, beside `train` on the raw glob of the
smallest size.

    python -m benchmarks.prepare_bench --sizes_gb 0.3 3 --root /tmp/prepare_bench

Prints a Markdown table. Each `train` runs in its own wrapper process, so its peak RSS (`ru_maxrss`)
is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from hybrid_jax.storage.workdir import Workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILE_BYTES = 64 << 20


def synthetic_text(root: str, total_bytes: int, seed: int = 0) -> str:
    """Files of pseudo-random lowercase words (64 MiB each) under `root`; a glob for them."""
    rng = np.random.default_rng(seed)
    words = np.array([bytes(rng.integers(97, 123, size=rng.integers(2, 10)).astype(np.uint8)) + b" "
                      for _ in range(5000)], dtype=object)
    os.makedirs(root, exist_ok=True)
    done, i = 0, 0
    while done < total_bytes:
        size = min(FILE_BYTES, total_bytes - done)
        text = b"".join(words[rng.integers(0, len(words), size=size // 6 + 1)])[:size]
        with open(os.path.join(root, f"part{i:04d}.txt"), "wb") as f:
            f.write(text)
        done, i = done + size, i + 1
    return os.path.join(root, "*.txt")


def timed(cmd: list[str]) -> float:
    t0 = time.time()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.time() - t0


WRAPPER = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")


def train_run(data: str, workdir: str, steps: int) -> dict:
    """Seconds to the first logged step and peak RSS (MiB) of a tiny-config `train` on `data`."""
    cmd = [sys.executable, "-m", "hybrid_jax", "train", "--config", "configs/tiny.py", "--workdir", workdir,
           f"--config.data.train={data}", "--config.data.eval_fraction=0", f"--config.train.steps={steps}",
           "--config.train.log_every=1"]
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-c", WRAPPER, *cmd], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    metrics, first = str(Workdir(workdir).metrics_file), None
    while proc.poll() is None:
        if first is None and os.path.isfile(metrics) and os.path.getsize(metrics):
            first = time.time() - t0
        time.sleep(0.05)
    out = proc.stdout.read()
    if proc.returncode:
        raise SystemExit(f"train on {data} failed (exit {proc.returncode})")
    return {"first_step_s": first, "rss_mib": int(out.split()[-1]) / 1024, "total_s": time.time() - t0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes_gb", type=float, nargs="+", default=[0.3, 3.0], help="corpus sizes, GB of text")
    p.add_argument("--root", default="/tmp/prepare_bench", help="scratch directory (removed at the end)")
    p.add_argument("--steps", type=int, default=20, help="training steps per run")
    p.add_argument("--workers", type=int, default=0, help="prepare --workers")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = p.parse_args(argv)
    rows = []
    for gb in args.sizes_gb:
        base = os.path.join(args.root, f"{gb:g}gb")
        glob = synthetic_text(os.path.join(base, "text"), int(gb * 1e9))
        prep = os.path.join(base, "prepared")
        secs = timed([sys.executable, "-m", "hybrid_jax", "prepare", "--data", glob, "--out", prep,
                      "--workers", str(args.workers), "--eval_fraction", "0"])
        run = train_run(prep, os.path.join(base, "run_prepared"), args.steps)
        rows.append({"corpus_gb": gb, "input": "prepared", "prepare_mb_s": gb * 1e3 / secs, **run})
        print(json.dumps(rows[-1]), file=sys.stderr)
        if gb == min(args.sizes_gb):
            run = train_run(glob, os.path.join(base, "run_glob"), args.steps)
            rows.append({"corpus_gb": gb, "input": "raw glob", "prepare_mb_s": None, **run})
            print(json.dumps(rows[-1]), file=sys.stderr)
        if not args.keep:
            shutil.rmtree(base)
    print("| corpus | training input | prepare MB/s | first step (s) | train peak RSS (MiB) | train total (s) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        mbs = f"{r['prepare_mb_s']:.0f}" if r["prepare_mb_s"] else "—"
        print(f"| {r['corpus_gb']:g} GB | {r['input']} | {mbs} | {r['first_step_s']:.1f} | {r['rss_mib']:.0f} | "
              f"{r['total_s']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
