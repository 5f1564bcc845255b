"""A CPU-sized BLT (7.7 M parameters, 3.2 M of them in the 4099-row hash tables): the default for
debugging and `make train`."""

import ml_collections

from hybrid_jax.config import model_config


def get_config() -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.model = model_config()
    cfg.model.hash.vocab = 4099
    return cfg
