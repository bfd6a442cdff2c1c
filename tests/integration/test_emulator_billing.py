"""The emulated router bills like a VLM provider: usage from the image and the prompt, a provider per answer,
``/v1/models`` with prices in the router's shape; real clients (ours, huggingface_hub) read it."""

from __future__ import annotations

import base64
import io
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import anyio
import pytest
from PIL import Image

from batchcap.emulator import DEFAULT_TOKEN, EmulatorSettings, RunningEmulator, caption_for, chat_answer_for
from batchcap.emulator.billing import ProviderPrice, image_tokens, text_tokens, usage_cost
from batchcap.flow.budget import TokenPrice
from batchcap.service.pricing import parse_models

Emulator = Callable[[EmulatorSettings], Awaitable[RunningEmulator]]
MODEL = "Salesforce/blip-image-captioning-base"


def jpeg(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, "JPEG")
    return buf.getvalue()


def chat(data: bytes, prompt: str = "Caption this.", model: str = MODEL, max_tokens: int = 50) -> dict[str, Any]:
    uri = f"data:image/jpeg;base64,{base64.b64encode(data).decode()}"
    content = [{"type": "text", "text": prompt}, {"type": "image_url", "image_url": {"url": uri}}]
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens}


async def ask(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], str | None]:
    async with session.post(url + "/v1/chat/completions", json=body) as response:
        return response.status, await response.json(), response.headers.get("x-inference-provider")


def test_image_tokens_count_28_pixel_cells_within_the_models_limit() -> None:
    assert image_tokens(64, 48) == 2 * 2 + 2
    assert image_tokens(1008, 756) == 36 * 27 + 2
    assert image_tokens(4032, 3024) <= 1280 + 2  # scaled down to max_pixels first
    assert image_tokens(4032, 3024) == image_tokens(1344, 1008)  # the same picture, smaller: the same tokens
    assert text_tokens("") == 0
    assert text_tokens("abcd") == 1
    assert text_tokens("abcde") == 2


async def test_usage_grows_with_the_image_and_the_prompt(emulator: Emulator) -> None:
    server = await emulator(EmulatorSettings())
    small, large = jpeg(64, 48), jpeg(1008, 756)
    with anyio.fail_after(10):
        async with aiohttp.ClientSession() as session:
            _, a, _ = await ask(session, server.url, chat(small))
            _, b, _ = await ask(session, server.url, chat(large))
            _, c, _ = await ask(session, server.url, chat(large, prompt="Caption this. " * 20))
    prompt = text_tokens("Caption this.")
    assert a["usage"]["prompt_tokens"] == prompt + image_tokens(64, 48)
    assert b["usage"]["prompt_tokens"] == prompt + image_tokens(1008, 756)
    assert c["usage"]["prompt_tokens"] == text_tokens("Caption this. " * 20) + image_tokens(1008, 756)
    for body, data in ((a, small), (b, large)):
        assert body["usage"]["completion_tokens"] == text_tokens(chat_answer_for(data, "Caption this."))
        assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]


async def test_the_provider_is_named_and_billed_at_its_listed_price(emulator: Emulator) -> None:
    providers = (ProviderPrice("fast", 0.3, 1.2), ProviderPrice("cheap", 0.1, 0.4), ProviderPrice("mystery"))
    server = await emulator(EmulatorSettings(providers=providers))
    data = jpeg(320, 240)
    with anyio.fail_after(10):
        async with aiohttp.ClientSession() as session:
            async with session.get(server.url + "/v1/models") as response:
                listing = await response.json()
            async with session.get(f"{server.url}/v1/models/{MODEL}") as response:
                one = await response.json()
            async with session.get(f"{server.url}/v1/models/no/such-model") as response:
                assert response.status == 404
            answers = {suffix: await ask(session, server.url, chat(data, model=MODEL + suffix))
                       for suffix in ("", ":cheapest", ":mystery", ":fast")}
            status, refused, _ = await ask(session, server.url, chat(data, model=MODEL + ":nobody"))
    assert one == listing["data"][0]
    prices = parse_models(listing, MODEL, source="emulator")
    assert prices is not None
    assert prices.by_provider == {"fast": TokenPrice(0.3, 1.2), "cheap": TokenPrice(0.1, 0.4)}
    assert prices.unpriced == ("mystery",)
    assert {k: v[2] for k, v in answers.items()} == {"": "fast", ":cheapest": "cheap", ":mystery": "mystery",
                                                     ":fast": "fast"}
    assert status == 400
    assert "not supported by any provider" in refused["error"]
    expected = 0.0
    for _, body, name in answers.values():
        provider = next(p for p in providers if p.name == name)
        expected += usage_cost(provider, body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"])
    assert server.log.billed_usd == pytest.approx(expected)
    assert sum(server.log.billed.values()) == 4
    assert len(server.log.billed) == 1


async def test_max_tokens_cuts_the_caption_and_says_so(emulator: Emulator) -> None:
    server = await emulator(EmulatorSettings())
    data = jpeg(320, 240)
    with anyio.fail_after(10):
        async with aiohttp.ClientSession() as session:
            _, body, _ = await ask(session, server.url, chat(data, max_tokens=3))
            status, bad, _ = await ask(session, server.url, chat(data, max_tokens=0))
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3
    assert caption_for(data).startswith(body["choices"][0]["message"]["content"])
    assert status == 422
    assert "max_tokens" in bad["error"]


async def test_tgi_names_no_provider_and_lists_no_prices(emulator: Emulator) -> None:
    server = await emulator(EmulatorSettings(profile="tgi"))
    with anyio.fail_after(10):
        async with aiohttp.ClientSession() as session:
            status, body, provider = await ask(session, server.url, chat(jpeg(64, 64)))
            async with session.get(server.url + "/v1/models") as response:
                listing = await response.json()
    assert status == 200
    assert provider is None
    assert body["usage"]["prompt_tokens"] > 0
    assert "providers" not in listing["data"][0]
    assert parse_models(listing, MODEL, source="tgi") is None
    assert server.log.billed_usd == 0.0


async def test_huggingface_hub_reads_the_usage_we_report(emulator: Emulator) -> None:
    hub = pytest.importorskip("huggingface_hub")
    server = await emulator(EmulatorSettings(auth="protected"))
    data = jpeg(448, 336)
    with anyio.fail_after(10):
        async with hub.AsyncInferenceClient(base_url=f"{server.url}/v1", api_key=DEFAULT_TOKEN) as client:
            completion = await client.chat.completions.create(model=MODEL, messages=chat(data)["messages"],
                                                              max_tokens=50)
    assert completion.usage.prompt_tokens == text_tokens("Caption this.") + image_tokens(448, 336)
    assert completion.usage.completion_tokens == text_tokens(chat_answer_for(data, "Caption this."))
