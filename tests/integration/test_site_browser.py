"""The report site in a real headless Chromium, loaded from ``file://`` as a user opens it from the disk."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from captioned import CaptionedRun, make_run

from batchcap.cli import main as cli_main
from batchcap.journal import encode_record
from batchcap.models import ErrorInfo, Record
from batchcap.source.samples import generate

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install -y chromium; .ci/run does it)",
                allow_module_level=True)


def report(*argv: str | Path) -> int:
    return cli_main(["report", *(str(a) for a in argv)])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright  # the dev extra: a missing one is a failure, not a skip

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


class Page:
    """A page that records every dialog and script error, so a test can assert that nothing ran."""

    def __init__(self, browser: Any) -> None:
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)

    def open(self, site: Path, hash_: str = "") -> float:
        """Load the page; seconds until the first card is in the DOM."""
        start = time.perf_counter()
        self.page.goto(site.joinpath("index.html").as_uri() + hash_)
        self.page.wait_for_selector("article.card:not(.loading)")
        return time.perf_counter() - start

    def wait(self, expression: str, arg: Any = None, timeout: float = 15.0) -> None:
        """Poll ``expression`` (a JS function) until truthy. Not ``wait_for_function``: that evals a string,
        which the page's own CSP (no 'unsafe-eval') rightly refuses."""
        deadline = time.monotonic() + timeout
        while not self.page.evaluate(expression, arg):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {expression}")
            time.sleep(0.02)

    def cards(self) -> list[dict[str, str]]:
        return self.page.eval_on_selector_all(
            "article.card:not(.loading)",
            "cs => cs.map(c => ({path: c.querySelector('.path').textContent, "
            "cap: c.querySelector('.cap').textContent, badge: c.querySelector('.badge').textContent}))",
        )

    def search(self, text: str, expect: int) -> list[dict[str, str]]:
        self.page.fill("input[type=search]", text)
        self.wait("([q, n]) => new URLSearchParams(location.hash.slice(1)).get('q') === q "
                  "&& document.getElementById('grid').getAttribute('aria-busy') === 'false' "
                  "&& document.querySelectorAll('article.card:not(.loading)').length === n "
                  "&& /match/.test(document.getElementById('count').textContent)", [text, expect])
        return self.cards()

    def nodes(self) -> int:
        return int(self.page.evaluate("document.getElementsByTagName('*').length"))


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    p = Page(browser)
    try:
        yield p
    finally:
        p.page.close()


@pytest.fixture
def captioned_run(tmp_path: Path) -> CaptionedRun:
    """12 images and a broken file, captioned by the real pipeline against the emulator."""
    return make_run(tmp_path)


def test_page_from_file_shows_thumbnails_captions_search_and_errors(
    captioned_run: CaptionedRun, tmp_path: Path, page: Page
) -> None:
    run = captioned_run
    site = tmp_path / "site"
    assert report(run.journal, "--out", site) == 0
    page.open(site)
    cards = page.cards()
    assert {c["path"]: c["cap"] for c in cards if c["badge"] == "ok"} == run.captions
    loaded = page.page.eval_on_selector_all("img.thumb", "is => is.filter(i => i.complete && i.naturalWidth > 0).length")
    assert loaded == len(run.captions)
    assert "13" in page.page.text_content("#summary")  # the counts header
    # throughput: the manifest's number (the run summary's), and what it means in the tooltip (issue 21)
    tiles = page.page.eval_on_selector_all(
        "#summary .tile", "ts => ts.map(t => [t.querySelector('span').textContent, t.querySelector('b').textContent, "
        "t.title])")
    shown = {label: (value, tip) for label, value, tip in tiles}
    manifest = json.loads(run.journal.with_name(run.journal.stem + ".manifest.json").read_text())
    value, tip = shown["images per second"]
    assert value == f"{manifest['throughput']['images_per_s']:.1f}/s"
    assert "per second of busy time" in tip
    assert "the time between them (after an interrupt, before a resume) is not counted" in tip
    assert shown["busy"][1] == tip

    name, caption = sorted(run.captions.items())[3]
    [hit] = page.search(caption, 1)
    assert hit == {"path": name, "cap": caption, "badge": "ok"}
    # The view is in the URL: opening that address shows the same single card.
    shared = page.page.url
    assert "q=" in shared
    page.page.goto("about:blank")
    page.page.goto(shared)
    page.wait("() => document.querySelectorAll('article.card:not(.loading)').length === 1")
    assert page.cards() == [hit]

    [err] = page.search(run.broken, 1)  # an error record, found by its file name
    assert err["path"] == run.broken
    assert err["badge"] == "InputError"
    assert "truncated" in err["cap"]
    assert page.search("no caption says this", 0) == []
    assert page.page.is_visible("#empty")
    assert page.page.text_content("#count") == "0 of 13 records match"
    page.page.fill("input[type=search]", "")
    page.page.select_option("#status", "e:InputError")
    page.wait("() => document.querySelectorAll('article.card').length === 1")
    assert page.cards()[0]["path"] == run.broken
    assert page.errors == []
    assert page.dialogs == []


EVIL = [
    '<img src=x onerror="window.__pwned=1;alert(1)">',
    "</script><script>window.__pwned=2;alert(2)</script>",
    "\u2028</script>\u2029<!-- & &amp; <b>bold</b>",
]


def test_hostile_captions_and_paths_show_as_text_and_run_nothing(tmp_path: Path, page: Page) -> None:
    images = tmp_path / "images"
    generate(images, 3, seed=1)
    journal = tmp_path / "results.jsonl"
    records = [Record(f"evil_{i}.jpg", "ok", caption=c, latency_s=0.1, ts=1000.0 + i) for i, c in enumerate(EVIL)]
    records.append(Record('"><svg onload=alert(3)>.jpg', "error",
                          error=ErrorInfo("RejectedImage", "<script>alert(4)</script>", 400), ts=1003.0))
    with open(journal, "wb") as f:
        f.writelines(encode_record(r) for r in records)
    site = tmp_path / "site"
    assert report(journal, "--out", site, "--images", images, "--title", "</title><script>alert(5)</script>") == 0
    for data in (site / "data").glob("*.js"):
        raw = data.read_bytes()
        for char in (b"<", b">", "\u2028".encode()):
            assert char not in raw, data.name
    page.open(site)
    page.page.wait_for_timeout(300)  # give any injected handler the chance to fire
    shown = {c["path"]: c["cap"] for c in page.cards()}
    assert shown == {**{r.path: r.caption for r in records[:3]}, records[3].path: "<script>alert(4)</script>"}
    assert page.page.evaluate("window.__pwned") is None
    assert page.page.evaluate("document.querySelectorAll('img[src=x], svg[onload], script:not([src])').length") == 0
    assert page.page.title() == "</title><script>alert(5)</script>"
    assert page.dialogs == []


def test_20k_records_keep_the_dom_small(tmp_path: Path, page: Page) -> None:
    """Measured, not timed: the DOM size is asserted, the seconds are printed."""
    images = tmp_path / "images"
    generate(images, 60, seed=2)
    real = sorted(p.relative_to(images).as_posix() for p in images.rglob("*") if p.is_file())
    journal = tmp_path / "results.jsonl"
    with open(journal, "wb") as f:
        for i in range(20_000):
            path = real[i] if i < len(real) else f"batch/{i // 1000:02d}/img_{i:05d}.jpg"
            if i % 97 == 0:
                rec = Record(path, "error", error=ErrorInfo("ServerError", f"HTTP 503 number {i}", 503, True),
                             ts=1000 + i * 0.01)
            else:
                rec = Record(path, "ok", caption=f"caption number {i}: a photo of thing {i % 313}",
                             latency_s=0.2 + (i % 1000) / 1000, bytes_sent=40_000, ts=1000 + i * 0.01)
            f.write(encode_record(rec))
    site = tmp_path / "site"
    start = time.perf_counter()
    assert report(journal, "--out", site, "--images", images) == 0
    build_s = time.perf_counter() - start
    first_s = page.open(site)
    top_nodes = page.nodes()
    top = page.cards()[0]["path"]
    page.page.evaluate("window.scrollTo(0, document.body.scrollHeight / 2)")
    page.wait("top => { const c = document.querySelector('article.card'); return c && c.querySelector('.path') "
              "&& c.querySelector('.path').textContent !== top && !document.querySelector('article.card.loading'); }",
              top)
    middle_nodes = page.nodes()
    middle = page.cards()[0]["path"]
    [hit] = page.search("caption number 12345:", 1)
    assert hit["path"] == "batch/12/img_12345.jpg"
    page.page.fill("input[type=search]", "")
    page.page.select_option("#sort", "-latency")
    page.wait("() => location.hash === '#sort=-latency' "
              "&& document.getElementById('grid').getAttribute('aria-busy') === 'false' "
              "&& /^20,000 of 20,000/.test(document.getElementById('count').textContent)")
    sorted_nodes = page.nodes()
    assert page.cards()[0]["path"] == "batch/00/img_00999.jpg"  # the slowest (1.199 s), ties by path
    print(f"\n20k records: build {build_s:.2f} s, first cards after {first_s:.3f} s, DOM nodes: top {top_nodes}, "
          f"scrolled {middle_nodes} (at {middle}), sorted by latency {sorted_nodes}")
    assert "batch/09/" <= middle <= "batch/11/"  # the middle of 20k sorted paths, loaded on demand
    assert max(top_nodes, middle_nodes, sorted_nodes) < 3000
    assert page.errors == []


def test_the_report_shows_what_was_spent_and_each_images_cost(tmp_path: Path, page: Page) -> None:
    from batchcap.models import Usage

    journal = tmp_path / "results.jsonl"
    records = [Record(f"img_{i}.jpg", "ok", caption=f"a cat {i}", latency_s=0.2, ts=1000.0 + i, usage=Usage(800, 20),
                      provider="novita", cost_usd=0.0002 * (i + 1)) for i in range(3)]
    with open(journal, "wb") as f:
        f.writelines(encode_record(r) for r in records)
    site = tmp_path / "site"
    assert report(journal, "--out", site) == 0
    page.open(site)
    tiles = page.page.eval_on_selector_all(
        "#summary .tile", "ts => ts.map(t => t.querySelector('span').textContent + ': ' + t.querySelector('b').textContent)")
    assert "spent: $0.0012" in tiles
    assert "per 1,000 images: $0.40" in tiles
    costs = page.page.eval_on_selector_all("article.card .cost", "cs => cs.map(c => c.textContent)")
    assert sorted(costs) == ["$0.0002", "$0.0004", "$0.0006"]
    page.page.select_option("#sort", "-cost")
    page.wait("() => document.querySelector('article.card .path').textContent === 'img_2.jpg'")
    assert page.errors == []
