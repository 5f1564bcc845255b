"""The one parser convention of every command: usage errors in one line (exit code 2), each option's
default in `--help` with an example command line, and `--config FILE` with `--config.KEY=VALUE`."""

from __future__ import annotations

import argparse

from hybrid_jax.config import apply_override, load_config, split_overrides
from hybrid_jax.errors import ConfigError


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
        args, rest = self.parse_known_args(argv)
        overrides = split_overrides(rest)
        cfg = load_config(args.config) if getattr(args, "config", None) else None
        if overrides and cfg is None:
            raise ConfigError("--config.KEY=VALUE overrides need --config FILE")
        for key, value in overrides:
            apply_override(cfg, key, value)
        args.config_overrides = overrides
        return args, cfg
