"""Load a model from whatever directory a user points at: a hybrid_jax workdir, one of its checkpoint
steps, or a Hugging Face BLT directory."""

from __future__ import annotations

import json
import os

from hybrid_jax.checkpoint import CheckpointError, load_model


def load_any(path: str):
    """The BLT stored at `path` (workdir → latest step; `.../checkpoints/N`; or a HF BLT dir)."""
    if not os.path.isdir(path):
        raise CheckpointError(f"{path}: no such checkpoint directory")
    cfg_path = os.path.join(path, "config.json")
    if os.path.isfile(cfg_path):
        try:
            with open(cfg_path) as f:
                data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{cfg_path}: invalid JSON ({e})") from None
        if isinstance(data, dict) and data.get("model_type") == "blt":
            from hybrid_jax.convert import from_hf
            return from_hf(path)[0]
        if not (isinstance(data, dict) and "model" in data):
            raise CheckpointError(f"{cfg_path}: neither a hybrid_jax workdir config (no 'model' key) "
                                  "nor a Hugging Face BLT config (model_type 'blt')")
    return load_model(path)  # a workdir, or a checkpoints/<step> dir whose config is two levels up


def context_of(path: str) -> int | None:
    """Bytes per sequence the model at `path` was built for (BOS included): a training workdir's
    `data.seq_len` + 1, or a Hugging Face config's encoder `max_position_embeddings`; None if unknown."""
    for cfg_path in (os.path.join(path, "config.json"), os.path.join(path, "..", "..", "config.json")):
        if os.path.isfile(cfg_path):
            with open(cfg_path) as f:
                data = json.load(f)
            if data.get("model_type") == "blt":
                return int((data.get("encoder_config") or {}).get("max_position_embeddings") or 24576)
            if "data" in data:
                return int(data["data"]["seq_len"]) + 1
            return None
    return None
