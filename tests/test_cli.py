"""One command-line convention: `hybrid-jax COMMAND` (and `python -m hybrid_jax COMMAND`), `--help` with
every option's default and an example, one-line errors with exit code 2."""

import os
import subprocess
import sys

import pytest

from hybrid_jax import cli

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELP = [[name] for name in cli.COMMANDS] + [["evaluate", "bpb"], ["evaluate", "qa"], ["convert", "from-hf"],
                                             ["convert", "to-hf"]]


# In-process, runpy warns about modules this test session imported before; the console script does not.
@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
@pytest.mark.parametrize("command", HELP, ids=" ".join)
def test_every_command_has_help_with_defaults_and_an_example(command, capsys):
    assert cli.main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: hybrid-jax {' '.join(command)}")
    assert "\nexample:\n  hybrid-jax " in out
    if command not in (["evaluate"], ["convert"]):  # those two only list their subcommands
        assert "(default:" in out


def test_top_level_lists_commands_and_refuses_unknown_ones(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in cli.COMMANDS)
    assert cli.main(["trian"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown command 'trian'")
    assert cli.main([]) == 2


def test_console_script_and_module_run_a_command(tmp_path):
    """`python -m hybrid_jax estimate ...` runs the command with its argument parsing."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-m", "hybrid_jax", "estimate", "--config",
                        os.path.join(ROOT, "configs", "tiny.py"), "--config.train.stepz=3"],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: unknown config key 'train.stepz': train has no 'stepz' "
                                "(did you mean 'train.steps'?)")
    r = subprocess.run([sys.executable, "-m", "hybrid_jax", "estimate", "--config",
                        os.path.join(ROOT, "configs", "tiny.py"), "--json"], capture_output=True, text=True,
                       env=env, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip().startswith("{"), r.stderr


def test_progress_is_a_line_per_log_off_a_terminal_and_a_bar_on_one():
    import io
    import re

    from hybrid_jax.training.metrics import Progress

    log = io.StringIO()
    p = Progress(total=1000, enabled=True, stream=log)
    p.update(10, 2.34567, 5123.4, first_step=0)
    p.update(20, 2.1, 5200.0, first_step=0)
    p.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and re.fullmatch(r"step 10/1000  loss 2\.3457  5,123 bytes/s  ETA \d+m\d\ds", lines[0])

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    p = Progress(total=50, enabled=True, stream=term)
    p.update(25, 1.5, 900.0, first_step=0)
    p.close()
    assert "25/50" in term.getvalue() and "loss 1.5000" in term.getvalue()
    quiet = io.StringIO()
    Progress(total=5, enabled=False, stream=quiet).update(1, 1.0, 1.0, 0)
    assert quiet.getvalue() == ""
