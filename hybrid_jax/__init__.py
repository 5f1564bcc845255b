"""hybrid_jax: a byte-level Byte Latent Transformer (BLT) in JAX/Flax NNX."""

import os as _os

__version__ = "0.1.0"

# The commands live in `hybrid_jax/cli/`; searching that folder too makes `python -m hybrid_jax.train`
# (and every other command) run `hybrid_jax/cli/train.py`, the same file as `hybrid-jax train`.
__path__.append(_os.path.join(_os.path.dirname(__file__), "cli"))
