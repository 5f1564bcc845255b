"""Chain following: a small reachability task that needs one lookup per hop (`hybrid-jax prosqa --task chains`).

A question lists the edges of `n_chains` disjoint chains over single-letter nodes, every chain `hops`
edges long, as shuffled two-letter facts ("aB" = a points to b), then names the start of one chain:

    aB fC ... ?a

The answer is the end of that chain (a node with no outgoing edge). Every chain is as long as the
asked one, so the answer is one of `n_chains` equally deep ends, and neither depth nor position gives
it away: a model that cannot follow the chain scores 1 / n_chains. The steps are the nodes visited
after the start, one per hop (the last one is the answer), so chain of thought writes one node per
hop and Coconut replaces each with one thought. Closed vocabulary (26 letters), ProsQA-like graph
reachability with equal-depth distractors, but short (3 bytes per fact) so a CPU trains it in minutes.

The target of a fact is upper case so that source and target are different bytes: a byte-level model
pools a fact's bytes into one patch, and with the same byte set for both ends ("ab" and "ba") the
patch must first learn which letter came first before it can be looked up (measured: chain of thought
with lower-case targets wrote the first step right only 23 % of the time after 1248 steps).
"""

from __future__ import annotations

import random
import string

NODES = string.ascii_lowercase


def make_example(rng: random.Random, hops: int, n_chains: int) -> dict:
    """One record: question, steps, answer, plus the graph (nodes, edges, root, target, ends, hops)."""
    nodes = rng.sample(NODES, n_chains * (hops + 1))
    chains = [nodes[i * (hops + 1):(i + 1) * (hops + 1)] for i in range(n_chains)]
    edges = [(c[j], c[j + 1]) for c in chains for j in range(hops)]
    facts = [u + v.upper() for u, v in edges]
    rng.shuffle(facts)
    asked = chains[0]
    return {
        "question": " ".join(facts) + f" ?{asked[0]}",
        "steps": list(asked[1:]),
        "answer": asked[-1],
        "edges": [list(e) for e in edges], "root": asked[0], "target": asked[-1],
        "ends": sorted(c[-1] for c in chains), "hops": hops,
    }


def check(hops: tuple[int, int], n_chains: int) -> None:
    """ValueError unless `n_chains` chains of up to `hops[1]` hops fit the 26 nodes."""
    if not 1 <= hops[0] <= hops[1]:
        raise ValueError(f"hops must be 1 <= low <= high, got {hops[0]}-{hops[1]}")
    if n_chains < 2:
        raise ValueError(f"n_chains must be >= 2 (a distractor), got {n_chains}")
    if n_chains * (hops[1] + 1) > len(NODES):
        raise ValueError(f"{n_chains} chains of {hops[1]} hops need {n_chains * (hops[1] + 1)} nodes; "
                         f"there are {len(NODES)}")


def generate(n: int, seed: int, hops: tuple[int, int], n_chains: int = 3,
             exclude: set[str] | None = None) -> list[dict]:
    """`n` records with distinct questions (none in `exclude`), hops drawn uniformly from `hops`
    (inclusive)."""
    check(hops, n_chains)
    rng, out = random.Random(seed), []
    seen = set(exclude or ())
    while len(out) < n:
        ex = make_example(rng, rng.randint(*hops), n_chains)
        if ex["question"] not in seen:
            seen.add(ex["question"])
            out.append(ex)
    return out
