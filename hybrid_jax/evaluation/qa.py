"""Question answering with (or without) continuous thoughts: prompt, greedy decoding, exact match.

A question is prompted as `question\\n<bot><latent>*n<eot>` (no markers in cot / no-cot modes), the
model writes greedily until EOS (KV-cached, continuous thoughts included: `generate.run`), and the text after the last `#` (commas removed, stripped) must equal
the answer (the reference's rule).
"""

from __future__ import annotations

import numpy as np

from hybrid_jax.data import curriculum as cur
from hybrid_jax.tokenizer import decode


def extract_answer(text: str) -> str:
    return text.split("#")[-1].replace(",", "").strip()


def write_answers(model, examples: list[dict], thoughts: list[int], mode: str, max_new: int,
                  batch_size: int = 16) -> list[list[int]]:
    """The ids the model writes greedily (up to EOS or `max_new` bytes) after each question prompt
    (`curriculum.prompt_ids`: the question, then `<bot>`, `thoughts[i]` thoughts, `<eot>` in marker modes),
    with the KV-cached generator (`generate.run`). Questions with equal thought counts share batches of
    `batch_size` (the last padded by repeating a prompt, so every batch has one compiled shape)."""
    from hybrid_jax.inference.generate import run
    out: list[list[int]] = [[] for _ in examples]
    for n in sorted(set(thoughts)):
        rows = [i for i, t in enumerate(thoughts) if t == n]
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            texts = [examples[i]["question"] + "\n" for i in chunk]
            res = run(model, texts + [texts[-1]] * (batch_size - len(chunk)), max_new,
                      then=cur.thought_ids(n, mode), thoughts=cur.feeds_back(mode))
            for i, ids in zip(chunk, res.ids):
                out[i] = ids
    return out


def answer_records(model, examples: list[dict], cc, mode: str, stage: int, latent_steps: int | None = None,
                   batch_size: int = 16, max_new: int = 128) -> list[dict]:
    """Per question: {"correct": bool, "thoughts": int, "written": ids the model wrote (EOS included)};
    thoughts from the trained `stage` (curriculum.thoughts_at_eval) unless `latent_steps` is given
    (ignored in cot / no-cot)."""
    if not cur.has_markers(mode):
        latent_steps = 0
    if latent_steps is None:
        thoughts = [cur.thoughts_at_eval(cc, stage, len(ex["steps"]), mode) for ex in examples]
    else:
        thoughts = [latent_steps] * len(examples)
    written = write_answers(model, examples, thoughts, mode, max_new, batch_size)
    return [{"correct": extract_answer(decode(w)) == extract_answer(ex["answer"]), "thoughts": t, "written": w}
            for w, t, ex in zip(written, thoughts, examples)]


def answer_accuracy(model, examples: list[dict], cc, mode: str, stage: int, latent_steps: int | None = None,
                    batch_size: int = 16, max_new: int = 128) -> dict:
    """{"accuracy", "n", "mode", "avg_latents"} over `examples` (see `answer_records`)."""
    recs = answer_records(model, examples, cc, mode, stage, latent_steps, batch_size, max_new)
    n = len(recs)
    return {"accuracy": sum(r["correct"] for r in recs) / max(n, 1), "n": n, "mode": mode,
            "avg_latents": float(np.mean([r["thoughts"] for r in recs])) if n else 0.0}
