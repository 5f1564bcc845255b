"""Tiny training configs and a small on-disk corpus for the training tests."""

import importlib
import os
import random


WORDS = ("the patch model reads bytes and the global transformer thinks over patches while a small "
         "entropy model decides where each new patch starts def return import class lambda").split()


def write_corpus(root, n_files: int = 12, words: int = 400, seed: int = 0) -> str:
    """`n_files` text files of pseudo-random word salad under `root`; returns a glob for them."""
    rng = random.Random(seed)
    os.makedirs(root, exist_ok=True)
    for i in range(n_files):
        text = " ".join(rng.choice(WORDS) for _ in range(words))
        with open(os.path.join(root, f"doc{i:02d}.txt"), "w") as f:
            f.write(text + "\n")
    return os.path.join(str(root), "*.txt")


def load_config(name: str):
    """`configs/<name>.py`'s get_config() (the repository root is on the path: see conftest.py)."""
    return importlib.import_module(f"configs.{name}").get_config()


def tiny_config(corpus: str, steps: int = 6, mesh=(1, 1, 1), seq_len: int = 32, **train):
    """`configs/tiny.py` on `corpus` with a fixed mesh; `train` overrides `train.*` fields."""
    cfg = load_config("tiny")
    cfg.data.update(train=corpus, seq_len=seq_len)
    cfg.mesh.update(data=mesh[0], fsdp=mesh[1], tensor=mesh[2])
    cfg.train.update(steps=steps, **train)
    return cfg


def losses(rows) -> list[float]:
    return [r["loss"] for r in rows if "loss" in r]
