"""What the training loop does around every step: signals, profiling, logging, evaluation (held-out
bits per byte, lm-evaluation-harness tasks) and checkpoints, one `Hook` each (called in that order)."""

from __future__ import annotations

import math
import os
import signal
import sys
import time

import jax
from jax.experimental import multihost_utils

from hybrid_jax.storage.checkpoint import save_train_state
from hybrid_jax.analysis.profile import write_traced
from hybrid_jax.storage.workdir import write_error
from hybrid_jax.training import profiling
from hybrid_jax.training.loop import Hook, Run
from hybrid_jax.training.metrics import MetricsWriter, Progress


class SignalHook(Hook):
    """SIGTERM / SIGINT ask the loop to save a checkpoint and leave between steps.

    Across processes every one must stop after the same step, or they meet in different collectives
    and hang; a signal often reaches only some hosts (a pre-empted VM) or reaches them steps apart. So a
    multi-process run leaves SIGTERM to JAX's preemption notifier (installed by
    `jax.distributed.initialize`), which tells the coordination service, and every process asks after
    each step whether the agreed stop step has come. SIGINT is turned into that same SIGTERM.
    """

    def __init__(self, run: Run):
        self._run = run
        self._agreed = jax.process_count() > 1 and jax.config.jax_enable_preemption_service
        if self._agreed:
            self._old = {signal.SIGINT: signal.signal(signal.SIGINT, self._to_sigterm)}
        else:
            self._old = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}

    def _handle(self, signum, frame):
        self._run.stop_requested = True

    @staticmethod
    def _to_sigterm(signum, frame):
        os.kill(os.getpid(), signal.SIGTERM)

    def after_step(self, run: Run, done: int, state: dict, metrics: dict, batch) -> None:
        if self._agreed and multihost_utils.reached_preemption_sync_point(done):
            run.stop_requested = True

    def close(self, run: Run, state: dict) -> None:
        """Put back the handlers that were there before (training may run inside a larger program)."""
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


class ProfileHook(Hook):
    """A `jax.profiler` window (`train.profile_start` / `profile_steps`, counted from the first step of
    this run) into WORKDIR/profile, with the compiled step's HLO beside it for
    `hybrid-jax profile DIR`."""

    def __init__(self, run: Run):
        t = run.cfg.train
        logdir = str(run.workdir.profile_dir(jax.process_index(), jax.process_count()))
        self.tracer = profiling.StepTracer(logdir, run.start + t.profile_start, t.profile_steps)

    def before_step(self, run: Run, step: int) -> None:
        self.tracer.before(step)

    def after_step(self, run: Run, done: int, state: dict, metrics: dict, batch) -> None:
        if self.tracer.after(done - 1, metrics):
            devices = len(jax.tree.leaves(state["params"])[0].sharding.device_set)  # the mesh's, not all
            self._report(run, lambda: run.task.steps.train.lower(state, batch).compile(), devices)

    def close(self, run: Run, state: dict) -> None:
        if self.tracer.close(state):
            self._report(run)

    def _report(self, run: Run, compiled_step=None, devices: int = 0) -> None:
        """On process 0: where the trace is, and the step's HLO for the summary. Profiling is an aid: a
        failure to write the HLO is reported, not raised, so the run goes on."""
        if not run.main:
            return
        tr = self.tracer
        first = tr.start + 1
        print(f"\nprofiled steps {first}-{first + tr.traced - 1} into {tr.logdir} (open with tensorboard "
              f"--logdir {tr.logdir}, or its perfetto_trace.json.gz in ui.perfetto.dev)", file=sys.stderr)
        if compiled_step is None:
            return
        try:
            path = write_traced(tr.logdir, compiled_step().as_text(), tr.traced, devices)
            print(f"where the time went: hybrid-jax profile {tr.logdir}  (HLO in {path})",
                  file=sys.stderr)
        except Exception as e:  # noqa: BLE001 -- see the docstring
            print(f"(could not write the step's HLO: {e})", file=sys.stderr)


class MetricsHook(Hook):
    """Every `train.log_every` steps (and at the end, on a stop, and when the task asks): fetch the
    metrics, check the loss is finite, add the task's fields and the speed, write metrics.jsonl and
    TensorBoard, and show progress."""

    def __init__(self, run: Run):
        self.writer = MetricsWriter(run.workdir, run.main)
        self.progress = Progress(run.total, run.main)
        self.last_time, self.last_step = time.time(), run.start

    def after_step(self, run: Run, done: int, state: dict, metrics: dict, batch) -> None:
        t = run.cfg.train
        if not (done % t.log_every == 0 or run.is_last(done) or run.stop_requested or run.task.log_now(done)):
            return
        metrics = jax.device_get(metrics)
        now = time.time()
        dt = (now - self.last_time) / max(done - self.last_step, 1)
        self.last_time, self.last_step = now, done
        row = {k: float(v) for k, v in metrics.items()}
        row.update(run.task.log_fields(done, dt))
        row["step_time"] = dt
        if not math.isfinite(row["loss"]):
            raise FloatingPointError(f"loss is {row['loss']} at step {done}")
        run.record(done, row, self.writer)
        self.progress.update(done, row["loss"], t.batch_size * run.cfg.data.seq_len / dt, run.start)

    def close(self, run: Run, state: dict) -> None:
        self.progress.close()
        self.writer.close()


class EvalHook(Hook):
    """Held-out metrics whenever the task says it is time (`Task.evaluate`)."""

    def __init__(self, metrics: MetricsHook):
        self.writer = metrics.writer

    def after_step(self, run: Run, done: int, state: dict, metrics: dict, batch) -> None:
        row = run.task.evaluate(state, done)
        if row is not None:
            run.record(done, row, self.writer)


class HarnessHook(Hook):
    """lm-evaluation-harness tasks (`eval.harness.*`) every `eval.harness.every` steps and at the last
    step, on the model being trained, logged as `harness/<task>/<metric>` rows. Every process runs
    the same requests (each batch sharded over the mesh); process 0 writes them."""

    def __init__(self, run: Run, metrics: MetricsHook):
        self.writer = metrics.writer
        self.lm = self.manager = None
        h = run.cfg.eval.harness
        self.names = [t.strip() for t in h.tasks.split(",") if t.strip()]
        if h.every:  # an unknown task or a dataset out of reach stops the run before its first step
            from hybrid_jax.evaluation import harness
            self.manager = harness.task_manager(self.names, h.include_path or None)
            harness.load_tasks(self.manager, self.names)

    def after_step(self, run: Run, done: int, state: dict, metrics: dict, batch) -> None:
        h = run.cfg.eval.harness
        if not h.every or not (done % h.every == 0 or run.is_last(done)):
            return
        from hybrid_jax.evaluation import harness
        from hybrid_jax.evaluation.scoring import Scorer

        if self.lm is None:  # one Scorer for the run: its compiled forwards take the parameters as input
            mesh = jax.tree.leaves(state["params"])[0].sharding.mesh
            scorer = Scorer(run.cfg.model, state["params"], mesh, run.cfg.data.seq_len,
                            max(run.cfg.eval.batch_size, 8))
            self.lm = harness.HybridLM(scorer, seed=run.cfg.seed)
        self.lm.new_parameters(state["params"])
        results = harness.evaluate_tasks(self.lm, self.names, h.include_path or None, limit=h.limit or None,
                                         bootstrap_iters=0, manager=self.manager)
        run.record(done, harness.metric_rows(results), self.writer)


class CheckpointHook(Hook):
    """Save every `checkpoint.every` steps (Orbax decides), and always at the last step or on a stop.

    A save that fails (a full disk) is one `WriteError` naming its step; an async save fails in
    Orbax's background thread and is reported when the next save or the end waits for it. The steps
    saved before it stay on disk."""

    def __init__(self, mngr):
        self.mngr = mngr
        self.on_disk = set(mngr.all_steps())  # later than the resumed step only if they did not restore
        self.pending = None  # the step whose save may still be running in the background
        self.failed = False

    def _saving(self, step: int, call):
        try:
            return call()
        except Exception as e:  # noqa: BLE001 (Orbax and TensorStore raise anything: ValueError, bare Exception)
            self.failed = True
            raise write_error(e, f"saving checkpoint step {step} to {self.mngr.directory}") from None

    def _wait(self) -> None:
        if self.pending is not None:
            step, self.pending = self.pending, None
            self._saving(step, self.mngr.wait_until_finished)

    def after_step(self, run: Run, done: int, state: dict, metrics: dict, batch) -> None:
        if done in self.on_disk:  # a damaged step is kept as it is, never overwritten
            if run.main and (run.stop_requested or run.is_last(done)):
                print(f"step {done} is on disk but did not restore; not overwriting it", file=sys.stderr)
        else:
            force = run.stop_requested or run.is_last(done)
            if force or self.mngr.should_save(done):
                self._wait()  # as Orbax's save would, but a failure found here is the earlier step's
                if self._saving(done, lambda: save_train_state(self.mngr, done, state, run.task.meta(done), force)):
                    self.pending = done
        if run.stop_requested and run.main:
            print(f"\nstopped by signal at step {done}; checkpoint saved", file=sys.stderr)

    def close(self, run: Run, state: dict) -> None:
        try:
            self._wait()
        finally:
            try:
                self.mngr.close()
            except Exception:  # noqa: BLE001
                if not self.failed:  # else it is the failed save again, already raised
                    raise


def default_hooks(run: Run, mngr) -> list[Hook]:
    """Signals, profiling, metrics, evaluation, harness tasks, checkpoints: the order they are called in."""
    metrics = MetricsHook(run)
    return [SignalHook(run), ProfileHook(run), metrics, EvalHook(metrics), HarnessHook(run, metrics),
            CheckpointHook(mngr)]
