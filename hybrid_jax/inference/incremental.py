"""The BLT forward pass, incrementally: feed a chunk of new bytes (a whole prompt, or one byte) against
caches at every level and get the next-byte logits of each new byte, equal to the full forward's.

Why this is exact: every part of BLT is causal. A byte's encoder state depends on earlier bytes only;
whether byte t+1 begins a patch depends on bytes <= t; so a patch is final once the next one begins,
and only then is it pooled, cross-attended and run through one global step. Byte t's decoder reads the
global state of the patch just before the patch of byte t+1, which is always the latest closed patch.
Without `patching.include_next_token` the last byte fed reads the patch before its own instead, and
is decoded again when the next byte arrives (`_redecode_before`): the logits of each chunk equal the
full forward's of everything fed so far.

State per row: the position, the last few ids (hash n-grams), the patching carry, per-byte buffers
(patch id, encoder output and its cross-attention keys/values, for pooling a patch when it closes),
the latest closed patch's global state, and ring KV caches for all four transformer stacks.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from hybrid_jax import tokenizer
from hybrid_jax.inference.cache import KVCache, empty_caches, layer_step, run_stack, write_stack
from hybrid_jax.model import latent, patching
from hybrid_jax.model.hashing import hash_table_ids
from hybrid_jax.model.layers import dtype_of
from hybrid_jax.model.local_encoder import lookup_sum, patch_query_mask
from hybrid_jax.model.transformer import layer_list, stack_rope


class State(NamedTuple):
    pos: jax.Array          # int32 [batch]: bytes fed so far
    history: jax.Array      # int32 [batch, max_group - 1]: the last ids (0 before the start)
    carry: patching.PatchCarry
    open_start: jax.Array   # int32 [batch]: where the open (or pending) patch begins
    byte_patch: jax.Array   # int32 [batch, max_len]: patch of each fed byte (-1 = not yet fed)
    enc_out: jax.Array      # [batch, max_len, d_local]: local encoder output per byte
    cross_k: jax.Array      # [batch, max_len, kv_heads, head_dim]: encoder cross-attention keys
    cross_v: jax.Array
    last_global: jax.Array  # [batch, d_global]: global state of the latest closed patch
    entropy: tuple[KVCache, ...]
    encoder: tuple[KVCache, ...]
    global_: tuple[KVCache, ...]
    decoder: tuple[KVCache, ...]


def init_state(model, batch: int, max_len: int, slack: int = 0) -> State:
    """Empty state for up to `max_len` bytes per row; ring caches get `slack` extra slots (speculative
    decoding writes chunks of up to `slack` positions that it may withdraw, `cache.truncate`)."""
    cfg = model.config
    dtype = dtype_of(cfg.dtype)
    enc, glob = cfg.local_encoder, cfg.global_transformer
    cross = model.local_encoder.cross_attn_layers[-1]
    kv_shape = (batch, max_len, cross.kv_heads, cross.head_dim)
    uses_entropy = cfg.patching.mode == "entropy"
    return State(
        pos=jnp.zeros((batch,), jnp.int32),
        history=jnp.zeros((batch, max(cfg.hash.group_sizes) - 1), jnp.int32),
        carry=patching.initial_carry(batch),
        open_start=jnp.zeros((batch,), jnp.int32),
        byte_patch=jnp.full((batch, max_len), -1, jnp.int32),
        enc_out=jnp.zeros((batch, max_len, enc.d_model), dtype),
        cross_k=jnp.zeros(kv_shape, dtype), cross_v=jnp.zeros(kv_shape, dtype),
        last_global=jnp.zeros((batch, glob.d_model), dtype),
        entropy=empty_caches(cfg.entropy_model, batch, max_len, dtype, slack) if uses_entropy else (),
        encoder=empty_caches(enc, batch, max_len, dtype, slack),
        global_=empty_caches(glob, batch, patching.num_slots(cfg.patching, max_len), dtype, slack + 1),
        decoder=empty_caches(cfg.local_decoder, batch, max_len, dtype, slack))


def _put(buffer: jax.Array, values: jax.Array, pos: jax.Array) -> jax.Array:
    """buffer `[batch, max_len, ...]`, values `[batch, t, ...]` at pos `[batch, t]` (-1 = skip)."""
    rows = jnp.arange(pos.shape[0])[:, None]
    return buffer.at[rows, jnp.where(pos >= 0, pos, buffer.shape[1])].set(values.astype(buffer.dtype), mode="drop")


def _encode_bytes(model, state: State, ids, pos, valid, fresh: bool = False):
    """Local encoder on the new bytes: (output `[batch, t, d_local]`, encoder caches, new history)."""
    enc = model.local_encoder
    h = state.history.shape[1]
    window = jnp.concatenate([state.history, ids], axis=1)
    rows = hash_table_ids(window, enc.hash.group_sizes, enc.hash.n_functions, enc.hash.vocab)[:, :, h:]
    x = enc.embed_tokens(ids) + lookup_sum(enc.hash_embed, rows)
    x, caches = run_stack(enc.layers, enc.stack, x, pos, state.encoder, fresh=fresh)
    n = valid.sum(axis=1)
    history = jnp.take_along_axis(window, n[:, None] + jnp.arange(h)[None, :], axis=1)
    return x, caches, history


def _entropies(model, state: State, ids, pos, fresh: bool = False):
    """Next-byte entropies `[batch, t]` from the entropy model, and each layer's new (k, v)."""
    em = model.entropy_model
    x, kvs = run_stack(em.layers, em.stack, em.embed_tokens(ids), pos, state.entropy, deferred=True, fresh=fresh)
    logits = em.lm_head(em.norm(x)).astype(jnp.float32)
    return patching.entropies_from_logits(logits), kvs


def _entropies_unless_capped(model, state: State, ids, pos, fresh: bool = False):
    """`_entropies` and the updated caches; skipped at run time (zeros, caches unchanged) when every
    row has begun `max_patches` patches: no entropy can begin another one then, and the rules read
    no older entropy. -> (entropies, caches, whether the model ran)"""
    cap = model.config.patching.max_patches
    if not cap:
        entropies, kvs = _entropies(model, state, ids, pos, fresh)
        return entropies, write_stack(state.entropy, kvs, pos), jnp.ones((), bool)

    def skip(_):
        b, t = ids.shape
        kvs = tuple((jnp.zeros((b, t) + c.k.shape[1:2] + c.k.shape[3:], c.k.dtype),) * 2 for c in state.entropy)
        return jnp.zeros(ids.shape, jnp.float32), kvs
    ran = ~jnp.all(state.carry.count >= cap)
    entropies, kvs = jax.lax.cond(ran, lambda _: _entropies(model, state, ids, pos, fresh), skip, None)
    return entropies, write_stack(state.entropy, kvs, jnp.where(ran, pos, -1)), ran


RECENT = 32  # a closing patch this long or shorter is pooled from a slice of the buffers, not all of them


class ByteBuffers(NamedTuple):
    """Per-byte buffers `[batch, n, ...]` a closing patch is pooled from (see `State`)."""
    byte_patch: jax.Array
    enc_out: jax.Array
    cross_k: jax.Array
    cross_v: jax.Array


def _buffers(state: State) -> ByteBuffers:
    return ByteBuffers(state.byte_patch, state.enc_out, state.cross_k, state.cross_v)


def _recent(bufs: ByteBuffers, end: jax.Array, size: int) -> ByteBuffers:
    """The `size` entries before position `end` `[batch]` of every buffer (from 0 near the start)."""
    start = jnp.clip(end - size, 0, bufs.byte_patch.shape[1] - size)
    return ByteBuffers(*(jax.vmap(lambda b, s: jax.lax.dynamic_slice_in_dim(b, s, size, axis=0))(buf, start)
                         for buf in bufs))


def _patch_embeddings(model, bufs: ByteBuffers, first, slots: int):
    """Encoder output `[batch, slots, k * d_local]` of patches `first + i`: max-pool their bytes, project
    to k queries, cross-attend to the bytes (as `LocalEncoder` does for every patch at once)."""
    enc = model.local_encoder
    b = first.shape[0]
    seg = bufs.byte_patch - first[:, None]
    seg = jnp.where((bufs.byte_patch >= 0) & (seg >= 0) & (seg < slots), seg, slots)
    pooled = jax.vmap(lambda x, s: jax.ops.segment_max(x, s, num_segments=slots))(bufs.enc_out, seg)
    pooled = jnp.where(jnp.isneginf(pooled), jnp.zeros((), pooled.dtype), pooled)
    queries = enc.patch_embedding_projection(pooled).reshape(b, slots * enc.k, -1)
    mask = patch_query_mask(seg, slots, enc.k)
    patches = queries + enc.cross_attn_layers[-1].attend_kv(queries, bufs.cross_k, bufs.cross_v, mask)
    return patches.reshape(b, slots, -1)


def _close_patches(model, state: State, closed, gpos, t: int, thought=None, fresh: bool = False):
    """Encode and run one global step for patches `closed + i` (i < slots) at gpos `[batch, slots]`
    (-1 = not closing), after feeding a chunk of t bytes. -> (global states `[batch, slots, d_global]`,
    each global layer's new (k, v) for `write_stack`).

    Feeding a short chunk, patches that began at most RECENT bytes before it are pooled from the
    buffers' last RECENT + t - 1 entries, so the cost does not grow with context. `thought` bool
    `[batch]`: patch `closed` is a `<latent>` whose global input is the latest closed patch's global
    output (a continuous thought, as `hybrid_jax.model.latent`).
    """
    bufs = _buffers(state)
    slots = gpos.shape[1]
    size = RECENT + t - 1
    if size < bufs.byte_patch.shape[1]:
        # The patches closing here begin at open_start or later and end before the chunk's end.
        end = state.pos + t
        fits = jnp.all((gpos[:, 0] < 0) | (end - state.open_start <= size))
        patches = jax.lax.cond(fits, lambda: _patch_embeddings(model, _recent(bufs, end, size), closed, slots),
                               lambda: _patch_embeddings(model, bufs, closed, slots))
    else:
        patches = _patch_embeddings(model, bufs, closed, slots)
    glob = model.global_transformer
    x = glob.embed(patches)
    if thought is not None:
        first = (jnp.arange(slots) == 0)[None, :, None]
        fed = latent.recycled(state.last_global[:, None, :], x, model.config.latent_feedback == "match_norm")
        x = jnp.where(thought[:, None, None] & first, fed, x)
    return run_stack(layer_list(glob.layers), glob.stack, x, gpos, state.global_, deferred=True, fresh=fresh)


def _decode_bytes(model, state: State, x, byte_globals, pos, deferred: bool = False, fresh: bool = False):
    """Local decoder + head: x `[batch, t, d_local]`, each byte's patch state `[batch, t, d_global]`
    -> (logits float32 `[batch, t, vocab]`, decoder caches, or with `deferred` each layer's new (k, v))."""
    dec = model.local_decoder
    b, t, d = x.shape
    keys = dec.patch_embedding_projection(byte_globals).reshape(b, t * dec.k, d)
    own = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
    cos, sin = stack_rope(dec.stack, pos)
    caches = []
    for i, layer in enumerate(dec.layers):
        if i == 0 or dec.stack.cross_attn_all_layers:
            x = x + dec.cross_attn_layers[i].own_keys(x, keys, own, dec.k)
        x, cache = layer_step(layer, dec.stack, x, pos, state.decoder[i], cos, sin, deferred, fresh)
        caches.append(cache)
    logits = model.lm_head(dec.norm(x)).astype(jnp.float32)
    return logits, tuple(caches)


def _redecode_before(model, state: State, redo, ended, first_pos) -> State:
    """Redo the decoder pass of the byte before this chunk (first_pos - 1) in the rows where `redo`
    `[batch]`, now reading the patch whose global state is `ended` `[batch, d_global]`.

    The full forward makes that byte read a patch other than the one it read when it was fed in two
    cases: a special id that begins a patch where none was due ends the patch before it early; and
    without `include_next_token`, the byte that was last read the patch before its own, which its
    patch, now closed by the new byte's arrival, replaces. Its decoder states feed later bytes through
    the decoder's self-attention, so they must be redone; skipped at run time when no row needs it."""
    def again(_):
        prev = jnp.maximum(first_pos - 1, 0)[:, None]
        x = jnp.take_along_axis(state.enc_out, prev[:, :, None], axis=1)
        _, caches = _decode_bytes(model, state, x, ended[:, None, :], prev)
        pick = lambda new, old: jnp.where(redo.reshape(-1, *([1] * (old.ndim - 1))), new, old)
        return jax.tree.map(pick, caches, state.decoder)
    return state._replace(decoder=jax.lax.cond(jnp.any(redo), again, lambda _: state.decoder, None))


class Drafted(NamedTuple):
    """What a draft already computed for a chunk (`speculate.draft`): the encoder's work is exact
    (it reads no patch), the decoder's is exact where every byte read the latest closed patch."""
    x: jax.Array                   # [batch, t, d_local]: encoder output
    encoder: tuple[KVCache, ...]   # the caches with the chunk written
    history: jax.Array
    logits: jax.Array              # float32 [batch, t, vocab]
    decoder_kv: tuple              # each decoder layer's (k, v) `[batch, t, kv_heads, head_dim]`


class FeedInfo(NamedTuple):
    """What `feed_info` saw besides the logits (speculative decoding verifies and rolls back with it).

    entropies float32 `[batch, t]` (None unless entropy patching; zeros where the entropy model was
    skipped), starts_next bool `[batch, t]` (see `patching.next_starts`), new_globals `[batch, slots,
    d_global]`: global states of the patches this chunk closed, in order; last_globals `[batch, t,
    d_global]` (None with `include_next_token`): the patch state each byte reads when it is the
    sequence's last; ran_entropy, ran_global bool `[]`: whether those models ran.
    """
    entropies: jax.Array | None
    starts_next: jax.Array
    new_globals: jax.Array
    last_globals: jax.Array | None
    ran_entropy: jax.Array
    ran_global: jax.Array


def positions(state: State, valid: jax.Array) -> jax.Array:
    """int32 `[batch, t]`: the positions of a chunk's bytes (valid bool `[batch, t]`), -1 where not fed."""
    return jnp.where(valid, state.pos[:, None] + jnp.arange(valid.shape[1])[None, :], -1)


def patches_closing(model, state: State, ids: jax.Array, valid: jax.Array) -> jax.Array:
    """int32 `[batch]`: the patches feeding ids `[batch, t]` (valid as `feed`) would close, from the
    patching rules (and the entropy model) alone, without closing them: a bound for `max_closing`."""
    pos = positions(state, valid)
    entropies = _entropies(model, state, ids, pos)[0] if model.config.patching.mode == "entropy" else None
    _, _, carry = patching.next_starts(model.config.patching, ids, entropies, pos, valid, state.carry)
    return carry.count - state.carry.count


def feed(model, state: State, ids: jax.Array, valid: jax.Array, always_close: bool = True,
         thoughts: bool = False, fresh: bool = False):
    """Feed new bytes ids int32 `[batch, t]` (valid bool `[batch, t]`, each row's valid bytes first).

    -> (logits float32 `[batch, t, vocab]`: next-byte logits of each new byte (garbage where invalid),
    new state). `always_close=False` skips the patch-closing work when no row closes a patch (a
    runtime branch: the fast path for one byte per step). `thoughts=True` feeds a `<latent>` fed as
    the first byte of a chunk, right after a closed patch (after `<bot>` or another `<latent>`), the
    previous global output (Coconut mode); otherwise `<latent>` is an ordinary patch (pause mode).
    `fresh=True` says that `state` is `init_state`'s (a prefill): attention then skips the empty caches.
    """
    logits, state, _ = feed_info(model, state, ids, valid, always_close, thoughts, fresh=fresh)
    return logits, state


def feed_info(model, state: State, ids: jax.Array, valid: jax.Array, always_close: bool = True,
              thoughts: bool = False, drafted: Drafted | None = None, max_closing: int = 0, fresh: bool = False):
    """`feed`, also returning its `FeedInfo`: (logits, state, info). `drafted`: the encoder's work on
    these bytes, and the decoder's, reused unless some byte reads a patch closed here (or a byte
    before the chunk is redecoded); its decoder entries must not be in `state`'s caches.
    `max_closing` > 0 runs the global transformer on that many closing patches at most: the state
    and the logits of bytes after a further patch closes are then wrong (speculation keeps none)."""
    cfg = model.config
    b, t = ids.shape
    pos = positions(state, valid)
    if drafted is None:
        x, enc_caches, history = _encode_bytes(model, state, ids, pos, valid, fresh)
    else:
        x, enc_caches, history = drafted.x, drafted.encoder, drafted.history
    entropies, ent_caches, ran_entropy = None, state.entropy, jnp.zeros((), bool)
    if cfg.patching.mode == "entropy":
        entropies, ent_caches, ran_entropy = _entropies_unless_capped(model, state, ids, pos, fresh)
    starts_next, forced, carry = patching.next_starts(cfg.patching, ids, entropies, pos, valid, state.carry)
    # Patch of each new byte, and the patch whose global state it reads (the one before byte t+1's).
    before = jnp.cumsum(starts_next.astype(jnp.int32), axis=1) - starts_next
    byte_patch = (state.carry.count + forced)[:, None] + before - 1
    opens = starts_next
    if not cfg.patching.include_next_token:
        # The chunk's last byte is the sequence's last: the slot after it begins no patch (yet).
        last = state.pos + valid.sum(axis=1, dtype=jnp.int32) - 1
        opens = starts_next & ((pos != last[:, None]) | (pos < 1))
    reads = byte_patch + opens - 1
    cross = model.local_encoder.cross_attn_layers[-1]
    ck, cv = cross.project_kv(x)
    state = state._replace(byte_patch=_put(state.byte_patch, byte_patch, pos),
                           enc_out=_put(state.enc_out, x, pos),
                           cross_k=_put(state.cross_k, ck, pos), cross_v=_put(state.cross_v, cv, pos))
    closed = state.carry.count - 1
    n_new = carry.count - state.carry.count

    # A special id can also close the patch before it (see `next_starts`): one more slot.
    slots = t + (1 if cfg.vocab_size > tokenizer.BOT_ID else 0)
    if cfg.patching.max_patches:  # no row closes more patches than it may have
        slots = min(slots, cfg.patching.max_patches)
    if max_closing:
        slots = min(slots, max_closing)
    i = jnp.arange(slots)[None, :]
    gpos = jnp.where(i < n_new[:, None], closed[:, None] + i, -1)
    thought = None
    if thoughts:
        thought = (ids[:, 0] == tokenizer.LATENT_ID) & valid[:, 0] & ~forced

    def close(_):
        return _close_patches(model, state, closed, gpos, t, thought, fresh)

    def skip(_):
        kvs = tuple((jnp.zeros((b, slots) + c.k.shape[1:2] + c.k.shape[3:], c.k.dtype),) * 2 for c in state.global_)
        return jnp.zeros((b, slots, cfg.global_transformer.d_model), state.last_global.dtype), kvs

    ran_global = jnp.any(n_new > 0)
    if always_close:
        new_globals, kvs = close(None)
    else:
        new_globals, kvs = jax.lax.cond(ran_global, close, skip, None)
    global_caches = write_stack(state.global_, kvs, gpos)

    def reading(reads):
        idx = reads - closed[:, None]
        picked = jnp.take_along_axis(new_globals, jnp.clip(idx, 0, slots - 1)[:, :, None], axis=1)
        return jnp.where((idx >= 0)[:, :, None], picked, state.last_global[:, None, :])
    byte_globals = reading(reads)
    last_globals = None
    if not cfg.patching.include_next_token:
        last_globals = reading(byte_patch + (starts_next & (pos < 1)) - 1)
    latest = jnp.take_along_axis(new_globals, jnp.clip(n_new - 1, 0, slots - 1)[:, None, None], axis=1)[:, 0]
    last_global = jnp.where((n_new > 0)[:, None], latest, state.last_global)
    specials = cfg.vocab_size > tokenizer.BOT_ID
    stale = jnp.any(valid & (reads >= closed[:, None]))  # a byte reads a patch closed in this chunk
    if specials or not cfg.patching.include_next_token:
        redo, ended = forced, new_globals[:, 0]
        if not cfg.patching.include_next_token:
            late = state.carry.pending & (state.pos > 0) & valid[:, 0]
            redo, ended = redo | late, jnp.where(late[:, None], state.last_global, ended)
        state = _redecode_before(model, state, redo, ended, pos[:, 0])
        stale = stale | jnp.any(redo)
    if drafted is None:
        logits, dec_caches = _decode_bytes(model, state, x, byte_globals, pos, fresh=fresh)
    else:
        logits, kvs = jax.lax.cond(stale, lambda _: _decode_bytes(model, state, x, byte_globals, pos, True),
                                   lambda _: (drafted.logits, drafted.decoder_kv), None)
        dec_caches = write_stack(state.decoder, kvs, pos)
    open_start = jnp.where(forced, pos[:, 0], state.open_start)
    open_start = jnp.maximum(open_start, jnp.max(jnp.where(starts_next, pos + 1, -1), axis=1))
    state = state._replace(pos=state.pos + valid.sum(axis=1, dtype=jnp.int32), history=history, carry=carry,
                           open_start=open_start,
                           last_global=last_global, entropy=ent_caches, encoder=enc_caches,
                           global_=global_caches, decoder=dec_caches)
    return logits, state, FeedInfo(entropies, starts_next, new_globals, last_globals, ran_entropy, ran_global)
