"""The BLT model: entropy model, local encoder, global transformer, local decoder."""

from hybrid_jax.model.blt import BLT
from hybrid_jax.model.patching import PatchInfo

__all__ = ["BLT", "PatchInfo"]
