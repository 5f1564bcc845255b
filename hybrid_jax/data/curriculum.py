"""Stage-by-stage training text for latent reasoning (Coconut), as id lists and padded batches.

An example `{"question", "steps", "answer"}` is written, at stage k, as

    [BOS] question\\n <bot> <latent> * (k * c_thought) <eot> step_{k+1}\\n ... step_n\\n ### answer [EOS]

(the reference's layout: the question keeps its newline, each remaining step ends with one, the
answer follows `### `). Past `max_latent_stage` every step is dropped and the thoughts stay at
`max_latent_stage * c` (or at `min(n_steps, max_latent_stage) * c` without `pad_latent_to_max`).
Loss is on what follows `<eot>` (remaining steps, answer, EOS), never on the question, the markers or
the thoughts.

Modes: `coconut` (thoughts fed back), `pause` (same text, `<latent>` ids stay plain tokens),
`no-curriculum` (the final stage from the first epoch), `cot` (every step written, no markers) and
`no-cot` (question then answer, no markers).
"""

from __future__ import annotations

import numpy as np

from hybrid_jax.errors import DataError
from hybrid_jax.tokenizer import BOT_ID, EOS_ID, EOT_ID, LATENT_ID, encode

PAD_ID = 0  # BOE: never inside an example; right padding, masked out of the loss


def has_markers(mode: str) -> bool:
    """`<bot>` ... `<eot>` around the thoughts (cot and no-cot write none, as the reference)."""
    return mode in ("coconut", "pause", "no-curriculum")


def feeds_back(mode: str) -> bool:
    """Whether `<latent>` positions take the previous global output (else they are pause tokens)."""
    return mode in ("coconut", "no-curriculum")


def max_thoughts(cc) -> int:
    return cc.max_latent_stage * cc.c_thought


def latent_passes(cc, mode: str | None = None, n_thoughts: int | None = None) -> int:
    """Global passes the model needs (static): thoughts + 1 when they are fed back, else 0."""
    mode = mode or cc.mode
    if not feeds_back(mode):
        return 0
    return (max_thoughts(cc) if n_thoughts is None else n_thoughts) + 1


def stage_of_epoch(cc, epoch: int) -> int:
    if cc.mode in ("cot", "no-cot"):
        return 0
    if cc.mode == "no-curriculum":
        return cc.max_latent_stage + 1
    return epoch // cc.epochs_per_stage


def plan(cc, stage: int, n_steps: int, mode: str | None = None) -> tuple[int, int]:
    """(steps dropped, thoughts) of an example with `n_steps` steps at `stage`."""
    mode = mode or cc.mode
    if mode == "no-cot":
        return n_steps, 0
    if mode == "cot":
        return 0, 0
    if stage > cc.max_latent_stage:
        kept = cc.max_latent_stage if cc.pad_latent_to_max else min(n_steps, cc.max_latent_stage)
        return n_steps, kept * cc.c_thought
    return stage, stage * cc.c_thought


def thoughts_at_eval(cc, stage: int, n_steps: int, mode: str | None = None) -> int:
    """Thoughts a question gets at inference after training up to `stage` (the reference's rule)."""
    if not has_markers(mode or cc.mode):
        return 0
    top = cc.max_latent_stage if cc.pad_latent_to_max else min(cc.max_latent_stage, n_steps)
    return min(top, stage) * cc.c_thought


def question_ids(ex: dict) -> list[int]:
    return encode(ex["question"] + "\n")


def thought_ids(n_thoughts: int, mode: str) -> list[int]:
    if not has_markers(mode):
        return []
    return [BOT_ID] + [LATENT_ID] * n_thoughts + [EOT_ID]


def training_ids(ex: dict, cc, stage: int) -> tuple[list[int], int]:
    """(ids, first scored index): the example's text at `stage`."""
    skip, n = plan(cc, stage, len(ex["steps"]))
    prefix = question_ids(ex) + thought_ids(n, cc.mode)
    rest = "".join(s + "\n" for s in ex["steps"][skip:]) + "### " + ex["answer"]
    return prefix + encode(rest, add_bos=False) + [EOS_ID], len(prefix)


def prompt_ids(ex: dict, n_thoughts: int, mode: str) -> list[int]:
    """What the model reads before it writes: question, then `<bot>`, thoughts, `<eot>` (if any)."""
    return question_ids(ex) + thought_ids(n_thoughts, mode)


def draw_stage(cc, stage: int, n_steps: int, rng: np.random.Generator) -> int:
    """With `uniform_prob`, a uniformly drawn stage in [0, n_steps] instead of the scheduled one."""
    if cc.uniform_prob and rng.random() < cc.uniform_prob:
        return int(rng.integers(0, n_steps + 1))
    return stage


def make_batch(rows: list[tuple[list[int], int]], seq_len: int) -> dict:
    """{"ids": int32 `[batch, seq_len + 1]` (right-padded), "mask": float32 `[batch, seq_len]`}; mask[t]
    = 1 where target `ids[t + 1]` is scored (at or after the row's first scored index, not padding)."""
    ids = np.full((len(rows), seq_len + 1), PAD_ID, np.int32)
    mask = np.zeros((len(rows), seq_len), np.float32)
    for i, (row, first) in enumerate(rows):
        if len(row) > seq_len + 1:
            raise DataError(f"example of {len(row)} ids does not fit data.seq_len + 1 = {seq_len + 1}")
        ids[i, :len(row)] = row
        mask[i, max(first, 1) - 1:len(row) - 1] = 1.0
    return {"ids": ids, "mask": mask}


def check_lengths(examples: list[dict], cc, seq_len: int, where: str) -> None:
    """DataError naming the first example too long for `seq_len` at any stage of the schedule."""
    # Every stage a run can reach, uniform draws included.
    last = max(stage_of_epoch(cc, cc.num_epochs - 1), cc.max_latent_stage + 1)
    for i, ex in enumerate(examples):
        n = max(len(training_ids(ex, cc, s)[0]) for s in range(last + 1))
        if n > seq_len + 1:
            raise DataError(f"{where}: example {i} needs {n} ids, more than data.seq_len + 1 = {seq_len + 1}")


class Curriculum:
    """Batches of an epoch-based schedule over a finite example list, resumable by position.

    Epoch e shuffles the examples with seed (seed, e) and cuts them into `len // batch_size` batches
    (the remainder is dropped); the stage is `stage_of_epoch(e)`. The position is (epoch, index), so
    step s of a run is always batch s % steps_per_epoch of epoch s // steps_per_epoch.
    """

    def __init__(self, examples: list[dict], cc, batch_size: int, seq_len: int, seed: int):
        self.examples, self.cc, self.batch_size, self.seq_len, self.seed = examples, cc, batch_size, seq_len, seed
        self.steps_per_epoch = len(examples) // batch_size
        if self.steps_per_epoch < 1:
            raise DataError(f"{len(examples)} training examples are fewer than train.batch_size={batch_size}")
        self.epoch = self.index = 0

    def get_state(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def set_state(self, state: dict) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])

    def seek(self, step: int) -> None:
        self.epoch, self.index = divmod(step, self.steps_per_epoch)

    @property
    def stage(self) -> int:
        return stage_of_epoch(self.cc, self.epoch)

    def batch(self, epoch: int, index: int) -> dict:
        order = np.random.default_rng((self.seed, epoch)).permutation(len(self.examples))
        rng = np.random.default_rng((self.seed, epoch, index, 1))
        stage = stage_of_epoch(self.cc, epoch)
        rows = []
        for j in order[index * self.batch_size:(index + 1) * self.batch_size]:
            ex = self.examples[j]
            rows.append(training_ids(ex, self.cc, draw_stage(self.cc, stage, len(ex["steps"]), rng)))
        return make_batch(rows, self.seq_len)

    def __next__(self) -> dict:
        out = self.batch(self.epoch, self.index)
        self.index += 1
        if self.index == self.steps_per_epoch:
            self.epoch, self.index = self.epoch + 1, 0
        return out
