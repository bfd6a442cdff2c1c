"""Issue 16's outputs per task, from a real two-task run: exports read back by ``datasets`` and ``pyarrow``, kohya
sidecars one task or all of them, the report's task filter data, and merge keeping tasks apart."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from batchcap.cli import main as cli_main
from batchcap.config import RunConfig
from batchcap.emulator import EmulatorSettings, chat_answer_for, json_answer_for
from batchcap.journal.merge import merge_journals
from batchcap.run import run
from batchcap.source.samples import generate
from tests.conftest import MODEL, EmulatorFactory

SCHEMA = {"type": "object", "properties": {"labels": {"type": "array", "items": {"type": "string"}, "minItems": 2,
                                                      "maxItems": 3},
                                           "count": {"type": "integer", "minimum": 1, "maximum": 9}},
          "required": ["labels", "count"]}
CAPTION = "Describe this {{ folder }} image."
TAGS = "Label it."


async def two_task_run(emulator: EmulatorFactory, tmp_path: Path, n: int = 8) -> tuple[Path, Path]:
    images = tmp_path / "images"
    generate(images, n, seed=21)
    (tmp_path / "tags.json").write_bytes(orjson.dumps(SCHEMA))
    journal = tmp_path / "run" / "results.jsonl"
    journal.parent.mkdir()
    server = await emulator(EmulatorSettings())
    cfg = RunConfig.build(input_dir=images, out=journal, api="openai", base_url=f"{server.url}/v1", model=MODEL,
                          rate=None, task=(f"caption={CAPTION}", f"tags={TAGS}"),
                          schema=(f"tags={tmp_path / 'tags.json'}",)).validate()
    with anyio.fail_after(60):
        stats = await run(cfg)
    assert (stats.ok, stats.failed) == (2 * n, 0)
    return images, journal


def expected(images: Path, rel: str) -> tuple[str, Any]:
    """The caption and the tags data the emulator gives this image for this run's prompts."""
    data = (images / rel).read_bytes()
    folder = Path(rel).parent.name or images.name
    return chat_answer_for(data, CAPTION.replace("{{ folder }}", folder)), json_answer_for(data, TAGS, SCHEMA)


def export(*argv: str | Path) -> int:
    return cli_main(["export", *(str(a) for a in argv)])


async def test_imagefolder_has_one_column_per_task_in_datasets(
    emulator: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    datasets = pytest.importorskip("datasets")
    images, journal = await two_task_run(emulator, tmp_path)
    out = tmp_path / "trainset"
    assert export(journal, "--format", "imagefolder", "--out", out) == 0
    for key in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(key, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    ds = datasets.load_dataset("imagefolder", data_dir=str(out), split="train", cache_dir=str(tmp_path / "cache"))
    ds = ds.cast_column("image", datasets.Image(decode=False))
    assert set(ds.column_names) == {"image", "caption", "tags", "tags.labels", "tags.count"}
    assert len(ds) == 8
    for row in ds:
        rel = Path(row["image"]["path"]).relative_to(out).as_posix()
        caption, tags = expected(images, rel)
        assert row["caption"] == caption
        assert orjson.loads(row["tags"]) == tags
        assert (row["tags.labels"], row["tags.count"]) == (tags["labels"], tags["count"])


async def test_csv_parquet_text_column_and_kohya(emulator: EmulatorFactory, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    images, journal = await two_task_run(emulator, tmp_path)
    assert export(journal, "--format", "csv", "--out", tmp_path / "csv", "--text-column", "caption") == 0
    with open(tmp_path / "csv" / "metadata.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["file_name", "text", "tags", "tags.labels", "tags.count"]  # caption is what trainers read
    for r in rows:
        caption, tags = expected(images, r["file_name"])
        assert (r["text"], orjson.loads(r["tags.labels"]), r["tags.count"]) == (caption, tags["labels"],
                                                                                 str(tags["count"]))
    assert export(journal, "--format", "parquet", "--out", tmp_path / "pq") == 0
    table = pq.read_table(tmp_path / "pq" / "data")  # the shards, images embedded
    assert table.column_names == ["image", "file_name", "caption", "tags", "tags.labels", "tags.count"]
    assert table.num_rows == 8

    # kohya: several tasks need a choice; one task per sidecar, or all of them one per line.
    assert export(journal, "--format", "kohya", "--out", tmp_path / "k0") == 2
    assert export(journal, "--format", "kohya", "--out", tmp_path / "k1", "--task", "tags") == 0
    assert export(journal, "--format", "kohya", "--out", tmp_path / "k2", "--multiline") == 0
    for rel in (p.relative_to(images).as_posix() for p in images.rglob("*") if p.is_file()):
        caption, tags = expected(images, rel)
        stem = Path(rel).with_suffix(".txt")
        assert orjson.loads((tmp_path / "k1" / stem).read_text(encoding="utf-8")) == tags  # the reply's JSON
        lines = (tmp_path / "k2" / stem).read_text(encoding="utf-8").splitlines()
        assert lines[0] == caption  # every task's answer, one per line, in task order
        assert len(lines) == 2


async def test_merge_keeps_tasks_apart_and_the_report_filters_by_task(emulator: EmulatorFactory,
                                                                      tmp_path: Path) -> None:
    _, journal = await two_task_run(emulator, tmp_path, n=6)
    lines = journal.read_bytes().splitlines(keepends=True)
    part1, part2 = tmp_path / "p1.jsonl", tmp_path / "p2.jsonl"
    part1.write_bytes(b"".join(lines[::2]))
    part2.write_bytes(b"".join(lines[1::2]))
    stats = merge_journals(tmp_path / "merged.jsonl", [part1, part2])
    assert (stats.images, stats.ok) == (12, 12)  # 6 images x 2 tasks: one line per answer
    merged = [orjson.loads(line) for line in (tmp_path / "merged.jsonl").read_bytes().splitlines()]
    assert sorted((r["path"], r["task"]) for r in merged) == sorted(
        (orjson.loads(line)["path"], orjson.loads(line)["task"]) for line in lines)
    site = tmp_path / "site"
    assert cli_main(["report", str(journal), "--out", str(site)]) == 0
    meta = (site / "data" / "meta.js").read_text(encoding="utf-8")
    assert '"tasks":["caption","tags"]' in meta
    assert '"task_counts":[6,6]' in meta
