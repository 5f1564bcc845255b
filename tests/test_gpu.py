"""Checks that need a GPU (skipped elsewhere; CI has none). Run on one with
`JAX_PLATFORMS=cuda,cpu python -m pytest -q tests/test_gpu.py`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybrid_jax.model.attention import _blocked_causal_heads, _use_cudnn, attend_causal


def _gpu():
    try:
        return jax.devices("gpu")[0]
    except RuntimeError:
        return None


pytestmark = pytest.mark.skipif(_gpu() is None, reason="needs a GPU")


@pytest.mark.parametrize("window", [0, 48])
def test_cudnn_attention_matches_the_float32_reference(window):
    """bf16 inputs take cuDNN's fused kernel; its values and gradients match our float32 blocked path
    on the same (bf16-rounded) inputs to bf16 accuracy."""
    b, t, h, g, hd = 2, 256, 8, 2, 64
    keys = jax.random.split(jax.random.key(0), 4)
    q = jax.random.normal(keys[0], (b, t, h, hd)).astype(jnp.bfloat16)
    k, v = (jax.random.normal(kk, (b, t, g, hd)).astype(jnp.bfloat16) for kk in keys[1:3])
    w = jax.random.normal(keys[3], (b, t, h * hd))
    q, k, v, w = jax.device_put((q, k, v, w), _gpu())
    assert _use_cudnn(q)

    def loss(fn, *qkv):
        return (fn(*qkv).astype(jnp.float32) * w).sum()

    fused = jax.jit(lambda *a: attend_causal(*a, window))
    ref = jax.jit(lambda *a: _blocked_causal_heads(*(x.astype(jnp.float32) for x in a), window))
    assert "cudnn" in fused.lower(q, k, v).compile().as_text().lower()
    np.testing.assert_allclose(fused(q, k, v).astype(jnp.float32), ref(q, k, v), atol=2e-2)
    g_fused = jax.jit(jax.grad(lambda *a: loss(fused, *a), argnums=(0, 1, 2)))(q, k, v)
    g_ref = jax.jit(jax.grad(lambda *a: loss(ref, *a), argnums=(0, 1, 2)))(q, k, v)
    for a, e in zip(g_fused, g_ref):
        scale = float(jnp.abs(e).max())
        assert float(jnp.abs(a.astype(jnp.float32) - e).max()) < 2e-2 * scale
