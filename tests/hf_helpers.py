"""Random Hugging Face BLT models for parity tests (needs torch + transformers)."""

from __future__ import annotations

import numpy as np
import torch
from transformers import BltConfig, BltForCausalLM

# Three small configs covering GQA, a short local window, max_patch_length, an odd hash vocab,
# cross-attention in every encoder layer, and a global input projection (k * d_local != d_global).
CONFIGS = {
    "gqa": dict(
        cross_attn_k=2, local_attention_window_len=512, max_patch_length=None,
        encoder_hash_byte_group_size=[3, 4, 5], encoder_hash_byte_group_vocab=257,
        patcher_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48),
        encoder_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4),
        decoder_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40),
        global_config=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=8,
                           num_key_value_heads=2, intermediate_size=96)),
    "window": dict(
        cross_attn_k=3, local_attention_window_len=5, max_patch_length=None,
        encoder_hash_byte_group_size=[2, 3, 6, 8], encoder_hash_byte_group_vocab=1009,
        encoder_hash_byte_group_nb_functions=2,
        patcher_config=dict(hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=40, sliding_window=7, rope_parameters=dict(rope_type="default", rope_theta=777.0)),
        encoder_config=dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                            cross_attn_all_layers=True),
        decoder_config=dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                            intermediate_size=24, cross_attn_all_layers=False),
        global_config=dict(hidden_size=40, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64)),
    "maxlen": dict(
        cross_attn_k=2, local_attention_window_len=None, max_patch_length=3,
        encoder_hash_byte_group_size=[3, 4, 5, 6, 7, 8], encoder_hash_byte_group_vocab=4099,
        patcher_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32),
        encoder_config=dict(hidden_size=24, num_hidden_layers=1, num_attention_heads=3),
        decoder_config=dict(hidden_size=24, num_hidden_layers=1, num_attention_heads=3, intermediate_size=36),
        global_config=dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)),
}


def random_hf_model(name: str, seed: int = 0, vocab_size: int = 260, threshold: float = 1.0):
    """A BltForCausalLM with random weights, norm weights not all ones, in eval mode, float32."""
    torch.manual_seed(seed)
    kw = dict(CONFIGS[name])
    for sub in ("encoder_config", "decoder_config", "patcher_config"):
        kw[sub] = dict(kw[sub], vocab_size=vocab_size)
    for sub in ("encoder_config", "decoder_config"):
        kw[sub]["hidden_size_global"] = kw["global_config"]["hidden_size"]
        kw[sub]["cross_attn_k"] = kw["cross_attn_k"]
    cfg = BltConfig(vocab_size=vocab_size, patching_threshold=threshold, use_cache=False, **kw)
    return perturbed(BltForCausalLM(cfg).eval())


def perturbed(model):
    """`model` with norm weights not all ones and a sharper entropy model than the default init (so
    that entropies spread around a threshold); torch's global seed decides the noise."""
    with torch.no_grad():
        for key, p in model.named_parameters():
            if "norm" in key:
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif "patcher" in key:
                p.mul_(3.0)
    return model


def hf_entropies(model, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        ent, _, _ = model.model.patcher(torch.as_tensor(ids, dtype=torch.long), patch_size=None)
    return ent.numpy()


def hf_logits(model, ids: np.ndarray, patch_lengths=None) -> np.ndarray:
    with torch.no_grad():
        kwargs = {} if patch_lengths is None else {"patch_lengths": torch.as_tensor(np.asarray(patch_lengths))}
        out = model(input_ids=torch.as_tensor(ids, dtype=torch.long), use_cache=False, **kwargs)
    return out.logits.float().numpy()


def hf_patch_lengths(model, ids: np.ndarray) -> np.ndarray:
    c = model.config
    with torch.no_grad():
        _, lengths, _ = model.model.patcher(torch.as_tensor(ids, dtype=torch.long), patch_size=c.patch_size,
                                            threshold=c.patching_threshold, max_patch_length=c.max_patch_length)
    return lengths.numpy()


def random_ids(seed: int, batch: int, length: int, vocab_size: int = 260) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ids = rng.integers(4, vocab_size, size=(batch, length))
    ids[:, 0] = 1
    return ids.astype(np.int32)
