"""The errors a user sees as one line, not a traceback: each names the file, line or field at fault.

They live here, in a module that imports nothing, so that the command line can catch them without importing
torch (``rnnmt translate --engine numpy`` runs without it).
"""


class ConfigError(ValueError):
    """A config file or override names an unknown field, a wrong type or a value out of range."""


class DataError(ValueError):
    """A corpus file is missing, misaligned or not valid UTF-8."""


class ModelFolderError(FileNotFoundError):
    """A model folder is missing, lacks one of its parts, or holds a part that cannot be read."""


class TrainingError(RuntimeError):
    """Training cannot start or continue as asked."""


class UnsupportedModel(ValueError):
    """The model uses a setting that the NumPy reference does not implement."""


USER_ERRORS = (ConfigError, DataError, ModelFolderError, TrainingError, UnsupportedModel, FileNotFoundError)
