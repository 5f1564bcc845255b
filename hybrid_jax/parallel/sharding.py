"""Device mesh and sharding rules, in one place.

Parameters get logical axes from their names (`q_proj.kernel` is `[embed, heads]`, ...); `RULES` maps
logical axes to mesh axes: fsdp shards weights (and so the optimizer state) along `embed`, tensor shards
heads, MLP hidden and vocabulary (Megatron-style), data and fsdp together shard the batch. A dimension
that a mesh axis does not divide stays replicated.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from hybrid_jax.errors import ConfigError

AXES = ("data", "fsdp", "tensor")
RULES = {"embed": "fsdp", "heads": "tensor", "mlp": "tensor", "vocab": "tensor", "rows": "fsdp", None: None}
BATCH = ("data", "fsdp")

_KERNEL_AXES = {
    "q_proj": ("embed", "heads"), "k_proj": ("embed", "heads"), "v_proj": ("embed", "heads"),
    "o_proj": ("heads", "embed"), "gate_proj": ("embed", "mlp"), "up_proj": ("embed", "mlp"),
    "down_proj": ("mlp", "embed"), "lm_head": ("embed", "vocab"),
}


def mesh_shape(mesh_cfg, n_devices: int) -> tuple[int, int, int]:
    """(data, fsdp, tensor) sizes; one -1 takes the remaining devices."""
    sizes = [int(mesh_cfg[a]) for a in AXES]
    if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
        raise ConfigError(f"mesh sizes must be positive with at most one -1, got {dict(zip(AXES, sizes))}")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if n_devices % known:
            raise ConfigError(f"mesh {dict(zip(AXES, sizes))} does not divide the {n_devices} devices")
        sizes[sizes.index(-1)] = n_devices // known
    if math.prod(sizes) != n_devices:
        raise ConfigError(f"mesh data={sizes[0]} x fsdp={sizes[1]} x tensor={sizes[2]} = {math.prod(sizes)} "
                          f"devices, but {n_devices} are available")
    return tuple(sizes)


def named_devices(mesh_cfg) -> int | None:
    """The device count a mesh without a -1 axis names (data x fsdp x tensor); None if one axis is -1."""
    sizes = [int(mesh_cfg[a]) for a in AXES]
    return None if -1 in sizes else math.prod(sizes)


def make_mesh(mesh_cfg, devices=None) -> Mesh:
    devices = jax.devices() if devices is None else devices
    try:
        shape = mesh_shape(mesh_cfg, len(devices))
    except ConfigError as e:
        named = named_devices(mesh_cfg)
        if named and devices[0].platform == "cpu" and jax.process_count() == 1:
            raise ConfigError(f"{e} (on CPU, --cpu_devices {named} gives that many host devices)") from None
        raise
    return Mesh(np.asarray(devices).reshape(shape), AXES)


def logical_axes(path: tuple, ndim: int) -> tuple:
    """Logical axis names of the parameter at nnx path `path`; leading extra dimensions (the
    `[layers]` axis of a scanned stack) are unsharded."""
    leaf, parent = str(path[-1]), str(path[-2]) if len(path) > 1 else ""
    axes = ()
    if leaf == "embedding":
        axes = ("rows", "embed") if parent == "hash_embed" else ("vocab", "embed")
    elif leaf == "kernel":
        axes = _KERNEL_AXES.get(parent, ("embed", None))
    return (None,) * (ndim - len(axes)) + axes


def spec_for(path: tuple, shape: tuple, mesh: Mesh) -> P:
    """Each dimension takes its rule's mesh axis if the axis divides it and no earlier dimension took
    it (a hash table with a prime row count is then split along its width instead)."""
    axes = []
    for dim, name in zip(shape, logical_axes(path, len(shape))):
        axis = RULES[name]
        ok = axis and dim % mesh.shape[axis] == 0 and axis not in axes
        axes.append(axis if ok else None)
    return P(*axes)


def param_shardings(params, mesh: Mesh):
    """NamedShardings for a params tree (nested dict of arrays or shape structs)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, x: NamedSharding(mesh, spec_for(path_names(path), x.shape, mesh)), params)


def state_shardings(tree, params_shardings, mesh: Mesh):
    """Shardings for any tree whose leaves mirror parameters at the end of their paths (optimizer
    moments); everything else (step counts, scalars) is replicated."""
    by_path = {path_names(p): s for p, s in jax.tree_util.tree_flatten_with_path(params_shardings)[0]}
    replicated = NamedSharding(mesh, P())

    def pick(path, x):
        names = path_names(path)
        for i in range(len(names)):
            s = by_path.get(names[i:])
            if s is not None and len(s.spec) <= len(x.shape):
                return s
        return replicated
    return jax.tree_util.tree_map_with_path(pick, tree)


def check_rows(name: str, rows: int, mesh: Mesh) -> None:
    """A batch of `rows` (config key `name`) must split evenly over the data x fsdp devices."""
    shards = math.prod(mesh.shape[a] for a in BATCH)
    if rows % shards:
        raise ConfigError(f"{name}={rows} must be divisible by the mesh's data x fsdp = {shards} devices")


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """`[batch, length]` arrays: rows over data x fsdp."""
    return NamedSharding(mesh, P(BATCH, None))


def path_names(path) -> tuple[str, ...]:
    """The string keys of a pytree path (dict keys, attribute names, list indices)."""
    return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def local_rows(sharding: NamedSharding, shape: tuple) -> slice:
    """The contiguous block of batch rows (axis 0 of a global array of `shape`) this process's devices
    hold."""
    idx = sharding.addressable_devices_indices_map(shape).values()
    starts = sorted({(s[0].start or 0) for s in idx})
    stops = sorted({(s[0].stop if s[0].stop is not None else shape[0]) for s in idx})
    lo, hi = starts[0], stops[-1]
    covered = sum(b - a for a, b in sorted(set(zip(starts, stops))))
    if covered != hi - lo:
        raise ConfigError("this mesh gives a process non-contiguous batch rows; put data/fsdp first")
    return slice(lo, hi)
