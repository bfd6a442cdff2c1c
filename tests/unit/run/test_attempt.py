"""``Captioner``: one image's attempts, through a fake caller and a fake clock (no socket, no real sleep)."""

from __future__ import annotations

import anyio
import pytest
from fakes import FakeCaller, FakeClock, image, ok

from batchcap.errors import (
    AuthError,
    CreditsExhausted,
    ModelLoading,
    RateLimited,
    RejectedImage,
    RunAborted,
    ServerError,
)
from batchcap.flow.ratelimit import RateLimiter
from batchcap.flow.retry import RetryPolicy
from batchcap.progress import NullProgress
from batchcap.run.attempt import Captioner
from batchcap.run.guard import RunGuard
from batchcap.run.stats import RunStats
from batchcap.service.protocols import OpenAIChat
from batchcap.tasks.quality import QualitySettings

URL = "https://router.example/hf-inference/models/org/m"


def captioner(
    caller: FakeCaller, clock: FakeClock, *, policy: RetryPolicy | None = None, rate: float | None = None,
    quality: QualitySettings | None = None, max_wait: float = 60.0, prompt: str | None = None,
) -> Captioner:
    return Captioner(
        caller,
        limiter=RateLimiter(rate, 1, clock=clock, sleep=clock.sleep),
        policy=policy or RetryPolicy(retries=2, base=1.0, cap=1.0, wait_cap=30.0, wait_budget=100.0),
        guard=RunGuard(url=URL, has_token=True, max_wait=max_wait, clock=clock),
        stats=RunStats(),
        progress=NullProgress(),
        target="hf:org/m",
        seed=1,
        quality=quality,
        prompt=prompt,
        sleep=clock.sleep,
    )


async def test_a_caption_on_the_first_attempt() -> None:
    clock = FakeClock()
    c = captioner(FakeCaller(ok("a red bicycle", nbytes=4321)), clock)
    rec = await c.ask(image("bike.jpg"))
    assert rec is not None
    assert (rec.path, rec.status, rec.caption, rec.attempts, rec.bytes_sent) == ("bike.jpg", "ok", "a red bicycle",
                                                                                 1, 4321)
    assert (c.stats.attempts, c.stats.retries, clock.sleeps) == (1, 0, [])


async def test_a_server_error_is_retried_after_a_backoff() -> None:
    clock = FakeClock()
    caller = FakeCaller(ServerError("busy", status=500), ok())
    c = captioner(caller, clock)
    rec = await c.ask(image())
    assert rec is not None
    assert (rec.status, rec.attempts, c.stats.retries) == ("ok", 2, 1)
    assert len(clock.sleeps) == 1
    assert 0 < clock.sleeps[0] <= 1.0  # full jitter under the first ceiling (base 1 s)


async def test_retries_run_out_into_a_retryable_error_record() -> None:
    clock = FakeClock()
    c = captioner(FakeCaller(repeat=ServerError("down", status=502)), clock)
    assert await c.ask(image()) is None  # held: before any caption, the same 5xx may be the target's fault
    (rec,) = c.finish()  # the run ended with one such image: no systematic fault, the record is real
    assert rec.status == "error"
    assert rec.error is not None
    assert (rec.error.type, rec.error.retryable, rec.error.http_status, rec.attempts) == ("ServerError", True, 502, 3)


async def test_a_429_pauses_the_limiter_and_waits_the_hint_without_spending_a_retry() -> None:
    clock = FakeClock()
    caller = FakeCaller(RateLimited("slow down", retry_after=4.0), RateLimited("slow down", retry_after=4.0),
                        RateLimited("slow down", retry_after=4.0), ok())
    c = captioner(caller, clock, rate=10.0)
    rec = await c.ask(image())
    assert rec is not None
    assert (rec.status, rec.attempts) == ("ok", 4)  # three waits, though only two retries were allowed
    assert c.stats.throttled == 3
    assert sum(clock.sleeps) >= 12.0  # each hint honoured (by the limiter's pause, then the attempt's wait)
    assert c.limiter.bucket.rate < 10.0  # the whole pool slowed down


async def test_a_refused_image_is_held_until_a_caption_shows_the_target_works() -> None:
    clock = FakeClock()
    caller = FakeCaller(RejectedImage("bad image", status=400), ok())
    c = captioner(caller, clock)
    assert await c.ask(image("odd.png")) is None  # held: the same refusal for every image would be a stop
    rec = await c.ask(image("fine.jpg"))
    assert rec is not None
    assert rec.status == "ok"
    assert [r.path for r in c.released] == ["odd.png"]  # now safe to write
    assert c.released[0].error is not None
    assert c.released[0].error.retryable is False


async def test_the_same_refusal_for_every_image_stops_the_run_and_records_none() -> None:
    clock = FakeClock()
    c = captioner(FakeCaller(repeat=RejectedImage("unsupported task", status=400)), clock)
    c.guard.refusal_limit = 3
    assert await c.ask(image("1.jpg")) is None
    assert await c.ask(image("2.jpg")) is None
    with pytest.raises(RunAborted) as stopped:
        await c.ask(image("3.jpg"))
    assert stopped.value.kind == "refusals"
    assert c.finish() == []  # the next run retries them all


@pytest.mark.parametrize(("error", "kind"), [(AuthError("no", status=401), "auth"),
                                             (CreditsExhausted("spent", status=402), "credits")])
async def test_a_run_level_fault_stops_at_once(error: Exception, kind: str) -> None:
    clock = FakeClock()
    caller = FakeCaller(error)
    with pytest.raises(RunAborted) as stopped:
        await captioner(caller, clock).ask(image())
    assert stopped.value.kind == kind
    assert len(caller.calls) == 1
    assert clock.sleeps == []


async def test_a_model_that_keeps_loading_past_max_wait_stops_the_run() -> None:
    clock = FakeClock()
    c = captioner(FakeCaller(repeat=ModelLoading("loading", estimated_time=20.0)), clock, max_wait=60.0,
                  policy=RetryPolicy(retries=0, wait_cap=30.0, wait_budget=1000.0))
    with pytest.raises(RunAborted) as stopped:
        await c.ask(image())
    assert stopped.value.kind == "stalled"
    assert 60.0 < clock.now <= 80.0  # waited the server's estimates (no retry spent), then gave up


async def test_a_bad_caption_is_asked_again_then_kept_with_its_flags() -> None:
    clock = FakeClock()
    caller = FakeCaller(ok(""), ok("I'm sorry, I can't help with that."), ok(""))
    c = captioner(caller, clock, quality=QualitySettings(quality_retries=2))
    assert await c.ask(image()) is None  # held until a clean caption (every caption empty stops the run)
    (rec,) = c.finish()  # one image is no evidence of that: kept with its flags
    assert (rec.status, rec.attempts, rec.flags) == ("ok", 3, ("empty",))
    assert c.stats.quality_retries == 2


async def test_on_bad_caption_error_records_a_bad_caption() -> None:
    clock = FakeClock()
    c = captioner(FakeCaller(ok(""), ok("")), clock, quality=QualitySettings(quality_retries=1, on_bad_caption="error"))
    rec = await c.ask(image())
    assert rec is not None
    assert rec.error is not None
    assert (rec.status, rec.error.type, rec.error.retryable) == ("error", "BadCaption", False)


async def test_a_chat_target_is_asked_again_a_little_warmer() -> None:
    clock = FakeClock()
    chat = OpenAIChat(model="m", prompt="Describe it.", temperature=0.0)
    caller = FakeCaller(ok("Describe it."), ok("a dog on a beach"), adapter=chat)
    c = captioner(caller, clock, quality=QualitySettings(quality_retries=2), prompt="Describe it.")
    rec = await c.ask(image())
    assert rec is not None
    assert rec.caption == "a dog on a beach"
    first, second = (adapter for _, adapter in caller.calls)
    assert first is chat  # the client's own adapter
    assert isinstance(second, OpenAIChat)
    assert second.temperature > chat.temperature


async def test_senders_share_one_rate() -> None:
    clock = FakeClock(scheduled=True)
    caller = FakeCaller(repeat=ok())
    c = captioner(caller, clock, rate=2.0)
    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(c.ask, image(f"{i}.jpg"))
        await clock.run()
    assert len(caller.calls) == 5
    assert clock.now == pytest.approx(2.0)  # burst 1, then one every 0.5 s
