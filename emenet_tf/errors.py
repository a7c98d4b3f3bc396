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
        suffix = f" (value: {value!r})" if value is not None else ""
        super().__init__(f"{where}{message}{suffix}")
        self.path, self.line, self.value = path, line, value


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
