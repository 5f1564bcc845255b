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


def _cluster_launched() -> bool:
    """A multi-process launcher started us (SLURM with more than one task counts, one task does not)."""
    multi_slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1
    return multi_slurm or any(k in os.environ for k in _LAUNCHER_ENV[1:])


def _cpu_collectives() -> None:
    if os.environ.get("JAX_PLATFORMS", "").startswith("cpu"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")


def cpu_device_count(cfg, cores: int) -> int:
    """The most CPU devices, at most `cores`, that the config's mesh (with a -1 axis) and its batch sizes
    divide evenly; 1 when none. A mesh without a -1 axis names its device count: that many, if there
    are as many cores (else 1, and the mesh check says what is wrong)."""
    from hybrid_jax.config import ConfigError
    from hybrid_jax.sharding import mesh_shape, named_devices

    named = named_devices(cfg.mesh)
    if named is not None:
        return named if named <= cores else 1
    micro = cfg.train.batch_size // cfg.train.grad_accum
    for n in range(cores, 1, -1):
        try:
            data, fsdp, _ = mesh_shape(cfg.mesh, n)
        except ConfigError:
            continue
        if micro % (data * fsdp) == 0 and (not cfg.eval.every or cfg.eval.batch_size % (data * fsdp) == 0):
            return n
    return 1


def set_cpu_devices(cfg, requested: str = "auto", coordinator: str = "") -> int:
    """Give JAX's CPU backend `requested` devices before it starts; returns the count set (0: left alone).

    `auto`: one device per core (data parallel across cores; on a 2-core CPU this trained the toy
    config ~25 % faster than one device whose ops XLA splits across both cores), unless the device
    count is already chosen (XLA_FLAGS, `jax_num_cpu_devices`), another platform is asked for, the run
    spans processes, or the backend is already running. An integer sets exactly that many.
    """
    from hybrid_jax.config import ConfigError

    if requested != "auto":
        n = int(requested) if requested.strip().isdigit() else 0
        if n < 1:
            raise ConfigError(f"--cpu_devices must be 'auto' or a positive integer, got {requested!r}")
    else:
        chosen = ("xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
                  or jax.config.jax_num_cpu_devices != -1)
        platforms = os.environ.get("JAX_PLATFORMS", "cpu")
        if chosen or not platforms.startswith("cpu") or coordinator or _cluster_launched():
            return 0
        n = cpu_device_count(cfg, len(os.sched_getaffinity(0)))
        if n == 1:
            return 0
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:
        if requested == "auto":
            return 0
        raise ConfigError(f"--cpu_devices={n}: JAX's backend has already started") from None
    return n
