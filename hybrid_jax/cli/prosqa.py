"""`hybrid-jax prosqa --out DIR --n_train N --n_valid N --n_test N --seed S [--task chains]`: write
latent-reasoning data: ProsQA-style questions (the recipe: `hybrid_jax/data/prosqa.py`) or the
chain-following task (`hybrid_jax/data/chains.py`, with an out-of-distribution test of longer chains)."""

from __future__ import annotations

import json
import os

from hybrid_jax.cli.parser import ArgumentParser
from hybrid_jax.data import chains
from hybrid_jax.data.prosqa import MICRO, NANO, TINY, Recipe, generate

TASKS = ("prosqa", "chains")


def hop_range(text: str) -> tuple[int, int]:
    """"3" or "2-4" -> (low, high)."""
    try:
        lo, _, hi = text.partition("-")
        return int(lo), int(hi or lo)
    except ValueError:
        raise ValueError(f"expected hops as N or LOW-HIGH, got {text!r}") from None


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="hybrid-jax prosqa", description="Write latent-reasoning data (train, valid and test JSON "
                       "files): ProsQA-style questions, or --task chains (chain following, with test_ood).",
                       example="hybrid-jax prosqa --out data/chains --task chains --seed 0")
    p.add_argument("--out", required=True, help="directory for TASK_{train,valid,test}.json (and chains_test_ood.json)")
    p.add_argument("--task", default="prosqa", choices=TASKS,
                   help="prosqa: the Coconut paper's recipe; chains: follow one of --chains equally long chains")
    p.add_argument("--n_train", type=int, default=None, help="training examples (default 17886, chains 20000)")
    p.add_argument("--n_valid", type=int, default=300, help="validation examples")
    p.add_argument("--n_test", type=int, default=500, help="test examples (chains: also out-of-distribution ones)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--tiny", action="store_true", help="short names, 2-3 hops, small graphs (CPU tests)")
    p.add_argument("--micro", action="store_true", help="short names, 2 hops, 6-8 nodes (CPU learning runs)")
    p.add_argument("--nano", action="store_true",
                   help="12 fixed concept words, 4 people, 2 hops (CPU learning runs and the CI test)")
    p.add_argument("--hops", default="2-3", help="chains: hops of train, valid and test (N or LOW-HIGH)")
    p.add_argument("--ood_hops", default="4-5", help="chains: hops of test_ood (N or LOW-HIGH)")
    p.add_argument("--chains", type=int, default=2, help="chains: chains per question (chance is 1 / this)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    return p


def splits(args) -> list[tuple[str, int, object]]:
    """(split, n, generate(n, seed, exclude)) for each file of the task."""
    if args.task == "chains":
        hops, ood = hop_range(args.hops), hop_range(args.ood_hops)
        chains.check(hops, args.chains)
        chains.check(ood, args.chains)  # before any file is written
        n_train = 20000 if args.n_train is None else args.n_train

        def make(h):
            return lambda n, seed, exclude: chains.generate(n, seed, h, args.chains, exclude)
        return [("train", n_train, make(hops)), ("valid", args.n_valid, make(hops)),
                ("test", args.n_test, make(hops)), ("test_ood", args.n_test, make(ood))]
    if args.tiny + args.micro + args.nano > 1:
        raise ValueError("--tiny, --micro and --nano exclude each other")
    recipe = TINY if args.tiny else MICRO if args.micro else NANO if args.nano else Recipe()
    n_train = 17886 if args.n_train is None else args.n_train
    make = lambda n, seed, exclude: generate(n, seed, recipe, exclude=exclude)  # noqa: E731
    return [("train", n_train, make), ("valid", args.n_valid, make), ("test", args.n_test, make)]


def write(out: str, task: str, parts, seed: int, force: bool) -> dict[str, str]:
    """Generate and write every split (disjoint questions; split i draws from seed * 1000 + i, as
    before the chains task existed); {split: path}."""
    paths = {s: os.path.join(out, f"{task}_{s}.json") for s, _, _ in parts}
    existing = [f for f in paths.values() if os.path.exists(f)]
    if existing and not force:
        raise FileExistsError(f"{existing[0]} exists; pass --force to overwrite")
    os.makedirs(out, exist_ok=True)
    seen: set[str] = set()
    for i, (split, n, make) in enumerate(parts):
        records = make(n, seed * 1000 + i, seen)
        seen.update(r["question"] for r in records)
        with open(paths[split], "w") as f:
            json.dump(records, f, indent=1)
        print(f"wrote {paths[split]} ({n} examples)")
    return paths


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    n_train = 0 if args.n_train is None else args.n_train
    if min(n_train, args.n_valid, args.n_test) < 0:
        raise ValueError("--n_train, --n_valid and --n_test must be >= 0")
    if args.task == "chains" and (args.tiny or args.micro or args.nano):
        raise ValueError("--tiny, --micro and --nano are ProsQA recipes; --task chains takes --hops and --chains")
    write(args.out, args.task, splits(args), args.seed, args.force)
    return 0
