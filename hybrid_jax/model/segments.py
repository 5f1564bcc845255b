"""Reductions over contiguous segments of a sequence (the bytes of a patch) without scatter-max."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def per_row(segment_op, data: jax.Array, seg: jax.Array, num_segments: int) -> jax.Array:
    """`jax.ops.segment_*` (`segment_op`) on each row: data `[batch, n, ...]`, seg int32 `[batch, n]`
    non-decreasing -> `[batch, num_segments, ...]`."""
    return jax.vmap(lambda d, s: segment_op(d, s, num_segments=num_segments, indices_are_sorted=True))(data, seg)


def default_method() -> str:
    """`segment_max_sorted`'s `auto`: the scatter on CPU, the scan on GPU and TPU."""
    return "scatter" if jax.default_backend() == "cpu" else "scan"


def segment_max_sorted(x: jax.Array, seg: jax.Array, num_segments: int, method: str = "auto") -> jax.Array:
    """Elementwise max over each segment of axis 1; -inf for a segment with no elements.

    x `[batch, n, ...]`, seg int32 `[batch, n]` non-decreasing (ids outside `[0, num_segments)` are
    left out) -> `[batch, num_segments, ...]`. Equals `jax.ops.segment_max` per row.

    method `scan`: a running max that restarts at each segment's first element (`associative_scan`),
    read at the segment's last element. `scatter`: `jax.ops.segment_max`, an atomic scatter-max, which
    a GPU runs as a compare-and-swap loop: every byte of one long segment (the last patch takes all
    bytes past `max_patches`) retries on the same addresses (on an H200, two scatter kernels took 91 %
    of a 1B-model train step; docs/results/2026-11-27-gpu.md). On a CPU the scatter is a plain loop
    and the faster (toy train step 524 vs 624-684 ms with the scan), so `auto` picks it there and the
    scan elsewhere.
    """
    if method == "auto":
        method = default_method()
    if method == "scatter":
        return per_row(jax.ops.segment_max, x, seg, num_segments)
    b, n = seg.shape
    new = jnp.concatenate([jnp.ones((b, 1), bool), seg[:, 1:] != seg[:, :-1]], axis=1)

    def combine(left, right):
        (f1, v1), (f2, v2) = left, right
        restart = f2.reshape(f2.shape + (1,) * (v2.ndim - f2.ndim))
        return f1 | f2, jnp.where(restart, v2, jnp.maximum(v1, v2))

    _, running = jax.lax.associative_scan(combine, (new, x), axis=1)
    ids = jnp.broadcast_to(jnp.arange(num_segments, dtype=seg.dtype), (b, num_segments))
    first, end = _count_below(seg, ids), _count_below(seg, ids + 1)
    last = jnp.clip(end - 1, 0, n - 1)
    out = take_along_axis_f32(running, last.reshape(last.shape + (1,) * (x.ndim - 2)), axis=1)
    empty = (end == first).reshape(first.shape + (1,) * (x.ndim - 2))
    return jnp.where(empty, jnp.array(-jnp.inf, x.dtype), out)


def _count_below(seg: jax.Array, bounds: jax.Array) -> jax.Array:
    """int32 `[batch, m]`: how many entries of each sorted row of `seg` `[batch, n]` are < `bounds`
    `[batch, m]`. A binary search unrolled in Python (log2 n gathers): `jnp.searchsorted` runs a loop."""
    n = seg.shape[1]
    count = jnp.zeros(bounds.shape, jnp.int32)
    step = 1 << (n.bit_length() - 1)
    while step:
        probe = count + step
        below = jnp.take_along_axis(seg, jnp.minimum(probe, n) - 1, axis=1) < bounds
        count = jnp.where((probe <= n) & below, probe, count)
        step //= 2
    return count


def take_along_axis_f32(x: jax.Array, idx: jax.Array, axis: int) -> jax.Array:
    """`jnp.take_along_axis` through float32: same values, but the backward pass's scatter-add of a
    bf16 `x` sums in float32, which a GPU does with native atomic adds instead of a compare-and-swap
    loop (and many indices here repeat: every byte of a patch, every empty patch)."""
    return jnp.take_along_axis(x.astype(jnp.float32), idx, axis=axis).astype(x.dtype)
