"""sources.scan / scan_batches on real folders: what is found, in which order, and what is skipped."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from batchcap.errors import ConfigError
from batchcap.source.scan import scan, scan_batches


def touch(root: Path, *rels: str, size: int = 3) -> None:
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * size)


def paths(root: Path, **kw: object) -> list[str]:
    return [job.path for job in scan(root, **kw)]  # type: ignore[arg-type]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    touch(
        root,
        "b.png",
        "a.JPG",
        "c.txt",
        "z/deep/er/x.webp",
        "m/2.gif",
        "m/10.jpeg",
        "m/notes.md",
        "Upper/IMG.TIFF",
        "y.bmp",
        "noext",
    )
    (root / "empty").mkdir()
    return root


def test_recursive_filtered_and_ordered_files_first_then_subfolders(tree: Path) -> None:
    # Within a folder, names sort by code point (uppercase first); images before subfolders.
    assert paths(tree) == [
        "a.JPG",
        "b.png",
        "y.bmp",
        "Upper/IMG.TIFF",
        "m/10.jpeg",
        "m/2.gif",
        "z/deep/er/x.webp",
    ]
    assert paths(tree) == paths(tree)


def test_jobs_carry_posix_relative_path_absolute_path_and_size(tree: Path) -> None:
    (tree / "m" / "2.gif").write_bytes(b"G" * 1234)
    job = next(j for j in scan(tree) if j.path == "m/2.gif")
    assert job.abspath == str(tree / "m" / "2.gif")
    assert os.path.isabs(job.abspath)
    assert job.size == 1234


def test_relative_root_gives_absolute_abspath(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree.parent)
    jobs = list(scan(Path("in")))
    assert jobs[0].path == "a.JPG"
    assert jobs[0].abspath == str(tree / "a.JPG")


def test_custom_extensions_without_dot_and_any_case(tree: Path) -> None:
    assert paths(tree, extensions={"TXT", ".Md"}) == ["c.txt", "m/notes.md"]


def test_missing_root_and_file_root_raise_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        scan(tmp_path / "nope")
    touch(tmp_path, "f.jpg")
    with pytest.raises(ConfigError, match="is not a folder"):
        scan(tmp_path / "f.jpg")


def test_symlinks_skipped_by_default(tmp_path: Path) -> None:
    root = tmp_path / "in"
    touch(root, "real/a.jpg", size=5)
    touch(tmp_path, "outside/o.png")
    (root / "link.jpg").symlink_to(root / "real" / "a.jpg")
    (root / "linkdir").symlink_to(tmp_path / "outside")
    (root / "loop").symlink_to(root)
    assert paths(root) == ["real/a.jpg"]


def test_follow_symlinks_includes_targets_and_breaks_loops(tmp_path: Path) -> None:
    root = tmp_path / "in"
    touch(root, "real/a.jpg", size=5)
    touch(tmp_path, "outside/o.png")
    (root / "link.jpg").symlink_to(root / "real" / "a.jpg")
    (root / "linkdir").symlink_to(tmp_path / "outside")
    (root / "real" / "up").symlink_to(root)  # a loop back to the root
    (root / "twin").symlink_to(root / "real")  # the same folder twice: visited once
    (root / "broken.jpg").symlink_to(root / "missing.jpg")
    jobs = list(scan(root, follow_symlinks=True))
    assert [j.path for j in jobs] == ["link.jpg", "linkdir/o.png", "real/a.jpg"]
    assert jobs[0].size == 5  # the target's size, not the link's


def test_big_folder_streams_in_listing_order_without_sorting(tmp_path: Path) -> None:
    root = tmp_path / "in"
    names = [f"{i:03d}.png" for i in range(50)]
    touch(root, *names, "sub/b.png", "sub/a.png")
    listing = [e.name for e in os.scandir(root) if e.is_file()]
    assert paths(root, sort_limit=10)[:50] == listing  # filesystem order for the big folder
    assert paths(root, sort_limit=10)[50:] == ["sub/a.png", "sub/b.png"]  # small one still sorted
    assert sorted(paths(root, sort_limit=0)) == sorted(paths(root))  # same set either way


def test_unreadable_subfolder_reported_and_scan_continues(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests run as root, and chmod 000 does not stop root: make scandir refuse instead.
    real_scandir = os.scandir
    locked = str(tree / "m")

    def scandir(path: str) -> object:
        if path == locked:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr("batchcap.source.scan.os.scandir", scandir)
    errors: list[tuple[str, OSError]] = []
    found = paths(tree, on_error=lambda rel, exc: errors.append((rel, exc)))
    assert "m/2.gif" not in found
    assert "z/deep/er/x.webp" in found
    assert [(rel, type(exc)) for rel, exc in errors] == [("m/", PermissionError)]


def test_unreadable_subfolder_for_real_when_not_root(tree: Path) -> None:
    locked = tree / "m"
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as root: chmod 000 does not stop reads (covered by the monkeypatched test)")
        errors: list[str] = []
        found = paths(tree, on_error=lambda rel, exc: errors.append(rel))
        assert errors == ["m/"]
        assert "y.bmp" in found
    finally:
        locked.chmod(0o755)


def test_non_utf8_name_reported_not_yielded(tmp_path: Path) -> None:
    root = tmp_path / "in"
    touch(root, "ok.jpg")
    try:
        (Path(os.fsencode(root).decode()) / os.fsdecode(b"bad\xff.jpg")).write_bytes(b"x")
    except (OSError, UnicodeError):
        pytest.skip("this filesystem refuses non-UTF-8 names")
    errors: list[tuple[str, OSError]] = []
    assert paths(root, on_error=lambda rel, exc: errors.append((rel, exc))) == ["ok.jpg"]
    assert errors[0][0] == "bad\\xff.jpg"  # printable
    assert errors[0][1].errno == errno.EILSEQ


def test_scan_batches_skips_done_and_chunks(tree: Path) -> None:
    done = {"a.JPG", "m/2.gif"}
    batches = list(scan_batches(tree, batch_size=2, skip=done.__contains__))
    assert [len(b) for b in batches] == [2, 2, 1]
    assert [j.path for b in batches for j in b] == [
        "b.png",
        "y.bmp",
        "Upper/IMG.TIFF",
        "m/10.jpeg",
        "z/deep/er/x.webp",
    ]


def test_scan_batches_closes_a_batch_at_the_byte_budget(tmp_path: Path) -> None:
    root = tmp_path / "in"
    touch(root, "a.png", "b.png", "c.png", size=100)
    assert [len(b) for b in scan_batches(root, batch_size=10, max_batch_bytes=150)] == [2, 1]


def test_scan_batches_checks_root_eagerly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        scan_batches(tmp_path / "missing")
    with pytest.raises(ValueError, match="batch_size"):
        scan_batches(tmp_path, batch_size=0)


def test_passed_counts_other_files_and_links_not_followed(tree: Path) -> None:
    from batchcap.source.scan import Passed

    (tree / "link.png").symlink_to(tree / "b.png")
    passed = Passed()
    found = paths(tree, passed=passed)
    assert "link.png" not in found
    assert passed.files == 3  # c.txt, m/notes.md, noext
    assert passed.extensions == {".txt": 1, ".md": 1, "": 1}
    assert passed.links == 1
    assert paths(tree) == found  # counting changes nothing


def test_first_image_stops_at_the_first_and_says_what_else_there_is(tmp_path: Path) -> None:
    from batchcap.source.scan import first_image, no_images_message

    touch(tmp_path / "docs", "notes.txt", "data.json", "more/b.json", "README", "z.JSON")
    image, passed = first_image(tmp_path / "docs")
    assert image is None
    assert no_images_message(tmp_path / "docs", passed) == (
        f"no images found in {tmp_path / 'docs'} (5 files skipped: .json, .txt, (no extension)); batchcap captions "
        "files ending in .avif .bmp .gif .heic .heif .jpeg .jpg .png .tif .tiff .webp"
    )
    (tmp_path / "empty").mkdir()
    image, passed = first_image(tmp_path / "empty")
    assert image is None
    assert no_images_message(tmp_path / "empty", passed) == f"no images found in {tmp_path / 'empty'}: the folder is empty"
    touch(tmp_path / "docs", "deep/er/x.jpg")
    image, _ = first_image(tmp_path / "docs")
    assert image is not None
    assert image.path == "deep/er/x.jpg"
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "x.jpg").symlink_to(tmp_path / "docs" / "deep" / "er" / "x.jpg")
    image, passed = first_image(tmp_path / "links")
    assert image is None
    assert "1 symbolic link not followed: add --follow-symlinks" in no_images_message(tmp_path / "links", passed)
    assert first_image(tmp_path / "links", follow_symlinks=True)[0] is not None
