"""The library's own exception types. Only the CLI turns them into exit codes."""

from __future__ import annotations

from pathlib import Path


class MangacolorError(Exception):
    """Base class for every expected failure (bad input, missing weights, bad checkpoint)."""


class FileError(MangacolorError):
    """A failure tied to one file: the message is ``"<path>: <reason>"`` on one line."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class ImageReadError(FileError):
    """An image file could not be read or decoded."""


class ImageWriteError(FileError):
    """An image file could not be written."""


class CheckpointError(FileError):
    """A checkpoint is missing, truncated, of an unknown architecture or otherwise unusable."""


class WeightsNotFoundError(MangacolorError):
    """Pretrained weights that a feature needs were asked for but are not on disk."""
