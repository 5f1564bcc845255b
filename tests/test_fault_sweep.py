"""Bad paths given to every command (`benchmarks/fault_sweep.py`'s cases, in-process): a directory where
a file is expected and the reverse, an empty file, a truncated config.json, a read-only workdir. Each is
exactly one `error:` line on stderr and exit code 2, and no file the command was given changes."""

import pytest

from benchmarks import fault_sweep
from hybrid_jax.cli.commands import command_main
from hybrid_jax.cli.runner import run

pytestmark = pytest.mark.integration


def test_every_bad_path_is_one_line_and_exit_2(tmp_path, capsys):
    inputs = fault_sweep.make_inputs(str(tmp_path / "in"))
    failures, skipped = [], []
    with fault_sweep.read_only(inputs["readonly"]) as ro:
        for name, (command, *argv) in fault_sweep.cases(inputs, str(tmp_path / "out")):
            if "read-only" in name and not ro:
                skipped.append(name)
                continue
            before = fault_sweep.snapshot(inputs)
            rc = run(command_main(command), argv)
            err = capsys.readouterr().err.strip().splitlines()
            changed = sorted(k for k, v in fault_sweep.snapshot(inputs).items()
                             if before.get(k) != v and not k.endswith("train.lock"))
            if rc != 2 or len(err) != 1 or not err[0].startswith("error: ") or changed:
                failures.append((name, rc, err[-3:], changed))
    assert not failures, failures
    assert len(skipped) <= 2
