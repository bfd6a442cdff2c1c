"""The run guard: every run-level stop decided from plain exceptions and a fake clock, no server."""

from __future__ import annotations

import pytest

from batchcap.errors import (
    AuthError,
    BadResponse,
    ModelLoading,
    RateLimited,
    RejectedImage,
    ServerError,
    TransportError,
    WrongTarget,
)
from batchcap.run import REFUSAL_LIMIT, RunGuard

URL = "https://router.example/hf-inference/models/org/m"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def guard(*, has_token: bool = True, max_wait: float = 60.0, clock: Clock | None = None) -> RunGuard:
    return RunGuard(url=URL, has_token=has_token, max_wait=max_wait, clock=clock or Clock())


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
    clock = Clock()
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


def test_identical_refusals_before_any_success_stop_at_the_limit() -> None:
    g = guard()
    refusal = RejectedImage("HTTP 400: unsupported task", status=400)
    for _ in range(REFUSAL_LIMIT - 1):
        assert g.before_record(refusal) is None
    stop = g.before_record(refusal)
    assert stop is not None
    assert stop.kind == "refusals"
    assert f"the first {REFUSAL_LIMIT} images were all refused with the same answer" in stop.message


def test_different_refusals_or_a_success_do_not_add_up() -> None:
    g = guard()
    for i in range(3 * (REFUSAL_LIMIT - 1)):  # three different answers, each one short of the limit
        assert g.before_record(RejectedImage(f"HTTP 400: bad image {i % 3}", status=400)) is None
    g = guard()
    g.succeeded()
    for _ in range(2 * REFUSAL_LIMIT):
        assert g.before_record(RejectedImage("HTTP 400: same", status=400)) is None


def test_only_refusals_count() -> None:
    g = guard()
    for _ in range(2 * REFUSAL_LIMIT):
        assert g.before_record(ServerError("HTTP 500", status=500)) is None
