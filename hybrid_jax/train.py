"""`python -m hybrid_jax.train --config configs/toy.py --workdir DIR [--config.a.b=value ...]`

Builds the mesh, the sharded state and the grain pipeline, then trains with periodic evaluation and
Orbax checkpoints; re-running the same command resumes from the latest checkpoint. SIGTERM / SIGINT
save a checkpoint and exit cleanly.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding

from hybrid_jax import cli, distributed, host_memory, profiling
from hybrid_jax.checkpoint import (CheckpointError, manager, param_tree, restore_train_state, save_train_state,
                                   write_config)
from hybrid_jax.config import ConfigError, validate
from hybrid_jax.data.pipeline import eval_batches, streams, train_dataset
from hybrid_jax.flops import flops_per_sequence, peak_tflops
from hybrid_jax.metrics import MetricsWriter, Progress
from hybrid_jax.optim import learning_rate
from hybrid_jax.sharding import make_mesh
from hybrid_jax.step import LN2, Steps, compile_steps, initial_state


def parse(argv):
    """(config, workdir, coordinator, num_processes, process_id, cpu_devices) from the command line
    (`argv[0]` is the program name)."""
    p = cli.ArgumentParser(prog="hybrid-jax train",
                           description="Train a BLT (or a Coconut run) on a mesh; re-running the same command "
                                       "resumes from the latest checkpoint.",
                           example="hybrid-jax train --config configs/toy.py --workdir runs/toy "
                                   "--config.train.steps=200")
    p.add_config()
    p.add_argument("--workdir", required=True, help="run directory (config, checkpoints, metrics)")
    p.add_argument("--coordinator", default="", help="HOST:PORT of process 0 for multi-process runs")
    p.add_argument("--num_processes", type=int, default=1, help="processes in a multi-process run")
    p.add_argument("--process_id", type=int, default=0, help="this process's index")
    p.add_argument("--cpu_devices", default="auto",
                   help="CPU backend devices: auto (one, or the count a mesh without -1 names) or a count")
    args, cfg = p.parse_with_config(list(argv)[1:])
    return cfg, args.workdir, args.coordinator, args.num_processes, args.process_id, args.cpu_devices


def local_rows(sharding: NamedSharding, shape: tuple) -> slice:
    """The contiguous block of batch rows this process's devices hold."""
    idx = sharding.addressable_devices_indices_map(shape).values()
    starts = sorted({(s[0].start or 0) for s in idx})
    stops = sorted({(s[0].stop if s[0].stop is not None else shape[0]) for s in idx})
    lo, hi = starts[0], stops[-1]
    covered = sum(b - a for a, b in sorted(set(zip(starts, stops))))
    if covered != hi - lo:
        raise ConfigError("this mesh gives a process non-contiguous batch rows; put data/fsdp first")
    return slice(lo, hi)


def _check_workdir_config(workdir: str, cfg) -> None:
    """Refuse to resume a workdir whose stored model config differs (nothing is deleted)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        return
    with open(path) as f:
        stored = json.load(f).get("model", {})
    now = json.loads(json.dumps(cfg.model.to_dict()))
    diff = _first_difference(stored, now, "model")
    if diff:
        raise CheckpointError(f"{workdir} holds a run with a different model config ({diff}); "
                              "use another --workdir")


def _first_difference(a, b, prefix):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _first_difference(a.get(k), b.get(k), f"{prefix}.{k}")
            if d:
                return d
        return ""
    return "" if a == b else f"{prefix}: stored {a!r}, now {b!r}"


def entropy_donor(cfg, params, shardings):
    """`params` with the entropy model replaced by the one in `model.entropy_model.init_from`, if set."""
    src = cfg.model.entropy_model.init_from
    if not src:
        return params
    from hybrid_jax.loading import load_any
    donor = param_tree(load_any(src))["entropy_model"]
    if jax.tree.map(jnp.shape, donor) != jax.tree.map(jnp.shape, params["entropy_model"]):
        raise ConfigError(f"model.entropy_model.init_from={src}: its entropy model has other shapes "
                          "than model.entropy_model")
    return {**params, "entropy_model": jax.device_put(donor, shardings["entropy_model"])}


def start_or_resume(cfg, workdir: str, steps: Steps, mngr, data_iter) -> tuple[dict, int]:
    """(state, first step): a fresh state, or the latest checkpoint's (data iterator restored too)."""
    _check_workdir_config(workdir, cfg)
    start = mngr.latest_step()
    if start is None:
        state = initial_state(cfg, steps)  # Adam moments start at zero whatever the params: swap after
        state["params"] = entropy_donor(cfg, state["params"], steps.state_shardings["params"])
        start = 0
    else:
        state, meta = restore_train_state(mngr, start, {**steps.abstract, "step": None})
        state["step"] = jax.device_put(jnp.int32(start), steps.state_shardings["step"])
        data_iter.set_state(meta["data"])
    if jax.process_index() == 0:
        write_config(workdir, cfg)
    return state, start


class StopFlag:
    """Set by SIGTERM / SIGINT so the loop can checkpoint and exit between steps."""

    def __init__(self):
        self.set = False
        self._old = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}

    def _handle(self, signum, frame):
        self.set = True

    def restore(self) -> None:
        """Put back the handlers that were there before (train() may run inside a larger program)."""
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def train(cfg, workdir: str, devices=None) -> list[dict]:
    """Run (or resume) training on `devices` (default: all); returns the logged metric rows of this run.

    A config with a `coconut` node trains latent reasoning instead (`hybrid_jax.coconut_train`)."""
    if "coconut" in cfg:
        from hybrid_jax.coconut_train import train_coconut
        return train_coconut(cfg, workdir, devices)
    validate(cfg)
    mesh = make_mesh(cfg.mesh, devices)
    t, seq = cfg.train, cfg.data.seq_len
    train_stream, eval_stream = streams(cfg.data)
    steps = compile_steps(cfg, mesh)
    b_sh, shape = steps.batch_sharding, (t.batch_size, seq + 1)
    data_iter = iter(train_dataset(train_stream, seq, t.batch_size, cfg.seed, local_rows(b_sh, shape))
                     .to_iter_dataset())
    evals = eval_batches(eval_stream, seq, cfg.eval.batch_size, cfg.eval.batches,
                         local_rows(b_sh, (cfg.eval.batch_size, seq + 1))) if cfg.eval.every else []
    mngr = manager(workdir, save_interval_steps=cfg.checkpoint.every, max_to_keep=cfg.checkpoint.keep,
                   enable_async_checkpointing=cfg.checkpoint.async_save)
    state, start = start_or_resume(cfg, workdir, steps, mngr, data_iter)
    step_fn, eval_fn = steps.train, steps.eval

    main = jax.process_index() == 0
    writer = MetricsWriter(workdir, main)
    progress = Progress(t.steps, main)
    stop = StopFlag()
    lr = learning_rate(t)
    flops = flops_per_sequence(cfg.model, seq) * t.batch_size
    peak = peak_tflops(jax.devices()[0].device_kind, t.peak_tflops)
    rows, last_time, last_step = [], time.time(), start
    tracer = step_tracer(workdir, t, start)
    if main and start:
        print(f"resumed from step {start} in {workdir}", file=sys.stderr)
    if main:
        print(f"compiling the train step, then training steps {start + 1}-{t.steps}", file=sys.stderr)
    for step in range(start, t.steps):
        batch = jax.make_array_from_process_local_data(b_sh, next(data_iter), shape)
        tracer.before(step)
        state, m = step_fn(state, batch)
        if tracer.after(step, m):
            report_profile(tracer, lambda: step_fn.lower(state, batch).compile())
        s = step + 1
        if s % t.log_every == 0 or s == t.steps or stop.set:
            m = jax.device_get(m)
            now = time.time()
            dt = (now - last_time) / max(s - last_step, 1)
            last_time, last_step = now, s
            row = {k: float(v) for k, v in m.items()}
            row.update(lr=float(lr(step)), bytes_per_sec=t.batch_size * seq / dt, step_time=dt,
                       mfu=(flops / dt / (peak * 1e12 * mesh.size)) if peak else None)
            if not math.isfinite(row["loss"]):
                raise FloatingPointError(f"loss is {row['loss']} at step {s}")
            rows.append({"step": s, **row})
            writer.write(s, row)
            progress.update(s, row["loss"], row["bytes_per_sec"], start)
        if evals and (s % cfg.eval.every == 0 or s == t.steps):
            row = evaluate(eval_fn, state["params"], evals, b_sh)
            rows.append({"step": s, **row})
            writer.write(s, row)
        meta = {"step": s, "seed": cfg.seed, "data": data_iter.get_state()}
        if checkpoint_step(mngr, s, state, meta, stop, s == t.steps, main):
            break
    close_run(mngr, stop, progress, writer, tracer, state)
    return rows


def step_tracer(workdir: str, t, start: int) -> profiling.StepTracer:
    """The run's `jax.profiler` window (config `train.profile_start` / `profile_steps`, counted from
    `start`) into WORKDIR/profile, one sub-directory per process when there are several."""
    logdir = os.path.join(workdir, "profile")
    if jax.process_count() > 1:
        logdir = os.path.join(logdir, f"process_{jax.process_index()}")
    return profiling.StepTracer(logdir, start + t.profile_start, t.profile_steps)


def report_profile(tracer: profiling.StepTracer, compiled_step=None) -> None:
    """After a traced window, on process 0: how to open the trace and, given `compiled_step()` -> the
    step's compiled executable (which jit has cached), where its time went. Profiling is an aid: a
    failure to read the trace back is reported, not raised, so the run goes on."""
    if jax.process_index() != 0:
        return
    first = tracer.start + 1
    print(f"\nprofiled steps {first}-{first + tracer.traced - 1} into {tracer.logdir} (open with "
          f"tensorboard --logdir {tracer.logdir}, or its perfetto_trace.json.gz in ui.perfetto.dev)", file=sys.stderr)
    if compiled_step is None:
        return
    try:
        found = profiling.summary(tracer.logdir, compiled_step().as_text(), tracer.traced, jax.device_count())
        print(profiling.format_summary(found), file=sys.stderr)
    except Exception as e:  # noqa: BLE001 -- see the docstring
        print(f"(could not summarise the trace: {e})", file=sys.stderr)


def checkpoint_step(mngr, step: int, state: dict, meta: dict, stop: StopFlag, last: bool, main: bool) -> bool:
    """Save after `step` (forced at the last step or when a signal arrived); True when the run must stop."""
    save_train_state(mngr, step, state, meta, force=stop.set or last)
    if stop.set and main:
        print(f"\nstopped by signal at step {step}; checkpoint saved", file=sys.stderr)
    return stop.set


def close_run(mngr, stop: StopFlag, progress, writer, tracer=None, state=None) -> None:
    """Wait for pending saves, then end a profile still running, put back the signal handlers and close
    the logs."""
    mngr.wait_until_finished()
    if tracer is not None and tracer.close(state):
        report_profile(tracer)
    mngr.close()
    stop.restore()
    progress.close()
    writer.close()


def evaluate(eval_fn, params, batches, b_sh) -> dict:
    """Held-out bits per byte and average patch length over fixed batches."""
    total = count = patches = 0.0
    for local in batches:
        shape = (local.shape[0] * jax.process_count(), local.shape[1])
        nll, n, p = jax.device_get(eval_fn(params, jax.make_array_from_process_local_data(b_sh, local, shape)))
        total, count, patches = total + float(nll), count + float(n), patches + float(p)
    return {"eval_bpb": total / count / LN2, "eval_avg_patch_len": count / max(patches, 1.0)}


def main(argv=None) -> int:
    cfg, workdir, coordinator, nproc, pid, cpu_devices = parse(argv if argv is not None else sys.argv)
    host_memory.keep_freed_memory()
    if cfg.train.profile_steps > 0:  # readable GPU traces: kernels outside CUDA graphs for the whole run
        profiling.unfold_gpu_graphs()
    distributed.set_cpu_devices(cfg, cpu_devices, coordinator)
    distributed.initialize(coordinator, nproc, pid)
    rows = train(cfg, workdir)
    if jax.process_index() == 0:
        last = [r for r in rows if "loss" in r]
        ev = [r for r in rows if "eval_bpb" in r]
        acc = [r for r in rows if "accuracy" in r]
        if last:
            print(f"step {last[-1]['step']}: loss {last[-1]['loss']:.4f}, bpb {last[-1]['bpb']:.4f}"
                  + (f", held-out bpb {ev[-1]['eval_bpb']:.4f}" if ev else "")
                  + (f", answer accuracy {acc[-1]['accuracy']:.3f} on {acc[-1]['eval_n']}" if acc else ""))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
