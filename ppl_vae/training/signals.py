"""SIGINT and SIGTERM during training: finish the step, save a checkpoint, stop with one line."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def deferred_signals() -> Iterator[list[int]]:
    """Turn SIGINT and SIGTERM into a flag the loop checks after each step.

    A second signal stops at once (``KeyboardInterrupt``). Outside the main
    thread signals cannot be caught, and the flag stays empty.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signal_number: int, frame: Any) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signal_number)

    previous = {number: signal.signal(number, handler) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
