"""``parse_reply``: the caption and why generation stopped, without breaking adapters that only ``parse``."""

from __future__ import annotations

import orjson
import pytest

from batchcap.errors import BadResponse
from batchcap.service.protocols import HFJson, HFRaw, OpenAIChat, parse_reply


def _chat(content: object, finish_reason: object = "stop") -> bytes:
    return orjson.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                      "finish_reason": finish_reason}]})


def test_openai_reports_finish_reason() -> None:
    chat = OpenAIChat(model="m", prompt="p")
    assert chat.parse_reply(_chat(" A cat. ")) == ("A cat.", "stop")
    assert chat.parse_reply(_chat("A cat sitting on", "length")) == ("A cat sitting on", "length")
    assert chat.parse_reply(_chat("A cat.", None)) == ("A cat.", None)
    assert chat.parse(_chat("A cat.", "length")) == "A cat."  # the old door still works


def test_openai_null_content_cut_off_is_an_empty_caption() -> None:
    assert OpenAIChat(model="m", prompt="p").parse_reply(_chat(None, "length")) == ("", "length")
    with pytest.raises(BadResponse):
        OpenAIChat(model="m", prompt="p").parse_reply(_chat(None, "stop"))


@pytest.mark.parametrize("adapter", [HFRaw(), HFJson()])
def test_hf_pipelines_have_no_finish_reason(adapter: HFRaw | HFJson) -> None:
    assert adapter.parse_reply(b'[{"generated_text": "a dog"}]') == ("a dog", None)


def test_an_adapter_with_only_parse_still_works() -> None:
    class Old:
        name = "old"

        def build(self, image):  # pragma: no cover - not called
            raise NotImplementedError

        def parse(self, body: bytes) -> str:
            return body.decode()

    assert parse_reply(Old(), b"hello") == ("hello", None)
