"""How every command ends: expected failures become one `error: ...` line on stderr and exit code 2."""

from __future__ import annotations

import logging
import os
import sys
import warnings

EXPECTED_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, KeyError,
                   ImportError, OSError, FloatingPointError)


def run(main, argv=None) -> int:
    """Call `main(argv)` (`argv` None: this process's command line, `sys.argv[1:]`); print `error: ...` and
    return 2 for an expected error."""
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
        argv = sys.argv[1:]
    try:
        return main(list(argv)) or 0
    except EXPECTED_ERRORS as e:
        print(f"error: {message(e)}", file=sys.stderr)
        return 2


def message(e: Exception) -> str:
    """`e` as the text of one error line; an OS error on a file as `PATH: what went wrong`."""
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return str(e)


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
