"""Coconut mode learns, on the CPU, in CI: configs/prosqa_tiny.py (1.1 M parameters) trained on 3000
generated `--nano` questions (two hops over a closed 12-word lexicon, the distractor as deep as the
answer): one epoch at each of stages 0, 1, 2, then one with both steps replaced by 2 continuous
thoughts (372 steps of 32). It runs as a user would, `python -m hybrid_jax train` in a process of its
own with one CPU device (~3.5 minutes on 2 cores; inside pytest's 8-device client the same steps took
1.26x as long). `evaluate qa` on 200 held-out questions must beat the coin flip between the two named
options (0.5) clearly: >= 0.6, which a coin reaches with probability ~0.3 %. The longer runs of every
mode are in docs/results/2026-11-27-cpu.md (usage: docs/coconut.md).
"""

import json
import os

import pytest
import subprocess
import sys

from hybrid_jax import cli
from hybrid_jax.cli import evaluate
from hybrid_jax.data import prosqa

pytestmark = pytest.mark.slow  # one Coconut learning run of several minutes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_coconut_beats_chance_on_nano_prosqa(tmp_path, capsys):
    paths, seen = {}, set()
    for i, (split, n) in enumerate((("train", 3000), ("valid", 200))):
        records = prosqa.generate(n, 6000 + i, prosqa.NANO, exclude=seen)  # = `--nano --seed 6`
        seen.update(r["question"] for r in records)
        paths[split] = str(tmp_path / f"{split}.json")
        with open(paths[split], "w") as f:
            json.dump(records, f)
    workdir = str(tmp_path / "run")
    overrides = {"data.train": paths["train"], "data.eval": paths["valid"], "mesh.data": 1, "mesh.fsdp": 1,
                 "checkpoint.every": 1000, "checkpoint.async_save": False, "coconut.num_epochs": 4,
                 "coconut.eval_every_epochs": 0, "coconut.eval_limit": 8, "coconut.max_new_bytes": 32}
    cmd = [sys.executable, "-m", "hybrid_jax", "train", "--config", os.path.join(ROOT, "configs", "prosqa_tiny.py"),
           "--workdir", workdir, *(f"--config.{k}={v}" for k, v in overrides.items())]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # --cpu_devices auto: one device
    run = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert run.returncode == 0, run.stderr[-2000:]
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert sorted({r["stage"] for r in rows if "loss" in r}) == [0, 1, 2, 3]
    assert max(r["step"] for r in rows) == 372
    assert cli.run(evaluate.main, ["qa", "--ckpt", workdir, "--data", paths["valid"], "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 200 and result["mode"] == "coconut" and result["avg_latents"] == 2.0
    assert result["accuracy"] >= 0.6, result
