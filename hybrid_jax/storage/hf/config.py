"""The one place where hybrid_jax's `model` config meets Hugging Face's `BltConfig` fields."""

from __future__ import annotations

from hybrid_jax.config import d_ff, kv_heads, model_config, validate_model
from hybrid_jax.errors import ConfigError
from hybrid_jax.tokenizer import LATENT_SPECIALS

# BltConfig's defaults for fields a config.json may leave out (transformers 5.x, configuration_blt.py).
HF_DEFAULTS = {
    "patcher_config": dict(hidden_size=768, num_hidden_layers=14, num_attention_heads=12,
                           intermediate_size=2048, sliding_window=512, rope_theta=10000.0),
    "encoder_config": dict(hidden_size=1024, num_hidden_layers=1, num_attention_heads=16,
                           intermediate_size=None, cross_attn_all_layers=False, rope_theta=500000.0),
    "decoder_config": dict(hidden_size=1024, num_hidden_layers=9, num_attention_heads=16,
                           intermediate_size=2816, cross_attn_all_layers=True, rope_theta=500000.0),
    "global_config": dict(hidden_size=2048, num_hidden_layers=25, num_attention_heads=16,
                          intermediate_size=5632, rope_theta=500000.0),
}
TOP_DEFAULTS = dict(vocab_size=260, patching_mode="entropy", patching_threshold=1.335442066192627,
                    patch_size=4, max_patch_length=None, local_attention_window_len=512, cross_attn_k=2,
                    encoder_hash_byte_group_size=[3, 4, 5, 6, 7, 8], encoder_hash_byte_group_vocab=500002,
                    encoder_hash_byte_group_nb_functions=1)
_STACKS = {"patcher_config": "entropy_model", "encoder_config": "local_encoder",
           "decoder_config": "local_decoder", "global_config": "global_transformer"}


def _get(d: dict, key: str, default):
    value = d.get(key)
    return default if value is None else value


def _rope_theta(sub: dict, default: float) -> float:
    rope = sub.get("rope_parameters") or sub.get("rope_scaling") or {}
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind != "default":
        raise ConfigError(f"unsupported rope_type {kind!r} (only 'default' rotary embeddings)")
    return float(_get(rope, "rope_theta", _get(sub, "rope_theta", default)))


def _stack_from_hf(name: str, sub: dict, eps_default: float = 1e-5) -> dict:
    dflt = HF_DEFAULTS[name]
    act = sub.get("hidden_act", "silu")
    if act != "silu":
        raise ConfigError(f"{name}.hidden_act={act!r} is not supported (BLT uses silu)")
    d = int(_get(sub, "hidden_size", dflt["hidden_size"]))
    heads = int(_get(sub, "num_attention_heads", dflt["num_attention_heads"]))
    out = dict(d_model=d, layers=int(_get(sub, "num_hidden_layers", dflt["num_hidden_layers"])),
               heads=heads, kv_heads=int(_get(sub, "num_key_value_heads", heads)),
               d_ff=int(_get(sub, "intermediate_size", dflt["intermediate_size"]) or int(8 * d / 3)),
               rope_theta=_rope_theta(sub, dflt["rope_theta"]),
               norm_eps=float(_get(sub, "rms_norm_eps", eps_default)))
    if "cross_attn_all_layers" in dflt:
        out["cross_attn_all_layers"] = bool(_get(sub, "cross_attn_all_layers", dflt["cross_attn_all_layers"]))
    return out


def model_config_from_hf(hf: dict):
    """A validated hybrid_jax `model` config from a Hugging Face BLT `config.json` dict."""
    if hf.get("model_type") != "blt":
        raise ConfigError(f"not a BLT config: model_type is {hf.get('model_type')!r}, expected 'blt'")
    top = {k: _get(hf, k, v) for k, v in TOP_DEFAULTS.items()}
    cfg = model_config()
    cfg.vocab_size = int(top["vocab_size"])
    cfg.cross_attn_k = int(top["cross_attn_k"])
    cfg.patching.mode = str(top["patching_mode"])
    cfg.patching.threshold = float(top["patching_threshold"])
    cfg.patching.patch_size = int(top["patch_size"])
    cfg.patching.max_patch_length = int(top["max_patch_length"] or 0)
    # HF's runtime: under max_patch_length it drops the patch that begins after the last byte.
    cfg.patching.include_next_token = cfg.patching.max_patch_length == 0
    cfg.hash.group_sizes = tuple(int(g) for g in top["encoder_hash_byte_group_size"])
    cfg.hash.vocab = int(top["encoder_hash_byte_group_vocab"])
    cfg.hash.n_functions = int(top["encoder_hash_byte_group_nb_functions"])
    window = int(top["local_attention_window_len"] or 0)
    for hf_name, ours in _STACKS.items():
        sub = hf.get(hf_name) or {}
        for key, value in _stack_from_hf(hf_name, sub).items():
            cfg[ours][key] = value
    patcher = hf.get("patcher_config") or {}
    cfg.entropy_model.window = int(patcher.get("sliding_window", HF_DEFAULTS["patcher_config"]["sliding_window"])
                                   or 0)
    cfg.local_encoder.window = window
    cfg.local_decoder.window = window
    cfg.global_transformer.window = 0
    validate_model(cfg)
    return cfg


def _stack_to_hf(stack, vocab_size: int) -> dict:
    return dict(hidden_size=stack.d_model, num_hidden_layers=stack.layers,
                num_attention_heads=stack.heads, num_key_value_heads=kv_heads(stack),
                intermediate_size=d_ff(stack), rms_norm_eps=stack.norm_eps, hidden_act="silu",
                rope_parameters={"rope_type": "default", "rope_theta": stack.rope_theta},
                vocab_size=vocab_size)


def hf_divergences(cfg) -> list[str]:
    """Where `BltForCausalLM` loaded from an export of `model` config `cfg` computes other outputs
    than hybrid_jax (empty: it reproduces ours; see `hybrid_jax.model.patching`)."""
    p, out = cfg.patching, []
    if p.mode != "entropy":
        out.append(f"HF patches one byte per patch outside entropy mode, not {p.mode!r}")
    else:
        if p.monotonicity or p.threshold_add is not None:
            out.append("HF knows only the global entropy rule (no monotonicity, no threshold_add)")
        if p.include_next_token and p.max_patch_length:
            out.append("with max_patch_length HF drops the patch that begins right after the last byte, "
                       "so the last byte's logits (and greedy generation) differ where one begins there "
                       "(include_next_token=False reproduces HF)")
        elif not p.include_next_token and not p.max_patch_length:
            out.append("without max_patch_length HF keeps the patch that begins right after the last byte "
                       "(include_next_token=True reproduces HF)")
    if p.max_patches:
        out.append(f"HF has no max_patches: rows with more than {p.max_patches} patches differ")
    if cfg.vocab_size > min(LATENT_SPECIALS):
        out.append("HF does not give <bot>/<eot>/<latent> ids patches of their own")
    return out


def hf_config_from_model(cfg) -> dict:
    """A Hugging Face `config.json` dict for `BltForCausalLM` equivalent to `model` config `cfg`."""
    validate_model(cfg)
    if cfg.local_encoder.window != cfg.local_decoder.window:
        raise ConfigError("Hugging Face BLT has one local window: model.local_encoder.window and "
                          "model.local_decoder.window must be equal to export")
    if cfg.global_transformer.window:
        raise ConfigError("Hugging Face BLT has no sliding window in the global transformer: "
                          "model.global_transformer.window must be 0 to export")
    v = cfg.vocab_size
    patcher = _stack_to_hf(cfg.entropy_model, v)
    patcher["sliding_window"] = cfg.entropy_model.window or None
    encoder = _stack_to_hf(cfg.local_encoder, v)
    encoder.update(cross_attn_all_layers=cfg.local_encoder.cross_attn_all_layers,
                   cross_attn_k=cfg.cross_attn_k, hidden_size_global=cfg.global_transformer.d_model)
    decoder = _stack_to_hf(cfg.local_decoder, v)
    decoder.update(cross_attn_all_layers=cfg.local_decoder.cross_attn_all_layers,
                   cross_attn_k=cfg.cross_attn_k, hidden_size_global=cfg.global_transformer.d_model)
    glob = _stack_to_hf(cfg.global_transformer, v)
    glob.pop("vocab_size")
    return dict(
        architectures=["BltForCausalLM"], model_type="blt", vocab_size=v,
        patch_in_forward=True, patching_mode=cfg.patching.mode,
        patching_threshold=cfg.patching.threshold, patch_size=cfg.patching.patch_size,
        max_patch_length=cfg.patching.max_patch_length or None,
        local_attention_window_len=cfg.local_encoder.window or None, cross_attn_k=cfg.cross_attn_k,
        encoder_hash_byte_group_size=list(cfg.hash.group_sizes),
        encoder_hash_byte_group_vocab=cfg.hash.vocab,
        encoder_hash_byte_group_nb_functions=cfg.hash.n_functions,
        patcher_config=patcher, encoder_config=encoder, decoder_config=decoder, global_config=glob,
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, use_cache=False,
        torch_dtype="float32",
    )
