"""Structured replies: the schema is checked at start, asked for in each target's spelling, replies judged."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchcap.errors import UsageError
from batchcap.tasks.quality import QualitySettings, judge_json
from batchcap.tasks.schema import Schema, load_schema

TAGS = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["tags"]}


def test_response_format_in_openai_and_tgi_spelling() -> None:
    s = Schema.of("tags", TAGS)
    assert s.response_format("openai") == {"type": "json_schema", "json_schema": {"name": "tags", "schema": TAGS}}
    assert s.response_format("tgi") == {"type": "json_schema", "value": {"name": "tags", "schema": TAGS}}


@pytest.mark.parametrize(("text", "ok"), [
    ('{"tags": ["cat"]}', True),
    ('```json\n{"tags": ["cat"]}\n```', True),  # one code fence around the whole reply
    ('Sure! {"tags": ["cat"]}', False),
    ('{"tags": "cat"}', False),
    ("{}", False),
])
def test_check_and_the_invalid_json_gate(text: str, ok: bool) -> None:
    s = Schema.of("tags", TAGS)
    _data, problem = s.check(text)
    assert (problem is None) == ok
    got, flags = judge_json(text, s)
    assert flags == (() if ok else ("invalid_json",))
    assert got == ({"tags": ["cat"]} if ok else None)
    assert judge_json(text, s, settings=QualitySettings(invalid_json=False))[1] == ()


def test_a_cut_off_reply_is_flagged_too() -> None:
    assert judge_json('{"tags": ["ca', Schema.of("t", TAGS), finish_reason="length")[1] == ("invalid_json", "cut_off")


def test_load_schema_says_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        load_schema(tmp_path / "missing.json", task="tags")
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(UsageError, match="not JSON"):
        load_schema(tmp_path / "bad.json", task="tags")
    (tmp_path / "wrong.json").write_text('{"type": "nonsense"}', encoding="utf-8")
    with pytest.raises(UsageError, match="not a valid JSON schema"):
        load_schema(tmp_path / "wrong.json", task="tags")
    (tmp_path / "list.json").write_text("[1]", encoding="utf-8")
    with pytest.raises(UsageError, match="a JSON schema is an object"):
        load_schema(tmp_path / "list.json", task="tags")
