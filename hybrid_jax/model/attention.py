"""Self-attention (causal, GQA, optional sliding window, rotary) and BLT's cross-attention."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hybrid_jax.config import kv_heads
from hybrid_jax.model.layers import RMSNorm, apply_rope, dense


def causal_mask(q_pos: jax.Array, k_pos: jax.Array, window: int = 0) -> jax.Array:
    """bool `[batch, 1, q, k]`: key visible iff k <= q and, with a window w > 0, k > q - w."""
    q, k = q_pos[:, :, None], k_pos[:, None, :]
    visible = k <= q
    if window:
        visible &= k > q - window
    return visible[:, None]


def attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """Scaled dot-product attention with grouped KV heads.

    q `[batch, q_len, heads, head_dim]`, k/v `[batch, kv_len, kv_heads, head_dim]`,
    mask bool `[batch, 1, q_len, kv_len]` -> `[batch, q_len, heads * head_dim]`.
    A query with no visible key gets the uniform average (no NaN), as in the reference.
    """
    out = jax.nn.dot_product_attention(q, k, v, mask=mask)
    return out.reshape(*out.shape[:2], -1)


class SelfAttention(nnx.Module):
    """Causal multi-head self-attention with rotary positions: `[batch, length, d] -> [batch, length, d]`."""

    def __init__(self, stack, dtype, rngs: nnx.Rngs):
        d, self.heads, self.kv_heads = stack.d_model, stack.heads, kv_heads(stack)
        self.head_dim = d // self.heads
        self.q_proj = dense(d, self.heads * self.head_dim, dtype, rngs)
        self.k_proj = dense(d, self.kv_heads * self.head_dim, dtype, rngs)
        self.v_proj = dense(d, self.kv_heads * self.head_dim, dtype, rngs)
        self.o_proj = dense(self.heads * self.head_dim, d, dtype, rngs)

    def project_kv(self, x, cos, sin):
        """Rotated keys and values `[batch, length, kv_heads, head_dim]` (also what a KV cache stores)."""
        b, t, _ = x.shape
        k = self.k_proj(x).reshape(b, t, self.kv_heads, self.head_dim)
        v = self.v_proj(x).reshape(b, t, self.kv_heads, self.head_dim)
        return apply_rope(k, cos, sin), v

    def __call__(self, x, mask, cos, sin):
        b, t, _ = x.shape
        q = apply_rope(self.q_proj(x).reshape(b, t, self.heads, self.head_dim), cos, sin)
        k, v = self.project_kv(x, cos, sin)
        return self.o_proj(attend(q, k, v, mask))


class CrossAttention(nnx.Module):
    """Queries attend to another sequence, both RMS-normed first, no positions.

    queries `[batch, q_len, d]`, states `[batch, kv_len, d]`, mask `[batch, 1, q_len, kv_len]`
    -> `[batch, q_len, d]`. The output includes the query residual (`o_proj(...) + queries`), and the
    caller adds the queries once more: released BLT checkpoints are trained with that double residual.
    """

    def __init__(self, stack, dtype, rngs: nnx.Rngs):
        d, self.heads, self.kv_heads = stack.d_model, stack.heads, kv_heads(stack)
        self.head_dim = d // self.heads
        self.q_norm = RMSNorm(d, stack.norm_eps)
        self.k_norm = RMSNorm(d, stack.norm_eps)
        self.q_proj = dense(d, self.heads * self.head_dim, dtype, rngs)
        self.k_proj = dense(d, self.kv_heads * self.head_dim, dtype, rngs)
        self.v_proj = dense(d, self.kv_heads * self.head_dim, dtype, rngs)
        self.o_proj = dense(self.heads * self.head_dim, d, dtype, rngs)

    def project_kv(self, states):
        """Keys and values `[batch, kv_len, kv_heads, head_dim]` of `states` (what a cache keeps)."""
        b = states.shape[0]
        kv_in = self.k_norm(states)
        k = self.k_proj(kv_in).reshape(b, -1, self.kv_heads, self.head_dim)
        v = self.v_proj(kv_in).reshape(b, -1, self.kv_heads, self.head_dim)
        return k, v

    def attend_kv(self, queries, k, v, mask):
        """The layer's output for projected keys/values `k`, `v` (see `project_kv`)."""
        b, t, _ = queries.shape
        q = self.q_proj(self.q_norm(queries)).reshape(b, t, self.heads, self.head_dim)
        return self.o_proj(attend(q, k, v, mask)) + queries

    def __call__(self, queries, states, mask):
        return self.attend_kv(queries, *self.project_kv(states), mask)
