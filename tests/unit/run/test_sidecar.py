"""``--sidecar`` by the kohya exporter's rules: nobody's file is overwritten, and clashes are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchcap.models import Record
from batchcap.run.sidecar import SidecarWriter


def _ok(path: str, caption: str) -> Record:
    return Record(path, "ok", caption=caption)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in ("a.jpg", "photo.jpg", "photo.webp", "other.png", "sub/x.jpg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"image bytes")
    (tmp_path / "other.txt").write_text("my own words, by hand\n")
    return tmp_path


@pytest.mark.parametrize("order", [("photo.jpg", "photo.webp"), ("photo.webp", "photo.jpg")])
def test_a_clash_gives_the_sidecar_to_the_first_name_whatever_the_order(folder: Path, order: tuple[str, str]) -> None:
    w = SidecarWriter(folder)
    for name in order:
        w.write(_ok(name, f"caption of {name}"))
    assert (folder / "photo.txt").read_text() == "caption of photo.jpg\n"
    assert w.report.clashes == 1
    assert w.report.clash_examples == [("photo.webp", "photo.txt", "photo.jpg")]


def test_a_hand_written_file_is_kept_unless_overwrite(folder: Path) -> None:
    w = SidecarWriter(folder)
    w.write(_ok("other.png", "a machine caption"))
    w.write(_ok("a.jpg", "caption a"))
    w.write(_ok("sub/x.jpg", "caption x"))
    assert (folder / "other.txt").read_text() == "my own words, by hand\n"
    assert (w.report.written, w.report.kept, w.report.kept_examples) == (2, 1, ["other.txt"])
    assert (folder / "sub/x.txt").read_text() == "caption x\n"
    SidecarWriter(folder, mode="overwrite").write(_ok("other.png", "a machine caption"))
    assert (folder / "other.txt").read_text() == "a machine caption\n"


def test_append_adds_the_caption_once(folder: Path) -> None:
    for _ in range(2):
        SidecarWriter(folder, mode="append").write(_ok("other.png", "a machine caption"))
    assert (folder / "other.txt").read_text() == "my own words, by hand, a machine caption\n"


def test_the_same_caption_again_is_unchanged_not_kept(folder: Path) -> None:
    SidecarWriter(folder).write(_ok("a.jpg", "caption a"))
    again = SidecarWriter(folder)
    again.write(_ok("a.jpg", "caption a"))
    assert (again.report.unchanged, again.report.kept) == (1, 0)


def test_errors_write_nothing(folder: Path) -> None:
    w = SidecarWriter(folder)
    w.write(Record("a.jpg", "error"))
    assert not (folder / "a.txt").exists()
    assert w.report.written == 0
