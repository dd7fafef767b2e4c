"""The project's exception types.

Every error a user can cause (a bad path, an undecodable image, a malformed file, a bad config value,
a wrong checkpoint) is raised as an :class:`IgfiqaError` (or a subclass) whose message names the file
or field and says what to do. The CLI prints these without a traceback and exits non-zero.
"""

from __future__ import annotations


class IgfiqaError(Exception):
    """Base class of all errors that a user can cause and fix."""


class ConfigError(IgfiqaError, ValueError):
    """A config value, preset name or command-line override is invalid."""


class DataError(IgfiqaError):
    """A dataset, list file, benchmark file or record is missing or malformed."""


class ImageDecodeError(DataError):
    """An image could not be decoded into an RGB array (empty, truncated, not an image, too large)."""


class CheckpointError(IgfiqaError):
    """A checkpoint or exported model is missing, corrupt, untrusted or of the wrong kind."""


class UnsafePickleError(DataError):
    """A pickle tried to load an object outside the allowed set (it may try to run code)."""


class OutputError(IgfiqaError):
    """An output file or folder cannot be written (no permission, read-only, disk full, a file where
    a folder is needed). What was written before stays valid."""


class SyntheticModelWarning(UserWarning):
    """A model trained only on synthetic faces scores photographs: its scores (and its 0-100
    percentile among synthetic faces) do not say how useful a photograph is for recognition.
    Filter it with ``warnings.filterwarnings("ignore", category=SyntheticModelWarning)``."""


class FailedItemsWarning(UserWarning):
    """Some items of a batch failed (unreadable, wrong size, no face): their scores are NaN (or
    their face list empty); the message names them with their reasons."""
