"""Multi-process start-up: `jax.distributed.initialize` under a multi-host launcher or explicit flags."""

from __future__ import annotations

import os

import jax

# Environment variables whose presence means a cluster launcher started us (JAX then auto-detects).
_LAUNCHER_ENV = ("SLURM_NTASKS", "TPU_WORKER_HOSTNAMES", "OMPI_COMM_WORLD_SIZE", "JAX_COORDINATOR_ADDRESS")


def initialize(coordinator: str = "", num_processes: int = 1, process_id: int = 0) -> None:
    """Join the process group. Explicit flags win; otherwise auto-detect; single process does nothing.

    On CPU the cross-process collectives use gloo.
    """
    if coordinator:
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise ValueError(f"--process_id {process_id} must be in [0, --num_processes={num_processes})")
        _cpu_collectives()
        jax.distributed.initialize(coordinator, num_processes, process_id)
        return
    multi_slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1
    if multi_slurm or any(k in os.environ for k in _LAUNCHER_ENV[1:]):
        _cpu_collectives()
        jax.distributed.initialize()


def _cpu_collectives() -> None:
    if os.environ.get("JAX_PLATFORMS", "").startswith("cpu"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
