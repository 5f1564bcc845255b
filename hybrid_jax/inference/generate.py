"""Cached byte generation: prefill the prompts in one pass, then one jitted step per byte, or with
`speculate=K` one self-speculative round of up to K bytes (`hybrid_jax.inference.speculate`).

API (the `generate` command is `hybrid_jax/cli/generate.py`): `generate(model, prompts, max_new_bytes=..., temperature=0.0, top_k=None, top_p=None, seed=0, speculate=0)`
returns the new text of each prompt. Every level (entropy model, local encoder, global transformer,
local decoder) keeps a KV cache and patches are decided as bytes arrive (`hybrid_jax.inference.incremental`),
so greedy output equals the argmax of a full forward recomputed at every byte.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hybrid_jax import tokenizer
from hybrid_jax.errors import ConfigError
from hybrid_jax.inference import incremental, speculate
from hybrid_jax.inference.sampling import Sampling, sample

ROUND = 32  # buffer lengths are rounded up to this, so nearby prompt lengths share one compilation


class Stats(NamedTuple):
    """Counts over the decoding (int32 `[]` each): passes of the model over a column or a chunk (steps,
    or speculative rounds), passes that ran the entropy model and the global transformer, and per row
    and round: rounds, bytes kept, drafts offered and drafts accepted (speculation only)."""
    passes: jax.Array
    entropy_runs: jax.Array
    global_runs: jax.Array
    row_rounds: jax.Array
    kept: jax.Array
    drafted: jax.Array
    accepted: jax.Array

    @staticmethod
    def zeros() -> "Stats":
        return Stats(*(jnp.zeros((), jnp.int32) for _ in Stats._fields))

    def add(self, info: incremental.FeedInfo, **counts) -> "Stats":
        ran = {"passes": 1, "entropy_runs": info.ran_entropy.astype(jnp.int32),
               "global_runs": info.ran_global.astype(jnp.int32)}
        return self._replace(**{f: getattr(self, f) + ran.get(f, 0) + counts.get(f, 0) for f in Stats._fields})


class Loop(NamedTuple):
    state: incremental.State
    logits: jax.Array  # float32 [batch, vocab]: next-byte logits of each row's last byte
    out: jax.Array     # int32 [batch, max_new]: generated ids, -1 after a row stops
    count: jax.Array   # int32 [batch]: ids written to out
    done: jax.Array    # bool [batch]
    step: jax.Array    # int32 []
    key: jax.Array
    stats: Stats


class Result(NamedTuple):
    ids: list[list[int]]     # generated ids per prompt (EOS excluded)
    texts: list[str]
    prefill_s: float
    decode_s: float
    compile_s: float
    avg_patch_len: list[float]  # bytes per patch over prompt + generation
    stats: dict                 # `Stats` of the decoding, as ints


def _round_up(n: int) -> int:
    return -(-n // ROUND) * ROUND


@functools.partial(jax.jit, static_argnames=("graphdef", "max_len", "max_new", "slack"))
def _prefill(graphdef, params, ids, valid, key, *, max_len: int, max_new: int, slack: int = 0) -> Loop:
    model = nnx.merge(graphdef, params)
    b = ids.shape[0]
    state = incremental.init_state(model, b, max_len, slack)
    logits, state = incremental.feed(model, state, ids, valid, fresh=True)
    last = jnp.maximum(valid.sum(axis=1) - 1, 0)
    logits = jnp.take_along_axis(logits, last[:, None, None], axis=1)[:, 0]
    return Loop(state, logits, jnp.full((b, max_new), -1, jnp.int32), jnp.zeros((b,), jnp.int32),
                state.pos >= max_len, jnp.zeros((), jnp.int32), key, Stats.zeros())


@functools.partial(jax.jit, static_argnames=("graphdef", "thoughts"), donate_argnames=("loop",))
def _force(graphdef, params, loop: Loop, ids, thoughts: bool) -> Loop:
    """Feed ids int32 `[k]` to every running row, one per step (`<bot>`, thoughts, `<eot>`); they are
    inputs, not output."""
    model = nnx.merge(graphdef, params)

    def one(lp, i):
        return _feed_column(model, lp, jnp.full(lp.done.shape, i, jnp.int32), lp.done, thoughts)[0], None

    return jax.lax.scan(one, loop, ids)[0]


def _feed_column(model, lp: Loop, ids, done, thoughts: bool = False):
    """Feed one id per row, ids int32 `[batch]`, to the rows not `done`. Rows that were already done
    keep their logits; a row whose sequence fills the buffer becomes done. -> (Loop, FeedInfo)"""
    logits, state, info = incremental.feed_info(model, lp.state, ids[:, None], ~done[:, None],
                                                always_close=False, thoughts=thoughts)
    done = done | (state.pos >= state.byte_patch.shape[1])
    return lp._replace(state=state, logits=jnp.where(lp.done[:, None], lp.logits, logits[:, 0]), done=done), info


@functools.partial(jax.jit, static_argnames=("graphdef", "sampling", "stop_at_eos"), donate_argnames=("loop",))
def _decode(graphdef, params, loop: Loop, stop_at, sampling: Sampling, stop_at_eos: bool = True) -> Loop:
    """Generate until every row is done or `stop_at` steps have run (traced: one compilation serves
    both a whole run and streaming in small pieces)."""
    model = nnx.merge(graphdef, params)
    max_new = loop.out.shape[1]

    def running(lp):
        return (lp.step < jnp.minimum(stop_at, max_new)) & ~jnp.all(lp.done)

    def body(lp):
        nxt = sample(lp.logits, jax.random.fold_in(lp.key, lp.step), sampling)
        out = lp.out.at[:, lp.step].set(jnp.where(lp.done, -1, nxt))
        done = lp.done | ((nxt == tokenizer.EOS_ID) & stop_at_eos)
        new, info = _feed_column(model, lp, nxt, done)
        live = (~lp.done).astype(jnp.int32)
        return new._replace(out=out, count=lp.count + live, step=lp.step + 1,
                            stats=lp.stats.add(info, row_rounds=live.sum(), kept=live.sum()))

    return jax.lax.while_loop(running, body, loop)


@functools.partial(jax.jit, static_argnames=("graphdef", "k", "stop_at_eos"), donate_argnames=("loop",))
def _speculate(graphdef, params, loop: Loop, stop_at, k: int, stop_at_eos: bool = True) -> Loop:
    """Greedy, k bytes per self-speculative round (`speculate.round_`), until every row is done or
    has `stop_at` ids (traced, as `_decode`)."""
    model = nnx.merge(graphdef, params)
    b, max_new = loop.out.shape
    max_len = loop.state.byte_patch.shape[1]

    def running(lp):
        return jnp.any(~lp.done & (lp.count < jnp.minimum(stop_at, max_new)))

    def body(lp):
        chunk, n, logits, state, info = speculate.round_(model, lp.state, lp.logits, lp.done, max_new - lp.count,
                                                         k, max_len, stop_at_eos)
        j = jnp.arange(k)[None, :]
        kept = j < n[:, None]
        at = jnp.where(kept, lp.count[:, None] + j, max_new)
        out = lp.out.at[jnp.arange(b)[:, None], at].set(chunk, mode="drop")
        count = lp.count + n
        done = lp.done | (count >= max_new) | (state.pos >= max_len)
        if stop_at_eos:
            done = done | jnp.any(kept & (chunk == tokenizer.EOS_ID), axis=1)
        live = ~lp.done
        offered = (live[:, None] & (lp.state.pos[:, None] + j < max_len)).sum(axis=1) - 1
        stats = lp.stats.add(info, row_rounds=live.sum(dtype=jnp.int32), kept=n.sum(),
                             drafted=jnp.maximum(offered, 0).sum(), accepted=jnp.maximum(n - 1, 0).sum())
        return lp._replace(state=state, logits=logits, out=out, count=count, done=done, step=lp.step + 1,
                           stats=stats)

    return jax.lax.while_loop(running, body, loop)


def encode_prompts(prompts: list[str], context: int | None, max_new_bytes: int):
    """(ids int32 `[batch, T]` right-padded, lengths, max_len). A prompt that does not fit the context
    raises ConfigError."""
    if not prompts:
        raise ConfigError("no prompts given")
    seqs = [tokenizer.encode(p) for p in prompts]
    longest = max(len(s) for s in seqs)
    if context is not None and longest > context:
        raise ConfigError(f"prompt of {longest - 1} bytes does not fit the context of {context} bytes "
                          "(BOS included)")
    max_len = context if context is not None else _round_up(longest + max_new_bytes)
    ids = np.zeros((len(seqs), _round_up(longest)), np.int32)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = s
    return ids, np.array([len(s) for s in seqs]), max_len


def run(model, prompts: list[str], max_new_bytes: int = 256, sampling: Sampling = Sampling(), seed: int = 0,
        context: int | None = None, on_bytes=None, stream_every: int = 1, stop_at_eos: bool = True,
        latent_steps: int = 0, thoughts: bool = True, then: list[int] | None = None, speculate: int = 0) -> Result:
    """Generate for a batch of prompts. `on_bytes(row, new_ids)` is called as bytes arrive when given
    (streaming, `stream_every` bytes per device call); otherwise the whole run is one device call.
    `stop_at_eos=False` treats EOS as any other id (benchmarks: always `max_new_bytes`).
    `latent_steps=N` (Coconut models) appends `<bot>`, N `<latent>` and `<eot>` after each prompt before
    generating; `thoughts=False` keeps the `<latent>` patches plain (pause mode). `then` gives those
    forced ids explicitly instead (any ids; `<latent>` among them are thoughts unless `thoughts=False`).
    `speculate=K` (greedy only) decodes by self-speculative rounds of up to K bytes: the same bytes."""
    if max_new_bytes < 1:
        raise ConfigError(f"max_new_bytes must be >= 1, got {max_new_bytes}")
    sampling.check(model.config.vocab_size)
    check_speculate(speculate, sampling)
    if latent_steps and model.config.vocab_size <= tokenizer.LATENT_ID:
        raise ConfigError(f"--latent_steps needs a model with the latent ids (vocab_size "
                          f"{model.config.vocab_size} <= {tokenizer.LATENT_ID})")
    if then is not None:
        forced = list(then)
    else:
        forced = [tokenizer.BOT_ID] + [tokenizer.LATENT_ID] * latent_steps + [tokenizer.EOT_ID] if latent_steps else []
    if any(not 0 <= i < model.config.vocab_size for i in forced):
        raise ConfigError(f"forced ids {forced} outside the model's vocab of {model.config.vocab_size}")
    ids, lengths, max_len = encode_prompts(prompts, context, max_new_bytes + len(forced))
    valid = np.arange(ids.shape[1])[None, :] < lengths[:, None]
    graphdef, params = nnx.split(model)
    args = (graphdef, params, jnp.asarray(ids), jnp.asarray(valid), jax.random.key(seed))
    t0 = time.perf_counter()
    prefill = _prefill.lower(*args, max_len=max_len, max_new=max_new_bytes, slack=speculate).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    loop = prefill(*args[1:])
    if forced:
        loop = _force(graphdef, params, loop, jnp.asarray(forced, jnp.int32), thoughts)
    loop = jax.block_until_ready(loop)
    prefill_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    if speculate:
        decode = _speculate.lower(graphdef, params, loop, 0, speculate, stop_at_eos).compile()
    else:
        decode = _decode.lower(graphdef, params, loop, 0, sampling, stop_at_eos).compile()
    compile_s += time.perf_counter() - t0
    t0 = time.perf_counter()
    if on_bytes is None:
        loop = jax.block_until_ready(decode(params, loop, max_new_bytes))
    else:
        seen, target = np.zeros(len(prompts), np.int64), 0
        # plain decoding stops after `target` steps, speculation once every running row has `target` ids
        while target < max_new_bytes and not bool(loop.done.all()):
            target += stream_every
            loop = decode(params, loop, target)
            count, out = np.asarray(loop.count), np.asarray(loop.out)
            for row in range(out.shape[0]):
                on_bytes(row, [int(i) for i in out[row, seen[row]:count[row]]])
            seen = count
    decode_s = time.perf_counter() - t0
    gen = []
    for row in np.asarray(loop.out):
        kept = [int(i) for i in row if i >= 0]
        if stop_at_eos and tokenizer.EOS_ID in kept:
            kept = kept[:kept.index(tokenizer.EOS_ID)]
        gen.append(kept)
    carry = loop.state.carry
    patches = np.asarray(carry.count - carry.pending.astype(jnp.int32))
    avg = (np.asarray(loop.state.pos) / np.maximum(patches, 1)).tolist()
    stats = {k: int(v) for k, v in loop.stats._asdict().items()}
    return Result(gen, [tokenizer.decode(g) for g in gen], prefill_s, decode_s, compile_s, avg, stats)


MAX_SPECULATE = 64


def check_speculate(k: int, sampling: Sampling) -> None:
    """ConfigError unless k is 0 (off) or 2..MAX_SPECULATE with greedy decoding."""
    if k and not 2 <= k <= MAX_SPECULATE:
        raise ConfigError(f"speculate must be 0 (off) or 2..{MAX_SPECULATE} bytes per round, got {k}")
    if k and sampling.temperature > 0:
        raise ConfigError("speculate works with greedy decoding only (temperature 0): exact speculative "
                          "sampling is not implemented")


def generate(model, prompts: list[str], max_new_bytes: int = 256, temperature: float = 0.0,
             top_k: int | None = None, top_p: float | None = None, seed: int = 0, speculate: int = 0) -> list[str]:
    """The new text for each prompt (stops at EOS or after `max_new_bytes` bytes); `speculate=K`:
    self-speculative greedy rounds of up to K bytes, the same text."""
    sampling = Sampling(temperature=float(temperature), top_k=int(top_k or 0),
                        top_p=1.0 if top_p is None else float(top_p))
    return run(model, list(prompts), max_new_bytes, sampling, seed, speculate=speculate).texts
