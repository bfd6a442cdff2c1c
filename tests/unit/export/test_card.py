"""The dataset card: YAML that huggingface_hub parses whatever the journal and manifest hold (untrusted text)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from batchcap.export.card import CardFacts, card_text, provenance, size_category

HOSTILE = 'Say "hi"\n---\nlicense: mit\n# not a heading: {{x}} `tick` ```fence``` \u2028 \x07 \x85 \x9b \ufeff \\ end'


def facts(**kw: object) -> CardFacts:
    base = CardFacts("parquet", 3, ["data/train-*.parquet"], ["text"], targets=Counter({"openai:m@h": 3}))
    for k, v in kw.items():
        setattr(base, k, v)
    return base


def manifest(prompt: str = HOSTILE) -> dict[str, object]:
    return {
        "version": "0.1.0",
        "source": {"kind": "parquet", "location": "hf://datasets/acme/photos@main/data", "files": 2},
        "config": {"api": "openai", "prompt": prompt, "target": "openai:m@h", "max_side": 1024,
                   "jpeg_quality": 90, "dedupe": "exact", "input_dir": "hf://datasets/acme/photos@main/data"},
        "counts": {"found": 3, "ok": 3},
        "flags": {"too_short": 1},
        "targets": {"a": {"cost": 0.25}},
    }


def test_hostile_text_stays_a_value_and_the_yaml_parses(tmp_path: Path) -> None:
    hub = pytest.importorskip("huggingface_hub")
    text = card_text(facts(), manifest(), upload="hf upload x/y /d . --repo-type dataset")
    (tmp_path / "README.md").write_text(text, encoding="utf-8")
    card = hub.DatasetCard.load(tmp_path / "README.md")
    data = card.data.to_dict()
    assert data["batchcap"]["prompts"] == [HOSTILE]  # exact, not YAML syntax
    assert "license" not in data
    assert data["source_datasets"] == ["acme/photos"]
    assert data["batchcap"]["spend"] == {"dollars": 0.25, "by_target": {"a": 0.25}}
    front = text.split("---\n")[1]
    assert yaml.safe_load(front)["batchcap"]["quality_flags"]["run"] == {"too_short": 1}
    body = text.split("-->", 1)[1]
    assert "\n---\nlicense" not in body  # the prompt sits in a fenced block the text cannot close
    assert "````" in body


def test_a_raw_bytes_target_says_it_took_no_prompt() -> None:
    m = manifest()
    m["config"] = {"api": "hf", "prompt": "ignored", "target": "hf:m@h"}  # type: ignore[assignment]
    prov = provenance(m, facts())
    assert prov["prompts"] is None
    assert "no prompt" in prov["prompt_note"]


def test_size_categories_are_the_hubs() -> None:
    assert [size_category(n) for n in (0, 999, 1000, 99_999, 2_000_000)] == [
        "n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "1M<n<10M"]
