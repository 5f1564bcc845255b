"""The workdir lock: a second `train` on a workdir that a live one holds is refused in one line and
touches nothing; a finished or killed (`kill -9`) holder leaves no lock; readers are not refused; the
processes of a multi-process run are refused together."""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager

import jax
import pytest

from hybrid_jax import cli
from hybrid_jax.cli import train as train_cli
from hybrid_jax.storage.loading import context_of, load_any
from hybrid_jax.storage.lock import Busy, FileLock
from hybrid_jax.errors import WorkdirInUse
from hybrid_jax.storage.workdir import Workdir
from hybrid_jax.training import train
from hybrid_jax.training.metrics import read_metrics
from train_helpers import tiny_config, write_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "tiny.py")

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


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def snapshot(root: str) -> dict:
    out = {}
    for d, _, files in os.walk(root):
        for name in files:
            path = os.path.join(d, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = (hashlib.sha256(f.read()).hexdigest(), os.stat(path).st_mtime_ns)
    return out


def train_args(workdir, corpus, *overrides):
    return ["--config", TINY, "--workdir", workdir, f"--config.data.train={corpus}", *overrides]


@pytest.mark.integration
def test_a_second_train_is_refused_untouched_and_runs_after_kill_9(corpus, tmp_path, capsys):
    """The refused train stops before it reads or writes anything; the one after `kill -9` of the holder
    resumes (a killed *train* resuming exactly: test_train.py's kill test)."""
    workdir = str(tmp_path / "run")
    train(tiny_config(corpus, steps=2), workdir, devices=jax.devices()[:1])
    with Workdir(workdir).lock() as held:  # given back after a clean run
        assert held
    rows = read_metrics(workdir)
    capsys.readouterr()
    with holder(Workdir(workdir).lock_file) as proc:
        before = snapshot(workdir)
        rc = cli.run(train_cli.main, train_args(workdir, corpus, "--config.train.steps=4"))
        _, err = capsys.readouterr()
        assert rc == 2 and err.splitlines() == [expected_refusal(workdir, proc.pid)], err
        assert snapshot(workdir) == before  # config.json, metrics.jsonl, checkpoints, the lock file
        # Readers (generate, evaluate, inspect, convert: all through `load_any`) take no lock.
        assert load_any(workdir) is not None and context_of(workdir) == 33
        # A copy takes the file, naming the holder, but not its flock.
        shutil.copytree(workdir, tmp_path / "copy")
        with Workdir(tmp_path / "copy").lock() as held:
            assert held
        kill9(proc)
    rc = cli.run(train_cli.main, train_args(workdir, corpus, "--config.train.steps=2"))  # restores, no step left
    _, err = capsys.readouterr()
    assert rc == 0 and "resumed from step 2" in err, err
    assert read_metrics(workdir) == rows


@pytest.mark.integration
def test_every_process_of_a_refused_multi_process_run_exits_2(corpus, tmp_path):
    """Process 0 finds the lock held; process 1 learns it from process 0 instead of waiting for it."""
    from hybrid_jax.parallel.launch import commands, free_port
    workdir = str(tmp_path / "mp")
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
    with Workdir(workdir).lock():
        procs = [subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True)
                 for cmd in commands("train", train_args(workdir, corpus, "--config.mesh.data=2"), 2,
                                     free_port())]
        errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [2, 2], errs
    assert errs[0].splitlines() == [expected_refusal(workdir, os.getpid())], errs[0]
    assert errs[1].splitlines() == [(f"error: {workdir}: process 0 could not take the workdir's lock (its "
                                     "error says why)")], errs[1]
    assert os.listdir(workdir) == ["train.lock"]
