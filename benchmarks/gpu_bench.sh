#!/usr/bin/env bash
# The one-GPU measurements of docs/results/2026-11-27-gpu.md in one go. Each `bench train` run gets its
# own timeout; its JSON goes to OUT/NAME.json and its log to OUT/NAME.log. A run that fails or times out
# is reported and the next one starts. A table of all runs is printed at the end.
#   benchmarks/gpu_bench.sh                               # every run, in the order below, into runs/gpu_bench
#   RUNS="1b 1b_hf" benchmarks/gpu_bench.sh /tmp/bench     # some of them
# PY picks the python (default .venv/bin/python); it needs requirements.txt with jax[cuda], and torch +
# transformers for the runs that compare with Hugging Face. RUN_TIMEOUT bounds each run (s, default 240):
# the 1B runs take ~35 s to compile and ~1 min in all on an H100. BENCH_ARGS is added to every run's
# arguments (e.g. "--profile /tmp/prof --config.train.batch_size=16").
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/gpu_bench}
PY=${PY:-.venv/bin/python}
RUN_TIMEOUT=${RUN_TIMEOUT:-240}
export JAX_PLATFORMS=${JAX_PLATFORMS:-cuda}

one_b="--config configs/model_1b.py --config.train.batch_size=8 --steps 8 --warmup 2"
scanned="$one_b --config.model.global_transformer.scan_layers=True"
declare -A args=(
  [1b]="$one_b"
  [1b_b32]="--config configs/model_1b.py --config.train.batch_size=32 --steps 6 --warmup 2"
  [1b_hf]="--config configs/model_1b.py --config.train.batch_size=4 --steps 5 --warmup 2 --compare_hf --hf_first"
  [1b_scanned]="$scanned"
  [1b_scanned_elementwise]="$scanned --config.model.global_transformer.remat=elementwise"
  [1b_scanned_dots]="$scanned --config.model.global_transformer.remat=dots_saveable"
  [1b_scanned_slice_fusion]="$scanned"
  [toy]="--config configs/toy.py --config.model.dtype=bfloat16 --compare_hf --steps 20 --warmup 3"
)
declare -A xla_flags=([1b_scanned_slice_fusion]="--xla_gpu_enable_dynamic_slice_fusion=true")
order="1b 1b_b32 1b_hf 1b_scanned 1b_scanned_elementwise 1b_scanned_slice_fusion 1b_scanned_dots toy"
runs=${RUNS:-$order}
for name in $runs; do
  if [ -z "${args[$name]+x}" ]; then
    echo "gpu_bench: unknown run '$name'; choose from: $order" >&2
    exit 2
  fi
done

if ! command -v "$PY" >/dev/null; then
  echo "gpu_bench: no python at '$PY'; set PY to one that has hybrid_jax's requirements" >&2
  exit 2
fi
mkdir -p "$out" || exit 2
failed=0
for name in $runs; do
  echo "gpu_bench: $name: bench train ${args[$name]} ${BENCH_ARGS:-}" >&2
  # shellcheck disable=SC2086  # the arguments are meant to split
  flags="${XLA_FLAGS:-} ${xla_flags[$name]:-}"
  flags="${flags# }"  # XLA reads a value that does not start with "--" as a file name
  XLA_FLAGS="${flags% }" timeout "$RUN_TIMEOUT" \
    "$PY" -m benchmarks.bench train ${args[$name]} ${BENCH_ARGS:-} --json >"$out/$name.json" 2>"$out/$name.log"
  rc=$?
  if [ $rc -ne 0 ]; then
    failed=1
    why="exit $rc"
    [ $rc -eq 124 ] && why="timed out after $RUN_TIMEOUT s"
    echo "gpu_bench: $name: $why; last line of $out/$name.log: $(tail -n 1 "$out/$name.log")" >&2
  fi
done
"$PY" -m benchmarks.bench_table "$out" $runs
exit $failed
