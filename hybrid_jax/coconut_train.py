"""Latent-reasoning (Coconut) training: `python -m hybrid_jax.train --config configs/prosqa_tiny.py --workdir DIR`

`hybrid_jax.train` hands any config with a `coconut` node to `train_coconut`. Training runs
`coconut.num_epochs` epochs over the Coconut-format JSON file `data.train` (`train.steps` is derived:
epochs x batches per epoch); epoch e trains at stage `curriculum.stage_of_epoch(e)`. At every stage
change the change is logged and, with `reset_optimizer`, the optimizer state (moments and learning-rate
warmup) starts afresh, as the reference's new optimizer per stage. The position in the schedule is a
function of the step, so resuming from any checkpoint (mid-stage or at a stage change) continues
exactly. Answer accuracy on `data.eval` is measured every `coconut.eval_every_epochs` epochs and at the
end. The step, optimizer, checkpoint and metrics code is the plain trainer's.
"""

from __future__ import annotations

import math
import sys
import time

import jax

from hybrid_jax.checkpoint import manager, model_with_params
from hybrid_jax.config import validate
from hybrid_jax.data import curriculum as cur
from hybrid_jax.data.coconut import load_examples
from hybrid_jax.metrics import MetricsWriter, Progress
from hybrid_jax.optim import learning_rate
from hybrid_jax.sharding import make_mesh
from hybrid_jax.step import compile_steps, masked_losses


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
    from hybrid_jax.train import local_rows
    out = {}
    for k, v in batch.items():
        rows = local_rows(sharding, v.shape)
        out[k] = jax.make_array_from_process_local_data(sharding, v[rows], v.shape)
    return out


def qa_eval(cfg, params, examples, stage: int) -> dict:
    """Answer accuracy on (the first `eval_limit` of) the validation examples at `stage`."""
    from hybrid_jax.qa import answer_accuracy
    cc = cfg.coconut
    subset = examples[:cc.eval_limit] if cc.eval_limit else examples
    model = model_with_params(cfg.model, params)
    res = answer_accuracy(model, subset, cc, cc.mode, stage, batch_size=cfg.eval.batch_size or 8,
                          max_new=cc.max_new_bytes)
    return {"accuracy": res["accuracy"], "eval_n": res["n"], "avg_latents": res["avg_latents"]}


def train_coconut(cfg, workdir: str, devices=None) -> list[dict]:
    """Run (or resume) a latent-reasoning run; returns the logged metric rows of this run."""
    from hybrid_jax.train import (StopFlag, checkpoint_step, close_run, report_profile, start_or_resume,
                                  step_tracer)

    validate(cfg)
    cc, t = cfg.coconut, cfg.train
    examples = load_examples(cfg.data.train)
    valid = load_examples(cfg.data.eval) if cfg.data.eval else []
    cur.check_lengths(examples, cc, cfg.data.seq_len, cfg.data.train)
    schedule = cur.Curriculum(examples, cc, t.batch_size, cfg.data.seq_len, cfg.seed)
    spe = schedule.steps_per_epoch
    cfg = with_steps(cfg, spe * cc.num_epochs)
    mesh = make_mesh(cfg.mesh, devices)
    steps = compile_steps(cfg, mesh, loss=make_loss(cfg))
    mngr = manager(workdir, save_interval_steps=cfg.checkpoint.every, max_to_keep=cfg.checkpoint.keep,
                   enable_async_checkpointing=cfg.checkpoint.async_save)
    state, start = start_or_resume(cfg, workdir, steps, mngr, schedule)
    schedule.seek(start)
    reset = jax.jit(steps.tx.init, out_shardings=steps.state_shardings["opt_state"])

    main = jax.process_index() == 0
    writer, progress, stop = MetricsWriter(workdir, main), Progress(cfg.train.steps, main), StopFlag()
    lr = learning_rate(cfg.train)
    rows, last_time, last_step = [], time.time(), start
    tracer = step_tracer(workdir, cfg.train, start)

    def log(s, row):
        rows.append({"step": s, **row})
        writer.write(s, row)

    if main:
        print(f"{'resumed from step ' + str(start) if start else 'starting'}: epoch {schedule.epoch}, "
              f"stage {schedule.stage}, {spe} steps per epoch, {cfg.train.steps} steps", file=sys.stderr)
    for step in range(start, cfg.train.steps):
        epoch, stage = schedule.epoch, schedule.stage
        if schedule.index == 0 and epoch > 0 and cur.stage_of_epoch(cc, epoch - 1) != stage:
            if main:
                print(f"stage {stage} from epoch {epoch} (step {step})"
                      + ("; optimizer reset" if cc.reset_optimizer else ""), file=sys.stderr)
            if cc.reset_optimizer:
                state["opt_state"] = reset(state["params"])
        reset_at = stage_start_epoch(cc, epoch) * spe if cc.reset_optimizer else 0
        tracer.before(step)
        batch = place(next(schedule), steps.batch_sharding)
        state, m = steps.train(state, batch)
        if tracer.after(step, m):
            report_profile(tracer, lambda: steps.train.lower(state, batch).compile())
        s = step + 1
        if s % t.log_every == 0 or s == cfg.train.steps or stop.set or schedule.index == 0:
            m = jax.device_get(m)
            now = time.time()
            dt, last_time, last_step = (now - last_time) / max(s - last_step, 1), now, s
            row = {k: float(v) for k, v in m.items()}
            row.update(lr=float(lr(step - reset_at)), epoch=epoch, stage=stage, step_time=dt)
            if not math.isfinite(row["loss"]):
                raise FloatingPointError(f"loss is {row['loss']} at step {s}")
            log(s, row)
            progress.update(s, row["loss"], t.batch_size * cfg.data.seq_len / dt, start)
        epoch_done = schedule.index == 0
        if valid and epoch_done and (s == cfg.train.steps or (
                cc.eval_every_epochs and (epoch + 1) % cc.eval_every_epochs == 0)):
            log(s, {**qa_eval(cfg, state["params"], valid, stage), "epoch": epoch, "stage": stage})
        meta = {"step": s, "seed": cfg.seed, "data": schedule.get_state(), "stage": stage}
        if checkpoint_step(mngr, s, state, meta, stop, s == cfg.train.steps, main):
            break
    close_run(mngr, stop, progress, writer, tracer, state)
    return rows
