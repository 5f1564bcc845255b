"""The entropy threshold that gives a target mean patch length: measured on a sample of real data with the
model's own patcher, so every rule (global or monotonic), `max_patch_length` split, `max_patches` cap
and special id counts as it will in training.

The mean patch length is bytes / patches over the whole sample (what "average patch size" means in the
BLT paper); it only grows with the threshold, so a bisection finds where it reaches the target.
"""

from __future__ import annotations

import types
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from hybrid_jax.errors import ConfigError
from hybrid_jax.model import patching

RULES = ("global", "monotonic")


class Calibration(NamedTuple):
    threshold: float
    mean_patch_len: float  # bytes / patches over the sample
    row_std: float  # spread: standard deviation of the rows' own mean patch lengths
    p10: float  # patch-length quantiles of the sample
    p50: float
    p90: float
    rule: str
    samples: int
    seq_len: int

    def as_dict(self) -> dict:
        return self._asdict()


def sample_windows(data: str, seq_len: int, samples: int, seed: int = 0, text_field: str = "text") -> np.ndarray:
    """int32 `[n, seq_len]`: up to `samples` windows of a glob or prepared directory (`sample_stream`)."""
    from hybrid_jax.data.pipeline import streams

    node = ml_collections.ConfigDict(dict(train=data, eval="", text_field=text_field, eval_fraction=0.0,
                                          seq_len=seq_len))
    return sample_stream(streams(node)[0], seq_len, samples, seed)


def sample_stream(stream, seq_len: int, samples: int, seed: int = 0) -> np.ndarray:
    """int32 `[n, seq_len]`: up to `samples` of a packed stream's windows, chosen at random with `seed`."""
    from hybrid_jax.data.pipeline import num_windows, windows

    n = num_windows(stream, seq_len)
    pick = np.sort(np.random.default_rng(seed).choice(n, size=min(samples, n), replace=False))
    return windows(stream, pick * seq_len, seq_len).astype(np.int32)


def entropies(entropy_model, ids: np.ndarray, batch: int = 16) -> np.ndarray:
    """float32 `[n, seq_len]`: next-byte entropies (nats) of `entropy_model` on `ids`, `batch` rows at a time."""
    run = jax.jit(lambda x: patching.entropies_from_logits(entropy_model(x)))
    return np.concatenate([np.asarray(run(jnp.asarray(ids[i:i + batch]))) for i in range(0, len(ids), batch)])


def _patcher(patching_cfg: dict):
    """lengths(ids, entropies, threshold) -> int32 `[n, seq_len + 1]` patch lengths (zero-padded, summing
    to seq_len), with the threshold traced so that a bisection compiles once."""
    def lengths(ids, ents, threshold):
        node = types.SimpleNamespace(**{**patching_cfg, "include_next_token": False, "threshold": threshold})
        return patching.info_from_starts(patching.compute_starts(node, ids, ents)).lengths
    return jax.jit(lengths)


def calibrate(entropy_model, patching_node, ids: np.ndarray, target: float, rule: str | None = None) -> Calibration:
    """The threshold of `rule` (default: the node's own, global or monotonic) at which the patcher of
    `patching_node` cuts `ids` `[n, seq_len]` into patches of mean length `target`."""
    node = patching_node.to_dict() if hasattr(patching_node, "to_dict") else dict(patching_node)
    rule = rule or ("monotonic" if node["monotonicity"] else "global")
    if rule not in RULES:
        raise ConfigError(f"calibration rule {rule!r}: expected one of {', '.join(RULES)}")
    if node.get("threshold_add") is not None:
        raise ConfigError("calibration covers the global and monotonic rules; this model sets "
                          "model.patching.threshold_add")
    node.update(mode="entropy", monotonicity=rule == "monotonic")
    ents = entropies(entropy_model, ids)
    lengths_at = _patcher(node)
    ids_j, ents_j = jnp.asarray(ids), jnp.asarray(ents)

    def mean_len(threshold: float) -> float:
        return ids.size / np.count_nonzero(np.asarray(lengths_at(ids_j, ents_j, jnp.float32(threshold))))

    # The count of patches changes only where the threshold crosses one of these values (entropies, or
    # their rises for the monotonic rule); the candidates are the midpoints between neighbours, so the
    # threshold chosen is as far as it can be from every value that would flip a boundary.
    values = np.unique(ents[:, 1:-1] if rule == "global" else np.diff(ents, axis=1)[:, 1:-1])
    cands = np.concatenate([[values[0] - 1.0], (values[1:] + values[:-1]) / 2, [values[-1] + 1.0]])
    shortest, longest = mean_len(cands[0]), mean_len(cands[-1])
    if not shortest <= target <= longest:
        raise ConfigError(f"target patch length {target} is out of reach: {shortest:.2f} to {longest:.2f} "
                          f"bytes on this sample of {len(ids)} x {ids.shape[1]} bytes")
    lo, hi = 0, len(cands) - 1  # the first candidate whose mean reaches the target
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if mean_len(cands[mid]) < target else (lo, mid)
    threshold = float(cands[lo])
    return _stats(np.asarray(lengths_at(ids_j, ents_j, jnp.float32(threshold))), threshold, rule, ids.shape)


def _stats(lengths: np.ndarray, threshold: float, rule: str, shape) -> Calibration:
    per_row = shape[1] / np.count_nonzero(lengths, axis=1)
    q = np.quantile(lengths[lengths > 0], [0.1, 0.5, 0.9])
    return Calibration(float(threshold), float(lengths.sum() / np.count_nonzero(lengths)), float(per_row.std()),
                       float(q[0]), float(q[1]), float(q[2]), rule, int(shape[0]), int(shape[1]))
