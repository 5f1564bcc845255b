"""Bits per byte of a model on a stream of ids: every document is `[BOS] bytes [EOS]` as in training,
the stream is cut into windows of `seq_len` predictions and every id after the first is scored once;
the last window is padded and masked."""

from __future__ import annotations

import math

import jax
import numpy as np
from flax import nnx

from hybrid_jax.model.objectives import LN2, eval_sums


def windows(stream, seq_len: int):
    """(batch int32 `[n, seq_len + 1]`, mask `[n, seq_len]`): consecutive windows scoring each id of
    `stream` after the first exactly once; the last window zero-padded and masked."""
    n = max(1, math.ceil((len(stream) - 1) / seq_len))
    padded = np.zeros(n * seq_len + 1, np.int32)
    padded[:len(stream)] = stream
    idx = np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)
    mask = (idx[:, 1:] < len(stream)).astype(np.float32)
    return padded[idx], mask


def bits_per_byte(model, stream, seq_len: int, batch_size: int) -> dict:
    """{"bpb", "bytes", "avg_patch_len"} of `model` on the id stream."""
    batch, mask = windows(stream, seq_len)
    rows = -len(batch) % batch_size  # pad to whole batches: one compiled shape
    batch = np.concatenate([batch, np.zeros((rows, seq_len + 1), np.int32)])
    mask = np.concatenate([mask, np.zeros((rows, seq_len), np.float32)])
    step = nnx.jit(eval_sums)
    return summarize(step(model, batch[i:i + batch_size], mask[i:i + batch_size])
                     for i in range(0, len(batch), batch_size))


def summarize(sums) -> dict:
    """{"bpb", "bytes", "avg_patch_len"} from `eval_sums` triples (nats, bytes, patches), one per batch:
    the one place that turns summed cross-entropy into bits per byte, for `evaluate bpb` and for the
    held-out rows of training alike."""
    nll = count = patches = 0.0
    for a, b, c in sums:
        a, b, c = jax.device_get((a, b, c))
        nll, count, patches = nll + float(a), count + float(b), patches + float(c)
    return {"bpb": nll / max(count, 1.0) / LN2, "bytes": int(count), "avg_patch_len": count / max(patches, 1.0)}
