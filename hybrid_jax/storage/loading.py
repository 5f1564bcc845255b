"""Load a model from whatever directory a user points at: a hybrid_jax workdir, one of its checkpoint
steps, or a Hugging Face BLT directory."""

from __future__ import annotations

import json

from etils import epath

from hybrid_jax.storage.checkpoint import load_model
from hybrid_jax.storage.workdir import CheckpointError, Workdir


def _hf_config(path: str) -> dict | None:
    """The config of a Hugging Face BLT directory (`model_type` "blt"), else None."""
    cfg_path = epath.Path(path) / "config.json"
    if not cfg_path.is_file():
        return None
    try:
        data = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_path}: invalid JSON ({e})") from None
    if isinstance(data, dict) and data.get("model_type") == "blt":
        return data
    if not (isinstance(data, dict) and "model" in data):
        raise CheckpointError(f"{cfg_path}: neither a hybrid_jax workdir config (no 'model' key) "
                              "nor a Hugging Face BLT config (model_type 'blt')")
    return None


def resolve_source(source: str) -> str:
    """The directory `PATH` or `PATH@STEP` (a step of a workdir) names."""
    path, at, step = source.rpartition("@")
    if at and step.isdigit():
        return str(Workdir(path).step_dir(int(step)))
    return source


def model_config_of(path: str):
    """The model config of what `load_any(path)` would load, without reading any weights."""
    path = resolve_source(path)
    if not epath.Path(path).is_dir():
        raise CheckpointError(f"{path}: no such checkpoint directory")
    hf = _hf_config(path)
    if hf is not None:
        from hybrid_jax.storage.hf import read_hf_config
        return read_hf_config(path)
    return Workdir.locate(path)[0].model_config()


def load_any(path: str):
    """The BLT stored at `path` (workdir → latest step; `.../checkpoints/N` or `WORKDIR@N`; or a HF BLT
    dir)."""
    path = resolve_source(path)
    if not epath.Path(path).is_dir():
        raise CheckpointError(f"{path}: no such checkpoint directory")
    if _hf_config(path) is not None:
        from hybrid_jax.storage.hf import from_hf
        return from_hf(path)[0]
    return load_model(path)


def context_of(path: str) -> int | None:
    """Bytes per sequence the model at `path` was built for (BOS included): a training run's
    `data.seq_len` + 1, or a Hugging Face config's encoder `max_position_embeddings`; None if unknown."""
    hf = _hf_config(path)
    if hf is not None:
        return int((hf.get("encoder_config") or {}).get("max_position_embeddings") or 24576)
    data = Workdir.locate(path)[0].run_node("data")
    return int(data["seq_len"]) + 1 if data and "seq_len" in data else None
