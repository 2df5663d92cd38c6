"""Errors that the command line prints as one clear message (no traceback)."""


class MangoLiteError(Exception):
    """Base class for user-facing errors: the message names what was expected and what came."""


class DataError(MangoLiteError, ValueError):
    """A dataset folder, file or value is not what the loader expects (the message names the file)."""


class TrainingError(MangoLiteError, RuntimeError):
    """Training cannot go on (for instance a non-finite loss); the last good checkpoint is kept."""
