import glob
import os
import re

import pytest

from hybrid_jax.cli import ArgumentParser
from hybrid_jax.config import ConfigError, model_config, model_from_dict, validate_model
from hybrid_jax.storage.hf.config import hf_config_from_model, model_config_from_hf
from train_helpers import load_config as load

ROOT = os.path.dirname(os.path.dirname(__file__))


@pytest.mark.parametrize("name", ["toy", "blt_1b_hf"])
def test_config_files_validate_and_map_to_hf_and_back(name):
    cfg = load(name).model
    validate_model(cfg)
    hf = hf_config_from_model(cfg)
    back = model_config_from_hf(hf)
    assert hf_config_from_model(back) == hf
    for key in ("hash", "vocab_size", "cross_attn_k"):
        assert back[key] == cfg[key]
    for key in ("mode", "threshold", "patch_size", "max_patch_length"):  # max_patches has no HF field
        assert back.patching[key] == cfg.patching[key]
    assert back.global_transformer.d_model == cfg.global_transformer.d_model


def test_hf_defaults_fill_missing_fields():
    cfg = model_config_from_hf({"model_type": "blt"})
    assert cfg.global_transformer.d_model == 2048 and cfg.global_transformer.layers == 25
    assert cfg.local_encoder.d_ff == int(8 * 1024 / 3) and cfg.local_decoder.d_ff == 2816
    assert cfg.entropy_model.rope_theta == 10000.0 and cfg.entropy_model.window == 512
    assert cfg.hash.vocab == 500002 and cfg.patching.max_patch_length == 0


def test_strict_updates():
    with pytest.raises(ConfigError, match="unknown config key 'model.global_transformer.wings'"):
        model_from_dict({"global_transformer": {"wings": 2}})
    with pytest.raises(ConfigError, match="expects int"):
        model_from_dict({"global_transformer": {"layers": "four"}})
    assert model_from_dict({"hash": {"group_sizes": [3, 4]}}).hash.group_sizes == (3, 4)


@pytest.mark.parametrize("edit,msg", [
    (lambda c: c.global_transformer.update(heads=5), "divisible by heads"),
    (lambda c: c.global_transformer.update(kv_heads=3), "divisible by kv_heads"),
    (lambda c: c.local_decoder.update(d_model=64, heads=4), "must equal model.local_encoder.d_model"),
    (lambda c: c.update(vocab_size=100), r"model\.vocab_size must be an int in \[260, 32767\], got 100"),
    (lambda c: c.patching.update(mode="bpe"), "unknown patching mode"),
])
def test_validation_messages(edit, msg):
    cfg = model_config()
    edit(cfg)
    with pytest.raises(ConfigError, match=msg):
        validate_model(cfg)


def test_export_refuses_what_hf_cannot_express():
    cfg = model_config()
    cfg.global_transformer.window = 8
    with pytest.raises(ConfigError, match="no sliding window in the global transformer"):
        hf_config_from_model(cfg)
    cfg = model_config()
    cfg.local_decoder.window = 7
    with pytest.raises(ConfigError, match="one local window"):
        hf_config_from_model(cfg)


@pytest.mark.parametrize("path,msg", [
    ("configs/no_such_config.py", r"^--config configs/no_such_config.py: no such file$"),
    ("{returns}", "get_config\\(\\) returned dict, not a ConfigDict"),
    ("{raising}", r"^--config .*raising.py: RuntimeError: broken config$"),
])
def test_config_file_errors_are_one_line(tmp_path, path, msg):
    raising = tmp_path / "raising.py"
    raising.write_text("def get_config():\n    raise RuntimeError('broken config')\n")
    returns = tmp_path / "returns.py"
    returns.write_text("def get_config():\n    return {'a': 1}\n")
    with pytest.raises(ConfigError, match=msg) as err:
        config_parser().parse_with_config(["--config", path.format(raising=raising, returns=returns)])
    assert "\n" not in str(err.value)


def config_parser():
    p = ArgumentParser(prog="prog")
    p.add_config()
    return p


@pytest.mark.parametrize("override,msg", [
    ("--config.train.stepz=3", r"^unknown config key 'train.stepz': train has no 'stepz' \(did you mean 'train.steps'\?\)$"),
    ("--config.trian.steps=3", r"^unknown config key 'trian.steps': the config has no 'trian'"),
    ("--config.train.steps=many", r"^config key 'train.steps' expects int, got 'many'$"),
    ("--config.checkpoint.async_save=maybe", "expects bool, got 'maybe'"),
    ("--config.train=3", "is a group of keys"),
    ("--config.train.steps", r"needs a value"),
])
def test_override_errors_name_the_key(override, msg):
    with pytest.raises(ConfigError, match=msg):
        config_parser().parse_with_config(["--config", os.path.join(ROOT, "configs", "tiny.py"), override])


def test_overrides_parse_by_the_keys_type():
    _, cfg = config_parser().parse_with_config([
        "--config", os.path.join(ROOT, "configs", "tiny.py"), "--config.train.steps=7", "--config.train.lr", "1e-3",
        "--config.model.hash.group_sizes=3,4", "--config.checkpoint.async_save=False",
        "--config.model.patching.threshold_add=0.25", "--config.data.train=a b.txt"])
    assert cfg.train.steps == 7 and cfg.train.lr == 1e-3 and cfg.model.hash.group_sizes == (3, 4)
    assert cfg.checkpoint.async_save is False and cfg.model.patching.threshold_add == 0.25
    assert cfg.data.train == "a b.txt"
    _, cfg = config_parser().parse_with_config(["--config", os.path.join(ROOT, "configs", "tiny.py"),
                                                "--config.model.patching.threshold_add=None"])
    assert cfg.model.patching.threshold_add is None


def every_config():
    """The default tree with a coconut node, and every config file's tree."""
    from hybrid_jax.config import coconut_config, default_config
    cfg = default_config()
    cfg.coconut = coconut_config()
    names = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "configs", "*.py")))
    return [("default+coconut", cfg)] + [(n, load(n)) for n in names if not n.startswith("_")]


def test_every_config_value_has_a_domain_and_the_shipped_configs_are_inside():
    from hybrid_jax.config.validation import check_domains, domain_of, leaves
    for name, cfg in every_config():
        missing = [path for path, _ in leaves(cfg) if domain_of(path) is None]
        assert not missing, (name, missing)
        check_domains(cfg)  # every shipped value is inside its domain


@pytest.mark.parametrize("seed", range(3))
def test_every_value_outside_its_domain_is_one_line_naming_the_key(seed):
    """Each leaf in turn set to a value outside its domain (in random order, over random shipped configs):
    `validate` refuses it with one line that names the key; a value inside passes."""
    import random
    from hybrid_jax.config import validate
    from hybrid_jax.config.validation import domain_of, leaves
    rng = random.Random(seed)
    configs = every_config()
    base_name, base = configs[0]
    paths = [p for p, _ in leaves(base) if domain_of(p).bad is not None]
    rng.shuffle(paths)
    checked = 0
    for path in paths:
        name, cfg = rng.choice(configs)
        cfg = cfg.copy_and_resolve_references()
        if "coconut" not in cfg and path.startswith("coconut."):
            cfg.coconut = base.coconut.copy_and_resolve_references()
        node, *keys = [cfg, *path.split(".")]
        for key in keys[:-1]:
            node = node[key]
        with node.ignore_type():
            node[keys[-1]] = domain_of(path).bad
        with pytest.raises(ConfigError) as err:
            validate(cfg)
        msg = str(err.value)
        assert "\n" not in msg and path.split(".")[-1] in msg, (name, path, msg)
        checked += 1
    assert checked >= 60


def test_training_values_out_of_range_are_refused():
    from hybrid_jax.config import default_config, validate
    for key, value, msg in [("lr", 0.0, "train.lr must be a number > 0"),
                            ("weight_decay", -1e-3, "train.weight_decay must be a number >= 0"),
                            ("warmup_steps", 1001, "train.warmup_steps=1001 must be <= train.steps=1000"),
                            ("b2", 1.0, "train.b2 must be a number in [0, 1)"),
                            ("clip_norm", 0.0, "train.clip_norm must be a number > 0")]:
        cfg = default_config()
        cfg.train[key] = value
        with pytest.raises(ConfigError, match=re.escape(msg)):
            validate(cfg)


@pytest.mark.parametrize("content,msg", [
    ("just some words, not python\n", "not a Python config file (SyntaxError"),
    ("x = 1\n", "defines no get_config()"),
    ("", "defines no get_config()"),
])
def test_config_file_that_is_not_a_python_config_is_one_line(tmp_path, content, msg):
    path = tmp_path / "notes.txt"
    path.write_text(content)
    with pytest.raises(ConfigError, match=re.escape(msg)) as err:
        config_parser().parse_with_config(["--config", str(path)])
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="a directory, not a Python config file"):
        config_parser().parse_with_config(["--config", str(tmp_path)])
