"""Turning ``--device auto|cpu|cuda`` into a :class:`torch.device`.

Library code never picks a device: it follows the tensors and modules it is
given. Only entry points (the CLI, tutorials) call :func:`resolve_device`.
"""

from __future__ import annotations

import torch

from ppl_vae.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """Resolve a device name.

    Parameters
    ----------
    name : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or
        ``"cuda:N"``.

    Raises
    ------
    ConfigError
        For an unknown name, or CUDA asked for on a machine without it.

    Examples
    --------
    >>> from ppl_vae import resolve_device
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("auto").type in ("cpu", "cuda")
    True
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "CUDA was asked for but this torch sees no GPU (a CPU build, or no driver); "
            "use --device cpu, or install a CUDA build of torch (see the README)"
        )
    return device
