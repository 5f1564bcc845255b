"""Self-speculative greedy decoding (BLT-S of Fast BLT, Kallini et al. 2026): the output is exactly
plain greedy's.

One round per row: the next byte d0 is greedy's (the exact logits are in hand); the local encoder and
decoder alone draft d1..d(k-1) after it, each byte reading the latest closed patch's global state (no
entropy model, no global transformer); then `incremental.feed_info` verifies the k bytes in one pass
over all four levels, and bytes are accepted up to the first draft that differs from the argmax of
the verified logits. The verification reuses the draft's encoder work (the encoder reads no patch)
and, unless a byte reads a patch closed inside the chunk, its decoder work, which is then exact too;
so within a patch it costs one entropy-model pass over the chunk. The state is then rolled back to
the accepted bytes exactly: ring caches have k spare slots (`cache.cache_size`), so withdrawing
positions is a matter of marking their slots empty, and the patching carry is recomputed from the
verified entropies.

Exactness details: drafts never propose a special id (a special begins a patch at itself, which
would change the verified logits of the byte before it); without `include_next_token` a verified byte
that opens a patch was decoded as a middle byte, not as the last one greedy saw, so acceptance stops
there and that byte's last-byte logits are recomputed (`_last_byte_logits`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from hybrid_jax import tokenizer
from hybrid_jax.inference import incremental
from hybrid_jax.inference.cache import truncate
from hybrid_jax.model import patching


class Verified(NamedTuple):
    """A verification pass over a chunk of k drafted bytes."""
    logits: jax.Array   # float32 [batch, k, vocab]
    state: incremental.State
    info: incremental.FeedInfo
    pos: jax.Array      # int32 [batch, k]: positions (-1 = not fed)


def draft(model, state: incremental.State, first: jax.Array, valid: jax.Array, k: int):
    """Draft after `first` int32 `[batch]` with the local encoder and decoder alone, k steps.

    valid bool `[batch, k]`: positions that may be written. -> (chunk int32 `[batch, k]`: first, then
    k - 1 drafts; the decoder caches; `incremental.Drafted` for the chunk). The caches keep the
    drafted positions."""
    cfg = model.config
    specials = jnp.arange(cfg.vocab_size) >= tokenizer.BOT_ID
    glob = state.last_global[:, None, :]

    def step(carry, ok):
        history, enc, dec, byte, at = carry
        st = state._replace(history=history, encoder=enc, decoder=dec)
        ok = ok[:, None]
        pos = jnp.where(ok, at[:, None], -1)
        x, enc, history = incremental._encode_bytes(model, st, byte[:, None], pos, ok)
        logits, dec = incremental._decode_bytes(model, st._replace(encoder=enc), x, glob, pos)
        nxt = jnp.argmax(jnp.where(specials, -jnp.inf, logits[:, 0]), axis=-1).astype(jnp.int32)
        return (history, enc, dec, nxt, at + 1), (byte, x[:, 0], logits[:, 0])

    carry = (state.history, state.encoder, state.decoder, first, state.pos)
    (history, enc, dec, _, _), (chunk, x, logits) = jax.lax.scan(step, carry, valid.T)
    pos = state.pos[:, None] + jnp.arange(k)[None, :]
    kv = tuple(_entries(c, pos) for c in dec)
    return chunk.T, dec, incremental.Drafted(x.swapaxes(0, 1), enc, history, logits.swapaxes(0, 1), kv)


def _entries(cache, pos):
    """The (k, v) `[batch, t, kv_heads, head_dim]` a cache holds for positions pos `[batch, t]`."""
    slot = pos % cache.pos.shape[1]
    k = jnp.take_along_axis(cache.k, slot[:, None, :, None], axis=2).swapaxes(1, 2)
    v = jnp.take_along_axis(cache.v, slot[:, None, None, :], axis=3).transpose(0, 3, 1, 2)
    return k, v


def closing_slots(k: int) -> int:
    """Patches one verification runs through the global transformer: the chunk's bytes after more
    patches closed are not kept. At least 2 (a special first byte can close one patch and its own),
    so the first byte is always kept; a quarter of the chunk, as patches are rarely that short
    where drafts pay."""
    return max(2, k // 4)


def verify(model, state: incremental.State, chunk, valid, drafted=None) -> Verified:
    """All four levels over the chunk `[batch, k]` in one pass, from `state` (whose caches must hold
    no position at or after `state.pos`), reusing what the draft computed exactly; the global
    transformer runs on `closing_slots` patches."""
    pos = incremental.positions(state, valid)
    logits, after, info = incremental.feed_info(model, state, chunk, valid, always_close=False, drafted=drafted,
                                                max_closing=closing_slots(chunk.shape[1]))
    return Verified(logits, after, info, pos)


def trusted(model, v: Verified, valid) -> jax.Array:
    """bool `[batch, k]`: whether byte j's verified logits are greedy's for the sequence ending at j.
    Without `include_next_token`, a byte that opens a patch and is not the chunk's last was decoded
    reading its own patch; greedy, which saw it last, read the patch before."""
    if model.config.patching.include_next_token:
        return jnp.ones(valid.shape, bool)
    last = jnp.arange(valid.shape[1])[None, :] == valid.sum(axis=1, keepdims=True) - 1
    return ~(v.info.starts_next & (v.pos >= 1)) | last


def accepted(v: Verified, chunk, valid, ok, room, stop_at_eos: bool, forced):
    """Bytes of the chunk to keep per row, int32 `[batch]` (0 where nothing was fed): the first, then
    each draft while it equals the verified argmax of a `trusted` byte (ok) and closes no patch past
    `closing_slots` (forced `[batch]`: the first byte closed one), at most `room` `[batch]`, through
    the first EOS."""
    k = chunk.shape[1]
    greedy = jnp.argmax(v.logits, axis=-1).astype(jnp.int32)
    closes = forced.astype(jnp.int32)[:, None] + jnp.cumsum(v.info.starts_next.astype(jnp.int32), axis=1)
    match = (chunk[:, 1:] == greedy[:, :-1]) & ok[:, :-1] & valid[:, 1:] & (closes[:, 1:] <= closing_slots(k))
    n = 1 + jnp.sum(jnp.cumprod(match.astype(jnp.int32), axis=1), axis=1)
    if stop_at_eos:
        eos = jnp.where(chunk == tokenizer.EOS_ID, jnp.arange(k)[None, :], k)
        n = jnp.minimum(n, jnp.min(eos, axis=1) + 1)
    return jnp.where(valid[:, 0], jnp.minimum(n, room), 0).astype(jnp.int32)


def roll_back(model, before: incremental.State, v: Verified, chunk, n, ok):
    """The state after only the first n `[batch]` bytes of the verified chunk, and the next-byte
    logits float32 `[batch, vocab]` of the last of them (garbage where n = 0); ok: `trusted`."""
    cfg = model.config
    k = chunk.shape[1]
    keep = jnp.arange(k)[None, :] < n[:, None]
    starts, forced, carry = patching.next_starts(cfg.patching, chunk, v.info.entropies, v.pos, keep,
                                                 before.carry)
    end = before.pos + n
    h = before.history.shape[1]
    window = jnp.concatenate([before.history, chunk], axis=1)
    history = jnp.take_along_axis(window, n[:, None] + jnp.arange(h)[None, :], axis=1)
    open_start = jnp.where(forced, before.pos, before.open_start)
    open_start = jnp.maximum(open_start, jnp.max(jnp.where(starts & keep, v.pos + 1, -1), axis=1))
    closed = carry.count - before.carry.count  # patches the kept bytes closed
    slots = v.info.new_globals.shape[1]
    latest = jnp.take_along_axis(v.info.new_globals, jnp.clip(closed - 1, 0, slots - 1)[:, None, None], axis=1)[:, 0]
    s = v.state
    byte_patch = jnp.where(jnp.arange(s.byte_patch.shape[1])[None, :] < end[:, None], s.byte_patch, -1)
    state = s._replace(
        pos=end, history=history, carry=carry, open_start=open_start, byte_patch=byte_patch,
        last_global=jnp.where((closed > 0)[:, None], latest, before.last_global),
        entropy=truncate(s.entropy, end), encoder=truncate(s.encoder, end),
        global_=truncate(s.global_, before.carry.count - 1 + closed), decoder=truncate(s.decoder, end))
    last = jnp.maximum(n - 1, 0)
    logits = jnp.take_along_axis(v.logits, last[:, None, None], axis=1)[:, 0]
    if not cfg.patching.include_next_token:
        logits, state = _last_byte_logits(model, state, v, last, n, ok, logits)
    return logits, state


def _last_byte_logits(model, state: incremental.State, v: Verified, last, n, ok, logits):
    """Without `include_next_token`: where the last kept byte opens a patch and was decoded as a middle
    byte, decode it again as the sequence's last (reading the patch before its own), as greedy did;
    its decoder cache entry then also equals greedy's. Skipped at run time when no row needs it."""
    redo = (n > 0) & ~jnp.take_along_axis(ok, last[:, None], axis=1)[:, 0]

    def again(_):
        pos = jnp.take_along_axis(v.pos, last[:, None], axis=1)
        x = jnp.take_along_axis(state.enc_out, jnp.maximum(pos, 0)[:, :, None], axis=1)
        glob = jnp.take_along_axis(v.info.last_globals, last[:, None, None], axis=1)
        new, caches = incremental._decode_bytes(model, state, x, glob, jnp.where(redo[:, None], pos, -1))
        pick = lambda a, b: jnp.where(redo.reshape(-1, *([1] * (b.ndim - 1))), a, b)
        return pick(new[:, 0], logits), jax.tree.map(pick, caches, state.decoder)

    logits, dec = jax.lax.cond(jnp.any(redo), again, lambda _: (logits, state.decoder), None)
    return logits, state._replace(decoder=dec)


def round_(model, state: incremental.State, logits, done, room, k: int, max_len: int, stop_at_eos: bool):
    """One speculative round for every row not `done`. -> (chunk int32 `[batch, k]`, kept n int32
    `[batch]`, next logits, new state, FeedInfo of the verification)."""
    first = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    valid = (~done[:, None]) & (state.pos[:, None] + jnp.arange(k)[None, :] < max_len)
    chunk, dec, drafted = draft(model, state, first, valid, k)
    clean = state._replace(decoder=truncate(dec, state.pos))
    v = verify(model, clean, chunk, valid, drafted)
    ok = trusted(model, v, valid)
    forced = patching.next_starts(model.config.patching, chunk[:, :1], None if v.info.entropies is None else
                                  v.info.entropies[:, :1], v.pos[:, :1], valid[:, :1], state.carry)[1]
    n = accepted(v, chunk, valid, ok, room, stop_at_eos, forced)
    new_logits, after = roll_back(model, clean, v, chunk, n, ok)
    new_logits = jnp.where((n > 0)[:, None], new_logits, logits)
    return chunk, n, new_logits, after, v.info
