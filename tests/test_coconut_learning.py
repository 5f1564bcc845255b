"""Coconut mode learns, on the CPU, in CI: configs/prosqa_tiny.py (1.1 M parameters) trained on 3000
generated `--nano` questions (two hops over a closed 12-word lexicon, the distractor as deep as the
answer): one epoch at each of stages 0, 1, 2, then one with both steps replaced by 2 continuous
thoughts (376 steps of 32, ~5 minutes on 2 cores). `evaluate qa` on 200 held-out questions must beat
the coin flip between the two named options (0.5) clearly: >= 0.6, which a coin reaches with
probability ~0.3 %. The README's table has the longer runs of every mode.
"""

import json

import jax

from hybrid_jax import cli, evaluate
from hybrid_jax.data import prosqa
from hybrid_jax.train import train

from train_helpers import load_config


def test_coconut_beats_chance_on_nano_prosqa(tmp_path, capsys):
    paths, seen = {}, set()
    for i, (split, n) in enumerate((("train", 3000), ("valid", 200))):
        records = prosqa.generate(n, 6000 + i, prosqa.NANO, exclude=seen)  # = `--nano --seed 6`
        seen.update(r["question"] for r in records)
        paths[split] = str(tmp_path / f"{split}.json")
        with open(paths[split], "w") as f:
            json.dump(records, f)
    cfg = load_config("prosqa_tiny")
    cfg.data.update(train=paths["train"], eval=paths["valid"])
    cfg.mesh.update(data=1, fsdp=1, tensor=1)
    cfg.checkpoint.update(every=1000, async_save=False)
    cfg.coconut.update(num_epochs=4, eval_every_epochs=0, eval_limit=8, max_new_bytes=32)
    workdir = str(tmp_path / "run")
    rows = train(cfg, workdir, devices=jax.devices()[:1])
    assert sorted({r["stage"] for r in rows if "loss" in r}) == [0, 1, 2, 3]
    capsys.readouterr()
    assert cli.run(evaluate.main, ["qa", "--ckpt", workdir, "--data", paths["valid"], "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 200 and result["mode"] == "coconut" and result["avg_latents"] == 2.0
    assert result["accuracy"] >= 0.6, result
