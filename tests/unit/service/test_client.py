"""The client's edge cases against aiohttp's RawTestServer: a few-line handler per case, real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from batchcap.errors import AuthError, BadResponse, RejectedImage, TransportError, WrongTarget
from batchcap.models import ImageJob, LoadedImage, Usage
from batchcap.service.auth import Secret
from batchcap.service.client import CaptionClient
from batchcap.service.protocols import HFRaw, OpenAIChat

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
Serve = Callable[[Handler], Awaitable[str]]
IMAGE = LoadedImage(ImageJob("a.jpg", "/x/a.jpg", 4), b"\xff\xd8\xff\xd9", "image/jpeg")
TOKEN = "hf_secret_token_value"


@pytest.fixture
def serve(raw_server: Serve) -> Serve:
    return raw_server


async def caption(url: str, *, token: str | None = TOKEN, timeout: float = 2.0) -> str:
    async with CaptionClient(url, HFRaw(), token=Secret(token) if token else None, timeout=timeout) as client:
        return (await client.caption(IMAGE)).caption


async def test_a_caption_comes_back(serve: Serve) -> None:
    async def ok(request: web.BaseRequest) -> web.StreamResponse:
        assert request.headers["Content-Type"] == "image/jpeg"
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        return web.json_response([{"generated_text": " a cat "}])

    assert await caption(await serve(ok)) == "a cat"


async def test_a_redirect_to_another_host_is_not_followed_so_the_token_stays_home(serve: Serve) -> None:
    seen: list[str] = []

    async def elsewhere(request: web.BaseRequest) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response([{"generated_text": "stolen"}])

    other = await serve(elsewhere)

    async def redirect(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(status=307, headers={"Location": other})

    with pytest.raises(WrongTarget, match=r"redirect .* use the final URL"):
        await caption(await serve(redirect))
    assert seen == []


async def test_a_connection_reset_is_a_transport_error(serve: Serve) -> None:
    async def reset(request: web.BaseRequest) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.abort()
        await asyncio.sleep(0.1)
        return web.Response()

    with pytest.raises(TransportError):
        await caption(await serve(reset))


async def test_a_body_cut_short_is_a_transport_error_not_a_caption(serve: Serve) -> None:
    async def truncated(request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "100", "Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'[{"generated_text": "a c')
        assert request.transport is not None
        request.transport.close()
        return response

    with pytest.raises(TransportError, match=r"broken answer|closed the connection"):
        await caption(await serve(truncated))


async def test_a_server_that_never_answers_times_out(serve: Serve) -> None:
    async def hang(request: web.BaseRequest) -> web.StreamResponse:
        await asyncio.sleep(30)
        return web.Response()

    with pytest.raises(TransportError, match=r"no answer .* within 0.3 s"):
        await caption(await serve(hang), timeout=0.3)


async def test_a_server_that_echoes_the_token_does_not_get_it_into_the_error(serve: Serve) -> None:
    async def echo(request: web.BaseRequest) -> web.StreamResponse:
        return web.json_response({"error": f"bad header {request.headers['Authorization']}"}, status=401)

    with pytest.raises(AuthError) as info:
        await caption(await serve(echo))
    assert TOKEN not in str(info.value)
    assert TOKEN not in repr(info.value.args)
    assert "***" in info.value.message


async def test_a_200_that_is_not_json_is_a_bad_response(serve: Serve) -> None:
    async def garbled(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(text="<html>oops</html>", content_type="text/html")

    with pytest.raises(BadResponse, match="not JSON"):
        await caption(await serve(garbled))


async def test_a_refusal_carries_the_servers_words_and_request_id(serve: Serve) -> None:
    async def refuse(request: web.BaseRequest) -> web.StreamResponse:
        return web.json_response({"error": "image too small"}, status=422, headers={"x-request-id": "r-7"})

    with pytest.raises(RejectedImage, match=r"HTTP 422 .*: image too small") as info:
        await caption(await serve(refuse))
    assert info.value.request_id == "r-7"


async def test_a_large_body_is_sent_whole_without_a_resource_warning(serve: Serve) -> None:
    big = LoadedImage(ImageJob("big.jpg", "/x/big.jpg", 3_000_000), b"\xff\xd8\xff" + b"\0" * 3_000_000 + b"\xff\xd9",
                      "image/jpeg")
    got: list[int] = []

    async def measure(request: web.BaseRequest) -> web.StreamResponse:
        got.append(len(await request.content.read()))  # the stream: no 1 MB client_max_size
        return web.json_response([{"generated_text": "big"}])

    async with CaptionClient(await serve(measure), HFRaw(), timeout=5.0) as client:
        reply = await client.caption(big)  # filterwarnings=error: a ResourceWarning would fail here
    assert reply.caption == "big"
    assert got == [len(big.data)]
    assert reply.bytes_sent == len(big.data)


async def test_a_chat_answer_brings_its_usage_and_the_provider_that_served_it(serve: Serve) -> None:
    async def router(request: web.BaseRequest) -> web.StreamResponse:
        return web.json_response({"choices": [{"message": {"content": "a cat"}, "finish_reason": "stop"}],
                                  "usage": {"prompt_tokens": 812, "completion_tokens": 17}},
                                 headers={"x-inference-provider": "novita"})

    url = await serve(router)
    async with CaptionClient(url, OpenAIChat(model="m", prompt="p")) as client:
        reply = await client.caption(IMAGE)
    assert (reply.caption, reply.usage, reply.provider) == ("a cat", Usage(812, 17), "novita")


async def test_get_json_reads_a_list_on_the_same_host_only_and_keeps_the_token_out_of_errors(serve: Serve) -> None:
    async def models(request: web.BaseRequest) -> web.StreamResponse:
        if request.path == "/v1/models":
            assert request.headers["Authorization"] == f"Bearer {TOKEN}"
            return web.json_response({"object": "list", "data": []})
        if request.path == "/v1/garbled":
            return web.Response(text="<html>")
        return web.json_response({"error": f"nope {request.headers['Authorization']}"}, status=401)

    url = (await serve(models)).rstrip("/")
    async with CaptionClient(url + "/v1/chat/completions", HFRaw(), token=Secret(TOKEN)) as client:
        assert await client.get_json(url + "/v1/models") == {"object": "list", "data": []}
        with pytest.raises(BadResponse, match="not JSON"):
            await client.get_json(url + "/v1/garbled")
        with pytest.raises(AuthError) as info:
            await client.get_json(url + "/v1/other")
        assert TOKEN not in str(info.value)
        with pytest.raises(WrongTarget, match="configured host only"):
            await client.get_json("http://elsewhere.invalid/v1/models")
