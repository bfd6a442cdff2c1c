"""Fingerprints: what produced an answer, settings part and per-image part."""

from __future__ import annotations

from batchcap.tasks.fingerprint import COMPONENTS, FINGERPRINT_HEX, Parts, TaskPrint


def parts(**kw: object) -> Parts:
    base: dict[str, object] = {"target": "openai m http://h/v1", "template": "Describe {{ folder }}.",
                               "generation": {"max_tokens": 64, "temperature": 0.0}, "schema": b"",
                               "preparation": {"max_side": 1024, "jpeg_quality": 90, "max_upload_mb": 2.0}}
    base.update(kw)
    return Parts.of(**base)  # type: ignore[arg-type]


def test_the_same_question_gets_the_same_fingerprint() -> None:
    fp = TaskPrint(parts()).fingerprint("Describe cat.")
    assert len(fp) == FINGERPRINT_HEX
    assert TaskPrint(parts()).fingerprint("Describe cat.") == fp
    assert fp[:8] == TaskPrint(parts()).spec


def test_each_component_changes_it() -> None:
    base = TaskPrint(parts()).fingerprint("Describe cat.")
    for kw in ({"target": "openai other http://h/v1"}, {"generation": {"max_tokens": 65, "temperature": 0.0}},
               {"schema": b'{"type":"object"}'}, {"preparation": {"max_side": 768}}):
        other = TaskPrint(parts(**kw)).fingerprint("Describe cat.")
        assert other[:8] != base[:8], kw
        assert other[8:] != base[8:], kw
    assert TaskPrint(parts()).fingerprint("Describe dog.")[8:] != base[8:]  # the rendered prompt


def test_an_equivalent_template_asks_the_same_question() -> None:
    """The answer part hashes the prompt as rendered, not the template: {{folder}} and {{ folder }} agree."""
    a = TaskPrint(parts(template="Describe {{folder}}.")).fingerprint("Describe cat.")
    b = TaskPrint(parts()).fingerprint("Describe cat.")
    assert a[8:] == b[8:]
    assert a[:8] != b[:8]


def test_raw_bytes_targets_hash_no_prompt() -> None:
    raw = TaskPrint(parts(template=None), prompted=False)
    assert raw.fingerprint("one prompt") == raw.fingerprint("another")


def test_components_are_named_for_the_manifest() -> None:
    assert list(parts().as_dict()) == list(COMPONENTS)
    changed = [k for k, v in parts(template="Other.").as_dict().items() if parts().as_dict()[k] != v]
    assert changed == ["prompt"]
