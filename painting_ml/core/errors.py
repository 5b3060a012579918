"""The few narrow exceptions painting_ml raises on purpose.

Each message names the offending file/row/parameter and says how to fix it. The CLI prints
``PaintingMLError`` as one line and exits non-zero; anything else is a bug and keeps its traceback.
"""


class PaintingMLError(Exception):
    """Base class for user-facing errors."""


class ConfigError(PaintingMLError, ValueError):
    """A run configuration, Param, CLI flag or environment variable is invalid."""


class DataError(PaintingMLError):
    """Input data (CSV, image folder) cannot be used as given."""


class DataQualityError(DataError):
    """A dataset version crossed a failing level of the data-quality gate; a retry cannot help."""


class SelectionError(PaintingMLError):
    """The artist selection asked for cannot be met by the usable paintings."""


class DatabaseError(PaintingMLError):
    """The painting database cannot be reached or started."""
