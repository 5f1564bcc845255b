"""Packed byte streams and the grain pipelines over them.

Every document becomes `[BOS] + bytes + [EOS]`; documents are concatenated into one uint16 stream and
cut into windows of `seq_len + 1` ids (inputs are the first `seq_len`, targets the last). The training
pipeline shuffles window indices with the seed, batches them into *global* batches, and each process
loads only the rows its devices hold, so a step sees the same global batch whatever the process count.
Its grain iterator is checkpointable (`get_state` / `set_state`). A directory written by `hybrid-jax
prepare` stands for the glob it was made from: the same stream, read from disk a window at a time
(`prepared.py`).
"""

from __future__ import annotations

import os

import grain
import numpy as np

from hybrid_jax.data.corpus import documents, held_out, resolve, stdlib_files

from hybrid_jax.errors import DataError
from hybrid_jax.data.prepared import SPLITS, ShardedStream, is_prepared, read_index
from hybrid_jax.tokenizer import BOS_ID, EOS_ID, OFFSET


def pack(docs) -> np.ndarray:
    """uint16 stream of `[BOS] + (bytes + 4) + [EOS]` per document."""
    parts = []
    for doc in docs:
        arr = np.frombuffer(doc, np.uint8).astype(np.uint16) + OFFSET
        parts.append(np.concatenate([[BOS_ID], arr, [EOS_ID]]).astype(np.uint16))
    return np.concatenate(parts) if parts else np.zeros((0,), np.uint16)


def split_documents(data_cfg):
    """(train docs, held-out docs) of `data.train` as lists of bytes: a hash-chosen `data.eval_fraction`
    of the documents is held out unless `data.eval` names separate files (then none is)."""
    if data_cfg.train:
        files, root = resolve(data_cfg.train), ""
    else:
        files = stdlib_files()
        root = os.path.dirname(files[0]) if files else ""
        if not files:
            raise DataError("the default corpus (standard-library .py files) was not found")
    train, evald = [], []
    for f in files:
        for i, doc in enumerate(documents(f, data_cfg.text_field)):
            key = f"{os.path.relpath(f, root) if root else f}:{i}"
            (evald if not data_cfg.eval and held_out(key, data_cfg.eval_fraction) else train).append(doc)
    return train, evald


def _prepared_train(data_cfg):
    """(train stream, held-out stream or None) of a directory written by `hybrid-jax prepare`."""
    index = read_index(data_cfg.train)
    if not data_cfg.eval and index["eval_fraction"] != data_cfg.eval_fraction:
        raise DataError(f"data.eval_fraction={data_cfg.eval_fraction}, but {data_cfg.train} was prepared with "
                        f"{index['eval_fraction']}: set it so, or prepare again")
    return ShardedStream(data_cfg.train), None if data_cfg.eval else ShardedStream(data_cfg.train, ("eval",))


def streams(data_cfg):
    """(train stream, eval stream): in memory for a glob, on disk for a prepared directory (either
    of `data.train` and `data.eval` may be one); too little data → DataError naming the source."""
    if is_prepared(data_cfg.train):
        train_s, eval_s = _prepared_train(data_cfg)
    else:
        train, evald = split_documents(data_cfg)
        train_s, eval_s = pack(train), pack(evald)
    if is_prepared(data_cfg.eval):
        eval_s = ShardedStream(data_cfg.eval, SPLITS)
    elif data_cfg.eval:
        eval_s = pack(d for f in resolve(data_cfg.eval) for d in documents(f, data_cfg.text_field))
    name = data_cfg.train or "the standard-library corpus"
    if len(train_s) < data_cfg.seq_len + 1:
        raise DataError(f"{name!r}: {len(train_s)} ids of training data, fewer than one sequence "
                        f"(data.seq_len + 1 = {data_cfg.seq_len + 1})")
    return train_s, eval_s


def num_windows(stream: np.ndarray, seq_len: int) -> int:
    return max(0, (len(stream) - 1) // seq_len)


class LoadRows(grain.transforms.Map):
    """Global batch of window indices -> this process's rows, int32 `[rows, seq_len + 1]`."""

    def __init__(self, stream: np.ndarray, seq_len: int, rows: slice):
        self.stream, self.seq_len, self.rows = stream, seq_len, rows

    def map(self, indices):
        starts = np.asarray(indices)[self.rows] * self.seq_len
        return windows(self.stream, starts, self.seq_len + 1).astype(np.int32)


def windows(stream, starts, n: int) -> np.ndarray:
    """`[len(starts), n]`: the ids of `stream` (in memory, or a prepared `ShardedStream`) from each start."""
    if isinstance(stream, ShardedStream):
        return stream.windows(starts, n)
    return stream[np.asarray(starts)[:, None] + np.arange(n)]


def train_dataset(stream, seq_len: int, global_batch: int, seed: int, rows: slice) -> grain.MapDataset:
    """Endless shuffled global batches; element i is the local rows of step i's batch."""
    n = num_windows(stream, seq_len)
    if n < global_batch:
        raise DataError(f"only {n} training sequences of {seq_len} bytes, fewer than one batch of {global_batch}")
    ds = grain.MapDataset.range(n).shuffle(seed=seed).repeat(None)
    return ds.batch(global_batch, drop_remainder=True).map(LoadRows(stream, seq_len, rows))


def eval_batches(stream, seq_len: int, batch: int, max_batches: int, rows: slice) -> list[np.ndarray]:
    """The first `max_batches` batches of held-out windows, in order (local rows)."""
    n = min(num_windows(stream, seq_len) // batch, max_batches)
    load = LoadRows(stream, seq_len, rows)
    return [load.map(np.arange(i * batch, (i + 1) * batch)) for i in range(n)]
