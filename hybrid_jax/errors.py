"""The library's error types. Each is a `ValueError` whose message is one line that names what was
wrong; the commands print it as `error: ...` and exit with code 2."""


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
