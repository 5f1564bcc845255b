"""A ~100k-parameter BLT, batch 8 x 32 bytes: seconds per run on CPU. For tests and smoke checks of
the training, checkpoint and multi-process machinery, not for learning anything."""

import ml_collections

from hybrid_jax.config import default_config


def get_config() -> ml_collections.ConfigDict:
    cfg = default_config()
    m = cfg.model
    m.hash.update(vocab=97, group_sizes=(3, 4))
    m.entropy_model.update(d_model=32, layers=1, heads=2, window=16, trained_online=True)
    m.local_encoder.update(d_model=32, layers=1, heads=2, window=16)
    m.local_decoder.update(d_model=32, layers=1, heads=2, window=16)
    m.global_transformer.update(d_model=64, layers=2, heads=4, kv_heads=2)
    m.patching.update(mode="entropy", threshold=3.0, max_patch_length=6, max_patches=16)
    cfg.data.update(eval_fraction=0.2, seq_len=32)
    cfg.mesh.update(data=-1, fsdp=1, tensor=1)
    cfg.train.update(steps=6, batch_size=8, lr=3e-3, warmup_steps=2, log_every=1)
    cfg.eval.update(every=0, batches=2, batch_size=8)
    cfg.checkpoint.update(every=1000, keep=2, async_save=False)
    return cfg
