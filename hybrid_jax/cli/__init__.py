"""The commands: one thin module each (`train`, `generate`, ...), the `hybrid-jax` dispatcher
(`commands`), the shared parser convention (`parser`) and the error runner (`runner`). The library
below never imports this package."""

from hybrid_jax.cli.commands import COMMANDS, main
from hybrid_jax.cli.parser import ArgumentParser
from hybrid_jax.cli.runner import run

__all__ = ["COMMANDS", "ArgumentParser", "main", "run"]
