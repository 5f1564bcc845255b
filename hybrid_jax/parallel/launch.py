"""N local CPU processes, K fake devices each, one `jax.distributed` job: multi-host logic without a pod.

`hybrid-jax launch --processes 2 --devices_per_process 4 -- --config configs/toy.py
--workdir runs/mp` runs `python -m hybrid_jax train ARGS` in every process with the coordinator flags
added. Collectives use gloo; process 0 alone prints and writes metrics. The exit code is the first
non-zero one among the processes; SIGINT/SIGTERM are passed on to all of them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def commands(command: str, args: list[str], processes: int, port: int) -> list[list[str]]:
    return [[sys.executable, "-m", "hybrid_jax", command, *args, "--coordinator", f"127.0.0.1:{port}",
             "--num_processes", str(processes), "--process_id", str(i)] for i in range(processes)]


def launch(args: list[str], processes: int, devices_per_process: int, command: str = "train") -> int:
    """Run `hybrid-jax COMMAND ARGS` in `processes` CPU processes and wait for all; returns the first non-zero exit code."""
    if processes < 1 or devices_per_process < 1:
        raise ValueError("--processes and --devices_per_process must be >= 1")
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}")
    procs = [subprocess.Popen(cmd, env=env) for cmd in commands(command, args, processes, free_port())]

    def forward(signum, frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)
    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        codes = [p.wait() for p in procs]
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    return next((c for c in codes if c), 0)
