"""The entropy model: a small causal byte LM whose next-byte entropy decides patch boundaries."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hybrid_jax.model.layers import RMSNorm, dense, embedding
from hybrid_jax.model.transformer import make_layers, positions_for, stack_rope


class EntropyModel(nnx.Module):
    """ids int32 `[batch, length]` -> next-byte logits float32 `[batch, length, vocab]`."""

    def __init__(self, stack, vocab_size: int, dtype, rngs: nnx.Rngs):
        self.stack = stack
        self.embed_tokens = embedding(vocab_size, stack.d_model, dtype, rngs)
        self.layers = make_layers(stack, dtype, rngs)
        self.norm = RMSNorm(stack.d_model, stack.norm_eps)
        self.lm_head = dense(stack.d_model, vocab_size, dtype, rngs)

    def __call__(self, ids: jax.Array) -> jax.Array:
        x = self.embed_tokens(ids)
        cos, sin = stack_rope(self.stack, positions_for(x))
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.lm_head(self.norm(x)).astype(jnp.float32)
