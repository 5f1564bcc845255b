"""`patch_view`: the patches (and entropies) a model gives one text, with the BOS byte left out."""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import ml_collections
import numpy as np

from hybrid_jax import tokenizer
from hybrid_jax.config import PATCHING_MODES
from hybrid_jax.model import patching


@dataclasses.dataclass(frozen=True)
class PatchView:
    """How one model patches one text.

    data: the text's bytes, `n` of them (the BOS id the model sees first is not shown: it is always a
      patch of its own).
    starts: bool `[n]`, True where byte i begins a patch (`starts[0]` is always True).
    entropies: float32 `[n]` or None. `entropies[i]` is the entropy (nats) of the entropy model's
      prediction of byte i from the bytes before it, so for i >= 1 byte i begins a patch when
      `entropies[i] > threshold` (or when `max_patch_length` forces a cut). None unless mode is entropy.
      (`rule` says which of Meta's entropy rules applies; see `hybrid_jax.model.patching`).
    mode, threshold, patch_size, max_patch_length, max_patches, rule, threshold_add: the patching
      that was applied.
    label: a short name for the view (checkpoint, threshold), for titles and compare mode.
    """
    data: bytes
    starts: np.ndarray
    entropies: np.ndarray | None
    mode: str
    threshold: float
    patch_size: int
    max_patch_length: int
    max_patches: int = 0
    rule: str = "global"
    threshold_add: float | None = None
    label: str = ""

    @property
    def spans(self) -> list[tuple[int, int]]:
        """`[start, end)` byte range of each patch, in order; they tile `data`."""
        begins = np.flatnonzero(self.starts).tolist()
        return list(zip(begins, begins[1:] + [len(self.data)]))

    @property
    def lengths(self) -> np.ndarray:
        """int `[patches]`: bytes per patch; sums to `len(data)`."""
        return np.diff(np.append(np.flatnonzero(self.starts), len(self.data)))


def patching_config(model, mode=None, threshold=None, patch_size=None, max_patch_length=None):
    """The model's patching config with the given fields replaced; ValueError for bad values."""
    cfg = ml_collections.ConfigDict(model.config.patching.to_dict())
    cfg.mode = mode or cfg.mode
    if cfg.mode not in PATCHING_MODES:
        raise ValueError(f"unknown patching mode {cfg.mode!r}; expected one of {', '.join(PATCHING_MODES)}")
    if threshold is not None:
        if cfg.mode != "entropy":
            raise ValueError(f"a threshold applies only to entropy patching, not {cfg.mode!r}")
        if not math.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number, got {threshold}")
        cfg.threshold = float(threshold)
    if patch_size is not None:
        if patch_size < 1:
            raise ValueError(f"patch_size must be >= 1, got {patch_size}")
        cfg.patch_size = int(patch_size)
    if max_patch_length is not None:
        if max_patch_length < 0:
            raise ValueError(f"max_patch_length must be >= 0 (0: no limit), got {max_patch_length}")
        cfg.max_patch_length = int(max_patch_length)
    return cfg


def patch_view(model, text: bytes | str, threshold=None, mode=None, patch_size=None,
               max_patch_length=None, label: str = "") -> PatchView:
    """Patch `text` (str is UTF-8 encoded) with `model`, optionally overriding its patching config.

    Raises ValueError for empty text or bad overrides. Runs the entropy model only in entropy mode.
    """
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if not data:
        raise ValueError("empty text: nothing to patch")
    cfg = patching_config(model, mode, threshold, patch_size, max_patch_length)
    ids = jnp.asarray([[tokenizer.BOS_ID] + [b + tokenizer.OFFSET for b in data]], jnp.int32)
    entropies = None
    if cfg.mode == "entropy":
        entropies = patching.entropies_from_logits(model.entropy_model(ids))
    # starts `[1, n + 2]` over BOS + bytes + "next byte"; drop BOS and the unseen next byte.
    starts = np.asarray(patching.compute_starts(cfg, ids, entropies))[0, 1:-1]
    # entropies[t] (over ids) is about id t + 1, which is byte t (ids hold BOS first).
    # The last one is about the unseen byte after the text; it is not shown.
    ents = None if entropies is None else np.asarray(entropies, np.float32)[0, :-1]
    return PatchView(data=data, starts=starts.astype(bool), entropies=ents, mode=cfg.mode,
                     threshold=float(cfg.threshold), patch_size=int(cfg.patch_size),
                     max_patch_length=int(cfg.max_patch_length),
                     max_patches=int(cfg.get("max_patches", 0)), rule=patching.rule_name(cfg),
                     threshold_add=cfg.threshold_add, label=label)


def describe(view: PatchView) -> str:
    """The patching settings in a few words, e.g. `entropy, threshold 1.34, max 8`."""
    if view.mode == "entropy":
        what = f"entropy, threshold {view.threshold:.4g}"
        if view.rule == "monotonic":
            what = f"entropy, monotonic, rise threshold {view.threshold:.4g}"
        elif view.rule != "global":
            what += f", rise over {view.threshold_add:.4g}"
    elif view.mode == "static":
        what = f"static, patch_size {view.patch_size}"
    else:
        what = "space"
    if view.max_patch_length:
        what += f", max_patch_length {view.max_patch_length}"
    if view.max_patches:
        what += f", max_patches {view.max_patches}"
    return what


def summary(view: PatchView) -> str:
    """One line: bytes, patches, mean/max patch length, mean entropy, and the patching used."""
    lengths = view.lengths
    parts = [f"{len(view.data)} bytes", f"{len(lengths)} patches",
             f"patch length mean {lengths.mean():.2f} max {lengths.max()}"]
    if view.entropies is not None:
        parts.append(f"mean entropy {float(view.entropies.mean()):.3f} nats")
    parts.append(f"({describe(view)})")
    head = f"{view.label}: " if view.label else ""
    return head + ", ".join(parts[:-1]) + " " + parts[-1]
