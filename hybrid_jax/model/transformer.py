"""A pre-norm transformer layer and the plain causal stack built from it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hybrid_jax.config import d_ff
from hybrid_jax.model.attention import SelfAttention, causal_mask
from hybrid_jax.model.layers import RMSNorm, SwiGLU, rope_tables


REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class TransformerLayer(nnx.Module):
    """`x + attn(norm(x))`, then `x + mlp(norm(x))`: `[batch, length, d] -> [batch, length, d]`."""

    def __init__(self, stack, dtype, rngs: nnx.Rngs):
        self.input_layernorm = RMSNorm(stack.d_model, stack.norm_eps)
        self.self_attn = SelfAttention(stack, dtype, rngs)
        self.post_attention_layernorm = RMSNorm(stack.d_model, stack.norm_eps)
        self.mlp = SwiGLU(stack.d_model, d_ff(stack), dtype, rngs)
        self.remat = stack.get("remat", "none")

    def forward(self, x, mask, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), mask, cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))

    def __call__(self, x, mask, cos, sin):
        if self.remat == "none":
            return self.forward(x, mask, cos, sin)
        # Rematerialise: the backward pass recomputes what the policy does not keep.
        return nnx.remat(TransformerLayer.forward, policy=REMAT_POLICIES[self.remat])(self, x, mask, cos, sin)


def make_layers(stack, dtype, rngs: nnx.Rngs) -> nnx.List:
    return nnx.List([TransformerLayer(stack, dtype, rngs) for _ in range(stack.layers)])


def positions_for(x: jax.Array) -> jax.Array:
    """`[batch, length]` positions 0..length-1 for `x` `[batch, length, ...]`."""
    return jnp.broadcast_to(jnp.arange(x.shape[1], dtype=jnp.int32), x.shape[:2])


def stack_rope(stack, positions: jax.Array):
    """Rotary tables (cos, sin) of a stack at `positions` `[batch, length]`."""
    return rope_tables(positions, stack.d_model // stack.heads, stack.rope_theta)


def attention_inputs(stack, positions: jax.Array):
    """Causal (windowed) mask and rotary tables for a stack at `positions` `[batch, length]`."""
    return (causal_mask(positions, positions, stack.window), *stack_rope(stack, positions))
