"""Shared command-line plumbing: expected failures become one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

EXPECTED_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, KeyError,
                   ImportError, OSError, FloatingPointError)


def run(main, argv=None) -> int:
    """Call `main(argv)`; print `error: ...` and return 2 for an expected error."""
    from absl import logging as absl_logging

    # Orbax logs through absl warnings for conditions we report ourselves in one line, and errors (with
    # tracebacks, from its background threads) that it also raises: `run` reports those in one line.
    absl_logging.set_verbosity(absl_logging.FATAL)
    if argv is None:  # a whole process: the command line's
        sys.unraisablehook = _without_checkpoint_io_leftovers(sys.unraisablehook)
        logging.getLogger("asyncio").addFilter(_without_unretrieved_task_errors)
        # After a failed save, Orbax's write coroutines that never ran are collected at exit (nothing in
        # hybrid_jax itself uses asyncio).
        warnings.filterwarnings("ignore", r"coroutine '.*' was never awaited", RuntimeWarning)
    try:
        return main(argv) or 0
    except EXPECTED_ERRORS as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {msg}", file=sys.stderr)
        return 2


def _without_checkpoint_io_leftovers(hook):
    """`hook`, except for the leftovers of a failed checkpoint read or write, whose error `run` reports
    in one line: reads still pending in TensorStore's threads end on Orbax's closed event loop
    (`RuntimeError: Event loop is closed`), and Orbax's unfinished read coroutines raise their own
    error again when they are collected."""
    def quieter(unraisable):
        exc = unraisable.exc_value
        if isinstance(exc, RuntimeError) and "Event loop is closed" in str(exc):
            return
        code = getattr(unraisable.object, "cr_code", None)  # a coroutine closed before it finished
        if code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename:
            return
        hook(unraisable)
    return quieter


def _without_unretrieved_task_errors(record: logging.LogRecord) -> bool:
    """False for asyncio's `... exception was never retrieved` reports: when one read or write of a
    checkpoint fails (a damaged file, a full disk), Orbax raises that failure, which `run` reports in
    one line, and the sibling operations that failed too are only logged, with a traceback each, when
    their tasks are collected."""
    return not str(record.msg).partition("\n")[0].endswith("exception was never retrieved")


def load_config(path: str):
    """The ConfigDict that `get_config()` of the Python file `path` returns; ConfigError otherwise."""
    import importlib.util

    import ml_collections

    from hybrid_jax.config import ConfigError

    if not os.path.isfile(path):
        raise ConfigError(f"--config {path}: no such file")
    spec = importlib.util.spec_from_file_location(f"hybrid_jax_config_{os.path.basename(path)[:-3]}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        cfg = module.get_config()
    except Exception as e:  # noqa: BLE001 (whatever the config file raised)
        raise ConfigError(f"--config {path}: {type(e).__name__}: {e}") from None
    if not isinstance(cfg, ml_collections.ConfigDict):
        raise ConfigError(f"--config {path}: get_config() returned {type(cfg).__name__}, not a ConfigDict")
    return cfg


def _node_and_leaf(cfg, path: str):
    """(parent node, leaf key) of the dotted `path` in `cfg`; ConfigError naming an unknown key."""
    import difflib

    import ml_collections

    from hybrid_jax.config import ConfigError

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
    import ast

    from hybrid_jax.config import ConfigError

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
    import ml_collections

    from hybrid_jax.config import update_strict

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


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults after every option's help; descriptions and the example keep their line breaks."""


CONFIG_HELP = ("Python file whose get_config() returns the run's ConfigDict; set any key of it with "
               "--config.KEY.SUBKEY=VALUE (parsed as the key's type)")


class ArgumentParser(argparse.ArgumentParser):
    """argparse for every command: usage errors raise ValueError (so `run` reports them in one line with
    exit code 2), `--help` shows each option's default and an `example` command line, and
    `parse_with_config` adds `--config FILE` with `--config.a.b=v` overrides."""

    def __init__(self, *args, example: str | None = None, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        if example:
            kwargs["epilog"] = f"example:\n  {example}"
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise ValueError(message)

    def add_config(self, required: bool = True) -> None:
        self.add_argument("--config", required=required, metavar="FILE", help=CONFIG_HELP)

    def parse_with_config(self, argv):
        """(args, config or None): the options, and `--config`'s ConfigDict with every override applied
        (also kept, as (dotted key, text) pairs, in `args.config_overrides`)."""
        from hybrid_jax.config import ConfigError

        args, rest = self.parse_known_args(argv)
        overrides, i = [], 0
        while i < len(rest):
            arg = rest[i]
            if not arg.startswith("--config."):
                self.error(f"unrecognized arguments: {' '.join(rest[i:])}")
            key, eq, value = arg[len("--config."):].partition("=")
            if not eq:
                if i + 1 == len(rest):
                    raise ConfigError(f"{arg} needs a value ({arg}=VALUE)")
                i, value = i + 1, rest[i + 1]
            overrides.append((key, value))
            i += 1
        cfg = load_config(args.config) if getattr(args, "config", None) else None
        if overrides and cfg is None:
            raise ConfigError("--config.KEY=VALUE overrides need --config FILE")
        for key, value in overrides:
            apply_override(cfg, key, value)
        args.config_overrides = overrides
        return args, cfg


# `hybrid-jax NAME ...` runs the module as `python -m MODULE ...` does.
COMMANDS = {
    "train": ("hybrid_jax.cli.train", "train a BLT or a Coconut run; re-running resumes the workdir"),
    "generate": ("hybrid_jax.cli.generate", "generate bytes from a checkpoint (cached, streaming, sampling)"),
    "evaluate": ("hybrid_jax.cli.evaluate", "bits per byte on text, or answer accuracy on Coconut data"),
    "inspect": ("hybrid_jax.cli.inspect", "show how a model cuts a text into patches"),
    "convert": ("hybrid_jax.cli.convert", "Hugging Face BLT <-> hybrid_jax workdir"),
    "prepare": ("hybrid_jax.cli.prepare", "pack a corpus into uint16 shards read lazily (corpora larger than memory)"),
    "calibrate": ("hybrid_jax.cli.calibrate", "the entropy threshold for a target mean patch length"),
    "estimate": ("hybrid_jax.cli.estimate", "parameters, FLOPs and memory of a config, without allocating it"),
    "prosqa": ("hybrid_jax.cli.prosqa", "write ProsQA-style latent-reasoning data"),
    "launch": ("hybrid_jax.cli.launch", "N local processes of one multi-process training run"),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: hybrid-jax COMMAND [ARGS ...]   (hybrid-jax COMMAND --help: its options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "example:", "  hybrid-jax train --config configs/toy.py --workdir runs/toy"]
    return "\n".join(lines)


def main(argv=None) -> int:
    """The `hybrid-jax` console script: dispatch to the command's module."""
    import runpy

    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    sys.argv = [f"hybrid-jax {name}", *rest]
    try:
        runpy.run_module(COMMANDS[name][0], run_name="__main__", alter_sys=True)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0
