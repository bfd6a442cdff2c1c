"""Pure pieces of the report site and the exports: JS data escaping, path checks, Space front matter, bench page."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchcap.export import safe_relpath
from batchcap.site import js_assign, js_json, render_bench_html, space_readme, write_bench_html

BENCH_DOC = Path(__file__).with_name("bench_demo.json")


@given(st.text())
def test_js_json_is_json_and_holds_no_markup_characters(text: str) -> None:
    data = js_json({"caption": text, "list": [text]})
    for raw in (b"<", b">", b"&", "\u2028".encode(), "\u2029".encode()):
        assert raw not in data
    assert orjson.loads(data) == {"caption": text, "list": [text]}


def test_js_assign_shapes_and_refuses_names_from_data() -> None:
    assert js_assign("META", None, {"a": "</script>"}) == b'self.META = {"a":"\\u003c/script\\u003e"};\n'
    assert js_assign("CHUNKS", "c3", [1]) == b"(self.CHUNKS = self.CHUNKS || {}).c3 = [1];\n"
    with pytest.raises(ValueError, match="identifiers"):
        js_assign("CHUNKS", "c3]=alert(1);//", [])


@pytest.mark.parametrize(
    ("path", "clean"),
    [
        ("a/b.jpg", "a/b.jpg"),
        ("./a//b.jpg", "a/b.jpg"),
        ("dir with space/é.png", "dir with space/é.png"),
        ("..", None),
        ("../x", None),
        ("a/../../x", None),
        ("/etc/passwd", None),
        ("C:/x", None),
        ("a\\..\\x", None),
        ("a\x00b", None),
        ("a\nb", None),
        ("", None),
        (".", None),
    ],
)
def test_safe_relpath(path: str, clean: str | None) -> None:
    assert safe_relpath(path) == (PurePosixPath(clean) if clean else None)


def test_space_readme_front_matter_cannot_be_broken_by_the_title() -> None:
    text = space_readme('evil"\ntitle: x\nsdk: docker')
    head = text.split("---\n")[1]
    keys = [line.split(":", 1)[0] for line in head.splitlines()]
    assert keys == ["title", "emoji", "colorFrom", "colorTo", "sdk", "app_file", "pinned"]
    assert "sdk: static\n" in head
    assert "app_file: index.html\n" in head


def test_bench_page_has_verdict_tables_plots_and_escapes_everything(tmp_path: Path) -> None:
    doc = orjson.loads(BENCH_DOC.read_bytes())
    doc["targets"][0]["notes"] = ["<script>alert(1)</script>"]
    doc["targets"][0]["name"] = "free<img src=x onerror=alert(2)>"
    page = render_bench_html(doc)
    assert page.startswith("<!doctype html>")
    assert "script-src" not in page
    assert "default-src 'none'" in page
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img" not in page
    assert "<strong>endpoint</strong> is the faster choice" in page  # the verdict, its markdown bold kept
    assert page.count("<svg") == 3  # throughput, latency, failures
    assert "8 ◀ knee" in page
    assert "$0.0021" in page  # cost per 1k images at the knee, as in bench.md
    out = write_bench_html(doc, tmp_path)
    assert out.read_text(encoding="utf-8") == page
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "sdk: static\n" in readme
    assert "app_file: bench.html\n" in readme
    assert readme.startswith('---\ntitle: "batchcap bench: free')


def test_bench_page_without_steps() -> None:
    page = render_bench_html({"schema": "batchcap.bench/1", "verdict": "nothing ran", "targets": []})
    assert "No step ran." in page
    assert "<svg" not in page
