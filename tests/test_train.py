"""Training: sharded == single device, multi-process == single process, exact kill/resume, re-sharding
on restore, the online entropy estimator, `evaluate bpb`, and one-line errors for bad input."""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from hybrid_jax.analysis import profile as profile_summary
from hybrid_jax.cli import profile as profile_cli
from hybrid_jax import cli
from hybrid_jax.cli import evaluate
from hybrid_jax.cli import train as train_cli
from hybrid_jax.evaluation.bpb import windows
from hybrid_jax.model.params import abstract_model, flat_items, param_tree
from hybrid_jax.parallel.sharding import make_mesh, param_shardings
from hybrid_jax.training import train
from hybrid_jax.training.metrics import read_metrics
from train_helpers import losses, tiny_config, write_corpus

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = 1e-4


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def eight_device_run(corpus, tmp_path_factory):
    """(workdir, rows) of 6 steps on a 2 data x 2 fsdp x 2 tensor mesh, checkpoints at steps 3 and 6."""
    workdir = str(tmp_path_factory.mktemp("mesh8"))
    cfg = tiny_config(corpus, mesh=(2, 2, 2))
    cfg.checkpoint.every = 3
    return workdir, train(cfg, workdir)


def one_device(corpus, workdir, **overrides):
    return train(tiny_config(corpus, **overrides), workdir, devices=jax.devices()[:1])


def assert_close(a, b, tol=TOL):
    assert len(a) == len(b) and len(a) > 0
    assert np.max(np.abs(np.asarray(a) - np.asarray(b))) <= tol, (a, b)


def test_mesh_shards_every_axis(corpus):
    mesh = make_mesh(tiny_config(corpus, mesh=(2, 2, 2)).mesh)
    shardings = param_shardings(param_tree(abstract_model(tiny_config(corpus).model)), mesh)
    used = {ax for s in jax.tree.leaves(shardings) for ax in s.spec if ax}
    assert {"fsdp", "tensor"} <= used
    q = shardings["global_transformer"]["layers"]["0"]["self_attn"]["q_proj"]["kernel"]
    assert tuple(q.spec) == ("fsdp", "tensor")


def test_eight_device_mesh_equals_one_device(eight_device_run, corpus, tmp_path):
    _, rows8 = eight_device_run
    rows1 = one_device(corpus, str(tmp_path / "one"))
    assert_close(losses(rows8), losses(rows1))
    assert_close([r["grad_norm"] for r in rows8], [r["grad_norm"] for r in rows1])
    assert losses(rows1)[-1] < losses(rows1)[0]


@pytest.mark.slow  # compiles a scanned 8-device step
def test_scanned_layers_on_eight_devices_equal_layer_by_layer(eight_device_run, corpus, tmp_path):
    cfg = tiny_config(corpus, mesh=(2, 2, 2))
    cfg.model.global_transformer.scan_layers = True
    shardings = param_shardings(param_tree(abstract_model(cfg.model)), make_mesh(cfg.mesh))
    q = shardings["global_transformer"]["layers"]["self_attn"]["q_proj"]["kernel"]
    assert tuple(q.spec) == (None, "fsdp", "tensor")  # the [layers] axis stays whole
    rows = train(cfg, str(tmp_path / "scan"))
    _, rows8 = eight_device_run
    assert_close(losses(rows), losses(rows8))
    assert_close([r["grad_norm"] for r in rows], [r["grad_norm"] for r in rows8])


@pytest.mark.slow  # two more runs
def test_gradient_accumulation_equals_one_big_batch(corpus, tmp_path):
    a = one_device(corpus, str(tmp_path / "a"), steps=3)
    b = one_device(corpus, str(tmp_path / "b"), steps=3, grad_accum=4)
    assert_close(losses(a), losses(b))


@pytest.mark.slow  # two processes, each compiling the sharded step
def test_two_processes_equal_one_process(eight_device_run, corpus, tmp_path):
    workdir = str(tmp_path / "mp")
    cmd = [sys.executable, "-m", "hybrid_jax", "launch", "--processes", "2", "--devices_per_process", "4",
           "--", "--config", os.path.join(ROOT, "configs", "tiny.py"), "--workdir", workdir,
           f"--config.data.train={corpus}", "--config.mesh.data=2", "--config.mesh.fsdp=2",
           "--config.mesh.tensor=2", "--config.checkpoint.every=3"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert_close(losses(read_metrics(workdir)), losses(eight_device_run[1]))
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3", "6"]


def test_restore_onto_another_mesh(eight_device_run, corpus, tmp_path):
    src, rows8 = eight_device_run
    workdir = str(tmp_path / "reshard")
    shutil.copytree(src, workdir)
    shutil.rmtree(os.path.join(workdir, "checkpoints", "6"))  # as if the 8-device run stopped at step 3
    rows = one_device(corpus, workdir)
    assert [r["step"] for r in rows] == [4, 5, 6]
    assert_close(losses(rows), losses(rows8)[3:])


def train_command(workdir, corpus, *overrides):
    return [sys.executable, "-m", "hybrid_jax", "train", "--config", os.path.join(ROOT, "configs", "tiny.py"),
            "--workdir", workdir, f"--config.data.train={corpus}", *overrides]


ONE_DEVICE = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")


@pytest.mark.slow  # two 40-step runs in subprocesses
def test_kill_during_run_then_resume_is_exact(corpus, tmp_path):
    """40 uninterrupted steps vs. `kill -9` after the step-20 checkpoint and a re-run: same losses."""
    overrides = ["--config.train.steps=40", "--config.train.batch_size=32", "--config.data.seq_len=128",
                 "--config.checkpoint.every=20", "--config.checkpoint.async_save=True"]
    full, killed = str(tmp_path / "full"), str(tmp_path / "killed")
    subprocess.run(train_command(full, corpus, *overrides), env=ONE_DEVICE, cwd=ROOT, check=True,
                   capture_output=True, timeout=300)
    proc = subprocess.Popen(train_command(killed, corpus, *overrides), env=ONE_DEVICE, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    step20 = os.path.join(killed, "checkpoints", "20")
    deadline = time.time() + 240
    while not os.path.isdir(step20) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert max(r["step"] for r in read_metrics(killed)) < 40
    # A save cut off half-way leaves a temporary directory; resuming must ignore it.
    partial = os.path.join(killed, "checkpoints", "39.orbax-checkpoint-tmp-1")
    os.makedirs(partial, exist_ok=True)
    with open(os.path.join(partial, "junk"), "w") as f:
        f.write("partial")
    r = subprocess.run(train_command(killed, corpus, *overrides), env=ONE_DEVICE, cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "resumed from step 20" in r.stderr, r.stderr[-2000:]
    rows_full, rows_resumed = read_metrics(full), read_metrics(killed)
    assert [r["step"] for r in rows_resumed] == list(range(1, 41))
    assert losses(rows_resumed)[20:] == losses(rows_full)[20:]  # bit-identical
    # The estimator is trained online: its loss falls.
    est = [r["est_loss"] for r in rows_full]
    assert np.mean(est[-5:]) < np.mean(est[:5]) - 0.5


@pytest.mark.slow  # a training subprocess
def test_sigterm_saves_and_exits_cleanly(corpus, tmp_path):
    workdir = str(tmp_path / "term")
    proc = subprocess.Popen(train_command(workdir, corpus, "--config.train.steps=100000"), env=ONE_DEVICE, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = os.path.join(workdir, "metrics.jsonl")
    deadline = time.time() + 240
    while not (os.path.isfile(metrics) and os.path.getsize(metrics)) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    steps = [int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))]
    assert "checkpoint saved" in err and max(steps) == max(r["step"] for r in read_metrics(workdir))


MP_OVERRIDES = ["--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2",
                "--config.train.steps=40", "--config.train.batch_size=16", "--config.data.seq_len=64",
                "--config.checkpoint.keep=5"]


def two_processes(workdir, corpus):
    """The two processes of a 2 x 4-device run of `MP_OVERRIDES`, started (not waited for)."""
    from hybrid_jax.parallel.launch import commands, free_port
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4")
    args = train_command(workdir, corpus, *MP_OVERRIDES)[4:]  # after `python -m hybrid_jax train`
    return [subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for cmd in commands("train", args, 2, free_port())]


@pytest.mark.slow  # three 2-process runs
def test_sigterm_to_one_process_stops_both_at_one_step(corpus, tmp_path):
    """A signal that reaches one host only: both processes save the same step and exit 0, and the re-run
    continues bit-identically to a run that was never stopped."""
    full, stopped = str(tmp_path / "full"), str(tmp_path / "stopped")
    procs = two_processes(full, corpus)
    assert [p.wait(timeout=300) for p in procs] == [0, 0], procs[0].stderr.read()[-2000:]
    procs = two_processes(stopped, corpus)
    metrics, deadline = os.path.join(stopped, "metrics.jsonl"), time.time() + 240
    while not (os.path.isfile(metrics) and len(read_metrics(stopped)) >= 3) and time.time() < deadline:
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGTERM)
    errs = [p.communicate(timeout=180)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs[0][-2000:] + errs[1][-2000:]
    last = max(r["step"] for r in read_metrics(stopped))
    assert last < 40, "the run finished before the signal"
    assert f"stopped by signal at step {last}; checkpoint saved" in errs[0]
    assert last in {int(s) for s in os.listdir(os.path.join(stopped, "checkpoints"))}
    procs = two_processes(stopped, corpus)
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and f"resumed from step {last}" in errs[0], errs[0][-2000:]
    assert losses(read_metrics(stopped)) == losses(read_metrics(full))  # bit-identical


def run_main(capsys, module, *args):
    rc = cli.run(module.main, list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, fragment):
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err


@pytest.mark.parametrize("overrides,fragment", [
    (["--config.mesh.data=3"], "3 devices, but 8 are available (on CPU, --cpu_devices 3 gives"),
    (["--config.mesh.data=-1", "--config.mesh.fsdp=-1"], "at most one -1"),
    (["--config.train.no_such_key=1"], "unknown config key"),
    (["--config.train.steps=many"], "config key 'train.steps' expects int, got 'many'"),
    (["--config.train.stepz=3"], "unknown config key 'train.stepz'"),
    (["--config.train.batch_size=6", "--config.train.grad_accum=4"], "divisible by train.grad_accum"),
    (["--config.train.batch_size=12"], "train.batch_size=12 must be divisible by the mesh's data x fsdp = 8"),
    (["--config.eval.batch_size=3", "--config.eval.every=1"], "eval.batch_size=3 must be divisible by"),
    (["--config.data.train=/nonexistent/**/*.txt"], "no files match '/nonexistent/**/*.txt'"),
    (["--cpu_devices=two"], "--cpu_devices must be"),
    (["--config.train.profile_steps=-1"], "train.profile_steps must be an int >= 0, got -1"),
    (["--config.train.lr=-1"], "train.lr must be a number > 0, got -1.0"),
    (["--config.train.weight_decay=-0.1"], "train.weight_decay must be a number >= 0, got -0.1"),
    (["--config.train.warmup_steps=7"], "train.warmup_steps=7 must be <= train.steps=6"),
])
def test_bad_input_is_one_line_exit_2(overrides, fragment, corpus, tmp_path, capsys):
    args = ["--config", os.path.join(ROOT, "configs", "tiny.py"), "--workdir", str(tmp_path / "w"),
            f"--config.data.train={corpus}", *overrides]
    rc, _, err = run_main(capsys, train_cli, *args)
    assert_one_line_error(rc, err, fragment)


@pytest.mark.slow  # a traced run
def test_profile_traces_the_configured_steps(eight_device_run, corpus, tmp_path, capsys):
    workdir = str(tmp_path / "w")
    cfg = tiny_config(corpus, steps=4, profile_start=1, profile_steps=2)
    train(cfg, workdir, devices=jax.devices()[:1])
    logdir = os.path.join(workdir, "profile")
    times = profile_summary.op_times(profile_summary.newest_trace(logdir), "jit_step")
    assert times and all(t > 0 for t in times.values())
    err = capsys.readouterr().err
    assert "profiled steps 2-3 into" in err and f"hybrid-jax profile {logdir}" in err
    assert profile_cli.main([logdir]) == 0  # reads the trace with the HLO train stored beside it
    out = capsys.readouterr().out
    assert "where a step's time goes" in out and "fwd model/" in out and "summed over 1 device(s)" in out
    assert not os.path.exists(os.path.join(eight_device_run[0], "profile"))  # off by default


def test_incompatible_checkpoint_is_refused_and_kept(eight_device_run, corpus, tmp_path, capsys):
    workdir = str(tmp_path / "other")
    shutil.copytree(eight_device_run[0], workdir)
    before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
    rc, _, err = run_main(capsys, train_cli, "--config", os.path.join(ROOT, "configs", "tiny.py"),
                          "--workdir", workdir, f"--config.data.train={corpus}",
                          "--config.model.global_transformer.d_model=128")
    assert_one_line_error(rc, err, "different model config (model.global_transformer.d_model")
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before


# Another seed draws other damage cases: HYBRID_JAX_FAULT_SEED=7 pytest tests/test_train.py -k damaged
FAULT_SEED = int(os.environ.get("HYBRID_JAX_FAULT_SEED", "0"))


def hybrid_jax_command(*args, prefix=("-m", "hybrid_jax"), env=None):
    return subprocess.run([sys.executable, *prefix, *args], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=env)


def train_args(workdir, corpus, *overrides):
    """`train` as the 8-device run was trained."""
    return ("train", "--config", os.path.join(ROOT, "configs", "tiny.py"), "--workdir", workdir,
            f"--config.data.train={corpus}", "--config.mesh.data=2", "--config.mesh.fsdp=2",
            "--config.mesh.tensor=2", "--config.checkpoint.every=3", *overrides)


def read_commands(workdir, step, corpus, out):
    """The commands that load a checkpoint's parameters, each naming step `step` another way."""
    from hybrid_jax.cli import convert, generate
    from hybrid_jax.cli import inspect as inspect_cli
    latest = workdir if step == 6 else f"{workdir}@{step}"
    return [(generate, ("--ckpt", os.path.join(workdir, "checkpoints", str(step)), "--prompt", "ab",
                        "--max_new_bytes", "2")),
            (evaluate, ("bpb", "--ckpt", latest, "--data", corpus, "--limit_bytes", "100")),
            (inspect_cli, ("--ckpt", f"{workdir}@{step}", "--text", "ab")),
            (convert, ("to-hf", workdir, "--step", str(step), "--out", out))]


def assert_nothing_deleted(before, after):
    """Every path is still there, and every checkpoint file as it was."""
    assert set(before) <= set(after), sorted(set(before) - set(after))
    changed = [k for k, v in before.items() if k.startswith("checkpoints") and after[k] != v]
    assert not changed, changed


@pytest.fixture(scope="module")
def restore_run(eight_device_run, corpus, tmp_path_factory):
    """(restore, states): `restore(workdir)` is `start_or_resume` as `train` calls it, on a stand-in
    task that compiles nothing, giving (state, first step); `states[3]`, `states[6]` are the 8-device
    run's undamaged steps."""
    from types import SimpleNamespace

    from hybrid_jax.storage.workdir import Workdir
    from hybrid_jax.training.loop import start_or_resume
    from hybrid_jax.training.step import compile_steps

    cfg = tiny_config(corpus, mesh=(2, 2, 2))
    task = SimpleNamespace(cfg=cfg, steps=compile_steps(cfg, make_mesh(cfg.mesh)),
                           data=SimpleNamespace(set_state=lambda state: None), resumed=lambda start: None)

    def restore(workdir):
        with Workdir(workdir).manager() as mngr:
            return start_or_resume(task, Workdir(workdir), mngr)

    src, states = eight_device_run[0], {}
    for step in (3, 6):
        only = str(tmp_path_factory.mktemp(f"only{step}") / "run")
        shutil.copytree(src, only, ignore=shutil.ignore_patterns(str(9 - step)))
        states[step] = restore(only)[0]
    return restore, states


def same_leaves(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # see `quiet_asyncio`
# make test runs the first 3 of the 8 seeded cases (every step set, both an item and metadata damaged, a
# damaged params item read by every command); the slow tier runs the other 5.
@pytest.mark.parametrize("first,last", [(0, 3), pytest.param(3, 8, marks=pytest.mark.slow)])
def test_randomly_damaged_checkpoints_fall_back_or_fail_in_one_line(eight_device_run, restore_run, corpus, tmp_path,
                                                                      capsys, quiet_asyncio, first, last):
    """Seeded cases of (damage kind x damaged part of an item x steps) on the 8-device run, whose arrays
    are sharded into several chunks over several data files: a restore for training falls back to the
    older step with one line (or, when no step restores, raises one error); each command that loads a
    damaged step's parameters fails in one line; nothing is deleted."""
    from hybrid_jax.storage.checkpoint import load_model
    from hybrid_jax.storage.workdir import CheckpointError
    from fault_helpers import assert_several_chunks, cases, damage, listing

    src, _ = eight_device_run
    restore, states = restore_run
    shapes = {".".join(path): t.shape for path, t in flat_items(param_tree(abstract_model(tiny_config(corpus).model)))}
    assert_several_chunks(os.path.join(src, "checkpoints", "6"), shapes)
    rng = random.Random(FAULT_SEED)
    for i, (kind, item, part, which) in list(enumerate(cases(FAULT_SEED, 8)))[first:last]:
        case = f"seed {FAULT_SEED} case {i}: {kind} {item}/{part} of the {which} step(s)"
        workdir = str(tmp_path / f"case{i}")
        shutil.copytree(src, workdir)
        damaged = {"newest": [6], "older": [3], "both": [3, 6]}[which]
        for step in damaged:
            damage(os.path.join(workdir, "checkpoints", str(step)), item, part, kind, rng)
        before = listing(workdir)
        if damaged == [3, 6]:
            with pytest.raises(CheckpointError, match="no checkpoint step restores .*; nothing was deleted"):
                restore(workdir)
            assert capsys.readouterr().err == "", case
        else:
            state, start = restore(workdir)
            err = capsys.readouterr().err.splitlines()
            assert start == (3 if damaged == [6] else 6), case
            assert same_leaves([state["params"], state["opt_state"]],
                               [states[start]["params"], states[start]["opt_state"]]), case
            skipped = f"skipping checkpoint step 6, it does not restore: {workdir}/checkpoints/6: "
            assert len(err) == (damaged == [6]) and all(line.startswith(skipped) for line in err), (case, err)
        step = rng.choice(damaged)
        if item == "params":
            for module, args in read_commands(workdir, step, corpus, str(tmp_path / f"hf{i}")):
                rc, _, err = run_main(capsys, module, *args)
                assert_one_line_error(rc, err, f"{workdir}/checkpoints/{step}: ")
        else:  # the commands read the parameters only: they are whole
            model = load_model(os.path.join(workdir, "checkpoints", str(step)))
            assert same_leaves(param_tree(model), states[step]["params"]), case
        assert_nothing_deleted(before, listing(workdir))


@pytest.fixture
def quiet_asyncio(caplog):
    """A read that fails in this process leaves Orbax tasks whose errors asyncio logs, with tracebacks,
    when they are collected, and coroutines that raise again then (`cli.run` filters both out of a
    command's process): collect them before the test ends, unlogged, not in a later test's output."""
    import gc
    import logging

    caplog.set_level(logging.CRITICAL, logger="asyncio")
    yield
    gc.collect()


# XLA's own C++ log lines (e.g. a compile's sharding warnings when the compilation cache is cold).
XLA_LOG = re.compile(r"[IW]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\] ")


@pytest.mark.slow  # 20-30 s: keeps make test inside its budget
def test_damaged_checkpoint_in_whole_processes(eight_device_run, corpus, tmp_path):
    """As processes, where TensorStore's threads, asyncio and absl could add their own reports: the
    parameters' chunk files of the newest step overwritten with random bytes (TensorStore raises a bare
    Exception) make `generate` fail in one line, and `train` resume from the older step exactly as the
    uninterrupted run; with every step damaged, `train` fails in one line."""
    from fault_helpers import KINDS, TARGETS, damage, listing

    src, rows8 = eight_device_run
    workdir = str(tmp_path / "damaged")
    shutil.copytree(src, workdir)
    rng = random.Random(FAULT_SEED)
    damage(os.path.join(workdir, "checkpoints", "6"), "params", "data", "random", rng)
    before = listing(workdir)
    p = hybrid_jax_command("generate", "--ckpt", f"{workdir}@6", "--prompt", "ab", "--max_new_bytes", "2")
    assert_one_line_error(p.returncode, p.stderr, f"{workdir}/checkpoints/6: checkpoint is corrupt or unreadable")

    p = hybrid_jax_command(*train_args(workdir, corpus))
    assert p.returncode == 0, p.stderr[-3000:]
    lines = [line for line in p.stderr.splitlines() if not XLA_LOG.match(line)]
    assert lines[0].startswith(f"skipping checkpoint step 6, it does not restore: {workdir}/checkpoints/6: ")
    assert lines[1:] == ["resumed from step 3; compiling the train step, then training steps 4-6",
                         "step 6 is on disk but did not restore; not overwriting it"], p.stderr[-3000:]
    resumed = {r["step"]: r["loss"] for r in read_metrics(workdir) if "loss" in r and r["step"] > 3}
    full = {r["step"]: r["loss"] for r in rows8 if "loss" in r and r["step"] > 3}
    assert_close([resumed[s] for s in sorted(full)], [full[s] for s in sorted(full)])
    assert_nothing_deleted(before, listing(workdir))

    kind, (item, part) = rng.choice(KINDS), rng.choice(TARGETS)
    damage(os.path.join(workdir, "checkpoints", "3"), item, part, kind, rng)
    before = listing(workdir)
    p = hybrid_jax_command(*train_args(workdir, corpus))
    assert_one_line_error(p.returncode, p.stderr, "no checkpoint step restores")
    assert_nothing_deleted(before, listing(workdir))


def test_full_disk_while_saving_is_one_line_and_keeps_the_older_step(eight_device_run, restore_run, corpus, tmp_path):
    """An async save that finds the disk full (a small tmpfs where this machine lets us mount one, else
    ENOSPC raised where Orbax hands the arrays to TensorStore), as a process: one error line naming the
    step, exit 2, the older step as it was even with `keep=1`, and once there is room a re-run resumes
    from it exactly."""
    from fault_helpers import ENOSPC_MAIN, SmallDisk, listing

    restore, states = restore_run
    run3 = str(tmp_path / "run3")
    shutil.copytree(eight_device_run[0], run3, ignore=shutil.ignore_patterns("6"))  # as if stopped after step 3
    with SmallDisk(str(tmp_path / "disk"), run3, free=300_000) as disk:
        if disk.mounted:
            workdir, prefix, env = disk.workdir, ("-m", "hybrid_jax"), None
        else:
            workdir, prefix, env = run3, ("-c", ENOSPC_MAIN), dict(os.environ, FAIL_SAVE_STEP="6")
        before = listing(workdir)
        p = hybrid_jax_command(*train_args(workdir, corpus, "--config.checkpoint.keep=1",
                                           "--config.checkpoint.async_save=True"), prefix=prefix, env=env)
        lines = [line for line in p.stderr.splitlines() if not XLA_LOG.match(line)]
        assert p.returncode == 2 and lines == [
            "resumed from step 3; compiling the train step, then training steps 4-6",
            f"error: no space left on device while saving checkpoint step 6 to {workdir}/checkpoints"], p.stderr[-3000:]
        assert_nothing_deleted(before, listing(workdir))
        assert "6" not in os.listdir(os.path.join(workdir, "checkpoints"))
        if disk.mounted:
            disk.make_room()  # a re-run rewrites config.json
        state, start = restore(workdir)
        assert start == 3 and same_leaves(state, states[3])


def test_evaluate_bpb(eight_device_run, corpus, capsys):
    workdir, rows = eight_device_run
    rc, out, _ = run_main(capsys, evaluate, "bpb", "--ckpt", workdir, "--data", corpus, "--json",
                          "--limit_bytes", "1000")
    result = json.loads(out)
    assert rc == 0 and result["bytes"] == 1000
    assert abs(result["bpb"] - rows[-1]["bpb"]) < 0.5  # held-in text: near the training loss
    assert 1.0 <= result["avg_patch_len"] <= 6.0  # max_patch_length 6
    rc, out, _ = run_main(capsys, evaluate, "bpb", "--ckpt", os.path.join(workdir, "checkpoints", "3"),
                          "--data", corpus, "--json", "--limit_bytes", "1000")
    assert rc == 0 and json.loads(out)["bpb"] > result["bpb"]  # the earlier step is worse
    rc, _, err = run_main(capsys, evaluate, "bpb", "--ckpt", workdir, "--data", "/nonexistent/*.txt")
    assert_one_line_error(rc, err, "no files match")


def test_windows_score_every_byte_once():
    stream = np.arange(1, 12, dtype=np.int32)
    batch, mask = windows(stream, 4)
    targets = batch[:, 1:][mask > 0]
    assert targets.tolist() == stream[1:].tolist()


@pytest.mark.parametrize("n", [2, 5, 9, 10, 11, 23])
def test_the_last_window_reads_a_full_window_of_context(n):
    """Longer than one window: the last window ends at the stream's end (no padding), so its first
    scored byte reads as much left context as a window holds."""
    stream = np.arange(1, n + 1, dtype=np.int32)
    batch, mask = windows(stream, 4)
    assert batch[:, 1:][mask > 0].tolist() == stream[1:].tolist()
    if n > 5:
        assert batch[-1].tolist() == stream[-5:].tolist() and mask[-1, -1] == 1


@pytest.mark.slow  # test_convert_cli covers the conversion
def test_training_checkpoints_convert_to_hf(eight_device_run, tmp_path, capsys):
    from hybrid_jax.cli.convert import main as convert_main
    from hybrid_jax.model.params import model_with_params, param_tree
    from hybrid_jax.storage import hf as convert
    from hybrid_jax.storage.checkpoint import load_model

    workdir, _ = eight_device_run
    out = str(tmp_path / "hf")
    rc = cli.run(convert_main, ["to-hf", workdir, "--step", "3", "--out", out])
    err = capsys.readouterr().err
    assert rc == 0, err
    # tiny sets max_patch_length with Meta's include_next_token: HF's runtime departs at the last byte.
    assert "include_next_token=False reproduces HF" in err and "max_patches" in err
    # Fewer bytes than max_patches: Hugging Face has no patch cap, so the export is exact below it.
    ids = np.asarray([[1] + [ord(c) + 4 for c in "the patch m"]], np.int32)
    exported, cfg = convert.from_hf(out)
    assert not cfg.patching.include_next_token
    original = load_model(os.path.join(workdir, "checkpoints", "3"))
    assert np.max(np.abs(np.asarray(exported(ids)) - np.asarray(original(ids)))[:, :-1]) <= 1e-5
    as_hf = original.config.as_configdict()
    as_hf.patching.include_next_token = False
    as_hf = model_with_params(as_hf, param_tree(original))
    assert np.max(np.abs(np.asarray(exported(ids)) - np.asarray(as_hf(ids)))) <= 1e-5
    assert np.max(np.abs(np.asarray(original(ids)) - np.asarray(load_model(workdir)(ids)))) > 0  # step 6 differs
    rc = cli.run(convert_main, ["to-hf", workdir, "--step", "99", "--out", str(tmp_path / "none")])
    assert rc == 2 and "no such directory" in capsys.readouterr().err


@pytest.fixture(scope="module")
def hf_export(eight_device_run, tmp_path_factory):
    """The 8-device run's model exported as a Hugging Face BLT directory."""
    from hybrid_jax.cli.convert import main as convert_main

    hf_dir = str(tmp_path_factory.mktemp("hf") / "blt")
    assert cli.run(convert_main, ["to-hf", f"{eight_device_run[0]}", "--out", hf_dir]) == 0
    return hf_dir


def init_from_args(hf_dir, tmp_path):
    # No held-out share: which of 4 files tiny's 20 % holds out hangs on the tmp path's hash, and all 4
    # (p = 0.0016) left no training data in one run.
    new_data = write_corpus(tmp_path / "new", n_files=4, seed=7)
    return ("--config", os.path.join(ROOT, "configs", "tiny.py"), f"--config.data.train={new_data}",
            "--config.data.eval_fraction=0", f"--config.train.init_from={hf_dir}")


@pytest.mark.slow  # ~33 s each; make test keeps its budget with the lm-eval and decoding tests
def test_init_from_takes_the_source_model_and_parameters(hf_export, tmp_path, capsys):
    """`train.init_from` on a Hugging Face export: the run takes the source's model config and its
    parameters (with lr 1e-30, far below float32's resolution of any weight, the saved step equals the
    source exactly; lr 0 is outside train.lr's domain), model overrides that keep shapes
    apply, and one that changes a shape names the tensor."""
    from hybrid_jax.storage.checkpoint import load_model
    from hybrid_jax.storage.loading import load_any

    base, frozen = init_from_args(hf_export, tmp_path), str(tmp_path / "frozen")
    rc, _, err = run_main(capsys, train_cli, *base, "--workdir", frozen, "--config.train.steps=1",
                          "--config.train.lr=1e-30", "--config.train.warmup_steps=0",
                          "--config.model.patching.threshold=1.25")
    assert rc == 0, err
    source, tuned = load_any(hf_export), load_model(frozen)
    assert tuned.config.patching.threshold == 1.25 and not tuned.config.patching.include_next_token  # from HF
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(param_tree(source)),
                                                    jax.tree.leaves(param_tree(tuned))))
    rc, _, err = run_main(capsys, train_cli, *base, "--workdir", str(tmp_path / "wide"),
                          "--config.model.global_transformer.d_model=96")
    assert_one_line_error(rc, err, "train.init_from=")
    assert "tensor global_transformer." in err and "in this run's model" in err


@pytest.mark.slow  # two more training runs
def test_fine_tuning_a_converted_model_lowers_the_loss_and_resumes(hf_export, tmp_path, capsys):
    base, tuned_dir = init_from_args(hf_export, tmp_path), str(tmp_path / "tuned")
    rc, _, err = run_main(capsys, train_cli, *base, "--workdir", tuned_dir, "--config.train.steps=8",
                          "--config.train.lr=3e-3")
    assert rc == 0, err
    curve = losses(read_metrics(tuned_dir))
    assert curve[-1] < curve[0] - 0.05, curve
    rc, _, err = run_main(capsys, train_cli, *base, "--workdir", tuned_dir, "--config.train.steps=8",
                          "--config.train.lr=3e-3")
    assert rc == 0 and "has checkpoints: resuming it" in err, err


@pytest.mark.slow  # ~33 s each; make test keeps its budget with the lm-eval and decoding tests
def test_two_phase_recipe_trains_the_entropy_model_then_calibrates_on_it(corpus, tmp_path, capsys):
    """Phase 1 (`train.objective = "entropy_model"`) changes the entropy model only and its loss falls;
    phase 2 freezes it in a BLT (`model.entropy_model.init_from`) with the threshold that
    `model.patching.target_patch_len` calibrates on the training data, recorded in config.json."""
    from flax import nnx

    from hybrid_jax.model import BLT
    from hybrid_jax.storage.checkpoint import load_model
    from hybrid_jax.storage.workdir import Workdir
    from hybrid_jax.data.pipeline import streams, train_dataset
    from hybrid_jax.training.init import calibrated_threshold

    cfg = tiny_config(corpus, steps=8, lr=1e-2)
    cfg.train.objective, cfg.model.entropy_model.trained_online = "entropy_model", False
    phase1 = str(tmp_path / "entropy")
    rows = one_device_cfg(cfg, phase1)
    assert losses(rows)[-1] < losses(rows)[0] - 0.3 and all(r["loss"] == r["est_loss"] for r in rows)
    start = jax.jit(lambda: param_tree(BLT(cfg.model, nnx.Rngs(cfg.seed))))()  # as `initial_state` makes it
    trained = param_tree(load_model(phase1))
    for name in start:
        same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(start[name]), jax.tree.leaves(trained[name])))
        assert same == (name != "entropy_model"), name

    cfg2 = tiny_config(corpus, steps=2)
    cfg2.model.entropy_model.update(init_from=phase1, trained_online=False)
    cfg2.model.patching.update(target_patch_len=3.0, max_patch_length=0)
    phase2 = str(tmp_path / "blt")
    rows = one_device_cfg(cfg2, phase2)
    assert "model.patching.threshold = " in capsys.readouterr().err
    stored = Workdir(phase2).model_config()
    want = calibrated_threshold(cfg2, streams(cfg2.data)[0])
    assert stored.patching.threshold == want.threshold != 3.0 and want.mean_patch_len >= 3.0
    # Two batches of 8 rows scatter around the sample's mean (row_std ~0.8), so the check is that
    # training patched its own batches with the stored threshold, not a band around the target.
    blt = load_model(phase2)
    data = iter(train_dataset(streams(cfg2.data)[0], cfg2.data.seq_len, cfg2.train.batch_size, cfg2.seed,
                              slice(None)))
    for row in [r for r in rows if "loss" in r]:
        batch = jax.numpy.asarray(next(data))
        info = blt.train_forward(batch[:, :-1])[1]
        want_len = (batch.shape[1] - 1) / float(info.starts[:, :-1].sum(axis=1).mean())
        assert abs(row["avg_patch_len"] - want_len) < 1e-4, (row["avg_patch_len"], want_len)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(trained["entropy_model"]),
                                                    jax.tree.leaves(param_tree(blt)["entropy_model"])))


def one_device_cfg(cfg, workdir):
    return train(cfg, workdir, devices=jax.devices()[:1])
