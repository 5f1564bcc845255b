"""How every command ends: expected failures become one `error: ...` line on stderr and exit code 2."""

from __future__ import annotations

import sys

EXPECTED_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, KeyError,
                   ImportError, OSError, FloatingPointError)


def run(main, argv=None) -> int:
    """Call `main(argv)` (`argv` None: this process's command line, `sys.argv[1:]`); print `error: ...` and
    return 2 for an expected error."""
    from absl import logging as absl_logging

    # Orbax logs warnings through absl for conditions we report ourselves in one line.
    absl_logging.set_verbosity(absl_logging.ERROR)
    if argv is None:  # a whole process: the command line's
        sys.unraisablehook = _without_closed_loop_reports(sys.unraisablehook)
        argv = sys.argv[1:]
    try:
        return main(list(argv)) or 0
    except EXPECTED_ERRORS as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {msg}", file=sys.stderr)
        return 2


def _without_closed_loop_reports(hook):
    """`hook`, except for `RuntimeError: Event loop is closed`: after a failed read of a damaged
    checkpoint, reads still pending in TensorStore's threads end on Orbax's closed event loop, and the
    one-line error must stay the only line."""
    def quieter(unraisable):
        if isinstance(unraisable.exc_value, RuntimeError) and "Event loop is closed" in str(unraisable.exc_value):
            return
        hook(unraisable)
    return quieter
