"""A CPU-sized BLT (7.7 M parameters, 3.2 M of them in the 4099-row hash tables): the default for
debugging and `make train` (trains on this Python's standard library sources)."""

import ml_collections

from hybrid_jax.config import default_config


def get_config() -> ml_collections.ConfigDict:
    cfg = default_config()
    cfg.model.hash.vocab = 4099
    # The entropy model trains online: near the end its median next-byte entropy on code is ~2.4 nats, so
    # a 3-nat threshold cuts patches of ~4-5 bytes; max_patches bounds the global transformer at seq_len / 2.
    cfg.model.patching.update(threshold=3.0, max_patches=128)
    cfg.model.entropy_model.trained_online = True
    cfg.data.seq_len = 256
    cfg.train.update(steps=600, batch_size=8, lr=2e-3, warmup_steps=30, log_every=10)
    cfg.eval.update(every=200, batches=4, batch_size=8)
    cfg.checkpoint.update(every=200, keep=2)
    return cfg
