"""A sleep of the machine, from the two clocks: a gap on the monotonic one, or the wall clock running ahead."""

from __future__ import annotations

from batchcap.flow.suspend import SuspendDetector


def test_a_stopped_process_shows_as_a_gap_between_heartbeats() -> None:
    d = SuspendDetector(now=0.0, wall=1000.0)
    for t in (1.0, 2.0, 3.1):  # ordinary beats, one a little late
        assert d.tick(t, 1000.0 + t) == 0.0
    assert d.tick(23.1, 1023.1) == 20.0  # SIGSTOP for 20 s: both clocks ran
    assert d.take() == 20.0
    assert d.take() == 0.0
    assert d.slept_since(3.0, 24.0, 1024.0)  # an attempt that started before it slept
    assert not d.slept_since(23.5, 24.0, 1024.0)  # one that started after


def test_a_suspended_laptop_shows_as_the_wall_clock_running_ahead() -> None:
    d = SuspendDetector(now=0.0, wall=1000.0)
    assert d.tick(1.0, 1001.0) == 0.0
    assert d.tick(2.0, 1602.0) == 600.0  # Linux: monotonic stopped during suspend, wall did not


def test_a_failure_judged_right_after_waking_counts_before_the_heartbeat_saw_it() -> None:
    d = SuspendDetector(now=0.0, wall=1000.0)
    d.tick(1.0, 1001.0)
    assert d.slept_since(0.5, 21.0, 1021.0)  # the timeout fired before the next heartbeat
    assert d.take() == 20.0  # and the heartbeat's consumers still hear of it once
    assert d.tick(22.0, 1022.0) == 0.0
