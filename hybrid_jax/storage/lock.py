"""An exclusive lock on a local file that the kernel gives back when its holder dies.

`fcntl.flock` locks belong to the open file, which the kernel closes however the process ends
(`kill -9` included), so a crash never leaves a lock behind: the file itself stays, and a file that no
live process has locked locks nothing. The holder writes its pid, host and start time into the file
only so that a refusal can name it.

The lock is per open file, not per process: two `FileLock`s on one path exclude each other in one
process too, and a child made by `fork` without `exec` would share its parent's (the descriptor is not
inherited across `exec`). Standard library only, so a process holding one starts in milliseconds.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import time


class Busy(OSError):
    """`path` is locked by a live process; `holder` is what that process wrote ({} if unreadable)."""

    def __init__(self, path: str, holder: dict):
        super().__init__(f"{path} is locked by {describe(holder)}")
        self.path, self.holder = path, holder


def describe(holder: dict) -> str:
    """`pid 1234 on host h, since 2026-...` from a holder record, as much of it as is there."""
    if not holder.get("pid"):
        return "a process that has not yet written its pid"
    return (f"pid {holder['pid']} on host {holder.get('host', '?')}"
            + (f", since {holder['since']}" if holder.get("since") else ""))


class FileLock:
    """`acquire()` takes the lock at `path` (creating the file) or raises `Busy`; `release()` or the end
    of a `with` block gives it back."""

    def __init__(self, path: str):
        self.path = str(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: already held by this FileLock")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise Busy(self.path, holder) from None
        except BaseException:
            os.close(fd)
            raise
        # Truncated first: a reader then sees nothing (and waits) rather than a dead holder's pid.
        os.ftruncate(fd, 0)
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Unlocks; the file stays (removing it would let a process that opened it just before lock a
        name that is no longer there, beside one that creates it anew)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the last descriptor of the open file drops the flock

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int, tries: int = 20) -> dict:
    """The holder's record; a holder that has just taken the lock may not have written it yet."""
    for _ in range(tries):
        try:
            data = json.loads(os.pread(fd, 4096, 0).decode())
            if isinstance(data, dict) and data.get("pid"):
                return data
        except (ValueError, UnicodeDecodeError):
            pass
        time.sleep(0.005)
    return {}
