"""Threshold calibration: the threshold found is where the mean patch length crosses the target, by an
independent NumPy count of Meta's global and monotonic rules and by the model's own patcher; targets out
of reach are one-line errors; the command prints JSON."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hybrid_jax import cli
from hybrid_jax.analysis.calibrate import calibrate, entropies, sample_windows
from hybrid_jax.cli import calibrate as calibrate_cli
from hybrid_jax.errors import ConfigError
from hybrid_jax.model import BLT
from hybrid_jax.storage.checkpoint import save_model
from model_helpers import tiny


@pytest.fixture(scope="module")
def model():
    return BLT(tiny(), nnx.Rngs(3))


def reference_mean(ents: np.ndarray, threshold: float, rule: str) -> float:
    """bytes / patches by the rules' definitions: bytes 0 and 1 start patches; global: byte t >= 2 iff
    e[t-1] > threshold; monotonic: byte 2, and byte t >= 3 iff e[t-1] - e[t-2] > threshold."""
    n, length = ents.shape
    if rule == "global":
        later = (ents[:, 1:length - 1] > threshold).sum()
        return n * length / (2 * n + later)
    later = (ents[:, 2:length - 1] - ents[:, 1:length - 2] > threshold).sum()
    return n * length / (3 * n + later)


def random_ids(seed: int, n: int = 12, length: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(4, 260, size=(n, length)).astype(np.int32)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("rule", ["global", "monotonic"])
def test_threshold_is_where_the_mean_crosses_the_target(model, seed, rule):
    ids = random_ids(seed)
    target = float(np.random.default_rng(seed).uniform(1.5, 6.0))
    result = calibrate(model.entropy_model, model.config.patching, ids, target, rule)
    ents = entropies(model.entropy_model, ids)
    assert result.rule == rule and result.samples == 12 and result.seq_len == 48
    assert result.mean_patch_len == pytest.approx(reference_mean(ents, result.threshold, rule), rel=1e-12)
    below = np.unique(ents[:, 1:-1] if rule == "global" else np.diff(ents, axis=1)[:, 1:-1])
    below = below[below < result.threshold].max()  # the last value under the threshold: one boundary more
    assert result.mean_patch_len >= target > reference_mean(ents, below - 1e-6, rule)
    assert result.p10 <= result.p50 <= result.p90 and result.row_std >= 0


def test_the_models_own_patcher_agrees(model):
    ids = random_ids(9)
    result = calibrate(model.entropy_model, model.config.patching, ids, 3.0)
    cfg = tiny(threshold=result.threshold, include_next_token=False)
    info = BLT(cfg, nnx.Rngs(3)).patch(jnp.asarray(ids))
    assert ids.size / float(info.starts[:, :-1].sum()) == pytest.approx(result.mean_patch_len, rel=1e-12)


def test_max_patch_length_counts_in_the_mean(model):
    ids = random_ids(5)
    capped = tiny(max_patch_length=3)
    result = calibrate(model.entropy_model, capped.patching, ids, 2.5)
    assert result.p90 <= 3 and result.mean_patch_len >= 2.5
    with pytest.raises(ConfigError, match="out of reach"):
        calibrate(model.entropy_model, capped.patching, ids, 3.5)  # no patch is longer than 3


def test_unknown_rule_and_threshold_add_are_errors(model):
    with pytest.raises(ConfigError, match="calibration rule 'both'"):
        calibrate(model.entropy_model, model.config.patching, random_ids(0), 3.0, "both")
    with pytest.raises(ConfigError, match="threshold_add"):
        calibrate(model.entropy_model, tiny(threshold_add=0.1).patching, random_ids(0), 3.0)


def test_calibrate_command(model, tmp_path, capsys):
    workdir = str(tmp_path / "w")
    save_model(model, workdir)
    (tmp_path / "a.txt").write_text("The patcher reads bytes. " * 200)
    data = str(tmp_path / "*.txt")
    args = ["--ckpt", workdir, "--data", data, "--target_patch_len", "2.5", "--seq_len", "64", "--samples", "8"]
    assert cli.run(calibrate_cli.main, args + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mean_patch_len"] >= 2.5 and out["target_patch_len"] == 2.5 and out["samples"] == 8
    ids = sample_windows(data, 64, 8)
    again = calibrate(model.entropy_model, model.config.patching, ids, 2.5)
    assert out["threshold"] == again.threshold
    assert cli.run(calibrate_cli.main, args) == 0
    assert "--config.model.patching.threshold=" in capsys.readouterr().out
    assert cli.run(calibrate_cli.main, args[:5] + ["1000", "--seq_len", "64"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("error: target patch length 1000.0 is out of reach")
    assert "Traceback" not in err
