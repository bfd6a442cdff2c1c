"""The emulated Endpoint's state machine, on a fake clock."""

from __future__ import annotations

import pytest
from fakes import FakeClock

from batchcap.emulator.management import Lifecycle, ManagedEndpointSettings


def test_resume_walks_pending_initializing_running():
    clock = FakeClock(100.0)
    life = Lifecycle(ManagedEndpointSettings(pending_s=2, initializing_s=3), clock)
    assert life.state == "paused"
    assert life.eta() is None
    assert life.resume()
    assert life.state == "pending"
    clock.now += 1.9
    assert life.state == "pending"
    assert life.eta() == pytest.approx(3.1)
    clock.now += 0.2
    assert life.state == "initializing"
    assert life.resume()  # waking again is a no-op, not an error
    clock.now += 3
    assert life.state == "running"
    assert life.running_since == 105.0
    assert not life.resume()  # the API's 400 "already running"
    life.pause()
    assert life.state == "paused"
    assert [s for _, s in life.transitions] == ["paused", "pending", "initializing", "running", "paused"]


def test_scaled_to_zero_wakes_on_a_request_but_paused_does_not():
    clock = FakeClock(100.0)
    life = Lifecycle(ManagedEndpointSettings(state="scaledToZero", pending_s=0, initializing_s=1), clock)
    life.wake_on_request()
    assert life.state == "initializing"
    clock.now += 1
    assert life.state == "running"
    life.pause()
    life.wake_on_request()
    assert life.state == "paused"
    life.scale_to_zero()
    assert life.state == "scaledToZero"
