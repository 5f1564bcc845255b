"""The local decoder: bytes cross-attend to the global state of the patch before their next byte."""

from __future__ import annotations

import jax
from flax import nnx

from hybrid_jax.model.attention import CrossAttention
from hybrid_jax.model.layers import RMSNorm, dense
from hybrid_jax.model.transformer import make_layers, positions_for, stack_rope


class LocalDecoder(nnx.Module):
    """byte states `[batch, length, d_local]`, patch states `[batch, patches, d_global]`,
    decoder patch ids `[batch, length]` -> normed byte states `[batch, length, d_local]`."""

    def __init__(self, cfg, dtype, rngs: nnx.Rngs):
        dec = cfg.local_decoder
        self.stack, self.k = dec, cfg.cross_attn_k
        d = dec.d_model
        self.patch_embedding_projection = dense(cfg.global_transformer.d_model, d * self.k, dtype, rngs)
        self.layers = make_layers(dec, dtype, rngs)
        n_cross = dec.layers if dec.cross_attn_all_layers else 1
        self.cross_attn_layers = nnx.List([CrossAttention(dec, dtype, rngs) for _ in range(n_cross)])
        self.norm = RMSNorm(d, dec.norm_eps)

    def __call__(self, x: jax.Array, patches: jax.Array, decoder_patch_ids: jax.Array) -> jax.Array:
        b, p, _ = patches.shape
        keys = self.patch_embedding_projection(patches).reshape(b, p * self.k, -1)
        cos, sin = stack_rope(self.stack, positions_for(x))
        for i, layer in enumerate(self.layers):
            if i == 0 or self.stack.cross_attn_all_layers:
                x = x + self.cross_attn_layers[i].own_keys(x, keys, decoder_patch_ids, self.k)
            x = layer(x, cos, sin)
        return self.norm(x)
