"""AdamW with warmup + cosine decay, global-norm clipping, and masks: no weight decay on norms and
embeddings; the entropy model frozen unless it is trained online, and everything else frozen when it is
trained alone (`train.objective = "entropy_model"`)."""

from __future__ import annotations

import jax
import optax

from hybrid_jax.parallel.sharding import path_names


def learning_rate(train_cfg) -> optax.Schedule:
    t = train_cfg
    warmup = min(t.warmup_steps, max(t.steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=t.lr, warmup_steps=warmup, decay_steps=max(t.steps, warmup + 1),
        end_value=t.lr * t.min_lr_ratio)


def decay_mask(params):
    """True for matrices (`kernel`); norms and embedding tables are not decayed."""
    return jax.tree_util.tree_map_with_path(lambda p, _: path_names(p)[-1] == "kernel", params)


def optimizer(cfg) -> optax.GradientTransformation:
    """The optimizer for a whole training config."""
    t = cfg.train
    adamw = optax.chain(
        optax.clip_by_global_norm(t.clip_norm),
        optax.adamw(learning_rate(t), b1=t.b1, b2=t.b2, eps=t.eps, weight_decay=t.weight_decay,
                    mask=decay_mask))
    only_entropy = cfg.train.objective == "entropy_model"
    entropy_frozen = not (cfg.model.entropy_model.trained_online or only_entropy)

    def label(path) -> str:
        entropy = path_names(path)[0] == "entropy_model"
        return "frozen" if (entropy and entropy_frozen) or (not entropy and only_entropy) else "train"

    def labels(params):
        return jax.tree_util.tree_map_with_path(lambda p, _: label(p), params)
    return optax.multi_transform({"train": adamw, "frozen": optax.set_to_zero()}, labels)
