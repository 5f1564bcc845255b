"""`benchmarks.bench train|generate|attention`: smoke runs on the tiny config print well-formed numbers."""

import json
import os

import pytest

from benchmarks import bench
from hybrid_jax import cli

pytestmark = pytest.mark.slow  # benchmark smoke runs (they compile and time the train step, with Hugging Face)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench_json(capsys, command, *args, compare_hf: bool = True):
    """The JSON object `bench COMMAND --config configs/tiny.py ARGS [--compare_hf] --json` prints (stdout
    holds nothing else), and stderr."""
    rc = cli.run(bench.main, [command, "--config", os.path.join(ROOT, "configs", "tiny.py"), *args,
                              *(["--compare_hf"] if compare_hf else []), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(out), err


def test_bench_train_prints_json_with_hf_ratio(capsys):
    result, err = bench_json(capsys, "train", "--steps", "2", "--warmup", "0")
    assert "bench: compiled in" in err and "timing 2 steps after 0 warm-up" in err
    j, h = result["jax"], result["hf"]
    assert j["step_time"] > 0 and j["bytes_per_sec"] == 8 * 32 / j["step_time"]
    assert j["compile_s"] > 0 and j["tflops"] > 0 and j["mfu"] is None  # no peak known for CPU
    assert h["bytes_per_sec"] > 0 and abs(result["ratio"] - j["bytes_per_sec"] / h["bytes_per_sec"]) < 1e-9
    pairs = sorted(b / a for a, b in zip(j["step_times"], h["step_times"]))
    pr = result["paired_ratio"]
    lo, hi = pairs
    assert pr["pairs"] == 2 and pr["q1"] <= pr["median"] <= pr["q3"]
    for got, want in ((pr["q1"], lo + (hi - lo) / 4), (pr["median"], (lo + hi) / 2), (pr["q3"], lo + 3 * (hi - lo) / 4)):
        assert abs(got - want) < 1e-12


def test_bench_train_hf_first_times_both_apart(capsys):
    result, err = bench_json(capsys, "train", "--steps", "2", "--warmup", "1", "--hf_first")
    assert err.index("bench: Hugging Face done") < err.index("bench: compiled in")
    j, h = result["jax"], result["hf"]
    assert len(j["step_times"]) == len(h["step_times"]) == 2 and "paired_ratio" not in result
    assert abs(result["ratio"] - j["bytes_per_sec"] / h["bytes_per_sec"]) < 1e-9


def test_hf_first_needs_compare_hf(capsys):
    rc = cli.run(bench.main, ["train", "--config", os.path.join(ROOT, "configs", "tiny.py"), "--hf_first"])
    _, err = capsys.readouterr()
    assert rc == 2 and err == "error: --hf_first needs --compare_hf\n"


def test_paired_ratios_quartiles():
    pr = bench.paired_ratios([1.0, 1.0, 2.0, 1.0, 0.5], [2.0, 1.0, 2.0, 3.0, 1.0])  # ratios 2, 1, 1, 3, 2
    assert pr == {"median": 2.0, "q1": 1.0, "q3": 2.0, "pairs": 5}
    assert bench.paired_ratios([2.0], [3.0]) == {"median": 1.5, "q1": 1.5, "q3": 1.5, "pairs": 1}


def test_bench_train_profile_attributes_the_step(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))  # put back after bench changes it
    rc = cli.run(bench.main, ["train", "--config", os.path.join(ROOT, "configs", "tiny.py"), "--steps", "2",
                              "--warmup", "0", "--profile", str(tmp_path), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    result = json.loads(out)
    assert result["config"]["xla_flags"].endswith("--xla_gpu_enable_command_buffer=")  # GPU kernels unfolded
    p = result["profile"]
    assert os.path.isfile(p["trace"]) and p["trace"].startswith(str(tmp_path))
    kinds = dict(p["by_kind"])
    assert abs(sum(kinds.values()) - p["ms_per_step"]) < 1e-6 and kinds["matmul"] > 0
    sources = [name for name, _ in p["by_source"]]
    assert any(s.startswith("fwd model/") for s in sources) and any(s.startswith("bwd model/") for s in sources)
    assert any("attention.py" in s for s in sources)
    assert p["lines"] and all(isinstance(name, str) and ms >= 0 and n > 0 for name, ms, n in p["lines"])
    assert [ms for _, ms, _ in p["lines"]] == sorted((ms for _, ms, _ in p["lines"]), reverse=True)
    assert isinstance(p["unplaced"], list)


def test_bench_train_keeps_its_timings_when_the_profile_summary_fails(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))

    def broken(jax_step, tracer):
        raise KeyError("no device plane")

    monkeypatch.setattr(bench, "profile_jax", broken)
    rc = cli.run(bench.main, ["train", "--config", os.path.join(ROOT, "configs", "tiny.py"), "--steps", "1",
                              "--warmup", "0", "--profile", str(tmp_path), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    result = json.loads(out)
    assert result["jax"]["step_time"] > 0 and "profile" not in result
    assert result["profile_error"] == "KeyError: 'no device plane'"
    assert "bench: no profile summary: KeyError: 'no device plane'" in err


def test_bench_profile_to_unwritable_dir_is_one_line_before_timing(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    rc = cli.run(bench.main, ["train", "--config", os.path.join(ROOT, "configs", "tiny.py"),
                              "--profile", str(blocker / "trace")])
    _, err = capsys.readouterr()
    assert rc == 2 and err.startswith("error: cannot write a profile to") and err.count("\n") == 1


def test_bench_bad_usage_is_one_line(capsys):
    rc = cli.run(bench.main, ["serve", "--config", "x.py"])
    _, err = capsys.readouterr()
    assert rc == 2 and "invalid choice: 'serve'" in err and err.count("\n") == 1


def test_bench_generate_prints_json_with_hf_ratio(capsys):
    result, _ = bench_json(capsys, "generate", "--new_bytes", "8", "--contexts", "16,40")
    rows = result["jax"]
    assert [r["context"] for r in rows] == [16, 40] and all(r["new_bytes"] == 8 for r in rows)
    assert all(r["bytes_per_sec"] > 0 and r["avg_patch_len"] >= 1 for r in rows)
    assert result["hf"]["context"] == 16 and result["hf"]["bytes_per_sec"] > 0
    assert abs(result["ratio"] - rows[0]["end_to_end_bytes_per_sec"] / result["hf"]["bytes_per_sec"]) < 1e-9


def test_bench_attention_times_every_stack(capsys):
    result, _ = bench_json(capsys, "attention")
    assert set(result) == {"entropy_model", "local_encoder", "local_decoder", "global_transformer"}
    for row in result.values():
        assert set(row["ms"]) == {"hybrid_jax", "jax.nn.dot_product_attention", "torch sdpa"}
        assert all(ms > 0 for ms in row["ms"].values())
    assert result["local_encoder"]["shape"][:2] == [8, 32]


def test_bench_train_without_transformers_is_one_line(capsys, tmp_path, monkeypatch):
    # The Hugging Face step runs in a spawned child; a failure there reaches the user as one line.
    fake = tmp_path / "transformers"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('transformers is not installed (test)')\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # the spawned child starts from the parent's sys.path
    rc = cli.run(bench.main, ["train", "--config", os.path.join(ROOT, "configs", "tiny.py"),
                              "--steps", "1", "--compare_hf"])
    _, err = capsys.readouterr()
    progress, error = err.splitlines()[:-1], err.splitlines()[-1]  # progress lines, then the error
    assert rc == 2 and error == "error: transformers is not installed (test)"
    assert all(line.startswith("bench: ") for line in progress) and "Traceback" not in err


def test_prepare_bench_prints_a_row_per_run(tmp_path, capsys):
    from benchmarks import prepare_bench

    assert prepare_bench.main(["--sizes_gb", "0.0002", "0.0004", "--root", str(tmp_path), "--steps", "2"]) == 0
    table = capsys.readouterr().out.strip().splitlines()
    assert table[0].startswith("| corpus | training input |") and len(table) == 2 + 3
    for row in table[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[3]) > 0 and 100 < float(cells[4]) < 24 * 1024  # first step (s), peak RSS (MiB)
    assert not os.listdir(tmp_path)  # the scratch corpora are removed


def test_patching_study_prints_the_table(tmp_path, capsys):
    from benchmarks import patching_study
    from train_helpers import write_corpus

    corpus = write_corpus(tmp_path / "corpus", n_files=12)
    # Its own held-out files: the hash-chosen share of 12 files, keyed by their temporary path, is empty
    # for some paths, and then phase 1 has no held-out row to print.
    held_out = write_corpus(tmp_path / "held_out", n_files=2, seed=1)
    args = ["--config", "configs/tiny.py", "--entropy_config", "configs/tiny.py", "--data", corpus, "--seeds", "0",
            "--eval_data", held_out,
            "--steps", "3", "--entropy_steps", "3", "--target", "4", "--eval_batches", "1", "--root", str(tmp_path / "runs"),
            "--extra=--config.train.lr=0.01"]
    assert patching_study.main(args) == 0
    table = capsys.readouterr().out.strip().splitlines()
    assert len(table) == 2 + 4
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")] for line in table[2:]}
    assert set(rows) == set(patching_study.MODES)
    assert 3.5 < float(rows["static"][1]) <= 4.0  # 4-byte patches after the lone BOS
    assert len({cells[2] for cells in rows.values()}) == 1  # the same global and local work per byte
    assert rows["static"][3] == rows["static"][2] != rows["entropy (online)"][3]  # no entropy model runs
    for cells in rows.values():
        assert float(cells[5]) > 0 and cells[4].endswith("± 0.0000")  # one seed: no spread
    assert rows["static"][6] == ""
    for mode in ("space", "entropy (online)"):  # paired with static by seed: the difference of the two
        paired = float(rows[mode][6].split(" ± ")[0])
        assert abs(paired - (float(rows[mode][5]) - float(rows["static"][5]))) <= 1.5e-4


def test_bench_generate_speculate_counts_and_bounds(capsys):
    result, _ = bench_json(capsys, "generate", "--new_bytes", "8", "--contexts", "16", "--speculate", "4",
                           "--bounds", compare_hf=False)
    row = result["jax"][0]
    assert row["speculate"] == 4 and 0 <= row["acceptance"] <= 1 and 1 <= row["mean_kept"] <= 4
    assert 0 < row["passes_per_byte"] <= 1 and 0 <= row["global_runs_per_byte"] <= row["passes_per_byte"]
    assert result["machine"]["bandwidth_gb_s"] > 0 and result["machine"]["matmul_gflop_s"] > 0
    b = row["bounds"]
    assert 0 < b["memory_bound_ms_per_byte"] and 0 < b["compute_bound_ms_per_byte"] and b["weight_mb_per_step"] > 0
