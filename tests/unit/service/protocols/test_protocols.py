"""Adapters and the status -> error map, on golden bytes; no sockets."""

from __future__ import annotations

import base64

import orjson
import pytest

from batchcap.config import RunConfig
from batchcap.errors import (
    AuthError,
    BadResponse,
    ModelLoading,
    RateLimited,
    RejectedImage,
    ServerError,
    WrongTarget,
)
from batchcap.models import ImageJob, LoadedImage, Usage
from batchcap.service.protocols import (
    HFJson,
    HFRaw,
    OpenAIChat,
    classify,
    error_message,
    make_adapter,
    parse_answer,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
IMG = LoadedImage(ImageJob("a/b.png", "/x/a/b.png", len(PNG)), PNG, "image/png")


def test_hf_raw_sends_bytes_with_sniffed_content_type() -> None:
    built = HFRaw().build(IMG)
    assert built.body == PNG
    assert built.headers["Content-Type"] == "image/png"


@pytest.mark.parametrize(
    ("body", "caption"),
    [
        (b'[{"generated_text": "two birds are standing next to each other "}]', "two birds are standing next to each other"),
        (b'{"generated_text": "a cat"}', "a cat"),
        (b'[{"generated_text": "x", "extra": 1}, {"generated_text": "y"}]', "x"),
    ],
)
def test_hf_parse(body: bytes, caption: str) -> None:
    assert HFRaw().parse(body) == caption


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'[{"label": "cat"}]', b'{"generated_text": 3}', b"<html>"])
def test_hf_parse_rejects_other_shapes(body: bytes) -> None:
    with pytest.raises(BadResponse):
        HFRaw().parse(body)


def test_hf_json_carries_base64_and_parameters() -> None:
    built = HFJson(parameters={"max_new_tokens": 20}).build(IMG)
    payload = orjson.loads(built.body)
    assert base64.b64decode(payload["inputs"]) == PNG
    assert payload["parameters"] == {"max_new_tokens": 20}
    assert built.headers["Content-Type"] == "application/json"


def test_openai_request_shape_matches_huggingface_hub() -> None:
    built = OpenAIChat(model="Qwen/Qwen2.5-VL-7B-Instruct", prompt="Caption this.", max_tokens=50).build(IMG)
    assert built.body.startswith(b'{"model":"Qwen/Qwen2.5-VL-7B-Instruct"')  # routers read the model first
    payload = orjson.loads(built.body)
    text, image = payload["messages"][0]["content"]
    assert text == {"type": "text", "text": "Caption this."}
    assert image["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert payload["max_tokens"] == 50
    assert payload["stream"] is False


def test_openai_parse() -> None:
    body = orjson.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": " A cat. "}}],
                         "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}})
    assert OpenAIChat(model="m", prompt="p").parse(body) == "A cat."
    with pytest.raises(BadResponse):
        OpenAIChat(model="m", prompt="p").parse(b'{"choices": []}')


@pytest.mark.parametrize(
    ("status", "headers", "body", "cls"),
    [
        (401, {}, b'{"error":"Invalid credentials in Authorization header"}', AuthError),
        (403, {}, b"", AuthError),
        (429, {}, b'{"error":"rate limited"}', RateLimited),
        (503, {}, b'{"error":"Model x is currently loading","estimated_time":20.5}', ModelLoading),
        (503, {}, b"", ModelLoading),
        (502, {"Content-Type": "text/html"}, b"<html>Bad Gateway</html>", ModelLoading),
        (500, {}, b'{"error":"boom"}', ServerError),
        (504, {}, b"", ServerError),
        (400, {}, b'{"error":"cannot identify image file"}', RejectedImage),
        (413, {}, b"Failed to buffer the request body: length limit exceeded", RejectedImage),
        (422, {}, b'{"error":"Input validation error","error_type":"validation"}', RejectedImage),
        (404, {}, b"Not Found", WrongTarget),
        (410, {}, b"no longer supported", WrongTarget),
    ],
)
def test_classify(status: int, headers: dict[str, str], body: bytes, cls: type) -> None:
    exc = classify(status, headers, body, url_host="h")
    assert type(exc) is cls
    assert exc.status == status


def test_classify_reads_loading_time_and_retry_after() -> None:
    loading = classify(503, {}, b'{"error":"loading","estimated_time":44.49}', url_host="h")
    assert isinstance(loading, ModelLoading)
    assert loading.estimated_time == pytest.approx(44.49)
    limited = classify(429, {"Retry-After": "7"}, b"", url_host="h")
    assert isinstance(limited, RateLimited)
    assert limited.retry_after == 7.0


@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [
        ({}, b'{"error": "plain"}', "plain"),
        ({}, b'{"error": ["a", "b"]}', "a; b"),
        ({}, b'{"error": {"message": "vllm nested", "type": "BadRequestError"}}', "vllm nested"),
        ({}, b'{"object": "error", "message": "vllm flat"}', "vllm flat"),
        ({"X-Error-Message": "from header"}, b"{}", "from header"),
        ({"Content-Type": "text/html"}, b"<html><body>502</body></html>", ""),
        ({}, b"Not Found", "Not Found"),
    ],
)
def test_error_message(headers: dict[str, str], body: bytes, message: str) -> None:
    assert error_message(headers, body) == message


def test_registry_builds_each_adapter() -> None:
    assert make_adapter(RunConfig.build(api="hf", model="m").target).name == "hf"
    assert make_adapter(RunConfig.build(api="hf-json", model="m").target).name == "hf-json"
    assert make_adapter(RunConfig.build(api="openai", model="m", base_url="http://x/v1").target).name == "openai"


@pytest.mark.parametrize(("usage", "expected"), [
    ({"prompt_tokens": 812, "completion_tokens": 17, "total_tokens": 829}, Usage(812, 17)),
    ({"prompt_tokens": 812, "completion_tokens": 17, "prompt_tokens_details": {"cached_tokens": 0}}, Usage(812, 17)),
    (None, None),
    ({"prompt_tokens": "812", "completion_tokens": 17}, None),
    ({"prompt_tokens": -1, "completion_tokens": 17}, None),
    ({"prompt_tokens": True, "completion_tokens": 17}, None),
    ({"completion_tokens": 17}, None),
])
def test_openai_usage_is_read_as_reported_and_never_costs_a_caption(usage: object, expected: Usage | None) -> None:
    answer: dict[str, object] = {"choices": [{"message": {"content": "A cat."}, "finish_reason": "stop"}]}
    if usage is not None:
        answer["usage"] = usage
    assert OpenAIChat(model="m", prompt="p").parse_answer(orjson.dumps(answer)) == ("A cat.", "stop", expected)
    assert parse_answer(OpenAIChat(model="m", prompt="p"), orjson.dumps(answer))[2] == expected
    assert parse_answer(HFRaw(), b'[{"generated_text": "A cat."}]') == ("A cat.", None, None)
