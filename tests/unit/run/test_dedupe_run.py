"""The run's Deduper: originals sent once, copies recorded from them, only repeated sizes hashed."""

from __future__ import annotations

from pathlib import Path

from batchcap.models import ErrorInfo, ImageJob, LoadedImage, Record
from batchcap.run.dedupe import Deduper


def image(root: Path, path: str, data: bytes) -> LoadedImage:
    file = root / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(data)
    return LoadedImage(ImageJob(path, str(file), len(data)), data, "image/png")


def fates(admitted: list[tuple[LoadedImage, bool, Record | None]]) -> list[tuple[str, bool, Record | None]]:
    return [(im.job.path, send, rec) for im, send, rec in admitted]


def test_copies_in_one_batch_wait_for_the_original(tmp_path: Path) -> None:
    d = Deduper(root=tmp_path)
    a, b, c = image(tmp_path, "a.png", b"AAAA"), image(tmp_path, "b.png", b"AAAA"), image(tmp_path, "c.png", b"CCCC")
    assert fates(d.admit_batch([a, b, c])) == [("a.png", True, None), ("b.png", False, None), ("c.png", True, None)]
    ok = Record("a.png", "ok", caption="a cat", attempts=1, target="t", flags=("cut_off",))
    (copy,) = d.resolved(ok)
    assert (copy.path, copy.status, copy.caption, copy.duplicate_of, copy.flags) == (
        "b.png", "ok", "a cat", "a.png", ("cut_off",))
    assert (copy.attempts, copy.bytes_sent) == (0, 0)
    assert d.resolved(Record("c.png", "ok", caption="x")) == []


def test_a_later_copy_rereads_the_unhashed_original_and_gets_its_record_at_once(tmp_path: Path) -> None:
    d = Deduper(root=tmp_path)
    a = image(tmp_path, "x/a.png", b"same bytes")
    assert fates(d.admit_batch([a])) == [("x/a.png", True, None)]
    assert d._by_digest == {}  # a unique size is not hashed
    d.resolved(Record("x/a.png", "ok", caption="a dog"))
    b = image(tmp_path, "y/b.png", b"same bytes")
    ((_path, send, rec),) = fates(d.admit_batch([b]))
    assert not send
    assert rec is not None
    assert (rec.path, rec.caption, rec.duplicate_of) == ("y/b.png", "a dog", "x/a.png")


def test_same_size_other_content_is_sent(tmp_path: Path) -> None:
    d = Deduper(root=tmp_path)
    d.admit_batch([image(tmp_path, "a.png", b"1111")])
    assert fates(d.admit_batch([image(tmp_path, "b.png", b"2222")])) == [("b.png", True, None)]
    assert fates(d.admit_batch([image(tmp_path, "c.png", b"2222")])) == [("c.png", False, None)]


def test_an_original_gone_from_disk_matches_nothing(tmp_path: Path) -> None:
    d = Deduper(root=tmp_path)
    d.admit_batch([image(tmp_path, "a.png", b"zzzz")])
    (tmp_path / "a.png").unlink()
    assert fates(d.admit_batch([image(tmp_path, "b.png", b"zzzz")])) == [("b.png", True, None)]
    assert fates(d.admit_batch([image(tmp_path, "c.png", b"zzzz")])) == [("c.png", False, None)]  # copy of b


def test_a_failed_original_gives_its_copies_the_same_error(tmp_path: Path) -> None:
    d = Deduper(root=tmp_path)
    d.admit_batch([image(tmp_path, "a.png", b"qq"), image(tmp_path, "b.png", b"qq")])
    err = Record("a.png", "error", error=ErrorInfo("ServerError", "HTTP 503", 503, True))
    (copy,) = d.resolved(err)
    assert copy.status == "error"
    assert copy.error == err.error
    assert copy.duplicate_of == "a.png"


def test_full_tables_send_new_contents_without_remembering(tmp_path: Path) -> None:
    d = Deduper(root=tmp_path, max_entries=1)
    d.admit_batch([image(tmp_path, "a.png", b"a"), image(tmp_path, "b.png", b"bb")])
    assert d.overflow == 1
    assert fates(d.admit_batch([image(tmp_path, "c.png", b"bb")])) == [("c.png", True, None)]
    assert fates(d.admit_batch([image(tmp_path, "d.png", b"a")])) == [("d.png", False, None)]
