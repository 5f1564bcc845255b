"""Every command the guides show runs: each `hybrid-jax COMMAND [SUBCOMMAND]` and `python -m MODULE
[COMMAND]` in README.md and docs/*.md (not the dated logs in docs/results/) answers `--help` with exit 0
and a usage line, as a process of its own, the way a reader would type it."""

import concurrent.futures
import glob
import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUIDES = [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]
# A command, then an optional subcommand word (convert from-hf, evaluate bpb, bench train).
DOCUMENTED = re.compile(r"(?:hybrid-jax|python3? -m (?P<module>[A-Za-z_][\w.]*))"
                        r"(?P<words>(?: [a-z][a-z_-]*){0,2})")
NOT_OURS = ("venv", "pytest", "pip")


def documented_commands() -> set[tuple[str, ...]]:
    """(module, words...) of every documented command line; `hybrid-jax X` counts as `hybrid_jax X`."""
    found = set()
    for path in GUIDES:
        for m in DOCUMENTED.finditer(open(path).read()):
            module = m["module"] or "hybrid_jax"
            if module in NOT_OURS:
                continue
            words = m["words"].split()
            if module == "hybrid_jax" and not words:
                continue  # `python -m hybrid_jax COMMAND` written as a pattern
            # The leading words that are commands or subcommands (later ones are values such as paths).
            found.add((module, *words[:2 if module == "hybrid_jax" else 1]))
    return found


def test_the_guides_name_every_command():
    from hybrid_jax.cli.commands import COMMANDS

    named = {c[1] for c in documented_commands() if c[0] == "hybrid_jax" and len(c) > 1}
    assert set(COMMANDS) <= named, f"commands no guide shows: {sorted(set(COMMANDS) - named)}"


def _help(command: tuple[str, ...]) -> tuple[tuple[str, ...], subprocess.CompletedProcess]:
    module, *words = command
    for n in range(len(words), -1, -1):  # drop trailing words that are values, not subcommands
        r = subprocess.run([sys.executable, "-m", module, *words[:n], "--help"], cwd=ROOT, capture_output=True,
                           text=True, timeout=300, env=dict(os.environ, PYTHONPATH=ROOT))
        if r.returncode == 0 or n == 0 or "invalid choice" not in r.stderr + r.stdout:
            return (module, *words[:n]), r
    return command, r


def test_every_documented_command_answers_help():
    commands = sorted(documented_commands())
    assert len(commands) >= 15, commands
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(_help, commands))
    failed = [(" ".join(c), r.returncode, (r.stderr or r.stdout).strip()[-300:]) for c, r in results
              if r.returncode != 0 or "usage:" not in r.stdout]
    assert not failed, failed
