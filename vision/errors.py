"""Errors of the vision stage that are meant for the user as they are."""

from __future__ import annotations


class ModelFilesMissingError(FileNotFoundError):
    """Weights or a label file are not where they should be; the message says what to put where."""


class UnknownBackboneError(ValueError):
    """A backbone or runtime name that is not in the registry."""


class CheckpointFormatError(ValueError):
    """A checkpoint whose tensors do not fit the architecture or the label file."""
