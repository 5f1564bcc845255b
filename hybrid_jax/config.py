"""The model config tree: defaults, validation, and JSON round trips.

One `ml_collections.ConfigDict` tree; `model` has one sub-node per component (`entropy_model`,
`local_encoder`, `global_transformer`, `local_decoder`) plus `patching` and `hash`. Modules receive
their node frozen. Bad values raise `ConfigError` with a one-line message.
"""

from __future__ import annotations

import ml_collections

PATCHING_MODES = ("entropy", "static", "space")
DTYPES = ("float32", "bfloat16")
REMAT = ("none", "full", "dots_saveable", "elementwise")
OBJECTIVES = ("blt", "entropy_model")


class ConfigError(ValueError):
    """A config value is missing, unknown, of the wrong type, or inconsistent."""


def stack_config(d_model, layers, heads, kv_heads=0, d_ff=0, rope_theta=500000.0, window=0,
                 norm_eps=1e-5, remat="none", **extra) -> ml_collections.ConfigDict:
    """One transformer stack. kv_heads 0 = heads (no GQA), d_ff 0 = int(8 d / 3), window 0 = full.

    remat: what each layer keeps for the backward pass: `none` (everything), `full` (only its input;
    the rest is recomputed), `dots_saveable` (matmul outputs kept, everything else recomputed, attention
    too), `elementwise` (only elementwise work recomputed: casts, norms, RoPE, SiLU; matmuls, attention
    and reductions kept).
    """
    return ml_collections.ConfigDict(dict(
        d_model=d_model, layers=layers, heads=heads, kv_heads=kv_heads, d_ff=d_ff,
        rope_theta=float(rope_theta), window=window, norm_eps=float(norm_eps), remat=remat, **extra))


def model_config() -> ml_collections.ConfigDict:
    """Defaults: a small BLT (a few M params). Configs in configs/ override what they need."""
    return ml_collections.ConfigDict(dict(
        vocab_size=260,
        dtype="float32",  # compute dtype; parameters are always float32
        cross_attn_k=2,
        # Entropy rules, include_next_token: see hybrid_jax.model.patching. threshold_add None = off.
        # target_patch_len > 0: `train` sets `threshold` at start so that the (pretrained) entropy
        # model cuts the training data into patches of this mean length (hybrid_jax.analysis.calibrate).
        patching=dict(mode="entropy", threshold=1.335442066192627, patch_size=4, max_patch_length=0,
                      max_patches=0, include_next_token=True, monotonicity=False,
                      threshold_add=ml_collections.config_dict.placeholder(float), target_patch_len=0.0),
        hash=dict(group_sizes=(3, 4, 5, 6, 7, 8), vocab=50021, n_functions=1),
        # trained_online: train the entropy model jointly (auxiliary next-byte loss); init_from: a
        # workdir or Hugging Face dir whose entropy model initialises (or, frozen, fixes) this one.
        entropy_model=stack_config(128, 2, 4, rope_theta=10000.0, window=512, trained_online=False,
                                   init_from=""),
        local_encoder=stack_config(128, 1, 4, window=512, cross_attn_all_layers=False),
        # scan_layers: parameters stacked on a leading [layers] axis and the layers run with one
        # scan (compile time independent of depth); checkpoints are not interchangeable across it.
        global_transformer=stack_config(256, 4, 8, scan_layers=False),
        local_decoder=stack_config(128, 2, 4, window=512, cross_attn_all_layers=True),
    ))


def d_ff(stack) -> int:
    return stack.d_ff or int(8 * stack.d_model / 3)


def kv_heads(stack) -> int:
    return stack.kv_heads or stack.heads


def validate_model(cfg) -> None:
    """Raise ConfigError on the first inconsistency in a `model` node."""
    def need(ok, msg):
        if not ok:
            raise ConfigError(msg)

    need(cfg.vocab_size >= 260, f"model.vocab_size must be >= 260 (BLT byte ids), got {cfg.vocab_size}")
    need(cfg.vocab_size < 2 ** 15, f"model.vocab_size must be < 32768, got {cfg.vocab_size}")
    need(cfg.dtype in DTYPES, f"model.dtype must be one of {DTYPES}, got {cfg.dtype!r}")
    need(cfg.cross_attn_k >= 1, f"model.cross_attn_k must be >= 1, got {cfg.cross_attn_k}")
    p = cfg.patching
    need(p.mode in PATCHING_MODES, f"unknown patching mode {p.mode!r}; expected one of {PATCHING_MODES}")
    need(p.patch_size >= 1, f"model.patching.patch_size must be >= 1, got {p.patch_size}")
    need(p.max_patch_length >= 0, f"model.patching.max_patch_length must be >= 0, got {p.max_patch_length}")
    need(p.max_patches == 0 or p.max_patches >= 2,
         f"model.patching.max_patches must be 0 (one per byte) or >= 2, got {p.max_patches}")
    need(p.target_patch_len == 0 or p.target_patch_len >= 1,
         f"model.patching.target_patch_len must be 0 (off) or >= 1, got {p.target_patch_len}")
    need(not (p.monotonicity and p.threshold_add is not None),
         "model.patching.monotonicity and model.patching.threshold_add are two different rules: set one")
    h = cfg.hash
    need(len(h.group_sizes) >= 1 and all(g >= 1 for g in h.group_sizes),
         f"model.hash.group_sizes must be non-empty positive ints, got {h.group_sizes}")
    need(2 <= h.vocab < 2 ** 31, f"model.hash.vocab must be in [2, 2^31), got {h.vocab}")
    need(h.n_functions >= 1, f"model.hash.n_functions must be >= 1, got {h.n_functions}")
    for name in ("entropy_model", "local_encoder", "global_transformer", "local_decoder"):
        s = cfg[name]
        need(s.layers >= 1, f"model.{name}.layers must be >= 1, got {s.layers}")
        need(s.heads >= 1 and s.d_model % s.heads == 0,
             f"model.{name}.d_model={s.d_model} must be divisible by heads={s.heads}")
        need(s.heads % kv_heads(s) == 0,
             f"model.{name}.heads={s.heads} must be divisible by kv_heads={kv_heads(s)}")
        need((s.d_model // s.heads) % 2 == 0, f"model.{name} head dim must be even for rotary embeddings")
        need(s.window >= 0, f"model.{name}.window must be >= 0 (0 = full attention), got {s.window}")
        need(s.remat in REMAT, f"model.{name}.remat must be one of {REMAT}, got {s.remat!r}")
    need(cfg.local_decoder.d_model == cfg.local_encoder.d_model,
         "model.local_decoder.d_model must equal model.local_encoder.d_model "
         f"({cfg.local_decoder.d_model} != {cfg.local_encoder.d_model})")


def update_strict(cfg: ml_collections.ConfigDict, values: dict, prefix: str = "") -> None:
    """Set `values` (nested dict) into `cfg`; an unknown key or wrong type raises ConfigError."""
    for key, value in values.items():
        path = f"{prefix}{key}"
        if key not in cfg:
            raise ConfigError(f"unknown config key {path!r}")
        current = cfg[key]
        if isinstance(current, ml_collections.ConfigDict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {path!r} must be a mapping, got {type(value).__name__}")
            update_strict(current, value, path + ".")
            continue
        if isinstance(current, tuple) and isinstance(value, list):
            value = tuple(value)
        if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        # A typed placeholder (threshold_add) takes None back.
        nullable = value is None and isinstance(cfg._fields.get(key), ml_collections.FieldReference)
        if current is not None and not nullable and type(value) is not type(current):
            raise ConfigError(f"config key {path!r} expects {type(current).__name__}, "
                              f"got {type(value).__name__} ({value!r})")
        try:
            cfg[key] = value
        except TypeError as e:  # a typed placeholder (None by default) refuses other types
            raise ConfigError(f"config key {path!r}: {e}") from None


def model_from_dict(values: dict) -> ml_collections.ConfigDict:
    """A validated model config: defaults updated strictly with `values`."""
    cfg = model_config()
    update_strict(cfg, values, "model.")
    validate_model(cfg)
    return cfg


def default_config() -> ml_collections.ConfigDict:
    """The whole tree a training run reads: model, data, train, eval, checkpoint, mesh."""
    return ml_collections.ConfigDict(dict(
        seed=0,
        model=model_config(),
        # mesh axes; -1 = all remaining devices. data x fsdp x tensor must equal the device count.
        mesh=dict(data=-1, fsdp=1, tensor=1),
        data=dict(
            train="",  # glob of .txt / .jsonl / .array_record files; "" = this Python's stdlib sources
            eval="",  # held-out glob; "" = a hash-chosen `eval_fraction` of the training documents
            text_field="text",  # JSONL field holding the document
            eval_fraction=0.02,
            seq_len=512,
        ),
        train=dict(
            steps=1000,
            batch_size=16,  # global, in sequences, per optimizer step
            grad_accum=1,  # micro-batches per step (batch_size must divide evenly)
            lr=3e-3, min_lr_ratio=0.1, warmup_steps=50,
            weight_decay=0.1, b1=0.9, b2=0.95, eps=1e-8, clip_norm=1.0,
            est_loss_weight=1.0,  # weight of the entropy model's next-byte loss when trained online
            # "blt": next-byte training of the whole model; "entropy_model": the entropy model alone
            # (the paper's first phase; a later run freezes it with model.entropy_model.init_from)
            objective="blt",
            log_every=10,
            # parameters of a pretrained model to fine-tune: a workdir, WORKDIR@STEP, a step directory or
            # a Hugging Face BLT directory; its model config replaces `model` (see docs/training.md)
            init_from="",
            peak_tflops=0.0,  # per-device peak for MFU; 0 = look up the device kind
            # jax.profiler trace of steps profile_start .. profile_start + profile_steps - 1 of this run
            # (counted from its first step, which compiles) into WORKDIR/profile; 0 steps = off
            profile_start=3, profile_steps=0,
        ),
        eval=dict(every=200, batches=8, batch_size=8),
        checkpoint=dict(every=100, keep=3, async_save=True),
    ))


COCONUT_MODES = ("coconut", "cot", "no-cot", "pause", "no-curriculum")


def coconut_config() -> ml_collections.ConfigDict:
    """The `coconut` node of a latent-reasoning run (absent from plain BLT runs).

    Its data are Coconut-format JSON files: `data.train` (training) and `data.eval` (validation).
    """
    return ml_collections.ConfigDict(dict(
        mode="coconut",  # one of COCONUT_MODES (see hybrid_jax.data.curriculum)
        c_thought=1,  # latent thoughts per replaced reasoning step
        epochs_per_stage=5,  # stage k (k steps replaced) lasts this many epochs
        max_latent_stage=6,  # stages beyond this drop every step and keep max_latent_stage * c thoughts
        pad_latent_to_max=True,  # past the last stage, always max_latent_stage * c thoughts
        uniform_prob=0.0,  # chance that an example trains at a uniformly drawn stage instead
        reset_optimizer=True,  # fresh optimizer state (and warmup) at every stage change
        num_epochs=50,  # passes over data.train; train.steps is derived from it
        eval_every_epochs=0,  # answer accuracy on data.eval every this many epochs (0: only at the end)
        eval_limit=64,  # validation questions scored each time (0: all)
        max_new_bytes=128,  # greedy decoding budget per answer
    ))


def validate_coconut(cc) -> None:
    """Raise ConfigError on the first bad value of a `coconut` node."""
    if cc.mode not in COCONUT_MODES:
        raise ConfigError(f"coconut.mode must be one of {COCONUT_MODES}, got {cc.mode!r}")
    for key in ("c_thought", "epochs_per_stage", "num_epochs", "max_new_bytes"):
        if cc[key] < 1:
            raise ConfigError(f"coconut.{key} must be >= 1, got {cc[key]}")
    for key in ("max_latent_stage", "eval_every_epochs", "eval_limit"):
        if cc[key] < 0:
            raise ConfigError(f"coconut.{key} must be >= 0, got {cc[key]}")
    if not 0.0 <= cc.uniform_prob <= 1.0:
        raise ConfigError(f"coconut.uniform_prob must be in [0, 1], got {cc.uniform_prob}")


def validate(cfg) -> None:
    """Validate a whole training config (model and run settings)."""
    validate_model(cfg.model)
    t = cfg.train
    if t.steps < 1 or t.batch_size < 1 or t.grad_accum < 1:
        raise ConfigError("train.steps, train.batch_size and train.grad_accum must be >= 1")
    if t.profile_start < 0 or t.profile_steps < 0:
        raise ConfigError("train.profile_start and train.profile_steps must be >= 0")
    if t.batch_size % t.grad_accum:
        raise ConfigError(f"train.batch_size={t.batch_size} must be divisible by train.grad_accum={t.grad_accum}")
    if t.objective not in OBJECTIVES:
        raise ConfigError(f"train.objective must be one of {OBJECTIVES}, got {t.objective!r}")
    p = cfg.model.patching
    if p.target_patch_len and not (p.mode == "entropy" and (cfg.model.entropy_model.init_from or t.init_from)):
        raise ConfigError("model.patching.target_patch_len calibrates a trained entropy model: it needs "
                          "patching mode 'entropy' and model.entropy_model.init_from (or train.init_from)")
    if cfg.data.seq_len < 4:
        raise ConfigError(f"data.seq_len must be >= 4, got {cfg.data.seq_len}")
    for key in ("every", "batches", "batch_size"):
        if cfg.eval[key] < 0:
            raise ConfigError(f"eval.{key} must be >= 0")
    if cfg.checkpoint.every < 1 or cfg.checkpoint.keep < 1:
        raise ConfigError("checkpoint.every and checkpoint.keep must be >= 1")
    if "coconut" in cfg:
        validate_coconut(cfg.coconut)
        if cfg.model.vocab_size < 263:
            raise ConfigError(f"a coconut run needs model.vocab_size >= 263 (<bot>, <eot>, <latent>), "
                              f"got {cfg.model.vocab_size}")
