"""Model FLOPs of a training step (for MFU), counted from the config.

Per token a dense matmul with an `[in, out]` kernel costs 2·in·out FLOPs forward and twice that
backward (6·in·out for training); attention adds 2·2·d·ctx per query (scores and weighted sum) with
ctx = the average number of visible keys (length/2 causal, capped by the window). Embedding lookups
are free. The entropy model counts forward only (x2) when frozen, x6 when trained online. Local stacks
run on every byte, the global transformer on every patch slot (static shapes: computed whether used or
not, so this is the work the hardware does).
"""

from __future__ import annotations

from hybrid_jax.config import d_ff, kv_heads
from hybrid_jax.model.patching import num_slots


def _stack_matmul_params(s) -> int:
    hd = s.d_model // s.heads
    attn = s.d_model * hd * (2 * s.heads + 2 * kv_heads(s))
    return s.layers * (attn + 3 * s.d_model * d_ff(s))


def _attn_flops_per_token(s, length: int) -> float:
    ctx = length / 2 if not s.window else min(s.window, length / 2)
    return s.layers * 4 * s.d_model * ctx


def _cross_params(s, n_cross: int) -> int:
    return n_cross * 4 * s.d_model * s.d_model


def flops_per_sequence(m, length: int) -> float:
    """Training FLOPs for one sequence of `length` bytes under model config `m`."""
    slots = num_slots(m.patching, length)
    k, dl, dg = m.cross_attn_k, m.local_encoder.d_model, m.global_transformer.d_model
    enc, dec, glob, ent = m.local_encoder, m.local_decoder, m.global_transformer, m.entropy_model
    local = (_stack_matmul_params(enc) + _stack_matmul_params(dec) + dl * m.vocab_size
             + _cross_params(dec, dec.layers if dec.cross_attn_all_layers else 1))
    per_byte = 2 * local + 2 * (_attn_flops_per_token(enc, length) + _attn_flops_per_token(dec, length))
    per_byte += 2 * k * dl * slots * (dec.layers if dec.cross_attn_all_layers else 1)  # bytes -> slots scores
    n_enc_cross = enc.layers if enc.cross_attn_all_layers else 1
    per_slot = 2 * (_stack_matmul_params(glob) + (k * dl * dg if k * dl != dg else 0)
                    + dg * k * dl + n_enc_cross * (dl * k * dl + k * 4 * dl * dl))
    per_slot += 2 * _attn_flops_per_token(glob, slots) + 2 * n_enc_cross * k * 2 * dl * length
    total = 3 * (per_byte * length + per_slot * slots)
    if m.patching.mode == "entropy" or ent.trained_online:
        ent_fwd = 2 * (_stack_matmul_params(ent) + ent.d_model * m.vocab_size) + 2 * _attn_flops_per_token(ent, length)
        total += (3 if ent.trained_online else 1) * ent_fwd * length
    return float(total)


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
