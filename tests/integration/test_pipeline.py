"""End to end over loopback: the real pipeline against the real emulator. Exact captions, nothing lost."""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from conftest import RawServerFactory

from batchcap.config import RunConfig
from batchcap.emulator import (
    DEFAULT_MODEL_ID,
    EmulatorSettings,
    RunningEmulator,
    chat_answer_for,
)
from batchcap.errors import RunAborted
from batchcap.flow.retry import RetryPolicy
from batchcap.run import manifest_path, run
from batchcap.service.auth import Secret
from batchcap.service.settings import DEFAULT_PROMPT
from batchcap.source.samples import generate

Emulator = Callable[[EmulatorSettings], Awaitable[RunningEmulator]]
MODEL = DEFAULT_MODEL_ID
TOKEN = "hf_emulator_token"


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def expected(folder: Path, prompt: str | None = None) -> dict[str, str]:
    """Each image's answer: its pixels' caption (a chat target's is tagged by the prompt it was asked)."""
    return {
        p.relative_to(folder).as_posix(): chat_answer_for(p.read_bytes(), prompt)
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in {".jpg", ".jpeg", ".png", ".gif", ".webp"}
    }


def cfg_for(server: RunningEmulator, folder: Path, out: Path, **kw: Any) -> RunConfig:
    base: dict[str, Any] = {"input_dir": folder, "out": out, "model": MODEL,
                            "api_base": f"{server.url}/hf-inference", "concurrency": 8, "rate": None, "burst": 8,
                            "timeout": 5.0}
    base.update(kw)
    return RunConfig.build(**base).validate()


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    generate(folder, 40, seed=3)
    return folder


@pytest.mark.parametrize("shape", ["serverless", "endpoint", "openai", "hf-json"])
async def test_every_image_gets_its_exact_caption(emulator: Emulator, images: Path, tmp_path: Path, shape: str) -> None:
    server = await emulator(EmulatorSettings())
    out = tmp_path / "out.jsonl"
    extra: dict[str, Any] = {
        "serverless": {},
        "endpoint": {"endpoint": server.url + "/", "model": None},
        "openai": {"api": "openai", "base_url": server.url + "/v1"},
        "hf-json": {"api": "hf-json", "parameters": {"max_new_tokens": 20}},
    }[shape]
    with anyio.fail_after(20):
        stats = await run(cfg_for(server, images, out, **extra))
    want = expected(images, DEFAULT_PROMPT if shape == "openai" else None)
    got = {rec["path"]: rec["caption"] for rec in lines(out)}
    assert got == want
    assert stats.ok == len(want)
    assert stats.failed == 0
    rec = lines(out)[0]
    assert rec["status"] == "ok"
    assert rec["attempts"] == 1
    assert rec["bytes_sent"] > 0
    assert rec["latency_s"] >= 0
    manifest = orjson.loads(manifest_path(out).read_bytes())
    assert manifest["state"] == "finished"
    assert manifest["counts"]["ok"] == len(want)


async def test_second_run_sends_nothing(emulator: Emulator, images: Path, tmp_path: Path) -> None:
    server = await emulator(EmulatorSettings())
    out = tmp_path / "out.jsonl"
    with anyio.fail_after(20):
        await run(cfg_for(server, images, out))
        sent = server.log.count()
        again = await run(cfg_for(server, images, out))
    assert server.log.count() == sent
    assert again.ok == 0
    assert again.skipped == len(expected(images))


async def test_bad_files_become_error_records_and_the_run_finishes(
    emulator: Emulator, images: Path, tmp_path: Path
) -> None:
    bad = images / "bad"
    bad.mkdir()
    good_jpeg = next(images.rglob("*.jpg")).read_bytes()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "truncated.jpg").write_bytes(good_jpeg[: len(good_jpeg) // 2])
    (bad / "notes.png").write_bytes(b"these are my holiday notes, not a picture\n")
    (bad / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200) + b"\x00\x00\x00\x00IEND\xaeB`\x82")
    with open(bad / "huge.jpg", "wb") as f:  # sparse: big on paper, nothing read
        f.truncate(30 * 1024 * 1024)
    server = await emulator(EmulatorSettings())
    out = tmp_path / "out.jsonl"
    with anyio.fail_after(20):
        stats = await run(cfg_for(server, images, out, max_image_mb=20.0))
    recs = {r["path"]: r for r in lines(out)}
    errors = {p: r["error"] for p, r in recs.items() if r["status"] == "error"}
    assert set(errors) == {"bad/empty.jpg", "bad/truncated.jpg", "bad/notes.png", "bad/corrupt.png", "bad/huge.jpg"}
    assert "empty" in errors["bad/empty.jpg"]["message"]
    assert "truncated" in errors["bad/truncated.jpg"]["message"]
    assert "not an image" in errors["bad/notes.png"]["message"]
    # Passes the structural check; preparation reads its header and refuses it before anything is sent
    # (with --max-side 0 it would go, and the server would answer 400: RejectedImage).
    assert errors["bad/corrupt.png"]["type"] == "InputError"
    assert errors["bad/corrupt.png"]["http_status"] is None
    assert "limit" in errors["bad/huge.jpg"]["message"]
    assert all(e["retryable"] is False for e in errors.values())
    assert stats.ok == len(recs) - 5
    assert stats.errors_by_type["InputError"] == 5


async def test_wrong_token_stops_the_run_fast_and_never_shows_the_token(
    emulator: Emulator, images: Path, tmp_path: Path
) -> None:
    server = await emulator(EmulatorSettings(auth="protected"))
    out = tmp_path / "out.jsonl"
    secret = "hf_THIS_IS_A_WRONG_SECRET_123"
    with anyio.fail_after(10), pytest.raises(RunAborted) as info:
        await run(cfg_for(server, images, out), token=Secret(secret))
    assert "token was refused" in str(info.value)
    assert "127.0.0.1" in str(info.value)
    assert server.log.count() <= 8 + 1  # at most the requests already in flight
    for f in tmp_path.iterdir():
        if f.is_file():
            assert secret.encode() not in f.read_bytes()


async def test_missing_token_says_how_to_give_one(emulator: Emulator, images: Path, tmp_path: Path) -> None:
    server = await emulator(EmulatorSettings(auth="protected"))
    with anyio.fail_after(10), pytest.raises(RunAborted, match="HF_TOKEN"):
        await run(cfg_for(server, images, tmp_path / "o.jsonl"))


async def test_right_token_on_protected_service(emulator: Emulator, images: Path, tmp_path: Path) -> None:
    server = await emulator(EmulatorSettings(auth="protected"))
    with anyio.fail_after(20):
        stats = await run(cfg_for(server, images, tmp_path / "o.jsonl"), token=Secret(TOKEN))
    assert stats.ok == len(expected(images))


async def test_429_storm_backs_off_and_every_image_ends_ok(emulator: Emulator, images: Path, tmp_path: Path) -> None:
    server = await emulator(EmulatorSettings(rate=40.0, burst=4))
    out = tmp_path / "out.jsonl"
    with anyio.fail_after(30):
        stats = await run(cfg_for(server, images, out, concurrency=16, burst=16),
                          policy=RetryPolicy(retries=2, base=0.05, cap=0.5))
    assert stats.throttled > 0
    assert stats.ok == len(expected(images))
    assert {r["status"] for r in lines(out)} == {"ok"}
    # the pool backed off: far fewer 429s than a client hammering at concurrency 16 would collect
    assert server.log.count(status=429) < 4 * len(expected(images))


async def test_cold_start_waits_then_succeeds(emulator: Emulator, images: Path, tmp_path: Path) -> None:
    server = await emulator(EmulatorSettings(cold_start=1.0))
    out = tmp_path / "out.jsonl"
    with anyio.fail_after(30):
        stats = await run(cfg_for(server, images, out))
    assert server.log.count(status=503) >= 1
    assert stats.ok == len(expected(images))
    assert stats.failed == 0


async def test_server_faults_are_retried(emulator: Emulator, images: Path, tmp_path: Path) -> None:
    server = await emulator(EmulatorSettings(fail_rate=0.3, seed=7))
    out = tmp_path / "out.jsonl"
    with anyio.fail_after(30):
        stats = await run(cfg_for(server, images, out, retries=8), policy=RetryPolicy(retries=8, base=0.01, cap=0.05))
    assert server.log.count(status=500) > 0
    assert stats.ok == len(expected(images))
    assert max(r["attempts"] for r in lines(out)) > 1


async def test_exhausted_retries_are_retried_on_the_next_run(
    emulator: Emulator, raw_server: RawServerFactory, images: Path, tmp_path: Path
) -> None:
    from aiohttp import web

    served = [0]

    async def breaking(request: web.BaseRequest) -> web.StreamResponse:
        await request.read()
        served[0] += 1
        if served[0] <= 3:  # it worked at first, so what follows is each image's own failure
            return web.json_response([{"generated_text": "fine"}])
        return web.json_response({"error": "Internal error"}, status=500)

    url = await raw_server(breaking)
    out = tmp_path / "out.jsonl"
    cfg = RunConfig.build(input_dir=images, out=out, model=MODEL, api_base=url.rstrip("/"), concurrency=1,
                          rate=None, retries=1, timeout=5.0).validate()
    with anyio.fail_after(20):
        stats = await run(cfg, policy=RetryPolicy.immediate(attempts=2))
    assert (stats.ok, stats.failed) == (3, len(expected(images)) - 3)
    assert all(r["error"]["retryable"] for r in lines(out) if r["status"] == "error")
    healthy = await emulator(EmulatorSettings())
    with anyio.fail_after(20):  # another server is another target: its 3 answers are kept, not asked again
        stats = await run(cfg_for(healthy, images, out, keep_stale=True))
    assert stats.ok == len(expected(images)) - 3
    final = {}
    for r in lines(out):
        final[r["path"]] = r["status"]
    assert set(final.values()) == {"ok"}


async def test_retry_failed_retries_final_errors(emulator: Emulator, images: Path, tmp_path: Path) -> None:
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # truncated: final error
    server = await emulator(EmulatorSettings())
    out = tmp_path / "out.jsonl"
    with anyio.fail_after(20):
        first = await run(cfg_for(server, images, out))
        again = await run(cfg_for(server, images, out))
        forced = await run(cfg_for(server, images, out, retry_failed=True))
    assert first.failed == 1
    assert again.found == 0
    assert again.earlier_errors == 1
    assert forced.found == 1
    assert forced.failed == 1


async def test_sidecars_hold_the_caption(emulator: Emulator, images: Path, tmp_path: Path) -> None:
    server = await emulator(EmulatorSettings())
    with anyio.fail_after(20):
        await run(cfg_for(server, images, tmp_path / "o.jsonl", sidecar=True))
    want = expected(images)
    for rel, caption in want.items():
        assert (images / rel).with_suffix(".txt").read_text() == caption + "\n"


async def test_a_second_run_on_the_same_journal_is_refused(emulator: Emulator, images: Path, tmp_path: Path) -> None:
    server = await emulator(EmulatorSettings(latency=0.2))
    out = tmp_path / "out.jsonl"
    cfg = cfg_for(server, images, out, concurrency=1)
    scanned = anyio.Event()  # the first run holds the journal from before its scan until it ends
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(run, cfg, on_scan_done=scanned.set))
            await scanned.wait()
            with pytest.raises(Exception, match="another batchcap run"):
                await run(cfg)
            tg.cancel_scope.cancel()


async def test_nothing_listening_stops_at_once_naming_the_host_and_writes_no_record(
    images: Path, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = RunConfig.build(input_dir=images, out=tmp_path / "o.jsonl", model=MODEL,
                    api_base=f"http://127.0.0.1:{port}", timeout=2.0, rate=None).validate()
    with anyio.fail_after(20), pytest.raises(RunAborted, match=f"cannot connect to 127.0.0.1:{port}") as info:
        await run(cfg)
    assert info.value.kind == "wrong_target"
    assert "nothing is listening there" in str(info.value)
    out = tmp_path / "o.jsonl"
    assert not out.exists() or lines(out) == []  # no error records: the next run tries every image


async def test_a_model_that_refuses_every_image_stops_the_run(emulator: Emulator, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(60):  # pass our cheap check, refused by the server's decoder
        (folder / f"{i:03d}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes([i]) * 50 + b"IEND\xaeB`\x82")
    server = await emulator(EmulatorSettings())
    with anyio.fail_after(20), pytest.raises(RunAborted, match="all refused with the same answer"):
        # --max-side 0: sent as they are (preparation would refuse each one locally, without a request)
        await run(cfg_for(server, folder, tmp_path / "o.jsonl", concurrency=2, max_side=0))
    assert server.log.count() < 40


async def test_token_never_follows_a_redirect_to_another_host(images: Path, tmp_path: Path) -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    seen: list[str | None] = []

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response([{"generated_text": "stolen"}])

    other = web.Application()
    other.router.add_route("*", "/{tail:.*}", elsewhere)
    async with TestServer(other, host="127.0.0.1", port=0) as thief:

        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPTemporaryRedirect(str(thief.make_url("/grab")))

        app = web.Application()
        app.router.add_post("/{tail:.*}", redirect)
        async with TestServer(app, host="127.0.0.1", port=0) as origin:
            cfg = RunConfig.build(input_dir=images, out=tmp_path / "o.jsonl", endpoint=str(origin.make_url("/")),
                            rate=None).validate()
            with anyio.fail_after(10), pytest.raises(RunAborted, match="redirect"):
                await run(cfg, token=Secret("hf_do_not_forward"))
    assert seen == []
