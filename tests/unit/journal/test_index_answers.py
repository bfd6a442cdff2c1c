"""The resume index per (path, task): the latest ok answer's fingerprint, the last error, legacy lines, copies."""

from __future__ import annotations

from pathlib import Path

from batchcap.journal import encode_record, load_index
from batchcap.journal.index import LEGACY, answer_id
from batchcap.models import ErrorInfo, Record

FP_A = "1111aaaa" + "0123456789abcdef"
FP_B = "2222bbbb" + "fedcba9876543210"
DIGEST = "ab" * 16


def write(path: Path, *records: Record | bytes) -> None:
    with open(path, "ab") as f:
        f.writelines(r if isinstance(r, bytes) else encode_record(r) for r in records)


def ok(path: str, task: str = "caption", fp: str | None = FP_A, digest: str | None = DIGEST, **kw: object) -> Record:
    return Record(path, "ok", caption=f"{path}/{task}", task=task, fingerprint=fp, digest=digest, ts=1.0,
                  **kw)  # type: ignore[arg-type]


def err(path: str, task: str = "caption", fp: str | None = FP_A, retryable: bool = False) -> Record:
    return Record(path, "error", error=ErrorInfo("ServerError", "503", 503, retryable), task=task, fingerprint=fp)


def test_each_task_of_an_image_is_its_own_answer(tmp_path: Path) -> None:
    j = tmp_path / "j.jsonl"
    write(j, ok("a.jpg"), ok("a.jpg", "tags", FP_B), ok('we"ird\\.jpg', "tags"))
    index = load_index(j)
    assert index.entry("a.jpg").ok == answer_id(FP_A)
    assert index.entry("a.jpg", "tags").ok == answer_id(FP_B)
    assert index.entry('we"ird\\.jpg', "tags").ok == answer_id(FP_A)  # the parsed path, not the escaped bytes
    assert index.entry("a.jpg", "other") is None
    assert (index.ok, len(index), index.lines) == (3, 3, 3)


def test_the_latest_ok_wins_and_errors_never_hide_it(tmp_path: Path) -> None:
    j = tmp_path / "j.jsonl"
    write(j, ok("a.jpg", fp=FP_A), err("a.jpg", fp=FP_B), ok("a.jpg", fp=FP_B), err("a.jpg", fp=FP_A))
    e = load_index(j).entry("a.jpg")
    assert e is not None
    assert (e.ok, e.spec, e.error, e.final) == (answer_id(FP_B), 0x2222BBBB, answer_id(FP_A), True)


def test_final_and_retryable_errors_are_counted_per_answer(tmp_path: Path) -> None:
    j = tmp_path / "j.jsonl"
    write(j, err("a.jpg"), err("b.jpg", retryable=True), err("c.jpg", retryable=True), err("c.jpg"), ok("d.jpg"),
          err("d.jpg"))
    index = load_index(j)
    assert (index.ok, index.error_final, index.error_retryable) == (1, 2, 1)
    assert "a.jpg" in index
    assert "b.jpg" not in index
    assert "c.jpg" in index
    assert "a.jpg" not in load_index(j, retry_failed=True)


def test_lines_from_before_tasks_are_the_caption_task_without_fingerprint(tmp_path: Path) -> None:
    j = tmp_path / "j.jsonl"
    write(j, b'{"path":"a.jpg","status":"ok","caption":"x","attempts":1,"ts":1.0}\n',
          b'{"path":"b.jpg","status":"error","error":{"type":"InputError","message":"empty","http_status":null,'
          b'"retryable":false},"attempts":1,"ts":1.0}\n')
    index = load_index(j)
    a, b = index.entry("a.jpg"), index.entry("b.jpg")
    assert a is not None
    assert b is not None
    assert (a.ok, a.spec, index.legacy) == (LEGACY, 0, 1)
    assert (b.ok, b.error, b.final) == (None, LEGACY, True)
    assert index.latest_by_spec() == {"caption": {0: 1}}


def test_latest_by_spec_counts_each_answer_once(tmp_path: Path) -> None:
    """A re-asked answer's old line stays in the file: it must not count as stale any more."""
    j = tmp_path / "j.jsonl"
    write(j, *(ok(f"{i}.jpg", "tags", FP_A) for i in range(5)), *(ok(f"{i}.jpg", "tags", FP_B) for i in range(3)))
    assert load_index(j).latest_by_spec() == {"tags": {0x1111AAAA: 2, 0x2222BBBB: 3}}


def test_find_copy_by_content_and_answer(tmp_path: Path) -> None:
    j = tmp_path / "j.jsonl"
    write(j, ok("x.jpg", digest="cd" * 16), ok("cat/a.jpg"), ok("cat/a.jpg", "tags", FP_B))
    index = load_index(j)
    offset = index.find_copy(DIGEST, answer_id(FP_A))
    assert offset is not None
    rec = index.read_line(offset)
    assert rec is not None
    assert (rec["path"], rec["task"]) == ("cat/a.jpg", "caption")
    assert index.find_copy(DIGEST, answer_id("0" * 24)) is None
    assert index.find_copy("ef" * 16, answer_id(FP_A)) is None


def test_a_torn_last_line_is_still_repaired(tmp_path: Path) -> None:
    j = tmp_path / "j.jsonl"
    write(j, ok("a.jpg"), encode_record(ok("b.jpg"))[:40])
    index = load_index(j)
    assert (index.ok, index.repaired_bytes) == (1, 40)
    assert j.read_bytes() == encode_record(ok("a.jpg"))
