"""The datasets' one error type (its own module: every reader raises it)."""


class DataError(ValueError):
    """A data file that cannot be used: the message says why, in one line."""
