"""Damaged checkpoints and full disks for the fault tests: what to break in an Orbax step, how, and a
listing of a workdir to show that nothing was deleted."""

import json
import math
import os
import random
import shutil
import subprocess

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
    # How TensorStore splits them over files varies from run to run: 2 to 14 files over 10 kB were seen.
    data = [p for p in item_files(step_dir, "params", "data") if os.path.getsize(p) > 10_000]
    assert len(data) >= 2, data


# Run as `python -c ENOSPC_MAIN CMD ARGS...`: the `hybrid-jax` dispatcher (as `python -m hybrid_jax`),
# except that Orbax's array writes for step $FAIL_SAVE_STEP fail with ENOSPC, where TensorStore's own
# write would fail on a full disk (for an async save, in Orbax's background thread).
ENOSPC_MAIN = """
import errno, json, os, sys
from orbax.checkpoint._src.serialization import serialization
write, tmp = serialization.async_serialize_from_host, f"/{os.environ['FAIL_SAVE_STEP']}.orbax-checkpoint-tmp/"
async def full_disk(value, tspec, *args, **kwargs):
    if tmp in json.dumps(tspec):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), tmp)
    return await write(value, tspec, *args, **kwargs)
serialization.async_serialize_from_host = full_disk
from hybrid_jax.cli import main
sys.exit(main())
"""


class SmallDisk:
    """A tmpfs with `free` bytes left once `src` is copied onto it, where this machine lets us mount
    one (root, or CAP_SYS_ADMIN); `mounted` is False elsewhere and nothing is done."""

    def __init__(self, mountpoint: str, src: str, free: int):
        self.mountpoint, self.src, self.free, self.mounted = mountpoint, src, free, False

    def __enter__(self):
        os.makedirs(self.mountpoint, exist_ok=True)
        size = sum(os.path.getsize(os.path.join(p, n)) for p, _, ns in os.walk(self.src) for n in ns)
        size = (size + self.free) * 2 + (4 << 20)
        try:
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", self.mountpoint],
                               capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return self
        self.mounted = r.returncode == 0
        if self.mounted:
            shutil.copytree(self.src, self.workdir)
            st = os.statvfs(self.mountpoint)
            ballast = st.f_bavail * st.f_frsize - self.free
            with open(self.ballast, "wb") as f:
                os.posix_fallocate(f.fileno(), 0, ballast)
        return self

    @property
    def workdir(self) -> str:
        return os.path.join(self.mountpoint, "run")

    @property
    def ballast(self) -> str:
        return os.path.join(self.mountpoint, "ballast")

    def make_room(self) -> None:
        os.remove(self.ballast)

    def __exit__(self, *exc):
        if self.mounted:
            subprocess.run(["umount", self.mountpoint], capture_output=True, timeout=60)
