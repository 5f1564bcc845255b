"""Key/value caches for incremental decoding, and a transformer stack that runs on a chunk of new
positions against its cache.

A cache is a fixed-size ring: a stack with a sliding window keeps only its last `window` positions, so
the per-step cost of the byte-level stacks does not grow with the context. Each slot remembers its
position (-1 = empty); attention masks by position, so ring order never matters.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from hybrid_jax.config import kv_heads
from hybrid_jax.model.attention import attend, causal_mask
from hybrid_jax.model.layers import apply_rope, rope_tables


class KVCache(NamedTuple):
    """k, v `[batch, size, kv_heads, head_dim]`; pos int32 `[batch, size]` (-1 = empty slot)."""
    k: jax.Array
    v: jax.Array
    pos: jax.Array


def cache_size(stack, max_len: int) -> int:
    """Slots a stack needs for `max_len` positions: its window when that is shorter."""
    return min(stack.window, max_len) if stack.window else max_len


def empty_cache(stack, batch: int, size: int, dtype) -> KVCache:
    shape = (batch, size, kv_heads(stack), stack.d_model // stack.heads)
    return KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.full((batch, size), -1, jnp.int32))


def empty_caches(stack, batch: int, max_len: int, dtype) -> tuple[KVCache, ...]:
    """One empty cache per layer of `stack`."""
    size = cache_size(stack, max_len)
    return tuple(empty_cache(stack, batch, size, dtype) for _ in range(stack.layers))


def write(cache: KVCache, k: jax.Array, v: jax.Array, pos: jax.Array) -> KVCache:
    """Store new entries k, v `[batch, t, kv_heads, head_dim]` at positions pos `[batch, t]` (-1 = skip).

    When a chunk is longer than the ring, only each row's last `size` positions are kept.
    """
    size = cache.pos.shape[1]
    last = pos.max(axis=1, keepdims=True)
    keep = (pos >= 0) & (pos > last - size)
    slot = jnp.where(keep, pos % size, size)
    rows = jnp.arange(pos.shape[0])[:, None]
    return KVCache(cache.k.at[rows, slot].set(k.astype(cache.k.dtype), mode="drop"),
                   cache.v.at[rows, slot].set(v.astype(cache.v.dtype), mode="drop"),
                   cache.pos.at[rows, slot].set(pos, mode="drop"))


def self_attention(attn, x, pos, window: int, cache: KVCache, cos, sin):
    """`SelfAttention` on new positions: x `[batch, t, d]` at pos `[batch, t]` (-1 = padding) sees the
    cache and the chunk itself, causally. -> (`[batch, t, d]`, updated cache)."""
    b, t, _ = x.shape
    q = apply_rope(attn.q_proj(x).reshape(b, t, attn.heads, attn.head_dim), cos, sin)
    k, v = attn.project_kv(x, cos, sin)
    keys = jnp.concatenate([cache.k, k.astype(cache.k.dtype)], axis=1)
    values = jnp.concatenate([cache.v, v.astype(cache.v.dtype)], axis=1)
    key_pos = jnp.concatenate([cache.pos, pos], axis=1)
    mask = causal_mask(pos, key_pos, window) & (key_pos >= 0)[:, None, None, :]
    out = attn.o_proj(attend(q, keys.astype(q.dtype), values.astype(q.dtype), mask))
    return out, write(cache, k, v, pos)


def layer_step(layer, stack, x, pos, cache: KVCache, cos, sin):
    """One `TransformerLayer` on new positions -> (x `[batch, t, d]`, updated cache)."""
    a, cache = self_attention(layer.self_attn, layer.input_layernorm(x), pos, stack.window, cache, cos, sin)
    x = x + a
    return x + layer.mlp(layer.post_attention_layernorm(x)), cache


def stack_rope(stack, pos: jax.Array):
    return rope_tables(pos, stack.d_model // stack.heads, stack.rope_theta)


def run_stack(layers, stack, x: jax.Array, pos: jax.Array, caches):
    """The layers of `stack` on x `[batch, t, d]` at pos `[batch, t]` -> (x, caches)."""
    cos, sin = stack_rope(stack, pos)
    new = []
    for layer, cache in zip(layers, caches):
        x, cache = layer_step(layer, stack, x, pos, cache, cos, sin)
        new.append(cache)
    return x, tuple(new)
