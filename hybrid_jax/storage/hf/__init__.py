"""Hugging Face BLT <-> hybrid_jax conversion, without torch.

`from_hf(path)` reads `config.json` + `model.safetensors` (or a sharded index; float32, bfloat16 or
float16 tensors) with safetensors' numpy API; `to_hf(model, config, out_dir, dtype=...)` writes files that
`BltForCausalLM.from_pretrained` loads with no missing or unexpected keys.
"""

from __future__ import annotations

import json
import os

import ml_dtypes
import numpy as np
from flax import nnx
from safetensors import safe_open
from safetensors.numpy import save_file

from hybrid_jax.errors import ConfigError, ConvertError
from hybrid_jax.model.params import abstract_model, model_with_params
from hybrid_jax.storage.hf.config import hf_config_from_model, hf_divergences, model_config_from_hf
from hybrid_jax.storage.hf.weights import hf_name, is_stacked, layer_path, to_hf_arrays

__all__ = ["ConvertError", "EXPORT_DTYPES", "from_hf", "to_hf", "read_hf_config", "hf_divergences"]

# An export's dtype (config.json's `torch_dtype`) -> the numpy dtype its safetensors hold (numpy itself
# has no bfloat16; ml_dtypes' is the one jax uses, and safetensors writes it as BF16).
EXPORT_DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16}


def read_hf_config(path: str):
    """The hybrid_jax model config of the Hugging Face BLT directory `path`."""
    cfg_path = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_path):
        raise ConvertError(f"{path}: no config.json (not a Hugging Face model directory)")
    try:
        with open(cfg_path) as f:
            return model_config_from_hf(json.load(f))
    except json.JSONDecodeError as e:
        raise ConvertError(f"{cfg_path}: invalid JSON ({e})") from None
    except ConfigError as e:
        raise ConvertError(f"{cfg_path}: {e}") from None


def _weight_files(path: str) -> list[str]:
    single = os.path.join(path, "model.safetensors")
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(single):
        return [single]
    if os.path.isfile(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        return [os.path.join(path, s) for s in shards]
    raise ConvertError(f"{path}: no model.safetensors or model.safetensors.index.json")


def _read_tensors(path: str) -> dict[str, np.ndarray]:
    tensors = {}
    for file in _weight_files(path):
        if not os.path.isfile(file):
            raise ConvertError(f"{file}: shard listed in the index is missing")
        try:
            with safe_open(file, framework="np") as f:
                for key in f.keys():
                    tensors[key] = f.get_tensor(key)
        except Exception as e:  # safetensors raises its own types for truncated or invalid files
            raise ConvertError(f"{file}: unreadable safetensors file ({e})") from None
    return tensors


def from_hf(path: str):
    """(model, config) from a Hugging Face BLT directory (config.json + safetensors weights)."""
    cfg = read_hf_config(path)
    tensors = _read_tensors(path)
    graphdef, state = nnx.split(abstract_model(cfg), nnx.Param)
    params, used = {}, set()
    for p, var in nnx.to_flat_state(state):
        shape = tuple(var.shape)
        if is_stacked(p):
            layers = [_hf_tensor(path, tensors, layer_path(p, i), shape[1:], used) for i in range(shape[0])]
            _set(params, p, np.stack(layers))
        else:
            _set(params, p, _hf_tensor(path, tensors, p, shape, used))
    extra = sorted(set(tensors) - used)
    if extra:
        raise ConvertError(f"{path}: unexpected tensor {extra[0]}" + (f" (+{len(extra) - 1} more)" if len(extra) > 1 else ""))
    return model_with_params(cfg, params), cfg


def _hf_tensor(path: str, tensors: dict, param_path: tuple, shape: tuple, used: set) -> np.ndarray:
    """The float32 array for one nnx parameter of `shape` from HF `tensors` (transposed as needed)."""
    name, transpose = hf_name(param_path)
    if name not in tensors:
        raise ConvertError(f"{path}: missing tensor {name}")
    arr = tensors[name]
    expected = tuple(reversed(shape)) if transpose else shape
    if tuple(arr.shape) != expected:
        raise ConvertError(f"{path}: tensor {name} has shape {tuple(arr.shape)}, expected {expected}")
    used.add(name)
    arr = np.asarray(arr, dtype=np.float32)
    return arr.T if transpose else arr


def _set(tree: dict, path, value) -> None:
    *head, leaf = [str(p) for p in path]
    for k in head:
        tree = tree.setdefault(k, {})
    tree[leaf] = value


def _model_node(config):
    return config.model if "model" in config else config


def _cast(arrays: dict[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    """`arrays` with every floating tensor in the export dtype `dtype` (round to nearest even)."""
    target = EXPORT_DTYPES[dtype]
    return {k: a.astype(target) if np.issubdtype(a.dtype, np.floating) else a for k, a in arrays.items()}


def _torch_tensor(torch, a: np.ndarray):
    """`a` as a torch tensor; torch cannot take ml_dtypes' bfloat16 from numpy, so its bits go through
    int16 (the same 16 bits, no second rounding)."""
    if a.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def to_hf(model, config, out_dir: str, force: bool = False, torch_bin: bool = False,
          strict: bool = False, dtype: str = "float32") -> list[str]:
    """Write `config.json` + `model.safetensors` (and `pytorch_model.bin` if `torch_bin`) to `out_dir`.

    The weights are written in `dtype` ("float32" or "bfloat16", see `EXPORT_DTYPES`), which config.json
    names as `torch_dtype` (so `from_pretrained` loads them in it). Refuses a non-empty `out_dir` unless
    `force`, and with `strict` a model whose export Hugging Face would not reproduce (`hf_divergences`).
    Returns the written paths.
    """
    if dtype not in EXPORT_DTYPES:
        raise ConvertError(f"export dtype {dtype!r}: expected one of {', '.join(EXPORT_DTYPES)}")
    try:
        hf_cfg = hf_config_from_model(_model_node(config))
    except ConfigError as e:
        raise ConvertError(str(e)) from None
    hf_cfg["torch_dtype"] = dtype  # the key transformers 4 and 5 both read (5 also has "dtype")
    differ = hf_divergences(_model_node(config))
    if strict and differ:
        raise ConvertError(f"Hugging Face would not reproduce this model (--strict): {'; '.join(differ)}")
    if torch_bin:
        try:
            import torch
        except ImportError:
            raise ConvertError("--torch-bin needs torch installed (pip install torch)") from None
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not force:
        raise ConvertError(f"{out_dir} is not empty; pass --force (force=True) to overwrite")
    os.makedirs(out_dir, exist_ok=True)
    arrays = _cast(to_hf_arrays(nnx.to_flat_state(nnx.state(model, nnx.Param))), dtype)
    written = [os.path.join(out_dir, "config.json"), os.path.join(out_dir, "model.safetensors")]
    with open(written[0], "w") as f:
        json.dump(hf_cfg, f, indent=2)
    save_file(arrays, written[1], metadata={"format": "pt"})
    if torch_bin:
        written.append(os.path.join(out_dir, "pytorch_model.bin"))
        torch.save({k: _torch_tensor(torch, v) for k, v in arrays.items()}, written[-1])
    return written
