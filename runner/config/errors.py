"""Errors the runner reports as one line and a non-zero exit, without a traceback."""


class ConfigError(ValueError):
    """Values of the right type that do not fit together; the message names the keys and the fix."""


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN loss, a missing checkpoint); the message says what was kept."""


def require(ok: bool, message: str) -> None:
    """Raise ConfigError(message) unless ok: every layer's one-line check of a value."""
    if not ok:
        raise ConfigError(message)
