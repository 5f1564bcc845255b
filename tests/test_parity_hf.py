"""Parity with Hugging Face `BltForCausalLM` (float32, max |Δ| <= 1e-4) on hand-picked configs: given
patch lengths, and exports of our own initialisation. Random configs in both directions, greedy
generation and Meta's rules: `test_differential.py`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from flax import nnx  # noqa: E402
from hf_helpers import (CONFIGS, hf_entropies, hf_logits, hf_patch_lengths, random_hf_model,  # noqa: E402
                        random_ids)

from hybrid_jax.model import BLT  # noqa: E402
from hybrid_jax.storage.hf import from_hf, to_hf  # noqa: E402

pytestmark = pytest.mark.integration

TOL = 1e-4
LENGTHS = (29, 67)
BATCH = 3


@pytest.fixture(scope="module", params=list(CONFIGS))
def pair(request, tmp_path_factory):
    """(name, HF model, our imported model, HF dir) with an entropy threshold that mixes patch lengths."""
    name = request.param
    hf = random_hf_model(name, seed=len(name))
    ent = np.concatenate([hf_entropies(hf, random_ids(n, BATCH, n))[:, 1:].ravel() for n in LENGTHS])
    hf.config.patching_threshold = float(np.median(ent))
    d = str(tmp_path_factory.mktemp(f"hf_{name}"))
    hf.save_pretrained(d)
    ours, cfg = from_hf(d)
    return name, hf, ours, d


def compare(hf, ours, ids, label):
    """HF on each row alone (its batched patcher pads rows and moves their last boundary) against ours
    on the batch: logits within TOL, the same patches, and patches of mixed lengths."""
    got, info = jax.device_get(nnx.jit(lambda m, x: (m(x), m.patch(x)))(ours, jnp.asarray(ids)))
    delta = 0.0
    for r in range(len(ids)):
        delta = max(delta, float(np.abs(hf_logits(hf, ids[r:r + 1])[0] - got[r]).max()))
        lengths = hf_patch_lengths(hf, ids[r:r + 1])[0]
        begin = np.cumsum(lengths) - lengths
        assert np.flatnonzero(np.asarray(info.starts)[r]).tolist() == sorted(set(begin.tolist())), label
    print(f"{label}: max |Δlogit| = {delta:.2e}")
    assert delta <= TOL
    lengths = np.asarray(info.lengths)
    assert len(set(lengths[lengths > 0].tolist())) > 1, "threshold should give mixed patch lengths"
    return delta


def test_given_patch_lengths_match_hf(pair):
    name, hf, ours, _ = pair
    ids = random_ids(5, 2, 23)
    rng = np.random.default_rng(0)
    for r in range(2):
        cuts = np.sort(rng.choice(np.arange(2, 23), size=6, replace=False))
        lengths = np.diff(np.concatenate([[0, 1], cuts, [23]]))[None]
        want = hf_logits(hf, ids[r:r + 1], lengths)
        got = np.asarray(nnx.jit(lambda m, x, n: m(x, patch_lengths=n))(ours, jnp.asarray(ids[r:r + 1]),
                                                                         jnp.asarray(lengths)))
        assert np.abs(want - got).max() <= TOL


@pytest.mark.slow  # the differential suite's fast seeds export too
def test_export_loads_in_hf_with_identical_logits(pair, tmp_path):
    name, hf_ref, imported, _ = pair
    cfg = imported.config.as_configdict()
    model = BLT(cfg, nnx.Rngs(7))
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        if "norm" in str(path[-2]):
            var.set_value(var.get_value() * (1.0 + 0.2 * np.random.default_rng(len(path)).standard_normal(var.shape)))
    # An entropy threshold at the median of this model's own entropies.
    probe = random_ids(1, BATCH, LENGTHS[1])
    ent = np.asarray(nnx.jit(lambda m, x: m.patch(x).entropies)(model, jnp.asarray(probe)))[:, 1:]
    cfg.patching.threshold = float(np.median(ent))
    params = nnx.state(model, nnx.Param)
    model = BLT(cfg, nnx.Rngs(7))
    nnx.update(model, params)
    out = str(tmp_path / "hf")
    to_hf(model, cfg, out)
    hf, info = transformers.BltForCausalLM.from_pretrained(out, output_loading_info=True)
    hf = hf.float().eval()
    assert info["missing_keys"] == set() or not info["missing_keys"]
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    for length in LENGTHS:
        compare(hf, model, random_ids(100 + length, BATCH, length), f"export {name} L={length}")
    # and back: our importer reads our export bit for bit
    back, _ = from_hf(out)
    for (p1, v1), (p2, v2) in zip(nnx.to_flat_state(nnx.state(model, nnx.Param)), nnx.to_flat_state(nnx.state(back, nnx.Param))):
        assert p1 == p2 and np.array_equal(np.asarray(v1.get_value()), np.asarray(v2.get_value()))
