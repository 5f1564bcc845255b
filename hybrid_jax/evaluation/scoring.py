"""Log-likelihoods of byte sequences, batched on a mesh: the model-side half of the lm-evaluation-harness
backend (`hybrid_jax.evaluation.harness`), with no lm_eval in it.

A request becomes one or more rows, each `(inputs, targets, scored)`: the ids the model reads, the id
it should predict at each position, and which predictions count. Rows are sorted by length and padded
to a few bucket lengths (powers of two, and the context itself) in batches of a fixed size; the global
transformer gets as many patch positions as the batch's longest row has patches, rounded up to a power
of two, so that a whole evaluation compiles few forwards (one per length and patch bucket met).
Patching is the full forward's over each row: the entropy model is causal, so a context's patches do
not depend on what follows it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding

from hybrid_jax import tokenizer
from hybrid_jax.errors import ConfigError
from hybrid_jax.evaluation import shared
from hybrid_jax.evaluation.bpb import windows
from hybrid_jax.model.params import assemble, model_template, model_with_params, param_tree
from hybrid_jax.model.patching import info_from_starts, num_slots
from hybrid_jax.parallel.sharding import BATCH, batch_sharding, param_shardings

MIN_BUCKET = 16


class Row(NamedTuple):
    inputs: np.ndarray   # int32 [length]
    targets: np.ndarray  # int32 [length]
    scored: np.ndarray   # bool [length]


def byte_ids(text: str) -> list[int]:
    return tokenizer.encode(text, add_bos=False)


def loglikelihood_row(context: str, continuation: str, max_inputs: int) -> tuple[Row, bool]:
    """(row, truncated): `[BOS] + context + continuation` scored on the continuation's bytes. Longer than
    `max_inputs` predictions, the sequence is cut from the left (BOS first), as a window of training
    data starts anywhere in a document."""
    cont = byte_ids(continuation)
    if len(cont) > max_inputs:
        raise ConfigError(f"a continuation of {len(cont)} bytes does not fit the model's context of "
                          f"{max_inputs + 1} bytes")
    ids = np.asarray([tokenizer.BOS_ID, *byte_ids(context), *cont], np.int32)
    truncated = len(ids) - 1 > max_inputs
    ids = ids[-(max_inputs + 1):]
    scored = np.arange(len(ids) - 1) >= len(ids) - 1 - len(cont)
    return Row(ids[:-1], ids[1:], scored), truncated


def rolling_rows(text: str, max_inputs: int) -> list[Row]:
    """`[BOS] + text` in windows of `max_inputs` predictions, every byte scored exactly once; the last
    window of a longer document ends at its end with a full window of left context (`bpb.windows`: the
    rule of `hybrid-jax evaluate bpb`)."""
    ids = np.asarray([tokenizer.BOS_ID, *byte_ids(text)], np.int32)
    if len(ids) < 2:
        return []
    batch, mask = windows(ids, max_inputs)
    length = min(len(ids) - 1, max_inputs)  # a short document is one window of its own length
    return [Row(w[:length], w[1:length + 1], m[:length] > 0) for w, m in zip(batch, mask)]


def bucket(length: int, max_inputs: int) -> int:
    """The padded length of a row: the next power of two from MIN_BUCKET, at most `max_inputs`."""
    b = MIN_BUCKET
    while b < length:
        b *= 2
    return min(b, max_inputs) if length <= max_inputs else length


@dataclasses.dataclass
class Scorer:
    """A model's parameters placed on a mesh (rows sharded over its batch axes, parameters as training
    shards them), scoring rows `batch_size` at a time. `max_inputs`: predictions per row, the model's
    context minus one (BOS or the first id of a window is only read)."""

    cfg: object  # the model's config
    params: dict  # a `param_tree`, placed
    mesh: jax.sharding.Mesh
    max_inputs: int
    batch_size: int = 32

    def __post_init__(self):
        self.rows_per_call = int(np.prod([self.mesh.shape[a] for a in BATCH]))
        self.batch_size = -(-self.batch_size // self.rows_per_call) * self.rows_per_call
        graphdef, template = model_template(self.cfg)
        replicated = NamedSharding(self.mesh, jax.sharding.PartitionSpec())
        self._patch = jax.jit(functools.partial(_patch, graphdef, template))
        self._forward = jax.jit(functools.partial(_score, graphdef, template), static_argnames="slots",
                                out_shardings=replicated)
        self._prefill = jax.jit(functools.partial(shared.prefill, graphdef, template), static_argnames="max_len")
        self._closed = jax.jit(functools.partial(shared.patches_closed, graphdef, template))
        self._chunk = jax.jit(functools.partial(shared.score_chunk, graphdef, template), static_argnames="slots",
                              out_shardings=replicated)
        self.shapes: set[tuple[int, int, int]] = set()  # (batch, length, patch slots) compiled so far
        # (contexts, prefix length, rows, chunk length, patch slots) of the shared-context path compiled so far
        self.shared_shapes: set[tuple[int, int, int, int, int]] = set()

    @classmethod
    def of_model(cls, model, mesh, max_inputs: int, batch_size: int = 32) -> "Scorer":
        """A scorer for a model held on one device (as `load_any` gives it), placed on `mesh`."""
        params = param_tree(model)
        shardings = param_shardings(params, mesh)
        placed = jax.tree.map(lambda x, s: jax.make_array_from_callback(
            x.shape, s, lambda idx, x=np.asarray(x): x[idx]), params, shardings)
        return cls(model.config, placed, mesh, max_inputs, batch_size)

    def local_model(self):
        """The model with every parameter on this process (for the cached generator)."""
        leaves = jax.tree.leaves(self.params)
        if all(x.is_fully_addressable for x in leaves):
            return model_with_params(self.cfg, self.params)
        return model_with_params(self.cfg, multihost_utils.process_allgather(self.params, tiled=True))

    def score(self, rows: list[Row]) -> tuple[np.ndarray, np.ndarray]:
        """(log-likelihood float64 `[n]`: the sum over each row's scored predictions, greedy bool `[n]`:
        whether the argmax is the target at every scored position)."""
        total = np.zeros(len(rows), np.float64)
        greedy = np.ones(len(rows), bool)
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i].inputs))
        for length, members in _by_bucket(order, rows, self.max_inputs):
            for start in range(0, len(members), self.batch_size):
                chunk = members[start:start + self.batch_size]
                lp, ok = self._call([rows[i] for i in chunk], length)
                total[chunk] = lp
                greedy[chunk] = ok
        return total, greedy

    def score_groups(self, groups: list[shared.Group]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per group (at most `batch_size` continuations each, none empty, `[BOS] + context +
        continuation` within the context): (log-likelihood float64 `[k]`, greedy bool `[k]`) of its
        continuations, as `score` gives them for the rows of `loglikelihood_row`, each context computed
        once (`shared`)."""
        if not groups:
            return []
        sizes = [len(g.continuations) for g in groups]
        contexts = self._context_rows(sizes)
        order = sorted(range(len(groups)), key=lambda i: -len(groups[i].context))
        out: list = [None] * len(groups)
        for members in shared.batches(order, sizes, contexts, self.batch_size):
            sub = [groups[i] for i in members]
            prefix_len = bucket(max(len(g.context) for g in sub) - 1, self.max_inputs)
            chunk_len = bucket(max(len(c) for g in sub for c in g.continuations), self.max_inputs)
            arrays = shared.pack(sub, contexts, self.batch_size, prefix_len, chunk_len)
            prefix, prefix_valid, owner, chunk, chunk_valid, targets = self._place(arrays)
            state = self._prefill(self.params, prefix, prefix_valid, owner, max_len=prefix_len + chunk_len)
            closed = int(self._closed(self.params, state, chunk, chunk_valid))
            slots = min(max(4, 1 << max(closed - 1, 0).bit_length()), chunk_len + 1)  # a power of two >= closed
            self.shared_shapes.add((contexts, prefix_len, self.batch_size, chunk_len, slots))
            lp, wrong = jax.device_get(self._chunk(self.params, state, chunk, chunk_valid, targets, slots=slots))
            valid = arrays[4]
            totals = np.where(valid, lp.astype(np.float64), 0.0).sum(axis=1)
            greedy = ~(wrong & valid).any(axis=1)
            r = 0
            for i in members:
                k = sizes[i]
                out[i] = (totals[r:r + k], greedy[r:r + k])
                r += k
        return out

    def _context_rows(self, sizes: list[int]) -> int:
        """Contexts per shared batch: `batch_size` over the median group's continuations, a multiple of
        the rows one call shards over."""
        typical = sorted(sizes)[len(sizes) // 2]
        contexts = max(1, self.batch_size // typical)
        return -(-contexts // self.rows_per_call) * self.rows_per_call

    def _place(self, arrays) -> list[jax.Array]:
        """Host arrays `[batch, ...]` as global arrays sharded over the mesh's batch axes."""
        sharding = batch_sharding(self.mesh)
        return [jax.make_array_from_callback(a.shape, sharding, lambda idx, a=a: a[idx]) for a in arrays]

    def _call(self, rows: list[Row], length: int) -> tuple[np.ndarray, np.ndarray]:
        b = self.batch_size
        ids = np.zeros((b, length), np.int32)
        targets = np.zeros((b, length), np.int32)
        scored = np.zeros((b, length), bool)
        valid = np.zeros((b, length), bool)
        for r, row in enumerate(rows):
            n = len(row.inputs)
            ids[r, :n], targets[r, :n], scored[r, :n], valid[r, :n] = row.inputs, row.targets, row.scored, True
        args = self._place((ids, targets, valid))
        info, most = self._patch(self.params, args[0], args[2])
        slots = min(bucket(int(most), length), num_slots(self.cfg.patching, length))
        self.shapes.add((b, length, slots))
        lp, wrong = jax.device_get(self._forward(self.params, args[0], info, args[1], slots=slots))
        lp = np.where(scored, lp.astype(np.float64), 0.0).sum(axis=1)
        return lp[:len(rows)], ~(wrong & scored).any(axis=1)[:len(rows)]


def _by_bucket(order: list[int], rows: list[Row], max_inputs: int):
    """(bucket length, row indices) groups of `order` (longest first)."""
    groups: dict[int, list[int]] = {}
    for i in order:
        groups.setdefault(bucket(len(rows[i].inputs), max_inputs), []).append(i)
    return sorted(groups.items(), reverse=True)


def _patch(graphdef, template, params, ids, valid):
    """(PatchInfo, the most patches of any row) of ids int32 `[batch, length]` whose first `valid` (bool
    `[batch, length]`) positions are real. No patch begins in the padding after the slot of the next
    byte: it joins the patch before it, which no real byte reads (a byte reads the patch before the
    one of the byte after it), so the patch count, and the slots needed, stay the row's own. Without
    `include_next_token` that slot begins none either, as when the row fills the whole length."""
    model = assemble(graphdef, template, params)
    info = model.patch(ids)
    n = valid.sum(axis=1, keepdims=True)
    slot = jnp.arange(info.starts.shape[1])[None, :]
    keep = slot <= n
    if not model.config.patching.include_next_token:  # the last byte is the sequence's last (`patching`)
        keep = (slot < n) | ((slot == n) & (n < 2))
    starts = info.starts & keep
    return info_from_starts(starts, info.entropies), starts.sum(axis=1).max()


def _score(graphdef, template, params, ids, info, targets, slots: int):
    """(target log-probabilities float32 `[batch, length]`, argmax != target bool `[batch, length]`) for
    ids int32 `[batch, length]` (right-padded: the forward is causal, so padding changes no real row),
    with `slots` patch positions: at least every row's patches, so the logits are the full forward's.
    The scored positions are summed on the host, in float64."""
    logits = assemble(graphdef, template, params).forward_patches(ids, info, slots=slots)
    logp = jax.nn.log_softmax(logits, axis=-1)
    lp = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    return lp, jnp.argmax(logits, axis=-1) != targets
