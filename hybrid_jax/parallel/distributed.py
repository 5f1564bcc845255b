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
    if _cluster_launched():
        _cpu_collectives()
        jax.distributed.initialize()


def is_main_process() -> bool:
    """Process 0: the one that prints, writes logs and config.json, and holds the workdir's lock."""
    return jax.process_index() == 0


def _cluster_launched() -> bool:
    """A multi-process launcher started us (SLURM with more than one task counts, one task does not)."""
    multi_slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1
    return multi_slurm or any(k in os.environ for k in _LAUNCHER_ENV[1:])


def _cpu_collectives() -> None:
    if os.environ.get("JAX_PLATFORMS", "").startswith("cpu"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")


def cpu_device_count(cfg, cores: int) -> int:
    """Devices for `--cpu_devices auto`: a mesh without a -1 axis names its count, which it gets if there
    are as many cores (else 1, and the mesh check says what is wrong); any other mesh gets one device,
    whose ops XLA spreads over all cores. One device per core repeats the optimizer on every device
    and adds a gradient all-reduce: on the 2-core CPU, one device trained the toy config at 5,718
    bytes/s against 4,874 with two, and an in-process A/B took 0.90 of the two-device step time."""
    from hybrid_jax.parallel.sharding import named_devices

    named = named_devices(cfg.mesh)
    return named if named is not None and named <= cores else 1


def set_cpu_devices(cfg, requested: str = "auto", coordinator: str = "") -> int:
    """Give JAX's CPU backend `requested` devices before it starts; returns the count set (0: left alone).

    `auto`: what `cpu_device_count` picks (one device, unless the mesh names a count), unless the device
    count is already chosen (XLA_FLAGS, `jax_num_cpu_devices`), another platform is asked for, the run
    spans processes, or the backend is already running. An integer sets exactly that many.
    """
    from hybrid_jax.errors import ConfigError

    if requested == "auto":
        if coordinator:
            return 0
        n = cpu_device_count(cfg, len(os.sched_getaffinity(0)))
        return n if n > 1 and offer_cpu_devices(n) else 0
    n = int(requested) if requested.strip().isdigit() else 0
    if n < 1:
        raise ConfigError(f"--cpu_devices must be 'auto' or a positive integer, got {requested!r}")
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:
        raise ConfigError(f"--cpu_devices={n}: JAX's backend has already started") from None
    return n


def offer_cpu_devices(n: int) -> bool:
    """Give JAX's CPU backend `n` devices unless its count is already chosen (XLA_FLAGS,
    `jax_num_cpu_devices`), another platform is asked for, a multi-process launcher started us, or the
    backend is running; True if it did."""
    chosen = ("xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
              or jax.config.jax_num_cpu_devices != -1)
    if chosen or not os.environ.get("JAX_PLATFORMS", "cpu").startswith("cpu") or _cluster_launched():
        return False
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:
        return False
    return True
