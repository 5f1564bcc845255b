import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hybrid_jax.model import BLT
from model_helpers import tiny


def ids_batch(seed=0, batch=2, length=24):
    ids = np.random.default_rng(seed).integers(4, 260, size=(batch, length))
    ids[:, 0] = 1
    ids[0, 5:9] = 4 + 32  # spaces, so space patching has work to do
    return jnp.asarray(ids, jnp.int32)


@pytest.mark.parametrize("mode,extra", [("entropy", dict(threshold=5.5)), ("static", dict(patch_size=3)),
                                        ("space", dict(max_patch_length=4))])
def test_causal_prefix_logits_do_not_see_future_bytes(mode, extra):
    model = BLT(tiny(mode, **extra), nnx.Rngs(0))
    forward = nnx.jit(lambda m, x: m(x))  # one compile instead of one per eager op (jit == eager: below)
    ids = ids_batch()
    base = np.asarray(forward(model, ids))
    for t in (3, 11, 20):
        changed = ids.at[:, t + 1:].set(jnp.asarray(np.random.default_rng(t).integers(4, 260, (2, 23 - t))))
        logits = np.asarray(forward(model, changed))
        np.testing.assert_allclose(logits[:, :t + 1], base[:, :t + 1], atol=1e-5)
        assert not np.allclose(logits[:, t + 1:], base[:, t + 1:], atol=1e-3)


def test_entropy_threshold_gives_mixed_patches():
    model = BLT(tiny("entropy", threshold=5.5), nnx.Rngs(0))
    info = model.patch(ids_batch())
    ent = np.asarray(info.entropies)
    thr = float(np.median(ent[:, 1:]))
    model = BLT(tiny("entropy", threshold=thr), nnx.Rngs(0))
    lengths = np.asarray(model.patch(ids_batch()).lengths)
    assert len(set(lengths[lengths > 0].tolist())) > 1
    assert (lengths.sum(axis=1) >= 24).all()


def test_jit_matches_eager_and_given_lengths_match_patcher():
    model = BLT(tiny("entropy", threshold=5.52, max_patch_length=3), nnx.Rngs(1))
    ids = ids_batch(2)
    eager = np.asarray(model(ids))
    jitted = np.asarray(nnx.jit(lambda m, x: m(x))(model, ids))
    np.testing.assert_allclose(jitted, eager, atol=1e-5)
    info = model.patch(ids)
    given = np.asarray(model(ids, patch_lengths=info.lengths))
    np.testing.assert_allclose(given, eager, atol=1e-6)
    assert np.asarray(info.lengths).max() <= 3


def test_bfloat16_compute_close_to_float32():
    cfg = tiny("static")
    f32 = BLT(cfg, nnx.Rngs(0))
    cfg.dtype = "bfloat16"
    bf16 = BLT(cfg, nnx.Rngs(0))
    ids = ids_batch()
    a, b = np.asarray(f32(ids)), np.asarray(bf16(ids))
    assert b.dtype == np.float32 and np.isfinite(b).all()
    assert np.abs(a - b).max() < 0.1 * np.abs(a).max()
    leaves = jax.tree.leaves(nnx.state(bf16, nnx.Param))
    assert all(x.dtype == jnp.float32 for x in leaves)


def test_gradients_reach_main_model_not_entropy_model():
    model = BLT(tiny("entropy", threshold=5.5), nnx.Rngs(0))
    ids = ids_batch()

    def loss(m, ids):
        logits = m(ids)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits[:, :-1]), ids[:, 1:, None], -1))

    grads = nnx.jit(nnx.grad(loss))(model, ids)
    norm = lambda tree: float(sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(tree)))
    assert norm(grads.entropy_model) == 0.0  # patching is discrete
    for part in ("local_encoder", "global_transformer", "local_decoder", "lm_head"):
        assert norm(grads[part]) > 0.0, part


def test_ids_outside_vocab_raise():
    model = BLT(tiny("static"), nnx.Rngs(0))
    with pytest.raises(ValueError, match="token id 260 is outside the vocabulary"):
        model(jnp.asarray([[1, 260]]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(jnp.asarray([[1, -1]]))
    with pytest.raises(ValueError, match="int32\\[batch, length\\]"):
        model(jnp.asarray([1, 5]))


@pytest.mark.parametrize("policy", [pytest.param("full", marks=pytest.mark.slow), "dots_saveable",
                                    pytest.param("elementwise", marks=pytest.mark.slow)])
def test_remat_keeps_loss_and_gradients(policy):
    import optax

    ids = ids_batch()

    def loss_and_grads(remat):
        cfg = tiny()
        for name in ("entropy_model", "local_encoder", "global_transformer", "local_decoder"):
            cfg[name].remat = remat
        model = BLT(cfg, nnx.Rngs(0))
        graphdef, params = nnx.split(model, nnx.Param)

        def loss(p):
            logits, _, _ = nnx.merge(graphdef, p).train_forward(ids[:, :-1])
            return optax.softmax_cross_entropy_with_integer_labels(logits, ids[:, 1:]).mean()
        jaxpr = str(jax.make_jaxpr(loss)(params))
        return jax.jit(jax.value_and_grad(loss))(params), jaxpr

    (l0, g0), plain = loss_and_grads("none")
    (l1, g1), remat = loss_and_grads(policy)
    assert "remat" in remat and "remat" not in plain  # the remat transform is really applied
    assert abs(float(l0) - float(l1)) <= 1e-6
    assert max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1))) <= 1e-6


@pytest.mark.slow  # the differential suite covers the rule
def test_without_next_token_only_the_last_bytes_logits_change():
    """Static patches of 4 after BOS end exactly at byte 9: with include_next_token the last byte reads
    its own, complete patch; without, the one before. Every other byte, and training's forward (which
    evaluation shares), agree with that."""
    cfg = tiny("static", patch_size=4)
    model = BLT(cfg, nnx.Rngs(0))
    cfg.patching.include_next_token = False
    hf_like = BLT(cfg, nnx.Rngs(0))
    ids = ids_batch(length=9)
    full, other = np.asarray(model(ids)), np.asarray(hf_like(ids))
    np.testing.assert_allclose(other[:, :-1], full[:, :-1], atol=1e-6)
    assert np.abs(other[:, -1] - full[:, -1]).max(axis=-1).min() > 1e-2
    logits, info, _ = hf_like.train_forward(ids)
    np.testing.assert_allclose(np.asarray(logits), other, atol=1e-6)
    assert not np.asarray(info.starts)[:, -1].any() and np.asarray(model.patch(ids).starts)[:, -1].all()


def test_models_of_one_edited_config_never_share_compiled_code():
    """Edit a config between two models: their graphdefs (jit's cache keys) must differ. ml_collections
    compares a FrozenConfigDict through the ConfigDict it was made from, which made them equal, and
    `generate` then ran the first model's compiled program for the second."""
    cfg = tiny("static", patch_size=4)
    first = BLT(cfg, nnx.Rngs(0))
    cfg.patching.include_next_token = False
    second = BLT(cfg, nnx.Rngs(0))
    assert first.config.patching.include_next_token and not second.config.patching.include_next_token
    assert nnx.graphdef(first) != nnx.graphdef(second)
    assert hash(first.config) != hash(second.config)
