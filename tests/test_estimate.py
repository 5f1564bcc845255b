"""`hybrid_jax.analysis.estimate` (and `hybrid-jax estimate`): parameter counts equal the instantiated model's; sharded state bytes equal
what XLA allocates for the compiled step's arguments."""

import json
import os
import subprocess
import sys

import jax
import pytest
from flax import nnx

from hybrid_jax import cli
from hybrid_jax.analysis import estimate
from hybrid_jax.cli import estimate as estimate_cli
from hybrid_jax.model import BLT
from train_helpers import load_config

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def variants():
    """Configs that exercise every optional parameter: GQA, a global input projection, cross-attention
    in every layer, several hash functions, extra vocabulary."""
    a = load_config("tiny")
    b = load_config("tiny")
    b.model.update(vocab_size=264, cross_attn_k=3)
    b.model.hash.n_functions = 2
    b.model.local_encoder.cross_attn_all_layers = True
    b.model.local_encoder.layers = 2
    b.model.global_transformer.update(kv_heads=4, d_ff=100)
    return {"tiny": a.model, "toy": load_config("toy").model, "variant": b.model}


@pytest.mark.parametrize("name", ["tiny", "toy", "variant"])
def test_counts_equal_the_instantiated_model(name):
    cfg = variants()[name]
    counts = estimate.param_counts(cfg)
    state = nnx.state(BLT(cfg, nnx.Rngs(0)), nnx.Param)
    assert counts["total"] == sum(x.size for x in jax.tree.leaves(state))
    for component in ("entropy_model", "local_encoder", "global_transformer", "local_decoder"):
        assert counts[component] == sum(x.size for x in jax.tree.leaves(state[component]))
    table = state["local_encoder"]["hash_embed"]["embedding"]
    assert counts["hash_tables"] == table.size


def test_model_1b_is_about_one_billion():
    counts = estimate.param_counts(load_config("model_1b").model)
    assert 0.9e9 < counts["total"] < 1.2e9 and counts["global_transformer"] > 0.9e9


def test_sharded_state_bytes_match_xla(capsys):
    rc = cli.run(estimate_cli.main, ["--config", os.path.join(ROOT, "configs", "tiny.py"),
                                 "--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2",
                                 "--compile", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    r = json.loads(out)
    mem, compiled = r["memory_per_device_bytes"], r["compiled"]
    state = mem["params"] + mem["adam_moments"]
    batch = 8 // 4 * 33 * 4  # int32 rows of this device
    assert abs(compiled["argument_size_in_bytes"] - state - batch) <= 0.01 * state
    # The estimate knows the mesh: 8 devices hold less than one.
    one = estimate.estimate(load_config("tiny"), 1)["memory_per_device_bytes"]
    assert mem["params"] < one["params"] / 2 and mem["activations"] < one["activations"]
    assert r["flops_per_byte"] > 6 * r["params"]["global_transformer"] / 32  # at least the global matmuls


@pytest.mark.slow  # compiles under each policy
def test_remat_lowers_the_activation_estimate():
    cfg = load_config("model_1b")
    plain = estimate.estimate(cfg, 8)["memory_per_device_bytes"]["activations"]
    cfg.model.global_transformer.remat = "full"
    assert estimate.estimate(cfg, 8)["memory_per_device_bytes"]["activations"] < plain / 2


def test_devices_that_do_not_fit_the_mesh_are_an_error(capsys):
    rc = cli.run(estimate_cli.main, ["--config", os.path.join(ROOT, "configs", "tiny.py"),
                                 "--config.mesh.data=3", "--devices", "8"])
    assert rc == 2 and "3 devices, but 8 are available" in capsys.readouterr().err


@pytest.mark.slow  # compiles the train step for 8 devices
def test_compile_for_a_mesh_this_machine_lacks():
    """Without fake devices, `--compile` compiles for the device count the mesh names (here 4 host
    devices, whatever the cores), and XLA's argument bytes still match the sharded state."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run([sys.executable, "-m", "hybrid_jax", "estimate",
                          "--config", os.path.join(ROOT, "configs", "tiny.py"),
                          "--config.mesh.data=1", "--config.mesh.fsdp=4", "--compile", "--json"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["mesh"] == {"data": 1, "fsdp": 4, "tensor": 1}
    mem = r["memory_per_device_bytes"]
    state = mem["params"] + mem["adam_moments"]
    batch = 8 // 4 * 33 * 4  # int32 rows of this device
    assert abs(r["compiled"]["argument_size_in_bytes"] - state - batch) <= 0.01 * state
