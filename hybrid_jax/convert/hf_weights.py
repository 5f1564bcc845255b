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


def to_hf_arrays(flat_params) -> dict[str, np.ndarray]:
    """{HF key: float32 array} from (path, array) pairs."""
    out = {}
    for path, value in flat_params:
        name, transpose = hf_name(path)
        arr = np.asarray(value, dtype=np.float32)
        out[name] = np.ascontiguousarray(arr.T if transpose else arr)
    return out
