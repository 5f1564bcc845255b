"""`python -m hybrid_jax convert`: round trip through the CLI, and one-line errors for bad input."""

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from hf_helpers import hf_logits, random_hf_model, random_ids  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

pytestmark = pytest.mark.integration


def convert(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "hybrid_jax", "convert", *args], capture_output=True,
                          text=True, env=env)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("hf"))
    model = random_hf_model("gqa", seed=1, threshold=2.2)
    model.save_pretrained(d)
    return d


def copy_hf(src, dst, edit_tensors=None, edit_config=None):
    os.makedirs(dst)
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    if edit_config:
        edit_config(cfg)
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(cfg, f)
    tensors = load_file(os.path.join(src, "model.safetensors"))
    if edit_tensors:
        edit_tensors(tensors)
    save_file(tensors, os.path.join(dst, "model.safetensors"))
    return dst


def test_cli_round_trip_keeps_logits(hf_dir, tmp_path):
    work, out = str(tmp_path / "work"), str(tmp_path / "out")
    r = convert("from-hf", hf_dir, "--out", work)
    assert r.returncode == 0, r.stderr
    assert os.path.isdir(os.path.join(work, "checkpoints", "0"))
    r = convert("to-hf", work, "--out", out, "--torch-bin")
    assert r.returncode == 0, r.stderr
    assert {"config.json", "model.safetensors", "pytorch_model.bin"} <= set(os.listdir(out))
    original = transformers.BltForCausalLM.from_pretrained(hf_dir).eval()
    exported = transformers.BltForCausalLM.from_pretrained(out).eval()
    ids = random_ids(3, 2, 33)
    assert np.abs(hf_logits(original, ids) - hf_logits(exported, ids)).max() <= 1e-4
    state = torch.load(os.path.join(out, "pytorch_model.bin"))
    assert set(state) == set(exported.state_dict())
    # the step directory is accepted too
    r = convert("to-hf", os.path.join(work, "checkpoints", "0"), "--out", str(tmp_path / "out2"))
    assert r.returncode == 0, r.stderr


@pytest.mark.slow  # conversion subprocesses
def test_to_hf_refuses_non_empty_out_unless_forced(hf_dir, tmp_path):
    work, out = str(tmp_path / "work"), tmp_path / "out"
    assert convert("from-hf", hf_dir, "--out", work).returncode == 0
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert_one_line_error(convert("to-hf", work, "--out", str(out)), "not empty", "--force")
    assert (out / "mine.txt").read_text() == "keep me"
    assert convert("to-hf", work, "--out", str(out), "--force").returncode == 0
    assert_one_line_error(convert("from-hf", hf_dir, "--out", work), "not empty")


def test_missing_config_and_other_architecture(hf_dir, tmp_path):
    assert_one_line_error(convert("from-hf", str(tmp_path), "--out", str(tmp_path / "w")), "no config.json")
    llama = copy_hf(hf_dir, str(tmp_path / "llama"), edit_config=lambda c: c.update(model_type="llama"))
    assert_one_line_error(convert("from-hf", llama, "--out", str(tmp_path / "w")), "not a BLT config", "llama")


def test_tensor_errors_name_the_tensor(hf_dir, tmp_path):
    key = "model.global_transformer.layers.1.mlp.up_proj.weight"
    missing = copy_hf(hf_dir, str(tmp_path / "missing"), edit_tensors=lambda t: t.pop(key))
    assert_one_line_error(convert("from-hf", missing, "--out", str(tmp_path / "w1")), "missing tensor", key)
    extra = copy_hf(hf_dir, str(tmp_path / "extra"),
                    edit_tensors=lambda t: t.update({"model.bogus.weight": np.zeros(3, np.float32)}))
    assert_one_line_error(convert("from-hf", extra, "--out", str(tmp_path / "w2")), "unexpected tensor",
                          "model.bogus.weight")
    shaped = copy_hf(hf_dir, str(tmp_path / "shape"),
                     edit_tensors=lambda t: t.update({key: t[key][:, :-1].copy()}))
    assert_one_line_error(convert("from-hf", shaped, "--out", str(tmp_path / "w3")), key, "shape")
    assert not os.path.exists(tmp_path / "w1")


def test_corrupt_workdir_and_safetensors(hf_dir, tmp_path):
    work = str(tmp_path / "work")
    assert convert("from-hf", hf_dir, "--out", work).returncode == 0
    with open(os.path.join(work, "config.json")) as f:
        cfg = json.load(f)
    cfg["model"]["global_transformer"]["d_model"] = 32
    with open(os.path.join(work, "config.json"), "w") as f:
        json.dump(cfg, f)
    assert_one_line_error(convert("to-hf", work, "--out", str(tmp_path / "o")), "does not match")
    cfg["model"]["global_transformer"]["wings"] = 2
    with open(os.path.join(work, "config.json"), "w") as f:
        json.dump(cfg, f)
    assert_one_line_error(convert("to-hf", work, "--out", str(tmp_path / "o")), "unknown config key",
                          "model.global_transformer.wings")
    assert_one_line_error(convert("to-hf", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")),
                          "no such directory")
    cfg["model"]["global_transformer"].pop("wings")
    cfg["model"]["global_transformer"]["d_model"] = 64
    with open(os.path.join(work, "config.json"), "w") as f:
        json.dump(cfg, f)
    params = os.path.join(work, "checkpoints", "0", "params")
    for name in os.listdir(params):
        if name.startswith("_"):
            os.remove(os.path.join(params, name))
    assert_one_line_error(convert("to-hf", work, "--out", str(tmp_path / "o")), "corrupt")
    broken = copy_hf(hf_dir, str(tmp_path / "broken"))
    with open(os.path.join(broken, "model.safetensors"), "r+b") as f:
        f.truncate(100)
    assert_one_line_error(convert("from-hf", broken, "--out", str(tmp_path / "w")), "model.safetensors")


@pytest.mark.slow  # a second conversion of the HF model
def test_from_hf_api_reads_sharded_index(hf_dir, tmp_path):
    from hybrid_jax.storage.hf import from_hf
    tensors = load_file(os.path.join(hf_dir, "model.safetensors"))
    names = sorted(tensors)
    half = len(names) // 2
    shards = {"a.safetensors": names[:half], "b.safetensors": names[half:]}
    d = tmp_path / "sharded"
    d.mkdir()
    for file, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(d / file))
    index = {"weight_map": {k: f for f, keys in shards.items() for k in keys}}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    (d / "config.json").write_text(open(os.path.join(hf_dir, "config.json")).read())
    model, _ = from_hf(str(d))
    ref, _ = from_hf(hf_dir)
    ids = jnp.asarray(random_ids(0, 1, 17))
    assert np.array_equal(np.asarray(model(ids)), np.asarray(ref(ids)))


def test_import_sets_include_next_token_as_hf_runs(tmp_path):
    """HF drops the patch after the last byte under max_patch_length: the import says so in its config."""
    from hybrid_jax.storage.hf import from_hf
    for name, want in (("maxlen", False), ("gqa", True)):
        d = str(tmp_path / name)
        random_hf_model(name, seed=2).save_pretrained(d)
        _, cfg = from_hf(d)
        assert cfg.patching.include_next_token is want, name


def test_to_hf_warns_where_hf_differs_and_strict_refuses(tmp_path):
    from flax import nnx

    from hybrid_jax.config import model_config
    from hybrid_jax.model import BLT
    from hybrid_jax.storage.checkpoint import save_model
    cfg = model_config()
    cfg.hash.vocab = 101
    for stack in ("entropy_model", "local_encoder", "local_decoder", "global_transformer"):
        cfg[stack].update(d_model=32, layers=1, heads=2)
    cfg.patching.max_patch_length = 4  # with include_next_token=True (Meta's rule): HF departs
    work = str(tmp_path / "work")
    save_model(BLT(cfg, nnx.Rngs(0)), work, step=0)
    r = convert("to-hf", work, "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert os.path.isfile(tmp_path / "out" / "model.safetensors")
    warning = r.stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("warning: ") and "include_next_token=False" in warning[0]
    r = convert("to-hf", work, "--out", str(tmp_path / "strict"), "--strict")
    assert_one_line_error(r, "--strict", "max_patch_length")
    assert not os.path.exists(tmp_path / "strict")


@pytest.fixture(scope="module")
def workdir(hf_dir, tmp_path_factory):
    """`hf_dir` imported as a hybrid_jax workdir (step 0)."""
    from hybrid_jax.storage.checkpoint import save_model
    from hybrid_jax.storage.hf import from_hf
    d = str(tmp_path_factory.mktemp("work"))
    save_model(from_hf(hf_dir)[0], d, step=0)
    return d


def to_hf_in_process(*args):
    from hybrid_jax import cli
    from hybrid_jax.cli import convert as convert_cli
    return cli.run(convert_cli.main, ["to-hf", *args])


def safetensors_dtypes(path) -> set:
    """The dtypes that a safetensors file's header declares (its first 8 bytes: the header's length)."""
    with open(path, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    return {v["dtype"] for k, v in header.items() if k != "__metadata__"}


def test_to_hf_bfloat16_rounds_each_weight_once(workdir, tmp_path, capsys):
    import ml_dtypes

    from hybrid_jax.cli import convert as convert_cli
    from hybrid_jax.model.params import flat_items, param_tree
    from hybrid_jax.storage import hf
    from hybrid_jax.storage.checkpoint import load_model
    assert set(convert_cli.EXPORT_DTYPES) == set(hf.EXPORT_DTYPES)
    out = str(tmp_path / "bf16")
    assert to_hf_in_process(workdir, "--out", out, "--dtype", "bfloat16", "--torch-bin") == 0, capsys.readouterr().err
    assert safetensors_dtypes(os.path.join(out, "model.safetensors")) == {"BF16"}
    with open(os.path.join(out, "config.json")) as f:
        assert json.load(f)["torch_dtype"] == "bfloat16"
    back = dict(flat_items(param_tree(hf.from_hf(out)[0])))
    for name, value in flat_items(param_tree(load_model(workdir))):
        value, got = np.asarray(value), np.asarray(back[name])
        assert np.array_equal(got, value.astype(ml_dtypes.bfloat16).astype(np.float32)), name
        assert np.all(np.abs(got - value) <= np.abs(value) * 2.0 ** -8), name  # half a bf16 ulp
    model = transformers.BltForCausalLM.from_pretrained(out).eval()
    assert model.dtype == torch.bfloat16
    state = torch.load(os.path.join(out, "pytorch_model.bin"))
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert np.isfinite(hf_logits(model, random_ids(4, 1, 17))).all()


def test_to_hf_float32_is_the_default_and_writes_the_weights_unrounded(workdir, tmp_path, capsys):
    from flax import nnx

    from hybrid_jax.storage.checkpoint import load_model
    from hybrid_jax.storage.hf.weights import to_hf_arrays
    default, explicit = str(tmp_path / "default"), str(tmp_path / "f32")
    assert to_hf_in_process(workdir, "--out", default) == 0, capsys.readouterr().err
    assert to_hf_in_process(workdir, "--out", explicit, "--dtype", "float32") == 0, capsys.readouterr().err
    for name in ("config.json", "model.safetensors"):
        with open(os.path.join(default, name), "rb") as a, open(os.path.join(explicit, name), "rb") as b:
            assert a.read() == b.read(), name
    with open(os.path.join(default, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["torch_dtype"] == "float32" and "dtype" not in cfg
    assert safetensors_dtypes(os.path.join(default, "model.safetensors")) == {"F32"}
    want = to_hf_arrays(nnx.to_flat_state(nnx.state(load_model(workdir), nnx.Param)))
    got = load_file(os.path.join(default, "model.safetensors"))
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)
