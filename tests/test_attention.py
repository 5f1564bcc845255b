"""The blocked causal self-attention and the gathered and segmented cross-attentions equal dense masked
attention (values and gradients)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybrid_jax.model.attention import attend, attend_causal, attend_own_keys, attend_segments, causal_mask

TOL = 1e-5  # float32


def _qkv(key, b, nq, nk, heads, kv_heads, hd):
    kq, kk, kv = jax.random.split(key, 3)
    return (jax.random.normal(kq, (b, nq, heads, hd)), jax.random.normal(kk, (b, nk, kv_heads, hd)),
            jax.random.normal(kv, (b, nk, kv_heads, hd)))


@pytest.mark.parametrize("kv_heads", [pytest.param(4, marks=pytest.mark.slow), 2])
def test_segments_equal_masked_attention(kv_heads):
    b, S, j, n, heads, hd = 2, 6, 2, 11, 4, 8
    # row 0: segments 0..3 used, 4 and 5 empty; row 1: segment 2 empty in the middle
    seg = jnp.asarray([[0, 0, 1, 1, 1, 2, 3, 3, 3, 3, 3], [0, 1, 1, 1, 3, 3, 4, 4, 5, 5, 5]], jnp.int32)
    q, k, v = _qkv(jax.random.key(0), b, S * j, n, heads, kv_heads, hd)
    mask = ((jnp.arange(S * j) // j)[None, :, None] == seg[:, None, :])[:, None]

    def dense(q, k, v):
        return attend(q, k, v, mask)

    def segmented(q, k, v):
        return attend_segments(q.reshape(b, S, j, heads, hd), k, v, seg).reshape(b, S * j, -1)

    np.testing.assert_allclose(segmented(q, k, v), dense(q, k, v), atol=TOL)
    w = jax.random.normal(jax.random.key(1), (b, S * j, heads * hd))
    g_dense = jax.grad(lambda *a: (dense(*a) * w).sum(), argnums=(0, 1, 2))(q, k, v)
    g_seg = jax.grad(lambda *a: (segmented(*a) * w).sum(), argnums=(0, 1, 2))(q, k, v)
    for a, e in zip(g_seg, g_dense):
        np.testing.assert_allclose(a, e, atol=TOL)


def test_own_keys_equal_masked_attention():
    b, n, p, j, heads, kv_heads, hd = 2, 7, 4, 2, 4, 2, 8
    index = jnp.asarray([[0, 0, 1, 1, 2, 3, 3], [0, 1, 1, 1, 1, 2, 3]], jnp.int32)
    q, k, v = _qkv(jax.random.key(2), b, n, p * j, heads, kv_heads, hd)
    mask = (index[:, :, None] == (jnp.arange(p * j) // j)[None, None, :])[:, None]
    at = index[:, :, None, None, None]

    def gathered(q, k, v):
        kk, vv = (jnp.take_along_axis(x.reshape(b, p, j, kv_heads, hd), at, axis=1) for x in (k, v))
        return attend_own_keys(q, kk, vv)

    np.testing.assert_allclose(gathered(q, k, v), attend(q, k, v, mask), atol=TOL)
    g1 = jax.grad(lambda *a: gathered(*a).sum(), argnums=(0, 1, 2))(q, k, v)
    g2 = jax.grad(lambda *a: attend(*a, mask).sum(), argnums=(0, 1, 2))(q, k, v)
    for a, e in zip(g1, g2):
        np.testing.assert_allclose(a, e, atol=TOL)


@pytest.mark.parametrize("t,window,block,kv_heads", [
    (13, 0, 4, 2),   # several blocks, the last one short, GQA
    (13, 5, 4, 4),   # sliding window narrower than a block's reach: keys before the band are skipped
    pytest.param(16, 3, 16, 2, marks=pytest.mark.slow),  # one block
    pytest.param(9, 20, 4, 4, marks=pytest.mark.slow),   # window longer than the sequence
])
def test_blocked_causal_equals_masked_attention(t, window, block, kv_heads):
    q, k, v = _qkv(jax.random.key(3), 2, t, t, 4, kv_heads, 8)
    pos = jnp.broadcast_to(jnp.arange(t), (2, t))
    mask = causal_mask(pos, pos, window)

    def blocked(q, k, v):
        return attend_causal(q, k, v, window, block)

    np.testing.assert_allclose(blocked(q, k, v), attend(q, k, v, mask), atol=TOL)
    w = jax.random.normal(jax.random.key(4), (2, t, 4 * 8))
    g1 = jax.grad(lambda *a: (blocked(*a) * w).sum(), argnums=(0, 1, 2))(q, k, v)
    g2 = jax.grad(lambda *a: (attend(*a, mask) * w).sum(), argnums=(0, 1, 2))(q, k, v)
    for a, e in zip(g1, g2):
        np.testing.assert_allclose(a, e, atol=TOL)


@pytest.mark.parametrize("window", [0, 5])
def test_fused_path_masks_like_the_blocked_one(window):
    """The GPU path hands masking to `jax.nn.dot_product_attention` (is_causal + local_window_size);
    its XLA implementation on the CPU checks that the window maps to the same visible keys."""
    from hybrid_jax.model.attention import _attend_cudnn

    q, k, v = _qkv(jax.random.key(5), 2, 13, 13, 4, 2, 8)
    fused = _attend_cudnn(q, k, v, window, implementation="xla")
    np.testing.assert_allclose(fused, attend_causal(q, k, v, window), atol=TOL)
