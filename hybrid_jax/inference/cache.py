"""Key/value caches for incremental decoding, and a transformer stack that runs on a chunk of new
positions against its cache.

A cache is a fixed-size ring: a stack with a sliding window keeps only its last `window` positions, so
the per-step cost of the byte-level stacks does not grow with the context. Each slot remembers its
position (-1 = empty); attention masks by position, so ring order never matters.

Caches are heads-major (`[batch, kv_heads, size, head_dim]`): one query against a long cache is then a
contiguous matrix-vector product per head. With the `[batch, size, heads, head_dim]` layout the
attention kernel transposes the whole cache at every step, which on CPU made the per-byte cost grow
about ten times faster with the context.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from hybrid_jax.config import kv_heads
from hybrid_jax.model.attention import causal_mask
from hybrid_jax.model.layers import apply_rope
from hybrid_jax.model.transformer import stack_rope


class KVCache(NamedTuple):
    """k, v `[batch, kv_heads, size, head_dim]`; pos int32 `[batch, size]` (-1 = empty slot)."""
    k: jax.Array
    v: jax.Array
    pos: jax.Array


def cache_size(stack, max_len: int) -> int:
    """Slots a stack needs for `max_len` positions: its window when that is shorter."""
    return min(stack.window, max_len) if stack.window else max_len


def empty_cache(stack, batch: int, size: int, dtype) -> KVCache:
    shape = (batch, kv_heads(stack), size, stack.d_model // stack.heads)
    return KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.full((batch, size), -1, jnp.int32))


def empty_caches(stack, batch: int, max_len: int, dtype) -> tuple[KVCache, ...]:
    """One empty cache per layer of `stack`."""
    size = cache_size(stack, max_len)
    return tuple(empty_cache(stack, batch, size, dtype) for _ in range(stack.layers))


def write(cache: KVCache, k: jax.Array, v: jax.Array, pos: jax.Array) -> KVCache:
    """Store new entries k, v `[batch, t, kv_heads, head_dim]` at positions pos `[batch, t]` (-1 = skip).

    When a chunk is longer than the ring, only each row's last `size` positions are kept.
    """
    b, heads, size = cache.k.shape[:3]
    last = pos.max(axis=1, keepdims=True)
    keep = (pos >= 0) & (pos > last - size)
    slot = jnp.where(keep, pos % size, size)
    rows = jnp.arange(b)[:, None]
    idx = (rows[:, :, None], jnp.arange(heads)[None, :, None], slot[:, None, :])
    return KVCache(cache.k.at[idx].set(k.swapaxes(1, 2).astype(cache.k.dtype), mode="drop"),
                   cache.v.at[idx].set(v.swapaxes(1, 2).astype(cache.v.dtype), mode="drop"),
                   cache.pos.at[rows, slot].set(pos, mode="drop"))


def attend_heads_major(q: jax.Array, keys: tuple, values: tuple, mask: jax.Array) -> jax.Array:
    """Grouped-query attention against heads-major keys/values, given as parts joined in one softmax.

    q `[batch, t, heads, head_dim]`; keys/values: parts `[batch, kv_heads, n_i, head_dim]` (a cache and
    the new chunk: joining them would copy the cache); mask bool `[batch, t, sum n_i]`.
    -> `[batch, t, heads * head_dim]`. Query head j reads kv head j // (heads / kv_heads), as
    `jax.nn.dot_product_attention` does; a query with no visible key gets the uniform average.
    """
    b, t, h, d = q.shape
    g = keys[0].shape[1]
    qg = q.reshape(b, t, g, h // g, d)
    scores = [jnp.einsum("btgrd,bgnd->bgrtn", qg, k.astype(q.dtype)).astype(jnp.float32) * d ** -0.5
              for k in keys]
    scores = jnp.where(mask[:, None, None], jnp.concatenate(scores, axis=-1), jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(q.dtype)
    out, at = 0, 0
    for part, v in zip(keys, values):
        n = part.shape[2]
        out = out + jnp.einsum("bgrtn,bgnd->btgrd", probs[..., at:at + n], v.astype(q.dtype))
        at += n
    return out.reshape(b, t, h * d)


def self_attention(attn, x, pos, window: int, cache: KVCache, cos, sin):
    """`SelfAttention` on new positions: x `[batch, t, d]` at pos `[batch, t]` (-1 = padding) sees the
    cache and the chunk itself, causally. -> (`[batch, t, d]`, updated cache)."""
    b, t, _ = x.shape
    q = apply_rope(attn.q_proj(x).reshape(b, t, attn.heads, attn.head_dim), cos, sin)
    k, v = attn.project_kv(x, cos, sin)
    new = write(cache, k, v, pos)
    if t == 1:
        # One new position: write first, then read the ring (the slot it overwrites is outside the
        # window). Reading before writing would make XLA copy the cache at every step.
        keys, values, key_pos = (new.k,), (new.v,), new.pos
    else:
        keys = (cache.k, k.swapaxes(1, 2))
        values = (cache.v, v.swapaxes(1, 2))
        key_pos = jnp.concatenate([cache.pos, pos], axis=1)
    mask = causal_mask(pos, key_pos, window)[:, 0] & (key_pos >= 0)[:, None, :]
    return attn.o_proj(attend_heads_major(q, keys, values, mask)), new


def layer_step(layer, stack, x, pos, cache: KVCache, cos, sin):
    """One `TransformerLayer` on new positions -> (x `[batch, t, d]`, updated cache)."""
    a, cache = self_attention(layer.self_attn, layer.input_layernorm(x), pos, stack.window, cache, cos, sin)
    x = x + a
    return x + layer.mlp(layer.post_attention_layernorm(x)), cache


def run_stack(layers, stack, x: jax.Array, pos: jax.Array, caches):
    """The layers of `stack` on x `[batch, t, d]` at pos `[batch, t]` -> (x, updated caches)."""
    cos, sin = stack_rope(stack, pos)
    new = []
    for layer, cache in zip(layers, caches):
        x, cache = layer_step(layer, stack, x, pos, cache, cos, sin)
        new.append(cache)
    return x, tuple(new)
