"""The run guard: every run-level stop decided from plain exceptions and a fake clock, no server."""

from __future__ import annotations

import pytest
from fakes import FakeClock

from batchcap.errors import (
    AuthError,
    BadResponse,
    CreditsExhausted,
    ModelLoading,
    QueueFull,
    QuotaExhausted,
    RateLimited,
    RejectedImage,
    ServerError,
    TransportError,
    WrongTarget,
)
from batchcap.models import ErrorInfo, Record
from batchcap.run import REFUSAL_LIMIT, RunGuard
from batchcap.run.guard import refusal_key

URL = "https://router.example/hf-inference/models/org/m"


def rec(i: int) -> Record:
    return Record(f"{i}.jpg", "error", error=ErrorInfo("RejectedImage", "no", 400, False))


def guard(*, has_token: bool = True, max_wait: float = 60.0, clock: FakeClock | None = None) -> RunGuard:
    return RunGuard(url=URL, has_token=has_token, max_wait=max_wait, clock=clock or FakeClock(100.0))


def test_a_refused_token_stops_at_once_and_says_which_host() -> None:
    stop = guard().after_attempt(AuthError("HTTP 401", status=401))
    assert stop is not None
    assert stop.kind == "auth"
    assert stop.message == "the token was refused by router.example (HTTP 401): check HF_TOKEN or --token-file"


def test_a_missing_token_says_how_to_give_one() -> None:
    stop = guard(has_token=False).after_attempt(AuthError("HTTP 403", status=403))
    assert stop is not None
    assert "requires a token (HTTP 403) and none was found: set HF_TOKEN or pass --token-file" in stop.message


def test_a_wrong_target_stops_and_names_the_flags_to_check() -> None:
    stop = guard().after_attempt(WrongTarget("HTTP 404 from router.example: Not Found", status=404))
    assert stop is not None
    assert stop.kind == "wrong_target"
    assert stop.message.endswith(f"check --model / --endpoint / --base-url ({URL})")


@pytest.mark.parametrize("exc", [ServerError("500"), TransportError("reset"), RateLimited("429"),
                                 RejectedImage("400"), BadResponse("not JSON")])
def test_per_image_faults_never_stop_the_run_after_an_attempt(exc: Exception) -> None:
    assert guard().after_attempt(exc) is None  # type: ignore[arg-type]


def test_loading_forever_stops_only_after_max_wait_without_a_caption() -> None:
    clock = FakeClock(100.0)
    g = guard(max_wait=60.0, clock=clock)
    loading = ModelLoading("HTTP 503: loading", estimated_time=20.0)
    clock.now += 59.0
    assert g.after_attempt(loading) is None
    clock.now += 2.0
    stop = g.after_attempt(loading)
    assert stop is not None
    assert stop.kind == "stalled"
    assert "has not served a caption for 60 s" in stop.message
    g.succeeded()  # a caption arrived: the stall clock starts again
    assert g.after_attempt(loading) is None


def test_exhausted_credits_stop_at_once() -> None:
    stop = guard().after_attempt(CreditsExhausted("HTTP 402 from router.example: You have exceeded", status=402))
    assert stop is not None
    assert stop.kind == "credits"
    assert "credits of this account ran out" in stop.message
    assert "run the same command" in stop.message


def test_identical_refusals_before_any_success_are_held_then_stop_without_a_record() -> None:
    g = guard()
    refusal = RejectedImage("HTTP 400: unsupported task", status=400)
    for i in range(REFUSAL_LIMIT - 1):
        assert g.before_record(refusal, rec(i)) == (None, None)  # held, not written
    assert len(g.held) == REFUSAL_LIMIT - 1
    stop, record = g.before_record(refusal, rec(99))
    assert stop is not None
    assert record is None
    assert stop.kind == "refusals"
    assert f"the first {REFUSAL_LIMIT} images were all refused with the same answer" in stop.message
    assert g.release() == []  # the images given up on get no final record: the next run retries them


def test_held_refusals_are_released_by_the_first_caption_and_later_ones_are_written() -> None:
    g = guard()
    refusal = RejectedImage("HTTP 400: bad image", status=400)
    for i in range(3):
        g.before_record(refusal, rec(i))
    assert [r.path for r in g.succeeded()] == ["0.jpg", "1.jpg", "2.jpg"]
    assert g.before_record(refusal, rec(7)) == (None, rec(7))
    for _ in range(2 * REFUSAL_LIMIT):
        assert g.before_record(refusal, rec(8))[0] is None


def test_refusals_that_differ_only_in_volatile_text_are_the_same() -> None:
    a = RejectedImage("HTTP 400: handler failed on <PIL.Image object at 0x7f3a2c> with body 'aGVsbG8gd29ybGQgaGVsbG8gd29ybGQ='",
                      status=400)
    b = RejectedImage("HTTP 400: handler failed on <PIL.Image object at 0x7f99f0> with body 'c29tZXRoaW5nIGVsc2UgZW50aXJlbHkh'",
                      status=400)
    assert refusal_key(a) == refusal_key(b)
    assert refusal_key(a) != refusal_key(RejectedImage("HTTP 400: image too small", status=400))
    assert refusal_key(a) != refusal_key(RejectedImage(a.message, status=422))
    g = guard()
    for i in range(REFUSAL_LIMIT - 1):
        g.before_record(a if i % 2 else b, rec(i))
    assert g.before_record(a, rec(50))[0] is not None


def test_the_same_unreadable_answer_stops_the_run_too() -> None:
    g = guard()
    bad = BadResponse("answer has no \"generated_text\": b'\"just a string\"'", status=200)
    stops = [g.before_record(bad, rec(i))[0] for i in range(REFUSAL_LIMIT)]
    assert stops[:-1] == [None] * (REFUSAL_LIMIT - 1)
    assert stops[-1] is not None
    assert "same unreadable body" in stops[-1].message


def test_different_refusals_do_not_add_up_and_the_held_list_is_bounded() -> None:
    g = guard()
    for i in range(3 * (REFUSAL_LIMIT - 1)):  # three different answers, each one short of the limit
        assert g.before_record(RejectedImage(f"HTTP 400: bad image kind {'abc'[i % 3]}", status=400), rec(i))[0] is None
    g = guard()
    written = 0
    for i in range(10 * REFUSAL_LIMIT):  # all different: held up to a bound, then written at once
        stop, record = g.before_record(RejectedImage(f"HTTP 400: reason {chr(65 + i % 26)}{chr(65 + i // 26)}",
                                                     status=400), rec(i))
        assert stop is None
        written += record is not None
    assert len(g.held) <= 4 * REFUSAL_LIMIT
    assert written + len(g.held) == 10 * REFUSAL_LIMIT


def test_only_refusals_count() -> None:
    g = guard()
    for i in range(2 * REFUSAL_LIMIT):
        assert g.before_record(ServerError("HTTP 500", status=500), rec(i)) == (None, rec(i))


def test_a_quota_that_comes_back_after_max_wait_stops_and_says_when() -> None:
    g = guard(max_wait=300.0)
    soon = QuotaExhausted("GPU quota spent", retry_after=120.0, resets_at=1_000_120.0)
    assert g.after_attempt(soon) is None  # waited out
    late = QuotaExhausted("acme-blip.hf.space: GPU quota spent", retry_after=588.0, resets_at=1_000_588.0)
    stop = g.after_attempt(late)
    assert stop is not None
    assert stop.kind == "quota"
    assert "comes back in 0:09:48" in stop.message
    assert "local time" in stop.message
    assert "run the same command then to resume" in stop.message


@pytest.mark.parametrize("exc", [QueueFull("queue full"), QuotaExhausted("quota spent, no time named")])
def test_a_full_queue_or_a_timeless_quota_stops_only_when_nothing_was_captioned_for_max_wait(exc: Exception) -> None:
    clock = FakeClock(100.0)
    g = guard(max_wait=60.0, clock=clock)
    clock.now += 59.0
    assert g.after_attempt(exc) is None  # type: ignore[arg-type]
    clock.now += 2.0
    stop = g.after_attempt(exc)  # type: ignore[arg-type]
    assert stop is not None
    assert stop.kind == "stalled"
