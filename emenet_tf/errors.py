"""Errors the package raises for bad user input (data, flags, files)."""


class DataError(ValueError):
    """Bad input data: the message names the file, the line number and the offending value."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None, value=None):
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f":{line}"
            where += ": "
        suffix = f" (value: {_plain(value)!r})" if value is not None else ""
        super().__init__(f"{where}{message}{suffix}")
        self.path, self.line, self.value = path, line, value


def _plain(value):
    """A value as a user reads it: numpy scalars as Python numbers (1, not np.int32(1)), in lists too."""
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return value.item()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class ConfigError(ValueError):
    """A bad flag or configuration value."""


class ExportError(ValueError):
    """An exported model misses its parity targets (or cannot be exported as the contract says)."""


class RunError(ValueError):
    """A run folder that cannot be used as asked: not a run, an unfinished member, unreadable weights."""


class TrainingError(RuntimeError):
    """Training cannot go on as configured (a non-finite loss, nothing worth keeping)."""


class WriteError(RunError):
    """A file that matters could not be written (disk full, no permission); names the path."""
