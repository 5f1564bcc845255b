#!/usr/bin/env bash
# Latent reasoning on full-size ProsQA on one H100/H200 in at most ~12 minutes: generate the training
# data (`hybrid-jax prosqa`, the paper's recipe, 17,886 questions), train configs/prosqa.py on it with a
# schedule cut to the budget, then score greedy answers on the reference test split
# (facebookresearch/coconut data/prosqa_test.json, 500 questions; never trained or tuned on).
#   launch/prosqa_gpu.sh PATH/TO/prosqa_test.json [WORKDIR]
# PY picks the python (default .venv/bin/python, with jax[cuda]); TRAIN_TIMEOUT bounds training (s,
# default 540) and the workdir keeps checkpoints, so a stopped run resumes where it stopped when the
# script is run again. MODE (default coconut) picks the mode; EXTRA adds --config.KEY=VALUE arguments.
# Sizing (docs/results/2026-12-06-coconut-study.md): the 131 M-parameter config runs the global
# transformer 7 times per step (6 thoughts + 1); at an assumed 25 % MFU of an H100 one epoch takes
# ~2 minutes, so the paper's 50 epochs need ~1.7 hours. The default below trains a 4x smaller global
# transformer (d 512, 8 layers) for one epoch per stage (stages 0-6, then 2 epochs with all 6 steps
# latent: 9 epochs, ~5,000 steps).
set -euo pipefail
cd "$(dirname "$0")/.."
test_json=${1:?usage: launch/prosqa_gpu.sh PATH/TO/prosqa_test.json [WORKDIR]}
workdir=${2:-runs/prosqa_gpu}
PY=${PY:-.venv/bin/python}
MODE=${MODE:-coconut}
TRAIN_TIMEOUT=${TRAIN_TIMEOUT:-540}
export JAX_PLATFORMS=${JAX_PLATFORMS:-cuda}
[ -f "$test_json" ] || { echo "error: $test_json: no such file (the reference prosqa_test.json)" >&2; exit 2; }

data=data/prosqa
if [ ! -f "$data/prosqa_valid.json" ]; then
  "$PY" -m hybrid_jax prosqa --out "$data" --seed 0 --force
fi

start=$(date +%s)
status=0
timeout "$TRAIN_TIMEOUT" "$PY" -m hybrid_jax train --config configs/prosqa.py --workdir "$workdir" \
  --config.coconut.mode="$MODE" --config.data.train="$data/prosqa_train.json" \
  --config.data.eval="$data/prosqa_valid.json" \
  --config.model.global_transformer.d_model=512 --config.model.global_transformer.layers=8 \
  --config.model.global_transformer.heads=8 \
  --config.coconut.epochs_per_stage=1 --config.coconut.num_epochs=9 --config.coconut.eval_every_epochs=3 \
  --config.coconut.eval_limit=100 --config.train.lr=6e-4 --config.checkpoint.every=500 ${EXTRA:-} || status=$?
echo "training: exit $status after $(( $(date +%s) - start )) s" >&2
[ "$status" = 0 ] || [ "$status" = 124 ] || exit "$status"
# The reference's test questions (none of them in the generated training data: it is drawn afresh).
"$PY" -m hybrid_jax evaluate qa --ckpt "$workdir" --data "$test_json" --json
