"""``batchcap report``: what the site folder holds, built from a real run (the browser tests look at the page)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from captioned import CaptionedRun, make_run

from batchcap.cli import main as cli_main
from batchcap.journal import encode_record
from batchcap.models import ErrorInfo, Record
from batchcap.site import SiteOptions, build_site


def report(*argv: str | Path) -> int:
    return cli_main(["report", *(str(a) for a in argv)])


@pytest.fixture
def captioned_run(tmp_path: Path) -> CaptionedRun:
    """12 images and a broken file, captioned by the real pipeline against the emulator."""
    return make_run(tmp_path)


def test_site_is_a_static_space_with_a_strict_csp(captioned_run: CaptionedRun, tmp_path: Path) -> None:
    site = tmp_path / "site"
    assert report(captioned_run.journal, "--out", site) == 0
    readme = (site / "README.md").read_text(encoding="utf-8")
    front = readme.split("---\n")[1]
    assert "sdk: static\n" in front
    assert "app_file: index.html\n" in front
    assert re.search(r"^title: \S", front, re.MULTILINE)
    index = (site / "index.html").read_text(encoding="utf-8")
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', index)
    assert csp is not None
    assert "script-src 'self'" in csp.group(1)
    assert "unsafe-inline" not in csp.group(1)
    assert re.findall(r"<script(?![^>]*\bsrc=)", index) == []  # no inline script at all
    assert (site / "data" / "meta.js").read_bytes().startswith(b"self.BATCHCAP_META = {")


def test_thumbnails_are_made_once_and_shared_by_identical_images(
    captioned_run: CaptionedRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = captioned_run
    first = min(run.captions)
    shutil.copy(run.images / first, run.images / "copy_of_first.img")
    with open(run.journal, "ab") as f:
        f.write(encode_record(Record("copy_of_first.img", "ok", caption=run.captions[first])))
    site = tmp_path / "site"
    assert report(run.journal, "--out", site) == 0
    assert "thumbnails: 12 made, 1 up to date, 1 unreadable" in capsys.readouterr().err
    thumbs = sorted((site / "thumbs").glob("*.webp"))
    assert len(thumbs) == 12  # 13 images with a preview, two of them the same bytes
    assert all(t.read_bytes()[8:12] == b"WEBP" and t.stat().st_size < 20_000 for t in thumbs)
    mtimes = {t.name: t.stat().st_mtime_ns for t in thumbs}
    assert report(run.journal, "--out", site) == 0
    assert "thumbnails: 0 made, 13 up to date" in capsys.readouterr().err
    assert {t.name: t.stat().st_mtime_ns for t in (site / "thumbs").glob("*.webp")} == mtimes


def test_chunks_follow_the_records_and_stale_ones_go(tmp_path: Path) -> None:
    journal = tmp_path / "results.jsonl"
    journal.write_bytes(b"".join(encode_record(Record(f"{i:03d}.jpg", "ok", caption=f"c{i}")) for i in range(23)))
    site = tmp_path / "site"
    report_ = build_site(journal, SiteOptions(out=site, chunk=5))
    assert report_.records == 23
    assert sorted(p.name for p in (site / "data").glob("c*.js")) == [f"c{i}.js" for i in range(5)]
    journal.write_bytes(b"".join(encode_record(Record(f"{i:03d}.jpg", "ok", caption="x")) for i in range(7)))
    build_site(journal, SiteOptions(out=site, chunk=5))
    assert sorted(p.name for p in (site / "data").glob("c*.js")) == ["c0.js", "c1.js"]


def test_paths_outside_the_folder_get_no_thumbnail_and_no_card(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    secret = tmp_path / "private.png"
    from PIL import Image

    Image.new("RGB", (40, 40), (200, 0, 0)).save(secret)
    journal = tmp_path / "results.jsonl"
    journal.write_bytes(encode_record(Record("../private.png", "ok", caption="leak"))
                        + encode_record(Record(str(secret), "ok", caption="leak")))
    site = tmp_path / "site"
    assert report(journal, "--out", site, "--images", images) == 1
    assert "2 paths refused" in capsys.readouterr().err
    assert not list((site / "thumbs").glob("*.webp"))
    assert b"leak" not in (site / "data" / "meta.js").read_bytes()
    assert not list((site / "data").glob("c*.js"))


def test_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report(tmp_path / "missing.jsonl", "--out", tmp_path / "s") == 2
    assert capsys.readouterr().err.count("\n") == 1
    journal = tmp_path / "results.jsonl"
    journal.write_bytes(encode_record(Record("a.jpg", "ok", caption="x")))
    assert report(journal, "--out", tmp_path / "s") == 0  # no manifest: a site without thumbnails
    assert "no thumbnails; pass --images DIR" in capsys.readouterr().err
    assert report(journal, "--out", tmp_path / "s", "--images", tmp_path / "nope") == 2


def test_quality_flags_and_error_types_feed_the_status_filter(tmp_path: Path) -> None:
    import orjson

    journal = tmp_path / "results.jsonl"
    journal.write_bytes(
        encode_record(Record("a.jpg", "ok", caption="fine"))
        + orjson.dumps({"path": "b.jpg", "status": "ok", "caption": "an image", "flags": ["boilerplate", "short"]})
        + b"\n" + encode_record(Record("c.jpg", "error", error=ErrorInfo("RejectedImage", "too big", 413)))
    )
    site = tmp_path / "site"
    build_site(journal, SiteOptions(out=site))
    raw = (site / "data" / "meta.js").read_bytes()
    meta = orjson.loads(raw.removeprefix(b"self.BATCHCAP_META = ").rstrip(b";\n"))
    assert meta["kinds"] == ["ok", "RejectedImage"]
    assert meta["kind_counts"] == [2, 1]
    assert meta["flags"] == ["boilerplate", "short"]
    assert meta["flag_counts"] == [1, 1]
    rows = orjson.loads((site / "data" / "c0.js").read_bytes().split(b").c0 = ", 1)[1].rstrip(b";\n"))
    assert [(r[0], r[1], r[5], r[6]) for r in rows] == [("a.jpg", 0, [], None), ("b.jpg", 0, [0, 1], None),
                                                        ("c.jpg", 1, [], 413)]


def test_the_header_and_each_card_show_what_it_cost(tmp_path: Path) -> None:
    """Issue 18: spend over every paid line (a rerun's superseded one too), and each image's own cost."""
    import orjson

    from batchcap.models import Usage

    def paid(path: str, cost: float, status: str = "ok") -> bytes:
        if status == "ok":
            return encode_record(Record(path, "ok", caption="a cat", usage=Usage(800, 20), provider="novita",
                                        cost_usd=cost))
        return encode_record(Record(path, "error", error=ErrorInfo("BadCaption", "refusal", 200), cost_usd=cost))

    journal = tmp_path / "results.jsonl"
    journal.write_bytes(paid("a.jpg", 0.0002, "error") + paid("a.jpg", 0.0003) + paid("b.jpg", 0.0005)
                        + encode_record(Record("c.jpg", "ok", caption="free")))
    site = tmp_path / "site"
    build_site(journal, SiteOptions(out=site))
    meta = orjson.loads((site / "data" / "meta.js").read_bytes().removeprefix(b"self.BATCHCAP_META = ")
                        .rstrip(b";\n"))
    assert meta["cost"]["usd"] == pytest.approx(0.001)  # what was paid, the superseded error included
    assert meta["cost"]["lines"] == 3
    assert meta["cost"]["per_1000_images"] == pytest.approx(1000 * 0.001 / 3)
    rows = orjson.loads((site / "data" / "c0.js").read_bytes().split(b").c0 = ", 1)[1].rstrip(b";\n"))
    assert [(r[0], r[8]) for r in rows] == [("a.jpg", 0.0003), ("b.jpg", 0.0005), ("c.jpg", None)]
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(encode_record(Record("c.jpg", "ok", caption="free")))
    build_site(plain, SiteOptions(out=tmp_path / "site2"))
    assert b'"cost":null' in (tmp_path / "site2" / "data" / "meta.js").read_bytes()
