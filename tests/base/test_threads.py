"""Torch's thread count follows the free cores while a loop runs, and is the caller's again afterwards."""

from __future__ import annotations

import pytest
import torch

from ppl_vae.data import load_dataset
from ppl_vae.models import VAE
from ppl_vae.threads import CHECK_INTERVAL_S, FreeCoreThreads, free_cores, machine_clock
from ppl_vae.training import SVIConfig, train


@pytest.mark.parametrize("others_busy, cores, expected", [
    (0.0, 2, 2),    # an idle machine
    (0.08, 2, 2),   # background noise
    (0.67, 2, 1),   # one busy process beside two spinning threads (measured ~0.7)
    (1.0, 2, 1),    # one busy process beside one thread
    (2.0, 2, 1),    # never fewer than one thread
    (3.4, 16, 13),  # rounds to the nearest core
])
def test_free_cores_rounds_the_others_load_to_whole_cores(others_busy, cores, expected):
    assert free_cores(others_busy, cores) == expected


class FakeMachine:
    """A clock whose machine-wide busy time grows by ``others`` cores plus this process's own time."""

    def __init__(self) -> None:
        self.busy = self.own = self.wall = 0.0
        self.others = 0.0

    def advance(self, seconds: float, own_cores: float) -> None:
        self.wall += seconds
        self.own += own_cores * seconds
        self.busy += (own_cores + self.others) * seconds

    def __call__(self) -> tuple[float, float, float]:
        return self.busy, self.own, self.wall


@pytest.fixture
def two_threads():
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(saved)


def test_threads_shrink_under_load_grow_back_and_are_restored(two_threads):
    machine = FakeMachine()
    with FreeCoreThreads(clock=machine, cores=2) as threads:
        machine.advance(0.5 * CHECK_INTERVAL_S, own_cores=2)
        threads.poll()  # too soon to look
        assert torch.get_num_threads() == 2
        machine.others = 0.7  # a busy process takes a share of a core
        machine.advance(2 * CHECK_INTERVAL_S, own_cores=1.3)
        threads.poll()
        assert torch.get_num_threads() == 1
        machine.others = 1.0
        machine.advance(2 * CHECK_INTERVAL_S, own_cores=1.0)
        threads.poll()
        assert torch.get_num_threads() == 1
        machine.others = 0.0  # it ended
        machine.advance(2 * CHECK_INTERVAL_S, own_cores=1.0)
        threads.poll()
        assert torch.get_num_threads() == 2
        machine.others = 1.0
        machine.advance(2 * CHECK_INTERVAL_S, own_cores=1.3)
        threads.poll()
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_never_more_threads_than_the_caller_had(two_threads):
    torch.set_num_threads(1)
    machine = FakeMachine()
    with FreeCoreThreads(clock=machine, cores=8) as threads:
        machine.advance(2 * CHECK_INTERVAL_S, own_cores=1)
        threads.poll()
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 1


def test_disabled_or_without_proc_stat_nothing_changes(two_threads):
    machine = FakeMachine()
    with FreeCoreThreads(enabled=False, clock=machine, cores=2) as threads:
        machine.others = 2.0
        machine.advance(2 * CHECK_INTERVAL_S, own_cores=0.1)
        threads.poll()
        assert torch.get_num_threads() == 2
    with FreeCoreThreads(clock=lambda: None, cores=2) as threads:
        threads.poll()
        assert torch.get_num_threads() == 2


def test_the_machine_clock_reads_this_linux_machine():
    reading = machine_clock()
    if reading is None:
        pytest.skip("no /proc/stat here")
    busy, own, wall = reading
    assert busy > 0 and own > 0 and wall > 0


def test_training_leaves_the_callers_thread_count_as_it_found_it(two_threads):
    torch.set_num_threads(1)
    data = load_dataset("digits", seed=0)
    train(VAE(64, 2, hidden_dims=(16,)), data.train_x[:256], SVIConfig(epochs=1, binarize="dynamic"))
    assert torch.get_num_threads() == 1
