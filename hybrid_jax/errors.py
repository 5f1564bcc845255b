"""The library's error types. Each is a `ValueError` whose message is one line that names what was
wrong; the commands print it as `error: ...` and exit with code 2. The helpers below put a foreign exception
(Orbax's, TensorStore's, huggingface_hub's) into such a line."""


class ConfigError(ValueError):
    """A config value is missing, unknown, of the wrong type, outside its domain, or inconsistent."""


class CheckpointError(ValueError):
    """A checkpoint or workdir is missing, corrupt, incompatible or in use."""


class DataError(ValueError):
    """Data is missing, empty or unreadable."""


class ConvertError(ValueError):
    """A Hugging Face directory or an export target is unusable."""


class WorkdirInUse(OSError):
    """Another live `train` holds the workdir's lock."""


class WriteError(OSError):
    """A run's files could not be written (a full disk, a quota, a read-only mount, ...)."""


def first_line(e: BaseException) -> str:
    """The first line of `e`'s text (a library's message may run to a page)."""
    return (str(e).strip().splitlines() or [""])[0]


def innermost(e: BaseException) -> BaseException:
    """The exception at the root of `e`'s chain as Python prints it (`raise ... from None` cuts it)."""
    while True:
        inner = e.__cause__ if e.__cause__ is not None else None if e.__suppress_context__ else e.__context__
        if inner is None:
            return e
        e = inner


def error_text(e: BaseException) -> str:
    """`e` in a few words for one error line: its type and the first line of its text."""
    text = first_line(e.args[0] if isinstance(e, KeyError) and e.args else e)
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
