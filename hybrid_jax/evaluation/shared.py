"""Log-likelihoods of several continuations of one context, the context computed once: a multiple-choice
question's choices (lm_eval asks one loglikelihood request per choice, all with the same context).

The sequence of a request is `S = [BOS] + context + continuation`, scored as `scoring` scores it: the
forward over `S[:-1]`, predictions of the continuation's bytes. Here the cached forward
(`hybrid_jax.inference.incremental`) takes the prefix `S[:c]` (c = len([BOS] + context) - 1) once per
context, copies its state to each continuation's row, and feeds the rest, `S[c:-1]`, as one chunk: the
chunk's logits are the full forward's of everything fed so far (the incremental forward is exact), so
the numbers are those of the per-row path up to float32 summation order, for about
`len(context) / (k * len(context + continuation))` of the bytes' work with k choices.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hybrid_jax.inference import incremental
from hybrid_jax.model.params import assemble


class Group(NamedTuple):
    """One context and the continuations scored after it (each non-empty, ids without BOS)."""
    context: np.ndarray              # int32: [BOS] + context ids
    continuations: list[np.ndarray]  # int32 each


def split(group: Group) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """(prefix ids, [(chunk ids, target ids)] per continuation): prefix + chunk = S[:-1], targets =
    the continuation."""
    c = len(group.context) - 1
    return group.context[:c], [(np.concatenate([group.context[c:], cont[:-1]]), cont)
                               for cont in group.continuations]


def pack(groups: list[Group], contexts: int, rows: int, prefix_len: int, chunk_len: int):
    """Padded arrays of one batch: prefix, prefix_valid `[contexts, prefix_len]`; owner `[rows]` (the
    context row each row copies); chunk, chunk_valid, targets `[rows, chunk_len]`."""
    prefix = np.zeros((contexts, prefix_len), np.int32)
    prefix_valid = np.zeros((contexts, prefix_len), bool)
    owner = np.zeros((rows,), np.int32)
    chunk = np.zeros((rows, chunk_len), np.int32)
    chunk_valid = np.zeros((rows, chunk_len), bool)
    targets = np.zeros((rows, chunk_len), np.int32)
    r = 0
    for g, group in enumerate(groups):
        p, parts = split(group)
        prefix[g, :len(p)], prefix_valid[g, :len(p)] = p, True
        for ids, cont in parts:
            owner[r] = g
            chunk[r, :len(ids)], chunk_valid[r, :len(ids)], targets[r, :len(cont)] = ids, True, cont
            r += 1
    return prefix, prefix_valid, owner, chunk, chunk_valid, targets


def prefill(graphdef, template, params, prefix, prefix_valid, owner, *, max_len: int) -> incremental.State:
    """The cached state after each context's prefix `[contexts, prefix_len]`, copied to each row
    (owner int32 `[rows]`), with room for `max_len` bytes."""
    model = assemble(graphdef, template, params)
    state = incremental.init_state(model, prefix.shape[0], max_len)
    _, state = incremental.feed(model, state, prefix, prefix_valid, fresh=True)
    return jax.tree.map(lambda x: jnp.take(x, owner, axis=0), state)


def patches_closed(graphdef, template, params, state: incremental.State, chunk, chunk_valid) -> jax.Array:
    """The most patches any row's chunk `[rows, chunk_len]` closes (int32 `[]`): the patching rules
    alone (and the entropy model), so that `score_chunk` runs the global transformer on no more
    positions than that."""
    return jnp.max(incremental.patches_closing(assemble(graphdef, template, params), state, chunk, chunk_valid))


def score_chunk(graphdef, template, params, state: incremental.State, chunk, chunk_valid, targets, *, slots: int):
    """(target log-probabilities float32 `[rows, chunk_len]`, argmax != target bool `[rows, chunk_len]`)
    of the chunks fed after `prefill`'s state, the global transformer on `slots` closing patches (at
    least `patches_closed`); padding positions give garbage the caller ignores."""
    model = assemble(graphdef, template, params)
    logits, _, _ = incremental.feed_info(model, state, chunk, chunk_valid, max_closing=slots)
    logp = jax.nn.log_softmax(logits, axis=-1)
    lp = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    return lp, jnp.argmax(logits, axis=-1) != targets


def batches(groups: list[int], sizes: list[int], contexts: int, rows: int) -> list[list[int]]:
    """Consecutive runs of `groups` (indices; `sizes[i]`: continuations of group i, each <= rows) with at
    most `contexts` groups and `rows` continuations each."""
    out, cur, used = [], [], 0
    for i in groups:
        if cur and (len(cur) == contexts or used + sizes[i] > rows):
            out.append(cur)
            cur, used = [], 0
        cur.append(i)
        used += sizes[i]
    return out + ([cur] if cur else [])
