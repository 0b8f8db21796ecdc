"""User-facing errors: each carries a one-line message that the tools print without a traceback."""


class VisionkitError(Exception):
    """Base class of errors caused by user input (files, configs, checkpoints). Exit code 1."""

    exit_code = 1


class ConfigError(VisionkitError):
    """A config file or override is wrong: unknown key, wrong type, missing file. Exit code 2."""

    exit_code = 2


class DataError(VisionkitError):
    """A dataset is missing, empty, malformed, or holds an unreadable image. Exit code 2."""

    exit_code = 2


class CheckpointError(VisionkitError):
    """A checkpoint is missing, corrupt, refused (pickled objects), or belongs to another model.
    Exit code 2."""

    exit_code = 2


class UnreadableImageError(DataError):
    """One file of a dataset sample (its image, or label map) is missing, empty, truncated or
    undecodable. ``path`` names it (None when the error was rebuilt from its message alone, as a
    DataLoader worker's errors are)."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


def shown(value: object, limit: int = 400) -> str:
    """A user-given value (a path, a source) as one-line messages show it: as it is when
    printable, else its ``repr`` (a newline in a file name shows as ``\\n``); cut to ``limit``
    characters with ``...``."""
    text = str(value)
    text = text if text.isprintable() else repr(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
