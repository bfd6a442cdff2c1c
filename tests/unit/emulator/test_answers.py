"""The emulator's chat answers: per prompt, deterministic, JSON that the real validator accepts for a schema."""

from __future__ import annotations

from typing import Any

import jsonschema
import orjson
import pytest

from batchcap.emulator.answers import invalid_json_for, json_value, prompt_tag, text_answer

CAPTION = "a 64x48 RGB png image, mostly red"
SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}, "minItems": 3,
                                               "maxItems": 5, "uniqueItems": True}}, "required": ["tags"]},
    {"type": "object", "properties": {"kind": {"enum": ["cat", "dog"]}, "n": {"type": "integer", "minimum": 2,
                                                                              "maximum": 4},
                                      "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                                      "ok": {"type": "boolean"}, "note": {"type": ["string", "null"],
                                                                          "maxLength": 4}},
     "required": ["kind", "n", "score", "ok"], "additionalProperties": False},
    {"$defs": {"box": {"type": "object", "properties": {"w": {"type": "integer"}}, "required": ["w"]}},
     "type": "object", "properties": {"boxes": {"type": "array", "items": {"$ref": "#/$defs/box"}},
                                      "label": {"anyOf": [{"type": "string", "minLength": 20}, {"type": "null"}]}},
     "required": ["boxes", "label"]},
    {"type": "array", "items": {"type": "string"}},
]


def test_text_answers_depend_on_the_prompt() -> None:
    assert text_answer(CAPTION, None) == CAPTION
    a, b = text_answer(CAPTION, "Describe."), text_answer(CAPTION, "List tags.")
    assert a != b
    assert a == f"{CAPTION} (prompt {prompt_tag('Describe.')})"
    assert text_answer(CAPTION, "Describe.") == a


@pytest.mark.parametrize("schema", SCHEMAS)
def test_json_answers_match_their_schema(schema: dict[str, Any]) -> None:
    for prompt in ("one", "two", "three"):
        value = json_value(CAPTION, prompt, schema)
        jsonschema.validate(value, schema)
        assert json_value(CAPTION, prompt, schema) == value


def test_invalid_answers_do_not_match() -> None:
    schema = SCHEMAS[1]
    validator = jsonschema.Draft202012Validator(schema)
    for prompt in map(str, range(20)):
        text = invalid_json_for(CAPTION, prompt, schema)
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            continue
        assert not validator.is_valid(value)
