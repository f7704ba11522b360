"""Torch's CPU threads sized to the cores other processes leave free, while a long computation runs.

Eager torch runs each operator on a team of OpenMP threads that meet at a
barrier when it ends, and by default the early ones spin there. With every
core free, torch's own thread count is the fastest. When another process
keeps one of the cores busy, the thread that shares that core runs only in
the scheduler's time slices, and every operator waits for it, so a team
sized for every core slows down most when a core is taken. A team that fits
the free cores loses far less. No fixed setting is best both ways: one
thread, or ``OMP_WAIT_POLICY=PASSIVE``, is slower when the machine is idle.
``benchmarks/contention.py`` measures each policy idle and under load (the
table is on the documentation's speed page).

:class:`FreeCoreThreads` watches the machine while a loop runs: four times a
second it reads how much CPU time the whole machine spent (``/proc/stat``)
minus what this process spent, so it knows how many cores the others keep
busy, and sets torch's thread count to the cores left, never above the count
the caller had. On exit the caller's count is restored. :func:`ppl_vae.train`
and batched NUTS use it by default.

Numbers: for the same seed a run is reproducible at a given thread count.
Sums split over another number of threads can round differently in the last
bits, and a NUTS chain amplifies such differences, so a run that changed its
thread count under load can differ in those bits from one on an idle machine;
``adapt_threads=False`` keeps torch's setting as it is.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from types import TracebackType

import torch

#: Seconds between two looks at the machine's load (reading /proc/stat costs ~20 microseconds;
#: a quarter second holds 25 of its 10 ms ticks per core, enough to tell a busy core from an idle one).
CHECK_INTERVAL_S = 0.25

#: A busy core is counted as taken when others use more than this share of it; 0.5 rounds to
#: the nearest core. Under load, two spinning threads beside one busy process measure the
#: others at ~0.7 of a core; an idle machine's background at < 0.1.
TAKEN_CORE_SHARE = 0.5

#: ``() -> (busy seconds of the whole machine, CPU seconds of this process, wall seconds)``.
Clock = Callable[[], tuple[float, float, float]]


def free_cores(others_busy: float, cores: int) -> int:
    """Cores left when other processes keep ``others_busy`` cores busy on average (at least 1)."""
    taken = math.floor(others_busy + (1 - TAKEN_CORE_SHARE))
    return max(1, cores - taken)


def machine_clock() -> tuple[float, float, float] | None:
    """Busy CPU seconds of the machine since boot, this process's CPU seconds, and a wall clock.

    Busy time of processes with a lower priority than this one is left out.

    None where ``/proc/stat`` cannot be read (not Linux): then nothing adapts.
    """
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice, already inside user and nice]
    ticks = [int(value) for value in fields[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    if _niceness() == 0:
        # Processes with a lower priority (nice > 0) give a core back as soon as we want it: a
        # niced test run beside training left its two threads at full speed. Their user time is
        # the "nice" column; it counts only when this process is niced itself.
        busy -= ticks[1]
    return busy / os.sysconf("SC_CLK_TCK"), time.process_time(), time.monotonic()


def _niceness() -> int:
    try:
        return os.getpriority(os.PRIO_PROCESS, 0)
    except (AttributeError, OSError):
        return 0


class FreeCoreThreads:
    """A context in which :meth:`poll` keeps torch's thread count at the free cores.

    Parameters
    ----------
    enabled : bool
        False: leave torch's thread count alone (``poll`` does nothing).
    clock : callable, optional
        Source of ``(machine busy s, own CPU s, wall s)``; ``/proc/stat`` by default.
    cores : int, optional
        Cores this process may use; by default those of its CPU affinity.
    """

    def __init__(self, enabled: bool = True, clock: Clock | None = None, cores: int | None = None) -> None:
        self.clock = clock or machine_clock
        # poll() runs once per training or leapfrog step: it compares only this cheap wall clock
        # (the clock's own third value) and reads /proc/stat once the interval has passed.
        self.wall: Callable[[], float] = time.monotonic if clock is None else (lambda: clock()[2])
        if cores is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.cores = cores
        self.enabled = enabled
        self.callers_threads = torch.get_num_threads()
        self.last: tuple[float, float, float] | None = None

    def __enter__(self) -> FreeCoreThreads:
        self.callers_threads = torch.get_num_threads()
        if self.enabled:
            self.last = self.clock()
            self.enabled = self.last is not None
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if torch.get_num_threads() != self.callers_threads:
            torch.set_num_threads(self.callers_threads)

    def poll(self) -> None:
        """Look at the machine if :data:`CHECK_INTERVAL_S` has passed, and resize torch's thread team to the free cores."""
        if not self.enabled or self.wall() - self.last[2] < CHECK_INTERVAL_S:
            return
        now = self.clock()
        if now is None:
            return
        machine, own, wall = (b - a for a, b in zip(self.last, now))
        self.last = now
        others = max(0.0, machine - own) / wall
        threads = min(self.callers_threads, free_cores(others, self.cores))
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
