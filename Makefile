PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast test-slow train clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=25

test-fast: setup
	$(PY) -m pytest -q -n 2 -m "not slow and not integration"

# Like the other tiers, at LLVM's cheapest level (tests/conftest.py): the slow tests are mostly compiling.
test-slow: setup
	$(PY) -m pytest -q -n 2 --dist loadfile -m slow --durations=25

# The paper's two-phase recipe, the best of docs/results/2026-12-03-patching-study.md on code: the entropy
# model alone, then the BLT with it frozen and its threshold calibrated for 4-byte patches.
train: setup
	$(PY) -m hybrid_jax train --config configs/toy_entropy.py --workdir runs/toy_entropy
	$(PY) -m hybrid_jax train --config configs/toy.py --workdir runs/toy \
		--config.model.entropy_model.init_from=runs/toy_entropy \
		--config.model.entropy_model.trained_online=False --config.model.patching.target_patch_len=4

clean:
	rm -rf $(VENV) runs .jax_cache
