"""The report site (``batchcap report``) and the bench page (``bench.html``): static files, no server.

    batchcap report results.jsonl --out site/
"""

from __future__ import annotations

from batchcap.site.bench_html import render_bench_html, write_bench_html
from batchcap.site.build import CHUNK, SiteOptions, SiteReport, build_site
from batchcap.site.jsdata import js_assign, js_json
from batchcap.site.space import space_readme

__all__ = [
    "CHUNK",
    "SiteOptions",
    "SiteReport",
    "build_site",
    "js_assign",
    "js_json",
    "render_bench_html",
    "space_readme",
    "write_bench_html",
]
