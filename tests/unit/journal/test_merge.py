"""merge_journals on journals made with the journal's own encoder: shards, duplicates, torn tails, locks."""

from __future__ import annotations

import fcntl
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchcap.errors import ConfigError, JournalError
from batchcap.journal import JournalWriter, encode_record, load_index, write_json_atomic
from batchcap.journal.merge import manifest_path, merge_journals
from batchcap.models import ErrorInfo, Record
from batchcap.source.shard import shard_of

PATHS = [f"set{i % 9}/img_{i:04d}.jpg" for i in range(1200)]
TRANSIENT = ErrorInfo("ServerError", "HTTP 500", 500, True)
FINAL = ErrorInfo("RejectedImage", "HTTP 413", 413, False)


def ok(path: str, ts: float, caption: str | None = None) -> Record:
    return Record(path, "ok", caption=caption or f"caption of {path}", attempts=1, target="t", ts=ts)


def err(path: str, ts: float, info: ErrorInfo = TRANSIENT) -> Record:
    return Record(path, "error", error=info, attempts=1, target="t", ts=ts)


def write(path: Path, records: list[Record], tail: bytes = b"") -> Path:
    path.write_bytes(b"".join(encode_record(r) for r in records) + tail)
    return path


def read(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def three_shards(tmp_path: Path) -> list[Path]:
    """Shard journals as three resumed runs leave them: some errors first, then the ok on the next attempt."""
    parts = []
    for i in (1, 2, 3):
        records: list[Record] = []
        mine = [p for p in PATHS if shard_of(p, 3) == i]
        for n, p in enumerate(mine):
            if n % 10 == 0:
                records.append(err(p, 100.0 + n))  # the first run failed it...
        for n, p in enumerate(mine):
            records.append(ok(p, 200.0 + n))  # ...the resumed run captioned it
        parts.append(write(tmp_path / f"part-{i}.jsonl", records))
        write_json_atomic(manifest_path(parts[-1]), {"config": {"shard": f"{i}/3"}, "counts": {"ok": len(mine)}})
    return parts


def test_three_shards_of_400_merge_to_exactly_one_ok_each(tmp_path: Path) -> None:
    parts = three_shards(tmp_path)
    sizes = [len({r["path"] for r in read(p)}) for p in parts]
    assert all(350 < n < 450 for n in sizes)
    assert sum(sizes) == 1200
    out = tmp_path / "all.jsonl"
    stats = merge_journals(out, parts)
    lines = read(out)
    assert Counter(r["path"] for r in lines) == Counter(PATHS)  # union = all, one line each
    assert all(r["status"] == "ok" and r["caption"] == f"caption of {r['path']}" for r in lines)
    assert (stats.images, stats.ok, stats.errors, stats.parts) == (1200, 1200, 0, 3)
    assert stats.lines == 1200 + sum(1 for n in sizes for k in range(n) if k % 10 == 0)
    assert stats.superseded == stats.lines - 1200
    assert [r["path"] for r in lines] == sorted(PATHS)
    index = load_index(out)  # the merged file is a journal a run resumes from
    assert (index.ok, len(index)) == (1200, 1200)
    manifest = orjson.loads(manifest_path(out).read_bytes())
    assert manifest["state"] == "merged"
    assert manifest["counts"]["ok"] == 1200
    assert manifest["runs_counts"] == {"ok": 1200}
    assert [p["manifest"]["config"]["shard"] for p in manifest["parts"]] == ["1/3", "2/3", "3/3"]


def test_ok_beats_error_then_latest_wins(tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl", [ok("x.jpg", 10, "old"), err("y.jpg", 50), err("z.jpg", 5, FINAL)])
    b = write(tmp_path / "b.jsonl", [err("x.jpg", 99), ok("x.jpg", 20, "new"), err("y.jpg", 60, FINAL),
                                     err("z.jpg", 7)])
    out = tmp_path / "m.jsonl"
    stats = merge_journals(out, [a, b])
    got = {r["path"]: r for r in read(out)}
    assert got["x.jpg"]["caption"] == "new"  # a later ok replaces an older ok; an error never replaces an ok
    assert got["y.jpg"]["error"]["type"] == "RejectedImage"  # no ok: the latest error
    assert got["z.jpg"]["error"]["type"] == "ServerError"
    assert got["z.jpg"]["ts"] == 7
    assert (stats.ok, stats.errors, stats.superseded) == (1, 2, 4)


def test_bucketed_merge_gives_the_same_file(tmp_path: Path) -> None:
    parts = three_shards(tmp_path)
    small, big = tmp_path / "one.jsonl", tmp_path / "buckets.jsonl"
    s1 = merge_journals(small, parts)
    s2 = merge_journals(big, parts, bucket_bytes=20_000)  # ~15 buckets through the temp folder
    assert s1 == s2
    assert sorted(small.read_bytes().splitlines()) == sorted(big.read_bytes().splitlines())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp files gone


def test_torn_last_line_is_skipped_but_a_bad_middle_line_refuses(tmp_path: Path) -> None:
    torn = write(tmp_path / "t.jsonl", [ok("a.jpg", 1)], tail=b'{"path":"b.jpg","stat')
    stats = merge_journals(tmp_path / "m.jsonl", [torn])
    assert (stats.images, stats.torn) == (1, 1)
    nl = write(tmp_path / "nl.jsonl", [ok("a.jpg", 1)], tail=encode_record(ok("c.jpg", 2)).rstrip(b"\n"))
    assert merge_journals(tmp_path / "m2.jsonl", [nl]).images == 2  # complete but for its newline: kept
    assert read(tmp_path / "m2.jsonl")[-1]["path"] == "c.jpg"
    bad = write(tmp_path / "bad.jsonl", [ok("a.jpg", 1)], tail=b"garbage\n" + encode_record(ok("d.jpg", 3)))
    with pytest.raises(JournalError, match=r"line 2 of bad\.jsonl"):
        merge_journals(tmp_path / "m3.jsonl", [bad])
    assert not (tmp_path / "m3.jsonl").exists()


def test_refuses_a_part_a_running_batchcap_writes(tmp_path: Path) -> None:
    part = write(tmp_path / "p.jsonl", [ok("a.jpg", 1)])
    with JournalWriter(part), pytest.raises(JournalError, match="running batchcap is writing"):
        merge_journals(tmp_path / "m.jsonl", [part])
    merge_journals(tmp_path / "m.jsonl", [part])  # released: fine


def test_merge_holds_parts_so_no_run_starts_on_them(tmp_path: Path) -> None:
    part = write(tmp_path / "p.jsonl", [ok("a.jpg", 1)])
    with open(part, "rb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_SH)  # what merge holds while reading
        with pytest.raises(JournalError, match="another batchcap run"):
            JournalWriter(part).open()


def test_out_may_be_a_part_but_is_not_silently_overwritten(tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl", [ok("a.jpg", 1)])
    b = write(tmp_path / "b.jsonl", [ok("b.jpg", 1)])
    with pytest.raises(ConfigError, match="already exists") as refused:
        merge_journals(b, [a])
    assert f"to fold it into the merge, list it among the parts too (batchcap merge {b} {b} PART...)" in str(
        refused.value)
    merge_journals(a, [a, b])  # folding into the first part
    assert {r["path"] for r in read(a)} == {"a.jpg", "b.jpg"}
    with pytest.raises(ConfigError, match="does not exist"):
        merge_journals(tmp_path / "m.jsonl", [tmp_path / "missing.jsonl"])
    with pytest.raises(ConfigError, match="at least one"):
        merge_journals(tmp_path / "m.jsonl", [])
