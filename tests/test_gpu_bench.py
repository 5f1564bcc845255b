"""`benchmarks/gpu_bench.sh` and `benchmarks.bench_table`: the runs' plumbing, with a stand-in for the GPU
bench (each run's arguments, environment, timeout and failure), and the table's rows."""

import json
import os

import pytest
import subprocess
import sys

from benchmarks import bench_table

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_bench.sh")

RESULT = {"config": {"batch_size": 8, "seq_len": 4096, "dtype": "bfloat16", "patching": "entropy"},
          "jax": {"step_time": 0.2021, "bytes_per_sec": 162099.0, "tflops": 297.4, "mfu": 0.3007,
                  "compile_s": 34.5, "peak_memory_bytes_per_device": 43918725120, "device": "NVIDIA H100 80GB HBM3",
                  "devices": 1, "step_times": [0.2021]},
          "hf": {"step_time": 1.5}, "ratio": 3.71}

# Stands in for python: `-m benchmarks.bench train ARGS` prints RESULT, except that the batch-32 run
# hangs and the dots_saveable run fails; `-m benchmarks.bench_table` is the real one.
FAKE_PYTHON = f"""#!/usr/bin/env bash
if [ "$2" = benchmarks.bench_table ]; then exec {sys.executable} "$@"; fi
echo "args: $* XLA_FLAGS: $XLA_FLAGS" >&2
case "$*" in
  *batch_size=32*) sleep 30 ;;
  *remat=dots_saveable*) echo "error: out of memory" >&2; exit 1 ;;
esac
echo '{json.dumps(RESULT)}'
"""


def run_script(tmp_path, runs, timeout="3", **env_vars):
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    env = dict(os.environ, PY=str(fake), RUNS=runs, RUN_TIMEOUT=timeout, PYTHONPATH=ROOT, **env_vars)
    env.pop("XLA_FLAGS", None)
    return subprocess.run(["bash", SCRIPT, str(tmp_path / "out")], env=env, capture_output=True, text=True,
                          timeout=120)


def test_row_has_the_readme_columns():
    assert bench_table.row("1b", RESULT) == ("| 1b | 1 × NVIDIA H100 80GB HBM3 | 8 × 4096 | 202.1 ms | 162,099 | "
                                             "297.4 | 30.1 % | 40.9 GiB | 1500.0 ms | 3.71× |")
    no_hf = {k: v for k, v in RESULT.items() if k not in ("hf", "ratio")}
    no_mfu = bench_table.row("1b", {**no_hf, "jax": {**RESULT["jax"], "mfu": None}})
    assert no_mfu.endswith("| 297.4 | – | 40.9 GiB | – | – |")


def test_gpu_bench_runs_each_and_reports_failures(tmp_path):
    p = run_script(tmp_path, "1b 1b_scanned_slice_fusion 1b_b32 1b_scanned_dots 1b_hf")
    assert p.returncode == 1, p.stderr
    out = tmp_path / "out"
    assert json.loads((out / "1b.json").read_text()) == RESULT
    # XLA reads a value that does not start with "--" (a lone space, say) as a file name.
    assert (out / "1b_scanned_slice_fusion.log").read_text().endswith(
        "scan_layers=True --json XLA_FLAGS: --xla_gpu_enable_dynamic_slice_fusion=true\n")
    assert (out / "1b.log").read_text().endswith("--warmup 2 --json XLA_FLAGS: \n")
    assert "--compare_hf --hf_first" in (out / "1b_hf.log").read_text()
    assert "gpu_bench: 1b_b32: timed out after 3 s" in p.stderr
    assert "gpu_bench: 1b_scanned_dots: exit 1; last line of" in p.stderr and "error: out of memory" in p.stderr
    rows = p.stdout.strip().splitlines()
    assert rows[0] == bench_table.HEADER.splitlines()[0] and len(rows) == 2 + 5
    assert rows[2].startswith("| 1b | 1 × NVIDIA H100") and rows[6].endswith("| 1500.0 ms | 3.71× |")
    for bad, name in ((rows[4], "1b_b32"), (rows[5], "1b_scanned_dots")):
        assert bad.startswith(f"| {name} | no result: see {name}.log |") and bad.count("|") == rows[2].count("|")


def test_gpu_bench_unknown_run_is_one_line(tmp_path):
    p = run_script(tmp_path, "1b 2b")
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert p.stderr.startswith("gpu_bench: unknown run '2b'; choose from: 1b ")
    assert not (tmp_path / "out").exists()


def test_gpu_bench_missing_python_is_one_line(tmp_path):
    env = dict(os.environ, PY=str(tmp_path / "nopython"), RUNS="1b")
    p = subprocess.run(["bash", SCRIPT, str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and p.stderr.startswith("gpu_bench: no python at")
    assert not (tmp_path / "out").exists()


def test_gpu_bench_adds_bench_args_to_every_run(tmp_path):
    p = run_script(tmp_path, "1b toy", BENCH_ARGS="--profile /tmp/p --config.train.batch_size=16")
    assert p.returncode == 0, p.stderr
    for name in ("1b", "toy"):
        log = (tmp_path / "out" / f"{name}.log").read_text()
        assert log.rstrip().endswith("--profile /tmp/p --config.train.batch_size=16 --json XLA_FLAGS:")
