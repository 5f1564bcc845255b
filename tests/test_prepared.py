"""Prepared corpora (`hybrid-jax prepare`): the memory-mapped streams equal the in-memory ones of the
same glob for any mix of files and any held-out share, whatever the worker count; an interrupted prepare
finishes; damaged or mismatched directories are one-line errors."""

import json
import os
import random

import ml_collections
import numpy as np
import pytest

from hybrid_jax import cli
from hybrid_jax.cli import prepare as prepare_cli
from hybrid_jax.errors import DataError
from hybrid_jax.data.pipeline import eval_batches, streams, train_dataset, windows
from hybrid_jax.data.prepared import ShardedStream, prepare


def random_corpus(root, seed: int) -> str:
    """Text and JSONL files of random length, some empty, with non-ASCII text; a glob for them."""
    rng = random.Random(seed)
    alphabet = "abc xyz\n\té€😀"
    os.makedirs(root, exist_ok=True)
    for i in range(rng.randint(1, 7)):
        if rng.random() < 0.5:
            text = "".join(rng.choice(alphabet) for _ in range(rng.choice([0, 1, 50, 700])))
            (root / f"f{i}.txt").write_text(text, encoding="utf-8")
        else:
            lines = [json.dumps({"text": "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 90)))})
                     for _ in range(rng.randint(0, 40))]
            (root / f"f{i}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(root / "*")


def data_node(train: str, eval_fraction: float, eval_glob: str = "", seq_len: int = 8):
    return ml_collections.ConfigDict(dict(train=train, eval=eval_glob, text_field="text",
                                          eval_fraction=eval_fraction, seq_len=seq_len))


@pytest.mark.parametrize("seed", range(6))
def test_prepared_streams_equal_the_in_memory_ones(seed, tmp_path):
    rng = random.Random(seed)
    glob = random_corpus(tmp_path / "src", seed)
    fraction = rng.choice([0.0, 0.3, 0.6])
    out = str(tmp_path / "prep")
    try:
        raw_train, raw_eval = streams(data_node(glob, fraction))
    except DataError:  # too little training data: the prepared directory must say the same
        prepare(glob, out, eval_fraction=fraction, workers=1)
        with pytest.raises(DataError, match="fewer than one sequence"):
            streams(data_node(out, fraction))
        return
    prepare(glob, out, eval_fraction=fraction, workers=rng.choice([1, 2]))
    train, evald = streams(data_node(out, fraction))
    assert len(train) == len(raw_train) and len(evald) == len(raw_eval)
    assert (train.read(0, len(train)) == raw_train).all()
    assert len(evald) == 0 or (evald.read(0, len(evald)) == raw_eval).all()
    starts = np.random.default_rng(seed).integers(0, len(train) - 9, size=5)  # across shard ends too
    assert (windows(train, starts, 9) == windows(raw_train, starts, 9)).all()
    assert windows(train, starts, 9).shape == (5, 9)


def test_training_batches_are_the_same(tmp_path):
    glob = random_corpus(tmp_path / "src", 11)
    (tmp_path / "src" / "big.txt").write_text("the quick brown fox " * 300)
    out = str(tmp_path / "prep")
    prepare(glob, out, eval_fraction=0.2, workers=2)
    raw, prep = streams(data_node(glob, 0.2)), streams(data_node(out, 0.2))
    a = iter(train_dataset(raw[0], 8, 4, seed=5, rows=slice(1, 3)).to_iter_dataset())
    b = iter(train_dataset(prep[0], 8, 4, seed=5, rows=slice(1, 3)).to_iter_dataset())
    for _ in range(20):
        assert (next(a) == next(b)).all()
    for x, y in zip(eval_batches(raw[1], 8, 2, 3, slice(0, 2)), eval_batches(prep[1], 8, 2, 3, slice(0, 2))):
        assert (x == y).all()


def test_worker_count_does_not_change_the_output(tmp_path):
    glob = random_corpus(tmp_path / "src", 3)
    a, b = prepare(glob, str(tmp_path / "a"), workers=1), prepare(glob, str(tmp_path / "b"), workers=2)
    assert a == b
    for name in sorted(os.listdir(tmp_path / "a" / "shards")):
        assert (tmp_path / "a" / "shards" / name).read_bytes() == (tmp_path / "b" / "shards" / name).read_bytes()


def test_an_interrupted_prepare_redoes_only_what_is_missing(tmp_path):
    glob = random_corpus(tmp_path / "src", 4)
    out = tmp_path / "prep"
    want = prepare(glob, str(out), workers=1)
    shards = out / "shards"
    (out / "index.json").unlink()  # as if stopped before the end: the last file not finished
    last = len(want["shards"]) - 1
    (shards / f"{last:05d}.json").unlink()
    (shards / f"{last:05d}.train.u16").write_bytes(b"partial")
    kept = {p: os.stat(p).st_mtime_ns for p in shards.iterdir() if not p.name.startswith(f"{last:05d}.")}
    assert prepare(glob, str(out), workers=1) == want
    assert all(os.stat(p).st_mtime_ns == t for p, t in kept.items())


def test_damaged_or_mismatched_directories_are_errors(tmp_path):
    glob = random_corpus(tmp_path / "src", 5)
    out = str(tmp_path / "prep")
    prepare(glob, out, eval_fraction=0.1, workers=1)
    with pytest.raises(DataError, match="prepared with other settings"):
        prepare(glob, out, eval_fraction=0.5)
    with pytest.raises(DataError, match="data.eval_fraction=0.02, but .* prepared with 0.1"):
        streams(data_node(out, 0.02))
    train_file = next(p for p in sorted((tmp_path / "prep" / "shards").glob("*.train.u16")) if p.stat().st_size)
    train_file.write_bytes(train_file.read_bytes()[:-2])
    with pytest.raises(DataError, match="not the .* bytes the index says; prepare again"):
        ShardedStream(out)


def test_prepare_command(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("hello world")
    out = str(tmp_path / "prep")
    rc = cli.run(prepare_cli.main, ["--data", str(tmp_path / "*.txt"), "--out", out, "--eval_fraction", "0"])
    assert rc == 0 and "1 documents from 1 files, 13 ids (0 held out)" in capsys.readouterr().out
    rc = cli.run(prepare_cli.main, ["--data", str(tmp_path / "*.nothing"), "--out", out])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "no files match" in err[0]
