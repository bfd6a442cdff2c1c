"""samples.generate: the right number of varied, decodable images, identical on every run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from batchcap.source.samples import generate, main


def test_count_formats_folders_and_every_file_decodes(tmp_path: Path) -> None:
    paths = generate(tmp_path, 60, seed=0)
    assert len(paths) == len(set(paths)) == 60
    assert sorted(paths) == sorted(p for p in tmp_path.rglob("*") if p.is_file())
    formats: Counter[str] = Counter()
    for path in paths:
        with Image.open(path) as image:
            image.load()
            formats[image.format or "?"] += 1
            assert 32 <= min(image.size) <= max(image.size) <= 512
    assert set(formats) == {"PNG", "JPEG", "WEBP", "GIF"}
    assert formats["PNG"] + formats["JPEG"] > formats["WEBP"] + formats["GIF"]
    assert {p.suffix for p in paths} == {".png", ".jpg", ".webp", ".gif"}
    assert max(len(p.relative_to(tmp_path).parts) for p in paths) >= 3  # nested subfolders


def test_same_seed_same_bytes_and_reruns_rewrite_nothing(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", 25, seed=3)
    again = generate(tmp_path / "b", 25, seed=3)
    assert [p.relative_to(tmp_path / "a") for p in first] == [p.relative_to(tmp_path / "b") for p in again]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    stamps = [p.stat().st_mtime_ns for p in first]
    assert generate(tmp_path / "a", 25, seed=3) == first
    assert [p.stat().st_mtime_ns for p in first] == stamps


def test_images_are_prefix_stable_and_seeds_differ(tmp_path: Path) -> None:
    small = generate(tmp_path / "small", 5, seed=1)
    large = generate(tmp_path / "large", 10, seed=1)
    assert [p.read_bytes() for p in small] == [p.read_bytes() for p in large[:5]]
    other = generate(tmp_path / "other", 5, seed=2)
    assert [p.read_bytes() for p in small] != [p.read_bytes() for p in other]


def test_dominant_colours_vary(tmp_path: Path) -> None:
    emulator = pytest.importorskip("batchcap.emulator")
    captions = [emulator.caption_for(p.read_bytes()) for p in generate(tmp_path, 40)]
    assert len({c.rsplit(" ", 1)[1] for c in captions}) >= 6


def test_main_writes_count_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path), "--count", "7", "--seed", "5"]) == 0
    assert len(list(tmp_path.rglob("*.*"))) == 7
    assert "7" in capsys.readouterr().out


def test_foreign_entries_tells_earlier_samples_from_other_files(tmp_path: Path) -> None:
    from batchcap.source.samples import foreign_entries

    dest = tmp_path / "imgs"
    assert foreign_entries(dest) == []  # missing: it will be created
    generate(dest, 40, seed=3)
    assert foreign_entries(dest) == []  # what an earlier samples wrote: the demo can run twice
    (dest / "landscapes" / "IMG_0001.jpg").write_bytes(b"a real photo")
    (dest / "notes.txt").write_text("mine")
    (dest / "holiday").mkdir()
    assert foreign_entries(dest) == ["holiday/", "notes.txt", "landscapes/IMG_0001.jpg"]
    assert foreign_entries(dest, limit=1) == ["holiday/"]
    (dest / "notes.txt").unlink()
    assert foreign_entries(dest / "landscapes" / "IMG_0001.jpg") == ["IMG_0001.jpg"]  # a file, not a folder
