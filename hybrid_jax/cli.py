"""Shared command-line plumbing: expected failures become one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import sys

EXPECTED_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, KeyError,
                   ImportError, OSError, FloatingPointError)


def run(main, argv=None) -> int:
    """Call `main(argv)`; print `error: ...` and return 2 for an expected error."""
    from absl import logging as absl_logging

    # Orbax logs warnings through absl for conditions we report ourselves in one line.
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        return main(argv) or 0
    except EXPECTED_ERRORS as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {msg}", file=sys.stderr)
        return 2


def parse_config_flags(argv, define=None):
    """absl FlagValues holding `--config FILE` (a `get_config()` file, `--config.a.b=v` overrides) plus
    whatever `define(flag_values)` adds. Usage errors and unknown config keys raise ConfigError."""
    from absl import flags
    from ml_collections import config_flags

    from hybrid_jax.config import ConfigError

    argv = list(argv)
    fv = flags.FlagValues()
    # sys_argv: which overrides to accept is read from these arguments, not from sys.argv.
    config_flags.DEFINE_config_file("config", None, "Python config file (get_config()).", flag_values=fv,
                                    lock_config=True, sys_argv=argv)
    if define is not None:
        define(fv)
    try:
        fv(argv)
    except flags.Error as e:
        raise ConfigError(_one_line(str(e))) from None
    except (AttributeError, KeyError) as e:  # config_flags: an override of a key the config lacks
        key = str(e).strip("\"' ").split("'")[0]
        paths = [a[2:].split("=")[0] for a in argv if a.startswith("--config.")]
        bad = next((p for p in paths if key in p.split(".")), key)
        raise ConfigError(f"unknown config key {bad!r}") from None
    except Exception as e:  # noqa: BLE001 (the config file's get_config() raised)
        raise ConfigError(f"--config: get_config() raised {type(e).__name__}: {e}") from None
    if fv.config is None:
        raise ConfigError("--config is required (e.g. --config configs/toy.py)")
    try:  # a file that failed to load is a placeholder object that raises on first use
        fv.config.keys()
    except Exception as e:  # noqa: BLE001 (whatever the config file raised)
        raise ConfigError(f"cannot load --config: {str(e).strip().splitlines()[-1].strip()}") from None
    return fv


def _one_line(message: str) -> str:
    """The first line of a flag error, with its innermost cause when the rest is a traceback or a list
    of attempted paths (e.g. `... config file: TypeError: get_config() takes 0 positional arguments`)."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    first, last = lines[0], lines[-1]
    return first if len(lines) == 1 else f"{first.rstrip(':')}: {last}"


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors raise ValueError, so `run` reports them in one line with exit code 2."""

    def error(self, message):
        raise ValueError(message)
