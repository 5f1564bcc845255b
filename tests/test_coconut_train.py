"""Latent-reasoning training end to end on tiny generated data: every stage, falling loss, exact resume
across a stage change, and `evaluate qa`."""

import json
import os
import shutil

import jax
import pytest

from hybrid_jax.data import prosqa
from hybrid_jax.training import train
from hybrid_jax.training.metrics import read_metrics

from train_helpers import load_config, losses

pytestmark = pytest.mark.integration

# Smaller than prosqa.TINY: <= 200-byte examples, two-hop proofs.
MICRO = prosqa.Recipe(concepts=(3, 4), people=(2, 2), hops=(2, 2), out_degree=(1, 1), short_names=True)


def write_data(root):
    paths = {}
    for i, (split, n) in enumerate((("train", 16), ("valid", 4))):
        paths[split] = os.path.join(root, f"{split}.json")
        with open(paths[split], "w") as f:
            json.dump(prosqa.generate(n, seed=10 + i, recipe=MICRO), f)
    return paths


def micro_config(paths):
    """configs/prosqa_tiny.py shrunk: 2 steps per epoch, one epoch per stage, stages 0, 1, 2, then 3
    (past max_latent_stage: every step replaced by 2 thoughts)."""
    cfg = load_config("prosqa_tiny")
    m = cfg.model
    m.hash.update(vocab=97, group_sizes=(3,))
    m.local_encoder.update(d_model=32, heads=2, window=16)
    m.local_decoder.update(d_model=32, layers=1, heads=2, window=16)
    m.global_transformer.update(d_model=64, layers=2, heads=4)
    m.patching.max_patches = 64
    cfg.data.update(train=paths["train"], eval=paths["valid"], seq_len=208)
    cfg.mesh.update(data=1, fsdp=1, tensor=1)
    cfg.train.update(batch_size=8, lr=3e-3, warmup_steps=1, log_every=1)
    cfg.checkpoint.update(every=2, keep=10, async_save=False)
    cfg.coconut.update(epochs_per_stage=1, max_latent_stage=2, num_epochs=4, eval_every_epochs=0,
                       eval_limit=4, max_new_bytes=8)
    return cfg


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("coconut")
    paths = write_data(str(root))
    workdir = str(root / "full")
    rows = train(micro_config(paths), workdir, devices=jax.devices()[:1])
    return paths, workdir, rows


def test_runs_every_stage_and_loss_falls(run):
    _, workdir, rows = run
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 9))
    assert [r["stage"] for r in steps] == [0, 0, 1, 1, 2, 2, 3, 3]
    loss = losses(rows)
    assert loss[-1] < loss[0] - 1.0, loss
    # The optimizer restarts at every stage change: its warmup starts again (lr 0 at the first step).
    assert [r["lr"] for r in steps][::2] == [0.0] * 4
    acc = [r for r in rows if "accuracy" in r]
    assert len(acc) == 1 and acc[0]["eval_n"] == 4 and acc[0]["avg_latents"] == 2.0


def test_resume_across_a_stage_change_is_exact(run, capsys):
    paths, workdir, rows = run
    resumed = workdir + "_resumed"
    shutil.copytree(workdir, resumed)
    for step in os.listdir(os.path.join(resumed, "checkpoints")):
        if int(step) > 2:  # as if the run stopped at the end of stage 0
            shutil.rmtree(os.path.join(resumed, "checkpoints", step))
    os.remove(os.path.join(resumed, "metrics.jsonl"))
    again = train(micro_config(paths), resumed, devices=jax.devices()[:1])
    assert "resumed from step 2: epoch 1, stage 1" in capsys.readouterr().err
    assert [r["step"] for r in again if "loss" in r] == list(range(3, 9))
    assert losses(again) == losses(rows)[2:]  # bit-identical, optimizer reset included
    assert read_metrics(resumed)[-1]["accuracy"] == rows[-1]["accuracy"]


def evaluate_qa(*args):
    from hybrid_jax import cli
    from hybrid_jax.cli import evaluate
    return cli.run(evaluate.main, ["qa", *args])


@pytest.mark.slow  # cached answer decoding at three stages
def test_evaluate_qa(run, capsys):
    paths, workdir, rows = run
    assert evaluate_qa("--ckpt", workdir, "--data", paths["valid"], "--json") == 0
    out = json.loads(capsys.readouterr().out)
    # The final stage (3, past max_latent_stage=2) gives every question 2 thoughts; same as training's eval.
    assert out == {"accuracy": rows[-1]["accuracy"], "n": 4, "mode": "coconut", "avg_latents": 2.0}
    # A stage-0 checkpoint prompts with no thoughts; --latent_steps and --mode override.
    assert evaluate_qa("--ckpt", os.path.join(workdir, "checkpoints", "2"), "--data", paths["valid"],
                       "--limit", "2", "--json") == 0
    assert json.loads(capsys.readouterr().out)["avg_latents"] == 0.0
    assert evaluate_qa("--ckpt", workdir, "--data", paths["valid"], "--limit", "2", "--mode", "pause",
                       "--latent_steps", "1", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "pause" and out["avg_latents"] == 1.0 and out["n"] == 2


@pytest.mark.parametrize("records, fragment", [
    ([{"question": "q", "steps": [], "answer": "a"}, {"question": "q", "steps": ["s"]}],
     "example 1: missing or non-string field 'answer'"),
    ({"question": "q"}, "expected a non-empty JSON list"),
    (None, "not valid JSON"),
])
def test_evaluate_qa_bad_data_is_one_line_exit_2(run, tmp_path, capsys, records, fragment):
    bad = tmp_path / "bad.json"
    bad.write_text("{oops" if records is None else json.dumps(records))
    assert evaluate_qa("--ckpt", run[1], "--data", str(bad)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(bad) in err and fragment in err and "\n" not in err
    assert evaluate_qa("--ckpt", run[1], "--data", str(bad), "--mode", "latent") == 2
