"""Training: `train(cfg, workdir)` runs the one loop (`loop.py`) on a plain task (`lm.py`) or the Coconut
curriculum (`coconut.py`), with the default hooks (`hooks.py`) around every step."""

from __future__ import annotations


def train(cfg, workdir: str, devices=None, make_hooks=None) -> list[dict]:
    """Run (or resume) training on `devices` (default: all); returns the logged metric rows of this run.
    A config with a `coconut` node trains latent reasoning. `make_hooks(run, mngr)` replaces
    `hooks.default_hooks`. The workdir is locked for the whole call (`loop.holding`): a second run on it
    raises `WorkdirInUse` before its data is read."""
    from hybrid_jax.config import validate
    from hybrid_jax.storage.workdir import Workdir
    from hybrid_jax.training.hooks import default_hooks
    from hybrid_jax.training.loop import holding, train_loop

    validate(cfg)
    with holding(Workdir(workdir)):
        if "coconut" in cfg:
            from hybrid_jax.training.coconut import CoconutCurriculum
            task = CoconutCurriculum(cfg, devices)
        else:
            from hybrid_jax.training.lm import LanguageModeling
            task = LanguageModeling(cfg, devices)
        return train_loop(task, workdir, make_hooks or default_hooks)
