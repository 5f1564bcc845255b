"""The package as a user installs it: `pip install .[dev]` into a fresh venv, then `hybrid-jax train`
for a few steps (slow: the install copies torch and jax into the venv)."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_pip_install_gives_a_working_console_script(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    r = subprocess.run([*pip, f"{ROOT}[dev]"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    # Several documents: eval_fraction holds some out by a hash of their path, so one could be all.
    for i in range(10):
        (corpus / f"{i}.py").write_text(f"def f{i}(x):\n    return x + {i}\n" * 60)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    env["JAX_PLATFORMS"] = "cpu"
    r = subprocess.run([str(venv / "bin" / "hybrid-jax"), "train", "--config", os.path.join(ROOT, "configs", "tiny.py"),
                        "--workdir", str(tmp_path / "run"), f"--config.data.train={corpus}/*.py",
                        "--config.train.steps=3"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "step 3/3" in r.stdout and r.stdout.strip().splitlines()[-1].startswith("step 3: loss ")
    assert os.path.isdir(tmp_path / "run" / "checkpoints" / "3")
