"""The feed and sink between the stages: order, bounds, wake-ups and closing, on the real event loop."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from batchcap.models import ImageJob, LoadedImage, Record
from batchcap.run.queues import Feed, Sink


def image(i: int) -> LoadedImage:
    return LoadedImage(ImageJob(f"{i}.jpg", f"/x/{i}.jpg", 1), b"x", "image/jpeg")


def record(i: int) -> Record:
    return Record(f"{i}.jpg", "ok", caption="c")


async def test_feed_hands_images_out_in_order_without_waiting_while_some_are_queued() -> None:
    feed = Feed(capacity=10)
    await feed.put([image(i) for i in range(3)])
    assert [feed.pop().job.path for _ in range(3)] == ["0.jpg", "1.jpg", "2.jpg"]  # type: ignore[union-attr]
    assert feed.pop() is None


async def test_feed_put_waits_while_full_and_resumes_when_a_sender_takes_one() -> None:
    feed = Feed(capacity=2)
    await feed.put([image(0), image(1)])
    put_done = anyio.Event()

    async def reader() -> None:
        await feed.put([image(2)])
        put_done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        await anyio.wait_all_tasks_blocked()
        assert not put_done.is_set()  # bounded: the reader is held back
        assert feed.pop() is not None
        with anyio.fail_after(2):
            await put_done.wait()


async def test_feed_next_sleeps_until_a_batch_then_returns_none_once_closed_and_empty() -> None:
    feed = Feed(capacity=4)
    got: list[str | None] = []

    async def sender() -> None:
        while (img := await feed.next()) is not None:
            got.append(img.job.path)
        got.append(None)

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(sender)
            await anyio.wait_all_tasks_blocked()
            await feed.put([image(7)])
            await anyio.wait_all_tasks_blocked()
            feed.close()
    assert got == ["7.jpg", None]


async def test_sink_batches_records_and_drains_on_close() -> None:
    sink = Sink(flush_at=3, high_water=100, interval=10.0)
    for i in range(3):
        sink.put(record(i))
    with anyio.fail_after(2):
        assert [r.path for r in (await sink.take() or [])] == ["0.jpg", "1.jpg", "2.jpg"]
    sink.put(record(3))
    sink.close()
    with anyio.fail_after(2):
        assert [r.path for r in (await sink.take() or [])] == ["3.jpg"]
        assert await sink.take() is None


async def test_sink_wakes_the_writer_on_its_interval_for_a_partial_batch() -> None:
    sink = Sink(flush_at=100, high_water=1000, interval=0.02)
    sink.put(record(0))
    with anyio.fail_after(2):
        batch = await sink.take()
    assert batch is not None
    assert len(batch) == 1


async def test_sink_reports_full_past_high_water_and_frees_senders_when_taken() -> None:
    sink = Sink(flush_at=1000, high_water=2, interval=10.0)
    sink.put(record(0))
    assert not sink.full
    sink.put(record(1))
    assert sink.full
    freed = anyio.Event()

    async def sender() -> None:
        await sink.wait_room()
        freed.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(sender)
        await anyio.wait_all_tasks_blocked()
        assert not freed.is_set()
        sink.close()  # take() returns at once when closed
        assert await sink.take() is not None
        with anyio.fail_after(2):
            await freed.wait()


@pytest.mark.parametrize("capacity", [1, 5])
async def test_feed_never_loses_or_duplicates_an_image(capacity: int) -> None:
    feed = Feed(capacity=capacity)
    seen: list[str] = []

    async def reader() -> None:
        for start in range(0, 50, 7):
            await feed.put([image(i) for i in range(start, min(start + 7, 50))])
        feed.close()

    async def sender() -> None:
        while (img := feed.pop()) is not None or (img := await feed.next()) is not None:
            seen.append(img.job.path)
            await anyio.lowlevel.checkpoint()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            for _ in range(3):
                tg.start_soon(sender)
    assert sorted(seen) == sorted(f"{i}.jpg" for i in range(50))
