"""Load a model from whatever a user points at: a hybrid_jax workdir, one of its checkpoint steps
(`WORKDIR@STEP` or `WORKDIR/checkpoints/STEP`), a Hugging Face BLT directory, or a Hugging Face Hub model
id `org/name[@revision]` (read from, or downloaded into, huggingface_hub's cache).

An existing local path always wins: `runs/toy` is the local directory whenever there is one, and only a
source that names nothing on disk and has the form of a Hub id is looked up on the Hub."""

from __future__ import annotations

import dataclasses
import json
import os
import re

from etils import epath

from hybrid_jax.errors import CheckpointError, first_line
from hybrid_jax.storage.checkpoint import load_model
from hybrid_jax.storage.workdir import Workdir

# What a Hub snapshot needs for `from_hf`: the weights of other formats (pytorch_model.bin, Meta's
# consolidated.pth, ...) would only cost download time and disk.
HUB_FILES = ("config.json", "*.safetensors", "*.safetensors.index.json")

# `namespace/name` as the Hub spells them (letters, digits, '-', '_', '.'; not starting with '.' or '-',
# so `./x` and `../x` stay paths), then an optional `@revision`: a branch, tag or commit (branches may
# hold '/', as in `refs/pr/1`).
_HUB_ID = re.compile(r"(?P<repo>[A-Za-z0-9_][A-Za-z0-9_.-]*/[A-Za-z0-9_][A-Za-z0-9_.-]*)(?:@(?P<revision>[^@\s]+))?")


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A local checkpoint directory and, if it is a Hugging Face BLT directory, its config.json."""

    path: str
    hf: dict | None


def _read_json(path: epath.Path):
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: invalid JSON ({e})") from None


def _hf_config(path: str) -> dict | None:
    """The config of a Hugging Face BLT directory (`model_type` "blt"), else None."""
    cfg_path = epath.Path(path) / "config.json"
    if not cfg_path.is_file():
        return None
    data = _read_json(cfg_path)
    if isinstance(data, dict) and data.get("model_type") == "blt":
        return data
    if not (isinstance(data, dict) and "model" in data):
        raise CheckpointError(f"{cfg_path}: neither a hybrid_jax workdir config (no 'model' key) "
                              "nor a Hugging Face BLT config (model_type 'blt')")
    return None


def hub_id(source: str) -> tuple[str, str | None] | None:
    """(repo id, revision or None) if `source` has the form `org/name[@revision]` of a Hub model id."""
    m = _HUB_ID.fullmatch(source)
    return (m["repo"], m["revision"]) if m else None


def _hub_failure(e: Exception) -> str:
    """Why `snapshot_download` failed, in words for one error line (the id is said by the caller)."""
    from huggingface_hub import constants, errors

    if isinstance(e, errors.GatedRepoError):
        return ("a gated model on the Hugging Face Hub: accept its terms on the model page, then log in "
                "(hf auth login, or HF_TOKEN)")
    if isinstance(e, errors.RepositoryNotFoundError):
        return ("no such local path, and no such model on the Hugging Face Hub (a private one needs a "
                "login: hf auth login, or HF_TOKEN)")
    if isinstance(e, errors.RevisionNotFoundError):
        return "the model on the Hugging Face Hub has no such revision (branch, tag or commit)"
    if isinstance(e, errors.HFValidationError):
        return f"no such local path, nor a valid Hugging Face Hub id ({first_line(e)})"
    if isinstance(e, errors.LocalEntryNotFoundError):
        cache = constants.HF_HUB_CACHE
        if isinstance(e, getattr(errors, "IncompleteSnapshotError", ())):  # newer huggingface_hub only
            return f"its snapshot in the Hugging Face cache ({cache}) is incomplete and the Hub cannot be reached"
        if constants.HF_HUB_OFFLINE:
            return f"no such local path, and not in the Hugging Face cache ({cache}) while HF_HUB_OFFLINE=1"
        return f"no such local path, not in the Hugging Face cache ({cache}), and the Hub cannot be reached"
    return f"fetching it from the Hugging Face Hub failed ({type(e).__name__}: {first_line(e)})"


def _check_hub_model(name: str, path: str) -> None:
    """Refuse a snapshot that `from_hf` could not read, with the Hub id in the message (the snapshot's
    path in the cache would tell a user little)."""
    cfg_path = epath.Path(path) / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{name}: the Hugging Face Hub repository has no config.json (not a transformers model)")
    data = _read_json(cfg_path)
    model_type = data.get("model_type") if isinstance(data, dict) else None
    if model_type != "blt":
        raise CheckpointError(f"{name}: not a BLT model on the Hugging Face Hub (model_type {model_type!r}, "
                              "expected 'blt')")
    if not any(f.endswith(".safetensors") for f in os.listdir(path)):
        raise CheckpointError(f"{name}: the Hugging Face Hub repository has no safetensors weights "
                              "(only safetensors are read)")


def hub_snapshot(repo_id: str, revision: str | None = None) -> str:
    """The local snapshot directory of the Hub model `repo_id` at `revision` (default: main).

    Goes through `huggingface_hub.snapshot_download`, so its cache (HF_HUB_CACHE, HF_HOME), its login
    and HF_HUB_OFFLINE=1 (the cache only) apply; only `HUB_FILES` are fetched. Every failure is one
    CheckpointError naming the id.
    """
    name = repo_id + (f"@{revision}" if revision else "")
    try:  # imported here: only a Hub id needs huggingface_hub (and its import costs time)
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(f"{name}: no such local path; to fetch it from the Hugging Face Hub, install "
                              "huggingface_hub (pip install huggingface_hub)") from None
    try:
        path = snapshot_download(repo_id, revision=revision, allow_patterns=list(HUB_FILES))
    except Exception as e:  # noqa: BLE001 (huggingface_hub's errors and whatever its HTTP stack raises)
        raise CheckpointError(f"{name}: {_hub_failure(e)}") from None
    _check_hub_model(name, path)
    return path


def resolve_source(source: str) -> str:
    """The local directory `source` names: an existing path as it is; `PATH@STEP` (PATH a local
    workdir, or not Hub-shaped): step STEP of the workdir PATH; else a Hub id `org/name[@revision]`: its
    snapshot (see `hub_snapshot`); anything else unchanged (the caller reports it missing). Resolving a
    resolved source returns it unchanged."""
    if epath.Path(source).exists():
        return source
    path, at, step = source.rpartition("@")
    if at and step.isdigit() and (epath.Path(path).exists() or hub_id(source) is None):
        return str(Workdir(path).step_dir(int(step)))
    hub = hub_id(source)
    return hub_snapshot(*hub) if hub else source


def locate(source: str) -> Checkpoint:
    """The checkpoint directory `source` names (`resolve_source`), and its HF config if it has one;
    CheckpointError if there is no such directory."""
    path = resolve_source(source)
    if not epath.Path(path).is_dir():
        raise CheckpointError(f"{path}: no such checkpoint directory")
    return Checkpoint(path, _hf_config(path))


def model_config_of(source: str):
    """The model config of what `load_any(source)` would load, without reading any weights."""
    ckpt = locate(source)
    if ckpt.hf is not None:
        from hybrid_jax.storage.hf import read_hf_config
        return read_hf_config(ckpt.path)
    return Workdir.locate(ckpt.path)[0].model_config()


def load_any(source: str):
    """The BLT stored at `source`: a workdir (its latest step), `.../checkpoints/N` or `WORKDIR@N`, a
    Hugging Face BLT directory, or a Hub id `org/name[@revision]`."""
    ckpt = locate(source)
    if ckpt.hf is not None:
        from hybrid_jax.storage.hf import from_hf
        return from_hf(ckpt.path)[0]
    return load_model(ckpt.path)


def context_of(source: str) -> int | None:
    """Bytes per sequence the model at `source` was built for (BOS included): a training run's
    `data.seq_len` + 1, or a Hugging Face config's encoder `max_position_embeddings`; None if unknown."""
    ckpt = locate(source)
    if ckpt.hf is not None:
        return int((ckpt.hf.get("encoder_config") or {}).get("max_position_embeddings") or 24576)
    data = Workdir.locate(ckpt.path)[0].run_node("data")
    return int(data["seq_len"]) + 1 if data and "seq_len" in data else None
