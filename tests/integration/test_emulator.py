"""The emulator obeys its own settings, over real loopback HTTP, so a failure elsewhere can be traced to the right side."""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from batchcap.cli.serve import add_arguments, settings_from_args
from batchcap.emulator import (
    DEFAULT_TOKEN,
    REQUEST_LOG,
    EmulatorSettings,
    LogEntry,
    RequestLog,
    RunningEmulator,
    _TokenBucket,
    caption_for,
    chat_answer_for,
)
from batchcap.errors import ConfigError

Emulator = Callable[[EmulatorSettings], Awaitable[RunningEmulator]]
MODEL = "Salesforce/blip-image-captioning-base"
RATELIMIT = re.compile(r'"api"\s*;\s*r\s*=\s*0\s*;\s*t\s*=\s*\d+')  # what huggingface_hub parses
REPO = Path(__file__).resolve().parents[2]


def images(folder: Path) -> dict[str, bytes]:
    """One file per format, keyed by extension."""
    return {path.suffix: path.read_bytes() for path in sorted(folder.rglob("*.*"))}


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def chat_body(url: str) -> dict[str, Any]:
    content = [{"type": "text", "text": "Caption this."}, {"type": "image_url", "image_url": {"url": url}}]
    return {"model": "dummy", "messages": [{"role": "user", "content": content}], "max_tokens": 50}


async def post(
    session: aiohttp.ClientSession, url: str, data: bytes, **headers: str
) -> aiohttp.ClientResponse:
    async with session.post(url, data=data, headers=headers) as response:
        await response.read()
        return response


# --- captions on every route ----------------------------------------------------------------------------------


async def test_every_route_captions_from_the_pixels(emulator: Emulator, sample_dir: Path) -> None:
    with anyio.fail_after(10):
        server = await emulator(EmulatorSettings())
        by_format = images(sample_dir)
        assert set(by_format) == {".png", ".jpg", ".webp", ".gif"}
        async with aiohttp.ClientSession() as session:
            for ext, data in by_format.items():
                expected = caption_for(data)
                assert re.fullmatch(r"a \d+x\d+ (RGB|RGBA|L|P) [a-z]+ image, mostly [a-z]+", expected)
                for path in (f"/hf-inference/models/{MODEL}", f"/models/{MODEL}"):
                    async with session.post(server.url + path, data=data) as response:
                        assert response.status == 200, ext
                        assert await response.json() == [{"generated_text": expected}]
                for path in ("/", "/predict"):
                    headers = {"Content-Type": "image/png"}
                    async with session.post(server.url + path, data=data, headers=headers) as response:
                        assert await response.json() == [{"generated_text": expected}]
                for path in ("/v1/chat/completions", f"/hf-inference/models/{MODEL}/v1/chat/completions"):
                    async with session.post(server.url + path, json=chat_body(data_uri(data))) as response:
                        body = await response.json()
                    assert body["object"] == "chat.completion"
                    assert body["model"] == MODEL
                    answer = chat_answer_for(data, "Caption this.")  # the pixels' caption, tagged by the prompt
                    assert answer.startswith(expected + " (prompt ")
                    assert body["choices"][0]["message"] == {"role": "assistant", "content": answer}
                    assert body["choices"][0]["finish_reason"] == "stop"
                    assert set(body["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
        assert server.log.count(200) == 6 * len(by_format)


async def test_serverless_takes_any_content_type_and_the_json_form(
    emulator: Emulator, sample_dir: Path
) -> None:
    with anyio.fail_after(10):
        server = await emulator(EmulatorSettings())
        data = images(sample_dir)[".jpg"]
        url = f"{server.url}/hf-inference/models/{MODEL}"
        expected = [{"generated_text": caption_for(data)}]
        async with aiohttp.ClientSession() as session:
            for content_type in ("application/json", "application/x-www-form-urlencoded", "image/png"):
                async with session.post(url, data=data, headers={"Content-Type": content_type}) as response:
                    assert await response.json() == expected, content_type
            async with session.post(url, data=data, skip_auto_headers=["Content-Type"]) as response:
                assert await response.json() == expected
            json_form = {"inputs": base64.b64encode(data).decode(), "parameters": {"max_new_tokens": 20}}
            async with session.post(url, json=json_form) as response:
                assert await response.json() == expected
            async with session.post(url, json={"parameters": {}}) as response:
                assert response.status == 400


async def test_endpoint_needs_a_whitelisted_content_type(emulator: Emulator, sample_dir: Path) -> None:
    with anyio.fail_after(10):
        server = await emulator(EmulatorSettings())
        data = images(sample_dir)[".png"]
        async with aiohttp.ClientSession() as session:
            async with session.post(server.url, data=data, skip_auto_headers=["Content-Type"]) as response:
                assert response.status == 400
                assert (await response.json())["error"].startswith('Content type "None" not supported.')
            # aiohttp labels bytes application/octet-stream, which the toolkit does not list
            async with session.post(server.url + "/predict", data=data) as response:
                assert response.status == 400
            async with session.post(server.url, data=data, headers={"Content-Type": "Image/PNG"}) as response:
                assert response.status == 200
            json_form = {"inputs": base64.b64encode(data).decode()}
            async with session.post(server.url + "/predict", json=json_form) as response:
                assert await response.json() == [{"generated_text": caption_for(data)}]
            async with session.get(server.url + "/health") as response:
                assert (response.status, await response.text()) == (200, "Ok")


async def test_non_image_and_fault_answers(emulator: Emulator, sample_dir: Path) -> None:
    with anyio.fail_after(10):
        healthy = await emulator(EmulatorSettings())
        failing = await emulator(EmulatorSettings(fail_rate=1.0))
        data = images(sample_dir)[".png"]
        async with aiohttp.ClientSession() as session:
            response = await post(session, f"{healthy.url}/models/{MODEL}", b"definitely not an image")
            assert response.status == 400
            assert await response.json() == {"error": "cannot identify image file"}
            response = await post(session, f"{healthy.url}/models/{MODEL}", data[: len(data) // 2])
            assert response.status == 400  # truncated
            for _ in range(3):
                response = await post(session, f"{failing.url}/models/{MODEL}", data)
                assert response.status == 500
                assert "error" in await response.json()
        assert failing.log.count(500) == 3


async def test_chat_errors_are_tgi_shaped(emulator: Emulator, sample_dir: Path) -> None:
    with anyio.fail_after(10):
        server = await emulator(EmulatorSettings())
        url = server.url + "/v1/chat/completions"
        cases = [
            (chat_body(data_uri(b"not an image")), 422),
            (chat_body("data:image/png;base64,@@@"), 422),
            (chat_body("https://example.com/cat.png"), 422),
            ({"model": "x", "messages": [{"role": "user", "content": "no image"}]}, 422),
        ]
        async with aiohttp.ClientSession() as session:
            for body, status in cases:
                async with session.post(url, json=body) as response:
                    assert response.status == status
                    payload = await response.json()
                    assert payload["error_type"] == "validation"
                    assert payload["error"].startswith("Input validation error")
            response = await post(session, url, b"{not json", **{"Content-Type": "application/json"})
            assert response.status == 400
            assert (await response.json())["error_type"] == "validation"


async def test_body_over_the_limit_is_413(emulator: Emulator, sample_dir: Path) -> None:
    with anyio.fail_after(10):
        server = await emulator(EmulatorSettings(max_body_bytes=1000))
        url = f"{server.url}/models/{MODEL}"

        async def chunks() -> Any:
            for _ in range(4):
                yield b"x" * 500

        async with aiohttp.ClientSession() as session:
            response = await post(session, url, b"x" * 2000)
            assert response.status == 413
            assert await response.text() == "Failed to buffer the request body: length limit exceeded"
            async with session.post(url, data=chunks()) as response:  # chunked: no Content-Length to trust
                assert response.status == 413
            response = await post(session, url, images(sample_dir)[".gif"][:900])
            assert response.status == 400  # under the limit, so it reaches the decoder


# --- auth, rate, cold start -------------------------------------------------------------------------------------


async def test_protected_mode_wants_the_right_bearer_token(emulator: Emulator, sample_dir: Path) -> None:
    with anyio.fail_after(10):
        server = await emulator(EmulatorSettings(auth="protected", tokens=("hf_right",)))
        data = images(sample_dir)[".png"]
        url = f"{server.url}/hf-inference/models/{MODEL}"
        async with aiohttp.ClientSession() as session:
            for headers in ({}, {"Authorization": "Bearer hf_wrong"}, {"Authorization": "hf_right"}):
                response = await post(session, url, data, **headers)
                assert response.status == 401
                assert await response.json() == {"error": "Invalid credentials in Authorization header"}
            response = await post(session, url, data, Authorization="Bearer hf_right")
            assert response.status == 200
            async with session.get(server.url + "/health") as response:
                assert response.status == 401
        assert [entry.auth_present for entry in server.log.entries] == [False, True, True, True, False]
        assert "hf_right" not in repr(list(server.log.entries)) + repr(server.settings)


async def test_rate_limit_answers_429_with_ratelimit_headers(emulator: Emulator, sample_dir: Path) -> None:
    with anyio.fail_after(10):
        quiet = await emulator(EmulatorSettings(rate=5.0, burst=2))
        loud = await emulator(EmulatorSettings(rate=5.0, burst=2, retry_after=True))
        data = images(sample_dir)[".png"]
        async with aiohttp.ClientSession() as session:
            for server in (quiet, loud):
                url = f"{server.url}/models/{MODEL}"
                responses = await asyncio.gather(*(post(session, url, data) for _ in range(20)))
                limited = [r for r in responses if r.status == 429]
                assert len(limited) >= 10
                assert all(RATELIMIT.fullmatch(r.headers["RateLimit"]) for r in limited)
                assert all("RateLimit-Policy" in r.headers for r in limited)
                assert all(("Retry-After" in r.headers) is server.settings.retry_after for r in limited)
                if server.settings.retry_after:
                    assert all(int(r.headers["Retry-After"]) >= 1 for r in limited)
                assert server.log.count(200) + server.log.count(429) == 20


async def test_sustained_load_stays_under_rate_plus_burst(emulator: Emulator, sample_dir: Path) -> None:
    with anyio.fail_after(10):
        rate, burst = 40.0, 4
        server = await emulator(EmulatorSettings(rate=rate, burst=burst))
        data = images(sample_dir)[".jpg"]
        url = f"{server.url}/models/{MODEL}"
        deadline = time.monotonic() + 1.5

        async def hammer(session: aiohttp.ClientSession) -> None:
            for _ in range(2000):  # bounded; the deadline ends it first
                if time.monotonic() > deadline:
                    return
                await post(session, url, data)

        async with aiohttp.ClientSession() as session, anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(hammer, session)
        assert server.log.count(429) > 0
        assert rate / 2 <= server.log.max_per_second() <= rate + burst


async def test_cold_start_503_then_200(emulator: Emulator, sample_dir: Path) -> None:
    with anyio.fail_after(10):
        server = await emulator(EmulatorSettings(cold_start=0.3))
        data = images(sample_dir)[".png"]
        url = f"{server.url}/hf-inference/models/{MODEL}"
        async with aiohttp.ClientSession() as session:
            response = await post(session, url, data)
            assert response.status == 503
            body = await response.json()
            assert body["error"] == f"Model {MODEL} is currently loading"
            assert isinstance(body["estimated_time"], float)
            assert 0 < body["estimated_time"] <= 0.3
            await anyio.sleep(body["estimated_time"] + 0.05)
            response = await post(session, url, data)
            assert response.status == 200


async def test_cold_start_holds_when_asked(emulator: Emulator, sample_dir: Path) -> None:
    with anyio.fail_after(10):
        data = images(sample_dir)[".png"]
        async with aiohttp.ClientSession() as session:
            server = await emulator(EmulatorSettings(cold_start=0.3))
            started = time.monotonic()
            response = await post(
                session, f"{server.url}/models/{MODEL}", data, **{"x-wait-for-model": "true"}
            )
            assert response.status == 200
            assert time.monotonic() - started >= 0.25

            endpoint = await emulator(EmulatorSettings(cold_start=0.3, cold_start_status=502))
            short = {"Content-Type": "image/png", "X-Scale-Up-Timeout": "0.05"}
            response = await post(session, endpoint.url, data, **short)
            assert response.status == 502
            assert response.content_type == "text/html"
            response = await post(
                session, endpoint.url, data, **{"Content-Type": "image/png", "X-Scale-Up-Timeout": "5"}
            )
            assert response.status == 200


async def test_every_answer_has_a_request_id_and_stats_count_them(emulator: Emulator) -> None:
    with anyio.fail_after(10):
        server = await emulator(EmulatorSettings())
        async with aiohttp.ClientSession() as session:
            ids = []
            routes = [
                ("GET", "/"),
                ("GET", "/nowhere"),
                ("POST", f"/models/{MODEL}"),
                ("GET", f"/api/models/{MODEL}"),
            ]
            for method, path in routes:
                async with session.request(method, server.url + path) as response:
                    ids.append(response.headers["x-request-id"])
            async with session.get(server.url + "/stats") as response:
                stats = await response.json()
        assert len(set(ids)) == 4
        assert all(rid.startswith("emu-") for rid in ids)
        assert stats["total"] == 4
        assert stats["by_status"] == {"200": 2, "400": 1, "404": 1}
        assert stats["by_kind"] == {"health": 1, "hub": 1, "other": 1, "serverless": 1}


# --- the real huggingface_hub client ------------------------------------------------------------------------------


# huggingface_hub 2.4.0 passes raw bytes as `data=` to httpx2, which warns; that is their bug, not ours.
@pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw:DeprecationWarning")
async def test_huggingface_hub_client_reads_our_answers(emulator: Emulator, sample_dir: Path) -> None:
    hub = pytest.importorskip("huggingface_hub")
    with anyio.fail_after(10):
        server = await emulator(EmulatorSettings(auth="protected"))
        data = images(sample_dir)[".jpg"]
        model_url = f"{server.url}/hf-inference/models/{MODEL}"
        async with hub.AsyncInferenceClient(model=model_url, token=DEFAULT_TOKEN) as client:
            output = await client.image_to_text(data)
        assert output.generated_text == caption_for(data)
        async with hub.AsyncInferenceClient(base_url=f"{server.url}/v1", api_key=DEFAULT_TOKEN) as client:
            completion = await client.chat.completions.create(
                model="dummy", messages=chat_body(data_uri(data, "image/jpeg"))["messages"], max_tokens=50
            )
        assert completion.choices[0].message.content == chat_answer_for(data, "Caption this.")
        async with hub.AsyncInferenceClient(model=model_url, token="hf_wrong") as client:
            with pytest.raises(hub.errors.HfHubHTTPError, match="Invalid credentials") as caught:
                await client.image_to_text(data)
        assert caught.value.response.status_code == 401


# huggingface_hub 2.4.0 passes raw bytes as `data=` to httpx2, which warns; that is their bug, not ours.
@pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw:DeprecationWarning")
async def test_a_model_id_it_does_not_serve_is_the_routers_404(emulator: Emulator, sample_dir: Path) -> None:
    """Issue 21: a typo in --model is caught here as the router catches it, not captioned."""
    hub = pytest.importorskip("huggingface_hub")
    data = images(sample_dir)[".jpg"]
    server = await emulator(EmulatorSettings())
    typo = "Salesforce/blip-image-captioning-bsae"
    async with aiohttp.ClientSession() as session:
        for path in (f"/hf-inference/models/{typo}", f"/models/{typo}", f"/hf-inference/models/{typo}/v1/chat/completions"):
            async with session.post(server.url + path, data=data) as response:
                assert response.status == 404, path
                assert await response.text() == "Not Found"
                assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
                assert response.headers["x-inference-provider"] == "hf-inference"
        response = await post(session, f"{server.url}/hf-inference/models/{MODEL}", data)
        assert response.status == 200
        async with session.get(f"{server.url}/api/models/{typo}?expand=inferenceProviderMapping") as hub_answer:
            assert (await hub_answer.json())["inferenceProviderMapping"] == {}
    assert server.app[REQUEST_LOG].count(404) == 3
    async with hub.AsyncInferenceClient(model=f"{server.url}/hf-inference/models/{typo}") as client:
        with pytest.raises(hub.errors.HfHubHTTPError) as caught:  # what a user of huggingface_hub sees
            await client.image_to_text(data)
    assert caught.value.response.status_code == 404

    both = await emulator(EmulatorSettings(models=("org/a", "org/b")))
    async with aiohttp.ClientSession() as session:
        for model, status in (("org/a", 200), ("org/b", 200), (MODEL, 404)):
            assert (await post(session, f"{both.url}/hf-inference/models/{model}", data)).status == status, model


# --- pure parts ---------------------------------------------------------------------------------------------------


def test_caption_for_is_pure_and_rejects_non_images(sample_dir: Path) -> None:
    data = images(sample_dir)[".webp"]
    assert caption_for(data) == caption_for(bytes(data))
    assert re.fullmatch(r"a \d+x\d+ RGBA? webp image, mostly [a-z]+", caption_for(data))
    with pytest.raises(ValueError, match="cannot identify image file"):
        caption_for(b"GIF89a but not really")


def test_token_bucket_admits_burst_then_rate() -> None:
    bucket = _TokenBucket(rate=2.0, burst=3, tokens=3.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.5) == 0.0
    assert bucket.take(10.0) == 0.0  # refilled, but never past the burst
    assert [bucket.take(10.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]


def test_max_per_second_counts_only_200_in_a_sliding_window() -> None:
    log = RequestLog(maxlen=100)
    for t, status in ((0.0, 200), (0.5, 200), (0.9, 429), (0.99, 200), (1.0, 200), (1.2, 200), (5.0, 200)):
        log.record(LogEntry(t, "serverless", status, 10, False))
    assert log.max_per_second() == 4  # 0.5, 0.99, 1.0, 1.2
    assert log.max_per_second(window=0.1) == 2
    assert (log.count(), log.count(200), log.count(429), log.count(500)) == (7, 6, 1, 0)


def test_cli_arguments_build_settings(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert settings_from_args(parser.parse_args([])) == EmulatorSettings()
    token_file = tmp_path / "token"
    token_file.write_text("# comment\nhf_secret\n")
    ns = parser.parse_args(
        ["--auth", "protected", "--token-file", str(token_file), "--rate", "3", "--fail-rate", "0.5"]
    )
    settings = settings_from_args(ns)
    assert (settings.tokens, settings.rate, settings.effective_burst, settings.fail_rate) == (
        ("hf_secret",),
        3.0,
        3,
        0.5,
    )
    with pytest.raises(ConfigError, match="--fail-rate"):
        settings_from_args(parser.parse_args(["--fail-rate", "2"]))
    with pytest.raises(ConfigError, match="--token-file"):
        settings_from_args(parser.parse_args(["--token-file", str(tmp_path / "missing")]))
    assert settings_from_args(parser.parse_args([])).models == (MODEL,)  # the demo's id, and only it
    assert settings_from_args(parser.parse_args(["--models", "org/a, org/b"])).models == ("org/a", "org/b")
    with pytest.raises(ConfigError, match="--models"):
        settings_from_args(parser.parse_args(["--models", ","]))


def test_serve_prints_its_url_and_exits_0_on_sigint() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = "from batchcap.emulator import EmulatorSettings, serve; raise SystemExit(serve(EmulatorSettings(), port=0))"
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        try:
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], 5)
            assert ready, "serve() printed nothing within 5 s"
            line = process.stdout.readline()
            assert re.fullmatch(
                r"batchcap emulator listening on http://127\.0\.0\.1:\d+ \(auth=public, .*\)\n", line
            )
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=5)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0
    assert "Traceback" not in err
