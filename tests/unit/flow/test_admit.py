"""The admission path with a fake clock: what each outcome teaches the gates, and what it costs the image."""

from __future__ import annotations

import math

import pytest

from batchcap.errors import (
    CannotConnect,
    ModelLoading,
    RateLimited,
    RejectedImage,
    RequestTimeout,
    ServerError,
)
from batchcap.flow.admit import Admission, Pass, is_unreachable
from batchcap.flow.circuit import CircuitSettings
from batchcap.flow.ratelimit import RateLimiter
from batchcap.flow.suspend import SuspendDetector
from batchcap.models import Quota


class Clocks:
    def __init__(self) -> None:
        self.mono = 100.0
        self.wall = 1_700_000_040.0

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


def admission(clocks: Clocks, *, suspend: SuspendDetector | None = None) -> Admission:
    limiter = RateLimiter(None, 4, clock=lambda: clocks.mono)
    return Admission(limiter=limiter, circuit=CircuitSettings(open_after=3, throttled_after=3), suspend=suspend,
                     clock=lambda: clocks.mono, wall=lambda: clocks.wall)


def sent(clocks: Clocks, probe: bool = False) -> Pass:
    return Pass(clocks.mono, clocks.wall, probe, None)


@pytest.mark.parametrize(("exc", "unreachable"), [
    (CannotConnect("x", host="h", cause="refused"), True), (RequestTimeout("x"), True),
    (ServerError("HTTP 504", status=504), True), (ModelLoading("HTTP 502", status=502), True),
    (ModelLoading("loading", estimated_time=20.0), False), (ServerError("HTTP 500", status=500), False),
    (RateLimited("429"), False), (RejectedImage("400", status=400), False),
])
def test_what_counts_as_the_target_being_away(exc: Exception, unreachable: bool) -> None:
    assert is_unreachable(exc) is unreachable  # type: ignore[arg-type]


def test_an_outage_opens_the_circuit_and_the_first_answer_closes_it() -> None:
    clocks = Clocks()
    a = admission(clocks)
    a.answered(sent(clocks))
    verdicts = [a.failed(sent(clocks), CannotConnect("down", host="h", cause="refused")) for _ in range(3)]
    assert verdicts == ["closed", "closed", "open"]  # the third in a row: an outage, not the image's fault
    assert a.note() == "target unreachable for 0s, probing"
    clocks.advance(1.0)
    wait, probe = a.breaker.circuit.admit(clocks.mono)
    assert (wait, probe) == (0.0, True)
    a.answered(sent(clocks, probe=True))
    assert a.note() is None


def test_a_request_in_flight_while_the_machine_slept_costs_nothing() -> None:
    clocks = Clocks()
    suspend = SuspendDetector(now=clocks.mono, wall=clocks.wall)
    a = admission(clocks, suspend=suspend)
    p = sent(clocks)
    clocks.advance(20.0)  # SIGSTOP: no heartbeat for 20 s
    assert a.failed(p, RequestTimeout("no answer within 5 s")) == "slept"
    assert a.breaker.circuit.state == "closed"  # the timeout taught the circuit nothing
    assert a.failed(sent(clocks), RequestTimeout("no answer within 5 s")) == "closed"  # a new one does


def test_quota_headers_pace_and_hold() -> None:
    clocks = Clocks()
    a = admission(clocks)
    a.answered(sent(clocks), Quota(remaining=9, reset=27.0))
    assert a.pace.spacing == pytest.approx(3.0)
    a.failed(sent(clocks), _limited(Quota(remaining=0, reset=40.0), retry_after=40.0))
    assert a.pace.reserve(clocks.mono) == pytest.approx(40.0)
    assert a.breaker.circuit.state == "closed"  # the server said when: no guessing at windows


def test_header_less_429s_open_a_throttled_circuit_probing_at_the_next_boundaries() -> None:
    clocks = Clocks()
    a = admission(clocks)
    for _ in range(20):
        a.answered(sent(clocks))
        clocks.advance(0.01)
    assert [a.failed(sent(clocks), RateLimited("429")) for _ in range(3)] == ["closed", "closed", "open"]
    circuit = a.breaker.circuit
    assert circuit.reason == "throttled"
    assert circuit.next_probe == pytest.approx(clocks.mono + (1_700_000_041.05 - clocks.wall))  # next second
    clocks.mono, clocks.wall = circuit.next_probe, 1_700_000_041.05
    circuit.admit(clocks.mono)
    assert a.failed(sent(clocks, probe=True), RateLimited("429")) == "open"  # not a second: try the minute
    minute = (math.floor(clocks.wall / 60) + 1) * 60 + 0.05
    assert circuit.next_probe == pytest.approx(clocks.mono + (minute - clocks.wall))
    clocks.mono, clocks.wall = circuit.next_probe, minute
    circuit.admit(clocks.mono)
    a.answered(sent(clocks, probe=True))
    assert a.learner.window == 60.0
    assert a.pace.spacing == pytest.approx(60 / 20 * 1.02)


def _limited(quota: Quota, retry_after: float | None) -> RateLimited:
    exc = RateLimited("HTTP 429", retry_after=retry_after)
    exc.quota = quota
    return exc
