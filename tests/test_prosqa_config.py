"""configs/prosqa.py (the one-GPU ProsQA run of launch/prosqa_gpu.sh) trains on the CPU for two steps
on full-size generated ProsQA questions, so that the config, its sequence and patch budget and the
paper's recipe keep working together. Its only change: batch 1 (and one CPU device)."""

import json
import math

import jax
import pytest

from hybrid_jax.data import prosqa
from hybrid_jax.training import train

from train_helpers import load_config

pytestmark = pytest.mark.slow  # a 131 M-parameter model, 7 global passes a step, on the CPU


def test_prosqa_config_trains_on_full_size_questions(tmp_path):
    path = str(tmp_path / "train.json")
    records = prosqa.generate(2, seed=11)  # the paper's recipe: ~1 KB questions, 3-7 hops
    with open(path, "w") as f:
        json.dump(records, f)
    cfg = load_config("prosqa")
    cfg.data.update(train=path, eval="")
    cfg.mesh.update(data=1, fsdp=1)
    cfg.train.update(batch_size=1, log_every=1)
    cfg.checkpoint.update(every=1000, async_save=False)
    cfg.coconut.update(num_epochs=1)
    rows = train(cfg, str(tmp_path / "run"), devices=jax.devices()[:1])
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2] and {r["stage"] for r in steps} == {0}
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in steps)
