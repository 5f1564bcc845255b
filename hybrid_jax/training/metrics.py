"""Training logs: `metrics.jsonl` (one JSON object per logged step), TensorBoard events in `tb/`, and
progress on stdout (a bar on a terminal, a line per logged step elsewhere). Only the writing process (process 0) creates any of them."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

from hybrid_jax.storage.workdir import Workdir, write_error


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


class Progress:
    """Training progress: a rich progress bar on a terminal; elsewhere (a log file, SLURM, a pod) one
    plain line per logged step: step, loss, bytes/s, ETA."""

    def __init__(self, total: int, enabled: bool, stream=None):
        self.total, self.enabled, self.start = total, enabled, time.time()
        self.stream = stream or sys.stdout
        self.bar = None
        if enabled and self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar
            self.bar = Bar(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
                           console=Console(file=self.stream))
            self.task = self.bar.add_task("train", total=total, stats="")
            self.bar.start()

    def update(self, step: int, loss: float, bytes_per_sec: float, first_step: int) -> None:
        if not self.enabled:
            return
        stats = f"loss {loss:.4f}  {bytes_per_sec:,.0f} bytes/s"
        if self.bar is not None:
            self.bar.update(self.task, completed=step, stats=stats)
            return
        eta = (time.time() - self.start) / max(step - first_step, 1) * (self.total - step)
        print(f"step {step}/{self.total}  {stats}  ETA {_duration(eta)}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class EventFile:
    """TensorBoard scalars in one new events file under `logdir`, written by the calling thread (not
    tensorboardX's `SummaryWriter` thread, where a failed write prints a traceback, and blocks the loop
    once its queue is full); flushed at the first write, then every `flush_secs`, and on close."""

    def __init__(self, logdir, flush_secs: float = 120.0):
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.record_writer import directory_check

        self.logdir = str(logdir)
        directory_check(self.logdir)
        self.writer = EventsWriter(os.path.join(self.logdir, "events"))
        self.flush_secs, self.flushed = flush_secs, 0.0

    def add_scalars(self, step: int, scalars: dict) -> None:
        from tensorboardX import summary
        from tensorboardX.proto import event_pb2

        now = time.time()
        for name, value in scalars.items():
            self.writer.write_event(event_pb2.Event(wall_time=now, step=step, summary=summary.scalar(name, value)))
        if now - self.flushed >= self.flush_secs:
            self.writer.flush()
            self.flushed = now

    def close(self) -> None:
        self.writer.close()


class MetricsWriter:
    """Appends logged rows to a workdir's `metrics.jsonl` and TensorBoard events. A write that fails
    (a full disk) is one `WriteError` naming the file."""

    def __init__(self, workdir: Workdir, enabled: bool):
        self.enabled = enabled
        self.tb = None
        if enabled:
            with _writing(workdir.path):
                workdir.path.mkdir(parents=True, exist_ok=True)
            with _writing(workdir.metrics_file):
                self.file = workdir.metrics_log()
            with _writing(workdir.tensorboard_dir):
                self.tb = EventFile(workdir.tensorboard_dir)

    def write(self, step: int, row: dict) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), **{k: _plain(v) for k, v in row.items()}}
        with _writing(self.file.path):
            self.file.write(json.dumps(row) + "\n")
        with _writing(self.tb.logdir):
            self.tb.add_scalars(step, {k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float))})

    def close(self) -> None:
        if self.enabled:
            try:
                with _writing(self.file.path):
                    self.file.close()
            finally:
                with _writing(self.tb.logdir):
                    self.tb.close()


@contextlib.contextmanager
def _writing(path):
    try:
        yield
    except OSError as e:
        raise write_error(e, f"writing {path}") from None


def _plain(v):
    if v is None or isinstance(v, (str, bool)):
        return v
    return float(v)


def read_metrics(workdir: str) -> list[dict]:
    """All rows of `metrics.jsonl`; a step logged twice (after a resume) keeps its last row."""
    text = Workdir(workdir).metrics_file.read_text()
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    latest = {}
    for row in rows:  # a resumed run logs again the steps after its checkpoint: the later row wins
        latest[(row["step"], row_kind(row))] = row
    return sorted(latest.values(), key=lambda r: (r["step"], row_kind(r)))


def row_kind(row: dict) -> int:
    """0 for a training row, 1 for held-out metrics, 2 for lm-evaluation-harness results."""
    if "eval_bpb" in row:
        return 1
    return 2 if any(k.startswith("harness/") for k in row) else 0
