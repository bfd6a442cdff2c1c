"""The run manifest: every invocation kept in order, paths absolute, counts of the journal as a whole."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from batchcap.config import RunConfig
from batchcap.journal import JournalWriter, load_index, write_json_atomic
from batchcap.journal.meta import input_dir_from_manifest, manifest_path
from batchcap.models import ErrorInfo, Record
from batchcap.run.manifest import Manifest
from batchcap.run.stats import RunStats


def _invocation(cfg: RunConfig, records: list[Record], **stats: int) -> None:
    """What ``run`` does around its records: manifest at the start, the lines, manifest at the end."""
    manifest = Manifest(cfg, load_index(cfg.out), started_at=1000.0)
    manifest.write_start()
    with JournalWriter(cfg.out) as w:
        w.write(records)
    manifest.write_end(RunStats(ok=sum(r.status == "ok" for r in records), **stats))


def _err(path: str, kind: str, retryable: bool = False) -> Record:
    return Record(path, "error", error=ErrorInfo(kind, "x", None, retryable))


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    return tmp_path


def test_each_invocation_keeps_its_settings_and_the_counts_cover_the_journal(in_tmp: Path) -> None:
    first = RunConfig.build(input_dir=Path("photos"), out=Path("r.jsonl"), model="m", prompt="first", concurrency=2)
    _invocation(first, [Record("a.jpg", "ok", caption="A"), _err("b.jpg", "RejectedImage"),
                        _err("c.jpg", "ServerError", retryable=True)], attempts=4)
    again = RunConfig.build(input_dir=Path("photos"), out=Path("r.jsonl"), model="m", prompt="second", concurrency=5,
                      retry_failed=True)
    _invocation(again, [Record("b.jpg", "ok", caption="B"), _err("d.jpg", "InputError")], attempts=2)

    doc = orjson.loads(manifest_path(in_tmp / "r.jsonl").read_bytes())
    assert doc["manifest_version"] == 2
    assert [inv["config"]["prompt"] for inv in doc["invocations"]] == ["first", "second"]
    assert [inv["config"]["concurrency"] for inv in doc["invocations"]] == [2, 5]
    assert [inv["counts"]["ok"] for inv in doc["invocations"]] == [1, 1]
    assert doc["config"]["prompt"] == "second"  # the latest, where readers look
    # The journal as a whole: a and b captioned, c retryable, d final; five records.
    assert doc["counts"] == {"images": 4, "ok": 2, "errors": 2, "error_final": 1, "error_retryable": 1,
                             "records": 5, "attempts": 6, "retries": 0, "throttled": 0, "duplicates": 0,
                             "quality_retries": 0}
    assert doc["errors_by_type"] == {"ServerError": 1, "InputError": 1}
    assert doc["state"] == "finished"
    for key in ("input_dir", "journal"):
        assert os.path.isabs(doc[key])
    for inv in doc["invocations"]:
        assert inv["config"]["input_dir"] == str(in_tmp / "photos")
        assert inv["config"]["out"] == str(in_tmp / "r.jsonl")


def test_the_folder_is_found_from_any_working_directory(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = RunConfig.build(input_dir=Path("photos"), out=Path("r.jsonl"), model="m")
    _invocation(cfg, [Record("a.jpg", "ok", caption="A")])
    elsewhere = in_tmp / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert input_dir_from_manifest(in_tmp / "r.jsonl") == in_tmp / "photos"


def test_a_version_1_manifest_becomes_the_first_invocation(in_tmp: Path) -> None:
    old = {"tool": "batchcap", "version": "0.0.9", "state": "finished", "config": {"prompt": "old"},
           "counts": {"ok": 1, "attempts": 3}}
    write_json_atomic(in_tmp / "r.manifest.json", old)
    with JournalWriter(in_tmp / "r.jsonl") as w:  # what that run wrote
        w.write([Record("old.jpg", "ok", caption="O")])
    cfg = RunConfig.build(input_dir=Path("photos"), out=Path("r.jsonl"), model="m", prompt="new")
    _invocation(cfg, [Record("a.jpg", "ok", caption="A")], attempts=1)
    doc = orjson.loads((in_tmp / "r.manifest.json").read_bytes())
    assert [inv.get("manifest_version") for inv in doc["invocations"]] == [1, None]
    assert doc["invocations"][0]["config"] == {"prompt": "old"}
    assert doc["counts"]["attempts"] == 4


def test_a_running_invocation_is_visible_before_it_ends(in_tmp: Path) -> None:
    cfg = RunConfig.build(input_dir=Path("photos"), out=Path("r.jsonl"), model="m")
    _invocation(cfg, [Record("a.jpg", "ok", caption="A")])
    Manifest(cfg, load_index(cfg.out), started_at=2000.0).write_start()
    doc = orjson.loads((in_tmp / "r.manifest.json").read_bytes())
    assert [inv["state"] for inv in doc["invocations"]] == ["finished", "running"]
    assert doc["state"] == "running"
    assert doc["started_at"] == 1000.0
    assert doc["counts"]["ok"] == 1


def test_every_spec_an_invocation_used_outlives_the_folding(in_tmp: Path) -> None:
    """Issue 16: each invocation keeps its tasks; ``specs`` keeps every (task, spec) -> parts, however many runs."""
    from batchcap.journal.throughput import MAX_INVOCATIONS
    from batchcap.run.plan import spec_history

    cfg = RunConfig.build(input_dir=Path("photos"), out=Path("r.jsonl"), model="m")
    runs = MAX_INVOCATIONS + 3
    for i in range(runs):
        tasks = {"tags": {"prompt": f"v{i}", "targets": [{"target": "t", "spec": f"{i:08x}",
                                                          "parts": {"prompt": f"p{i}"}}]}}
        manifest = Manifest(cfg, load_index(cfg.out), started_at=1000.0 + i, tasks=tasks)
        manifest.write_start()
        with JournalWriter(cfg.out) as w:
            w.write([Record(f"{i}.jpg", "ok", caption="x", task="tags")])
        manifest.write_end(RunStats(ok=1))
    doc = orjson.loads(manifest_path(in_tmp / "r.jsonl").read_bytes())
    assert len(doc["invocations"]) == MAX_INVOCATIONS  # the oldest folded into the first
    assert doc["tasks"]["tags"]["prompt"] == f"v{runs - 1}"
    assert sorted(doc["specs"]["tags"]) == [f"{i:08x}" for i in range(runs)]
    assert spec_history(doc)[("tags", "00000000")] == {"prompt": "p0"}
