"""The run guard: every run-level stop decided from plain exceptions and a fake clock, no server."""

from __future__ import annotations

import anyio
import pytest
from fakes import FakeClock

from batchcap.errors import (
    APIError,
    AuthError,
    BadResponse,
    CannotConnect,
    CreditsExhausted,
    JournalError,
    ModelLoading,
    QueueFull,
    QuotaExhausted,
    RateLimited,
    RejectedImage,
    RunAborted,
    ServerError,
    TransportError,
    WrongTarget,
)
from batchcap.models import ErrorInfo, Record
from batchcap.run import REFUSAL_LIMIT, RunGuard
from batchcap.run.guard import (
    BAD_CAPTION_IMAGES,
    CONNECT_FAILURES,
    SERVER_ERROR_IMAGES,
    Stop,
    every_target_spent,
    first_stop,
    lane_verdict,
    refusal_key,
)

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
    g.succeeded()
    assert [r.path for r in g.release()] == ["0.jpg", "1.jpg", "2.jpg"]
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


def test_only_refusals_and_answers_before_any_success_are_held() -> None:
    g = guard()
    assert g.before_record(TransportError("reset"), rec(1)) == (None, rec(1))
    assert g.before_record(ServerError("HTTP 500", status=500), rec(2)) == (None, None)  # held: maybe systematic
    g.succeeded()
    assert g.release() == [rec(2)]
    for i in range(2 * REFUSAL_LIMIT):  # after a success, every failure is the image's own
        assert g.before_record(ServerError("HTTP 500", status=500), rec(i)) == (None, rec(i))


# -- issue 17: what will never work stops the run; what is only down does not ----------------------------------


def refused(host: str = "127.0.0.1:8099", cause: str = "refused") -> CannotConnect:
    return CannotConnect(f"cannot connect to {host}: Connection refused", host=host, cause=cause)  # type: ignore[arg-type]


@pytest.mark.parametrize(("cause", "says"), [("refused", "nothing is listening there"),
                                             ("dns", "does not resolve"), ("tls", "TLS handshake failed")])
def test_no_connection_before_any_answer_is_a_wrong_target_named_with_its_likely_cause(cause: str, says: str) -> None:
    g = guard()
    stops = [g.after_attempt(refused(cause=cause), f"{i}.jpg") for i in range(CONNECT_FAILURES)]
    assert stops[:-1] == [None] * (CONNECT_FAILURES - 1)
    stop = stops[-1]
    assert stop is not None
    assert stop.kind == "wrong_target"
    assert "cannot connect to 127.0.0.1:8099" in stop.message
    assert says in stop.message
    assert "\n" not in stop.message


def test_no_connection_after_the_target_answered_is_an_outage_not_a_stop() -> None:
    g = guard()
    g.after_attempt(ServerError("HTTP 500 from x: boom", status=500), "a.jpg")  # it answered (an error, even)
    for i in range(10 * CONNECT_FAILURES):
        assert g.after_attempt(refused(), f"{i}.jpg") is None


def test_the_same_5xx_for_the_first_images_stops_the_run() -> None:
    g = guard()
    boom = ServerError("HTTP 500 from proxy: litellm.InternalServerError: upstream down, retried 3 times", status=500)
    for i in range(SERVER_ERROR_IMAGES - 1):
        for _ in range(3):  # several attempts of one image count once
            assert g.after_attempt(boom, f"{i}.jpg") is None
    stop = g.after_attempt(ServerError(boom.message.replace("3", "4"), status=500), "last.jpg")
    assert stop is not None
    assert stop.kind == "server_errors"
    assert "upstream down" in stop.message


def test_different_5xx_or_a_caption_between_them_do_not_stop() -> None:
    g = guard()
    for i in range(3 * (SERVER_ERROR_IMAGES - 1)):  # three different answers, each one image short
        assert g.after_attempt(ServerError(f"HTTP 500: failure kind {'abc'[i % 3]}", status=500), f"{i}.jpg") is None
    g = guard()
    g.succeeded()
    for i in range(3 * SERVER_ERROR_IMAGES):
        assert g.after_attempt(ServerError("HTTP 500: the same", status=500), f"{i}.jpg") is None


@pytest.mark.parametrize("exc", [RateLimited("HTTP 429 from x: Too many requests"), refused(),
                                 ModelLoading("HTTP 503: loading"), ServerError("HTTP 504", status=504)])
def test_nothing_but_failures_for_max_wait_stops_from_the_watchdog(exc: APIError) -> None:
    clock = FakeClock(100.0)
    g = guard(max_wait=20.0, clock=clock)
    g.answered = True  # an outage, not a wrong target
    assert g.tick() is None  # no failure yet: a slow start is no stall
    g.after_attempt(exc, "a.jpg")
    clock.now += 19.0
    assert g.tick() is None
    clock.now += 2.0
    stop = g.tick()
    assert stop is not None
    assert stop.kind == "stalled"
    assert "20 s" in stop.message
    assert "run the same command" in stop.message


def test_429_forever_says_rate_limited_and_a_sleep_does_not_count() -> None:
    clock = FakeClock(100.0)
    g = guard(max_wait=20.0, clock=clock)
    g.after_attempt(RateLimited("HTTP 429 from x: slow down"), "a.jpg")
    clock.now += 60.0
    g.slept(50.0)  # the laptop slept 50 of those 60 s
    assert g.tick() is None
    clock.now += 11.0
    stop = g.tick()
    assert stop is not None
    assert "only 429" in stop.message


def flagged(i: int, flags: tuple[str, ...] = ("empty",)) -> Record:
    return Record(f"{i}.jpg", "ok", caption="", flags=flags)


def test_every_caption_failing_the_gates_alike_stops_the_run_and_none_is_written() -> None:
    g = guard()
    for i in range(BAD_CAPTION_IMAGES - 1):
        assert g.before_ok(flagged(i)) == (None, None)  # held
    stop, record = g.before_ok(flagged(99))
    assert record is None
    assert stop is not None
    assert stop.kind == "bad_captions"
    assert "(empty)" in stop.message
    assert g.release() == []


def test_a_clean_caption_releases_the_flagged_ones_and_then_nothing_is_held() -> None:
    g = guard()
    for i in range(3):
        g.before_ok(flagged(i, ("refusal",)))
    clean = Record("c.jpg", "ok", caption="a dog")
    assert g.before_ok(clean) == (None, clean)
    assert [r.path for r in g.release()] == ["0.jpg", "1.jpg", "2.jpg"]
    assert g.before_ok(flagged(7)) == (None, flagged(7))


def test_a_small_folder_refused_alike_stops_at_the_end_but_mixed_answers_are_written() -> None:
    g = guard()
    wrong_key = RejectedImage("HTTP 400 from proxy: No such thing, try again", status=400)
    for i in range(5):
        g.before_record(wrong_key, rec(i))
    stop = g.at_end()
    assert stop is not None
    assert stop.kind == "refusals"
    assert "all 5 images were refused with the same answer" in stop.message
    g = guard()
    g.before_record(wrong_key, rec(1))
    g.before_record(RejectedImage("HTTP 400: image too small", status=400), rec(2))
    assert g.at_end() is None
    assert len(g.release()) == 2
    g = guard()
    g.before_record(wrong_key, rec(1))  # one image: no evidence that it is not about the image
    assert g.at_end() is None
    assert g.release() == [rec(1)]


def test_stops_drain_one_of_several_targets_and_the_last_one_stops_the_run() -> None:
    assert lane_verdict("credits") == "drain"
    assert lane_verdict("server_errors") == "drain"
    assert lane_verdict("journal") == "stop"
    stop = every_target_spent([("a", "credits ran out", "credits"), ("b", "credits ran out", "credits")])
    assert stop.kind == "credits"
    assert stop.message == "every target is spent (a: credits ran out; b: credits ran out)"
    assert every_target_spent([("a", "x", "credits"), ("b", "y", "auth")]).kind == "targets_spent"


async def test_first_stop_reports_the_verdict_and_raises_a_bug() -> None:
    group = BaseExceptionGroup("g", [anyio.get_cancelled_exc_class()(), RunAborted("no credits", kind="credits")])
    assert first_stop([group]) == Stop("credits", "no credits")
    assert first_stop([JournalError("disk full")]) == Stop("journal", "disk full")
    assert first_stop([]) is None
    with pytest.raises(KeyError):
        first_stop([ExceptionGroup("g", [KeyError("bug")])])


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
