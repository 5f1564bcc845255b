"""ProsQA-style data (written by `hybrid-jax prosqa`).

The recipe of the Coconut paper (Hao et al., 2024, ProsQA): a random DAG over made-up concept names
with a few people at its sources. Facts are its edges ("Every wumpus is a yumpus.", "Tom is a
wumpus."), shuffled. The question asks "Is Tom a A or B?" where exactly one of A, B is reachable from
Tom; B is reachable from another person, at a similar depth, so neither name nor depth gives the answer
away. The steps are the shortest proof path from Tom to A; the answer is "Tom is a A.". Records carry
the reference's fields (question, steps, answer, idx_to_symbol, edges, root, target, neg_target), so
files in the reference format and ours are interchangeable. Splits never share a question.
"""

from __future__ import annotations

import dataclasses
import random
from collections import deque


ONSETS = ("b", "br", "d", "f", "g", "gw", "j", "l", "r", "s", "sc", "sh", "st", "t", "tr", "w", "y", "z",
          "k", "n", "p", "v", "gr", "pl", "bl", "dr", "kr", "sn", "sp", "th")
VOWELS = ("a", "e", "i", "o", "u", "oo", "ai", "ee", "ou", "y")
CODAS = ("mpus", "rpus", "lpus", "mbus", "ndus", "rkus")
PEOPLE = ("Alex", "Ben", "Carol", "Davis", "Eva", "Fae", "Gabe", "Hana", "Ivy", "Jack", "Kim", "Leo",
          "Max", "Nina", "Owen", "Polly", "Quinn", "Rex", "Sally", "Tom", "Uma", "Wren", "Zoe")


@dataclasses.dataclass(frozen=True)
class Recipe:
    concepts: tuple[int, int] = (14, 22)  # number of concept nodes (inclusive range)
    people: tuple[int, int] = (2, 4)
    hops: tuple[int, int] = (3, 7)  # length of the shortest proof (person -> target), in facts
    out_degree: tuple[int, int] = (1, 3)  # edges out of each non-sink node
    short_names: bool = False  # 3-4 letter names (the tiny CPU set)
    equal_depth: bool = False  # the distractor exactly as deep as the answer (else: as close as there is)
    lexicon: tuple[str, ...] = ()  # draw concept names from this fixed list (and people from PEOPLE[:4])


TINY = Recipe(concepts=(6, 9), people=(2, 2), hops=(2, 3), out_degree=(1, 2), short_names=True)
MICRO = Recipe(concepts=(4, 6), people=(2, 2), hops=(2, 2), out_degree=(1, 2), short_names=True)
# CPU learning runs: a closed vocabulary of 12 concept words and 4 people, so a small model can learn
# the words themselves and spend its capacity on the two hops (with invented names it must also learn
# to copy unseen words byte by byte, which the 1 M-parameter model did not manage on a CPU budget).
LEXICON = ("dax", "fep", "gim", "kiv", "lup", "mip", "nef", "rax", "tov", "wug", "zib", "bol")
NANO = Recipe(concepts=(4, 5), people=(2, 2), hops=(2, 2), out_degree=(1, 1), equal_depth=True, lexicon=LEXICON)


def concept_names(rng: random.Random, n: int, short: bool) -> list[str]:
    """`n` distinct made-up concept names ("brimpus"; "brim"-style when short)."""
    names: set[str] = set()
    while len(names) < n:
        onset, vowel = rng.choice(ONSETS), rng.choice(VOWELS)
        names.add(onset + vowel + (rng.choice("mrlnk") if short else rng.choice(CODAS)))
    return sorted(names, key=lambda _: rng.random())


def reachable(adj: dict[int, list[int]], start: int) -> dict[int, int]:
    """Shortest distance (in edges) from `start` to every reachable node (BFS)."""
    dist, queue = {start: 0}, deque([start])
    while queue:
        u = queue.popleft()
        for v in adj.get(u, ()):
            if v not in dist:
                dist[v] = dist[u] + 1
                queue.append(v)
    return dist


def shortest_path(adj, start: int, goal: int) -> list[int]:
    prev, queue = {start: None}, deque([start])
    while queue:
        u = queue.popleft()
        for v in adj.get(u, ()):
            if v not in prev:
                prev[v] = u
                queue.append(v)
    path, node = [], goal
    while node is not None:
        path.append(node)
        node = prev[node]
    return path[::-1]


def random_dag(rng: random.Random, recipe: Recipe):
    """(symbols, edges, people indices): people first, then concepts in a random topological order."""
    n_people = rng.randint(*recipe.people)
    n_concepts = rng.randint(*recipe.concepts)
    if recipe.lexicon:
        people = rng.sample(PEOPLE[:4], n_people)
        symbols = people + rng.sample(recipe.lexicon, n_concepts)
    else:
        people = rng.sample(PEOPLE, n_people)
        symbols = people + concept_names(rng, n_concepts, recipe.short_names)
    edges = set()
    for u in range(len(symbols)):
        later = list(range(max(u + 1, n_people), len(symbols)))
        # People point into the first half of the concepts, so proofs have room to be long.
        if u < n_people:
            later = later[:max(1, n_concepts // 2)]
        for v in rng.sample(later, min(len(later), rng.randint(*recipe.out_degree))):
            edges.add((u, v))
    return symbols, sorted(edges), list(range(n_people))


def make_example(rng: random.Random, recipe: Recipe) -> dict | None:
    """One ProsQA-style record, or None when this DAG has no valid question (the caller redraws)."""
    symbols, edges, people = random_dag(rng, recipe)
    adj: dict[int, list[int]] = {}
    for u, v in edges:
        adj.setdefault(u, []).append(v)
    root = rng.choice(people)
    mine = reachable(adj, root)
    targets = [v for v, d in mine.items() if recipe.hops[0] <= d <= recipe.hops[1] and v not in people]
    others = {}
    for p in people:
        if p != root:
            for v, d in reachable(adj, p).items():
                if v not in mine and v not in people:
                    others[v] = min(d, others.get(v, d))
    if not targets or not others:
        return None
    target = rng.choice(targets)
    # The distractor's depth should not tell it apart from the answer.
    neg = min(others, key=lambda v: (abs(others[v] - mine[target]), rng.random()))
    if recipe.equal_depth and others[neg] != mine[target]:
        return None
    path = shortest_path(adj, root, target)
    facts = [fact(symbols, u, v, people) for u, v in edges]
    rng.shuffle(facts)
    a, b = (symbols[target], symbols[neg]) if rng.random() < 0.5 else (symbols[neg], symbols[target])
    return {
        "question": " ".join(facts) + f" Is {symbols[root]} a {a} or {b}?",
        "steps": [fact(symbols, u, v, people) for u, v in zip(path, path[1:])],
        "answer": f"{symbols[root]} is a {symbols[target]}.",
        "idx_to_symbol": symbols, "edges": [list(e) for e in edges],
        "root": root, "target": target, "neg_target": neg,
    }


def fact(symbols, u: int, v: int, people) -> str:
    return f"{symbols[u]} is a {symbols[v]}." if u in people else f"Every {symbols[u]} is a {symbols[v]}."


def generate(n: int, seed: int, recipe: Recipe = Recipe(), exclude: set[str] | None = None) -> list[dict]:
    """`n` records with distinct questions (none of them in `exclude`)."""
    rng, out = random.Random(seed), []
    seen = set(exclude or ())
    while len(out) < n:
        ex = make_example(rng, recipe)
        if ex is not None and ex["question"] not in seen:
            seen.add(ex["question"])
            out.append(ex)
    return out
