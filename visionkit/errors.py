"""User-facing errors: each carries a one-line message that the tools print without a traceback."""


class VisionkitError(Exception):
    """Base class of errors caused by user input (files, configs, checkpoints). Exit code 1."""

    exit_code = 1


class ConfigError(VisionkitError):
    """A config file or override is wrong: unknown key, wrong type, missing file. Exit code 2."""

    exit_code = 2


class DataError(VisionkitError):
    """A dataset is missing, empty, malformed, or holds an unreadable image."""


class CheckpointError(VisionkitError):
    """A checkpoint is missing, corrupt, or belongs to another model."""
