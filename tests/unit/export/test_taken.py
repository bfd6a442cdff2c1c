"""Which files in an export's --out an image would land on that batchcap did not write (``export.taken``)."""

from __future__ import annotations

import os
from pathlib import Path

from batchcap.export.taken import foreign_files, taken_images
from batchcap.journal.owned import Ledger


def test_a_new_or_empty_folder_has_nothing_to_check(tmp_path: Path) -> None:
    assert taken_images(tmp_path / "new", ["a.jpg"], images=tmp_path, convert="auto") == []
    (tmp_path / "empty").mkdir()
    assert taken_images(tmp_path / "empty", ["a.jpg"], images=tmp_path, convert="auto") == []


def test_files_the_ledger_lists_unchanged_are_batchcaps(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    ours, theirs = tmp_path / "sub" / "ours.jpg", tmp_path / "sub" / "theirs.jpg"
    ours.write_bytes(b"x")
    theirs.write_bytes(b"y")
    ledger = Ledger(tmp_path)
    ledger.wrote(ours)
    ledger.save()
    assert foreign_files(tmp_path) == {"sub/theirs.jpg"}
    ours.write_bytes(b"edited")  # changed since: somebody's now
    assert foreign_files(tmp_path) == {"sub/ours.jpg", "sub/theirs.jpg"}


def test_a_folder_image_over_its_own_link_or_copy_is_not_taken(tmp_path: Path) -> None:
    images, out = tmp_path / "in", tmp_path / "out"
    images.mkdir()
    out.mkdir()
    for name in ("linked.jpg", "copied.jpg", "other.jpg"):
        (images / name).write_bytes(b"\xff\xd8\xff\xe0" + name.encode())
    os.link(images / "linked.jpg", out / "linked.jpg")
    (out / "copied.jpg").write_bytes((images / "copied.jpg").read_bytes())
    st = (images / "copied.jpg").stat()
    os.utime(out / "copied.jpg", ns=(st.st_atime_ns, st.st_mtime_ns))
    (out / "other.jpg").write_bytes(b"the user's own photo")
    (out / "unrelated.jpg").write_bytes(b"no image of the export has this name")
    got = taken_images(out, ["linked.jpg", "copied.jpg", "other.jpg", "gone.jpg"], images=images, convert="auto")
    assert got == [out / "other.jpg"]


def test_a_converted_name_is_taken_only_when_that_image_is_converted(tmp_path: Path) -> None:
    images, out = tmp_path / "in", tmp_path / "out"
    images.mkdir()
    out.mkdir()
    (images / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    (out / "a.png.jpg").write_bytes(b"somebody's")
    assert taken_images(out, ["a.png"], images=images, convert="keep") == []  # kept as PNG: no a.png.jpg written
    assert taken_images(out, ["a.png"], images=images, convert="jpeg") == [out / "a.png.jpg"]


def test_a_dataset_row_counts_every_name_its_bytes_could_give(tmp_path: Path) -> None:
    (tmp_path / "train.parquet").mkdir()
    (tmp_path / "train.parquet" / "7.webp").write_bytes(b"somebody's")
    (tmp_path / "train.parquet" / "8.png").write_bytes(b"somebody's")
    got = taken_images(tmp_path, ["train.parquet#7", "train.parquet#9", "../escape#8"], images=None, convert="auto")
    assert got == [tmp_path / "train.parquet" / "7.webp"]


def test_a_dataset_row_converted_for_readers_is_checked_under_its_new_name(tmp_path: Path) -> None:
    (tmp_path / "train.parquet").mkdir()
    (tmp_path / "train.parquet" / "3.heic.jpg").write_bytes(b"somebody's")  # a HEIC row, converted (auto)
    assert taken_images(tmp_path, ["train.parquet#3"], images=None, convert="auto") == [
        tmp_path / "train.parquet" / "3.heic.jpg"]
    assert taken_images(tmp_path, ["train.parquet#3"], images=None, convert="keep") == []
