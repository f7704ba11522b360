"""The ``ppl-vae`` console entry point: one line and exit 130 / 143 on Ctrl-C or SIGTERM, at any moment.

This module lives outside the ``ppl_vae`` package on purpose: importing the
package imports torch, Pyro and matplotlib, which takes seconds, and a Ctrl-C
in those seconds would otherwise print a ``KeyboardInterrupt`` traceback from
deep inside an import. Here the handlers are in place before anything heavy is
imported: SIGINT raises ``KeyboardInterrupt`` (Python's default) and SIGTERM
raises :class:`Interrupted`, a ``KeyboardInterrupt`` that remembers its signal.
Training installs its own handlers (save a checkpoint, then stop) and restores
these afterwards.
"""

from __future__ import annotations

import signal
import sys


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``signal_number`` says which."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


def _raise_interrupted(signal_number: int, frame: object) -> None:
    raise Interrupted(signal_number)


def main() -> int:
    """Run ``ppl-vae``; return its exit status (130 after SIGINT, 143 after SIGTERM)."""
    signal.signal(signal.SIGINT, _raise_interrupted)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    started = False
    try:
        from ppl_vae.cli import main as cli_main

        started = True
        return cli_main()
    except KeyboardInterrupt as interruption:  # cli_main reports its own; this is the rest
        # A second signal while this line is printed must not add a traceback.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        number = getattr(interruption, "signal_number", signal.SIGINT)
        when = "" if started else " while starting; nothing was written"
        print(f"ppl-vae: interrupted by {signal.Signals(number).name}{when}", file=sys.stderr)
        return 128 + number


if __name__ == "__main__":
    sys.exit(main())
