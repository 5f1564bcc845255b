"""A run directory: the one place that knows its layout on disk.

    WORKDIR/config.json               the run's config (a converted model: `{"model": ...}` only)
    WORKDIR/checkpoints/<step>/       Orbax steps: `params`, and while training `opt_state` and `meta`
    WORKDIR/metrics.jsonl             one JSON object per logged step
    WORKDIR/tb/                       TensorBoard events
    WORKDIR/profile/[process_<i>/]    `jax.profiler` traces
    WORKDIR/train.lock                flock'ed by the running `train` (its process 0) for the whole run;
                                      holds that process's pid, host and start time. Left behind by a
                                      finished or killed run, it locks nothing

Paths go through `etils.epath`, which Orbax also uses, so a workdir may be a local folder or a bucket
(`gs://...`). A bucket has no lock (see `Workdir.lock`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import sys

import orbax.checkpoint as ocp
from etils import epath

from hybrid_jax.errors import CheckpointError, ConfigError, WorkdirInUse, WriteError, error_text, innermost
from hybrid_jax.storage.lock import Busy, FileLock, describe


# TensorStore reports an OS error as a status (RESOURCE_EXHAUSTED for a full disk) with the errno in its text.
_TS_ERRNO = re.compile(r"os_error_code='?(\d+)")


def _os_errno(e: BaseException) -> int | None:
    """The OS error number behind `e` or any exception in its chain, if one names it."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno:
            return e.errno
        m = _TS_ERRNO.search(str(e))
        if m:
            return int(m.group(1))
        e = e.__cause__ or e.__context__
    return None


def write_error(e: BaseException, what: str) -> WriteError:
    """`e`, raised while `what` (e.g. "saving checkpoint step 6 to DIR"), as one line naming the cause:
    the OS error if any layer (Python, TensorStore, Orbax's threads) saw one, else the innermost cause."""
    code = _os_errno(e)
    if code:
        reason = os.strerror(code)
        err = WriteError(f"{reason[:1].lower()}{reason[1:]} while {what}")
        err.errno = code
        return err
    return WriteError(f"{what} failed ({error_text(innermost(e))})")


def _absolute(path) -> epath.Path:
    path = str(path)
    return epath.Path(path if "://" in path else os.path.abspath(path))


class Workdir:
    """The files of one run (or one converted model) under `path`."""

    def __init__(self, path):
        self.path = _absolute(path)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def remote(self) -> bool:
        return "://" in str(self.path)

    @classmethod
    def locate(cls, path) -> tuple[Workdir, int | None]:
        """(workdir, step) for a workdir (step None: the latest) or one `.../checkpoints/<step>` dir."""
        p = _absolute(path)
        if not p.is_dir():
            raise CheckpointError(f"{p}: no such directory")
        split = cls.split_step_dir(p)
        return (cls(split[0]), split[1]) if split else (cls(p), None)

    @staticmethod
    def split_step_dir(path) -> tuple[epath.Path, int] | None:
        """(workdir path, step) if `path` has the form of a step directory `WORKDIR/checkpoints/<step>`
        (read from the path alone), else None."""
        p = _absolute(path)
        if p.parent.name == "checkpoints" and p.name.isdigit():
            return p.parent.parent, int(p.name)
        return None

    # --- the layout -------------------------------------------------------------------------------
    @property
    def config_file(self) -> epath.Path:
        return self.path / "config.json"

    @property
    def checkpoints(self) -> epath.Path:
        return self.path / "checkpoints"

    def step_dir(self, step: int) -> epath.Path:
        return self.checkpoints / str(step)

    @property
    def metrics_file(self) -> epath.Path:
        return self.path / "metrics.jsonl"

    def metrics_log(self) -> "LineLog":
        return LineLog(self.metrics_file)

    @property
    def tensorboard_dir(self) -> epath.Path:
        return self.path / "tb"

    def profile_dir(self, process_index: int = 0, process_count: int = 1) -> epath.Path:
        """Where `jax.profiler` traces go; one sub-directory per process when there are several."""
        base = self.path / "profile"
        return base / f"process_{process_index}" if process_count > 1 else base

    @property
    def lock_file(self) -> epath.Path:
        return self.path / "train.lock"

    # --- the lock ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self):
        """Hold the workdir for one `train` run (creating the folder); `WorkdirInUse` if a live process
        holds it. Yields whether a lock is held.

        Readers (`generate`, `evaluate`, `inspect`, `convert`) take no lock: a run's checkpoints are
        whole once Orbax has renamed them into place. A bucket (`gs://`) has no lock a killed process
        would give back, so there is none: two runs on one bucket workdir are not refused and would
        both write it. Neither is there one on a local file system without `flock` (one line says so).
        """
        if self.remote:
            yield False
            return
        self.path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.lock_file))
        try:
            lock.acquire()
        except Busy as e:
            raise WorkdirInUse(f"{self.path} is in use by another train ({describe(e.holder)}); wait for it "
                               "or use another --workdir") from None
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            print(f"{self.lock_file}: no lock on this file system ({e.strerror}); a second train on this "
                  "workdir would not be refused", file=sys.stderr)
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    # --- config.json ------------------------------------------------------------------------------
    def has_config(self) -> bool:
        return self.config_file.is_file()

    def read_config(self) -> dict:
        """config.json as a dict; CheckpointError if it is missing or not a JSON object."""
        if not self.has_config():
            raise CheckpointError(f"{self.path}: no config.json (not a hybrid_jax workdir)")
        try:
            data = json.loads(self.config_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{self.config_file}: invalid JSON ({e})") from None
        if not isinstance(data, dict):
            raise CheckpointError(f"{self.config_file}: not a JSON object")
        return data

    def write_config(self, cfg) -> None:
        """A whole run config (with a `model` node) or a bare model config."""
        tree = cfg.to_dict()
        self.path.mkdir(parents=True, exist_ok=True)
        # Written beside it, then renamed over it: a write cut short (a full disk) must not leave a
        # truncated config.json, which would make the run's checkpoints unreadable.
        tmp = self.path / (self.config_file.name + ".tmp")
        try:
            tmp.write_text(json.dumps(tree if "model" in tree else {"model": tree}, indent=2, sort_keys=True))
            tmp.replace(self.config_file)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise write_error(e, f"writing {self.config_file}") from None

    def model_config(self):
        """The stored model config, validated."""
        from hybrid_jax.config import model_from_dict

        data = self.read_config()
        try:
            return model_from_dict(data["model"])
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"{self.config_file}: unreadable config ({type(e).__name__}: {e})") from None
        except ConfigError as e:
            raise CheckpointError(f"{self.config_file}: {e}") from None

    def run_node(self, name: str):
        """The stored run config's node `name` (e.g. "data", "coconut"), or None."""
        try:
            node = self.read_config().get(name)
        except CheckpointError:
            return None
        return node if isinstance(node, dict) else None

    def check_same_model(self, cfg) -> None:
        """Refuse to resume a run whose stored model config differs from `cfg.model` (nothing is deleted)."""
        if not self.has_config():
            return
        stored = self.read_config().get("model", {})
        try:  # keys added since the run was stored compare as their defaults
            from hybrid_jax.config import model_from_dict
            stored = json.loads(json.dumps(model_from_dict(stored).to_dict()))
        except (ConfigError, TypeError):
            pass
        now = json.loads(json.dumps(cfg.model.to_dict()))
        diff = _first_difference(stored, now, "model")
        if diff:
            raise CheckpointError(f"{self.path} holds a run with a different model config ({diff}); "
                                  "use another --workdir")

    # --- checkpoints ------------------------------------------------------------------------------
    def manager(self, **options) -> ocp.CheckpointManager:
        return ocp.CheckpointManager(self.checkpoints, options=ocp.CheckpointManagerOptions(**options))

    def latest_step(self) -> int | None:
        if not self.checkpoints.is_dir():
            return None
        with self.manager() as mngr:
            return mngr.latest_step()


class LineLog:
    """Lines appended to a file. On a local disk the file is opened for appending; a bucket's objects
    cannot be appended to, so there the whole object is written again with each line (a metrics log
    is small: one line per logged step)."""

    def __init__(self, path: epath.Path):
        self.path = path
        self.remote = "://" in str(path)
        if self.remote:
            self.text = path.read_text() if path.exists() else ""
        else:  # unbuffered: each line is one write, so a failed one can be taken back whole
            self.file = open(path, "ab", buffering=0)

    def write(self, line: str) -> None:
        if self.remote:
            self.text += line
            self.path.write_text(self.text)
            return
        data = line.encode()
        end = os.fstat(self.file.fileno()).st_size
        try:
            written = self.file.write(data)
            if written != len(data):  # a full disk writes what fits
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        except OSError:
            # A line cut short would run into the next run's first line (read_metrics could not parse it).
            with contextlib.suppress(OSError):
                self.file.truncate(end)
            raise

    def close(self) -> None:
        if not self.remote:
            self.file.close()


def _first_difference(a, b, prefix: str) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _first_difference(a.get(k), b.get(k), f"{prefix}.{k}")
            if d:
                return d
        return ""
    return "" if a == b else f"{prefix}: stored {a!r}, now {b!r}"
