"""The learning run behind the README's Coconut table (slow: ~20 minutes on a 2-core CPU).

configs/prosqa_tiny.py's model on `--micro` ProsQA-style data (1000 training questions, 2 hops),
coconut mode, stages 0-2 of two epochs each, then two epochs with both steps latent. The assertion is
the issue's bar, answer accuracy above chance (0.5: one of two named options). It has not been reached
on the CPU budget so far (see the README's table), hence xfail; it is not strict, so a run that gets
there passes.
"""

import json

import jax
import pytest

from hybrid_jax.data import prosqa
from hybrid_jax.train import train

from train_helpers import load_config


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason="CPU budget too small so far: the tiny model still invents names")
def test_coconut_micro_beats_chance(tmp_path):
    paths = {}
    seen = set()
    for i, (split, n) in enumerate((("train", 1000), ("valid", 200))):
        records = prosqa.generate(n, 1000 + i, prosqa.MICRO, exclude=seen)
        seen.update(r["question"] for r in records)
        paths[split] = str(tmp_path / f"{split}.json")
        with open(paths[split], "w") as f:
            json.dump(records, f)
    cfg = load_config("prosqa_tiny")
    cfg.data.update(train=paths["train"], eval=paths["valid"], seq_len=368)
    cfg.model.patching.max_patches = 96
    cfg.mesh.update(data=1, fsdp=1, tensor=1)
    cfg.train.batch_size = 16
    cfg.coconut.update(max_latent_stage=2, num_epochs=8, eval_every_epochs=0, eval_limit=200, max_new_bytes=64)
    rows = train(cfg, str(tmp_path / "run"), devices=jax.devices()[:1])
    stages = sorted({r["stage"] for r in rows if "loss" in r})
    assert stages == [0, 1, 2, 3]
    final = [r for r in rows if "accuracy" in r][-1]
    assert final["eval_n"] == 200 and final["avg_latents"] == 2.0
    assert final["accuracy"] > 0.5, final
