"""The one training loop. What differs between kinds of run (plain next-byte training, the Coconut
curriculum) is a `Task`; what happens around every step (logging, evaluation, checkpoints, signals,
profiling) is a list of `Hook`s (`hybrid_jax.training.hooks`).

    start or resume -> for each step: task.before_step, task.batch, train step, hooks -> close hooks
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hybrid_jax.errors import CheckpointError, WorkdirInUse
from hybrid_jax.parallel.distributed import is_main_process
from hybrid_jax.storage.checkpoint import restore_train_state
from hybrid_jax.storage.workdir import Workdir
from hybrid_jax.training.init import initial_params
from hybrid_jax.training.step import Steps, initial_state


class Task:
    """A kind of run: its compiled steps, its data and what it logs, evaluates and checkpoints. A
    subclass sets the three attributes in its `__init__` and overrides what differs from these defaults."""

    cfg: Any  # the run config (`train.steps` is the number of steps the loop runs)
    steps: Steps
    data: Any  # an iterator with `get_state()` / `set_state(state)` (stored in every checkpoint)

    @property
    def total(self) -> int:
        return self.cfg.train.steps

    def is_last(self, done: int) -> bool:
        """Whether `done` steps are the whole run."""
        return done == self.total

    def fresh_state(self, state: dict) -> dict:
        """A new run's initial state: `state` with `train.init_from`'s (or the entropy model's donor's)
        parameters swapped in where the config names them."""
        state["params"] = initial_params(self.cfg, state["params"], self.steps.state_shardings["params"])
        return state

    def resumed(self, start: int) -> None:
        """Called after the data state of step `start` was restored."""

    def start_message(self, start: int) -> str:
        return f"{'resumed from step ' + str(start) if start else 'starting'}: steps {start + 1}-{self.total}"

    def before_step(self, state: dict, step: int) -> dict:
        return state

    def batch(self, step: int):
        """The global batch of `step` as arrays placed with `steps.batch_sharding`."""
        raise NotImplementedError

    def log_now(self, done: int) -> bool:
        """Log after `done` steps even off the `train.log_every` grid."""
        return False

    def log_fields(self, done: int, step_time: float) -> dict:
        """Fields the task adds to a logged row (learning rate, MFU, epoch, ...)."""
        return {}

    def evaluate(self, state: dict, done: int) -> dict | None:
        """A row of held-out metrics after `done` steps, or None when it is not time to evaluate."""
        return None

    def meta(self, done: int) -> dict:
        """What a checkpoint after `done` steps stores beside the state: the step, the seed and the data
        position (a task adds what else it needs to resume exactly)."""
        return {"step": done, "seed": self.cfg.seed, "data": self.data.get_state()}


@dataclasses.dataclass
class Run:
    """What the hooks share while the loop runs."""
    cfg: Any
    workdir: Workdir
    task: Task
    start: int
    main: bool  # process 0: the one that prints and writes logs
    rows: list = dataclasses.field(default_factory=list)
    stop_requested: bool = False  # set by a signal; the loop saves and leaves after this step

    @property
    def total(self) -> int:
        return self.task.total

    def is_last(self, done: int) -> bool:
        return self.task.is_last(done)

    def record(self, step: int, row: dict, writer=None) -> None:
        self.rows.append({"step": step, **row})
        if writer is not None:
            writer.write(step, row)


class Hook:
    """Called around every step; each method may be left as it is."""

    def before_step(self, run: Run, step: int) -> None:
        pass

    def after_step(self, run: Run, done: int, state: dict, metrics: dict, batch) -> None:
        pass

    def close(self, run: Run, state: dict) -> None:
        pass


def start_or_resume(task: Task, workdir: Workdir, mngr) -> tuple[dict, int]:
    """(state, first step): the newest checkpoint that restores (data iterator restored too), or a fresh
    state. A step that does not restore (damaged files) is skipped with one line and kept on disk."""
    cfg, steps = task.cfg, task.steps
    workdir.check_same_model(cfg)
    saved, errors = sorted(mngr.all_steps(), reverse=True), []
    for start in saved:
        try:
            state, meta = restore_train_state(mngr, start, {**steps.abstract, "step": None})
        except CheckpointError as e:
            errors.append(e)
            continue
        if is_main_process():
            for step, e in zip(saved, errors):
                print(f"skipping checkpoint step {step}, it does not restore: {e}", file=sys.stderr)
            if cfg.train.init_from:
                print(f"{workdir} has checkpoints: resuming it, train.init_from only gave the model config",
                      file=sys.stderr)
        state["step"] = jax.device_put(jnp.int32(start), steps.state_shardings["step"])
        task.data.set_state(meta["data"])
        task.resumed(start)
        break
    else:
        if saved:
            raise CheckpointError(f"{workdir}: no checkpoint step restores (the newest: {errors[0]}); nothing was "
                                  "deleted")
        state, start = task.fresh_state(initial_state(cfg, steps)), 0
    if is_main_process():
        workdir.write_config(cfg)
    return state, start


@contextlib.contextmanager
def holding(workdir: Workdir):
    """Hold `workdir`'s lock (`Workdir.lock`) around a whole run, so that a second `train` on it stops
    before it reads or writes anything there.

    Process 0 alone takes it. All processes of a run use one workdir (a local `launch` shares a folder;
    a pod needs a shared file system or a bucket, since Orbax writes one step from every host), so a
    lock per host would refuse the run its own workdir; the other processes never touch the lock
    file. They learn whether process 0 got it, so that a refused run ends on every process instead of
    leaving them waiting for process 0 in the first collective.
    """
    with contextlib.ExitStack() as stack:
        failure = None
        if is_main_process():
            try:
                stack.enter_context(workdir.lock())
            except OSError as e:  # WorkdirInUse, or the lock file cannot be made
                failure = e
        refused = failure is not None
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            refused = bool(multihost_utils.broadcast_one_to_all(np.int32(refused)))
        if failure is not None:
            raise failure
        if refused:
            raise WorkdirInUse(f"{workdir}: process 0 could not take the workdir's lock (its error says why)")
        yield


def train_loop(task: Task, workdir: str, make_hooks) -> list[dict]:
    """Run (or resume) `task` in `workdir`; `make_hooks(run, mngr)` gives the hooks in calling order.
    Returns the rows logged by this run."""
    cfg = task.cfg
    wd = Workdir(workdir)
    c = cfg.checkpoint
    mngr = wd.manager(save_interval_steps=c.every, max_to_keep=c.keep, enable_async_checkpointing=c.async_save)
    state, start = start_or_resume(task, wd, mngr)
    run = Run(cfg, wd, task, start, is_main_process())
    hooks = make_hooks(run, mngr)
    if run.main:
        print(task.start_message(start), file=sys.stderr)
    try:
        for step in range(start, run.total):
            state = task.before_step(state, step)
            batch = task.batch(step)
            for h in hooks:
                h.before_step(run, step)
            state, metrics = task.steps.train(state, batch)
            for h in hooks:
                h.after_step(run, step + 1, state, metrics, batch)
            if run.stop_requested:
                break
    except BaseException:
        _close_all(hooks, run, state, failed=True)
        raise
    _close_all(hooks, run, state, failed=False)
    return run.rows


def _close_all(hooks: list[Hook], run: Run, state: dict, failed: bool) -> None:
    """Close every hook, the last first, even when some fail. The first failure is raised, unless the
    loop already failed: then its error is the one to report (a full disk fails the saves, then the
    closes that flush logs, and only the first says what happened)."""
    first = None
    for h in reversed(hooks):
        try:
            h.close(run, state)
        except Exception as e:  # noqa: BLE001 (raised below, or a consequence of the loop's own error)
            first = first or e
    if first is not None and not failed:
        raise first
