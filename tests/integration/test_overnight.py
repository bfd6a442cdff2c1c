"""Unattended overnight (issue 17), as an overnight user meets it: the command in a subprocess, the emulator (or a
five-line server) on loopback, killed, throttled, stopped and woken on purpose.

Each check of the issue's "How we will know" is here; where the issue's numbers take long (a 40 s outage, a
20-per-minute window, a 20 s sleep), the same test runs with shorter numbers in the default suite and with the
issue's own numbers under the ``slow`` marker.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from aiohttp import web
from conftest import MODEL, RawServerFactory

from batchcap.cli import EXIT_ABORTED, EXIT_ERRORS, EXIT_INTERRUPTED, EXIT_OK
from batchcap.config import RunConfig
from batchcap.emulator import EmulatorSettings, RunningEmulator, caption_for
from batchcap.errors import RunAborted
from batchcap.flow.retry import RetryPolicy
from batchcap.run import run
from batchcap.source.samples import generate

Emulator = Callable[[EmulatorSettings], Awaitable[RunningEmulator]]


def env() -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    base["HF_HOME"] = "/nonexistent-batchcap-test"
    return base


def batchcap(folder: Path, out: Path, *target: str, extra: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, "-m", "batchcap", "run", str(folder), "--out", str(out), *target, *extra]


def endpoint(server: RunningEmulator | str) -> tuple[str, ...]:
    url = server if isinstance(server, str) else f"{server.url}/"
    return ("--endpoint", url)


def records(out: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in out.read_bytes().splitlines()] if out.exists() else []


async def wait_for_lines(out: Path, n: int, timeout: float = 30) -> None:
    with anyio.fail_after(timeout):
        while len(records(out)) < n:
            await anyio.sleep(0.02)


def exactly_once_ok(folder: Path, out: Path) -> None:
    recs = records(out)
    assert [r for r in recs if r["status"] != "ok"] == []  # no error record, for anything
    oks = Counter(r["path"] for r in recs)
    assert set(oks.values()) == {1}
    assert len(oks) == sum(1 for p in folder.rglob("*") if p.is_file())
    for rec in recs[:20]:
        assert rec["caption"] == caption_for((folder / rec["path"]).read_bytes())


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "imgs"
    generate(folder, 60, seed=17)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- 1. a wrong target stops at once ------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "says"), [("http://127.0.0.1:{port}/", "nothing is listening there"),
                                           ("http://captioner.invalid/", "does not resolve")])
async def test_a_wrong_target_exits_3_within_seconds_naming_the_host_and_writes_no_record(
    images: Path, tmp_path: Path, url: str, says: str
) -> None:
    url = url.format(port=free_port())
    out = tmp_path / "out.jsonl"
    started = time.monotonic()
    with anyio.fail_after(30):
        result = await anyio.run_process(batchcap(images, out, *endpoint(url)), env=env(), check=False)
    err = result.stderr.decode()
    assert result.returncode == EXIT_ABORTED, err
    assert time.monotonic() - started < 30
    host = url.split("//")[1].rstrip("/")
    assert f"cannot connect to {host}: " in err
    assert says in err
    assert records(out) == []  # no error records: fixed, the same command captions everything
    assert "Traceback" not in err


async def test_https_to_a_plain_http_server_is_a_tls_failure_named_as_such(
    emulator: Emulator, images: Path, tmp_path: Path
) -> None:
    server = await emulator(EmulatorSettings())
    url = server.url.replace("http://", "https://") + "/"
    out = tmp_path / "out.jsonl"
    cfg = RunConfig.build(input_dir=images, out=out, endpoint=url, rate=None, timeout=5.0).validate()
    with anyio.fail_after(20), pytest.raises(RunAborted, match="the TLS handshake failed") as info:
        await run(cfg)
    assert info.value.kind == "wrong_target"
    assert records(out) == []


# -- 2. outages are ridden out ------------------------------------------------------------------------------------


async def outage(emulator: Emulator, images: Path, tmp_path: Path, *, after: float, down: float) -> None:
    server = await emulator(EmulatorSettings(latency=0.05))
    out = tmp_path / "out.jsonl"
    cmd = batchcap(images, out, *endpoint(server), extra=("--progress-every", "1", "--rate", "unlimited"))
    with anyio.fail_after(down + 90):
        async with await anyio.open_process(cmd, env=env()) as proc:
            await wait_for_lines(out, 5)  # it has answered: what follows is an outage, not a wrong target
            await anyio.sleep(after)
            await server.go_down()  # killed: in-flight requests reset, new connections refused
            await anyio.sleep(down)
            await server.come_back()  # back on the same port
            await proc.wait()
            assert proc.stderr is not None
            err = b"".join([chunk async for chunk in proc.stderr]).decode()
    assert proc.returncode == EXIT_OK, err
    assert "target unreachable for" in err  # the log said what was going on
    assert "probing" in err
    assert "\r" not in err
    exactly_once_ok(images, out)


async def test_an_outage_mid_run_is_ridden_out_without_an_error_record(
    emulator: Emulator, images: Path, tmp_path: Path
) -> None:
    await outage(emulator, images, tmp_path, after=0.2, down=2.5)


@pytest.mark.slow
async def test_the_issues_outage_killed_at_2s_back_40s_later(emulator: Emulator, images: Path, tmp_path: Path) -> None:
    await outage(emulator, images, tmp_path, after=2.0, down=40.0)


# -- 3. what will never work stops the run ------------------------------------------------------------------------


async def same_500(emulator: Emulator, images: Path, tmp_path: Path, *flags: str) -> None:
    server = await emulator(EmulatorSettings(fail_rate=1.0))
    out = tmp_path / "out.jsonl"
    started = time.monotonic()
    with anyio.fail_after(60):
        result = await anyio.run_process(batchcap(images, out, *endpoint(server), extra=flags), env=env(),
                                         check=False)
    err = result.stderr.decode()
    assert result.returncode == EXIT_ABORTED, err
    assert time.monotonic() - started < 60
    assert "the same server error" in err
    assert "Emulated server error" in err  # what the server said
    assert records(out) == []


async def test_the_same_500_for_every_request_exits_3(emulator: Emulator, images: Path, tmp_path: Path) -> None:
    await same_500(emulator, images, tmp_path, "--retries", "2")


@pytest.mark.slow
async def test_the_issues_same_500_exits_3_within_60s_with_the_default_retries(
    emulator: Emulator, images: Path, tmp_path: Path
) -> None:
    await same_500(emulator, images, tmp_path)


async def max_wait_429(emulator: Emulator, images: Path, tmp_path: Path, max_wait: float) -> None:
    server = await emulator(EmulatorSettings(window_quota=0))  # 429 to everything, no header
    out = tmp_path / "out.jsonl"
    started = time.monotonic()
    with anyio.fail_after(max_wait + 30):
        result = await anyio.run_process(
            batchcap(images, out, *endpoint(server), extra=("--max-wait", f"{max_wait:g}")), env=env(), check=False)
    err = result.stderr.decode()
    assert result.returncode == EXIT_ABORTED, err
    assert time.monotonic() - started < max_wait + 10
    assert "only 429" in err
    assert "Rate limit reached" in err
    assert records(out) == []


async def test_429_forever_stops_after_max_wait(emulator: Emulator, images: Path, tmp_path: Path) -> None:
    await max_wait_429(emulator, images, tmp_path, 5.0)


@pytest.mark.slow
async def test_the_issues_429_forever_with_max_wait_20(emulator: Emulator, images: Path, tmp_path: Path) -> None:
    await max_wait_429(emulator, images, tmp_path, 20.0)


def cfg(folder: Path, out: Path, url: str, **kw: Any) -> RunConfig:
    return RunConfig.build(input_dir=folder, out=out, model=MODEL, api_base=url.rstrip("/"), rate=None, timeout=5.0,
                     **kw).validate()


async def test_a_400_not_about_the_image_is_no_final_refusal_even_in_a_small_folder(
    raw_server: RawServerFactory, tmp_path: Path
) -> None:
    folder = tmp_path / "few"
    generate(folder, 6, seed=2)

    async def proxy(request: web.BaseRequest) -> web.StreamResponse:
        await request.read()
        return web.json_response({"error": "No connected db."}, status=400)  # LiteLLM with a wrong key

    async def picky(request: web.BaseRequest) -> web.StreamResponse:
        await request.read()  # the same text for every image, whatever it is
        return web.json_response({"error": "Unsupported request: check the route"}, status=400)

    for handler, says in ((proxy, "not about the image"), (picky, "all 6 images were refused with the same")):
        out = tmp_path / f"{handler.__name__}.jsonl"
        with anyio.fail_after(20), pytest.raises(RunAborted, match=says):
            await run(cfg(folder, out, await raw_server(handler)), policy=RetryPolicy.immediate())
        assert records(out) == []  # a rerun, once fixed, sends every image


async def test_captions_that_all_fail_the_gates_alike_stop_and_some_flagged_ones_exit_1(
    raw_server: RawServerFactory, images: Path, tmp_path: Path
) -> None:
    async def empty(request: web.BaseRequest) -> web.StreamResponse:
        await request.read()
        return web.json_response([{"generated_text": ""}])

    out = tmp_path / "empty.jsonl"
    with anyio.fail_after(30), pytest.raises(RunAborted, match=r"all failed the quality gates the same way \(empty\)"):
        await run(cfg(images, out, await raw_server(empty), concurrency=2))
    assert records(out) == []

    served = [0]

    async def mostly(request: web.BaseRequest) -> web.StreamResponse:
        await request.read()
        served[0] += 1
        return web.json_response([{"generated_text": "" if served[0] % 10 == 5 else f"a photo number {served[0]}"}])

    out = tmp_path / "mostly.jsonl"
    url = await raw_server(mostly)
    with anyio.fail_after(30):
        result = await anyio.run_process(
            batchcap(images, out, "--model", MODEL, "--api-base", url.rstrip("/"),
                     extra=("--quality-retries", "0", "--rate", "unlimited")),
            env=env(), check=False)
    assert result.returncode == EXIT_ERRORS, result.stderr.decode()  # flagged captions are not "all done"
    assert "failed a quality gate" in result.stderr.decode()
    assert sum(1 for r in records(out) if r.get("flags")) >= 1


# -- 4. rate limits as the server counts them ---------------------------------------------------------------------


async def fixed_window(emulator: Emulator, folder: Path, tmp_path: Path, *, quota: int, seconds: float,
                       headers: str = "none") -> RunningEmulator:
    server = await emulator(EmulatorSettings(window_quota=quota, window_seconds=seconds, window_headers=headers))  # type: ignore[arg-type]
    out = tmp_path / f"window-{headers}.jsonl"
    limit = 2 * seconds * len(list(folder.iterdir())) / quota + 60
    with anyio.fail_after(limit):
        result = await anyio.run_process(
            batchcap(folder, out, "--api", "openai", "--model", "m", "--base-url", f"{server.url}/v1"),
            env=env(), check=False)
    assert result.returncode == EXIT_OK, result.stderr.decode()
    assert {r["status"] for r in records(out)} == {"ok"}
    return server


async def test_a_header_less_fixed_window_is_learned_and_paced(
    emulator: Emulator, tmp_path: Path
) -> None:
    folder = tmp_path / "thirty"
    generate(folder, 30, seed=4)
    server = await fixed_window(emulator, folder, tmp_path, quota=5, seconds=1.0)
    # Once, at the first window (5 on an idle machine), not one per image. A 1 s window is at the mercy of the
    # scheduler on a loaded machine (a request booked for 0.8 s that leaves at 1.1 s lands in the next window);
    # the issue's own case, 20 a minute, is the slow test below.
    assert server.log.count(429) <= 10


@pytest.mark.slow
async def test_the_issues_litellm_rpm_20_gives_60_captions_with_at_most_5_429s(
    emulator: Emulator, images: Path, tmp_path: Path
) -> None:
    server = await fixed_window(emulator, images, tmp_path, quota=20, seconds=60.0)
    assert server.log.count(429) <= 5


@pytest.mark.parametrize(("headers", "most"), [("ietf", 4), ("openai", 4), ("retry-after", 12)])
async def test_rate_limit_headers_are_honoured(emulator: Emulator, tmp_path: Path, headers: str, most: int) -> None:
    folder = tmp_path / "fifteen"
    generate(folder, 15, seed=6)
    server = await fixed_window(emulator, folder, tmp_path, quota=5, seconds=1.0, headers=headers)
    assert server.log.count(429) <= most  # with remaining/reset the pace avoids them; Retry-After is waited out


# -- 5. stop means drain ------------------------------------------------------------------------------------------


async def test_sigterm_drains_every_request_the_server_received(emulator: Emulator, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    generate(folder, 150, seed=8)
    server = await emulator(EmulatorSettings(latency=0.3))
    out = tmp_path / "out.jsonl"
    cmd = batchcap(folder, out, *endpoint(server), extra=("--concurrency", "fixed:16", "-q"))
    with anyio.fail_after(60):
        async with await anyio.open_process(cmd, env=env()) as proc:
            await wait_for_lines(out, 40)
            signalled = time.monotonic()
            proc.terminate()
            await proc.wait()
    assert proc.returncode == EXIT_INTERRUPTED
    received = [e for e in server.log.entries if e.kind == "endpoint" and e.t < signalled]
    oks = [r for r in records(out) if r["status"] == "ok"]
    assert len(received) > 40
    assert len(oks) >= len(received)  # every request received before the signal has its ok line
    assert len(oks) <= len(received) + 16  # and nothing new started after it
    assert [r for r in records(out) if r["status"] != "ok"] == []


async def test_a_second_signal_stops_at_once(raw_server: RawServerFactory, tmp_path: Path) -> None:
    folder = tmp_path / "some"
    generate(folder, 40, seed=9)
    arrived = [0]

    async def slow(request: web.BaseRequest) -> web.StreamResponse:
        await request.read()
        arrived[0] += 1
        await anyio.sleep(30)  # nothing would finish for a long time
        return web.json_response([{"generated_text": "late"}])

    url = await raw_server(slow)
    out = tmp_path / "out.jsonl"
    with anyio.fail_after(20):
        async with await anyio.open_process(batchcap(folder, out, *endpoint(url), extra=("-q",)), env=env()) as proc:
            while arrived[0] == 0:
                await anyio.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            await anyio.sleep(1.0)
            assert proc.returncode is None  # draining: the requests in flight may still finish
            proc.send_signal(signal.SIGINT)
            await proc.wait()
    assert proc.returncode == EXIT_INTERRUPTED
    assert records(out) == []


# -- 6. a laptop that sleeps --------------------------------------------------------------------------------------


async def sleeping_laptop(emulator: Emulator, tmp_path: Path, *, asleep: float) -> None:
    folder = tmp_path / "laptop"
    generate(folder, 40, seed=10)
    server = await emulator(EmulatorSettings(latency=0.2))
    out = tmp_path / "out.jsonl"
    # --retries 0: a request lost to the sleep must cost nothing, or its image would get an error record
    cmd = batchcap(folder, out, *endpoint(server), extra=("--timeout", "5", "--retries", "0", "-q",
                                                          "--concurrency", "fixed:4"))
    with anyio.fail_after(asleep + 60):
        async with await anyio.open_process(cmd, env=env()) as proc:
            await wait_for_lines(out, 8)
            proc.send_signal(signal.SIGSTOP)
            await anyio.sleep(asleep)
            proc.send_signal(signal.SIGCONT)
            await proc.wait()
            assert proc.stderr is not None
            err = b"".join([chunk async for chunk in proc.stderr]).decode()
    assert proc.returncode == EXIT_OK, err
    exactly_once_ok(folder, out)


async def test_a_process_stopped_longer_than_its_timeout_loses_nothing(emulator: Emulator, tmp_path: Path) -> None:
    await sleeping_laptop(emulator, tmp_path, asleep=6.5)


@pytest.mark.slow
async def test_the_issues_sigstop_for_20s_with_timeout_5(emulator: Emulator, tmp_path: Path) -> None:
    await sleeping_laptop(emulator, tmp_path, asleep=20.0)


# -- 7. logs a person and a machine can read ----------------------------------------------------------------------


async def test_a_log_file_gets_plain_lines_and_the_webhook_one_post(
    emulator: Emulator, raw_server: RawServerFactory, tmp_path: Path
) -> None:
    folder = tmp_path / "logged"
    generate(folder, 50, seed=12)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # one error record
    posts: list[dict[str, Any]] = []

    async def hook(request: web.BaseRequest) -> web.StreamResponse:
        posts.append(orjson.loads(await request.read()))
        return web.Response(text="ok")

    hook_url = await raw_server(hook) + "batchcap-topic"
    server = await emulator(EmulatorSettings(latency=0.1))
    out = tmp_path / "out.jsonl"
    log = tmp_path / "run.log"
    cmd = batchcap(folder, out, *endpoint(server), extra=("--progress-every", "1", "--concurrency", "fixed:2",
                                                          "--notify", hook_url))
    with anyio.fail_after(60), log.open("wb") as stderr:
        result = await anyio.run_process(cmd, env=env(), stderr=stderr, check=False)
    text = log.read_text()
    assert result.returncode == EXIT_ERRORS, text
    assert "\r" not in text
    progress = [line for line in text.splitlines() if " done (" in line]
    assert progress, text  # at least one plain progress line (the run takes a few seconds)
    assert all("img/s" in line and "ETA" in line for line in progress)
    assert "failed: broken.png: InputError" in text  # the summary names the failed file and why
    assert hook_url not in text  # a webhook URL is a secret
    assert len(posts) == 1
    body = posts[0]
    assert (body["state"], body["ok"], body["errors"]) == ("errors", 50, 1)
    assert body["out"] == str(out)
    assert body["text"] == body["content"] == body["message"]  # Slack, Discord, ntfy
    assert body["topic"] == "batchcap-topic"


async def test_a_failing_webhook_is_one_warning_not_a_failed_run(emulator: Emulator, tmp_path: Path) -> None:
    folder = tmp_path / "few"
    generate(folder, 5, seed=13)
    server = await emulator(EmulatorSettings())
    out = tmp_path / "out.jsonl"
    cmd = batchcap(folder, out, *endpoint(server), extra=("--notify", f"http://127.0.0.1:{free_port()}/hook"))
    with anyio.fail_after(30):
        result = await anyio.run_process(cmd, env=env(), check=False)
    err = result.stderr.decode()
    assert result.returncode == EXIT_OK, err
    assert "warning: the --notify webhook at 127.0.0.1 could not be reached" in err
