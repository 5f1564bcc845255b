"""Every config value's domain, and the checks across values.

`DOMAINS` maps each leaf of the config tree (`*` stands for any of the four transformer stacks) to the
values it accepts; `validate` checks a whole training config against it, leaf by leaf, then the
relations between leaves. A value outside its domain raises `ConfigError` naming the key, the domain and
the value, in one line.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

from hybrid_jax.config.defaults import COCONUT_MODES, DTYPES, LATENT_FEEDBACK, OBJECTIVES, PATCHING_MODES, REMAT, kv_heads
from hybrid_jax.errors import ConfigError

STACKS = ("entropy_model", "local_encoder", "global_transformer", "local_decoder")


@dataclasses.dataclass(frozen=True)
class Domain:
    """The values a key accepts: `ok(value)`, said as `text`; `bad` is one value outside it (None where
    every value of the key's type is accepted, as for paths)."""

    ok: Callable[[Any], bool]
    text: str
    bad: Any = None


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def integer(lo: int, hi: float = math.inf, text: str = "") -> Domain:
    """An int in [lo, hi]."""
    said = text or (f">= {lo}" if hi == math.inf else f"in [{lo}, {hi}]")
    return Domain(lambda x: isinstance(x, int) and not isinstance(x, bool) and lo <= x <= hi, f"an int {said}",
                  lo - 1)


def real(lo: float = -math.inf, hi: float = math.inf, lo_open: bool = False, hi_open: bool = False) -> Domain:
    """A finite number in the interval given (open at an end where said)."""
    def ok(x):
        return (_number(x) and (x > lo if lo_open else x >= lo) and (x < hi if hi_open else x <= hi))
    if hi == math.inf:
        text = "finite" if lo == -math.inf else f"{'>' if lo_open else '>='} {lo:g}"
    else:
        text = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    bad = float("nan") if lo == -math.inf else lo - 1.0
    return Domain(ok, f"a number {text}", bad)


def one_of(choices: tuple) -> Domain:
    return Domain(lambda x: x in choices, f"one of {choices}", "no-such-choice")


def zero_or(domain: Domain) -> Domain:
    """0 (the documented 'off') or a value of `domain`."""
    return Domain(lambda x: x == 0 and not isinstance(x, bool) or domain.ok(x), f"0 (off) or {domain.text}",
                  domain.bad if domain.bad != 0 else -1)


BOOL = Domain(lambda x: isinstance(x, bool), "true or false", "yes")
TEXT = Domain(lambda x: isinstance(x, str), "a string")
NON_EMPTY = Domain(lambda x: isinstance(x, str) and x != "", "a non-empty string", "")
MESH_AXIS = Domain(lambda x: isinstance(x, int) and not isinstance(x, bool) and (x == -1 or x >= 1),
                   "-1 (all remaining devices) or an int >= 1", 0)
GROUP_SIZES = Domain(lambda x: isinstance(x, tuple) and len(x) >= 1
                     and all(isinstance(g, int) and not isinstance(g, bool) and g >= 1 for g in x),
                     "a non-empty tuple of ints >= 1", ())
OPTIONAL_REAL = Domain(lambda x: x is None or _number(x), "None or a finite number", float("inf"))

DOMAINS: dict[str, Domain] = {
    "seed": integer(0),
    "model.vocab_size": integer(260, 2 ** 15 - 1),
    "model.dtype": one_of(DTYPES),
    "model.cross_attn_k": integer(1),
    "model.latent_feedback": one_of(LATENT_FEEDBACK),
    "model.patching.mode": one_of(PATCHING_MODES),
    "model.patching.threshold": real(),
    "model.patching.patch_size": integer(1),
    "model.patching.max_patch_length": integer(0),
    "model.patching.max_patches": zero_or(integer(2)),
    "model.patching.include_next_token": BOOL,
    "model.patching.monotonicity": BOOL,
    "model.patching.threshold_add": OPTIONAL_REAL,
    "model.patching.target_patch_len": zero_or(real(1.0)),
    "model.hash.group_sizes": GROUP_SIZES,
    "model.hash.vocab": integer(2, 2 ** 31 - 1),
    "model.hash.n_functions": integer(1),
    "model.*.d_model": integer(2),
    "model.*.layers": integer(1),
    "model.*.heads": integer(1),
    "model.*.kv_heads": zero_or(integer(1)),
    "model.*.d_ff": zero_or(integer(1)),
    "model.*.rope_theta": real(0.0, lo_open=True),
    "model.*.window": zero_or(integer(1)),
    "model.*.norm_eps": real(0.0, lo_open=True),
    "model.*.remat": one_of(REMAT),
    "model.entropy_model.trained_online": BOOL,
    "model.entropy_model.init_from": TEXT,
    "model.local_encoder.cross_attn_all_layers": BOOL,
    "model.global_transformer.scan_layers": BOOL,
    "model.local_decoder.cross_attn_all_layers": BOOL,
    "mesh.data": MESH_AXIS,
    "mesh.fsdp": MESH_AXIS,
    "mesh.tensor": MESH_AXIS,
    "data.train": TEXT,
    "data.eval": TEXT,
    "data.text_field": NON_EMPTY,
    "data.eval_fraction": real(0.0, 1.0, hi_open=True),
    "data.seq_len": integer(4),
    "train.steps": integer(1),
    "train.batch_size": integer(1),
    "train.grad_accum": integer(1),
    "train.lr": real(0.0, lo_open=True),
    "train.min_lr_ratio": real(0.0, 1.0),
    "train.warmup_steps": integer(0),
    "train.weight_decay": real(0.0),
    "train.b1": real(0.0, 1.0, hi_open=True),
    "train.b2": real(0.0, 1.0, hi_open=True),
    "train.eps": real(0.0, lo_open=True),
    "train.clip_norm": real(0.0, lo_open=True),
    "train.est_loss_weight": real(0.0),
    "train.objective": one_of(OBJECTIVES),
    "train.log_every": integer(1),
    "train.init_from": TEXT,
    "train.peak_tflops": real(0.0),
    "train.profile_start": integer(0),
    "train.profile_steps": integer(0),
    "eval.every": integer(0),
    "eval.batches": integer(0),
    "eval.batch_size": integer(0),
    "eval.harness.tasks": TEXT,
    "eval.harness.every": integer(0),
    "eval.harness.limit": integer(0),
    "eval.harness.include_path": TEXT,
    "checkpoint.every": integer(1),
    "checkpoint.keep": integer(1),
    "checkpoint.async_save": BOOL,
    "coconut.mode": one_of(COCONUT_MODES),
    "coconut.c_thought": integer(1),
    "coconut.epochs_per_stage": integer(1),
    "coconut.max_latent_stage": integer(0),
    "coconut.pad_latent_to_max": BOOL,
    "coconut.uniform_prob": real(0.0, 1.0),
    "coconut.reset_optimizer": BOOL,
    "coconut.num_epochs": integer(1),
    "coconut.eval_every_epochs": integer(0),
    "coconut.eval_limit": integer(0),
    "coconut.max_new_bytes": integer(1),
}


def domain_of(path: str) -> Domain | None:
    """The domain of the dotted key `path` (a stack's key through its `model.*.` entry)."""
    if path in DOMAINS:
        return DOMAINS[path]
    parts = path.split(".")
    if len(parts) == 3 and parts[0] == "model" and parts[1] in STACKS:
        return DOMAINS.get(f"model.*.{parts[2]}")
    return None


def leaves(node, prefix: str = ""):
    """(dotted key, value) of every leaf under the ConfigDict or dict `node`."""
    for key, value in node.items():
        path = f"{prefix}{key}"
        if hasattr(value, "items"):
            yield from leaves(value, path + ".")
        else:
            yield path, value


def check_domains(node, prefix: str = "") -> None:
    """Every leaf of `node` (whose keys start with `prefix`) in its domain; a key without one is a bug."""
    for path, value in leaves(node, prefix):
        domain = domain_of(path)
        if domain is None:
            raise ConfigError(f"config key {path!r} has no domain in hybrid_jax.config.validation.DOMAINS")
        if not domain.ok(value):
            raise ConfigError(f"{path} must be {domain.text}, got {value!r}")


def _need(ok: bool, msg: str) -> None:
    if not ok:
        raise ConfigError(msg)


def validate_model(cfg) -> None:
    """Raise ConfigError on the first value outside its domain or inconsistency in a `model` node."""
    _need(cfg.patching.mode in PATCHING_MODES,
          f"unknown patching mode {cfg.patching.mode!r}; expected one of {PATCHING_MODES}")
    check_domains(cfg, "model.")
    p = cfg.patching
    _need(not (p.monotonicity and p.threshold_add is not None),
          "model.patching.monotonicity and model.patching.threshold_add are two different rules: set one")
    for name in STACKS:
        s = cfg[name]
        _need(s.d_model % s.heads == 0, f"model.{name}.d_model={s.d_model} must be divisible by heads={s.heads}")
        _need(s.heads % kv_heads(s) == 0,
              f"model.{name}.heads={s.heads} must be divisible by kv_heads={kv_heads(s)}")
        _need((s.d_model // s.heads) % 2 == 0, f"model.{name} head dim must be even for rotary embeddings")
    _need(cfg.local_decoder.d_model == cfg.local_encoder.d_model,
          "model.local_decoder.d_model must equal model.local_encoder.d_model "
          f"({cfg.local_decoder.d_model} != {cfg.local_encoder.d_model})")


def validate_coconut(cc) -> None:
    """Raise ConfigError on the first bad value of a `coconut` node."""
    check_domains(cc, "coconut.")


def validate(cfg) -> None:
    """Validate a whole training config (model and run settings)."""
    validate_model(cfg.model)
    check_domains({k: v for k, v in cfg.items() if k != "model"})
    t = cfg.train
    _need(t.batch_size % t.grad_accum == 0,
          f"train.batch_size={t.batch_size} must be divisible by train.grad_accum={t.grad_accum}")
    # A Coconut run derives train.steps from its epochs, and warms up again at every stage.
    _need("coconut" in cfg or t.warmup_steps <= t.steps,
          f"train.warmup_steps={t.warmup_steps} must be <= train.steps={t.steps}")
    p = cfg.model.patching
    _need(not p.target_patch_len or (p.mode == "entropy" and bool(cfg.model.entropy_model.init_from or t.init_from)),
          "model.patching.target_patch_len calibrates a trained entropy model: it needs patching mode "
          "'entropy' and model.entropy_model.init_from (or train.init_from)")
    _need(not cfg.eval.every or (cfg.eval.batches >= 1 and cfg.eval.batch_size >= 1),
          f"eval.every={cfg.eval.every} needs eval.batches and eval.batch_size >= 1 (eval.every=0 turns "
          "evaluation off)")
    h = cfg.eval.harness
    _need(not h.every or bool(h.tasks.strip(" ,")),
          f"eval.harness.every={h.every} needs eval.harness.tasks (eval.harness.every=0 turns it off)")
    if "coconut" in cfg:
        _need(cfg.model.vocab_size >= 263, "a coconut run needs model.vocab_size >= 263 (<bot>, <eot>, "
                                           f"<latent>), got {cfg.model.vocab_size}")
