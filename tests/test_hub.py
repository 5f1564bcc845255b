"""Hugging Face Hub ids `org/name[@revision]` wherever a checkpoint is accepted, without the network:
HF_HUB_OFFLINE=1 and a temporary HF_HUB_CACHE that the tests fill in huggingface_hub's documented cache
layout (`models--org--name/{blobs,snapshots/<commit>,refs/<branch>}`)."""

import hashlib
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from model_helpers import tiny

from hybrid_jax import cli
from hybrid_jax.model import BLT
from hybrid_jax.model.params import flat_items, param_tree
from hybrid_jax.storage.checkpoint import load_model, save_model
from hybrid_jax.storage.hf import to_hf
from hybrid_jax.storage.loading import context_of, hub_id, load_any, model_config_of

hub_constants = pytest.importorskip("huggingface_hub.constants")

pytestmark = pytest.mark.integration

MAIN, V2 = "a" * 40, "b" * 40  # commit hashes of the two cached revisions
IDS = np.asarray([[1] + [ord(c) + 4 for c in "hello, hub"]], np.int32)


def exported(seed: int, out: str) -> BLT:
    """A tiny BLT (seed `seed`) written as a Hugging Face directory `out`."""
    cfg = tiny()
    cfg.hash.group_sizes = (3, 5)  # a smaller graph: faster compiles
    model = BLT(cfg, nnx.Rngs(seed))
    to_hf(model, cfg, out)
    return model


def publish(cache: str, repo_id: str, files: str, commit: str, branches=("main",)) -> None:
    """Put the files of the directory `files` into `cache` as revision `commit` of `repo_id`, the way
    huggingface_hub stores a download: contents under blobs/, symlinks under snapshots/<commit>/, and
    refs/<branch> holding the commit hash."""
    repo = os.path.join(cache, "models--" + repo_id.replace("/", "--"))
    snapshot = os.path.join(repo, "snapshots", commit)
    os.makedirs(os.path.join(repo, "blobs"), exist_ok=True)
    os.makedirs(snapshot)
    for name in os.listdir(files):
        with open(os.path.join(files, name), "rb") as f:
            data = f.read()
        blob = os.path.join(repo, "blobs", hashlib.sha256(data).hexdigest())
        with open(blob, "wb") as f:
            f.write(data)
        os.symlink(os.path.relpath(blob, snapshot), os.path.join(snapshot, name))
    os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
    for branch in branches:
        with open(os.path.join(repo, "refs", branch), "w") as f:
            f.write(commit)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{"main": model, "v2": model, "dirs": their HF directories}: two revisions of one Hub model."""
    root = tmp_path_factory.mktemp("hf")
    main, v2 = str(root / "main"), str(root / "v2")
    return {"main": exported(0, main), "v2": exported(1, v2), "dirs": {"main": main, "v2": v2}}


@pytest.fixture
def cache(models, tmp_path, monkeypatch):
    """An offline Hugging Face cache holding `org/tiny` (main, and branch v2) and a non-BLT `org/llama`."""
    path = str(tmp_path / "hub")
    publish(path, "org/tiny", models["dirs"]["main"], MAIN)
    publish(path, "org/tiny", models["dirs"]["v2"], V2, branches=("v2",))
    llama = tmp_path / "llama"
    llama.mkdir()
    (llama / "config.json").write_text('{"model_type": "llama"}')
    publish(path, "org/llama", str(llama), MAIN)
    # Subprocesses read the environment; this process's huggingface_hub read it at import already.
    for name, value in (("HF_HUB_OFFLINE", "1"), ("HF_HUB_CACHE", path), ("HF_HOME", str(tmp_path / "home"))):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", path)
    return path


def max_param_difference(a: BLT, b: BLT) -> float:
    pa, pb = dict(flat_items(param_tree(a))), dict(flat_items(param_tree(b)))
    assert pa.keys() == pb.keys()
    return max(float(np.max(np.abs(np.asarray(pa[k]) - np.asarray(pb[k])))) for k in pa)


def test_hub_id_form():
    assert hub_id("org/name") == ("org/name", None)
    assert hub_id("org/name@refs/pr/1") == ("org/name", "refs/pr/1")
    for path in ("runs", "./org/name", "../x/y", "/abs/x", "a/b/c", "gs://bucket/run", "org/name@"):
        assert hub_id(path) is None, path


def test_hub_id_loads_as_the_local_directory_does(models, cache):
    model, local = load_any("org/tiny"), load_any(models["dirs"]["main"])
    assert max_param_difference(model, local) == 0
    assert np.array_equal(np.asarray(model(jnp.asarray(IDS))), np.asarray(local(jnp.asarray(IDS))))
    # train.init_from / model.entropy_model.init_from read the source's config this way first
    assert model_config_of("org/tiny").to_dict() == local.config.to_dict()
    assert context_of("org/tiny") == context_of(models["dirs"]["main"])


def test_revision_picks_its_snapshot(models, cache):
    assert max_param_difference(load_any("org/tiny@v2"), models["v2"]) == 0
    assert max_param_difference(load_any(f"org/tiny@{MAIN}"), models["main"]) == 0  # a commit hash
    assert max_param_difference(load_any("org/tiny@main"), models["main"]) == 0


def test_a_local_path_wins_over_a_hub_id(models, cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exported(1, "org/tiny")  # a local directory spelled as the cached id, holding v2's weights
    assert max_param_difference(load_any("org/tiny"), models["v2"]) == 0
    save_model(models["main"], "runs/toy", step=3)
    assert max_param_difference(load_any("runs/toy@3"), models["main"]) == 0  # a step, not revision "3"


@pytest.mark.parametrize("source,fragments", [
    ("nobody/nothing", ["nobody/nothing", "not in the Hugging Face cache", "HF_HUB_OFFLINE=1"]),
    ("org/tiny@nope", ["org/tiny@nope", "not in the Hugging Face cache"]),
    ("org/llama", ["org/llama", "not a BLT model", "'llama'"]),
])
def test_hub_failures_are_one_line_with_exit_code_2(cache, source, fragments, capsys):
    from hybrid_jax.cli import generate
    assert cli.run(generate.main, ["--ckpt", source, "--prompt", "a"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert all(f in err[0] for f in fragments), err[0]


def test_every_checkpoint_option_takes_hub_ids(cache, tmp_path, capsys):
    from hybrid_jax.cli import convert, evaluate, inspect
    text, qa = tmp_path / "held_out.txt", tmp_path / "qa.json"
    text.write_text("some held-out text")
    qa.write_text('[{"question": "q", "steps": [], "answer": "a"}]')
    for main, argv in ((evaluate.main, ["bpb", "--ckpt", "nobody/nothing", "--data", str(text)]),
                       (evaluate.main, ["qa", "--ckpt", "nobody/nothing", "--data", str(qa)]),
                       (inspect.main, ["--ckpt", "nobody/nothing", "--text", "x"]),
                       (convert.main, ["from-hf", "nobody/nothing", "--out", str(tmp_path / "w")])):
        assert cli.run(main, argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "nobody/nothing: no such local path" in err[0], (argv, err)


def test_convert_from_hf_takes_a_hub_id(models, cache, tmp_path, capsys):
    from hybrid_jax.cli import convert
    out = str(tmp_path / "work")
    assert cli.run(convert.main, ["from-hf", "org/tiny@v2", "--out", out]) == 0, capsys.readouterr().err
    assert max_param_difference(load_model(out), models["v2"]) == 0


def test_a_process_fails_in_one_line_and_local_loads_skip_huggingface_hub(models, cache):
    """The whole command line, as a user runs it; and loading a local directory never imports
    huggingface_hub (it is imported only for a Hub id)."""
    r = subprocess.run([sys.executable, "-m", "hybrid_jax", "generate", "--ckpt", "nobody/nothing", "--prompt", "a"],
                       capture_output=True, text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: nobody/nothing: "), r.stderr
    code = ("import sys; from hybrid_jax.storage.loading import model_config_of; "
            f"model_config_of({models['dirs']['main']!r}); print('huggingface_hub' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr
