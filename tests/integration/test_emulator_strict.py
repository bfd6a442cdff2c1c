"""The emulator is as strict as the real servers (protocol.md section 9), over real loopback HTTP.

Capacity (one request at a time, FIFO queue, abandoned work still runs, batching), the Endpoint container's
exact Content-Type and Accept rules, its routes and 400-for-everything, the network faults, credits, the retired
host, body limits, and what the model saw (upright size, mode, GPS) as the request log records it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import itertools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import anyio
import orjson
import pytest
from PIL import ExifTags, Image, ImageOps

from batchcap.cli.serve import add_arguments, settings_from_args
from batchcap.config import RunConfig
from batchcap.emulator import (
    EmulatorSettings,
    RunningEmulator,
    caption_for,
)
from batchcap.errors import (
    BadResponse,
    ConfigError,
    ModelLoading,
    RequestTimeout,
    ServerError,
    TransportError,
)
from batchcap.models import ImageJob, LoadedImage
from batchcap.service.client import CaptionClient
from batchcap.service.protocols import make_adapter

Emulator = Callable[[EmulatorSettings], Awaitable[RunningEmulator]]
MODEL = "Salesforce/blip-image-captioning-base"
CREDITS = (
    "You have exceeded your monthly included credits for Inference Providers. "
    "Subscribe to PRO to get 20x more monthly included credits."
)


def jpeg(size: tuple[int, int] = (40, 20), *, orientation: int | None = None, gps: bool = False) -> bytes:
    """A small red JPEG, optionally with an EXIF orientation and a GPS position, as phones write them."""
    exif = Image.Exif()
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    if gps:
        ifd = exif.get_ifd(ExifTags.IFD.GPSInfo)
        ifd[ExifTags.GPS.GPSLatitudeRef] = "N"
        ifd[ExifTags.GPS.GPSLatitude] = (52.0, 22.0, 1.5)
    buf = io.BytesIO()
    Image.new("RGB", size, (255, 0, 0)).save(buf, "JPEG", **({"exif": exif} if len(exif) else {}))
    return buf.getvalue()


def loaded(data: bytes, mime: str = "image/jpeg") -> LoadedImage:
    return LoadedImage(ImageJob("a.jpg", "/nowhere/a.jpg", len(data)), data, mime)


async def post(
    session: aiohttp.ClientSession, url: str, data: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    async with session.post(url, data=io.BytesIO(data), headers=headers or {}) as response:
        return response.status, {k.lower(): v for k, v in response.headers.items()}, await response.read()


# --- the Endpoint container's port ----------------------------------------------------------------------------


async def test_endpoint_content_type_is_matched_exactly(emulator: Emulator) -> None:
    with anyio.fail_after(10):
        server = await emulator(EmulatorSettings(profile="endpoint"))
        data = jpeg()
        b64 = base64.b64encode(data).decode()
        async with aiohttp.ClientSession() as session:
            for bad in ("image/jpeg; charset=binary", "IMAGE/JPEG", "application/octet-stream"):
                status, _, body = await post(session, server.url, data, {"Content-Type": bad})
                assert status == 400, bad
                assert f'Content type "{bad}" not supported.' in orjson.loads(body)["error"]
            status, _, _ = await post(session, server.url, data, {"Content-Type": "image/jpeg"})
            assert status == 200
            json_body = f'{{"inputs": "{b64}"}}'.encode()
            status, _, body = await post(
                session, server.url + "/predict", json_body, {"Content-Type": "application/json; charset=utf-8"}
            )
            assert status == 400
            for accepted in ("application/json", "application/json; charset=UTF-8"):
                status, _, body = await post(session, server.url, json_body, {"Content-Type": accepted})
                assert (status, body) == (200, f'[{{"generated_text":"{caption_for(data)}"}}]'.encode())
            async with session.post(server.url, data=data, skip_auto_headers=["Content-Type"]) as response:
                assert response.status == 400
                assert 'Content type "None" not supported.' in (await response.json())["error"]


async def test_endpoint_refuses_a_foreign_accept_after_inference(emulator: Emulator) -> None:
    with anyio.fail_after(10):
        server = await emulator(EmulatorSettings(profile="endpoint", latency=0.1))
        data = jpeg()
        async with aiohttp.ClientSession() as session:
            for accept, expected in (("*/*", 200), ("application/json", 200), ("image/png", 400), ("text/html", 400)):
                started = time.monotonic()
                status, _, _ = await post(session, server.url, data, {"Content-Type": "image/jpeg", "Accept": accept})
                assert status == expected, accept
                assert time.monotonic() - started >= 0.09  # the model ran first, refused or not
        assert all(entry.decoded is not None for entry in server.log.entries)


async def test_endpoint_routes_and_headers(emulator: Emulator) -> None:
    with anyio.fail_after(10):
        server = await emulator(EmulatorSettings(profile="endpoint"))
        async with aiohttp.ClientSession() as session:
            answers = []
            for method, path in (
                ("GET", "/"),
                ("GET", "/health"),
                ("GET", "/metrics"),
                ("POST", f"/models/{MODEL}"),
                ("POST", f"/hf-inference/models/{MODEL}"),
                ("POST", "/v1/chat/completions"),
                ("GET", "/stats"),
            ):
                async with session.request(method, server.url + path) as response:
                    answers.append((response.status, await response.text()))
                    assert "x-request-id" not in response.headers
            status, headers, _ = await post(session, server.url, jpeg(), {"Content-Type": "image/jpeg"})
            assert status == 200
            assert "x-request-id" not in headers
        assert answers[:2] == [(200, "Ok"), (200, "Ok")]
        assert answers[2][0] == 200
        assert "# TYPE" in answers[2][1]
        assert answers[3:] == [(404, "Not Found")] * 4


async def test_endpoint_failures_are_400_with_noise_never_500(emulator: Emulator) -> None:
    with anyio.fail_after(10):
        server = await emulator(EmulatorSettings(profile="endpoint"))
        failing = await emulator(EmulatorSettings(profile="endpoint", fail_rate=1.0))
        async with aiohttp.ClientSession() as session:
            messages = []
            for _ in range(2):
                status, _, body = await post(session, server.url, b"not an image", {"Content-Type": "image/jpeg"})
                assert status == 400
                messages.append(body.decode())
            assert messages[0] != messages[1]  # identical refusals, different text
            assert all("cannot identify image file <_io.BytesIO object at 0x" in m for m in messages)
            echoes = []
            for _ in range(2):
                status, _, body = await post(
                    session, server.url, b'{"image": "abc"}', {"Content-Type": "application/json"}
                )
                assert status == 400
                echoes.append(body.decode())
            assert "Body needs to provide a inputs key" in echoes[0]
            assert '{"image":"abc"}' in orjson.loads(echoes[0])["error"]  # the body comes back in the message
            for _ in range(3):
                status, _, body = await post(session, failing.url, jpeg(), {"Content-Type": "image/jpeg"})
                assert status == 400
                assert b"out of memory" in body
        assert failing.log.count(500) == server.log.count(500) == 0


# --- capacity: replicas, FIFO queue, abandoned work, batching ------------------------------------------------


def starts(server: RunningEmulator) -> list[float]:
    """When each logged request got a replica slot: admitted at ``t``, then ``queued`` seconds in the queue."""
    return sorted(entry.t + entry.queued for entry in server.log.entries)


async def test_one_at_a_time_queues_fifo_and_finishes_abandoned_work(emulator: Emulator) -> None:
    with anyio.fail_after(15):
        latency = 0.1
        server = await emulator(EmulatorSettings(profile="endpoint", latency=latency))
        data, headers = jpeg(), {"Content-Type": "image/jpeg"}
        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(*(post(session, server.url, data, headers) for _ in range(4)))
            assert [status for status, _, _ in results] == [200] * 4
            begun = starts(server)
            # one at a time: each starts when the one before has had its full latency
            assert all(b - a >= 0.8 * latency for a, b in itertools.pairwise(begun)), begun
            assert max(entry.queued for entry in server.log.entries) >= 2 * latency
            # A client that gives up does not free the replica: the next request waits for the abandoned one.
            async with anyio.create_task_group() as tg:
                tg.start_soon(post, session, server.url, data, headers)
                assert server.pool is not None
                while server.pool.running == 0:  # bounded by fail_after
                    await anyio.sleep(0.005)
                tg.cancel_scope.cancel()  # the client goes away mid-request
            started = time.monotonic()
            status, _, _ = await post(session, server.url, data, headers)
            assert status == 200
            assert time.monotonic() - started >= 1.2 * latency  # its own latency, after what remained of the other
        assert server.pool.completed == 6  # the abandoned request ran to its end


async def test_replicas_and_batching_set_the_capacity(emulator: Emulator) -> None:
    with anyio.fail_after(20):
        latency = 0.2
        data, headers = jpeg(), {"Content-Type": "image/jpeg"}
        two = await emulator(EmulatorSettings(profile="endpoint", replicas=2, latency=latency))
        batch = await emulator(EmulatorSettings(profile="endpoint", max_batch=4, batch_alpha=0.5, latency=latency))
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(post(session, two.url, data, headers) for _ in range(4)))
            begun = starts(two)
            assert begun[2] - begun[0] >= 0.8 * latency  # two run, the other two wait for them
            assert sorted(entry.queued for entry in two.log.entries)[1] < latency / 2

            started = time.monotonic()
            await asyncio.gather(*(post(session, batch.url, data, headers) for _ in range(4)))
            together = time.monotonic() - started
            assert all(entry.queued < latency / 2 for entry in batch.log.entries)  # all four fit in one batch
            # together they cost more than one alone: a batch of 4 takes latency * (1 + 0.5 * 3) = 2.5 latency
            assert together >= 2.5 * latency * 0.9
            await asyncio.gather(*(post(session, batch.url, data, headers) for _ in range(8)))
            assert sum(entry.queued >= latency for entry in list(batch.log.entries)[4:]) == 4


def test_capacity_defaults_per_profile() -> None:
    assert EmulatorSettings().capacity is None
    assert EmulatorSettings(profile="serverless").capacity is None
    one = EmulatorSettings(profile="endpoint").capacity
    assert one is not None
    assert (one.replicas, one.slots, one.alpha) == (1, 1, 0.0)
    tgi = EmulatorSettings(profile="tgi").capacity
    assert tgi is not None
    assert (tgi.replicas, tgi.slots, tgi.alpha) == (1, 8, 0.1)
    mixed = EmulatorSettings(replicas=3, replica_concurrency=2).capacity
    assert mixed is not None
    assert (mixed.replicas, mixed.slots, mixed.total) == (3, 2, 6)
    with pytest.raises(ConfigError, match="--replicas"):
        EmulatorSettings(replicas=0)
    with pytest.raises(ConfigError, match="add up to"):
        EmulatorSettings(reset_rate=0.6, hang_rate=0.6)


# --- faults -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("knob", "fault", "error"),
    [
        ("reset_rate", "reset", TransportError),
        ("truncate_rate", "truncated", TransportError),
        ("hang_rate", "hang", RequestTimeout),
        ("garble_rate", "garbled", BadResponse),
        ("proxy_error_rate", "proxy", ServerError),  # 504 is a ServerError; 502 without a message a ModelLoading
    ],
)
async def test_each_fault_reaches_the_client_as_its_class(
    emulator: Emulator, knob: str, fault: str, error: type[Exception]
) -> None:
    with anyio.fail_after(10):
        server = await emulator(EmulatorSettings(**{knob: 1.0}, seed=3))
        url = f"{server.url}/hf-inference/models/{MODEL}"
        adapter = make_adapter(RunConfig.build(api="hf", model=MODEL).target)
        seen: list[str] = []
        async with CaptionClient(url, adapter, timeout=0.5) as client:
            for _ in range(4):
                with pytest.raises((TransportError, BadResponse, ServerError, ModelLoading)) as caught:
                    await client.caption(loaded(jpeg()))
                seen.append(type(caught.value).__name__)
        if knob == "proxy_error_rate":
            assert set(seen) <= {"ServerError", "ModelLoading"}
        else:
            assert set(seen) == {error.__name__}
        with anyio.fail_after(5):  # the hung handlers log their entry once they see their clients go
            while len(server.log.entries) < 4:
                await anyio.sleep(0.01)
        assert {entry.fault for entry in server.log.entries} == {fault}


async def test_a_fault_mix_is_seeded_and_repeatable(emulator: Emulator) -> None:
    with anyio.fail_after(15):
        mix = {"fail_rate": 0.1, "reset_rate": 0.1, "truncate_rate": 0.1, "proxy_error_rate": 0.1, "garble_rate": 0.1}
        runs = []
        for _ in range(2):
            server = await emulator(EmulatorSettings(**mix, seed=7))
            url = f"{server.url}/hf-inference/models/{MODEL}"
            async with aiohttp.ClientSession() as session:
                for _ in range(40):
                    try:
                        await post(session, url, jpeg())
                    except aiohttp.ClientError:
                        pass
            runs.append([entry.fault for entry in server.log.entries])
        assert runs[0] == runs[1]
        assert {"", "error", "reset", "truncated", "proxy", "garbled"} <= set(runs[0])


async def test_credits_run_out_with_402_for_every_later_request(emulator: Emulator) -> None:
    with anyio.fail_after(10):
        server = await emulator(EmulatorSettings(credits=3))
        url = f"{server.url}/hf-inference/models/{MODEL}"
        async with aiohttp.ClientSession() as session:
            answers = [await post(session, url, jpeg()) for _ in range(6)]
        assert [status for status, _, _ in answers] == [200, 200, 200, 402, 402, 402]
        assert answers[-1][2] == f'{{"error":"{CREDITS}"}}'.encode()


async def test_retired_host_answers_410(emulator: Emulator) -> None:
    with anyio.fail_after(10):
        server = await emulator(EmulatorSettings(legacy_gone=True))
        async with aiohttp.ClientSession() as session:
            status, headers, body = await post(session, f"{server.url}/models/{MODEL}", jpeg())
            assert status == 410
            assert headers["content-type"].startswith("text/plain")
            assert body.decode() == (
                "https://api-inference.huggingface.co is no longer supported. "
                "Please use https://router.huggingface.co instead."
            )
            status, _, _ = await post(session, f"{server.url}/hf-inference/models/{MODEL}", jpeg())
            assert status == 200


# --- body limits, and what the model saw ----------------------------------------------------------------------


async def test_chat_route_has_tgi_s_2mb_body_limit(emulator: Emulator) -> None:
    with anyio.fail_after(10):
        server = await emulator(EmulatorSettings(profile="tgi"))
        small = await emulator(EmulatorSettings(endpoint_max_body_bytes=1000))
        async with aiohttp.ClientSession() as session:
            status, _, body = await post(
                session, server.url + "/v1/chat/completions", b"x" * 2_000_001, {"Content-Type": "application/json"}
            )
            assert (status, body) == (413, b"Failed to buffer the request body: length limit exceeded")
            status, _, _ = await post(session, small.url, jpeg((200, 200)), {"Content-Type": "image/jpeg"})
            assert status == 413
            status, _, _ = await post(session, f"{small.url}/models/{MODEL}", jpeg((200, 200)))
            assert status == 200  # the serverless route keeps its own limit


async def test_caption_and_log_report_the_upright_size_mode_and_gps(emulator: Emulator) -> None:
    with anyio.fail_after(10):
        server = await emulator(EmulatorSettings())
        rotated, plain = jpeg((40, 20), orientation=6, gps=True), jpeg((40, 20))
        cmyk = io.BytesIO()
        Image.new("CMYK", (8, 6)).save(cmyk, "JPEG")
        url = f"{server.url}/hf-inference/models/{MODEL}"
        async with aiohttp.ClientSession() as session:
            for data in (rotated, plain, cmyk.getvalue()):
                status, _, body = await post(session, url, data)
                assert status == 200
                assert body.decode() == f'[{{"generated_text":"{caption_for(data)}"}}]'
        with Image.open(io.BytesIO(rotated)) as image:
            assert caption_for(rotated).startswith("a {}x{} RGB jpeg".format(*ImageOps.exif_transpose(image).size))
        assert caption_for(rotated) == "a 20x40 RGB jpeg image, mostly red"
        first, second, third = server.log.decoded()
        assert (first.width, first.height, first.orientation, first.exif, first.gps) == (20, 40, 6, True, True)
        assert (second.width, second.height, second.exif, second.gps) == (40, 20, False, False)
        assert third.mode == "CMYK"
        assert not any(d.gps for d in server.log.decoded()[1:])  # "no GPS reached the server", as a test says it


def test_serve_flags_build_the_strict_settings() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    ns = parser.parse_args(
        ["--profile", "endpoint", "--replicas", "2", "--batching", "--reset-rate", "0.03", "--credits", "40",
         "--legacy-gone", "--max-body-mb", "5", "--max-body-mb", "chat=2"]
    )
    settings = settings_from_args(ns)
    assert (settings.profile, settings.replicas, settings.max_batch, settings.reset_rate) == ("endpoint", 2, 8, 0.03)
    assert (settings.credits, settings.legacy_gone) == (40, True)
    assert (settings.max_body_bytes, settings.endpoint_max_body_bytes, settings.chat_max_body_bytes) == (
        5_000_000,
        5_000_000,
        2_000_000,
    )
    assert "capacity=2x batch 8" in settings.describe()
    with pytest.raises(ConfigError, match="--max-body-mb"):
        settings_from_args(parser.parse_args(["--max-body-mb", "gpu=3"]))


# --- the real huggingface_hub client ------------------------------------------------------------------------------


# huggingface_hub 2.4.0 passes raw bytes as `data=` to httpx2, which warns; that is their bug, not ours.
@pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw:DeprecationWarning")
async def test_huggingface_hub_meets_the_strict_endpoint_and_the_credits(emulator: Emulator, tmp_path: Path) -> None:
    hub = pytest.importorskip("huggingface_hub")
    with anyio.fail_after(15):
        endpoint = await emulator(EmulatorSettings(profile="endpoint"))
        data = jpeg((30, 10), orientation=8)
        async with hub.AsyncInferenceClient(model=endpoint.url, token="hf_x") as client:
            with pytest.raises(hub.errors.BadRequestError, match="Content type"):
                await client.image_to_text(data)  # bytes: huggingface_hub sends no Content-Type
            path = tmp_path / "photo.jpg"
            path.write_bytes(data)
            output = await client.image_to_text(path)  # a path: the Content-Type is guessed from .jpg
        assert output.generated_text == caption_for(data) == "a 10x30 RGB jpeg image, mostly red"

        router = await emulator(EmulatorSettings(profile="serverless", credits=1))
        model_url = f"{router.url}/hf-inference/models/{MODEL}"
        async with hub.AsyncInferenceClient(model=model_url, token="hf_x") as client:
            await client.image_to_text(data)
            with pytest.raises(hub.errors.HfHubHTTPError, match="exceeded your monthly included credits") as caught:
                await client.image_to_text(data)
        assert caught.value.response.status_code == 402


# --- the other profiles -------------------------------------------------------------------------------------------


async def test_tgi_profile_serves_chat_batched_and_nothing_else(emulator: Emulator) -> None:
    with anyio.fail_after(10):
        server = await emulator(EmulatorSettings(profile="tgi", latency=0.3))
        assert server.pool is not None
        data = jpeg()
        body = orjson.dumps({
            "model": "dummy",
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(data).decode()}},
            ]}],
        })
        headers = {"Content-Type": "application/json"}
        async with aiohttp.ClientSession() as session:
            answers = await asyncio.gather(*(post(session, server.url + "/v1/chat/completions", body, headers)
                                             for _ in range(8)))
            assert all(status == 200 for status, _, _ in answers)
            assert orjson.loads(answers[0][2])["choices"][0]["message"]["content"] == caption_for(data)
            assert all(entry.queued < 0.15 for entry in server.log.entries)  # eight fit in one batch
            for method, path in (("GET", "/health"), ("POST", "/"), ("POST", f"/hf-inference/models/{MODEL}")):
                async with session.request(method, server.url + path) as response:
                    assert response.status == (200 if path == "/health" else 404), path


async def test_serverless_profile_has_no_endpoint_routes(emulator: Emulator) -> None:
    with anyio.fail_after(10):
        server = await emulator(EmulatorSettings(profile="serverless"))
        async with aiohttp.ClientSession() as session:
            status, headers, _ = await post(session, f"{server.url}/hf-inference/models/{MODEL}", jpeg())
            assert status == 200
            assert headers["x-request-id"].startswith("emu-")
            status, _, _ = await post(session, f"{server.url}/models/{MODEL}", jpeg())
            assert status == 200  # the legacy route still answers unless legacy_gone
            status, _, _ = await post(session, server.url + "/", jpeg(), {"Content-Type": "image/jpeg"})
            assert status in (404, 405)


async def test_answer_shapes_of_custom_handlers(emulator: Emulator) -> None:
    with anyio.fail_after(10):
        data = jpeg()
        expected = caption_for(data)
        adapter = make_adapter(RunConfig.build(api="hf", model=MODEL).target)
        for shape in ("list", "object", "string"):
            server = await emulator(EmulatorSettings(answer_shape=shape))  # type: ignore[arg-type]
            async with CaptionClient(server.url + "/", adapter, timeout=5) as client:
                if shape == "string":
                    with pytest.raises(BadResponse):  # every image alike: a systematic bad response
                        await client.caption(loaded(data))
                else:
                    assert (await client.caption(loaded(data))).caption == expected
