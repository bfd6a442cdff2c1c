"""RetryPolicy decisions and header parsing: pure functions, fed plain values."""

from __future__ import annotations

import dataclasses
import email.utils
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from batchcap.errors import (
    APIError,
    AuthError,
    BadResponse,
    BatchcapError,
    ConfigError,
    CreditsExhausted,
    InputError,
    JournalError,
    ModelLoading,
    PermanentError,
    QueueFull,
    QuotaExhausted,
    RateLimited,
    RejectedImage,
    ServerError,
    TransientError,
    TransportError,
)
from batchcap.flow.retry import (
    MIN_WAIT,
    Decision,
    RetryPolicy,
    parse_ratelimit,
    parse_retry_after,
    retry_hint,
)


def one() -> float:
    return 1.0


def zero() -> float:
    return 0.0


def half() -> float:
    return 0.5


POLICY = RetryPolicy()


# --- backoff ----------------------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [POLICY.backoff(a, one) for a in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert POLICY.backoff(4, half) == 2.0  # full jitter: anywhere in [0, ceiling)
    assert POLICY.backoff(4, zero) == 0.0


@pytest.mark.parametrize("attempt", [1100, 10**6, 10**30])
def test_backoff_survives_huge_attempts(attempt: int) -> None:
    assert POLICY.backoff(attempt, one) == POLICY.cap
    assert RetryPolicy(base=0.0).backoff(attempt, one) == 0.0


@pytest.mark.parametrize("attempt", [0, -5])
def test_backoff_below_one_counts_as_the_first(attempt: int) -> None:
    assert POLICY.backoff(attempt, one) == POLICY.base


@given(attempt=st.integers(-10, 5000), r=st.floats(0.0, 1.0))
def test_backoff_is_always_within_zero_and_cap(attempt: int, r: float) -> None:
    assert 0.0 <= POLICY.backoff(attempt, lambda: r) <= POLICY.cap


# --- decide: the class -> action table --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "action", "spends"),
    [
        (AuthError("401", status=401), "fail", False),  # the run guard, not the policy, stops the run
        (ConfigError("no token"), "fail", False),
        (JournalError("disk full"), "fail", False),
        (RejectedImage("413", status=413), "fail", False),
        (BadResponse("not JSON", status=200), "retry", True),  # a proxy hiccup; bounded by --retries
        (CreditsExhausted("402", status=402), "fail", False),
        (PermanentError("410", status=410), "fail", False),
        (InputError("truncated PNG"), "fail", False),
        (ModelLoading("loading", estimated_time=20.0), "retry", False),
        (RateLimited("429", retry_after=3.0), "retry", False),
        (RateLimited("429"), "retry", False),
        (ServerError("500", status=500), "retry", True),
        (TransportError("reset"), "retry", True),
        (TransientError("unknown transient"), "fail", False),  # not one we know how to wait for
        (APIError("odd", status=418), "fail", False),
        (BatchcapError("odd"), "fail", False),
        (ValueError("a bug"), "fail", False),
    ],
)
def test_action_by_class(exc: BaseException, action: str, spends: bool) -> None:
    decision = POLICY.decide(exc, retries_used=0, waited=0.0, rand=one)
    assert (decision.action, decision.spends_retry) == (action, spends)
    assert decision.reason.startswith(type(exc).__name__)
    if action != "retry":
        assert decision.delay == 0.0


@pytest.mark.parametrize("exc", [ServerError("502", status=502), TransportError("timeout")])
def test_faults_spend_retries_then_fail(exc: APIError) -> None:
    delays = []
    for used in range(POLICY.retries):
        decision = POLICY.decide(exc, retries_used=used, waited=0.0, rand=one)
        assert (decision.action, decision.spends_retry) == ("retry", True)
        delays.append(decision.delay)
    assert delays == [POLICY.backoff(used + 1, one) for used in range(POLICY.retries)] == [0.5, 1, 2, 4, 8]
    final = POLICY.decide(exc, retries_used=POLICY.retries, waited=0.0, rand=one)
    assert final == Decision("fail", 0.0, False, f"{type(exc).__name__}: gave up after 5 retries")


@pytest.mark.parametrize(
    ("estimated_time", "delay"),
    [
        (20.0, 20.0),  # the server's estimate, as given
        (500.0, 120.0),  # capped at wait_cap
        (0.0, MIN_WAIT),  # "ready now" must not become a hot loop
        (-1.0, MIN_WAIT),
        (math.nan, MIN_WAIT),
        (None, MIN_WAIT),  # no hint: backoff (here rand=0), floored
    ],
)
def test_model_loading_waits_for_the_estimate(estimated_time: float | None, delay: float) -> None:
    exc = ModelLoading("Model x is currently loading", estimated_time=estimated_time)
    decision = POLICY.decide(exc, retries_used=0, waited=0.0, rand=zero)
    assert decision == Decision("retry", delay, False, decision.reason)
    assert "wait budget" in decision.reason


@pytest.mark.parametrize(
    ("retry_after", "delay"),
    [(7.0, 7.0), (3600.0, 120.0), (0.0, MIN_WAIT), (None, 0.5)],
)
def test_rate_limited_waits_for_the_hint(retry_after: float | None, delay: float) -> None:
    decision = POLICY.decide(
        RateLimited("429", retry_after=retry_after), retries_used=0, waited=0.0, rand=one
    )
    assert (decision.action, decision.delay, decision.spends_retry) == ("retry", delay, False)


def test_hintless_waits_back_off_as_time_is_spent_waiting() -> None:
    """Free waits do not advance ``retries_used``, so the backoff grows with ``waited`` instead."""
    exc = RateLimited("429")
    waited, delays = 0.0, []
    for _ in range(12):
        decision = POLICY.decide(exc, retries_used=0, waited=waited, rand=one)
        delays.append(decision.delay)
        waited += decision.delay
    assert delays[:6] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert delays[-1] == POLICY.cap


@pytest.mark.parametrize(
    ("waited", "spends"),
    [(0.0, False), (1780.0, False), (1780.5, True), (5000.0, True)],  # 1780 + 20 == the budget: still free
)
def test_wait_budget_boundary(waited: float, spends: bool) -> None:
    exc = ModelLoading("loading", estimated_time=20.0)
    decision = POLICY.decide(exc, retries_used=0, waited=waited, rand=one)
    assert (decision.action, decision.delay, decision.spends_retry) == ("retry", 20.0, spends)


def test_after_the_budget_waits_spend_retries_until_none_are_left() -> None:
    exc = RateLimited("429", retry_after=30.0)
    assert POLICY.decide(exc, retries_used=4, waited=1800.0, rand=one).spends_retry
    final = POLICY.decide(exc, retries_used=5, waited=1800.0, rand=one)
    assert final.action == "fail"
    # ... while inside the budget retries_used does not matter: waiting is not failing.
    assert POLICY.decide(exc, retries_used=5, waited=0.0, rand=one).action == "retry"


def test_a_model_that_never_loads_still_ends() -> None:
    policy = RetryPolicy(retries=2, wait_budget=60.0)
    used, waited, attempts = 0, 0.0, 1
    while (
        decision := policy.decide(ModelLoading("x"), retries_used=used, waited=waited, rand=one)
    ).action == "retry":
        attempts += 1
        used += decision.spends_retry
        waited += 0.0 if decision.spends_retry else decision.delay
    assert decision.action == "fail"
    # free waits of 0.5, 1, 2, 4, 8, 16 s (a 30 s seventh would overrun the 60 s budget), then the 2 retries
    assert (used, attempts) == (2, 9)
    assert waited <= 60.0


# --- immediate (the test mode) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [ServerError("500"), ModelLoading("loading", estimated_time=30.0), RateLimited("429", retry_after=9)],
)
def test_immediate_never_waits_and_counts_every_retry(exc: APIError) -> None:
    policy = RetryPolicy.immediate(attempts=3)
    decisions = [policy.decide(exc, retries_used=used, waited=0.0, rand=one) for used in range(3)]
    assert [(d.action, d.delay, d.spends_retry) for d in decisions] == [
        ("retry", 0.0, True),
        ("retry", 0.0, True),
        ("fail", 0.0, False),
    ]


def test_immediate_defaults_to_two_attempts() -> None:
    assert RetryPolicy.immediate() == RetryPolicy(retries=1, base=0.0, cap=0.0, wait_cap=0.0, wait_budget=0.0)
    with pytest.raises(ValueError, match="attempts must be >= 1"):
        RetryPolicy.immediate(0)


# --- the policy value -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"retries": -1}, "retries must be an int >= 0"),
        ({"retries": 1.5}, "retries must be an int >= 0"),
        ({"base": -0.1}, "base must be a finite number"),
        ({"cap": math.inf}, "cap must be a finite number"),
        ({"wait_cap": math.nan}, "wait_cap must be a finite number"),
        ({"wait_budget": -1}, "wait_budget must be a finite number"),
    ],
)
def test_invalid_policy_says_what_to_do(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_and_decision_are_frozen_values() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        POLICY.retries = 9  # type: ignore[misc]
    assert RetryPolicy() == POLICY
    assert not hasattr(POLICY, "__dict__")
    assert not hasattr(Decision("fail", 0.0, False, "x"), "__dict__")


# --- Retry-After ------------------------------------------------------------------------------------------

NOW = 1445412450.0  # 2015-10-21 07:27:30 UTC


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("-5", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:28:00 -0000", 30.0),  # no zone information: UTC
        ("Wed, 21 Oct 2015 09:28:00 +0200", 30.0),
        ("Wed, 21 Oct 2015 07:00:00 GMT", 0.0),  # already past
        (None, None),
        ("", None),
        ("   ", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("Wed, 99 Foo 2015 07:28:00 GMT", None),
        ("5 seconds", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


def test_parse_retry_after_defaults_to_the_wall_clock() -> None:
    in_a_minute = email.utils.formatdate(NOW + 60.0, usegmt=True)
    assert parse_retry_after(in_a_minute) == 0.0  # 2015 is long gone
    assert parse_retry_after(in_a_minute, now=NOW) == 60.0


# --- RateLimit --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ('"api";r=0;t=55', 55.0),
        ('"api"; r=0; t=55', 55.0),
        ("r=0;t=55", 55.0),  # no policy name
        ('"api";t=55;r=0', 55.0),
        ('"api";r=0;t=0', 0.0),
        ('"api";r=0;t=-3', 0.0),
        ('"api";r=3;t=55', None),  # requests remain: nothing to wait for
        ('"api";r=0', None),
        ('"api";t=55', None),
        ('"api";r=x;t=55', None),
        ('"api";r=0;t=soon', None),
        ('"burst";r=0;t=1, "daily";r=0;t=3600', 3600.0),
        ('"burst";r=0;t=1, "daily";r=7;t=3600', 1.0),
        ("limit=100, remaining=0, reset=30", 30.0),  # the older dictionary form
        ("limit=100, remaining=9, reset=30", None),
        ("", None),
        (None, None),
        ("garbage", None),
    ],
)
def test_parse_ratelimit(value: str | None, seconds: float | None) -> None:
    assert parse_ratelimit(value) == seconds


# --- retry_hint -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "7"}, 7.0),
        ({"RateLimit": '"api";r=0;t=55'}, 55.0),
        ({"ratelimit": '"api";r=0;t=55'}, 55.0),
        ({"Retry-After": "7", "RateLimit": '"api";r=0;t=55'}, 7.0),  # Retry-After first
        ({"Retry-After": "whenever", "RateLimit": '"api";r=0;t=55'}, 55.0),  # unreadable: fall through
        ({"RateLimit": '"api";r=4;t=55'}, None),
        ({"Content-Type": "application/json"}, None),
        ({}, None),
    ],
)
def test_retry_hint(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_hint(headers) == seconds


def test_retry_hint_reads_aiohttp_headers() -> None:
    headers = CIMultiDictProxy(CIMultiDict({"RETRY-AFTER": "12", "x-request-id": "abc"}))
    assert retry_hint(headers) == 12.0


def test_a_full_queue_is_waited_out_without_spending_a_retry_or_the_budget() -> None:
    policy = RetryPolicy(retries=2, wait_budget=10.0)
    full = QueueFull("HTTP 503: Queue is full")
    waited = 0.0
    for _ in range(50):  # far past the wait budget: back-pressure never becomes the image's final error
        d = policy.decide(full, retries_used=0, waited=waited, rand=lambda: 1.0)
        assert d.action == "retry"
        assert not d.spends_retry
        assert 0 < d.delay <= policy.wait_cap
        waited += d.delay
    assert policy.decide(QueueFull("x", retry_after=3.0), retries_used=0, waited=0.0, rand=lambda: 0.0).delay == 3.0
    # immediate(): no waits at all, so a full queue counts as a retry and the loop ends
    assert RetryPolicy.immediate(1).decide(full, retries_used=0, waited=0.0, rand=lambda: 0.0).action == "fail"


def test_a_spent_quota_is_waited_out_whole_not_cut_to_wait_cap() -> None:
    policy = RetryPolicy(wait_cap=120.0, wait_budget=1800.0)
    quota = QuotaExhausted("GPU quota spent", retry_after=588.0)
    d = policy.decide(quota, retries_used=0, waited=0.0, rand=lambda: 0.5)
    assert (d.action, d.delay, d.spends_retry) == ("retry", 588.0, False)
    assert policy.longest_wait(quota) == 1800.0
    assert policy.longest_wait(RateLimited("429", retry_after=588.0)) == 120.0
