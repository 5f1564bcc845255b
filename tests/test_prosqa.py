"""ProsQA-style generator and Coconut-format reader."""

import json

import pytest

from hybrid_jax import cli
from hybrid_jax.cli import prosqa as prosqa_cli
from hybrid_jax.data import chains, prosqa
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


def check_chain(ex):
    """The chains task's invariants: equally long disjoint chains, the answer at the asked one's end."""
    nxt = dict(ex["edges"])
    assert len(nxt) == len(ex["edges"])  # one edge out of a node: chains, no branches
    facts = ex["question"].rsplit(" ?", 1)[0].split(" ")
    assert sorted(facts) == sorted(u + v.upper() for u, v in ex["edges"])
    assert ex["question"].endswith(f" ?{ex['root']}")
    node, walked = ex["root"], []
    while node in nxt:
        node = nxt[node]
        walked.append(node)
    assert walked == ex["steps"] and len(walked) == ex["hops"] and ex["answer"] == node == ex["target"]
    starts = set(nxt) - set(nxt.values())
    ends = set(nxt.values()) - set(nxt)
    assert sorted(ends) == ex["ends"] and len(starts) == len(ends) == len(ex["edges"]) // ex["hops"]
    for s in starts:  # every distractor chain is as long as the asked one
        n = 0
        while s in nxt:
            s, n = nxt[s], n + 1
        assert n == ex["hops"]


@pytest.mark.parametrize("hops, n_chains", [((2, 4), 3), ((5, 6), 3), ((1, 1), 2), ((3, 3), 6)])
def test_chains_follow_their_invariants(hops, n_chains):
    records = chains.generate(80, seed=2, hops=hops, n_chains=n_chains)
    for ex in records:
        check_chain(ex)
    assert {ex["hops"] for ex in records} == set(range(hops[0], hops[1] + 1))
    assert len({ex["question"] for ex in records}) == 80
    # The answer is not tied to a place among the ends (chance is 1 / n_chains).
    assert len({ex["ends"].index(ex["answer"]) for ex in records}) == n_chains


def test_chains_cli_writes_an_ood_test(tmp_path, capsys):
    args = ["--out", str(tmp_path), "--task", "chains", "--n_train", "50", "--n_valid", "5", "--n_test", "20",
            "--hops", "2-3", "--ood_hops", "5", "--seed", "1"]
    assert cli.run(prosqa_cli.main, args) == 0
    files = {s: load_examples(str(tmp_path / f"chains_{s}.json")) for s in ("train", "valid", "test", "test_ood")}
    assert [len(v) for v in files.values()] == [50, 5, 20, 20]
    assert {ex["hops"] for s in ("train", "valid", "test") for ex in files[s]} == {2, 3}
    assert {ex["hops"] for ex in files["test_ood"]} == {5}
    questions = [ex["question"] for v in files.values() for ex in v]
    assert len(set(questions)) == len(questions)
    capsys.readouterr()


@pytest.mark.parametrize("extra, fragment", [
    (["--hops", "x"], "expected hops as N or LOW-HIGH"),
    (["--hops", "4-2"], "hops must be 1 <= low <= high"),
    (["--chains", "1"], "n_chains must be >= 2"),
    (["--ood_hops", "9", "--chains", "3"], "need 30 nodes"),
    (["--nano"], "--task chains takes --hops"),
])
def test_chains_cli_bad_arguments_are_one_line(tmp_path, capsys, extra, fragment):
    args = ["--out", str(tmp_path), "--task", "chains", "--n_train", "5", "--n_valid", "1", "--n_test", "1", *extra]
    assert cli.run(prosqa_cli.main, args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and fragment in err and "\n" not in err
    assert not list(tmp_path.iterdir())  # checked before any file is written
