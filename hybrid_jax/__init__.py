"""hybrid_jax: a byte-level Byte Latent Transformer (BLT) in JAX/Flax NNX."""

__version__ = "0.1.0"
