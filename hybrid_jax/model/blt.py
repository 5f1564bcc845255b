"""The whole Byte Latent Transformer: patch, encode bytes to patches, global transformer, decode bytes."""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from hybrid_jax.config import validate_model
from hybrid_jax.model import latent, patching
from hybrid_jax.model.entropy_model import EntropyModel
from hybrid_jax.model.global_transformer import GlobalTransformer
from hybrid_jax.model.layers import dense, dtype_of
from hybrid_jax.model.local_decoder import LocalDecoder
from hybrid_jax.model.local_encoder import LocalEncoder


def check_ids(ids, vocab_size: int) -> None:
    """Raise ValueError for ids outside [0, vocab_size) or of the wrong rank (skipped under tracing)."""
    if ids.ndim != 2:
        raise ValueError(f"ids must be int32[batch, length], got shape {tuple(ids.shape)}")
    if isinstance(ids, jax.core.Tracer):
        return
    lo, hi = int(jnp.min(ids)), int(jnp.max(ids))
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        raise ValueError(f"token id {bad} is outside the vocabulary [0, {vocab_size})")


class BLT(nnx.Module):
    """`model(ids)`: ids int32 `[batch, length]` -> logits float32 `[batch, length, vocab]`.

    Patches come from the configured patcher (the entropy model runs inside the forward pass) unless
    `patch_lengths` int `[batch, patches]` is given.
    """

    def __init__(self, cfg: ml_collections.ConfigDict, rngs: nnx.Rngs):
        validate_model(cfg)
        # A copy: FrozenConfigDict's == and hash read the ConfigDict it was made from, so a later edit
        # of `cfg` would make two models of different configs compare equal and jit reuse one's code.
        cfg = ml_collections.FrozenConfigDict(copy.deepcopy(cfg))
        self.config = cfg
        dtype = dtype_of(cfg.dtype)
        d_local = cfg.local_encoder.d_model
        self.entropy_model = EntropyModel(cfg.entropy_model, cfg.vocab_size, dtype, rngs)
        self.local_encoder = LocalEncoder(cfg, dtype, rngs)
        self.global_transformer = GlobalTransformer(
            cfg.global_transformer, cfg.cross_attn_k * d_local, dtype, rngs)
        self.local_decoder = LocalDecoder(cfg, dtype, rngs)
        self.lm_head = dense(d_local, cfg.vocab_size, dtype, rngs)

    def patch(self, ids: jax.Array, patch_lengths: jax.Array | None = None) -> patching.PatchInfo:
        """Patch boundaries for `ids` `[batch, length]` (see `hybrid_jax.model.patching`)."""
        check_ids(ids, self.config.vocab_size)
        if patch_lengths is not None:
            return patching.info_from_starts(patching.starts_from_lengths(patch_lengths, ids.shape[1]))
        entropies = None
        if self.config.patching.mode == "entropy":
            # Boundaries are discrete: no gradient flows from patching into the entropy model.
            logits = jax.lax.stop_gradient(self.entropy_model(ids))
            entropies = patching.entropies_from_logits(logits)
        starts = patching.compute_starts(self.config.patching, ids, entropies)
        return patching.info_from_starts(starts, entropies)

    def forward_patches(self, ids: jax.Array, patches: patching.PatchInfo, latent_passes: int = 0,
                        slots: int | None = None) -> jax.Array:
        """Logits float32 `[batch, length, vocab]` for given patches.

        `slots` (static): the global transformer's patch positions, by default the most a row of this
        length can have (`patching.num_slots`); fewer give the same logits while every row has at most
        that many patches (the global transformer is causal over patches), for less work.

        `latent_passes` > 0 (static) runs the global transformer that many times, feeding each
        `<latent>` patch the output at the patch before it (continuous thoughts, see
        `hybrid_jax.model.latent`); exact for up to `latent_passes - 1` latents per row. 0 = one plain
        pass, where `<latent>` patches keep their encoder output (pause tokens).
        """
        slots = slots or patching.num_slots(self.config.patching, ids.shape[1])
        byte_states, patch_embeds = self.local_encoder(ids, patches.ids, slots)
        if latent_passes:
            is_latent = latent.latent_patches(ids, patches.ids, slots)
            global_states = latent.global_with_thoughts(self.global_transformer, patch_embeds, is_latent,
                                                        latent_passes, self.config.latent_feedback == "match_norm")
        else:
            global_states = self.global_transformer(patch_embeds)
        decoder_ids = patching.decoder_patch_ids(patches.starts)
        h = self.local_decoder(byte_states, global_states, decoder_ids)
        return self.lm_head(h).astype(jnp.float32)

    def __call__(self, ids: jax.Array, patch_lengths: jax.Array | None = None, latent_passes: int = 0) -> jax.Array:
        ids = jnp.asarray(ids, jnp.int32)
        return self.forward_patches(ids, self.patch(ids, patch_lengths), latent_passes)

    def train_forward(self, ids: jax.Array, latent_passes: int = 0):
        """(logits, PatchInfo, entropy-model logits or None) in one pass, for training.

        The entropy model's logits keep their gradient (for its auxiliary loss when trained online);
        the patch boundaries drawn from them do not.
        """
        check_ids(ids, self.config.vocab_size)
        p = self.config.patching
        entropy_logits = entropies = None
        if p.mode == "entropy" or self.config.entropy_model.trained_online:
            entropy_logits = self.entropy_model(ids)
            entropies = patching.entropies_from_logits(jax.lax.stop_gradient(entropy_logits))
        starts = patching.compute_starts(p, ids, entropies)
        info = patching.info_from_starts(starts, entropies)
        return self.forward_patches(ids, info, latent_passes), info, entropy_logits
