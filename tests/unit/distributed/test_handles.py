"""The worker-side handles of the Ray job's actors, against a 10-line fake actor (no Ray needed)."""

from __future__ import annotations

from typing import Any

from batchcap.distributed.limiter import RemoteLimiter, SharedLimiter
from batchcap.distributed.tally import ProgressHub, RemoteProgress


class _Method:
    def __init__(self, fn: Any, calls: list[str]) -> None:
        self.fn, self.calls = fn, calls

    def remote(self, *args: Any) -> Any:
        self.calls.append(self.fn.__name__)
        return _Ref(self.fn(*args))


class _Ref:
    """Awaitable like a Ray ObjectRef; dropping it unawaited (fire and forget) is fine, as with Ray."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Any:
        return self.value
        yield  # a generator: awaiting it returns the value at once


class FakeActor:
    """``actor.method.remote(...)`` runs the method at once, as a Ray actor would (one call at a time)."""

    def __init__(self, obj: Any) -> None:
        self.obj, self.calls = obj, []

    def __getattr__(self, name: str) -> _Method:
        return _Method(getattr(self.obj, name), self.calls)


def test_unlimited_limiter_never_calls_the_actor_until_a_429() -> None:
    actor = FakeActor(SharedLimiter(None, 4))
    lim = RemoteLimiter(actor, None)
    assert lim.try_acquire()
    lim.succeeded()
    assert actor.calls == []
    lim.throttled(None)
    assert not lim.try_acquire()  # from now on the job's bucket decides
    assert actor.calls == ["throttled"]
    assert actor.obj.stats()[2] is not None  # the job's bucket is limited now


async def test_limited_bucket_reports_successes_in_batches() -> None:
    actor = FakeActor(SharedLimiter(40.0, 4))
    lim = RemoteLimiter(actor, 40.0)
    assert not lim.try_acquire()
    for _ in range(4):
        assert await lim.acquire() == 0.0  # the burst
    for _ in range(100):
        lim.succeeded()
    assert actor.calls.count("reserve") == 4
    assert actor.calls.count("succeeded") <= 1  # at most one per 0.5 s, not one per success


def test_progress_is_sent_in_batches() -> None:
    hub = ProgressHub()
    actor = FakeActor(hub)
    p = RemoteProgress(actor, "shard 1/2: ")
    for _ in range(1000):
        p.done(1, 0)
    p.note("rate-limited")
    p.concurrency("c=3/8")  # a worker's own: not sent
    p.close()
    assert len(actor.calls) <= 3
    assert hub.take() == (0, 1000, 0, "shard 1/2: rate-limited")
