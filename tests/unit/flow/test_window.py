"""Rate limits as the server counts them: its headers, and a fixed window learned from header-less 429s."""

from __future__ import annotations

import pytest

from batchcap.flow.window import SLACK, ServerPace, WindowLearner, parse_duration, quota_from_headers
from batchcap.models import Quota

NOW = 1_700_000_000.0


@pytest.mark.parametrize(("text", "seconds"), [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5),
                                               ("12", 12.0), ("", None), ("soon", None), ("5m soon", None)])
def test_openai_reset_durations(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_ietf_headers_as_the_hub_sends_them() -> None:
    quota = quota_from_headers({"RateLimit": '"api";r=0;t=55',
                                "RateLimit-Policy": '"fixed window";"api";q=500;w=300'}, now_wall=NOW)
    assert quota == Quota(remaining=0, reset=55, limit=500, window=300)


def test_older_drafts_and_several_policies_take_the_tightest() -> None:
    quota = quota_from_headers({"ratelimit-remaining": "3", "ratelimit-reset": "10", "ratelimit-limit": "100"},
                               now_wall=NOW)
    assert quota == Quota(remaining=3, reset=10, limit=100)
    quota = quota_from_headers({"RateLimit": "limit=100, remaining=0, reset=5"}, now_wall=NOW)
    assert quota is not None
    assert (quota.remaining, quota.reset) == (0, 5)
    quota = quota_from_headers({"RateLimit-Policy": '10;w=1, 50;w=60'}, now_wall=NOW)
    assert quota is not None
    assert (quota.limit, quota.window) == (50, 60)  # 50 a minute is tighter than 10 a second


def test_openai_style_headers_and_an_empty_token_budget() -> None:
    quota = quota_from_headers({"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "59",
                                "x-ratelimit-reset-requests": "1s", "x-ratelimit-remaining-tokens": "1000",
                                "x-ratelimit-reset-tokens": "6m0s"}, now_wall=NOW)
    assert quota == Quota(remaining=59, reset=1.0, limit=60)
    quota = quota_from_headers({"x-ratelimit-remaining-requests": "59", "x-ratelimit-reset-requests": "1s",
                                "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s"}, now_wall=NOW)
    assert quota is not None
    assert (quota.remaining, quota.reset) == (0, 360.0)  # no tokens left: that is what holds


def test_github_style_epoch_reset_and_retry_after() -> None:
    quota = quota_from_headers({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) + 30)}, now_wall=NOW)
    assert quota is not None
    assert quota.reset == pytest.approx(30)
    assert quota_from_headers({"Retry-After": "7"}, now_wall=NOW) == Quota(retry_after=7.0)
    assert quota_from_headers({"Content-Type": "application/json"}, now_wall=NOW) is None


def test_the_pace_spreads_what_is_left_and_holds_when_nothing_is() -> None:
    pace = ServerPace()
    assert pace.reserve(0.0) == 0.0  # unpaced
    pace.observe(0.0, Quota(remaining=19, reset=57.0))
    assert pace.spacing == pytest.approx(3.0)
    assert pace.reserve(0.0) == 0.0
    assert pace.reserve(0.0) == pytest.approx(3.0)  # in call order, evenly spaced
    assert pace.reserve(1.0) == pytest.approx(5.0)
    pace.observe(2.0, Quota(remaining=0, reset=40.0))
    assert pace.reserve(2.0) == pytest.approx(40.0)  # nothing left: wait for the reset
    pace = ServerPace()
    pace.observe(0.0, Quota(limit=500, window=300))
    assert pace.spacing == pytest.approx(300 / 500 * SLACK)


def test_a_minute_window_is_learned_from_its_429s_with_two_probes() -> None:
    learner = WindowLearner()
    start = 1_700_000_040.0  # 40 s into a calendar minute
    for i in range(20):  # the quota went in the first 2 s
        learner.success(start + i * 0.1)
    first = learner.exhausted(start + 2.0)
    assert first == pytest.approx(1_700_000_043.05)  # just after the next second: a per-second limit?
    second = learner.refuted(first + 0.01)  # no: refused too
    assert second == pytest.approx(1_700_000_060.05)  # just after the minute
    spacing = learner.confirmed(second)  # it got through: a minute, 20 in it
    assert spacing == pytest.approx(60 / 20 * SLACK)
    assert learner.window == 60.0


def test_a_second_window_is_learned_with_one_probe_and_an_off_boundary_probe_teaches_nothing() -> None:
    learner = WindowLearner()
    for i in range(5):
        learner.success(NOW + 0.3 + i * 0.01)
    probe = learner.exhausted(NOW + 0.4)
    assert probe == pytest.approx(NOW + 1.05)
    assert learner.confirmed(probe) == pytest.approx(1 / 5 * SLACK)
    learner.exhausted(NOW + 5.5)
    learner.refuted(NOW + 6.1)
    learner.refuted(NOW + 60.1)  # not the minute either
    late = learner.refuted(NOW + 3600.1)  # nor the hour: plain backoff now
    assert late == pytest.approx(NOW + 3601.1)
    assert learner.confirmed(late) is None
