"""Model directories on disk: `WORKDIR/config.json` plus Orbax steps under `WORKDIR/checkpoints/<step>/`.

Each step holds a `params` item (the model's `nnx.Param` state as a nested dict); training adds its own
items beside it. `load_model` accepts a workdir (latest step) or one step directory.
"""

from __future__ import annotations

import json
import os

import jax
import orbax.checkpoint as ocp
from flax import nnx

from hybrid_jax.config import ConfigError, model_from_dict
from hybrid_jax.model import BLT


class CheckpointError(ValueError):
    """A checkpoint or workdir is missing, corrupt or incompatible."""


def abstract_model(cfg) -> BLT:
    """The model with shapes only (no memory allocated)."""
    return nnx.eval_shape(lambda: BLT(cfg, nnx.Rngs(0)))


def param_tree(model: BLT) -> dict:
    """Parameters as a nested dict of arrays (list indices become string keys)."""
    return _stringify(nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def _stringify(tree):
    if isinstance(tree, dict):
        return {str(k): _stringify(v) for k, v in tree.items()}
    return tree


def model_template(cfg):
    """(graphdef, flat abstract Param state) of the model of config `cfg`."""
    graphdef, state = nnx.split(abstract_model(cfg), nnx.Param)
    return graphdef, nnx.to_flat_state(state)


def assemble(graphdef, flat_template, params: dict) -> BLT:
    """A model from a template and a params tree (as from `param_tree`); works on tracers too."""
    values = {tuple(str(p) for p in path): v for path, v in _flatten(params)}
    flat = [(path, var.replace(values[tuple(str(p) for p in path)])) for path, var in flat_template]
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


def model_with_params(cfg, params: dict) -> BLT:
    """A model of config `cfg` holding `params` (as from `param_tree`)."""
    return assemble(*model_template(cfg), params)


def _flatten(tree, prefix=()):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _flatten(v, prefix + (k,))
        else:
            yield prefix + (k,), v


def write_config(workdir: str, cfg) -> None:
    """`WORKDIR/config.json`: a whole run config (with a `model` node) or a bare model config."""
    tree = cfg.to_dict()
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(tree if "model" in tree else {"model": tree}, f, indent=2, sort_keys=True)


def read_config(workdir: str):
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise CheckpointError(f"{workdir}: no config.json (not a hybrid_jax workdir)")
    try:
        with open(path) as f:
            data = json.load(f)
        return model_from_dict(data["model"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: unreadable config ({type(e).__name__}: {e})") from None
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None


def manager(workdir: str, **options) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")),
                                 options=ocp.CheckpointManagerOptions(**options))


def save_model(model: BLT, workdir: str, step: int = 0) -> str:
    """Write `model` as step `step` of `workdir` (config.json + Orbax params). Returns the step dir."""
    write_config(workdir, model.config)
    with manager(workdir) as mngr:
        if step in mngr.all_steps():
            raise CheckpointError(f"{workdir}: step {step} already exists; not overwriting it")
        mngr.save(step, args=ocp.args.Composite(params=ocp.args.StandardSave(param_tree(model))))
        mngr.wait_until_finished()
    return os.path.join(workdir, "checkpoints", str(step))


def _resolve(path: str) -> tuple[str, int | None]:
    """(workdir, step) for a workdir or a `.../checkpoints/<step>` directory."""
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise CheckpointError(f"{path}: no such directory")
    parent = os.path.dirname(path)
    if os.path.basename(parent) == "checkpoints" and os.path.basename(path).isdigit():
        return os.path.dirname(parent), int(os.path.basename(path))
    return path, None


def _check_shapes(step_dir: str, target: dict) -> None:
    """Name the first parameter whose presence or shape differs between a checkpoint and its config."""
    try:
        meta = ocp.StandardCheckpointer().metadata(os.path.join(step_dir, "params")).item_metadata
    except (ValueError, FileNotFoundError, OSError) as e:
        raise CheckpointError(f"{step_dir}: unreadable checkpoint metadata ({type(e).__name__})") from None
    leaves = jax.tree_util.tree_flatten_with_path(meta)[0] if meta is not None else []
    if not leaves:
        raise CheckpointError(f"{step_dir}: checkpoint is corrupt or incomplete (no parameter metadata)")
    stored = {".".join(str(getattr(k, "key", k)) for k in path): tuple(m.shape) for path, m in leaves}
    wanted = {".".join(path): tuple(t.shape) for path, t in _flatten(target)}
    for name, shape in wanted.items():
        if name not in stored:
            raise CheckpointError(f"{step_dir}: parameter {name} is missing (checkpoint does not match config.json)")
        if stored[name] != shape:
            raise CheckpointError(f"{step_dir}: parameter {name} has shape {stored[name]}, config.json "
                                  f"expects {shape} (checkpoint does not match config.json)")
    extra = sorted(set(stored) - set(wanted))
    if extra:
        raise CheckpointError(f"{step_dir}: unexpected parameter {extra[0]} (checkpoint does not match config.json)")


def load_model(path: str) -> BLT:
    """The model stored in a workdir (latest step) or a step directory."""
    workdir, step = _resolve(path)
    cfg = read_config(workdir)
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, param_tree(abstract_model(cfg)))
    with manager(workdir) as mngr:
        step = mngr.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"{workdir}: no checkpoint steps under checkpoints/")
        _check_shapes(os.path.join(workdir, "checkpoints", str(step)), target)
        try:
            restored = mngr.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(target)))
        except (ValueError, KeyError, FileNotFoundError, OSError) as e:
            raise CheckpointError(f"{workdir}: step {step} is corrupt or unreadable ({type(e).__name__})") from None
    return model_with_params(cfg, restored["params"])


def save_train_state(mngr: ocp.CheckpointManager, step: int, state: dict, meta: dict, force=False) -> bool:
    """Save params, optimizer state and `meta` (step, seed, data iterator state) as step `step`."""
    return mngr.save(step, force=force, args=ocp.args.Composite(
        params=ocp.args.StandardSave(state["params"]),
        opt_state=ocp.args.StandardSave(state["opt_state"]),
        meta=ocp.args.JsonSave(meta)))


def restore_train_state(mngr: ocp.CheckpointManager, step: int, abstract_state: dict) -> tuple[dict, dict]:
    """(state, meta) of step `step`, placed with the shardings of `abstract_state`'s leaves
    (ShapeDtypeStructs with `.sharding`): restoring onto another mesh re-shards."""
    step_dir = os.path.join(str(mngr.directory), str(step))
    _check_shapes(step_dir, abstract_state["params"])
    try:
        restored = mngr.restore(step, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(abstract_state["params"]),
            opt_state=ocp.args.StandardRestore(abstract_state["opt_state"]),
            meta=ocp.args.JsonRestore()))
    except (ValueError, KeyError, FileNotFoundError, OSError) as e:
        raise CheckpointError(f"{step_dir}: corrupt or incompatible training checkpoint ({type(e).__name__})") from None
    meta = dict(restored["meta"])
    state = {"params": restored["params"], "opt_state": restored["opt_state"],
             "step": abstract_state["step"]}
    return state, meta
