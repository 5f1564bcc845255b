"""Latent-reasoning (Coconut) training, the `Task` that `hybrid_jax.training.train` runs for any config
with a `coconut` node (e.g. `hybrid-jax train --config configs/prosqa_tiny.py --workdir DIR`). Training runs
`coconut.num_epochs` epochs over the Coconut-format JSON file `data.train` (`train.steps` is derived:
epochs x batches per epoch); epoch e trains at stage `curriculum.stage_of_epoch(e)`. At every stage
change the change is logged and, with `reset_optimizer`, the optimizer state (moments and learning-rate
warmup) starts afresh, as the reference's new optimizer per stage. The position in the schedule is a
function of the step, so resuming from any checkpoint (mid-stage or at a stage change) continues
exactly. Answer accuracy on `data.eval` is measured every `coconut.eval_every_epochs` epochs and at the
end. The loop, step, optimizer, checkpoint and metrics code is the plain run's.
"""

from __future__ import annotations

import sys

import jax

from hybrid_jax.data import curriculum as cur
from hybrid_jax.data.coconut import load_examples
from hybrid_jax.model.objectives import masked_losses
from hybrid_jax.model.params import model_with_params
from hybrid_jax.parallel.distributed import is_main_process
from hybrid_jax.parallel.sharding import local_rows, make_mesh
from hybrid_jax.training.loop import Task
from hybrid_jax.training.optim import learning_rate
from hybrid_jax.training.step import compile_steps


def stage_start_epoch(cc, epoch: int) -> int:
    """The first epoch of the stage that `epoch` trains at."""
    while epoch > 0 and cur.stage_of_epoch(cc, epoch - 1) == cur.stage_of_epoch(cc, epoch):
        epoch -= 1
    return epoch


def with_steps(cfg, steps: int):
    """A copy of `cfg` whose `train.steps` is `steps` (the learning-rate schedule reads it)."""
    cfg = cfg.copy_and_resolve_references()
    cfg.train.steps = steps
    return cfg


def make_loss(cfg):
    """Masked next-byte loss with the run's static number of global passes."""
    t, cc = cfg.train, cfg.coconut
    passes = cur.latent_passes(cc)
    online = cfg.model.entropy_model.trained_online
    return lambda model, batch: masked_losses(model, batch, t.est_loss_weight, online, passes)


def place(batch: dict, sharding) -> dict:
    """The global batch (every process builds all of it) as arrays; each process gives its rows."""
    out = {}
    for k, v in batch.items():
        rows = local_rows(sharding, v.shape)
        out[k] = jax.make_array_from_process_local_data(sharding, v[rows], v.shape)
    return out


def qa_eval(cfg, params, examples, stage: int) -> dict:
    """Answer accuracy on (the first `eval_limit` of) the validation examples at `stage`."""
    from hybrid_jax.evaluation.qa import answer_accuracy
    cc = cfg.coconut
    subset = examples[:cc.eval_limit] if cc.eval_limit else examples
    model = model_with_params(cfg.model, params)
    res = answer_accuracy(model, subset, cc, cc.mode, stage, batch_size=cfg.eval.batch_size or 8,
                          max_new=cc.max_new_bytes)
    return {"accuracy": res["accuracy"], "eval_n": res["n"], "avg_latents": res["avg_latents"]}


class CoconutCurriculum(Task):
    """The `Task` of a latent-reasoning run (see `hybrid_jax.training.loop`)."""

    def __init__(self, cfg, devices=None):
        cc, t = cfg.coconut, cfg.train
        examples = load_examples(cfg.data.train)
        self.valid = load_examples(cfg.data.eval) if cfg.data.eval else []
        cur.check_lengths(examples, cc, cfg.data.seq_len, cfg.data.train)
        self.data = cur.Curriculum(examples, cc, t.batch_size, cfg.data.seq_len, cfg.seed)
        self.spe = self.data.steps_per_epoch
        self.cfg = cfg = with_steps(cfg, self.spe * cc.num_epochs)
        self.steps = compile_steps(cfg, make_mesh(cfg.mesh, devices), loss=make_loss(cfg))
        self.reset = jax.jit(self.steps.tx.init, out_shardings=self.steps.state_shardings["opt_state"])
        self.lr = learning_rate(cfg.train)
        self.epoch = self.stage = self.reset_at = 0

    def resumed(self, start: int) -> None:
        self.data.seek(start)

    def start_message(self, start: int) -> str:
        return (f"{'resumed from step ' + str(start) if start else 'starting'}: epoch {self.data.epoch}, "
                f"stage {self.data.stage}, {self.spe} steps per epoch, {self.total} steps")

    def before_step(self, state: dict, step: int) -> dict:
        """At a stage change: say so and, with `reset_optimizer`, start the optimizer state afresh."""
        cc, sched = self.cfg.coconut, self.data
        self.epoch, self.stage = sched.epoch, sched.stage
        if sched.index == 0 and self.epoch > 0 and cur.stage_of_epoch(cc, self.epoch - 1) != self.stage:
            if is_main_process():
                print(f"stage {self.stage} from epoch {self.epoch} (step {step})"
                      + ("; optimizer reset" if cc.reset_optimizer else ""), file=sys.stderr)
            if cc.reset_optimizer:
                state["opt_state"] = self.reset(state["params"])
        self.reset_at = stage_start_epoch(cc, self.epoch) * self.spe if cc.reset_optimizer else 0
        return state

    def batch(self, step: int):
        return place(next(self.data), self.steps.batch_sharding)

    def log_now(self, done: int) -> bool:
        return self.data.index == 0  # every epoch's end

    def log_fields(self, done: int, step_time: float) -> dict:
        return {"lr": float(self.lr(done - 1 - self.reset_at)), "epoch": self.epoch, "stage": self.stage}

    def evaluate(self, state: dict, done: int) -> dict | None:
        cc = self.cfg.coconut
        if not (self.valid and self.data.index == 0):
            return None
        if not self.is_last(done) and not (cc.eval_every_epochs and (self.epoch + 1) % cc.eval_every_epochs == 0):
            return None
        return {**qa_eval(self.cfg, state["params"], self.valid, self.stage), "epoch": self.epoch, "stage": self.stage}

    def meta(self, done: int) -> dict:
        return {**super().meta(done), "stage": self.stage}
