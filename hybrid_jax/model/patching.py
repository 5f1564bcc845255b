"""Patch boundaries inside jit, with static shapes.

The primary representation is `starts`: bool `[batch, length + 1]`, True where a patch begins. Entry
`length` says whether a new patch begins right after the last byte; the decoder needs it, since the
prediction for that next byte reads the patch before it. Every mode is causal: whether byte t starts a
patch depends only on bytes < t. Bytes 0 (BOS) and 1 always start patches, so that no byte ever reads a
patch that contains the byte it predicts.

Modes:
- `entropy`, with one of Meta's three rules (facebookresearch/blt `bytelatent/data/patcher.py`); e[i] is
  the entropy (natural log) of the entropy model's prediction of byte i + 1:
  - global (the default): byte t >= 2 starts a patch iff e[t-1] > threshold, as BLT and Hugging Face;
  - `monotonicity`: byte 2 starts a patch, and byte t >= 3 iff e[t-1] - e[t-2] > threshold;
  - `threshold_add` set: byte 2 starts a patch, byte 3 never does (Meta's rule compares against a mask
    whose only entry is byte 2), and byte t >= 4 iff e[t-1] - e[t-2] > threshold_add and
    e[t-1] > threshold.
- `static`: patches of `patch_size` bytes after the lone BOS byte.
- `space`: a patch ends at a space-like byte (ASCII that is not a letter or digit, or a UTF-8 lead byte)
  that follows a non-space-like byte, and at every special id; so "ab  cd" cuts as "ab " + " cd"
  (further spaces of a run open the next patch, as indentation opens a line of code).
Then the latent-reasoning ids `<bot>`, `<eot>` and `<latent>` become patches of their own (a no-op
for 260-id models, which never see them). This makes starts[t] depend on id t itself, which only
changes the patch read by the prediction *of* a special id; the program, not the model, writes those,
so they are never scored (the cached generator redoes the byte before such a special, see
`incremental._redecode_before`). `max_patch_length > 0` splits longer patches into pieces of at most
that many bytes, and `max_patches > 0` caps the number of patches per row (the last allowed patch absorbs the rest), which
bounds the global transformer's work at `max_patches` positions instead of one per byte.

`include_next_token` (Meta's argument of the same name) says whether entry `length`, the slot of the
unseen next byte, may begin a patch. True (Meta's `ByteLatentTransformer`): it follows the rules above,
so the last byte's prediction reads its own patch when that patch is complete. False: entry `length` is
False whenever length >= 2 (the slot after BOS always begins a patch, as in Meta's and HF's first start
ids), so the last byte's prediction reads the patch before its own; every earlier entry is unchanged,
and once the next byte arrives its slot follows the rules again. Hugging Face's
`BltForCausalLM` behaves as False whenever `max_patch_length` is set (`process_patch_lengths` drops the
zero-length patch that marks the boundary) and as True otherwise.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from hybrid_jax.tokenizer import BYTE_VOCAB, LATENT_SPECIALS, OFFSET


class PatchInfo(NamedTuple):
    """Patches of a batch.

    lengths int32 `[batch, length + 1]`: zero-padded; when a patch begins right after the sequence
    the last one is 1 long (it holds the next, unseen byte), so lengths sum to length or length + 1.
    ids int32 `[batch, length]`: the patch of each byte. starts bool `[batch, length + 1]`.
    entropies float32 `[batch, length]`: next-byte entropies (zeros unless the entropy patcher ran).
    """
    lengths: jax.Array
    ids: jax.Array
    starts: jax.Array
    entropies: jax.Array


def entropies_from_logits(logits: jax.Array) -> jax.Array:
    """Entropy (nats) of each next-byte distribution: `[batch, length, vocab]` -> float32 `[batch, length]`."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def space_like(ids: jax.Array) -> jax.Array:
    """bool: ASCII non-alphanumeric bytes and UTF-8 lead bytes (>= 0xC0)."""
    b = ids - OFFSET
    is_byte = (ids >= OFFSET) & (ids < BYTE_VOCAB)
    alnum = ((b >= ord("0")) & (b <= ord("9"))) | ((b >= ord("A")) & (b <= ord("Z"))) | (
        (b >= ord("a")) & (b <= ord("z")))
    return is_byte & (((b < 0x80) & ~alnum) | (b >= 0xC0))


def starts_from_lengths(lengths: jax.Array, length: int) -> jax.Array:
    """Patch lengths `[batch, patches]` -> starts `[batch, length + 1]`.

    Patch k begins at the sum of the lengths before it. Entries <= 0 are padding and begin nothing. A
    patch that begins exactly at `length` (lengths summing past the end) marks a boundary right after
    the sequence. (Hugging Face instead lets zero-length entries begin patches, so its zero-padded
    lengths add that boundary; pass padding-free lengths to it.)
    """
    lengths = jnp.asarray(lengths, jnp.int32)
    begin = jnp.cumsum(lengths, axis=1) - lengths
    rows = jnp.broadcast_to(jnp.arange(lengths.shape[0])[:, None], begin.shape)
    ok = (lengths > 0) & (begin >= 0) & (begin <= length)
    out = jnp.zeros((lengths.shape[0], length + 1), bool)
    return out.at[rows, jnp.where(ok, begin, length + 1)].set(True, mode="drop")


def info_from_starts(starts: jax.Array, entropies: jax.Array | None = None) -> PatchInfo:
    """starts `[batch, length + 1]` -> PatchInfo (lengths sum to `length`, plus 1 with a boundary)."""
    b, n1 = starts.shape
    counts = jnp.cumsum(starts.astype(jnp.int32), axis=1)
    # Count position `length` as a byte of its own patch when a patch begins there, so that
    # `starts_from_lengths(lengths)` gives `starts` back.
    ext_ids = counts - 1
    weight = jnp.concatenate([jnp.ones((b, n1 - 1), jnp.int32), starts[:, -1:].astype(jnp.int32)], axis=1)
    rows = jnp.broadcast_to(jnp.arange(b)[:, None], ext_ids.shape)
    lengths = jnp.zeros((b, n1), jnp.int32).at[rows, ext_ids].add(weight)
    if entropies is None:
        entropies = jnp.zeros((b, n1 - 1), jnp.float32)
    return PatchInfo(lengths=lengths, ids=ext_ids[:, :-1], starts=starts, entropies=entropies)


def decoder_patch_ids(starts: jax.Array) -> jax.Array:
    """The patch whose global output byte t reads: the one before the patch of byte t + 1.

    starts `[batch, length + 1]` -> int32 `[batch, length]`.
    """
    counts = jnp.cumsum(starts.astype(jnp.int32), axis=1)
    return counts[:, 1:] - 2


def compute_starts(patching, ids: jax.Array, entropies: jax.Array | None) -> jax.Array:
    """starts `[batch, length + 1]` for a `model.patching` config node: byte 0 begins a patch, and
    `next_starts` from the initial carry decides every later position (one set of rules for training
    and for incremental generation); without `include_next_token` entry `length` is False."""
    b, n = ids.shape
    pos = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (b, n))
    after, _, _ = next_starts(patching, ids, entropies, pos, jnp.ones((b, n), bool), initial_carry(b))
    if not patching.include_next_token and n >= 2:
        after = after.at[:, -1].set(False)
    return jnp.concatenate([jnp.ones((b, 1), bool), after], axis=1)


def num_slots(patching, length: int) -> int:
    """Static number of patch positions the model computes for `length` bytes."""
    return min(patching.max_patches, length) if patching.max_patches else length


class PatchCarry(NamedTuple):
    """What incremental patching remembers between chunks, per row (all `[batch]`).

    pending: whether the next byte (at the current position) begins a patch; last_start: the latest
    patcher start, before `max_patch_length` splits; count: patches begun so far, pending included;
    prev_space: whether the last byte was space-like (space mode); prev_entropy: the last byte's
    next-byte entropy (the monotonic rules).

    `pending` follows the rules even without `include_next_token`: it is the boundary that the next
    byte's arrival makes.
    """
    pending: jax.Array
    last_start: jax.Array
    count: jax.Array
    prev_space: jax.Array
    prev_entropy: jax.Array


def initial_carry(batch: int) -> PatchCarry:
    """Before byte 0: byte 0 begins patch 0."""
    return PatchCarry(jnp.ones((batch,), bool), jnp.zeros((batch,), jnp.int32), jnp.ones((batch,), jnp.int32),
                      jnp.zeros((batch,), bool), jnp.zeros((batch,), jnp.float32))


def rule_name(patching) -> str:
    """The entropy rule of a `model.patching` node in words: `global`, `monotonic` or
    `global+monotonic` (threshold_add set)."""
    if patching.monotonicity:
        return "monotonic"
    return "global" if patching.threshold_add is None else "global+monotonic"


def entropy_rule(patching, entropies: jax.Array, t: jax.Array, prev: jax.Array) -> jax.Array:
    """Whether position t `[batch, k]` begins a patch under Meta's entropy rules (module docstring),
    given e[t-1] = entropies and e[t-2] = prev, both `[batch, k]`."""
    if patching.monotonicity:
        return (t == 2) | ((t >= 3) & (entropies - prev > patching.threshold))
    if patching.threshold_add is not None:
        rises = (entropies - prev > patching.threshold_add) & (entropies > patching.threshold)
        return (t == 2) | ((t >= 4) & rises)
    return entropies > patching.threshold


def next_starts(patching, ids: jax.Array, entropies: jax.Array | None, pos: jax.Array, valid: jax.Array,
                carry: PatchCarry) -> tuple[jax.Array, jax.Array, PatchCarry]:
    """Incremental `compute_starts`: whether the byte after each new byte begins a patch.

    ids, pos int32 `[batch, t]` (new bytes and their positions), valid bool `[batch, t]` (a row's valid
    bytes come first), entropies `[batch, t]` for entropy mode. -> (bool `[batch, t]`: entry j is
    `starts[pos[j] + 1]`, False where invalid; bool `[batch]`: a patch begins at the first new byte
    although the carry did not expect one, because it is a special id; the carry
    after each row's last valid byte). Chunks fed in order give exactly `compute_starts` of the whole
    sequence (`compute_starts` is defined that way).
    """
    t = pos + 1
    if patching.mode not in ("entropy", "static", "space"):
        raise ValueError(f"unknown patching mode {patching.mode!r}; expected entropy, static or space")
    if patching.mode == "entropy":
        prev = jnp.concatenate([carry.prev_entropy[:, None], entropies[:, :-1]], axis=1)
        raw = entropy_rule(patching, entropies, t, prev)
    elif patching.mode == "static":
        raw = (t - 1) % patching.patch_size == 0
    else:
        space = space_like(ids)
        before = jnp.concatenate([carry.prev_space[:, None], space[:, :-1]], axis=1)
        raw = (space & ~before) | (ids < OFFSET) | (ids >= BYTE_VOCAB)
    special = jnp.isin(ids, jnp.asarray(LATENT_SPECIALS, ids.dtype)) & valid
    # A special id starts a patch of its own: one begins at it and one right after it.
    raw = (raw | (t < 2) | special | jnp.pad(special[:, 1:], ((0, 0), (0, 1)))) & valid
    forced = special[:, 0] & ~carry.pending
    if patching.max_patches:
        forced &= carry.count < patching.max_patches
    count0 = carry.count + forced.astype(jnp.int32)
    last0 = jnp.where(forced, pos[:, 0], carry.last_start)
    last = jnp.maximum(last0[:, None], jax.lax.cummax(jnp.where(raw, t, -1), axis=1))
    starts = raw
    if patching.max_patch_length:
        starts = starts | (valid & ((t - last) % patching.max_patch_length == 0))
    count = count0[:, None] + jnp.cumsum(starts.astype(jnp.int32), axis=1)
    if patching.max_patches:
        starts = starts & (count <= patching.max_patches)
    n = valid.sum(axis=1)
    at = jnp.maximum(n - 1, 0)[:, None]

    def after(x, old):
        return jnp.where(n > 0, jnp.take_along_axis(x, at, axis=1)[:, 0], old)

    new = PatchCarry(pending=after(starts, carry.pending), last_start=after(last, last0),
                     count=count0 + starts.sum(axis=1, dtype=jnp.int32),
                     prev_space=after(space_like(ids), carry.prev_space),
                     prev_entropy=carry.prev_entropy if entropies is None else
                     after(entropies.astype(jnp.float32), carry.prev_entropy))
    return starts, forced, new
