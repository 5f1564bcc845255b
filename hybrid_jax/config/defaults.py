"""The config tree's defaults: the model (`model_config`), a whole training run (`default_config`) and
the `coconut` node of a latent-reasoning run."""

from __future__ import annotations

import ml_collections

PATCHING_MODES = ("entropy", "static", "space")
DTYPES = ("float32", "bfloat16")
REMAT = ("none", "full", "dots_saveable", "elementwise")
OBJECTIVES = ("blt", "entropy_model")
LATENT_FEEDBACK = ("state", "match_norm")


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
        # What a continuous thought's global input is (hybrid_jax.model.latent): the global transformer's
        # last state as it is ("state"), or that state rescaled to the norm of the input it replaces
        # ("match_norm"; BLT's global stack has no final norm, so its states are far larger).
        latent_feedback="state",
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
        eval=dict(
            every=200, batches=8, batch_size=8,
            # lm-evaluation-harness tasks every `every` steps (0: off), logged as harness/<task>/<metric>:
            # comma-separated task names, examples per task (0: all), a folder of task YAML files
            harness=dict(tasks="", every=0, limit=0, include_path=""),
        ),
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
