"""``Router``: failover and spread over lanes of fake callers; a lane that fails run-level is drained."""

from __future__ import annotations

import anyio
import pytest
from fakes import FakeCaller, FakeClock, image, ok

from batchcap.errors import AuthError, CreditsExhausted, RunAborted
from batchcap.flow.ratelimit import RateLimiter
from batchcap.flow.retry import RetryPolicy
from batchcap.models import LoadedImage, Record
from batchcap.progress import NullProgress
from batchcap.run.attempt import Captioner
from batchcap.run.guard import RunGuard
from batchcap.run.route import Lane, Router
from batchcap.run.stats import RunStats
from batchcap.service.client import Reply


async def one(r: Router, im: LoadedImage) -> Record | None:
    """``im``'s one record (its one task), or None."""
    got: list[Record] = []
    await r.caption(im, got.append)
    return got[0] if got else None


def router(callers: dict[str, FakeCaller], *, route: str = "failover", concurrency: int = 1,
           prices: dict[str, float] | None = None, clock: FakeClock | None = None) -> Router:
    clock = clock or FakeClock()
    stats = RunStats()
    released: list[Record] = []
    lanes = [
        Lane(name, Captioner(caller, limiter=RateLimiter(None, 1, clock=clock, sleep=clock.sleep),
                             policy=RetryPolicy.immediate(), stats=stats, progress=NullProgress(),
                             guard=RunGuard(url=f"https://{name}.example/", has_token=True, max_wait=60.0, clock=clock),
                             target=f"{name}=hf:m", released=released, sleep=clock.sleep),
             concurrency, price_per_hour=(prices or {}).get(name))
        for name, caller in callers.items()
    ]
    return Router(lanes, route=route, released=released, clock=clock)


async def test_failover_sends_to_the_first_until_it_is_spent_then_the_next() -> None:
    a = FakeCaller(ok("from a"), CreditsExhausted("credits spent", status=402))
    b = FakeCaller(repeat=ok("from b"))
    r = router({"a": a, "b": b})
    async with r:
        records = [await one(r, image(f"{i}.jpg")) for i in range(3)]
    assert [rec.caption for rec in records if rec is not None] == ["from a", "from b", "from b"]
    assert [path for path, _ in a.calls] == ["0.jpg", "1.jpg"]  # 1.jpg moved to b when a was drained
    assert r.drained.keys() == {"a"}
    assert "credits" in r.drained["a"]
    assert (a.entered, a.closed, b.closed) == (True, True, True)  # every client opened and closed with the router


async def test_every_target_spent_stops_the_run_with_their_reasons() -> None:
    r = router({"a": FakeCaller(AuthError("bad token", status=401)),
                "b": FakeCaller(CreditsExhausted("spent", status=402))})
    async with r:
        with pytest.raises(RunAborted) as stopped:
            await one(r, image())
    assert stopped.value.kind == "targets_spent"  # two different reasons
    assert "a:" in str(stopped.value)
    assert "b:" in str(stopped.value)


async def test_spread_fills_the_lane_with_room() -> None:
    a, b = FakeCaller(repeat=ok("a")), FakeCaller(repeat=ok("b"))
    a.gate = b.gate = anyio.Event()  # hold every request in flight
    r = router({"a": a, "b": b}, route="spread", concurrency=2)
    assert r.senders == 4
    got: list[Record | None] = []

    async def send(i: int) -> None:
        got.append(await one(r, image(f"{i}.jpg")))

    async with r, anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(send, i)
        await anyio.wait_all_tasks_blocked()
        assert (a.in_flight, b.in_flight) == (2, 2)  # each lane's room filled, none over its concurrency
        tg.start_soon(send, 4)
        await anyio.wait_all_tasks_blocked()
        assert a.in_flight + b.in_flight == 4  # the fifth waits for a free slot
        assert a.gate is not None
        a.gate.set()
    assert len(got) == 5
    assert sum(1 for path, _ in a.calls + b.calls) == 5


async def test_the_summary_prices_each_lane_by_its_busy_time() -> None:
    clock = FakeClock()

    def answer_in_2_s(_: object) -> Reply:
        clock.advance(2.0)
        return ok()

    r = router({"a": FakeCaller(answer_in_2_s, answer_in_2_s)}, prices={"a": 360.0}, clock=clock)
    async with r:
        await one(r, image("1.jpg"))
        await one(r, image("2.jpg"))
    (info,) = r.summary().values()
    assert (info["name"], info["drained"], info["busy_s"]) == ("a", None, 4.0)
    assert info["cost"] == pytest.approx(0.4)  # 4 s at $360/h
