"""`hybrid_jax.analysis.flops`: the counted matmul FLOPs equal those of the model's own forward pass (every
`dot_general` in its jaxpr), and the attention count is at most what the blocked kernels compute."""

import math

import jax
import pytest
from flax import nnx
from jax.extend import core as jcore

from hybrid_jax.analysis.flops import flops_per_sequence, forward_flops
from hybrid_jax.model import BLT
from test_estimate import variants
from train_helpers import load_config


def _inner_jaxprs(eqn):
    for value in eqn.params.values():
        for x in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(x, jcore.ClosedJaxpr):
                yield x.jaxpr
            elif isinstance(x, jcore.Jaxpr):
                yield x


def dot_flops(jaxpr, times: int = 1) -> dict[str, int]:
    """2·(output size)·(contracted size) summed over the `dot_general`s of `jaxpr` and the jaxprs inside
    it (a scan's body times its length; a cond's first branch): {dense: without batch dimensions, i.e.
    a weight matrix; batched: with them, i.e. attention}."""
    out = {"dense": 0, "batched": 0}
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (contract, _), (batch, _) = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            flops = 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[i] for i in contract)
            out["batched" if batch else "dense"] += times * flops
            continue
        inner = list(_inner_jaxprs(eqn))
        for sub in inner[:1] if eqn.primitive.name == "cond" else inner:
            counts = dot_flops(sub, times * eqn.params.get("length", 1) if eqn.primitive.name == "scan" else times)
            out = {k: out[k] + counts[k] for k in out}
    return out


def forward_dots(m, length: int) -> dict[str, int]:
    """`dot_flops` of `BLT.train_forward` on one sequence of `length` bytes (traced abstractly:
    nothing is allocated, so the 1B config is cheap)."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: BLT(m, nnx.Rngs(0))))
    ids = jax.ShapeDtypeStruct((1, length), jax.numpy.int32)
    jaxpr = jax.make_jaxpr(lambda s, x: nnx.merge(graphdef, s).train_forward(x))(state, ids)
    return dot_flops(jaxpr.jaxpr)


def configs():
    out = dict(variants())
    out["model_1b"] = load_config("model_1b").model
    return out


@pytest.mark.parametrize("name", ["tiny", "toy", "variant", "model_1b"])
def test_matmul_flops_equal_the_forward_pass(name):
    m = configs()[name]
    length = 256 if name != "model_1b" else 4096
    f, dots = forward_flops(m, length), forward_dots(m, length)
    assert dots["dense"] == f["model_matmul"] + f["entropy_matmul"]
    # Attention counts the visible (query, key) pairs; the CPU's blocked kernels score whole blocks of
    # 64 queries, so also the masked part of the blocks on the diagonal and at the window's edge.
    assert f["model_attention"] + f["entropy_attention"] <= dots["batched"]


def test_training_counts_three_passes():
    m = load_config("toy").model
    f = forward_flops(m, 256)
    assert flops_per_sequence(m, 256) == 3 * sum(f.values())  # toy trains its entropy model online
    m.entropy_model.trained_online = False
    frozen = f["entropy_matmul"] + f["entropy_attention"]  # forward only
    assert flops_per_sequence(m, 256) == 3 * (f["model_matmul"] + f["model_attention"]) + frozen
