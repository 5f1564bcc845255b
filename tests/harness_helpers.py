"""A tiny BLT exported to Hugging Face, and HF `BltForCausalLM` references for lm-eval's three request
types, computed one request at a time (needs torch + transformers)."""

from __future__ import annotations

import jax
import numpy as np
import torch
from model_helpers import tiny
from transformers import BltForCausalLM

from hybrid_jax import tokenizer
from hybrid_jax.model.params import abstract_model, model_with_params, param_tree
from hybrid_jax.storage.hf import to_hf
from hybrid_jax.storage.hf.config import hf_divergences

PROBE = "The quick brown fox jumps over the lazy dog; def f(x): return x * 2"


def exported_model(out_dir: str, seed: int = 0, **patching):
    """(HF model, directory) of a tiny BLT that Hugging Face reproduces exactly (no divergences), written
    by `to_hf`: random weights drawn in numpy (no initialisation to compile), an entropy threshold at the
    median of its own entropies on a probe text (mixed patch lengths); `patching`: config overrides."""
    cfg = tiny("entropy", **patching)
    cfg.hash.group_sizes = (3, 5)
    rng = np.random.default_rng(seed)
    params = jax.tree_util.tree_map_with_path(lambda path, x: _draw(rng, jax.tree_util.keystr(path), x),
                                              param_tree(abstract_model(cfg)))
    to_hf(model_with_params(cfg, params), cfg, out_dir)
    hf = BltForCausalLM.from_pretrained(out_dir).float().eval()
    with torch.no_grad():
        ent = hf.model.patcher(torch.tensor([tokenizer.encode(PROBE)]), patch_size=None)[0][0, 1:].numpy()
    ent = np.sort(ent)
    cfg.patching.threshold = float((ent[len(ent) // 2 - 1] + ent[len(ent) // 2]) / 2)
    model = model_with_params(cfg, params)
    assert hf_divergences(model.config) == []
    to_hf(model, model.config, out_dir, force=True)
    hf.config.patching_threshold = cfg.patching.threshold
    return hf, out_dir


def _draw(rng, path: str, x) -> np.ndarray:
    """Random values for the parameter at `path` of shape struct `x`: norms around 1, embedding tables
    of unit scale, other matrices scaled by their fan-in."""
    if x.ndim == 1:
        return (1.0 + 0.3 * rng.standard_normal(x.shape)).astype(np.float32)
    scale = 1.0 if "embed" in path else 1.5 / np.sqrt(x.shape[-2])
    return (scale * rng.standard_normal(x.shape)).astype(np.float32)


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
