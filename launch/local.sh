#!/usr/bin/env bash
# N CPU processes with K fake devices each on this machine, one jax.distributed job (gloo collectives):
# the way to exercise multi-host code paths without a pod.
#   launch/local.sh 2 4 --config configs/tiny.py --workdir runs/mp --config.mesh.data=2 --config.mesh.fsdp=4
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
  echo "usage: launch/local.sh PROCESSES DEVICES_PER_PROCESS TRAIN_ARGS..." >&2
  exit 2
fi
procs=$1 devs=$2
shift 2
PY=${PY:-.venv/bin/python}
exec "$PY" -m hybrid_jax launch --processes "$procs" --devices_per_process "$devs" -- "$@"
