"""Run-level stops against small real servers: credits running out, a systematic refusal, a proxy's hiccups.

What a user relies on: a stop is one line, exit 3, and "run the same command again" is true: no image the
run gave up on keeps a final error record, so the next run captions exactly the rest.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import anyio
import orjson
import pytest
from aiohttp import web
from conftest import MODEL, RawServerFactory

from batchcap.config import RunConfig
from batchcap.errors import RunAborted
from batchcap.flow.retry import RetryPolicy
from batchcap.run import REFUSAL_LIMIT, run
from batchcap.source.samples import generate

CREDITS = (
    "You have exceeded your monthly included credits for Inference Providers. Subscribe to PRO to get 20x more "
    "monthly included credits."
)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    generate(tmp_path / "img", 60, seed=3)
    return tmp_path / "img"


def config(images: Path, out: Path, url: str, **kw: object) -> RunConfig:
    return RunConfig.build(input_dir=images, out=out, model=MODEL, api_base=url.rstrip("/"), rate=None, timeout=5.0,
                     **kw).validate()  # type: ignore[arg-type]


def lines(out: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in out.read_bytes().splitlines()]


async def test_credits_running_out_stop_the_run_at_once_and_a_later_run_does_the_rest(
    raw_server: RawServerFactory, images: Path, tmp_path: Path
) -> None:
    served = itertools.count()
    calls_after_402 = 0
    credits = [40]

    async def metered(request: web.BaseRequest) -> web.StreamResponse:
        nonlocal calls_after_402
        await request.read()
        if next(served) >= credits[0]:
            calls_after_402 += 1
            return web.json_response({"error": CREDITS}, status=402)
        return web.json_response([{"generated_text": "a caption"}])

    url = await raw_server(metered)
    out = tmp_path / "r.jsonl"
    cfg = config(images, out, url, concurrency=4)
    with anyio.fail_after(20), pytest.raises(RunAborted, match="credits of this account ran out") as info:
        await run(cfg, policy=RetryPolicy.immediate(attempts=3))
    assert info.value.kind == "credits"
    assert calls_after_402 <= 2 * cfg.limits.ceiling  # stopped at once, not one 402 per image
    first = lines(out)
    assert all(rec["status"] == "ok" for rec in first)  # no error record for the images not done
    assert len(first) == 40
    credits[0] = 10_000  # the next month
    with anyio.fail_after(20):
        stats = await run(cfg)
    assert stats.ok == 60 - 40
    assert stats.skipped == 40
    paths = [rec["path"] for rec in lines(out)]
    assert len(paths) == len(set(paths)) == 60


async def test_the_same_refusal_for_every_image_stops_without_final_records(
    raw_server: RawServerFactory, images: Path, tmp_path: Path
) -> None:
    fixed = [False]
    ids = itertools.count()

    async def container(request: web.BaseRequest) -> web.StreamResponse:
        await request.read()
        if fixed[0]:
            return web.json_response([{"generated_text": "fine now"}])
        # the toolkit's 400 for a handler exception: Python noise differs from request to request
        return web.json_response({"error": f"'NoneType' object is not subscriptable at 0x7f{next(ids):08x}"},
                                 status=400)

    url = await raw_server(container)
    out = tmp_path / "r.jsonl"
    cfg = config(images, out, url, concurrency=2)
    with anyio.fail_after(20), pytest.raises(RunAborted, match="all refused with the same answer"):
        await run(cfg, policy=RetryPolicy.immediate())
    assert not out.exists() or lines(out) == []  # the images given up on have no record
    fixed[0] = True  # the user fixed the flag or the handler: the same command now does everything
    with anyio.fail_after(20):
        stats = await run(cfg)
    assert stats.ok == 60


async def test_a_few_refusals_then_captions_keep_their_error_records(
    raw_server: RawServerFactory, images: Path, tmp_path: Path
) -> None:
    served = itertools.count()

    async def picky(request: web.BaseRequest) -> web.StreamResponse:
        await request.read()
        if next(served) < 5:
            return web.json_response({"error": "image too small"}, status=422)
        return web.json_response([{"generated_text": "ok"}])

    out = tmp_path / "r.jsonl"
    cfg = config(images, out, await raw_server(picky), concurrency=1)
    with anyio.fail_after(20):
        stats = await run(cfg, policy=RetryPolicy.immediate())
    assert (stats.ok, stats.failed) == (55, 5)
    errors = [rec for rec in lines(out) if rec["status"] == "error"]
    assert len(errors) == 5  # held while nothing had succeeded, written once a caption came


async def test_garbled_and_cut_short_200s_are_retried_not_final(
    raw_server: RawServerFactory, images: Path, tmp_path: Path
) -> None:
    served = itertools.count()

    async def flaky_proxy(request: web.BaseRequest) -> web.StreamResponse:
        await request.read()
        n = next(served)
        if n % 4 == 1:
            return web.Response(text='[{"generated_te', content_type="application/json")  # garbled JSON, 200
        if n % 4 == 2:
            response = web.StreamResponse(headers={"Content-Length": "200", "Content-Type": "application/json"})
            await response.prepare(request)
            await response.write(b'[{"generated_text": "cut')
            assert request.transport is not None
            request.transport.close()
            return response
        return web.json_response([{"generated_text": "a caption"}])

    out = tmp_path / "r.jsonl"
    cfg = config(images, out, await raw_server(flaky_proxy), concurrency=2)
    with anyio.fail_after(30):
        stats = await run(cfg, policy=RetryPolicy(retries=5, base=0.0, cap=0.0))
    assert (stats.ok, stats.failed) == (60, 0)
    assert all(rec["status"] == "ok" for rec in lines(out))


async def test_a_handler_that_always_answers_a_bare_string_stops_the_run(
    raw_server: RawServerFactory, images: Path, tmp_path: Path
) -> None:
    async def bare(request: web.BaseRequest) -> web.StreamResponse:
        await request.read()
        return web.json_response("a caption, but not in a list")

    out = tmp_path / "r.jsonl"
    with anyio.fail_after(30), pytest.raises(RunAborted, match="same unreadable body"):
        await run(config(images, out, await raw_server(bare), concurrency=2), policy=RetryPolicy.immediate())
    assert not out.exists() or lines(out) == []
    assert REFUSAL_LIMIT <= 60
