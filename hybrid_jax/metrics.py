"""Training logs: `metrics.jsonl` (one JSON object per logged step), TensorBoard events in `tb/`, and a
progress line on a terminal. Only the writing process (process 0) creates any of them."""

from __future__ import annotations

import json
import os
import sys
import time


class Progress:
    """One self-rewriting line: step, loss, bytes/s, ETA. Silent when stdout is not a terminal."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.start = total, enabled and sys.stdout.isatty(), time.time()

    def update(self, step: int, loss: float, bytes_per_sec: float, first_step: int) -> None:
        if not self.enabled:
            return
        done = step - first_step
        eta = (time.time() - self.start) / max(done, 1) * (self.total - step)
        width = 30
        filled = int(width * step / self.total)
        sys.stdout.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {step}/{self.total} "
                         f"loss {loss:.4f}  {bytes_per_sec:,.0f} B/s  ETA {eta:4.0f}s ")
        sys.stdout.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stdout.write("\n")


class MetricsWriter:
    def __init__(self, workdir: str, enabled: bool):
        self.enabled = enabled
        self.tb = None
        if enabled:
            os.makedirs(workdir, exist_ok=True)
            self.file = open(os.path.join(workdir, "metrics.jsonl"), "a")
            from tensorboardX import SummaryWriter
            self.tb = SummaryWriter(os.path.join(workdir, "tb"))

    def write(self, step: int, row: dict) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), **{k: _plain(v) for k, v in row.items()}}
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
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
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    latest = {}
    for row in rows:  # a resumed run logs again the steps after its checkpoint: the later row wins
        latest[(row["step"], "eval_bpb" in row)] = row
    return sorted(latest.values(), key=lambda r: (r["step"], "eval_bpb" in r))
