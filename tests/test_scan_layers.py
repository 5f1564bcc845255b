"""`model.global_transformer.scan_layers`: the stacked, scanned global transformer computes what the
layer-by-layer one does (forward, gradients, remat, export, cached generation)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from hybrid_jax.inference import generate as gen
from hybrid_jax.model import BLT
from hybrid_jax.storage.hf import from_hf, to_hf
from hybrid_jax.storage.hf.weights import to_hf_arrays
from model_helpers import tiny
from test_flops import dot_flops

pytestmark = pytest.mark.integration

TOL = 1e-5


def pair(remat="none"):
    """(layer-by-layer model, scanned model) of the same tiny config and seed."""
    models = []
    for scan in (False, True):
        cfg = tiny()
        cfg.global_transformer.update(layers=3, scan_layers=scan, remat=remat)
        models.append(BLT(cfg, nnx.Rngs(0)))
    return models


def ids_batch(batch=2, length=24):
    ids = np.random.default_rng(0).integers(4, 260, size=(batch, length))
    ids[:, 0] = 1
    return jnp.asarray(ids, jnp.int32)


def next_byte_loss(model, ids):
    """(loss of the params, the params): next-byte cross-entropy of `model` on `ids`."""
    graphdef, params = nnx.split(model, nnx.Param)

    def loss(p):
        logits, _, _ = nnx.merge(graphdef, p).train_forward(ids[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, ids[:, 1:]).mean()
    return loss, params


def loss_and_grads(model, ids):
    loss, params = next_byte_loss(model, ids)
    return jax.value_and_grad(loss)(params), str(jax.make_jaxpr(loss)(params))


def global_grads(grads, stacked: bool) -> np.ndarray:
    """All global-layer gradients as one `[layers, ...]`-ordered flat vector."""
    layers = grads["global_transformer"]["layers"]
    if not stacked:
        layers = jax.tree.map(lambda *a: jnp.stack(a), *[layers[i] for i in sorted(layers.keys())])
    return np.concatenate([np.asarray(x).reshape(x.shape[0], -1) for x in jax.tree.leaves(layers)], axis=1)


def test_scanned_weights_are_the_stacked_layer_weights():
    plain, scanned = pair()
    q = scanned.global_transformer.layers.self_attn.q_proj.kernel
    assert q.shape == (3, 48, 48)
    for i in range(3):
        np.testing.assert_array_equal(q[i], plain.global_transformer.layers[i].self_attn.q_proj.kernel)


@pytest.mark.parametrize("remat", [pytest.param("none", marks=pytest.mark.slow), "full",
                                   pytest.param("elementwise", marks=pytest.mark.slow)])
def test_scanned_loss_and_gradients_equal_layer_by_layer(remat):
    ids = ids_batch()
    plain, scanned = pair(remat)
    (l0, g0), jaxpr0 = loss_and_grads(plain, ids)
    (l1, g1), jaxpr1 = loss_and_grads(scanned, ids)
    assert "scan[" in jaxpr1 and "scan[" not in jaxpr0  # the layers really run inside one scan
    assert abs(float(l0) - float(l1)) <= TOL
    assert np.max(np.abs(global_grads(g0, False) - global_grads(g1, True))) <= TOL
    rest0 = {k: v for k, v in g0.items() if k != "global_transformer"}
    rest1 = {k: v for k, v in g1.items() if k != "global_transformer"}
    assert max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(rest0), jax.tree.leaves(rest1))) <= TOL


def test_scanned_model_exports_layer_by_layer(tmp_path):
    plain, scanned = pair()
    flat = lambda m: nnx.to_flat_state(nnx.state(m, nnx.Param))  # noqa: E731
    a, b = to_hf_arrays(flat(plain)), to_hf_arrays(flat(scanned))
    assert a.keys() == b.keys() and "model.global_transformer.layers.2.mlp.up_proj.weight" in b
    assert all(np.array_equal(a[k], b[k]) for k in a)
    to_hf(scanned, scanned.config, str(tmp_path / "hf"))
    back, cfg = from_hf(str(tmp_path / "hf"))
    ids = ids_batch()
    assert not cfg.global_transformer.scan_layers
    assert float(jnp.abs(back(ids) - scanned(ids)).max()) <= TOL


@pytest.mark.slow  # two generators
def test_scanned_model_generates_the_same_bytes():
    plain, scanned = pair()
    prompts = ["def f(x):\n    return", "Hi"]
    assert gen.run(scanned, prompts, 12).ids == gen.run(plain, prompts, 12).ids


def layer_scans(model, ids):
    """(forward, backward) scans over the 3 global layers in the jaxpr of the gradient."""
    loss, params = next_byte_loss(model, ids)
    eqns = jax.make_jaxpr(jax.grad(loss))(params).jaxpr.eqns
    forward, backward = [e for e in eqns if e.primitive.name == "scan" and e.params["length"] == 3]
    return forward, backward


def test_elementwise_remat_keeps_less_and_recomputes_no_matmul():
    ids = ids_batch()
    kept, backward_dots = {}, {}
    for remat in ("none", "elementwise", "dots_saveable", "full"):
        forward, backward = layer_scans(pair(remat)[1], ids)
        # What the forward hands to the backward: its stacked outputs, written and read back per layer.
        kept[remat] = sum(v.aval.size * v.aval.dtype.itemsize for v in forward.outvars[forward.params["num_carry"]:])
        backward_dots[remat] = dot_flops(backward.params["jaxpr"].jaxpr)
    assert kept["full"] < kept["elementwise"] < 0.75 * kept["none"]
    # No matmul and no attention is recomputed (dots_saveable recomputes the attention, full everything).
    assert backward_dots["elementwise"] == backward_dots["none"]
    assert backward_dots["dots_saveable"]["batched"] > backward_dots["none"]["batched"]
