"""A tiny BLT exported to Hugging Face, and HF `BltForCausalLM` references for lm-eval's three request
types, computed one request at a time (needs torch + transformers)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx
from model_helpers import tiny
from transformers import BltForCausalLM

from hybrid_jax import tokenizer
from hybrid_jax.model import BLT
from hybrid_jax.storage.hf import to_hf
from hybrid_jax.storage.hf.config import hf_divergences

PROBE = "The quick brown fox jumps over the lazy dog; def f(x): return x * 2"


def exported_model(out_dir: str, seed: int = 0):
    """(HF model, directory) of a tiny BLT that Hugging Face reproduces exactly (no divergences), with an
    entropy threshold at the median of its own entropies (mixed patch lengths) and a head scaled up so
    that its byte distributions are far from uniform."""
    cfg = tiny("entropy")
    cfg.hash.group_sizes = (3, 5)
    model = BLT(cfg, nnx.Rngs(seed))
    head = model.lm_head.kernel
    head.set_value(head.get_value() * 2.0)
    ent = np.sort(np.asarray(model.patch(jnp.asarray([tokenizer.encode(PROBE)])).entropies)[0, 1:])
    cfg = model.config.as_configdict()
    cfg.patching.threshold = float((ent[len(ent) // 2 - 1] + ent[len(ent) // 2]) / 2)
    again = BLT(cfg, nnx.Rngs(seed))
    nnx.update(again, nnx.state(model, nnx.Param))
    assert hf_divergences(again.config) == []
    to_hf(again, again.config, out_dir)
    return BltForCausalLM.from_pretrained(out_dir).float().eval(), out_dir


def hf_log_probs(hf, ids: list[int]) -> np.ndarray:
    """float64 `[len(ids) - 1, vocab]` log-probabilities of each next id, HF on this one row."""
    with torch.no_grad():
        logits = hf(input_ids=torch.tensor([ids[:-1]]), use_cache=False).logits[0].double()
    return torch.log_softmax(logits, -1).numpy()


def hf_loglikelihood(hf, context: str, continuation: str, max_length: int) -> tuple[float, bool]:
    """(sum of the continuation's log-probabilities, greedy) after `[BOS] + context`, the sequence cut
    to its last `max_length` ids."""
    cont = tokenizer.encode(continuation, add_bos=False)
    ids = (tokenizer.encode(context) + cont)[-max_length:]
    if not cont:
        return 0.0, True
    lp = hf_log_probs(hf, ids)[-len(cont):]
    targets = np.asarray(ids[-len(cont):])
    return float(lp[np.arange(len(cont)), targets].sum()), bool((lp.argmax(-1) == targets).all())


def hf_rolling(hf, text: str, max_length: int) -> float:
    """Log-likelihood of `[BOS] + text`: prediction p (1..n) reads the window that holds it, windows of
    L = max_length - 1 predictions one after the other, the last one instead ending at the text's end."""
    ids = tokenizer.encode(text)
    n, L = len(ids) - 1, max_length - 1
    total = 0.0
    for first in range(1, n + 1, L):
        last = min(first + L - 1, n)
        start = max(0, min(first - 1, n - L))  # the window's first input
        lp = hf_log_probs(hf, ids[start:last + 1])
        for p in range(first, last + 1):
            total += lp[p - 1 - start, ids[p]]
    return total


def hf_generate_until(hf, prompt: str, until: list[str], max_gen: int) -> str:
    """HF greedy decoding of `max_gen` bytes (stopping at EOS), cut before the first stop string."""
    ids = torch.tensor([tokenizer.encode(prompt)])
    with torch.no_grad():
        out = hf.generate(ids, max_new_tokens=max_gen, do_sample=False, use_cache=False,
                          eos_token_id=tokenizer.EOS_ID, pad_token_id=0)[0, ids.shape[1]:].tolist()
    if tokenizer.EOS_ID in out:
        out = out[:out.index(tokenizer.EOS_ID)]
    raw = tokenizer.ids_to_bytes(out)
    cuts = [raw.find(s.encode()) for s in until if s.encode() in raw]
    return raw[:min(cuts or [len(raw)])].decode("utf-8", errors="replace")
