"""The emulator's chat route per task: the prompt and the schema reach the log, each target's response_format
spelling is held to what the real server takes, and TGI says what it is at /info."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import jsonschema
import orjson

from batchcap.emulator import EmulatorSettings, chat_answer_for, json_answer_for
from tests.conftest import EmulatorFactory

SCHEMA = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}},
          "required": ["tags"]}


def body(data: bytes, prompt: str, response_format: Any = None) -> dict[str, Any]:
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    out: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": prompt}, {"type": "image_url", "image_url": {"url": uri}}]}], "max_tokens": 20}
    if response_format is not None:
        out["response_format"] = response_format
    return out


async def ask(url: str, payload: dict[str, Any]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.post(url + "/v1/chat/completions", json=payload) as r:
        return r.status, await r.json()


async def test_answers_per_prompt_and_json_per_schema(emulator: EmulatorFactory, sample_dir: Path) -> None:
    data = next(p for p in sample_dir.rglob("*.png")).read_bytes()
    server = await emulator(EmulatorSettings())
    openai = {"type": "json_schema", "json_schema": {"name": "tags", "schema": SCHEMA}}
    with anyio.fail_after(20):
        _, a = await ask(server.url, body(data, "Describe."))
        _, b = await ask(server.url, body(data, "List tags.", openai))
        status, tgi = await ask(server.url, body(data, "List tags.", {"type": "json_schema", "value": {"schema": SCHEMA}}))
    assert a["choices"][0]["message"]["content"] == chat_answer_for(data, "Describe.")
    reply = orjson.loads(b["choices"][0]["message"]["content"])
    jsonschema.validate(reply, SCHEMA)
    assert reply == json_answer_for(data, "List tags.", SCHEMA)
    assert status == 400
    assert "json_schema" in tgi["error"]["message"]
    assert server.log.prompts() == ["Describe.", "List tags."]
    assert [e.schema for e in server.log.entries if e.status == 200] == [None, SCHEMA]


async def test_tgi_takes_its_own_spelling_and_says_so_at_info(emulator: EmulatorFactory, sample_dir: Path) -> None:
    data = next(p for p in sample_dir.rglob("*.png")).read_bytes()
    server = await emulator(EmulatorSettings(profile="tgi"))
    with anyio.fail_after(20):
        refused, err = await ask(server.url, body(data, "Tags.", {"type": "json_schema",
                                                                  "json_schema": {"name": "t", "schema": SCHEMA}}))
        ok, answer = await ask(server.url, body(data, "Tags.", {"type": "json_schema", "value": {"name": "t",
                                                                                               "schema": SCHEMA}}))
        old, answer2 = await ask(server.url, body(data, "Tags.", {"type": "json", "value": SCHEMA}))
        async with aiohttp.ClientSession() as s, s.get(server.url + "/info") as r:
            info = await r.json()
    assert (refused, err["error_type"]) == (422, "validation")
    assert "missing field `value`" in err["error"]
    assert ok == old == 200
    jsonschema.validate(orjson.loads(answer["choices"][0]["message"]["content"]), SCHEMA)
    jsonschema.validate(orjson.loads(answer2["choices"][0]["message"]["content"]), SCHEMA)
    assert info["router"] == "text-generation-router"


async def test_invalid_json_rate_spoils_only_the_first_answer(emulator: EmulatorFactory, sample_dir: Path) -> None:
    images = [p.read_bytes() for p in sorted(sample_dir.rglob("*.png"))[:4]]
    server = await emulator(EmulatorSettings(invalid_json_rate=1.0, seed=5))
    openai = {"type": "json_schema", "json_schema": {"name": "tags", "schema": SCHEMA}}
    validator = jsonschema.Draft202012Validator(SCHEMA)

    def valid(text: str) -> bool:
        try:
            return validator.is_valid(orjson.loads(text))
        except orjson.JSONDecodeError:
            return False

    with anyio.fail_after(20):
        for data in images:
            first = (await ask(server.url, body(data, "Tags.", openai)))[1]["choices"][0]["message"]["content"]
            again = (await ask(server.url, body(data, "Tags.", openai)))[1]["choices"][0]["message"]["content"]
            assert not valid(first)
            assert valid(again)
