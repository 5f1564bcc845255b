"""The first phase of the paper's two-phase recipe at the toy's scale: the toy's entropy model (a byte
LM of 2 layers x 128, 512-byte attention window) trained alone on the toy's data. The second phase
freezes it in a BLT and sets the threshold for a target patch length:

    hybrid-jax train --config configs/toy_entropy.py --workdir runs/entropy
    hybrid-jax train --config configs/toy.py --workdir runs/blt \\
        --config.model.entropy_model.init_from=runs/entropy --config.model.entropy_model.trained_online=False \\
        --config.model.patching.target_patch_len=4.5
"""

import importlib.util
import os

import ml_collections


def _toy():
    """configs/toy.py, found beside this file (a config file is loaded by path, not as a package)."""
    spec = importlib.util.spec_from_file_location("toy_config", os.path.join(os.path.dirname(__file__), "toy.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def get_config() -> ml_collections.ConfigDict:
    cfg = _toy().get_config()
    cfg.train.objective = "entropy_model"
    cfg.model.entropy_model.trained_online = False  # trained alone, not beside the BLT
    cfg.train.update(steps=1500, lr=3e-3, warmup_steps=50)
    cfg.eval.update(every=500)
    cfg.checkpoint.update(every=500)
    return cfg
