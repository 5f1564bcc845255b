"""The workdir lock: held by one process at a time, and a finished or killed (`kill -9`) holder leaves
no lock."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager

import pytest

from hybrid_jax.storage.lock import Busy, FileLock
from hybrid_jax.storage.workdir import Workdir, WorkdirInUse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Takes the lock at argv[1], says so, then waits to be killed: starts in milliseconds (no JAX).
HOLDER = ("import sys, time\n"
          "from hybrid_jax.storage.lock import FileLock\n"
          "FileLock(sys.argv[1]).acquire()\n"
          "print('held', flush=True)\n"
          "time.sleep(600)\n")


@contextmanager
def holder(lock_file):
    """A separate process holding the lock at `lock_file` until it is killed with SIGKILL."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_file)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline() == "held\n"
        yield proc
    finally:
        kill9(proc)


def kill9(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def record(lock_file) -> dict:
    with open(lock_file) as f:
        return json.load(f)


def expected_refusal(workdir: str, pid: int) -> str:
    since = record(Workdir(workdir).lock_file)["since"]
    return (f"error: {workdir} is in use by another train (pid {pid} on host {socket.gethostname()}, since "
            f"{since}); wait for it or use another --workdir")


def test_two_processes_exclude_each_other_and_a_killed_holder_leaves_no_lock(tmp_path):
    wd = Workdir(tmp_path / "w")
    wd.path.mkdir()
    with holder(wd.lock_file) as proc:
        with pytest.raises(Busy) as e:
            FileLock(wd.lock_file).acquire()
        assert e.value.holder["pid"] == proc.pid and e.value.holder["host"] == socket.gethostname()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", e.value.holder["since"])
        with pytest.raises(WorkdirInUse) as e, wd.lock():
            pass
        assert f"error: {e.value}" == expected_refusal(str(wd), proc.pid)
        kill9(proc)
        # The dead holder's record is still in the file: a file without a live flock is no lock.
        assert record(wd.lock_file)["pid"] == proc.pid
        with wd.lock() as held:
            assert held and record(wd.lock_file)["pid"] == os.getpid()
            with pytest.raises(Busy):  # the lock is per open file: one process can exclude itself
                FileLock(wd.lock_file).acquire()
    with wd.lock() as held:  # given back at the end of the block
        assert held
