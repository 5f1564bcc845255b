"""Config files and their overrides: `load_config(FILE)` runs a Python config file's `get_config()`,
`split_overrides` reads `--config.KEY.SUBKEY=VALUE` arguments, and `apply_override` sets one of them,
parsed as the key's type. Every mistake is a one-line `ConfigError` that names the key or the file."""

from __future__ import annotations

import ast
import difflib
import importlib.machinery
import importlib.util
import os

import ml_collections

from hybrid_jax.config.defaults import model_config
from hybrid_jax.config.validation import validate_model
from hybrid_jax.errors import ConfigError, first_line


def load_config(path: str) -> ml_collections.ConfigDict:
    """The ConfigDict that `get_config()` of the Python file `path` returns; ConfigError otherwise."""
    if os.path.isdir(path):
        raise ConfigError(f"--config {path}: a directory, not a Python config file")
    if not os.path.isfile(path):
        raise ConfigError(f"--config {path}: no such file")
    name = "hybrid_jax_config_" + "".join(c if c.isalnum() else "_" for c in os.path.basename(path))
    # Any file name: a config need not end in .py, and spec_from_file_location guesses by the suffix.
    loader = importlib.machinery.SourceFileLoader(name, path)
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    try:
        loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 (whatever the file raised, a SyntaxError included)
        raise ConfigError(f"--config {path}: not a Python config file ({type(e).__name__}: "
                          f"{first_line(e)})") from None
    if not callable(getattr(module, "get_config", None)):
        raise ConfigError(f"--config {path}: defines no get_config() (a config file is Python whose "
                          "get_config() returns a ConfigDict)")
    try:
        cfg = module.get_config()
    except Exception as e:  # noqa: BLE001 (whatever the config file raised)
        raise ConfigError(f"--config {path}: {type(e).__name__}: {first_line(e)}") from None
    if not isinstance(cfg, ml_collections.ConfigDict):
        raise ConfigError(f"--config {path}: get_config() returned {type(cfg).__name__}, not a ConfigDict")
    return cfg


def split_overrides(rest: list[str]) -> list[tuple[str, str]]:
    """(dotted key, text) of each `--config.KEY=VALUE` (or `--config.KEY VALUE`) in `rest`; ValueError on
    any other argument."""
    overrides, i = [], 0
    while i < len(rest):
        arg = rest[i]
        if not arg.startswith("--config."):
            raise ValueError(f"unrecognized arguments: {' '.join(rest[i:])}")
        key, eq, value = arg[len("--config."):].partition("=")
        if not eq:
            if i + 1 == len(rest):
                raise ConfigError(f"{arg} needs a value ({arg}=VALUE)")
            i, value = i + 1, rest[i + 1]
        overrides.append((key, value))
        i += 1
    return overrides


def _node_and_leaf(cfg, path: str):
    """(parent node, leaf key) of the dotted `path` in `cfg`; ConfigError naming an unknown key."""
    node, keys = cfg, path.split(".")
    for i, key in enumerate(keys):
        if not isinstance(node, ml_collections.ConfigDict) or key not in node:
            here = ".".join(keys[:i]) or "the config"
            close = difflib.get_close_matches(key, list(node.keys()) if isinstance(node, ml_collections.ConfigDict)
                                              else [], n=1)
            hint = f" (did you mean {'.'.join(keys[:i] + close)!r}?)" if close else ""
            raise ConfigError(f"unknown config key {path!r}: {here} has no {key!r}{hint}")
        if i < len(keys) - 1:
            node = node[key]
    if isinstance(node[keys[-1]], ml_collections.ConfigDict):
        raise ConfigError(f"config key {path!r} is a group of keys; set one of them (e.g. --config.{path}."
                          f"{next(iter(node[keys[-1]].keys()), 'x')}=...)")
    return node, keys[-1]


def _parse_value(path: str, kind: type, text: str):
    """`text` from the command line as a value of `kind` (the key's type in the config)."""
    def bad():
        return ConfigError(f"config key {path!r} expects {kind.__name__}, got {text!r}")

    if kind is bool:
        word = text.strip().lower()
        if word not in ("true", "false", "1", "0", "yes", "no"):
            raise bad()
        return word in ("true", "1", "yes")
    if kind is str:
        return text
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise bad() from None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if kind is object:  # a key without a type yet (None): keep the text
            return text
        raise bad() from None
    if kind in (tuple, list):
        return tuple(value) if isinstance(value, (tuple, list)) else (value,)
    return value


def apply_override(cfg, path: str, text: str) -> None:
    """Set `--config.PATH=TEXT` into `cfg`, parsed by the type the key has there."""
    node, leaf = _node_and_leaf(cfg, path)
    ref = node._fields.get(leaf)  # a typed placeholder (None until set) keeps its type here
    kind = ref.get_type() if isinstance(ref, ml_collections.FieldReference) else type(node[leaf])
    if isinstance(ref, ml_collections.FieldReference) and text.strip().lower() in ("none", "null"):
        value = None
    elif node[leaf] is None and not isinstance(ref, ml_collections.FieldReference):
        value = _parse_value(path, object, text)
    else:
        value = _parse_value(path, kind, text)
    tree = value
    for key in reversed(path.split(".")):
        tree = {key: tree}
    update_strict(cfg, tree)  # its messages name the full dotted path


def update_strict(cfg: ml_collections.ConfigDict, values: dict, prefix: str = "") -> None:
    """Set `values` (nested dict) into `cfg`; an unknown key or wrong type raises ConfigError."""
    for key, value in values.items():
        path = f"{prefix}{key}"
        if key not in cfg:
            raise ConfigError(f"unknown config key {path!r}")
        current = cfg[key]
        if isinstance(current, ml_collections.ConfigDict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {path!r} must be a mapping, got {type(value).__name__}")
            update_strict(current, value, path + ".")
            continue
        if isinstance(current, tuple) and isinstance(value, list):
            value = tuple(value)
        if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        # A typed placeholder (threshold_add) takes None back.
        nullable = value is None and isinstance(cfg._fields.get(key), ml_collections.FieldReference)
        if current is not None and not nullable and type(value) is not type(current):
            raise ConfigError(f"config key {path!r} expects {type(current).__name__}, "
                              f"got {type(value).__name__} ({value!r})")
        try:
            cfg[key] = value
        except TypeError as e:  # a typed placeholder (None by default) refuses other types
            raise ConfigError(f"config key {path!r}: {e}") from None


def model_from_dict(values: dict) -> ml_collections.ConfigDict:
    """A validated model config: defaults updated strictly with `values`."""
    cfg = model_config()
    update_strict(cfg, values, "model.")
    validate_model(cfg)
    return cfg
