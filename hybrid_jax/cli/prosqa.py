"""`hybrid-jax prosqa --out DIR --n_train N --n_valid N --n_test N --seed S`: write ProsQA-style
latent-reasoning data (the recipe: `hybrid_jax/data/prosqa.py`)."""

from __future__ import annotations

import json
import os

from hybrid_jax.cli.parser import ArgumentParser
from hybrid_jax.data.prosqa import MICRO, NANO, TINY, Recipe, generate


def main(argv: list[str]) -> int:
    p = ArgumentParser(prog="hybrid-jax prosqa", description="Write ProsQA-style latent-reasoning data (train, valid and test JSON files).",
                           example="hybrid-jax prosqa --out data/prosqa --tiny")
    p.add_argument("--out", required=True, help="directory for prosqa_{train,valid,test}.json")
    p.add_argument("--n_train", type=int, default=17886, help="training examples")
    p.add_argument("--n_valid", type=int, default=300, help="validation examples")
    p.add_argument("--n_test", type=int, default=500, help="test examples")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--tiny", action="store_true", help="short names, 2-3 hops, small graphs (CPU tests)")
    p.add_argument("--micro", action="store_true", help="short names, 2 hops, 6-8 nodes (CPU learning runs)")
    p.add_argument("--nano", action="store_true",
                   help="12 fixed concept words, 4 people, 2 hops (CPU learning runs and the CI test)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    args = p.parse_args(argv)
    if min(args.n_train, args.n_valid, args.n_test) < 0:
        raise ValueError("--n_train, --n_valid and --n_test must be >= 0")
    if args.tiny + args.micro + args.nano > 1:
        raise ValueError("--tiny, --micro and --nano exclude each other")
    recipe = TINY if args.tiny else MICRO if args.micro else NANO if args.nano else Recipe()
    paths = {s: os.path.join(args.out, f"prosqa_{s}.json") for s in ("train", "valid", "test")}
    existing = [f for f in paths.values() if os.path.exists(f)]
    if existing and not args.force:
        raise FileExistsError(f"{existing[0]} exists; pass --force to overwrite")
    os.makedirs(args.out, exist_ok=True)
    seen: set[str] = set()
    for i, (split, n) in enumerate((("train", args.n_train), ("valid", args.n_valid), ("test", args.n_test))):
        records = generate(n, args.seed * 1000 + i, recipe, exclude=seen)
        seen.update(r["question"] for r in records)
        with open(paths[split], "w") as f:
            json.dump(records, f, indent=1)
        print(f"wrote {paths[split]} ({n} examples)")
    return 0

