"""Errors that the CLI turns into one clear line and exit code 2."""


class OplatError(Exception):
    """Base class: a user-facing problem with the input, never a bug."""


class ModelLoadError(OplatError):
    """The model file is missing, corrupt, truncated or of an unknown format."""


class ShapeError(OplatError):
    """A tensor shape cannot be determined (dynamic dim without --input-shape, ...)."""


class ProfileError(OplatError):
    """A device profile is unknown, missing files or of an incompatible schema."""


class DatasetError(OplatError):
    """A dataset file is missing columns or holds malformed rows."""
