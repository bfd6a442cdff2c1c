"""The circuit, with plain numbers for time: an outage opens it, one probe at a time, the first answer closes it."""

from __future__ import annotations

import math

import anyio
import pytest

from batchcap.errors import ConfigError
from batchcap.flow.circuit import Circuit, CircuitBreaker, CircuitSettings


def test_a_spell_of_unreachable_failures_opens_it_and_random_ones_do_not() -> None:
    c = Circuit(CircuitSettings(open_after=5))
    for i in range(4):
        assert not c.unreachable(float(i), sent=float(i))
    c.answered(4.0, sent=4.0)  # an answer between them: no spell
    for i in range(4):
        assert not c.unreachable(5.0 + i, sent=5.0 + i)
    assert c.admit(9.0) == (0.0, False)
    assert c.unreachable(9.5, sent=9.5)  # the fifth in a row
    assert c.is_open
    assert c.reason == "unreachable"
    assert c.open_for(12.0) == pytest.approx(2.5)


def test_one_probe_at_a_time_with_backoff_and_the_first_answer_closes_it() -> None:
    c = Circuit(CircuitSettings(open_after=1, probe_base=1.0, probe_cap=4.0))
    c.unreachable(10.0, sent=10.0)
    assert c.admit(10.5) == (pytest.approx(0.5), False)  # everyone waits for the first probe
    assert c.admit(11.0) == (0.0, True)  # the probe
    assert c.admit(11.0) == (math.inf, False)  # ... and nobody else while it is out
    assert c.unreachable(11.2, sent=11.0, probe=True)  # it failed: the next one later
    assert c.next_probe == pytest.approx(13.2)
    c.admit(13.2)
    c.unreachable(13.3, sent=13.2, probe=True)
    assert c.next_probe == pytest.approx(17.3)  # doubled
    c.admit(17.3)
    c.unreachable(17.4, sent=17.3, probe=True)
    assert c.next_probe == pytest.approx(21.4)  # capped at 4 s
    spell = c.spell
    assert c.admit(21.4) == (0.0, True)
    c.answered(21.5, sent=21.4, probe=True)
    assert not c.is_open
    assert c.admit(21.5) == (0.0, False)
    assert c.spell == spell + 1  # the outage is over: a new spell starts from here


def test_failures_of_requests_sent_before_it_opened_do_not_move_the_probe() -> None:
    c = Circuit(CircuitSettings(open_after=2, probe_base=5.0))
    c.unreachable(1.0, sent=0.1)
    c.unreachable(1.0, sent=0.2)
    assert c.next_probe == 6.0
    assert c.unreachable(2.0, sent=0.3)  # still open, nothing changes
    assert c.next_probe == 6.0


def test_a_hint_sets_the_probe_time_and_a_cancelled_probe_is_replaced_at_once() -> None:
    c = Circuit(CircuitSettings(open_after=1, probe_base=1.0, probe_cap=10.0))
    c.unreachable(0.0, sent=0.0, hint=7.0)
    assert c.next_probe == 7.0
    assert c.admit(7.0) == (0.0, True)
    c.abandon(8.0)
    assert c.admit(8.0) == (0.0, True)


def test_a_spent_quota_opens_it_at_the_time_named_and_a_stale_success_does_not_close_it() -> None:
    c = Circuit(CircuitSettings(throttled_after=3))
    for sent in (1.0, 1.1):
        assert not c.throttled(2.0, sent=sent, probe_at=60.05)
    c.answered(2.0, sent=0.9)  # admitted before the quota ran out: says nothing about the spell
    assert c.throttled(2.1, sent=1.2, probe_at=60.05)
    assert c.reason == "throttled"
    c.answered(2.2, sent=0.95)  # still an old request: the probe decides
    assert c.is_open
    assert c.admit(30.0) == (pytest.approx(30.05), False)
    assert c.admit(60.05) == (0.0, True)
    assert c.throttled(60.1, sent=60.05, probe=True, probe_at=120.05)  # refused too: the next boundary
    assert c.next_probe == 120.05


def test_settings_say_which_knob_is_wrong() -> None:
    with pytest.raises(ConfigError, match="open_after"):
        CircuitSettings(open_after=0)
    with pytest.raises(ConfigError, match="probe_cap"):
        CircuitSettings(probe_cap=math.nan)


async def test_the_breaker_wakes_its_waiters_when_the_probe_comes_back() -> None:
    now = [0.0]
    breaker = CircuitBreaker(CircuitSettings(open_after=1, probe_base=1.0), clock=lambda: now[0])
    assert await breaker.admit() is False  # closed: no wait at all
    breaker.unreachable(sent=0.0)
    now[0] = 1.0
    assert await breaker.admit() is True  # the probe
    woke: list[bool] = []

    async def sender() -> None:
        woke.append(await breaker.admit())

    async with anyio.create_task_group() as tg:
        tg.start_soon(sender)
        tg.start_soon(sender)
        await anyio.wait_all_tasks_blocked()
        assert woke == []  # both wait for the probe
        assert breaker.note() == "target unreachable for 1s, probing"
        breaker.answered(sent=1.0, probe=True)
    assert woke == [False, False]
    assert breaker.note() is None
