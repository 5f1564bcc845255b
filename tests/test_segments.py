"""`segment_max_sorted`'s scan (what GPUs and TPUs run) equals `jax.ops.segment_max` (values and
gradients), also with empty segments, ids outside the range and one segment that takes most of the
row (the overflowing last patch)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybrid_jax.model.segments import segment_max_sorted


def _reference(x, seg, n):
    return jax.vmap(lambda xs, s: jax.ops.segment_max(xs, s, num_segments=n, indices_are_sorted=True))(x, seg)


def _loss(fn, w):
    def f(x):
        y = fn(x)
        return jnp.where(jnp.isneginf(y), 0.0, y * w).sum()
    return f


@pytest.mark.parametrize("seed", range(6))
def test_segment_max_matches_scatter_max(seed):
    rng = np.random.default_rng(seed)
    b, n, segments = 3, int(rng.integers(1, 40)), int(rng.integers(1, 12))
    seg = jnp.asarray(np.sort(rng.integers(-2, segments + 3, size=(b, n)), axis=1), jnp.int32)
    x = jnp.asarray(rng.standard_normal((b, n, 2, 3)), jnp.float32)
    got, ref = segment_max_sorted(x, seg, segments, method="scan"), _reference(x, seg, segments)
    np.testing.assert_array_equal(got, ref)
    w = jnp.asarray(rng.standard_normal(ref.shape), jnp.float32)
    g_got = jax.grad(_loss(lambda x: segment_max_sorted(x, seg, segments, method="scan"), w))(x)
    g_ref = jax.grad(_loss(lambda x: _reference(x, seg, segments), w))(x)
    np.testing.assert_allclose(g_got, g_ref, atol=1e-6)


@pytest.mark.slow  # long rows
def test_long_last_segment_in_bf16():
    """Every byte past the patch budget lands in the last patch: one segment of 200 elements."""
    seg = jnp.asarray(np.minimum(np.arange(256) // 4, 13)[None], jnp.int32)
    x = jax.random.normal(jax.random.key(0), (1, 256, 16)).astype(jnp.bfloat16)
    np.testing.assert_array_equal(segment_max_sorted(x, seg, 16, method="scan"), _reference(x, seg, 16))


def test_gpu_code_path_of_a_bf16_train_step_has_no_contended_scatter(monkeypatch):
    """What the H200 trace blamed (bf16 scatter-adds and scatter-max, run as compare-and-swap loops):
    none is left in the train step that a GPU compiles (the segment scan, cuDNN aside)."""
    from train_helpers import tiny_config

    from hybrid_jax.model import segments
    from hybrid_jax.parallel.sharding import make_mesh
    from hybrid_jax.training.step import compile_steps, initial_state

    monkeypatch.setattr(segments, "default_method", lambda: "scan")
    cfg = tiny_config("unused", seq_len=64)
    cfg.model.dtype = "bfloat16"
    s = compile_steps(cfg, make_mesh(cfg.mesh, jax.devices()[:1]))
    state = jax.eval_shape(lambda: initial_state(cfg, s))
    batch = jax.ShapeDtypeStruct((cfg.train.batch_size, 65), np.int32, sharding=s.batch_sharding)
    text = s.train.lower(state, batch).as_text()
    scatters = re.findall(r'"stablehlo\.scatter".*?\n(.*?)\}\) : \((.*?)\) ->', text, re.S)
    assert scatters, "expected the embeddings' gradients to be scatter-adds"
    for body, types in scatters:
        assert "bf16" not in types, types
        assert "maximum" not in body and "minimum" not in body, types
