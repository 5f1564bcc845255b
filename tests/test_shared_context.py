"""Continuations that share a context, the context computed once (hybrid_jax.evaluation.shared), give the
per-row full forward's log-likelihoods and greedy flags: random models of every patching mode, with and
without `include_next_token`, `max_patch_length`, `max_patches`, monotonic rules, local windows shorter
than the sequences; empty contexts, multi-byte characters at the boundary, groups split over batches."""

import numpy as np
import pytest
from flax import nnx
from model_helpers import tiny

from hybrid_jax import tokenizer
from hybrid_jax.config import default_config
from hybrid_jax.evaluation.scoring import Scorer, byte_ids, loglikelihood_row
from hybrid_jax.evaluation.shared import Group, batches
from hybrid_jax.model import BLT
from hybrid_jax.parallel.sharding import make_mesh

pytestmark = pytest.mark.integration

MAX_INPUTS = 63
TOL = 1e-4
ALPHABET = list("abcdefgh ijk\n.,()") + ["é", "日", "🙂"]

CONFIGS = [
    ("entropy", dict(max_patch_length=3)),
    ("entropy", dict(include_next_token=False, max_patches=9)),
    ("static", dict(patch_size=3, include_next_token=False)),
    ("space", dict(max_patches=6)),
    ("entropy", dict(monotonicity=True, include_next_token=False)),
]
FAST = {1, 4}  # make test: these two (~10 s each); the slow tier runs the others too


def text(rng, n: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def random_model(mode, patching, seed):
    cfg = tiny(mode, **patching)
    cfg.hash.group_sizes = (3, 5)
    if mode == "entropy":
        cfg.patching.threshold = 5.4  # near a random tiny model's median entropy: mixed patch lengths
    return BLT(cfg, nnx.Rngs(seed))


@pytest.mark.parametrize("seed,mode,patching", [
    pytest.param(i, mode, patching, marks=() if i in FAST else pytest.mark.slow)
    for i, (mode, patching) in enumerate(CONFIGS)])
def test_shared_contexts_equal_rows_alone(seed, mode, patching):
    rng = np.random.default_rng(seed)
    model = random_model(mode, patching, seed)
    scorer = Scorer.of_model(model, make_mesh(default_config().mesh), MAX_INPUTS, batch_size=8)
    groups = []
    for g in range(7):
        context = "" if g == 0 else text(rng, int(rng.integers(1, 40)))
        k = int(rng.integers(2, 6))
        conts = [text(rng, int(rng.integers(1, 20))) for _ in range(k)]
        conts = [c for c in conts if len(byte_ids(context + c)) < MAX_INPUTS] or ["x"]
        groups.append((context, conts))
    got = scorer.score_groups([Group(np.asarray([tokenizer.BOS_ID, *byte_ids(c)], np.int32),
                                     [np.asarray(byte_ids(x), np.int32) for x in conts]) for c, conts in groups])
    rows = [loglikelihood_row(c, x, MAX_INPUTS)[0] for c, conts in groups for x in conts]
    want_ll, want_greedy = scorer.score(rows)
    got_ll = np.concatenate([ll for ll, _ in got])
    got_greedy = np.concatenate([g for _, g in got])
    assert np.abs(got_ll - want_ll).max() <= TOL, np.abs(got_ll - want_ll).max()
    assert (got_greedy == want_greedy).all()
    assert len(scorer.shared_shapes) >= 1


def test_requests_with_shared_contexts_equal_the_per_row_path():
    """Through the LM: repeated contexts (some asked more often than a batch holds), contexts asked once,
    empty continuations and sequences cut from the left, in one call, in lm_eval's order."""
    from lm_eval.api.instance import Instance

    from hybrid_jax.evaluation.harness import HybridLM

    rng = np.random.default_rng(7)
    model = random_model("entropy", dict(max_patch_length=4), 7)
    mesh = make_mesh(default_config().mesh)
    pairs = []
    for g in range(6):
        context = text(rng, int(rng.integers(0, 70)))
        pairs += [(context, text(rng, int(rng.integers(0, 12)))) for _ in range([1, 2, 4, 11][g % 4])]
    order = rng.permutation(len(pairs))
    requests = [Instance("loglikelihood", {}, pairs[i], n) for n, i in enumerate(order)]
    shared_lm = HybridLM(Scorer.of_model(model, mesh, MAX_INPUTS, batch_size=4))
    alone_lm = HybridLM(Scorer.of_model(model, mesh, MAX_INPUTS, batch_size=4), share_contexts=False)
    got, want = shared_lm.loglikelihood(requests), alone_lm.loglikelihood(requests)
    assert shared_lm.scorer.shared_shapes and not alone_lm.scorer.shared_shapes
    assert shared_lm.truncated == alone_lm.truncated > 0
    for (ll, greedy), (ll0, greedy0) in zip(got, want):
        assert abs(ll - ll0) <= TOL and greedy == greedy0


def test_batches_respect_both_limits():
    sizes = [3, 1, 4, 2, 2, 4, 1]
    out = batches(list(range(len(sizes))), sizes, contexts=2, rows=5)
    assert [i for b in out for i in b] == list(range(len(sizes)))
    assert all(len(b) <= 2 and sum(sizes[i] for i in b) <= 5 for b in out)
