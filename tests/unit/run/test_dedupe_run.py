"""The run's Deduper: each question (content, task, rendered prompt) sent once, copies recorded from it."""

from __future__ import annotations

from pathlib import Path

from batchcap.models import Ask, ErrorInfo, ImageJob, LoadedImage, Record
from batchcap.run.dedupe import Deduper
from batchcap.source.digest import content_digest

CAPTION = (Ask("caption", "Describe it."),)


def image(root: Path, path: str, data: bytes, asks: tuple[Ask, ...] = CAPTION) -> LoadedImage:
    file = root / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(data)
    return LoadedImage(ImageJob(path, str(file), len(data)), data, "image/png", digest=content_digest(data).hex(),
                       asks=asks)


def fates(admitted: list[tuple[LoadedImage | None, list[Record]]]) -> list[tuple[tuple[str, ...], list[str]]]:
    """Per image: the tasks left to send, and the paths of the copy records ready now."""
    return [(tuple(a.task for a in im.asks) if im is not None else (), [r.path for r in recs])
            for im, recs in admitted]


def test_copies_in_one_batch_wait_for_the_original(tmp_path: Path) -> None:
    d = Deduper(root=tmp_path)
    a, b, c = image(tmp_path, "a.png", b"AAAA"), image(tmp_path, "b.png", b"AAAA"), image(tmp_path, "c.png", b"CCCC")
    assert fates(d.admit_batch([a, b, c])) == [(("caption",), []), ((), []), (("caption",), [])]
    ok = Record("a.png", "ok", caption="a cat", attempts=1, target="t", flags=("cut_off",), fingerprint="f" * 24,
                digest=a.digest)
    (copy,) = d.resolved(ok)
    assert (copy.path, copy.status, copy.caption, copy.duplicate_of, copy.flags) == (
        "b.png", "ok", "a cat", "a.png", ("cut_off",))
    assert (copy.attempts, copy.bytes_sent, copy.task, copy.fingerprint, copy.digest) == (
        0, 0, "caption", "f" * 24, b.digest)
    assert d.resolved(Record("c.png", "ok", caption="x")) == []


def test_a_later_copy_gets_the_answer_at_once(tmp_path: Path) -> None:
    d = Deduper(root=tmp_path)
    a = image(tmp_path, "x/a.png", b"same bytes")
    assert fates(d.admit_batch([a])) == [(("caption",), [])]
    d.resolved(Record("x/a.png", "ok", caption="a dog"))
    ((left, (rec,)),) = d.admit_batch([image(tmp_path, "y/b.png", b"same bytes")])
    assert left is None
    assert (rec.path, rec.caption, rec.duplicate_of) == ("y/b.png", "a dog", "x/a.png")


def test_each_task_is_its_own_question(tmp_path: Path) -> None:
    """A prompt that names the folder makes the copy in another folder a question of its own; a plain one not."""
    d = Deduper(root=tmp_path)
    asks_a = (Ask("caption", "Describe it."), Ask("kind", "Is this a cat photo?"))
    asks_b = (Ask("caption", "Describe it."), Ask("kind", "Is this a dog photo?"))
    a, b = image(tmp_path, "cat/1.png", b"pix", asks_a), image(tmp_path, "dog/1.png", b"pix", asks_b)
    assert fates(d.admit_batch([a, b])) == [(("caption", "kind"), []), (("kind",), [])]
    (copy,) = d.resolved(Record("cat/1.png", "ok", caption="a pet", task="caption"))
    assert (copy.path, copy.task, copy.duplicate_of) == ("dog/1.png", "caption", "cat/1.png")
    assert d.resolved(Record("cat/1.png", "ok", caption="yes", task="kind")) == []


def test_same_size_other_content_is_sent(tmp_path: Path) -> None:
    d = Deduper(root=tmp_path)
    d.admit_batch([image(tmp_path, "a.png", b"1111")])
    assert fates(d.admit_batch([image(tmp_path, "b.png", b"2222")])) == [(("caption",), [])]
    assert fates(d.admit_batch([image(tmp_path, "c.png", b"2222")])) == [((), [])]


def test_a_failed_original_gives_its_copies_the_same_error(tmp_path: Path) -> None:
    d = Deduper(root=tmp_path)
    d.admit_batch([image(tmp_path, "a.png", b"qq"), image(tmp_path, "b.png", b"qq")])
    err = Record("a.png", "error", error=ErrorInfo("ServerError", "HTTP 503", 503, True))
    (copy,) = d.resolved(err)
    assert copy.status == "error"
    assert copy.error == err.error
    assert copy.duplicate_of == "a.png"


def test_full_tables_send_new_questions_without_remembering(tmp_path: Path) -> None:
    d = Deduper(root=tmp_path, max_entries=1)
    d.admit_batch([image(tmp_path, "a.png", b"a"), image(tmp_path, "b.png", b"bb")])
    assert d.overflow == 1
    assert fates(d.admit_batch([image(tmp_path, "c.png", b"bb")])) == [(("caption",), [])]
    assert fates(d.admit_batch([image(tmp_path, "d.png", b"a")])) == [((), [])]
