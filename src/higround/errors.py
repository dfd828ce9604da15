"""Exceptions the command line reports as one clear line (no traceback)."""


class HigroundError(Exception):
    """Base class of every user-facing error."""


class DataError(HigroundError, ValueError):
    """Bad input data: the message names the file, the record and what is wrong."""


class ConfigError(HigroundError, ValueError):
    """A configuration or checkpoint that does not fit the data or the model."""
