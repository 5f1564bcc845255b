"""`python -m benchmarks.coconut_study` end to end at toy size: data, modes trained, both tests scored,
the table and the one-line JSON with its documented shape."""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import coconut_study

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = ["coconut.num_epochs=2", "coconut.max_latent_stage=1", "train.batch_size=8", "coconut.max_new_bytes=6",
       "model.global_transformer.d_model=32", "model.global_transformer.layers=1",
       "model.local_encoder.d_model=16", "model.local_decoder.d_model=16"]


def study(tmp_path, *args):
    return ["--data_seed", "3", "--n_train", "16", "--n_test", "6", "--root", str(tmp_path), "--json",
            *args, *(a for s in TOY for a in ("--set", s))]


def check_shape(out: dict, modes, seeds):
    assert sorted(out) == sorted(modes)
    for res in out.values():
        assert {"accuracy", "accuracy_ood", "n", "positions_per_answer"} <= set(res)
        assert res["n"] == 6 and 0.0 <= res["accuracy"] <= 1.0 and 0.0 <= res["accuracy_ood"] <= 1.0
        assert sorted(res["per_seed"]) == [str(s) for s in seeds]


@pytest.mark.slow  # 20-30 s: keeps make test inside its budget
def test_study_prints_one_json_object_last(tmp_path, capsys):
    assert coconut_study.main(study(tmp_path, "--modes", "no-cot", "--seeds", "0")) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    out = json.loads(lines[-1])
    check_shape(out, ["no-cot"], [0])
    assert out["no-cot"]["positions_per_answer"] >= 1  # at least EOS
    assert any(line.startswith("| no-cot |") for line in lines)
    assert (tmp_path / "data-chains-s3-n16-t6" / "chains_test_ood.json").exists()


@pytest.mark.slow  # two modes, two seeds, run twice as a user would
def test_study_subprocess_two_modes_and_cache(tmp_path):
    cmd = [sys.executable, "-m", "benchmarks.coconut_study", *study(tmp_path, "--modes", "coconut", "no-cot",
                                                                     "--seeds", "0", "1")]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    check_shape(out, ["coconut", "no-cot"], [0, 1])
    # <bot>, one thought and <eot> come before anything coconut writes.
    assert out["coconut"]["positions_per_answer"] >= 4
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and json.loads(again.stdout.strip().splitlines()[-1]) == out  # cached


def test_bad_set_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        coconut_study.main(["--set", "oops", "--root", str(tmp_path)])
    assert e.value.code == 2 and "--set expects KEY=VALUE" in capsys.readouterr().err
