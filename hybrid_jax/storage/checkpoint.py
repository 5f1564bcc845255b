"""Orbax items of a workdir's steps (the layout itself is `Workdir`'s).

Each step holds a `params` item (the model's `nnx.Param` state as a nested dict, see
`hybrid_jax.model.params`); training adds `opt_state` and `meta` beside it. `load_model` accepts a
workdir (latest step) or one step directory.
"""

from __future__ import annotations

import jax
import orbax.checkpoint as ocp

from hybrid_jax.errors import CheckpointError, error_text, innermost
from hybrid_jax.model import BLT
from hybrid_jax.model.params import abstract_model, flat_items, model_with_params, param_tree
from hybrid_jax.storage.workdir import Workdir, write_error

__all__ = ["CheckpointError", "load_model", "save_model", "save_train_state", "restore_train_state", "read_meta"]


def save_model(model: BLT, workdir: str, step: int = 0) -> str:
    """Write `model` as step `step` of `workdir` (config.json + Orbax params). Returns the step dir."""
    wd = Workdir(workdir)
    wd.write_config(model.config)
    with wd.manager() as mngr:
        if step in mngr.all_steps():
            raise CheckpointError(f"{workdir}: step {step} already exists; not overwriting it")
        try:
            mngr.save(step, args=ocp.args.Composite(params=ocp.args.StandardSave(param_tree(model))))
            mngr.wait_until_finished()
        except Exception as e:  # noqa: BLE001 (Orbax and TensorStore raise anything: ValueError, bare Exception)
            raise write_error(e, f"saving step {step} to {wd.checkpoints}") from None
    return str(wd.step_dir(step))


def _reason(e: BaseException) -> str:
    """Why an Orbax read failed, for one error line. Orbax wraps TensorStore's error (which names the key
    and the file) in a bare `Exception` whose text is a page of TensorStore spec: the innermost cause is
    the one worth showing."""
    return error_text(innermost(e))


def _check_shapes(step_dir, target: dict) -> None:
    """Name the first parameter whose presence or shape differs between a checkpoint and its config."""
    try:
        with ocp.StandardCheckpointer() as ckptr:  # closed, or its threads outlive an error exit
            meta = ckptr.metadata(step_dir / "params").item_metadata
    except Exception as e:  # noqa: BLE001 (TensorStore raises bare Exceptions for damaged files)
        raise CheckpointError(f"{step_dir}: unreadable checkpoint metadata ({_reason(e)})") from None
    leaves = jax.tree_util.tree_flatten_with_path(meta)[0] if meta is not None else []
    if not leaves:
        raise CheckpointError(f"{step_dir}: checkpoint is corrupt or incomplete (no parameter metadata)")
    stored = {".".join(str(getattr(k, "key", k)) for k in path): tuple(m.shape) for path, m in leaves}
    wanted = {".".join(path): tuple(t.shape) for path, t in flat_items(target)}
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
    wd, step = Workdir.locate(path)
    cfg = wd.model_config()
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, param_tree(abstract_model(cfg)))
    with wd.manager() as mngr:
        step = mngr.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"{wd}: no checkpoint steps under checkpoints/")
        _check_shapes(wd.step_dir(step), target)
        try:
            restored = mngr.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(target)))
        except Exception as e:  # noqa: BLE001 (whatever a damaged file makes Orbax or TensorStore raise)
            raise CheckpointError(f"{wd.step_dir(step)}: checkpoint is corrupt or unreadable ({_reason(e)})") from None
    return model_with_params(cfg, restored["params"])


def read_meta(path: str) -> dict | None:
    """The `meta` item (step, seed, data state, ...) of a training checkpoint; None if it has none."""
    wd, step = Workdir.locate(path)
    try:
        with wd.manager() as mngr:
            step = mngr.latest_step() if step is None else step
            if step is None:
                return None
            return dict(mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])
    except Exception:  # noqa: BLE001 (a damaged meta item reads as no meta; the params say what is wrong)
        return None


def save_train_state(mngr: ocp.CheckpointManager, step: int, state: dict, meta: dict, force=False) -> bool:
    """Save params, optimizer state and `meta` (step, seed, data iterator state) as step `step`."""
    return mngr.save(step, force=force, args=ocp.args.Composite(
        params=ocp.args.StandardSave(state["params"]),
        opt_state=ocp.args.StandardSave(state["opt_state"]),
        meta=ocp.args.JsonSave(meta)))


def restore_train_state(mngr: ocp.CheckpointManager, step: int, abstract_state: dict) -> tuple[dict, dict]:
    """(state, meta) of step `step`, placed with the shardings of `abstract_state`'s leaves
    (ShapeDtypeStructs with `.sharding`): restoring onto another mesh re-shards."""
    step_dir = mngr.directory / str(step)
    _check_shapes(step_dir, abstract_state["params"])
    try:
        restored = mngr.restore(step, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(abstract_state["params"]),
            opt_state=ocp.args.StandardRestore(abstract_state["opt_state"]),
            meta=ocp.args.JsonRestore()))
    except Exception as e:  # noqa: BLE001 (whatever a damaged file makes Orbax or TensorStore raise)
        raise CheckpointError(f"{step_dir}: corrupt or incompatible training checkpoint ({_reason(e)})") from None
    meta = dict(restored["meta"])
    state = {"params": restored["params"], "opt_state": restored["opt_state"],
             "step": abstract_state["step"]}
    return state, meta
