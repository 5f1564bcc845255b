"""Corpora larger than memory: documents packed once into uint16 shards on disk (`hybrid-jax prepare`)
and read back lazily, a window at a time.

A prepared directory holds one shard pair per source file, `shards/NNNNN.train.u16` and
`NNNNN.eval.u16` (little-endian uint16 ids, `[BOS] + bytes + [EOS]` per document, exactly as
`pipeline.pack` makes them), a `NNNNN.json` beside each pair saying it is complete, and `index.json`
(written last) listing the shards and their lengths. Training reads the windows it needs from the files. The held-out split is chosen per document with the
same hash of `file:index` as for a raw glob, so training on `prepare --data G` equals training on `G`.
An interrupted `prepare` keeps its finished shards and redoes only the rest.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import sys

import numpy as np

from hybrid_jax.data.corpus import documents, held_out, open_file, resolve

from hybrid_jax.errors import DataError
from hybrid_jax.tokenizer import BOS_ID, EOS_ID, OFFSET

INDEX = "index.json"
FORMAT = 1
SPLITS = ("train", "eval")
_BLOCK = 1 << 24  # bytes of a plain-text file converted at a time


def is_prepared(path: str) -> bool:
    return bool(path) and os.path.isfile(os.path.join(path, INDEX))


def _shard_path(out: str, i: int, suffix: str) -> str:
    return os.path.join(out, "shards", f"{i:05d}.{suffix}")


def _write_ids(f, ids: np.ndarray) -> None:
    f.write(ids.astype("<u2").tobytes())


def _pack_text(path: str, f) -> int:
    """A plain-text file as one document, converted block by block (never read whole); its id count."""
    n = 2
    _write_ids(f, np.array([BOS_ID]))
    with open_file(path, "rb") as src:
        while block := src.read(_BLOCK):
            _write_ids(f, np.frombuffer(block, np.uint8).astype(np.uint16) + OFFSET)
            n += len(block)
    _write_ids(f, np.array([EOS_ID]))
    return n


def _pack_documents(path: str, text_field: str, eval_fraction: float, files) -> dict:
    """Each document of `path` appended to its split's file; the per-split id counts."""
    counts = {"train": 0, "eval": 0, "documents": 0}
    if not path.endswith((".jsonl", ".json", ".array_record")) and ".array_record-" not in path:
        split = "eval" if held_out(f"{path}:0", eval_fraction) else "train"
        try:
            with open_file(path, "rb") as src:
                if not src.read(1):  # an empty document, skipped as `documents` skips it
                    return counts
            counts[split] = _pack_text(path, files[split])
        except OSError as e:
            raise DataError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
        return {**counts, "documents": 1}
    for i, doc in enumerate(documents(path, text_field)):
        split = "eval" if held_out(f"{path}:{i}", eval_fraction) else "train"
        ids = np.concatenate([[BOS_ID], np.frombuffer(doc, np.uint8).astype(np.uint16) + OFFSET, [EOS_ID]])
        _write_ids(files[split], ids)
        counts[split] += len(ids)
        counts["documents"] += 1
    return counts


def prepare_file(job: tuple) -> dict:
    """Shard `i` of `out` from source file `path` (skipped if already complete); its entry in the index."""
    i, path, out, text_field, eval_fraction = job
    done = _shard_path(out, i, "json")
    if os.path.isfile(done):
        with open(done) as f:
            entry = json.load(f)
        if entry["source"] == path:
            return entry
    tmp = {s: _shard_path(out, i, f"{s}.u16.tmp") for s in SPLITS}
    with open(tmp["train"], "wb") as ftrain, open(tmp["eval"], "wb") as feval:
        counts = _pack_documents(path, text_field, eval_fraction, {"train": ftrain, "eval": feval})
    for s in SPLITS:
        os.replace(tmp[s], _shard_path(out, i, f"{s}.u16"))
    entry = {"source": path, **counts}
    with open(done + ".tmp", "w") as f:
        json.dump(entry, f)
    os.replace(done + ".tmp", done)
    return entry


def prepare(pattern: str, out: str, text_field: str = "text", eval_fraction: float = 0.02,
            workers: int = 0, progress=None) -> dict:
    """Pack the files of `pattern` into `out` (see the module docstring); returns the index.

    `workers` processes convert files in parallel (0: one per core). An `out` prepared before with the
    same settings is returned as it is; one prepared with other settings is an error.
    """
    files = resolve(pattern)
    settings = {"format": FORMAT, "pattern": pattern, "text_field": text_field, "eval_fraction": eval_fraction}
    if is_prepared(out):
        index = read_index(out)
        if {k: index.get(k) for k in settings} != settings:
            raise DataError(f"{out} was prepared with other settings ({ {k: index.get(k) for k in settings} }); "
                            "give another --out")
        return index
    os.makedirs(os.path.join(out, "shards"), exist_ok=True)
    jobs = [(i, f, out, text_field, eval_fraction) for i, f in enumerate(files)]
    workers = min(workers or len(os.sched_getaffinity(0)), len(jobs))
    shards = []
    # Spawned, not forked: a caller may have started JAX's threads, which a fork would copy mid-flight.
    with (concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
          if workers > 1 else contextlib.nullcontext()) as pool:
        for entry in (pool.map(prepare_file, jobs) if pool else map(prepare_file, jobs)):
            shards.append(entry)
            if progress:
                progress(entry)
    index = {**settings, "shards": shards, **{s: sum(e[s] for e in shards) for s in (*SPLITS, "documents")}}
    if not index["documents"]:
        raise DataError(f"{pattern!r}: no text (every file is empty); nothing to prepare")
    with open(os.path.join(out, INDEX + ".tmp"), "w") as f:
        json.dump(index, f, indent=1)
    os.replace(os.path.join(out, INDEX + ".tmp"), os.path.join(out, INDEX))
    return index


def read_index(path: str) -> dict:
    try:
        with open(os.path.join(path, INDEX)) as f:
            index = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: unreadable prepared-data index ({e})") from None
    if index.get("format") != FORMAT:
        raise DataError(f"{path}: prepared-data format {index.get('format')!r}, this version reads {FORMAT}")
    return index


class ShardedStream:
    """One split of a prepared directory as one virtual uint16 stream: `len(s)`, `s.read(start, n)` and
    `s.windows(starts, n)`, reading only the bytes asked for.

    Reads are `os.pread`s rather than a memory map: a mapped page of a file in the page cache joins the
    process's resident set in large folios (megabytes per touched page on this machine's kernel), so
    random windows from a mapped 6 GB corpus grew the trainer's RSS by gigabytes.
    """

    def __init__(self, path: str, splits=("train",)):
        index = read_index(path)
        self.fds, starts = [], [0]
        for i, entry in enumerate(index["shards"]):
            for s in splits:
                if entry[s]:
                    self.fds.append(self._open(_shard_path(path, i, f"{s}.u16"), entry[s]))
                    starts.append(starts[-1] + entry[s])
        self.starts = np.asarray(starts, np.int64)

    @staticmethod
    def _open(file: str, n: int) -> int:
        if not os.path.isfile(file) or os.path.getsize(file) != 2 * n:
            raise DataError(f"{file}: missing or not the {2 * n} bytes the index says; prepare again")
        return os.open(file, os.O_RDONLY)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __del__(self):
        for fd in getattr(self, "fds", []):
            os.close(fd)

    def read(self, start: int, n: int) -> np.ndarray:
        """Ids `[start, start + n)` of the stream, across shard ends; uint16 `[n]`."""
        if start < 0 or start + n > len(self):
            raise IndexError(f"ids {start}..{start + n} of a stream of {len(self)}")
        parts = []
        while n > 0:
            s = int(np.searchsorted(self.starts, start, side="right")) - 1
            take = min(n, int(self.starts[s + 1]) - start)
            parts.append(np.frombuffer(os.pread(self.fds[s], 2 * take, 2 * (start - int(self.starts[s]))), "<u2"))
            start, n = start + take, n - take
        return np.concatenate(parts) if len(parts) != 1 else parts[0]

    def windows(self, starts, n: int) -> np.ndarray:
        """`[len(starts), n]` uint16: the ids from each of `starts`."""
        return np.stack([self.read(int(s), n) for s in starts]) if len(starts) else np.zeros((0, n), np.uint16)


def report(entry: dict) -> None:
    """One line per packed file; an empty file says nothing (a corpus of only empty files is an error)."""
    if not entry["documents"]:
        return
    print(f"packed {entry['source']}: {entry['documents']} documents, {entry['train'] + entry['eval']:,} ids",
          file=sys.stderr)
