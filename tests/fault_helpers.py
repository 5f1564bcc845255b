"""Damaged checkpoints for the fault tests: what to break in an Orbax step, how, and a listing of a
workdir to show that nothing was deleted."""

import json
import math
import os
import random
import shutil

KINDS = ("truncate", "zero", "random", "delete")
# (item, part): "data" are the files of the per-process OCDBT databases, which hold the arrays' chunks;
# "metadata" everything else in the item (Orbax's _METADATA, _sharding and array metadata, the OCDBT
# manifests and the merged b-tree under d/); "item" the whole item. `meta` is one JSON file: no data.
TARGETS = (("params", "data"), ("params", "metadata"), ("params", "item"),
           ("opt_state", "data"), ("opt_state", "metadata"), ("opt_state", "item"),
           ("meta", "metadata"), ("meta", "item"))
STEP_SETS = ("newest", "older", "both")


def cases(seed: int, n: int) -> list[tuple[str, str, str, str]]:
    """`n` (kind, item, part, steps) cases drawn with `seed`: every target once per 8 cases and every
    kind twice, so that a few cases still cover the whole matrix's rows and columns."""
    rng = random.Random(seed)
    targets, kinds = list(TARGETS), list(KINDS) * 2
    out = []
    while len(out) < n:
        rng.shuffle(targets)
        rng.shuffle(kinds)
        out += [(kind, item, part, rng.choice(STEP_SETS)) for (item, part), kind in zip(targets, kinds)]
    return out[:n]


def is_data(relpath: str) -> bool:
    parts = relpath.split(os.sep)
    return len(parts) == 3 and parts[0].startswith("ocdbt.process_") and parts[1] == "d"


def item_files(step_dir: str, item: str, part: str) -> list[str]:
    root = os.path.join(step_dir, item)
    found = []
    for parent, _, names in os.walk(root):
        for name in names:
            path = os.path.join(parent, name)
            if part == "item" or (part == "data") == is_data(os.path.relpath(path, root)):
                found.append(path)
    assert found, f"nothing to damage: {item}/{part} in {step_dir}"
    return sorted(found)


def damage(step_dir: str, item: str, part: str, kind: str, rng: random.Random) -> None:
    """Break `part` of `item` in an Orbax step as a disk error, a partial copy or a stray `rm` would."""
    if part == "item" and kind == "delete":
        shutil.rmtree(os.path.join(step_dir, item))
        return
    for path in item_files(step_dir, item, part):
        size = os.path.getsize(path)
        if kind == "delete":
            os.remove(path)
        elif kind == "truncate":  # at most half: the chunks fill data files to their ends
            os.truncate(path, rng.randrange(size // 2 + 1))
        else:
            with open(path, "wb") as f:
                f.write(bytes(size) if kind == "zero" else rng.randbytes(size))


def listing(root: str) -> dict:
    """Every directory and file under `root` with its size and modification time."""
    out = {}
    for parent, dirs, names in os.walk(root):
        for name in dirs + names:
            path = os.path.join(parent, name)
            st = os.stat(path)
            out[os.path.relpath(path, root)] = None if name in dirs else (st.st_size, st.st_mtime_ns)
    return out


def assert_several_chunks(step_dir: str, shapes: dict) -> None:
    """The step's arrays are stored as several chunks each, spread over several data files (so a
    damaged file leaves other chunks of the same array readable)."""
    with open(os.path.join(step_dir, "params", "array_metadatas", "process_0")) as f:
        stored = [m["array_metadata"] for m in json.load(f)["array_metadatas"]]
    chunks = {m["param_name"]: math.prod(-(-n // c) for n, c in zip(shapes[m["param_name"]], m["chunk_shape"]))
              for m in stored}
    assert sum(n >= 4 for n in chunks.values()) >= 10, chunks
    # How TensorStore splits them over files varies from run to run; one file may be a b-tree node.
    data = [p for p in item_files(step_dir, "params", "data") if os.path.getsize(p) > 10_000]
    assert len(data) >= 3, data
