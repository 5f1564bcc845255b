"""Plain training: next-byte prediction on a packed corpus, bits per byte on held-out data every
`eval.every` steps."""

from __future__ import annotations

import sys

import jax

from hybrid_jax.analysis.flops import flops_per_sequence, peak_tflops
from hybrid_jax.data.pipeline import eval_batches, streams, train_dataset
from hybrid_jax.evaluation.bpb import summarize
from hybrid_jax.model.objectives import entropy_model_losses, entropy_model_sums
from hybrid_jax.parallel.distributed import is_main_process
from hybrid_jax.parallel.sharding import check_rows, local_rows, make_mesh
from hybrid_jax.training.init import calibrated_threshold
from hybrid_jax.training.loop import Task
from hybrid_jax.training.optim import learning_rate
from hybrid_jax.training.step import compile_steps


def evaluate(eval_fn, params, batches, b_sh) -> dict:
    """Held-out bits per byte and average patch length over fixed batches (int32 `[rows, seq_len + 1]`,
    this process's rows)."""
    def sums(local):
        shape = (local.shape[0] * jax.process_count(), local.shape[1])
        return eval_fn(params, jax.make_array_from_process_local_data(b_sh, local, shape))
    result = summarize(sums(local) for local in batches)
    return {"eval_bpb": result["bpb"], "eval_avg_patch_len": result["avg_patch_len"]}


class LanguageModeling(Task):
    """The `Task` of a plain run (see `hybrid_jax.training.loop`)."""

    def __init__(self, cfg, devices=None):
        self.cfg = cfg
        t, seq = cfg.train, cfg.data.seq_len
        train_stream, eval_stream = streams(cfg.data)
        if cfg.model.patching.target_patch_len:
            self._calibrate(train_stream)
        self.mesh = make_mesh(cfg.mesh, devices)
        alone = cfg.train.objective == "entropy_model"
        self.steps = compile_steps(cfg, self.mesh, *((entropy_model_losses, entropy_model_sums) if alone else ()))
        b_sh = self.steps.batch_sharding
        if cfg.eval.every:
            check_rows("eval.batch_size", cfg.eval.batch_size, self.mesh)
        self.shape = (t.batch_size, seq + 1)
        self.data = iter(train_dataset(train_stream, seq, t.batch_size, cfg.seed, local_rows(b_sh, self.shape))
                         .to_iter_dataset())
        self.evals = eval_batches(eval_stream, seq, cfg.eval.batch_size, cfg.eval.batches,
                                  local_rows(b_sh, (cfg.eval.batch_size, seq + 1))) if cfg.eval.every else []
        self.lr = learning_rate(t)
        self.flops = 0.0 if alone else flops_per_sequence(cfg.model, seq) * t.batch_size  # 0: no MFU
        self.peak = peak_tflops(jax.devices()[0].device_kind, t.peak_tflops)

    def _calibrate(self, stream) -> None:
        """Set `model.patching.threshold` for `target_patch_len` (recorded in config.json): the same on
        every process, and on a resume, since the sample and the entropy model are the same."""
        result = calibrated_threshold(self.cfg, stream)
        self.cfg.model.patching.threshold = result.threshold
        if is_main_process():
            print(f"model.patching.threshold = {result.threshold:.6f}: mean patch {result.mean_patch_len:.3f} bytes "
                  f"on {result.samples} training windows (target {self.cfg.model.patching.target_patch_len})",
                  file=sys.stderr)

    def start_message(self, start: int) -> str:
        resumed = f"resumed from step {start}; " if start else ""
        return f"{resumed}compiling the train step, then training steps {start + 1}-{self.total}"

    def batch(self, step: int):
        return jax.make_array_from_process_local_data(self.steps.batch_sharding, next(self.data), self.shape)

    def log_fields(self, done: int, step_time: float) -> dict:
        t = self.cfg.train
        mfu = self.flops / step_time / (self.peak * 1e12 * self.mesh.size) if self.peak and self.flops else None
        return {"lr": float(self.lr(done - 1)), "bytes_per_sec": t.batch_size * self.cfg.data.seq_len / step_time,
                "mfu": mfu}

    def evaluate(self, state: dict, done: int) -> dict | None:
        every = self.cfg.eval.every
        if not self.evals or not (done % every == 0 or self.is_last(done)):
            return None
        return evaluate(self.steps.eval, state["params"], self.evals, self.steps.batch_sharding)
