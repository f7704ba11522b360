"""Error types raised by ppl_vae.

Every error the library raises on purpose derives from :class:`PplVaeError`,
so the command line can print its one-line message instead of a traceback.
Messages name the problem and the fix.
"""

from __future__ import annotations


class PplVaeError(Exception):
    """Base class of every error ppl_vae raises on purpose."""


class DataError(PplVaeError, ValueError):
    """A data set or an input array cannot be used as given.

    Missing or malformed files; tensors of the wrong type, shape, dtype or
    range, with NaN, or on another device than the model.
    """


class ConfigError(PplVaeError, ValueError):
    """A setting is unknown or out of its allowed range.

    Also the name or an option of a data set, a binarization mode, a device
    name: anything the user chooses rather than the data handed in.
    """


class CheckpointError(PplVaeError):
    """A checkpoint is missing, corrupt, unsafe or belongs to another model."""


class TrainingDivergedError(PplVaeError):
    """A loss became NaN or infinite while fitting (SVI training, a mixture, a GAN, a local q*)."""


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
