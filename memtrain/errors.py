"""The one exception type users see: a message that says what is wrong and what to do."""


class MemtrainError(Exception):
    """A user-facing error. The CLI prints its message on one line and exits non-zero."""


class InputError(MemtrainError):
    """Bad input data: the message names the file and what is wrong with it."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(MemtrainError):
    """A configuration value that cannot work."""
