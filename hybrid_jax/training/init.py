"""A new run's parameters: initialised from the seed, or taken from a pretrained checkpoint
(`train.init_from`: fine-tuning), and the entropy model from another one (`model.entropy_model.init_from`:
the paper's two-phase recipe). Adam's moments start at zero whatever the parameters, so swapping them in
after the optimizer state was made is exact."""

from __future__ import annotations

import jax

from hybrid_jax.errors import ConfigError
from hybrid_jax.model.params import flat_items, param_tree


def first_shape_difference(source: dict, target: dict) -> str:
    """"" if two parameter trees have the same tensors and shapes, else what differs for the first one."""
    got = {".".join(path): tuple(x.shape) for path, x in flat_items(source)}
    want = {".".join(path): tuple(x.shape) for path, x in flat_items(target)}
    for name, shape in want.items():
        if name not in got:
            return f"tensor {name} is missing there"
        if got[name] != shape:
            return f"tensor {name} has shape {got[name]} there, {shape} in this run's model"
    extra = sorted(set(got) - set(want))
    return f"tensor {extra[0]} is there but not in this run's model" if extra else ""


def _donor(src: str, key: str, target: dict) -> dict:
    from hybrid_jax.storage.loading import load_any

    donor = param_tree(load_any(src))
    if key == "model.entropy_model.init_from":
        donor = donor["entropy_model"]
    diff = first_shape_difference(donor, target)
    if diff:
        raise ConfigError(f"{key}={src}: {diff}")
    return donor


def initial_params(cfg, params: dict, shardings) -> dict:
    """`params` (a fresh initialisation), or `train.init_from`'s parameters; then the entropy model of
    `model.entropy_model.init_from`, if set. Placed with `shardings`."""
    if cfg.train.init_from:
        params = jax.device_put(_donor(cfg.train.init_from, "train.init_from", params), shardings)
    src = cfg.model.entropy_model.init_from
    if src:
        donor = _donor(src, "model.entropy_model.init_from", params["entropy_model"])
        params = {**params, "entropy_model": jax.device_put(donor, shardings["entropy_model"])}
    return params


def with_source_model(cfg, model_overrides: list[tuple[str, str]]):
    """`cfg` with its `model` node taken from `train.init_from`'s checkpoint, then `model_overrides`
    ((dotted key, text) from the command line) applied to it again:
    a fine-tuning run keeps the source's architecture and may change what keeps shapes (dtype, remat,
    the patching threshold)."""
    from hybrid_jax.config import apply_override
    from hybrid_jax.storage.loading import model_config_of

    cfg.model = model_config_of(cfg.train.init_from)
    for key, text in model_overrides:
        apply_override(cfg, key, text)
    return cfg


def calibrated_threshold(cfg, stream, samples: int = 64):
    """The `Calibration` (hybrid_jax.analysis.calibrate) of `model.patching.target_patch_len` on `samples`
    windows of the training stream, with the entropy model the run starts from."""
    from hybrid_jax.analysis.calibrate import calibrate, sample_stream
    from hybrid_jax.storage.loading import load_any

    donor = load_any(cfg.model.entropy_model.init_from or cfg.train.init_from)
    ids = sample_stream(stream, cfg.data.seq_len, samples, cfg.seed)
    return calibrate(donor.entropy_model, cfg.model.patching, ids, cfg.model.patching.target_patch_len)
