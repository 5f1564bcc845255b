"""`hybrid-jax launch --processes N --devices_per_process K -- TRAIN_ARGS`: N local CPU processes, K fake
devices each, one `jax.distributed` job (see `hybrid_jax/parallel/launch.py`)."""

from __future__ import annotations

from hybrid_jax.cli.parser import ArgumentParser
from hybrid_jax.parallel.launch import launch


def main(argv: list[str]) -> int:
    split = argv.index("--") if "--" in argv else len(argv)
    p = ArgumentParser(prog="hybrid-jax launch", description="N local CPU processes, K fake devices each, one jax.distributed training job.",
                           example="hybrid-jax launch --processes 2 --devices_per_process 4 -- "
                                   "--config configs/tiny.py --workdir runs/mp")
    p.add_argument("--processes", type=int, default=2, help="processes to start")
    p.add_argument("--devices_per_process", type=int, default=4, help="fake CPU devices in each")
    p.add_argument("--command", default="train", help="the hybrid-jax command every process runs")
    opts = p.parse_args(argv[:split])
    if split == len(argv):
        raise ValueError("give the train arguments after --, e.g. -- --config configs/tiny.py --workdir runs/mp")
    return launch(argv[split + 1:], opts.processes, opts.devices_per_process, opts.command)

