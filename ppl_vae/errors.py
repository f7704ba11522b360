"""Error types raised by ppl_vae.

Every error the library raises on purpose derives from :class:`PplVaeError`,
so the command line can print its one-line message instead of a traceback.
Messages name the problem and the fix.
"""

from __future__ import annotations


class PplVaeError(Exception):
    """Base class of every error ppl_vae raises on purpose."""


class DataError(PplVaeError, ValueError):
    """A data set or an input array cannot be used (missing, malformed, wrong shape or range)."""


class ConfigError(PplVaeError, ValueError):
    """A configuration value is out of its allowed range."""


class CheckpointError(PplVaeError):
    """A checkpoint is missing, corrupt, unsafe or belongs to another model."""


class TrainingDivergedError(PplVaeError):
    """The training loss or its gradient became non-finite."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on SIGINT or SIGTERM, after saving a checkpoint where it could.

    A ``KeyboardInterrupt``, so code that stops on Ctrl-C still stops; the
    message says what was saved and how to resume.

    Attributes
    ----------
    signal_number : int
        The signal that stopped training.
    """

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number
