"""Small building blocks: dense/embedding constructors, RMSNorm, rotary embeddings, SwiGLU."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


def dtype_of(name: str):
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[name]


def _trunc_normal(std: float):
    # BLT initialises with a normal truncated at 3 std, scaled by fan-in.
    return nnx.initializers.truncated_normal(stddev=std, lower=-3.0, upper=3.0)


class Dense(nnx.Linear):
    """`nnx.Linear` that multiplies `[tokens, d_in]` matrices: leading axes are merged first.

    Autodiff of a `[batch, length, d_in]` product gives the kernel gradient as a dot contracting two
    axes; XLA:CPU lays that out with transposes fused into the elementwise producers, which measured
    ~10 % of the toy train step. A 2-D product differentiates into plain matrix products.
    """

    def __call__(self, x: jax.Array) -> jax.Array:
        y = super().__call__(x.reshape(-1, x.shape[-1]))
        return y.reshape(*x.shape[:-1], y.shape[-1])


def dense(d_in: int, d_out: int, dtype, rngs: nnx.Rngs) -> Dense:
    """Bias-free linear `[..., d_in] -> [..., d_out]`, kernel `[d_in, d_out]` in float32."""
    return Dense(d_in, d_out, use_bias=False, dtype=dtype, param_dtype=jnp.float32,
                 kernel_init=_trunc_normal(d_in ** -0.5), rngs=rngs)


class Embed(nnx.Embed):
    """`nnx.Embed` that gathers float32 rows and casts them afterwards, so the backward pass sums each
    row's gradients in float32. Casting the table first (as `nnx.Embed` does) makes that sum a bf16
    scatter-add: it loses precision over the hundreds of bytes that share a row of the byte table,
    and a GPU runs it as a compare-and-swap loop that contends on those rows."""

    def __call__(self, inputs: jax.Array) -> jax.Array:
        rows = jnp.take(self.embedding[...], inputs, axis=0)
        return rows.astype(self.dtype) if self.dtype is not None else rows


def embedding(n: int, d: int, dtype, rngs: nnx.Rngs) -> Embed:
    """Table `[n, d]` in float32; ids `[...]` -> rows `[..., d]` in `dtype`."""
    return Embed(n, d, dtype=dtype, param_dtype=jnp.float32,
                 embedding_init=_trunc_normal(d ** -0.5), rngs=rngs)


class RMSNorm(nnx.Module):
    """`weight * x / rms(x)`, computed in float32, cast back to the input dtype."""

    def __init__(self, d: int, eps: float):
        self.weight = nnx.Param(jnp.ones((d,), jnp.float32))
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (self.weight[...] * normed.astype(x.dtype)).astype(x.dtype)


def rope_tables(positions: jax.Array, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """cos/sin for interleaved rotary embeddings. positions `[batch, length]` -> 2 x `[batch, length, head_dim/2]`."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    angles = positions.astype(jnp.float32)[..., None] * inv_freq
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate adjacent pairs (x[2i], x[2i+1]) as BLT does (not the half-split of Llama).

    x `[batch, length, heads, head_dim]`, cos/sin `[batch, length, head_dim/2]`.
    """
    pairs = x.astype(jnp.float32).reshape(*x.shape[:-1], -1, 2)
    even, odd = pairs[..., 0], pairs[..., 1]
    c, s = cos[:, :, None, :], sin[:, :, None, :]
    rotated = jnp.stack([even * c - odd * s, odd * c + even * s], axis=-1)
    return rotated.reshape(x.shape).astype(x.dtype)


class SwiGLU(nnx.Module):
    """`down(silu(gate(x)) * up(x))`: `[..., d] -> [..., d]`."""

    def __init__(self, d: int, d_ff: int, dtype, rngs: nnx.Rngs):
        self.gate_proj = dense(d, d_ff, dtype, rngs)
        self.up_proj = dense(d, d_ff, dtype, rngs)
        self.down_proj = dense(d_ff, d, dtype, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))
