#!/usr/bin/env bash
# Run hybrid_jax training on every worker of an EXISTING Cloud TPU VM slice (this script creates nothing).
#
#   launch/tpu_pod.sh TPU_NAME ZONE --config configs/model_1b.py --workdir /mnt/runs/blt1b \
#       --config.data.train='/mnt/corpus/*.jsonl'
#
# What happens on each worker (gcloud ... --worker=all runs it on all of them at once):
#   1. clone or update the repository in ~/hybrid_jax (REPO_URL, default: this checkout's origin),
#   2. `make setup` (creates .venv, installs pinned requirements) then `pip install jax[tpu]==<pinned>`,
#   3. `python -m hybrid_jax train ARGS`; JAX detects the TPU pod and `jax.distributed.initialize()`
#      needs no flags (TPU_WORKER_HOSTNAMES is set on pod VMs).
# The workdir must be one directory every worker sees (Orbax: all processes write their shards, process
# 0 writes metrics): mount a GCS bucket with gcsfuse at the same path on each worker, or use a shared
# filesystem. The mesh: e.g. a v5e-64 has 64 chips -> --config.mesh.fsdp=-1 (all of them), or
# --config.mesh.data=4 --config.mesh.fsdp=16 for data parallelism across 4 groups.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: launch/tpu_pod.sh TPU_NAME ZONE TRAIN_ARGS..." >&2
  exit 2
fi
name=$1 zone=$2
shift 2
repo=${REPO_URL:-$(git -C "$(dirname "$0")/.." remote get-url origin 2>/dev/null || echo "")}
if [ -z "$repo" ]; then
  echo "error: set REPO_URL to a git URL the TPU workers can clone" >&2
  exit 2
fi
jax_version=$(sed -n 's/^jax==//p' "$(dirname "$0")/../requirements.txt")
args=$(printf '%q ' "$@")
remote="set -e
if [ -d ~/hybrid_jax ]; then git -C ~/hybrid_jax pull --ff-only; else git clone $repo ~/hybrid_jax; fi
cd ~/hybrid_jax && make setup && .venv/bin/pip install --quiet 'jax[tpu]==$jax_version'
export JAX_PLATFORMS=tpu
.venv/bin/python -m hybrid_jax train $args"
exec gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all --command "$remote"
