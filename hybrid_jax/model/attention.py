"""Self-attention (causal, GQA, optional sliding window, rotary) and BLT's cross-attention."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from hybrid_jax.config import kv_heads
from hybrid_jax.model.layers import RMSNorm, apply_rope, dense
from hybrid_jax.model.segments import per_row, segment_max_sorted, take_along_axis_f32


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


QUERY_BLOCK = 64
_NEG = float(jnp.finfo(jnp.float32).min)


def attend_causal(q: jax.Array, k: jax.Array, v: jax.Array, window: int = 0,
                  block: int = QUERY_BLOCK) -> jax.Array:
    """Causal self-attention over positions 0..length-1 (optionally a sliding window), with GQA.

    q `[batch, length, heads, head_dim]`, k/v `[batch, length, kv_heads, head_dim]`
    -> `[batch, length, heads * head_dim]`. Equals `attend` with `causal_mask(arange, arange, window)`.
    On GPU with bf16/fp16 inputs this is cuDNN's fused kernel (`jax.nn.dot_product_attention`);
    elsewhere each block of `block` queries only scores the keys it can see (the causal triangle and
    the window band are skipped), heads-major, and the backward pass recomputes the probabilities from
    the saved log-sum-exp instead of keeping them (`bench attention` times it).
    """
    if _use_cudnn(q):
        return _attend_cudnn(q, k, v, window)
    return _blocked_causal_heads(q, k, v, window, block)


def _blocked_causal_heads(q, k, v, window: int, block: int = QUERY_BLOCK) -> jax.Array:
    """`attend_causal` without the cuDNN dispatch: same shapes, any backend and dtype."""
    b, t, h, hd = q.shape
    g = k.shape[2]
    qh = q.reshape(b, t, g, h // g, hd).transpose(0, 2, 3, 1, 4)
    kh, vh = (x.transpose(0, 2, 1, 3) for x in (k, v))
    out = _blocked_causal(qh, kh, vh, window, block)
    return out.transpose(0, 3, 1, 2, 4).reshape(b, t, h * hd)


def _use_cudnn(q) -> bool:
    return jax.default_backend() == "gpu" and q.dtype in (jnp.bfloat16, jnp.float16)


def _attend_cudnn(q, k, v, window: int, implementation: str | None = "cudnn"):
    """`jax.nn.dot_product_attention` with its own causal / sliding-window masking: a query at t sees
    keys t - window + 1 .. t, i.e. `local_window_size=(window - 1, 0)`."""
    local = (window - 1, 0) if window else None
    out = jax.nn.dot_product_attention(q, k, v, is_causal=True, local_window_size=local,
                                       implementation=implementation)
    return out.reshape(*out.shape[:2], -1)


def _query_blocks(t: int, window: int, block: int):
    """(first query, end query, first key) of each query block."""
    for start in range(0, t, block):
        yield start, min(start + block, t), max(0, start - window + 1) if window else 0


def _block_scores(q, k, q0: int, k0: int, window: int):
    """Masked scaled scores float32 `[batch, kv_heads, group, n, m]` of queries at q0.. `[b, g, r, n, hd]`
    against keys at k0.. `[b, g, m, hd]` (every query sees at least itself, so no row is all masked)."""
    q_pos = q0 + jnp.arange(q.shape[3])[:, None]
    k_pos = k0 + jnp.arange(k.shape[2])[None, :]
    visible = k_pos <= q_pos
    if window:
        visible &= k_pos > q_pos - window
    scores = jnp.einsum("bgrqd,bgkd->bgrqk", q, k, preferred_element_type=jnp.float32) * q.shape[-1] ** -0.5
    return jnp.where(visible, scores, _NEG)


def _blocked_forward(q, k, v, window: int, block: int):
    """(output `[b, g, r, t, hd]`, log-sum-exp float32 `[b, g, r, t]`) for heads-major q/k/v."""
    outs, lses = [], []
    for s, e, lo in _query_blocks(q.shape[3], window, block):
        scores = _block_scores(q[:, :, :, s:e], k[:, :, lo:e], s, lo, window)
        top = scores.max(axis=-1, keepdims=True)
        p = jnp.exp(scores - top)
        z = p.sum(axis=-1, keepdims=True)
        o = jnp.einsum("bgrqk,bgkd->bgrqd", p.astype(v.dtype), v[:, :, lo:e], preferred_element_type=jnp.float32)
        outs.append((o / z).astype(v.dtype))
        lses.append((top + jnp.log(z))[..., 0])
    return jnp.concatenate(outs, axis=3), jnp.concatenate(lses, axis=3)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _blocked_causal(q, k, v, window: int, block: int):
    return _blocked_forward(q, k, v, window, block)[0]


def _blocked_causal_fwd(q, k, v, window, block):
    out, lse = _blocked_forward(q, k, v, window, block)
    return out, (q, k, v, out, lse)


def _blocked_causal_bwd(window, block, res, d_out):
    """Flash-attention style backward: p = exp(scores - lse); dS = p * (dP - rowsum(dO * O)).

    dK and dV contract over queries, the major axis of a block's `[queries, keys]` p and dS. Those
    products take the small operands transposed instead (q and dO as `[hd, queries]`, and dK, dV
    accumulated as `[hd, keys]`), so XLA:CPU never copies p or dS into a transposed layout (~4 % of
    the toy train step).
    """
    q, k, v, out, lse = res
    scale = q.shape[-1] ** -0.5
    delta = jnp.einsum("bgrqd,bgrqd->bgrq", d_out, out, preferred_element_type=jnp.float32)
    q_t, do_t = (jnp.moveaxis(x, -1, 2) for x in (q, d_out))  # [b, g, hd, r, t]
    dq = []
    dk_t, dv_t = (jnp.zeros((*x.shape[:2], x.shape[3], x.shape[2]), jnp.float32) for x in (k, v))
    for s, e, lo in _query_blocks(q.shape[3], window, block):
        qb, kb, vb, dob = q[:, :, :, s:e], k[:, :, lo:e], v[:, :, lo:e], d_out[:, :, :, s:e]
        p = jnp.exp(_block_scores(qb, kb, s, lo, window) - lse[:, :, :, s:e, None])
        dv_t = dv_t.at[..., lo:e].add(jnp.einsum("bgdrq,bgrqk->bgdk", do_t[..., s:e], p,
                                                 preferred_element_type=jnp.float32))
        dp = jnp.einsum("bgrqd,bgkd->bgrqk", dob, vb, preferred_element_type=jnp.float32)
        ds = p * (dp - delta[:, :, :, s:e, None]) * scale
        dq.append(jnp.einsum("bgrqk,bgkd->bgrqd", ds, kb, preferred_element_type=jnp.float32))
        dk_t = dk_t.at[..., lo:e].add(jnp.einsum("bgdrq,bgrqk->bgdk", q_t[..., s:e], ds,
                                                 preferred_element_type=jnp.float32))
    dk, dv = (jnp.swapaxes(x, -1, -2) for x in (dk_t, dv_t))
    return jnp.concatenate(dq, axis=3).astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype)


_blocked_causal.defvjp(_blocked_causal_fwd, _blocked_causal_bwd)


def attend_own_keys(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """Attention where every query has its own few keys (a byte reading the k slots of its patch).

    q `[batch, n, heads, head_dim]`, k/v `[batch, n, keys, kv_heads, head_dim]` -> `[batch, n, heads * head_dim]`.
    Equals `attend` with a mask that shows each query exactly these keys, at O(n * keys) cost.
    """
    b, n, h, hd = q.shape
    g = k.shape[3]
    qg = q.reshape(b, n, g, h // g, hd)
    scores = jnp.einsum("bngrd,bnjgd->bngrj", qg, k, preferred_element_type=jnp.float32) * hd ** -0.5
    w = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    return jnp.einsum("bngrj,bnjgd->bngrd", w, v).reshape(b, n, h * hd)


def attend_segments(q: jax.Array, k: jax.Array, v: jax.Array, seg: jax.Array) -> jax.Array:
    """The queries of segment s attend to the keys whose segment id is s (patch queries over their bytes).

    q `[batch, segments, j, heads, head_dim]`, k/v `[batch, n, kv_heads, head_dim]`, seg int32 `[batch, n]`
    (non-decreasing) -> `[batch, segments, j, heads * head_dim]`. Equals `attend` with the mask
    `seg[key] == segment of the query`, including its rule for a segment without keys (the uniform
    average of all keys), but costs O(n * j) instead of O(segments * j * n): softmax per segment with
    segment max / sum.
    """
    b, S, j, h, hd = q.shape
    g = k.shape[2]
    q_at = take_along_axis_f32(q, seg[:, :, None, None, None], axis=1).reshape(b, -1, j, g, h // g, hd)
    scores = jnp.einsum("bnjgrd,bngd->bnjgr", q_at, k, preferred_element_type=jnp.float32) * hd ** -0.5
    top = jax.lax.stop_gradient(segment_max_sorted(scores, seg, S))
    e = jnp.exp(scores - jnp.take_along_axis(top, seg[:, :, None, None, None], axis=1))
    z = per_row(jax.ops.segment_sum, e, seg, S)
    # An einsum, not a broadcast product: the latter's gradient for v is a reduce over j that XLA:CPU
    # hands to YNNPACK, which took ~9 ms of the toy step for 0.3 M values.
    num = per_row(jax.ops.segment_sum, jnp.einsum("bnjgr,bngd->bnjgrd", e, v.astype(jnp.float32)), seg, S)
    uniform = v.astype(jnp.float32).mean(axis=1)[:, None, None, :, None, :]
    out = jnp.where(z[..., None] > 0, num / jnp.where(z > 0, z, 1.0)[..., None], uniform)
    return out.astype(v.dtype).reshape(b, S, j, h * hd)


class SelfAttention(nnx.Module):
    """Causal multi-head self-attention with rotary positions: `[batch, length, d] -> [batch, length, d]`
    (the stack's sliding window, if any)."""

    def __init__(self, stack, dtype, rngs: nnx.Rngs):
        d, self.heads, self.kv_heads = stack.d_model, stack.heads, kv_heads(stack)
        self.head_dim = d // self.heads
        self.q_proj = dense(d, self.heads * self.head_dim, dtype, rngs)
        self.k_proj = dense(d, self.kv_heads * self.head_dim, dtype, rngs)
        self.v_proj = dense(d, self.kv_heads * self.head_dim, dtype, rngs)
        self.o_proj = dense(self.heads * self.head_dim, d, dtype, rngs)
        self.window = stack.window

    def project_kv(self, x, cos, sin):
        """Rotated keys and values `[batch, length, kv_heads, head_dim]` (also what a KV cache stores)."""
        b, t, _ = x.shape
        k = self.k_proj(x).reshape(b, t, self.kv_heads, self.head_dim)
        v = self.v_proj(x).reshape(b, t, self.kv_heads, self.head_dim)
        return apply_rope(k, cos, sin), v

    def __call__(self, x, cos, sin):
        """x `[batch, length, d]` at positions 0..length-1 (cos/sin at those positions)."""
        b, t, _ = x.shape
        q = apply_rope(self.q_proj(x).reshape(b, t, self.heads, self.head_dim), cos, sin)
        k, v = self.project_kv(x, cos, sin)
        return self.o_proj(attend_causal(q, k, v, self.window))


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

    def _queries(self, queries):
        return self.q_proj(self.q_norm(queries)).reshape(*queries.shape[:-1], self.heads, self.head_dim)

    def attend_kv(self, queries, k, v, mask):
        """The layer's output for projected keys/values `k`, `v` (see `project_kv`)."""
        return self.o_proj(attend(self._queries(queries), k, v, mask)) + queries

    def own_keys(self, queries, states, index, j):
        """Query t attends only to the `j` states of group `index[t]`: queries `[batch, n, d]`, states
        `[batch, groups * j, d]`, index int32 `[batch, n]` -> `[batch, n, d]` (the decoder's bytes)."""
        b = states.shape[0]
        k, v = (x.reshape(b, -1, j, *x.shape[2:]) for x in self.project_kv(states))
        at = index[:, :, None, None, None]
        k, v = take_along_axis_f32(k, at, axis=1), take_along_axis_f32(v, at, axis=1)
        return self.o_proj(attend_own_keys(self._queries(queries), k, v)) + queries

    def segments(self, queries, states, seg, j):
        """Query slot s attends to the states of segment s // j: queries `[batch, segments * j, d]`,
        states `[batch, n, d]`, seg int32 `[batch, n]` -> `[batch, segments * j, d]` (the encoder's
        patch queries over their bytes)."""
        b, sj, _ = queries.shape
        q = self._queries(queries).reshape(b, sj // j, j, self.heads, self.head_dim)
        out = attend_segments(q, *self.project_kv(states), seg).reshape(b, sj, -1)
        return self.o_proj(out) + queries

    def __call__(self, queries, states, mask):
        return self.attend_kv(queries, *self.project_kv(states), mask)
