"""PreparePool: the same results as ``prepare``, in order, off the loop, never more than ``workers`` at once."""

from __future__ import annotations

import re
import threading

import anyio
import pytest

from batchcap.errors import InputError
from batchcap.prepare import PreparePool, PrepareSettings, default_workers, prepare


async def test_prepare_many_returns_in_order_with_errors_in_place(corpus: dict[str, bytes]) -> None:
    names = ["phone_portrait.jpg", "bomb.png", "tiny.jpg", "rgba.png", "not_an_image.jpg", "iphone.heic"]
    settings = PrepareSettings()
    pool = PreparePool(settings, workers=2)
    results = await pool.prepare_many([corpus[n] for n in names])
    assert [type(r).__name__ for r in results] == [
        "Prepared",
        "InputError",
        "Prepared",
        "Prepared",
        "InputError",
        "Prepared",
    ]
    for name, got in zip(names, results, strict=True):
        if isinstance(got, InputError):
            with pytest.raises(InputError, match=re.escape(str(got))):
                prepare(corpus[name], settings)
        else:
            assert got.data == prepare(corpus[name], settings).data, name


async def test_no_more_than_workers_run_at_once_and_the_loop_stays_free(corpus: dict[str, bytes]) -> None:
    active = peak = 0
    lock = threading.Lock()
    loop_free = threading.Event()  # set by a task on the event loop while both workers are busy

    def wire_size(n: int) -> int:  # runs inside prepare, on the worker thread
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        loop_free.wait(timeout=10)  # held until the loop shows it runs while the workers work
        with lock:
            active -= 1
        return n

    pool = PreparePool(PrepareSettings(), wire_size=wire_size, workers=2)

    async def loop_side() -> None:
        while True:
            with lock:
                if active == 2:
                    break
            await anyio.lowlevel.checkpoint()
        loop_free.set()

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(loop_side)
            await pool.prepare_many([corpus["web_50k.jpg"]] * 12, in_flight=8)
    assert loop_free.is_set(), "the event loop must keep running while images are prepared"
    assert peak == 2
    assert "workers=2" in repr(pool)


def test_default_workers_is_the_cores_we_may_use() -> None:
    assert 1 <= default_workers() <= 4096


async def test_ready_is_what_prepare_sends_with_errors_in_place(corpus: dict[str, bytes]) -> None:
    """The one path bench and the probe use: the same bytes as the run's triage + finish."""
    from batchcap.models import ImageJob, LoadedImage

    names = ["phone_portrait.jpg", "tiny.jpg", "bomb.png", "iphone.heic"]
    images = [LoadedImage(ImageJob(n, n, len(corpus[n])), corpus[n], "image/jpeg") for n in names]
    pool = PreparePool(PrepareSettings(), workers=2)
    got = await pool.ready(images)
    assert isinstance(got[2], InputError)  # the bomb, refused from its header
    for name, ready in zip(names, got, strict=True):
        if isinstance(ready, InputError):
            continue
        assert ready.data == prepare(corpus[name], PrepareSettings()).data, name
        assert ready.prep is not None
    tiny = got[1]
    assert isinstance(tiny, LoadedImage)
    assert tiny.prep is not None
    assert not tiny.prep.prepared  # a small plain JPEG goes as it is


async def test_max_side_0_sends_every_file_as_it_is(corpus: dict[str, bytes]) -> None:
    from batchcap.models import ImageJob, LoadedImage

    pool = PreparePool(PrepareSettings(max_side=0))
    photo = LoadedImage(ImageJob("p.jpg", "p.jpg", 1), corpus["phone_portrait.jpg"], "image/jpeg")
    assert pool.triage(photo) is photo
    assert not pool.needs_pixels(photo)
    assert await pool.finish(photo) is photo


def test_the_body_limit_is_counted_as_the_target_wraps_the_image() -> None:
    from batchcap.service.protocols import HFRaw, OpenAIChat

    raw = PreparePool.for_adapters(PrepareSettings(), [HFRaw()])
    both = PreparePool.for_adapters(PrepareSettings(), [HFRaw(), OpenAIChat(model="m", prompt="Describe.")])
    assert raw.wire_size(3000) == 3000
    assert both.wire_size(3000) > 4000  # base64 and the JSON around it: an image must fit every target
