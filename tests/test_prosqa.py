"""ProsQA-style generator and Coconut-format reader."""

import json

import pytest

from hybrid_jax import cli
from hybrid_jax.cli import prosqa as prosqa_cli
from hybrid_jax.data import prosqa
from hybrid_jax.data.coconut import load_examples
from hybrid_jax.errors import DataError


def check_record(ex):
    """The invariants of the recipe: one choice reachable, the proof is a shortest path of facts."""
    symbols, root, target, neg = ex["idx_to_symbol"], ex["root"], ex["target"], ex["neg_target"]
    adj = {}
    for u, v in ex["edges"]:
        adj.setdefault(u, []).append(v)
    reach = prosqa.reachable(adj, root)
    assert target in reach and neg not in reach
    assert ex["answer"] == f"{symbols[root]} is a {symbols[target]}."
    q = ex["question"]
    assert q.endswith("?") and f"Is {symbols[root]} a " in q
    assert {symbols[target], symbols[neg]} == set(q.rsplit(f"Is {symbols[root]} a ", 1)[1][:-1].split(" or "))
    assert len(ex["steps"]) == reach[target]  # shortest proof: one fact per edge
    assert ex["steps"][0].startswith(f"{symbols[root]} is a ") and ex["steps"][-1].endswith(f" {symbols[target]}.")
    for step in ex["steps"]:
        assert step in q  # every step is a stated fact


@pytest.mark.parametrize("recipe", [prosqa.Recipe(), prosqa.TINY, prosqa.MICRO])
def test_generated_records_follow_the_recipe(recipe):
    records = prosqa.generate(60, seed=5, recipe=recipe)
    for ex in records:
        check_record(ex)
    hops = [len(ex["steps"]) for ex in records]
    assert min(hops) >= recipe.hops[0] and max(hops) <= recipe.hops[1]
    # Neither position in the question gives the answer away.
    first = sum(ex["question"].rsplit(" a ", 1)[1].startswith(ex["idx_to_symbol"][ex["target"]] + " or ")
                for ex in records)
    assert 0 < first < len(records)


def test_cli_writes_disjoint_splits_and_refuses_to_overwrite(tmp_path, capsys):
    args = ["--out", str(tmp_path), "--n_train", "40", "--n_valid", "10", "--n_test", "10", "--seed", "3", "--tiny"]
    assert cli.run(prosqa_cli.main, args) == 0
    splits = {s: load_examples(str(tmp_path / f"prosqa_{s}.json")) for s in ("train", "valid", "test")}
    assert [len(v) for v in splits.values()] == [40, 10, 10]
    questions = [ex["question"] for v in splits.values() for ex in v]
    assert len(set(questions)) == len(questions)
    capsys.readouterr()
    assert cli.run(prosqa_cli.main, args) == 2 and "exists; pass --force" in capsys.readouterr().err
    again = tmp_path / "again"
    assert cli.run(prosqa_cli.main, ["--out", str(again)] + args[2:]) == 0
    assert (again / "prosqa_train.json").read_text() == (tmp_path / "prosqa_train.json").read_text()  # seeded


def test_reader_names_file_and_index(tmp_path):
    good = {"question": "q?", "steps": ["a.", "b."], "answer": "x."}
    path = tmp_path / "d.json"
    path.write_text(json.dumps([good, {"question": "q?", "answer": "x."}]))
    with pytest.raises(DataError, match=r"d.json: example 1: field 'steps'"):
        load_examples(str(path))
    path.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_examples(str(path))
