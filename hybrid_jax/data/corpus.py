"""Documents from disk: text files, JSONL (one document per line), ArrayRecord (one per record), or the
default corpus, this Python's own standard-library sources (present and identical on every machine with
the same Python version, so no download is ever needed)."""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import sysconfig
from typing import Iterator

from hybrid_jax.errors import DataError


def stdlib_files() -> list[str]:
    """Sorted `.py` files of the standard library (third-party site-packages excluded)."""
    root = sysconfig.get_paths()["stdlib"]
    files = glob.glob(os.path.join(root, "**", "*.py"), recursive=True)
    return sorted(f for f in files if "site-packages" not in f and "dist-packages" not in f)


def _remote_glob(pattern: str) -> list[str]:
    """A bucket's files matching `pattern` (`gs://b/dir/**/*.txt`), through etils.epath."""
    from etils import epath

    if "**" in pattern:  # epath refuses it: a recursive listing of a bucket is thousands of requests
        raise DataError(f"{pattern!r}: a bucket glob takes * but not ** (list the levels, e.g. dir/*/*.txt)")
    scheme, _, rest = pattern.partition("://")
    parts = rest.split("/")
    fixed = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    root = epath.Path(f"{scheme}://{'/'.join(parts[:fixed])}")
    if fixed == len(parts):
        return [str(root)] if root.is_file() else []
    return [str(p) for p in root.glob("/".join(parts[fixed:])) if p.is_file()]


def resolve(pattern: str) -> list[str]:
    """Files matching a glob (`**` recurses; `gs://...` and other etils.epath URLs too); none → DataError
    naming the pattern."""
    if "://" in pattern:
        files = sorted(_remote_glob(pattern))
    else:
        files = sorted(f for f in glob.glob(pattern, recursive=True) if os.path.isfile(f))
    if not files:
        raise DataError(f"no files match {pattern!r}")
    return files


def open_file(path: str, mode: str):
    """A local file, or a bucket's object through etils.epath."""
    if "://" in path:
        from etils import epath
        opener = epath.Path(path).open
    else:
        opener = functools.partial(open, path)
    return opener(mode) if "b" in mode else opener(mode, encoding="utf-8")


def _jsonl(path: str, field: str) -> Iterator[bytes]:
    with open_file(path, "r") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                text = json.loads(line)[field]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise DataError(f"{path}:{n}: not a JSON object with a {field!r} string field") from None
            if not isinstance(text, str):
                raise DataError(f"{path}:{n}: field {field!r} is not a string")
            yield text.encode("utf-8")


def _array_record(path: str) -> Iterator[bytes]:
    from array_record.python.array_record_module import ArrayRecordReader

    reader = ArrayRecordReader(path)
    try:
        for i in range(reader.num_records()):
            yield reader.read([i])[0]
    finally:
        reader.close()


def documents(path: str, text_field: str = "text") -> Iterator[bytes]:
    """The documents of one file, as UTF-8 bytes; empty ones are skipped (they hold no byte to learn or
    score, only the BOS and EOS that packing would add)."""
    try:
        if path.endswith((".jsonl", ".json")):
            docs = _jsonl(path, text_field)
        elif path.endswith(".array_record") or ".array_record-" in path:
            docs = _array_record(path)
        else:
            with open_file(path, "rb") as f:
                docs = [f.read()]
        yield from (d for d in docs if d)
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable ({type(e).__name__}: {e})") from None


def held_out(key: str, fraction: float) -> bool:
    """A stable pseudo-random choice of about `fraction` of keys (md5 of the key)."""
    digest = int(hashlib.md5(key.encode("utf-8")).hexdigest()[:8], 16)
    return digest / 0xFFFFFFFF < fraction
