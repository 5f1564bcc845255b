"""Key/value caches for incremental decoding, and a transformer stack that runs on a chunk of new
positions against its cache.

A cache is a fixed-size ring: a stack with a sliding window keeps only its last `window` positions, so
the per-step cost of the byte-level stacks does not grow with the context. Each slot remembers its
position (-1 = empty); attention masks by position, so ring order never matters.

Caches are heads-major, values transposed (k `[batch, kv_heads, size, head_dim]`, v `[batch, kv_heads,
head_dim, size]`): one query against a long cache is then two row-major matrix-vector products per
head, scores = K q and output = V^T p, each with its contracted axis minor, the layout XLA's CPU dot
takes without a copy. With v as `[.., size, head_dim]` XLA copied every value cache into the other
layout at every step (40 % of a toy decode step at a 512-byte window); with the `[batch, size, heads,
head_dim]` layout the per-byte cost grew about ten times faster with the context.
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
    """k `[batch, kv_heads, size, head_dim]`, v `[batch, kv_heads, head_dim, size]`; pos int32
    `[batch, size]` (-1 = empty slot)."""
    k: jax.Array
    v: jax.Array
    pos: jax.Array


def cache_size(stack, max_len: int, slack: int = 0) -> int:
    """Slots a stack needs for `max_len` positions: its window when that is shorter, plus `slack`
    slots for positions that may be written and then withdrawn (speculative decoding: a chunk of
    `slack` drafted positions must not overwrite any position still inside the window)."""
    return min(stack.window + slack, max_len) if stack.window else max_len


def empty_cache(stack, batch: int, size: int, dtype) -> KVCache:
    g, d = kv_heads(stack), stack.d_model // stack.heads
    return KVCache(jnp.zeros((batch, g, size, d), dtype), jnp.zeros((batch, g, d, size), dtype),
                   jnp.full((batch, size), -1, jnp.int32))


def empty_caches(stack, batch: int, max_len: int, dtype, slack: int = 0) -> tuple[KVCache, ...]:
    """One empty cache per layer of `stack` (`slack`: see `cache_size`)."""
    size = cache_size(stack, max_len, slack)
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
    v_idx = (rows[:, :, None, None], jnp.arange(heads)[None, :, None, None],
             jnp.arange(cache.v.shape[2])[None, None, :, None], slot[:, None, None, :])
    return KVCache(cache.k.at[idx].set(k.swapaxes(1, 2).astype(cache.k.dtype), mode="drop"),
                   cache.v.at[v_idx].set(v.transpose(0, 2, 3, 1).astype(cache.v.dtype), mode="drop"),
                   cache.pos.at[rows, slot].set(pos, mode="drop"))


def truncate(caches: tuple[KVCache, ...], end: jax.Array) -> tuple[KVCache, ...]:
    """Withdraw every position >= end `[batch]`: its slots become empty (the keys and values stay, unread)."""
    return tuple(c._replace(pos=jnp.where(c.pos >= end[:, None], -1, c.pos)) for c in caches)


def attend_heads_major(q: jax.Array, keys: tuple, values: tuple, mask: jax.Array) -> jax.Array:
    """Grouped-query attention against heads-major keys/values, given as parts joined in one softmax.

    q `[batch, t, heads, head_dim]`; keys: parts `[batch, kv_heads, n_i, head_dim]`, values: parts
    `[batch, kv_heads, head_dim, n_i]` (a cache and the new chunk: joining them would copy the cache);
    mask bool `[batch, t, sum n_i]`.
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
        out = out + jnp.einsum("bgrtn,bgdn->btgrd", probs[..., at:at + n], v.astype(q.dtype))
        at += n
    return out.reshape(b, t, h * d)


def self_attention(attn, x, pos, window: int, cache: KVCache, cos, sin, deferred: bool = False,
                   fresh: bool = False):
    """`SelfAttention` on new positions: x `[batch, t, d]` at pos `[batch, t]` (-1 = padding) sees the
    cache and the chunk itself, causally. -> (`[batch, t, d]`, updated cache), or with `deferred` the
    new (k, v) `[batch, t, kv_heads, head_dim]` instead of the cache, for `write` after a branch
    (a cache returned through `lax.cond` is copied: a branch should only read it). `fresh`: the cache
    holds nothing yet (a prefill), so only the chunk is read."""
    b, t, _ = x.shape
    q = apply_rope(attn.q_proj(x).reshape(b, t, attn.heads, attn.head_dim), cos, sin)
    k, v = attn.project_kv(x, cos, sin)
    new = (k, v) if deferred else write(cache, k, v, pos)
    if t == 1 and not deferred:
        # One new position: write first, then read the ring (the slot it overwrites is outside the
        # window). Reading before writing would make XLA copy the cache at every step.
        keys, values, key_pos = (new.k,), (new.v,), new.pos
    elif fresh:
        keys, values, key_pos = (k.swapaxes(1, 2),), (v.transpose(0, 2, 3, 1),), pos
    else:
        keys = (cache.k, k.swapaxes(1, 2))
        values = (cache.v, v.transpose(0, 2, 3, 1))
        key_pos = jnp.concatenate([cache.pos, pos], axis=1)
    mask = causal_mask(pos, key_pos, window)[:, 0] & (key_pos >= 0)[:, None, :]
    return attn.o_proj(attend_heads_major(q, keys, values, mask)), new


def layer_step(layer, stack, x, pos, cache: KVCache, cos, sin, deferred: bool = False, fresh: bool = False):
    """One `TransformerLayer` on new positions -> (x `[batch, t, d]`, updated cache or, `deferred`, its
    new (k, v)); `fresh`: see `self_attention`."""
    a, cache = self_attention(layer.self_attn, layer.input_layernorm(x), pos, stack.window, cache, cos, sin,
                              deferred, fresh)
    x = x + a
    return x + layer.mlp(layer.post_attention_layernorm(x)), cache


def run_stack(layers, stack, x: jax.Array, pos: jax.Array, caches, deferred: bool = False, fresh: bool = False):
    """The layers of `stack` on x `[batch, t, d]` at pos `[batch, t]` -> (x, updated caches), or with
    `deferred` (x, each layer's new (k, v)) for `write_stack`; `fresh`: the caches are empty."""
    cos, sin = stack_rope(stack, pos)
    new = []
    for layer, cache in zip(layers, caches):
        x, cache = layer_step(layer, stack, x, pos, cache, cos, sin, deferred, fresh)
        new.append(cache)
    return x, tuple(new)


def write_stack(caches, kvs, pos: jax.Array) -> tuple[KVCache, ...]:
    """`write` each layer's new (k, v) from `run_stack(..., deferred=True)` at pos `[batch, t]`."""
    return tuple(write(c, k, v, pos) for c, (k, v) in zip(caches, kvs))
