"""How many CPU devices `auto` picks (one, unless the mesh names a count), and that the count reaches a
fresh JAX."""

import os
import subprocess
import sys

import pytest

from hybrid_jax.config import ConfigError, default_config
from hybrid_jax.parallel.distributed import cpu_device_count, set_cpu_devices

pytestmark = pytest.mark.integration


def config(**mesh):
    cfg = default_config()
    cfg.mesh.update(mesh)
    return cfg


@pytest.mark.parametrize("cfg,cores,expected", [
    (config(), 8, 1),                                       # a -1 axis: one device on all cores
    (config(tensor=2), 8, 1),
    (config(data=2), 8, 2),                                 # no -1 axis: the layout names its devices
    (config(data=1, fsdp=2), 2, 2),
    (config(data=4, fsdp=2), 4, 1),                         # more than the cores: the mesh check says so
])
def test_cpu_device_count(cfg, cores, expected):
    assert cpu_device_count(cfg, cores) == expected


def test_bad_count_is_a_config_error():
    with pytest.raises(ConfigError, match="--cpu_devices must be"):
        set_cpu_devices(config(), "0")


def _fresh_device_count(code: str, **env_changes) -> str:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", **env_changes)
    prog = ("import jax\nfrom hybrid_jax.config import default_config\n"
            "from hybrid_jax.parallel.distributed import set_cpu_devices\n" + code + "\nprint(jax.device_count())")
    r = subprocess.run([sys.executable, "-c", prog], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_count_reaches_a_fresh_backend():
    set_n, seen = _fresh_device_count("print(set_cpu_devices(default_config(), '3'))")
    assert set_n == seen == "3"


def test_auto_leaves_an_explicit_xla_flag_alone():
    set_n, seen = _fresh_device_count("print(set_cpu_devices(default_config(), 'auto'))",
                                      XLA_FLAGS="--xla_force_host_platform_device_count=5")
    assert (set_n, seen) == ("0", "5")


def test_auto_after_the_backend_started_changes_nothing():
    code = "jax.devices()\nprint(set_cpu_devices(default_config(), 'auto'))"
    assert _fresh_device_count(code) == ["0", "1"]
