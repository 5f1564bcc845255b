"""The one training loop. What differs between kinds of run (plain next-byte training, the Coconut
curriculum) is a `Task`; what happens around every step (logging, evaluation, checkpoints, signals,
profiling) is a list of `Hook`s (`hybrid_jax.training.hooks`).

    start or resume -> for each step: task.before_step, task.batch, train step, hooks -> close hooks
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Protocol

import jax
import jax.numpy as jnp

from hybrid_jax.storage.checkpoint import restore_train_state
from hybrid_jax.storage.workdir import CheckpointError, Workdir
from hybrid_jax.training.step import Steps, initial_state


class Task(Protocol):
    """A kind of run: its compiled steps, its data and what it logs, evaluates and checkpoints."""

    cfg: Any  # the run config (`train.steps` is the number of steps the loop runs)
    steps: Steps
    data: Any  # an iterator with `get_state()` / `set_state(state)` (stored in every checkpoint)

    def fresh_state(self, state: dict) -> dict:
        """A new run's initial state, as `state` or with parameters swapped in."""

    def resumed(self, start: int) -> None:
        """Called after the data state of step `start` was restored."""

    def start_message(self, start: int) -> str: ...

    def before_step(self, state: dict, step: int) -> dict: ...

    def batch(self, step: int):
        """The global batch of `step` as arrays placed with `steps.batch_sharding`."""

    def log_now(self, done: int) -> bool:
        """Log after `done` steps even off the `train.log_every` grid."""

    def log_fields(self, done: int, step_time: float) -> dict:
        """Fields the task adds to a logged row (learning rate, MFU, epoch, ...)."""

    def evaluate(self, state: dict, done: int) -> dict | None:
        """A row of held-out metrics after `done` steps, or None when it is not time to evaluate."""

    def meta(self, done: int) -> dict:
        """What a checkpoint after `done` steps stores beside the state (data position, stage)."""


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
        return self.cfg.train.steps

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
        if jax.process_index() == 0:
            for step, e in zip(saved, errors):
                print(f"skipping checkpoint step {step}, it does not restore: {e}", file=sys.stderr)
        state["step"] = jax.device_put(jnp.int32(start), steps.state_shardings["step"])
        task.data.set_state(meta["data"])
        task.resumed(start)
        break
    else:
        if saved:
            raise CheckpointError(f"{workdir}: no checkpoint step restores (the newest: {errors[0]}); nothing was "
                                  "deleted")
        state, start = task.fresh_state(initial_state(cfg, steps)), 0
    if jax.process_index() == 0:
        workdir.write_config(cfg)
    return state, start


def train_loop(task: Task, workdir: str, make_hooks) -> list[dict]:
    """Run (or resume) `task` in `workdir`; `make_hooks(run, mngr)` gives the hooks in calling order.
    Returns the rows logged by this run."""
    cfg = task.cfg
    wd = Workdir(workdir)
    c = cfg.checkpoint
    mngr = wd.manager(save_interval_steps=c.every, max_to_keep=c.keep, enable_async_checkpointing=c.async_save)
    state, start = start_or_resume(task, wd, mngr)
    run = Run(cfg, wd, task, start, jax.process_index() == 0)
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
