"""Checks of settings, each written once: a bad setting raises one ConfigError line naming it.

Integers are accepted in any integral type (``int``, ``numpy.int64``, ...) but
never as ``bool``; numbers in any real type, never ``bool``, NaN or infinity.
Checks of *data* (tensors: shape, dtype, device, range) raise
:class:`~ppl_vae.errors.DataError` and live beside the models that define what
valid data is (:mod:`ppl_vae.models.base`).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from ppl_vae.errors import ConfigError


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(float(value)))


def check_int(value: Any, name: str, least: int = 1, most: float = math.inf) -> int:
    """``value`` as an ``int`` if it is an integer in ``[least, most]``, else raise ConfigError.

    Parameters
    ----------
    value : Any
    name : str
        The setting's name, for the message.
    least : int
    most : int or inf
    """
    if _is_integer(value) and least <= value <= most:
        return int(value)
    if most < math.inf:
        wanted = f"an integer in [{least}, {most}]"
    else:
        wanted = {1: "a positive integer", 0: "a non-negative integer"}.get(
            least, f"an integer >= {least}")
    raise ConfigError(f"{name} must be {wanted}; got {value!r}")


def check_positive_int(value: Any, name: str) -> int:
    """``value`` as an ``int`` if it is a positive integer, else raise ConfigError."""
    return check_int(value, name, 1)


def check_number(value: Any, name: str, *, positive: bool = True) -> float:
    """``value`` as a ``float`` if it is a finite number, > 0 (or >= 0 with ``positive=False``)."""
    if _is_number(value) and (value > 0 if positive else value >= 0):
        return float(value)
    wanted = "a positive number" if positive else "a non-negative number"
    raise ConfigError(f"{name} must be {wanted}; got {value!r}")
