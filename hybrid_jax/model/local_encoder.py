"""The local encoder: byte + hash n-gram embeddings, a small causal transformer, and patch queries
that cross-attend to the bytes of their own patch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hybrid_jax.model.attention import CrossAttention
from hybrid_jax.model.hashing import hash_table_ids
from hybrid_jax.model.layers import dense, embedding
from hybrid_jax.model.segments import segment_max_sorted
from hybrid_jax.model.transformer import make_layers, positions_for, stack_rope


def lookup_sum(table: nnx.Embed, rows: jax.Array) -> jax.Array:
    """`sum_k table[rows[k]]`: rows int32 `[tables, batch, length]` -> `[batch, length, d]`.

    One gather (so the backward pass is one scatter into the table), then a chain of adds rather than
    a reduce over the leading axis: XLA's CPU reduction over that axis was the train step's slowest op."""
    looked_up = table(rows)
    out = looked_up[0]
    for k in range(1, rows.shape[0]):
        out = out + looked_up[k]
    return out


def patch_reduce_max(x: jax.Array, patch_ids: jax.Array, num_patches: int) -> jax.Array:
    """Per-patch elementwise max of byte states; empty patches are 0.

    x `[batch, length, d]`, patch_ids int32 `[batch, length]` -> `[batch, num_patches, d]`.
    """
    reduced = segment_max_sorted(x, patch_ids, num_patches)
    return jnp.where(jnp.isneginf(reduced), jnp.zeros((), x.dtype), reduced)


def patch_query_mask(patch_ids: jax.Array, num_patches: int, k: int) -> jax.Array:
    """bool `[batch, 1, num_patches * k, length]`: query slot s (patch s // k) sees the bytes of its patch."""
    slot_patch = jnp.arange(num_patches * k) // k
    return (slot_patch[None, :, None] == patch_ids[:, None, :])[:, None]


class LocalEncoder(nnx.Module):
    """ids `[batch, length]`, patch_ids `[batch, length]` -> byte states `[batch, length, d_local]` and
    patch embeddings `[batch, slots, cross_attn_k * d_local]` (slots: static patch capacity)."""

    def __init__(self, cfg, dtype, rngs: nnx.Rngs):
        enc = cfg.local_encoder
        self.stack, self.k, self.hash = enc, cfg.cross_attn_k, cfg.hash
        d = enc.d_model
        tables = len(cfg.hash.group_sizes) * cfg.hash.n_functions
        self.embed_tokens = embedding(cfg.vocab_size, d, dtype, rngs)
        self.hash_embed = embedding(tables * cfg.hash.vocab, d, dtype, rngs)
        self.layers = make_layers(enc, dtype, rngs)
        self.patch_embedding_projection = dense(d, d * self.k, dtype, rngs)
        n_cross = enc.layers if enc.cross_attn_all_layers else 1
        self.cross_attn_layers = nnx.List([CrossAttention(enc, dtype, rngs) for _ in range(n_cross)])

    def embed(self, ids: jax.Array) -> jax.Array:
        """Byte embedding plus one hash n-gram embedding per (function, group size): `[batch, length, d]`."""
        rows = hash_table_ids(ids, self.hash.group_sizes, self.hash.n_functions, self.hash.vocab)
        return self.embed_tokens(ids) + lookup_sum(self.hash_embed, rows)

    def __call__(self, ids: jax.Array, patch_ids: jax.Array, slots: int | None = None):
        b, n = ids.shape
        slots = slots or n
        x = self.embed(ids)
        cos, sin = stack_rope(self.stack, positions_for(x))
        patches = None
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin)
            if i == last or self.stack.cross_attn_all_layers:
                # Every cross-attending layer starts again from the max-pooled bytes (as released BLT).
                queries = self.patch_embedding_projection(patch_reduce_max(x, patch_ids, slots))
                queries = queries.reshape(b, slots * self.k, -1)
                cross = self.cross_attn_layers[i if self.stack.cross_attn_all_layers else 0]
                patches = queries + cross.segments(queries, x, patch_ids, self.k)
        return x, patches.reshape(b, slots, -1)
