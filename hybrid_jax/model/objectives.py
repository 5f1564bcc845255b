"""What training minimises and evaluation sums, as functions of a model and a batch.

A batch is int32 `[batch, seq_len + 1]`: inputs `[:, :-1]`, next-byte targets `[:, 1:]`. Losses return
(scalar loss, metrics); eval sums return (sum of next-byte cross-entropy in nats, bytes counted, patches),
which `hybrid_jax.evaluation.bpb` turns into bits per byte.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from hybrid_jax.model import patching

LN2 = math.log(2.0)


def losses(model, batch, est_weight: float, trained_online: bool):
    """(total loss, metrics) for one batch: next-byte CE (+ weighted entropy-model CE)."""
    inputs, targets = batch[:, :-1], batch[:, 1:]
    logits, info, entropy_logits = model.train_forward(inputs)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
    est = jnp.zeros((), jnp.float32)
    if trained_online:
        est = optax.softmax_cross_entropy_with_integer_labels(entropy_logits, targets).mean()
    patches = info.starts[:, :-1].sum(axis=1).astype(jnp.float32)
    metrics = {"loss": ce, "est_loss": est, "avg_patch_len": inputs.shape[1] / patches.mean()}
    return ce + est_weight * est, metrics


def entropy_model_losses(model, batch):
    """(loss, metrics) of the entropy model alone (`train.objective = "entropy_model"`): its next-byte CE,
    and the mean patch length its entropies would give under `model.patching`."""
    inputs, targets = batch[:, :-1], batch[:, 1:]
    logits = model.entropy_model(inputs)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
    ents = patching.entropies_from_logits(jax.lax.stop_gradient(logits))
    patches = patching.compute_starts(model.config.patching, inputs, ents)[:, :-1].sum(axis=1).astype(jnp.float32)
    return ce, {"loss": ce, "est_loss": ce, "avg_patch_len": inputs.shape[1] / patches.mean()}


def entropy_model_sums(model, batch, mask=None):
    """`eval_sums` of the entropy model alone."""
    inputs, targets = batch[:, :-1], batch[:, 1:]
    mask = jnp.ones(targets.shape, jnp.float32) if mask is None else mask.astype(jnp.float32)
    logits = model.entropy_model(inputs)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    starts = patching.compute_starts(model.config.patching, inputs, patching.entropies_from_logits(logits))
    return (ce * mask).sum(), mask.sum(), (starts[:, :-1] * mask).sum()


def masked_losses(model, batch, est_weight: float, trained_online: bool, latent_passes: int = 0):
    """(total loss, metrics) for `{"ids" [batch, seq_len + 1], "mask" [batch, seq_len]}`: next-byte CE
    averaged over the targets where mask is 1 (latent reasoning: only what follows `<eot>`), the global
    transformer run with `latent_passes` (static; 0 = plain). The entropy model, when trained online,
    learns from every non-padding byte (padding is id 0, BOE)."""
    ids, mask = batch["ids"], batch["mask"]
    inputs, targets = ids[:, :-1], ids[:, 1:]
    logits, info, entropy_logits = model.train_forward(inputs, latent_passes)
    ce = (optax.softmax_cross_entropy_with_integer_labels(logits, targets) * mask).sum() / jnp.maximum(mask.sum(), 1)
    est = jnp.zeros((), jnp.float32)
    if trained_online:
        real = (targets != 0).astype(jnp.float32)
        est_all = optax.softmax_cross_entropy_with_integer_labels(entropy_logits, targets)
        est = (est_all * real).sum() / jnp.maximum(real.sum(), 1)
    patches = info.starts[:, :-1].sum(axis=1).astype(jnp.float32)
    metrics = {"loss": ce, "est_loss": est, "avg_patch_len": inputs.shape[1] / patches.mean()}
    return ce + est_weight * est, metrics


def eval_sums(model, batch, mask=None):
    """(sum of next-byte CE in nats, bytes counted, patches) over the bytes where `mask` `[batch, seq_len]`
    is 1 (default: all). batch int32 `[batch, seq_len + 1]`."""
    inputs, targets = batch[:, :-1], batch[:, 1:]
    mask = jnp.ones(targets.shape, jnp.float32) if mask is None else mask.astype(jnp.float32)
    logits, info, _ = model.train_forward(inputs)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    return (ce * mask).sum(), mask.sum(), (info.starts[:, :-1] * mask).sum()
