"""`hybrid-jax prepare --data GLOB --out DIR`: pack a corpus once into uint16 shards on disk, so
that training reads it lazily (`--config.data.train=DIR`) instead of holding it in every host's memory
(the format: `hybrid_jax/data/prepared.py`)."""

from __future__ import annotations

import time

from hybrid_jax.cli.parser import ArgumentParser


def main(argv: list[str]) -> int:
    p = ArgumentParser(prog="hybrid-jax prepare",
                           description="Pack the documents of a glob into uint16 shards for training on corpora "
                                       "larger than memory; re-running an interrupted prepare finishes it.",
                           example="hybrid-jax prepare --data 'corpus/**/*.jsonl' --out data/corpus "
                                   "&& hybrid-jax train --config configs/toy.py --workdir runs/c "
                                   "--config.data.train=data/corpus")
    p.add_argument("--data", required=True, help="glob of text, JSONL or ArrayRecord files (** recurses)")
    p.add_argument("--out", required=True, help="directory to write (index.json and shards/)")
    p.add_argument("--text_field", default="text", help="JSONL field holding the document")
    p.add_argument("--eval_fraction", type=float, default=0.02,
                   help="share of documents held out for evaluation (as data.eval_fraction; 0: none)")
    p.add_argument("--workers", type=int, default=0, help="processes converting files in parallel (0: one per core)")
    args = p.parse_args(argv)
    if not 0 <= args.eval_fraction < 1 or args.workers < 0:
        raise ValueError("--eval_fraction must be in [0, 1) and --workers >= 0")
    from hybrid_jax.data.prepared import prepare, report

    t0 = time.time()
    index = prepare(args.data, args.out, args.text_field, args.eval_fraction, args.workers, report)
    ids = index["train"] + index["eval"]
    print(f"{args.out}: {index['documents']:,} documents from {len(index['shards'])} files, {ids:,} ids "
          f"({index['eval']:,} held out) in {time.time() - t0:.1f} s")
    return 0

