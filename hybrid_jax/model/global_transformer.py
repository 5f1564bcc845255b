"""The global transformer: a causal transformer over patch embeddings (no final norm, as BLT)."""

from __future__ import annotations

import jax
from flax import nnx

from hybrid_jax.model.layers import dense
from hybrid_jax.model.transformer import apply_layers, make_layers, positions_for, stack_rope


class GlobalTransformer(nnx.Module):
    """patch embeddings `[batch, patches, d_in]` -> patch states `[batch, patches, d_global]`.

    `d_in = cross_attn_k * d_local`; a projection to `d_global` exists only when they differ.
    """

    def __init__(self, stack, d_in: int, dtype, rngs: nnx.Rngs):
        self.stack = stack
        self.token_embedding_projection = (
            dense(d_in, stack.d_model, dtype, rngs) if d_in != stack.d_model else None)
        self.layers = make_layers(stack, dtype, rngs)

    def embed(self, patches: jax.Array) -> jax.Array:
        if self.token_embedding_projection is None:
            return patches
        return self.token_embedding_projection(patches)

    def __call__(self, patches: jax.Array) -> jax.Array:
        return self.run(self.embed(patches))

    def run(self, x: jax.Array) -> jax.Array:
        """The layers alone, on embedded positions `[batch, patches, d_global]` (latent passes feed
        their own inputs here)."""
        return apply_layers(self.layers, x, *stack_rope(self.stack, positions_for(x)))
