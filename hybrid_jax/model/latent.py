"""Continuous thoughts (Coconut, Hao et al. 2024) on the global transformer.

Every `<latent>` id is a patch of its own (`patching.compute_starts`), so a thought is one global
position. Its global *input* (in d_global space, i.e. after `token_embedding_projection`) is replaced by
the global transformer's *output* at the patch just before it: the last hidden state is fed back as the
next input embedding, as the paper does with an LLM's last hidden state. The local encoder and decoder
run once; only the global transformer runs again.

Thought k depends on the output at thought k - 1, so k thoughts need k + 1 sequential passes. Each pass
here recomputes every position from scratch and replaces *all* latent inputs with the previous pass's
shifted outputs: after pass m the first m thoughts have their exact inputs (induction: the output at
thought m - 1 only reads inputs at or before it). Extra passes leave the result unchanged (a fixed
point), so one static number of passes serves a batch whose rows hold different numbers of thoughts.
Since the result equals the sequential computation as a function of the parameters, gradients flow
through the whole chain exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hybrid_jax.model.segments import segment_max_sorted
from hybrid_jax.tokenizer import LATENT_ID


def latent_patches(ids: jax.Array, patch_ids: jax.Array, slots: int) -> jax.Array:
    """bool `[batch, slots]`: the patch holds a `<latent>` id. ids, patch_ids int32 `[batch, length]`."""
    # Bytes beyond the slot capacity have no patch position and are left out; not a scatter-max,
    # which a GPU runs as a compare-and-swap loop (see `segment_max_sorted`).
    return segment_max_sorted((ids == LATENT_ID).astype(jnp.float32), patch_ids, slots) > 0


def recycled(state: jax.Array, replaced: jax.Array, match_norm: bool) -> jax.Array:
    """A thought's global input from the global state before it `[..., d_global]`: the state itself, or
    (`match_norm`) rescaled to the norm of the input `replaced` it takes the place of."""
    if not match_norm:
        return state.astype(replaced.dtype)
    norm = lambda x: jnp.sqrt(jnp.sum(jnp.square(x.astype(jnp.float32)), axis=-1, keepdims=True))
    return (state.astype(jnp.float32) * (norm(replaced) / jnp.maximum(norm(state), 1e-6))).astype(replaced.dtype)


def feed_back(embedded: jax.Array, outputs: jax.Array, is_latent: jax.Array, match_norm: bool = False) -> jax.Array:
    """Inputs for the next pass: latent positions take the output one patch earlier (`recycled`).

    embedded, outputs `[batch, patches, d_global]`, is_latent bool `[batch, patches]`.
    """
    previous = jnp.pad(outputs, ((0, 0), (1, 0), (0, 0)))[:, :-1]
    return jnp.where(is_latent[..., None], recycled(previous, embedded, match_norm), embedded)


def global_with_thoughts(global_transformer, patch_embeds: jax.Array, is_latent: jax.Array,
                         passes: int, match_norm: bool = False) -> jax.Array:
    """Global states `[batch, patches, d_global]` with thoughts fed back; exact for rows holding at most
    `passes - 1` latents. patch_embeds `[batch, patches, d_in]` (the local encoder's output);
    `match_norm`: see `recycled`."""
    if passes < 1:
        raise ValueError(f"latent passes must be >= 1, got {passes}")
    embedded = global_transformer.embed(patch_embeds)
    outputs = global_transformer.run(embedded)
    # A static Python loop: reverse-mode differentiable (unlike while_loop), and passes is small.
    for _ in range(passes - 1):
        outputs = global_transformer.run(feed_back(embedded, outputs, is_latent, match_norm))
    return outputs
