"""Data: every file format yields its documents, packing keeps document boundaries, bad data is a
clear error, and the training pipeline's iterator resumes where it stopped."""

import json

import numpy as np
import pytest

from hybrid_jax.data.corpus import documents, resolve

from hybrid_jax.errors import DataError
from hybrid_jax.data.pipeline import pack, train_dataset


def test_text_jsonl_and_array_record_documents(tmp_path):
    (tmp_path / "a.txt").write_bytes("héllo\n".encode())
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "one"}) + "\n\n" + json.dumps({"text": "two"}) + "\n")
    from array_record.python.array_record_module import ArrayRecordWriter

    writer = ArrayRecordWriter(str(tmp_path / "c.array_record"), "group_size:1")
    for doc in (b"rec0", b"rec1", b"rec2"):
        writer.write(doc)
    writer.close()
    assert list(documents(str(tmp_path / "a.txt"))) == ["héllo\n".encode()]
    assert list(documents(str(tmp_path / "b.jsonl"))) == [b"one", b"two"]
    assert list(documents(str(tmp_path / "c.array_record"))) == [b"rec0", b"rec1", b"rec2"]


def test_pack_wraps_documents_in_bos_eos():
    assert pack([b"ab", b"c"]).tolist() == [1, 97 + 4, 98 + 4, 2, 1, 99 + 4, 2]


def test_bad_data_names_the_file_or_pattern(tmp_path):
    with pytest.raises(DataError, match="no files match"):
        resolve(str(tmp_path / "*.txt"))
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not a JSON object with a 'text'"):
        list(documents(str(tmp_path / "bad.jsonl")))


def test_iterator_state_resumes_the_same_batches():
    stream = np.arange(1000, dtype=np.uint16) % 250 + 4
    ds = train_dataset(stream, 16, 4, seed=3, rows=slice(0, 4)).to_iter_dataset()
    it = iter(ds)
    for _ in range(5):
        next(it)
    state = it.get_state()
    want = [next(it) for _ in range(3)]
    again = iter(ds)
    again.set_state(state)
    got = [next(again) for _ in range(3)]
    assert all((a == b).all() for a, b in zip(want, got))
    assert want[0].shape == (4, 17)


def test_each_process_loads_only_its_rows():
    stream = np.arange(2000, dtype=np.uint16) % 250 + 4
    full = next(iter(train_dataset(stream, 16, 8, seed=0, rows=slice(0, 8)).to_iter_dataset()))
    top = next(iter(train_dataset(stream, 16, 8, seed=0, rows=slice(0, 4)).to_iter_dataset()))
    bottom = next(iter(train_dataset(stream, 16, 8, seed=0, rows=slice(4, 8)).to_iter_dataset()))
    assert (np.concatenate([top, bottom]) == full).all()
