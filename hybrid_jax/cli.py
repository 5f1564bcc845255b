"""Shared command-line plumbing: expected failures become one line on stderr and exit code 2."""

from __future__ import annotations

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
