"""Engine tests run single-threaded: tiny tensors gain nothing from threads, and on a shared
2-core machine OpenMP barriers under contention make them many times slower."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _process_switches_restored():
    """A test that builds a Trainer directly (not through train(), which puts them back) leaves
    torch's process-wide determinism switches as it found them for the next test."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    benchmark = torch.backends.cudnn.benchmark
    yield
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = benchmark
