"""Model FLOPs of a training step (for MFU), counted from the config.

Per token a dense matmul with an `[in, out]` kernel costs 2·in·out FLOPs forward and twice that
backward (6·in·out for training). Attention adds 4·d per (query, key) pair it scores (2·d for the
score, 2·d for the weighted sum): causal self-attention scores ctx = length/2 keys per query on average
(capped by the window), as the fused kernels skip the masked blocks; the encoder's patch queries score
only the bytes of their patch and the decoder's bytes only the `cross_attn_k` keys of their patch
(what `attend_segments` and `attend_own_keys` compute). Embedding lookups are free. The entropy
model counts forward only (x1) when frozen, x3 when trained online. Local stacks run on every byte,
the global transformer on every patch slot (static shapes: computed whether used or not, so this is
the work the hardware does).
"""

from __future__ import annotations

from hybrid_jax.config import d_ff, kv_heads
from hybrid_jax.model.patching import num_slots


def _stack_matmul_params(s) -> int:
    hd = s.d_model // s.heads
    attn = s.d_model * hd * (2 * s.heads + 2 * kv_heads(s))
    return s.layers * (attn + 3 * s.d_model * d_ff(s))


def _self_attention(s, length: int) -> float:
    """Forward attention FLOPs per token of stack `s` over `length` tokens (all its layers)."""
    ctx = length / 2 if not s.window else min(s.window, length / 2)
    return s.layers * 4 * s.d_model * ctx


def _cross_matmuls(s, queries: int, keys: int) -> float:
    """Forward matmul FLOPs of one cross-attention layer of stack `s`: q and o projections per query,
    k and v per key."""
    kv = kv_heads(s) * (s.d_model // s.heads)
    return 4 * s.d_model * s.d_model * queries + 4 * s.d_model * kv * keys


def forward_flops(m, length: int) -> dict[str, float]:
    """Forward FLOPs of one sequence of `length` bytes: {model_matmul, model_attention, entropy_matmul,
    entropy_attention} (the entropy terms are 0 when the entropy model does not run)."""
    slots = num_slots(m.patching, length)
    k, enc, dec, glob, ent = m.cross_attn_k, m.local_encoder, m.local_decoder, m.global_transformer, m.entropy_model
    de, dd, dg = enc.d_model, dec.d_model, glob.d_model
    n_enc = enc.layers if enc.cross_attn_all_layers else 1
    n_dec = dec.layers if dec.cross_attn_all_layers else 1
    matmul = 2 * length * (_stack_matmul_params(enc) + _stack_matmul_params(dec) + dd * m.vocab_size)
    matmul += 2 * slots * _stack_matmul_params(glob)
    # encoder: max-pooled bytes -> k patch queries per slot, which attend to their patch's bytes
    matmul += n_enc * (2 * slots * de * k * de + _cross_matmuls(enc, k * slots, length))
    matmul += 2 * slots * k * de * dg if k * de != dg else 0  # into the global width
    # decoder: global patch states -> k keys per slot, which each byte of the patch attends to
    matmul += 2 * slots * dg * k * dd + n_dec * _cross_matmuls(dec, length, k * slots)
    attention = (length * (_self_attention(enc, length) + _self_attention(dec, length))
                 + slots * _self_attention(glob, slots) + 4 * k * length * (n_enc * de + n_dec * dd))
    runs = m.patching.mode == "entropy" or ent.trained_online
    ent_matmul = 2 * length * (_stack_matmul_params(ent) + ent.d_model * m.vocab_size) if runs else 0.0
    ent_attention = length * _self_attention(ent, length) if runs else 0.0
    return {"model_matmul": float(matmul), "model_attention": float(attention),
            "entropy_matmul": float(ent_matmul), "entropy_attention": float(ent_attention)}


def flops_per_sequence(m, length: int) -> float:
    """Training FLOPs for one sequence of `length` bytes under model config `m`."""
    f = forward_flops(m, length)
    ent_factor = 3 if m.entropy_model.trained_online else 1
    return 3 * (f["model_matmul"] + f["model_attention"]) + ent_factor * (f["entropy_matmul"] + f["entropy_attention"])


PEAK_TFLOPS = {  # dense bf16 per device, from vendor specs
    "h100": 989.0, "h200": 989.0, "a100": 312.0, "l4": 121.0,
    "tpu v4": 275.0, "tpu v5 lite": 197.0, "tpu v5e": 197.0, "tpu v5p": 459.0, "tpu v6 lite": 918.0,
}


def peak_tflops(device_kind: str, override: float = 0.0) -> float | None:
    """Per-device peak TFLOP/s: the override, else a known device kind, else None (e.g. CPU)."""
    if override:
        return override
    kind = device_kind.lower()
    for name, value in PEAK_TFLOPS.items():
        if name in kind:
            return value
    return None
