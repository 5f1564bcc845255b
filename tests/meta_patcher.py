"""Meta's entropy patching rules in plain numpy, one row at a time: an independent reference for
`hybrid_jax.model.patching`, written from reading facebookresearch/blt `bytelatent/data/patcher.py`
(`find_entropy_patch_start_ids`, the two monotonic masks, `patch_lengths_from_start_ids`,
`split_large_numbers`, and `Patcher.patch`'s `include_next_token`)."""

from __future__ import annotations

import numpy as np


def start_mask(e: np.ndarray, threshold: float, monotonicity: bool, threshold_add: float | None) -> np.ndarray:
    """Meta's mask over `e` = entropies[1:]: entry j says whether position j + 2 begins a patch."""
    if len(e) == 0:
        return np.zeros(0, bool)
    if monotonicity:
        mask = np.empty(len(e), bool)
        mask[0] = True
        mask[1:] = (e[1:] - e[:-1]) > threshold
        return mask
    if threshold_add is not None:
        mask = np.zeros(len(e), bool)
        mask[0] = True
        # Meta ANDs with the negated mask as it stands before this assignment: only entry 0 is set
        # then, so entry 1 (position 3) can never begin a patch.
        cond = ((e[1:] - e[:-1]) > threshold_add) & (e[1:] > threshold) & ~mask[:-1]
        mask[1:] = cond
        return mask
    return e > threshold


def split_long(lengths: list[int], m: int) -> list[int]:
    """Every length above m becomes pieces of m and a remainder, in order."""
    out = []
    for n in lengths:
        while n > m:
            out.append(m)
            n -= m
        out.append(n)
    return out


def meta_patch_lengths(entropies: np.ndarray, threshold: float, monotonicity: bool = False,
                       threshold_add: float | None = None, max_patch_length: int = 0,
                       include_next_token: bool = True) -> list[int]:
    """Patch lengths of one row of `len(entropies)` bytes as Meta's `Patcher.patch` (entropy mode) gives
    them, trailing zeros dropped: they sum to the length, plus one with `include_next_token`."""
    n = len(entropies)
    mask = start_mask(np.asarray(entropies, np.float64)[1:], threshold, monotonicity, threshold_add)
    if not include_next_token:
        mask = mask[:-1]
    begins = [0, 1] + [int(j) + 2 for j in np.flatnonzero(mask)]
    total = n + int(include_next_token)
    ends = [b - 1 for b in begins[1:]] + [total - 1]
    lengths = [e - b + 1 for b, e in zip(begins, ends)]
    if max_patch_length:
        lengths = split_long(lengths, max_patch_length)
    while lengths and lengths[-1] == 0:
        lengths.pop()
    assert sum(lengths) == total and min(lengths) > 0, lengths
    return lengths


def starts_of_lengths(lengths: list[int], n: int, max_patches: int = 0) -> np.ndarray:
    """bool `[n + 1]`: where the patches begin; with `max_patches` (hybrid_jax's own cap, not Meta's)
    only the first that many begin and the last of them absorbs the rest."""
    begins = np.cumsum([0] + list(lengths[:-1]))
    if max_patches:
        begins = begins[:max_patches]
    out = np.zeros(n + 1, bool)
    out[begins] = True
    return out
