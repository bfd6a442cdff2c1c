"""The one parser of a Space's words: quota texts become waits, busy texts back-pressure, the rest refusals."""

from __future__ import annotations

import orjson
import pytest

from batchcap.errors import (
    ModelLoading,
    QueueFull,
    QuotaExhausted,
    RateLimited,
    RejectedImage,
    ServerError,
    WrongTarget,
)
from batchcap.service.space import classify_error, classify_http, format_wait, parse_quota, parse_wait

#: ZeroGPU's texts (spaces 0.51.3) and the older one the issue quotes.
ZEROGPU = ("You have exceeded your free ZeroGPU quota (60s requested vs. 56s left). Try again in 0:09:48. "
           "Subscribe to Hugging Face PRO to get 40 min of ZeroGPU quota a day - https://huggingface.co/subscribe/pro")
OLDER = "You have exceeded your GPU quota (60s requested vs. 56s left). retry in 0:00:05"


@pytest.mark.parametrize(("text", "seconds"), [
    ("retry in 0:09:48", 588.0),
    ("Try again in 0:00:05.", 5.0),
    ("try again in 1 day, 2:03:04", 86400 + 7384.0),
    ("Try again in 0:00:12.500000. more", 12.5),
    ("no time named here", None),
])
def test_parse_wait(text: str, seconds: float | None) -> None:
    assert parse_wait(text) == seconds


def test_parse_quota_reads_requested_left_and_the_wait() -> None:
    words = parse_quota(ZEROGPU)
    assert words is not None
    assert (words.retry_after, words.requested_s, words.left_s) == (588.0, 60.0, 56.0)
    assert parse_quota("CUDA out of memory") is None
    assert format_wait(588) == "0:09:48"
    assert format_wait(90061) == "1 day, 1:01:01"


def test_a_quota_text_is_a_wait_with_the_time_it_comes_back() -> None:
    exc = classify_error(ZEROGPU, title="ZeroGPU quota exceeded", where="acme-blip.hf.space", now=1000.0)
    assert isinstance(exc, QuotaExhausted)
    assert isinstance(exc, RateLimited)
    assert exc.retry_after == 588.0
    assert exc.resets_at == 1588.0
    assert "comes back in 0:09:48" in exc.message
    older = classify_error(OLDER, where="h", now=0.0)
    assert isinstance(older, QuotaExhausted)
    assert older.retry_after == 5.0


@pytest.mark.parametrize("text", [
    "You have exceeded your ZeroGPU runs limit. ",
    "Space app has reached its GPU limit. Try re-running outside of examples if it happened after clicking one",
])
def test_a_quota_without_a_time_is_still_a_quota(text: str) -> None:
    exc = classify_error(text, where="h")
    assert isinstance(exc, QuotaExhausted)
    assert exc.retry_after is None


@pytest.mark.parametrize("text", [
    "No GPU was available after 60s. Try re-running outside of examples if it happened after clicking one",
    "You have too many ZeroGPU credits allocated to running tasks. Try again once some of those tasks have completed.",
])
def test_a_busy_gpu_is_back_pressure(text: str) -> None:
    assert isinstance(classify_error(text, title="ZeroGPU quota exceeded", where="h"), QueueFull)


def test_the_apps_own_errors_are_refusals_and_a_broken_stream_a_server_error() -> None:
    hidden = classify_error(None, where="h", request_id="ev1")
    assert isinstance(hidden, RejectedImage)
    assert "show_error" in hidden.message
    assert hidden.request_id == "ev1"
    shown = classify_error("The requested GPU duration (300s) is larger than the maximum allowed", title="ZeroGPU illegal duration", where="h")
    assert isinstance(shown, RejectedImage)
    assert "illegal duration" in shown.message
    assert isinstance(classify_error("404: Not Found", where="h"), ServerError)
    assert isinstance(classify_error("Server stopped unexpectedly.", where="h"), ServerError)


def test_http_answers_a_full_queue_is_queue_full_the_rest_as_any_service() -> None:
    full = classify_http(503, {}, b'{"detail":"Queue is full. Max size is 4 and size is 4."}', where="h")
    assert isinstance(full, QueueFull)
    assert "Max size is 4" in full.message
    assert isinstance(classify_http(503, {}, b"<html>starting</html>", where="h"), ModelLoading)
    assert isinstance(classify_http(404, {}, b'{"detail":"Not Found"}', where="h"), WrongTarget)
    bad = classify_http(422, {}, orjson.dumps({"detail": [{"msg": "JSON decode error"}]}), where="h")
    assert isinstance(bad, RejectedImage)
    assert "JSON decode error" in bad.message
