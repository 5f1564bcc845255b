"""hybrid_jax: a byte-level Byte Latent Transformer (BLT) in JAX/Flax NNX.

The small public face, for a script or a notebook:

    model = hybrid_jax.load("runs/toy")                  # anything `--ckpt` accepts
    texts = hybrid_jax.generate(model, ["def main("], max_new_bytes=64)

Everything else is imported from its room (`hybrid_jax.model`, `hybrid_jax.training`, ...).
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["generate", "load"]


def load(source: str):
    """The BLT at `source`: a workdir (its latest step), `WORKDIR@STEP`, a step directory, a Hugging Face
    BLT directory, or a Hub id `org/name[@revision]`."""
    from hybrid_jax.storage.loading import load_any

    return load_any(source)


def generate(model, prompts, max_new_bytes: int = 128, temperature: float = 0.0, top_k: int | None = None,
             top_p: float | None = None, seed: int = 0, speculate: int = 0):
    """What `model` writes after each prompt, up to EOS or `max_new_bytes` bytes: a str for a str prompt,
    a list for a list of prompts (one batch). Greedy by default; `temperature` > 0 samples; `speculate=K`
    (greedy) decodes in self-speculative rounds of up to K bytes, with the same result."""
    from hybrid_jax.inference.generate import generate as generate_texts

    single = isinstance(prompts, str)
    texts = generate_texts(model, [prompts] if single else list(prompts), max_new_bytes, temperature, top_k,
                           top_p, seed, speculate)
    return texts[0] if single else texts
