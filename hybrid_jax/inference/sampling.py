"""Choosing the next id from logits: greedy, or temperature sampling with optional top-k / top-p."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from hybrid_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Sampling:
    """temperature 0 = greedy (argmax); top_k 0 = no cut; top_p 1.0 = no nucleus cut."""
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0

    def check(self, vocab_size: int) -> None:
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 <= self.top_k <= vocab_size:
            raise ConfigError(f"top_k must be in [0, {vocab_size}], got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")


def filter_logits(logits: jax.Array, top_k: int, top_p: float) -> jax.Array:
    """logits `[batch, vocab]` with everything outside the top-k and the top-p nucleus set to -inf.

    The nucleus is the smallest set of most likely ids whose probability reaches `top_p` (the most
    likely id is always kept).
    """
    neg = jnp.full_like(logits, -jnp.inf)
    if top_k:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, neg, logits)
    if top_p < 1.0:
        ordered = jnp.sort(logits, axis=-1)[:, ::-1]
        probs = jax.nn.softmax(ordered, axis=-1)
        keep = jnp.cumsum(probs, axis=-1) - probs < top_p
        cutoff = jnp.take_along_axis(ordered, keep.sum(axis=-1, keepdims=True) - 1, axis=-1)
        logits = jnp.where(logits < cutoff, neg, logits)
    return logits


def sample(logits: jax.Array, key: jax.Array, s: Sampling) -> jax.Array:
    """Next ids int32 `[batch]` from logits float32 `[batch, vocab]`."""
    if s.temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = filter_logits(logits / s.temperature, s.top_k, s.top_p)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)
