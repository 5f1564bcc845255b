"""Training logs: `metrics.jsonl` (one JSON object per logged step), TensorBoard events in `tb/`, and
progress on stdout (a bar on a terminal, a line per logged step elsewhere). Only the writing process (process 0) creates any of them."""

from __future__ import annotations

import json
import sys
import time

from hybrid_jax.storage.workdir import Workdir


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


class MetricsWriter:
    """Appends logged rows to a workdir's `metrics.jsonl` and TensorBoard events."""

    def __init__(self, workdir: Workdir, enabled: bool):
        self.enabled = enabled
        self.tb = None
        if enabled:
            workdir.path.mkdir(parents=True, exist_ok=True)
            self.file = workdir.metrics_log()
            from tensorboardX import SummaryWriter
            self.tb = SummaryWriter(str(workdir.tensorboard_dir))

    def write(self, step: int, row: dict) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), **{k: _plain(v) for k, v in row.items()}}
        self.file.write(json.dumps(row) + "\n")
        for k, v in row.items():
            if k != "step" and isinstance(v, (int, float)):
                self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            self.tb.close()


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
        latest[(row["step"], "eval_bpb" in row)] = row
    return sorted(latest.values(), key=lambda r: (r["step"], "eval_bpb" in r))
