"""Bits per byte of a model on a stream of ids: every document is `[BOS] bytes [EOS]` as in training,
the stream is cut into windows of `seq_len` predictions and every id after the first is scored once
(`windows`: the last window ends at the stream's end with a full window of left context)."""

from __future__ import annotations

import math

import jax
import numpy as np
from flax import nnx

from hybrid_jax.model.objectives import LN2, eval_sums


def windows(stream, seq_len: int):
    """(batch int32 `[n, seq_len + 1]`, mask `[n, seq_len]`): windows of `seq_len` predictions scoring
    each id of `stream` after the first exactly once. Consecutive windows follow each other; when the
    stream spans more than one, the last ends at the stream's end, so that its predictions read as much
    left context as a window holds, and masks those an earlier window scored (lm-eval's rolling rule).
    A stream shorter than one window is zero-padded and masked."""
    n = max(1, math.ceil((len(stream) - 1) / seq_len))
    starts = np.arange(n) * seq_len
    if n > 1:
        starts[-1] = len(stream) - 1 - seq_len
    padded = np.zeros(max(len(stream), seq_len + 1), np.int32)
    padded[:len(stream)] = stream
    idx = starts[:, None] + np.arange(seq_len + 1)
    predicted = idx[:, 1:]
    mask = (predicted < len(stream)) & (predicted > (np.arange(n) * seq_len)[:, None])
    return padded[idx], mask.astype(np.float32)


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
