"""Question answering with (or without) continuous thoughts: prompt, greedy decoding, exact match.

A question is prompted as `question\\n<bot><latent>*n<eot>` (no markers in cot / no-cot modes), the
model writes greedily until EOS, and the text after the last `#` (commas removed, stripped) must equal
the answer (the reference's rule).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hybrid_jax.data import curriculum as cur
from hybrid_jax.tokenizer import EOS_ID, LATENT_ID, decode


def extract_answer(text: str) -> str:
    return text.split("#")[-1].replace(",", "").strip()


@nnx.jit(static_argnums=3)
def _next_ids(model, buf, pos, passes):
    """Greedy next id after position pos `[batch]` of buf `[batch, length]`."""
    logits = model(buf, latent_passes=passes)
    return jnp.argmax(jnp.take_along_axis(logits, pos[:, None, None], axis=1)[:, 0], axis=-1)


def greedy_decode(model, prompts: list[list[int]], passes: int, max_new: int, width: int = 0) -> list[list[int]]:
    """The ids each prompt's continuation gets greedily, up to EOS (excluded) or `max_new` ids.

    Recomputes the whole forward pass for every new id (a cached generator can replace this
    function): one compiled shape `[len(prompts), width]` (default: longest prompt + max_new), rows
    right-padded (causal: padding never changes what a row reads).
    `passes`: static global passes (thoughts + 1, or 0 without feedback).
    """
    n = len(prompts)
    buf = np.zeros((n, max(width, max(map(len, prompts)) + max_new)), np.int32)
    for i, p in enumerate(prompts):
        buf[i, :len(p)] = p
    lengths = np.array([len(p) for p in prompts])
    done = np.zeros(n, bool)
    out: list[list[int]] = [[] for _ in prompts]
    for _ in range(max_new):
        nxt = np.asarray(jax.device_get(_next_ids(model, jnp.asarray(buf), jnp.asarray(lengths - 1), passes)))
        for i in np.flatnonzero(~done):
            if nxt[i] == EOS_ID:
                done[i] = True
            else:
                out[i].append(int(nxt[i]))
                buf[i, lengths[i]] = nxt[i]
                lengths[i] += 1
        if done.all():
            break
    return out


def answer_accuracy(model, examples: list[dict], cc, mode: str, stage: int, latent_steps: int | None = None,
                    batch_size: int = 16, max_new: int = 128) -> dict:
    """{"accuracy", "n", "mode", "avg_latents"} over `examples`; thoughts per question from the trained
    `stage` (curriculum.thoughts_at_eval) unless `latent_steps` is given. One compiled shape for all
    batches (the last is padded by repeating a prompt)."""
    prompts = []
    for ex in examples:
        n = latent_steps if latent_steps is not None else cur.thoughts_at_eval(cc, stage, len(ex["steps"]), mode)
        prompts.append(cur.prompt_ids(ex, n, mode))
    thoughts = [p.count(LATENT_ID) for p in prompts]
    passes = cur.latent_passes(cc, mode, max(thoughts, default=0))
    width = max(map(len, prompts), default=0) + max_new
    correct = 0
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        written = greedy_decode(model, chunk + [chunk[-1]] * (batch_size - len(chunk)), passes, max_new, width)
        for ex, ids in zip(examples[start:start + batch_size], written):
            correct += extract_answer(decode(ids)) == extract_answer(ex["answer"])
    n = len(examples)
    return {"accuracy": correct / max(n, 1), "n": n, "mode": mode,
            "avg_latents": float(np.mean(thoughts)) if n else 0.0}
