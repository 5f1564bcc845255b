"""A tiny model config shared by the model and inspect tests."""

from hybrid_jax.config import model_config


def tiny(mode="entropy", **patching):
    """A ~60k-parameter BLT with GQA, short local windows and the given patching."""
    cfg = model_config()
    cfg.hash.vocab = 101
    cfg.entropy_model.update(d_model=32, layers=1, heads=2, window=6)
    cfg.local_encoder.update(d_model=32, layers=1, heads=2, window=5)
    cfg.local_decoder.update(d_model=32, layers=2, heads=2, window=5)
    cfg.global_transformer.update(d_model=48, layers=2, heads=4, kv_heads=2)
    cfg.patching.mode = mode
    cfg.patching.update(patching)
    return cfg
