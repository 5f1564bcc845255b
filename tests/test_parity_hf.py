"""Logit parity with Hugging Face `BltForCausalLM` (float32, max |Δ| <= 1e-4), both directions."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from flax import nnx  # noqa: E402
from hf_helpers import (CONFIGS, hf_entropies, hf_logits, hf_patch_lengths, random_hf_model,  # noqa: E402
                        random_ids)

from hybrid_jax import tokenizer  # noqa: E402
from hybrid_jax.convert import from_hf, to_hf  # noqa: E402
from hybrid_jax.model import BLT  # noqa: E402

TOL = 1e-4
LENGTHS = (29, 67)
BATCH = 3


def hf_convention_starts(lengths: np.ndarray, length: int) -> np.ndarray:
    """Starts as Hugging Face reads its own lengths: every entry begins at its exclusive cumsum."""
    begin = np.cumsum(lengths, axis=1) - lengths
    out = np.zeros((lengths.shape[0], length + 1), bool)
    for r, row in enumerate(begin):
        out[r, row[(row >= 0) & (row <= length)]] = True
    return out


def known_hf_split_bug(cfg, ours_starts, hf_starts):
    """Rows whose only difference is HF's batch-dependent boundary after the last byte.

    With `max_patch_length`, whether HF opens a patch right after the last byte depends on the other
    rows of the batch: `process_patch_lengths` splits a last patch that is one byte too long in rows
    padded to the batch's patch count (exact in the row with the most patches), then zero-pads rows to
    the longest split, and HF's decoder reads every zero-length entry as a patch beginning at the end.
    Our boundary depends on the row alone (as the entropy patcher defines it).
    """
    diff = ours_starts != hf_starts
    assert not diff[:, :-1].any(), "patch boundaries inside the sequence differ from HF"
    rows = np.flatnonzero(diff[:, -1])
    assert not len(rows) or cfg.patching.max_patch_length > 0
    return rows


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
    cfg = ours.config
    want = hf_logits(hf, ids)
    got = np.asarray(ours(jnp.asarray(ids)))
    info = ours.patch(jnp.asarray(ids))
    hf_starts = hf_convention_starts(hf_patch_lengths(hf, ids), ids.shape[1])
    bug_rows = known_hf_split_bug(cfg, np.asarray(info.starts), hf_starts)
    delta = np.abs(want - got)
    delta[bug_rows, -1] = 0.0
    # The rows HF gets wrong in the batch: HF on that row alone, with our patch lengths, must agree.
    for r in bug_rows:
        lengths = np.asarray(info.lengths)[r]
        alone = hf_logits(hf, ids[r:r + 1], lengths[lengths > 0][None])
        delta[r] = np.maximum(delta[r], np.abs(alone[0] - got[r]))
    print(f"{label}: max |Δlogit| = {delta.max():.2e} (excluded HF-bug rows: {list(bug_rows)})")
    assert delta.max() <= TOL
    lengths = np.asarray(info.lengths)
    assert len(set(lengths[lengths > 0].tolist())) > 1, "threshold should give mixed patch lengths"
    return delta.max()


@pytest.mark.parametrize("length", LENGTHS)
def test_import_matches_hf(pair, length):
    name, hf, ours, _ = pair
    ids = random_ids(length, BATCH, length)
    ent = np.abs(hf_entropies(hf, ids) - np.asarray(ours.patch(jnp.asarray(ids)).entropies)).max()
    assert ent <= TOL
    compare(hf, ours, ids, f"import {name} L={length}")


def test_given_patch_lengths_match_hf(pair):
    name, hf, ours, _ = pair
    ids = random_ids(5, 2, 23)
    rng = np.random.default_rng(0)
    for r in range(2):
        cuts = np.sort(rng.choice(np.arange(2, 23), size=6, replace=False))
        lengths = np.diff(np.concatenate([[0, 1], cuts, [23]]))[None]
        want = hf_logits(hf, ids[r:r + 1], lengths)
        got = np.asarray(ours(jnp.asarray(ids[r:r + 1]), patch_lengths=jnp.asarray(lengths)))
        assert np.abs(want - got).max() <= TOL


def test_export_loads_in_hf_with_identical_logits(pair, tmp_path):
    name, hf_ref, imported, _ = pair
    cfg = imported.config.as_configdict()
    model = BLT(cfg, nnx.Rngs(7))
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        if "norm" in str(path[-2]):
            var.set_value(var.get_value() * (1.0 + 0.2 * np.random.default_rng(len(path)).standard_normal(var.shape)))
    # An entropy threshold at the median of this model's own entropies.
    probe = random_ids(1, BATCH, LENGTHS[1])
    ent = np.asarray(model.patch(jnp.asarray(probe)).entropies)[:, 1:]
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


def test_vocab_above_260_exports(tmp_path):
    hf = random_hf_model("gqa", seed=3, vocab_size=264)
    hf.save_pretrained(str(tmp_path / "in"))
    ours, cfg = from_hf(str(tmp_path / "in"))
    assert cfg.vocab_size == 264
    to_hf(ours, cfg, str(tmp_path / "out"))
    again = transformers.BltForCausalLM.from_pretrained(str(tmp_path / "out")).eval()
    ids = random_ids(9, 2, 31, vocab_size=264)
    # Hugging Face does not give <bot>/<eot>/<latent> (260-262) patches of their own as we do; parity
    # holds for bytes and other extra ids (263).
    ids[np.isin(ids, tokenizer.LATENT_SPECIALS)] = 263
    assert np.abs(hf_logits(again, ids) - np.asarray(ours(jnp.asarray(ids)))).max() <= TOL
    with open(tmp_path / "out" / "config.json") as f:
        assert json.load(f)["vocab_size"] == 264
