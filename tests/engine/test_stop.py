"""The stop flag: SIGTERM/SIGINT end a run at a step boundary; ignored signals are left alone."""

from __future__ import annotations

import os
import signal

import pytest

from igfiqa.engine.stop import StopFlag


@pytest.fixture()
def signals_not_ignored():
    """A test runner started in the background (`pytest &` in a CI script) has SIGINT ignored, and
    the stop flag rightly leaves an ignored signal alone: these tests take the terminal's rules."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def test_a_signal_is_recorded_and_the_previous_handlers_come_back(signals_not_ignored) -> None:
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with StopFlag() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signum == signal.SIGTERM
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == previous
    assert stop.signum == signal.SIGTERM  # still readable after the run


def test_a_second_ctrl_c_stops_at_once(signals_not_ignored) -> None:
    with StopFlag() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


def test_an_ignored_signal_is_left_alone(signals_not_ignored) -> None:
    """`igfiqa train &` in a script ignores SIGINT: the run must not take it."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopFlag() as stop:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) == stop._handle
            os.kill(os.getpid(), signal.SIGINT)
            assert not stop.requested
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
