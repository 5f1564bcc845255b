"""Parameter names: hybrid_jax's nnx paths <-> Hugging Face `BltForCausalLM` state-dict keys."""

from __future__ import annotations

import numpy as np

_PREFIX = {
    "entropy_model": "model.patcher",
    "local_encoder": "model.local_encoder",
    "global_transformer": "model.global_transformer",
    "local_decoder": "model.local_decoder",
    "lm_head": "lm_head",
}


def hf_name(path: tuple) -> tuple[str, bool]:
    """(HF key, transpose?) for an nnx parameter path such as ('local_encoder', 'layers', 0, ..., 'kernel')."""
    parts = [str(p) for p in path]
    if parts[:2] == ["local_encoder", "hash_embed"]:
        return "model.encoder_hash_tok_embedding.weight", False
    head, *middle, leaf = parts
    transpose = leaf == "kernel"  # nnx kernels are [in, out]; torch Linear weights are [out, in]
    return ".".join([_PREFIX[head], *middle, "weight"]), transpose


def is_stacked(path: tuple) -> bool:
    """Whether `path` is a scanned stack's parameter (`layers` not followed by a layer index)."""
    parts = [str(p) for p in path]
    return "layers" in parts and not parts[parts.index("layers") + 1].isdigit()


def layer_path(path: tuple, i: int) -> tuple:
    """The per-layer path of layer `i` inside a stacked parameter's path."""
    at = [str(p) for p in path].index("layers") + 1
    return (*path[:at], i, *path[at:])


def to_hf_arrays(flat_params) -> dict[str, np.ndarray]:
    """{HF key: float32 array} from (path, array) pairs; stacked layers are written one per layer."""
    out = {}
    for path, value in flat_params:
        arr = np.asarray(value, dtype=np.float32)
        pieces = [(layer_path(path, i), a) for i, a in enumerate(arr)] if is_stacked(path) else [(path, arr)]
        for p, a in pieces:
            name, transpose = hf_name(p)
            out[name] = np.ascontiguousarray(a.T if transpose else a)
    return out
