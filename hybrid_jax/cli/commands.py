"""The `hybrid-jax COMMAND ...` dispatcher (also `python -m hybrid_jax COMMAND ...`).

Every command is a module here with `main(argv: list[str]) -> int`, where `argv` holds the arguments
after the command's name (`runner.run` passes this process's `sys.argv[1:]` when it is given none)."""

from __future__ import annotations

import importlib
import sys

from hybrid_jax.cli.runner import run

COMMANDS = {
    "train": ("hybrid_jax.cli.train", "train a BLT or a Coconut run; re-running resumes the workdir"),
    "generate": ("hybrid_jax.cli.generate", "generate bytes from a checkpoint (cached, streaming, sampling)"),
    "evaluate": ("hybrid_jax.cli.evaluate", "bits per byte on text, or answer accuracy on Coconut data"),
    "lm-eval": ("hybrid_jax.cli.lm_eval", "lm-evaluation-harness tasks (ARC, HellaSwag, PIQA, ...) on a checkpoint"),
    "inspect": ("hybrid_jax.cli.inspect", "show how a model cuts a text into patches"),
    "convert": ("hybrid_jax.cli.convert", "Hugging Face BLT <-> hybrid_jax workdir"),
    "prepare": ("hybrid_jax.cli.prepare", "pack a corpus into uint16 shards read lazily (corpora larger than memory)"),
    "calibrate": ("hybrid_jax.cli.calibrate", "the entropy threshold for a target mean patch length"),
    "estimate": ("hybrid_jax.cli.estimate", "parameters, FLOPs and memory of a config, without allocating it"),
    "prosqa": ("hybrid_jax.cli.prosqa", "write ProsQA-style latent-reasoning data"),
    "launch": ("hybrid_jax.cli.launch", "N local processes of one multi-process training run"),
    "profile": ("hybrid_jax.cli.profile", "where a profiled train step's time went"),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: hybrid-jax COMMAND [ARGS ...]   (hybrid-jax COMMAND --help: its options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "example:", "  hybrid-jax train --config configs/toy.py --workdir runs/toy"]
    return "\n".join(lines)


def command_main(name: str):
    """The `main(argv)` of the command `name`."""
    return importlib.import_module(COMMANDS[name][0]).main


def main(argv: list[str] | None = None) -> int:
    """The `hybrid-jax` console script: run the command's `main` with the arguments after its name."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    sys.argv = [f"hybrid-jax {name}", *rest]  # what a command's own messages and `run` read
    try:
        return run(command_main(name))
    except SystemExit as e:  # argparse's --help
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
