"""`hybrid-jax train --config configs/toy.py --workdir DIR [--config.a.b=value ...]`

Builds the mesh, the sharded state and the data pipeline, then trains with periodic evaluation and
Orbax checkpoints (`hybrid_jax.training`); re-running the same command resumes from the latest
checkpoint. SIGTERM / SIGINT save a checkpoint and exit cleanly. A workdir that another `train` is
using is refused in one line naming its pid and host (exit 2; see `Workdir.lock`).
"""

from __future__ import annotations


from hybrid_jax.cli.parser import ArgumentParser


def parse(argv):
    """(config, workdir, coordinator, num_processes, process_id, cpu_devices) from the command line."""
    p = ArgumentParser(prog="hybrid-jax train",
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
    args, cfg = p.parse_with_config(argv)
    if cfg.train.init_from:
        from hybrid_jax.training.init import with_source_model
        model_overrides = [(k, v) for k, v in args.config_overrides if k.startswith("model.")]
        cfg = with_source_model(cfg, model_overrides)
    return cfg, args.workdir, args.coordinator, args.num_processes, args.process_id, args.cpu_devices


def summary_line(rows: list[dict]) -> str | None:
    """The last loss, bits per byte, held-out bits per byte and answer accuracy of a run's rows."""
    last = [r for r in rows if "loss" in r]
    ev = [r for r in rows if "eval_bpb" in r]
    acc = [r for r in rows if "accuracy" in r]
    if not last:
        return None
    return (f"step {last[-1]['step']}: loss {last[-1]['loss']:.4f}, bpb {last[-1]['bpb']:.4f}"
            + (f", held-out bpb {ev[-1]['eval_bpb']:.4f}" if ev else "")
            + (f", answer accuracy {acc[-1]['accuracy']:.3f} on {acc[-1]['eval_n']}" if acc else ""))


def main(argv: list[str]) -> int:
    cfg, workdir, coordinator, nproc, pid, cpu_devices = parse(argv)
    from hybrid_jax.parallel import distributed, host_memory
    from hybrid_jax.training import profiling

    host_memory.keep_freed_memory()
    if cfg.train.profile_steps > 0:  # readable GPU traces: kernels outside CUDA graphs for the whole run
        profiling.unfold_gpu_graphs()
    distributed.set_cpu_devices(cfg, cpu_devices, coordinator)
    distributed.initialize(coordinator, nproc, pid)

    from hybrid_jax.training import train
    rows = train(cfg, workdir)  # a workdir that another train holds: WorkdirInUse, exit 2
    line = summary_line(rows)
    if distributed.is_main_process() and line:
        print(line)
    return 0

