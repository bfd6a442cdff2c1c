"""``build_site(journal, options)``: a static folder that shows a run: thumbnails, captions, errors, numbers.

Layout of the folder (works from ``file://`` and as a Static Space)::

    index.html app.js app.css       the page: fixed files, no data in them
    README.md                       Space front matter (title, sdk: static, app_file: index.html)
    data/meta.js                    counts, error breakdown, chart series, run settings
    data/c0.js data/c1.js ...       the records in path order, CHUNK per file, loaded when needed
    thumbs/HASH.webp                one thumbnail per distinct image content

Records are read back one at a time from the offsets the selection pass found, so memory stays flat in
the number of captions (one small row per record is held only until its chunk is written).
"""

from __future__ import annotations

import os
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from batchcap.export import Selection, read_records, select
from batchcap.journal.codec import record_task
from batchcap.journal.meta import input_dir_from_manifest, read_manifest
from batchcap.journal.owned import note_written, refuse_foreign
from batchcap.journal.throughput import DEFINITION, Completion, Invocation, Throughput, Timeline
from batchcap.site.jsdata import js_assign
from batchcap.site.space import space_readme
from batchcap.site.thumbs import THUMB_PX, ThumbStats, make_thumbnails
from batchcap.words import plural

__all__ = ["CHUNK", "SiteOptions", "SiteReport", "build_site"]

CHUNK = 1000  #: records per data file: ~100-200 kB, parsed in a few ms
_BINS = 48  #: bars in the throughput chart
_STATIC = ("index.html", "app.js", "app.css")


@dataclass(frozen=True, slots=True)
class SiteOptions:
    out: Path
    images: Path | None = None  #: None: config.input_dir of the run manifest; no folder: no thumbnails
    title: str | None = None
    jobs: int = 2  #: thumbnail threads
    chunk: int = CHUNK
    overwrite: bool = False  #: replace an index.html or README.md batchcap did not write (``journal.owned``)


@dataclass(slots=True)
class SiteReport:
    index: Path
    records: int = 0
    ok: int = 0
    errors: int = 0
    refused: int = 0
    bad_lines: int = 0
    first_bad_line: int | None = None
    images: Path | None = None
    thumbs: ThumbStats = field(default_factory=ThumbStats)
    seconds: float = 0.0


def _write(path: Path, data: bytes) -> None:
    """Replace ``path`` whole (temp file + rename); skipped when it already holds ``data``."""
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass(slots=True)
class _Tally:
    """What the header shows, summed while the chunks are written."""

    kinds: list[str] = field(default_factory=lambda: ["ok"])
    kind_index: dict[str, int] = field(default_factory=lambda: {"ok": 0})
    kind_counts: Counter[str] = field(default_factory=Counter)
    flags: list[str] = field(default_factory=list)
    flag_index: dict[str, int] = field(default_factory=dict)
    flag_counts: Counter[str] = field(default_factory=Counter)
    latencies: array[float] = field(default_factory=lambda: array("d"))
    ok_bins: list[int] = field(default_factory=lambda: [0] * _BINS)
    err_bins: list[int] = field(default_factory=lambda: [0] * _BINS)
    caption_chars: int = 0

    def kind(self, name: str) -> int:
        i = self.kind_index.get(name)
        if i is None:
            i = self.kind_index[name] = len(self.kinds)
            self.kinds.append(name)
        return i

    def flag(self, name: str) -> int:
        i = self.flag_index.get(name)
        if i is None:
            i = self.flag_index[name] = len(self.flags)
            self.flags.append(name)
        return i


def _row(rec: dict[str, Any], tally: _Tally, thumb: str, bin_of: Callable[[Any], int | None], task: int) -> list[Any]:
    """One answer as the page's compact row: [path, kind, text, latency_s, thumb, flags, http_status, attempts,
    cost_usd, task] (``task``: its index in the meta's ``tasks``)."""
    ok = rec["status"] == "ok"
    kind_name, text, status = "ok", "", None
    if ok:
        text = rec["caption"]
        tally.caption_chars += len(text)
    else:
        raw = rec.get("error")
        err: dict[str, Any] = raw if isinstance(raw, dict) else {}
        kind_name = err["type"] if isinstance(err.get("type"), str) and err["type"] else "error"
        text = err["message"] if isinstance(err.get("message"), str) else ""
        status = err["http_status"] if isinstance(err.get("http_status"), int) else None
    tally.kind_counts[kind_name] += 1
    latency = rec.get("latency_s")
    latency = round(float(latency), 4) if isinstance(latency, int | float) and latency >= 0 else None
    if ok and latency is not None:
        tally.latencies.append(latency)
    raw_flags = rec.get("flags")
    flags = []
    if isinstance(raw_flags, list):
        for f in raw_flags:
            if isinstance(f, str) and f:
                tally.flag_counts[f] += 1
                flags.append(tally.flag(f))
    b = bin_of(rec.get("ts"))
    if b is not None:
        (tally.ok_bins if ok else tally.err_bins)[b] += 1
    attempts = rec.get("attempts") if isinstance(rec.get("attempts"), int) else None
    cost = rec.get("cost_usd")
    cost = float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) and cost >= 0 else None
    return [rec["path"], tally.kind(kind_name), text, latency, thumb, flags, status, attempts, cost, task]


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return round(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo), 4)


def build_site(
    journal: Path,
    options: SiteOptions,
    *,
    clock: Callable[[], float] = time.monotonic,
    on_progress: Callable[[str], None] | None = None,
) -> SiteReport:
    """Write the site for ``journal`` into ``options.out``. Raises ``OSError`` when the journal is unreadable."""
    started = clock()
    out = options.out
    pages = [out / name for name in (*_STATIC, "README.md")]
    refuse_foreign(pages, overwrite=options.overwrite)  # before anything is written
    manifest = read_manifest(journal)
    runs = Completion(Invocation.from_manifest(manifest))
    sel = select(journal, on_ts=runs.observe if runs.needed else None)
    images = options.images or input_dir_from_manifest(journal)
    if images is not None and not images.is_dir():
        images = None
    items = sorted([*sel.ok.items(), *sel.errors.items()])  # ((path, task), offset): an image's answers together
    report = SiteReport(out / "index.html", records=len(items), ok=len(sel.ok), errors=len(sel.errors),
                        refused=len(sel.refused), bad_lines=sel.bad_lines, first_bad_line=sel.first_bad_line,
                        images=images)
    (out / "data").mkdir(parents=True, exist_ok=True)
    thumbs: dict[str, str] = {}
    if images is not None:
        paths = dict.fromkeys(p for (p, _), _ in items)
        if on_progress:
            on_progress(f"thumbnails for {plural(len(paths), 'image')}")
        thumbs, report.thumbs = make_thumbnails(images, paths, out / "thumbs", jobs=options.jobs)

    t0 = sel.ts_first
    busy = _busy(runs.invocations(), sel)
    timeline = Timeline.of(busy["windows"])
    bin_s = max(timeline.busy_s / _BINS, 1e-3)

    def bin_of(ts: Any) -> int | None:
        if t0 is None or not isinstance(ts, int | float):
            return None
        return min(_BINS - 1, max(0, int(timeline.offset(ts) / bin_s)))

    tally = _Tally()
    chunks, task_counts = _write_chunks(journal, items, sel.tasks, out, options.chunk, tally,
                                        lambda rec: thumbs.get(rec["path"], ""), bin_of)

    lat = sorted(tally.latencies)
    title = options.title or f"batchcap: {journal.name}"
    meta = {
        "schema": "batchcap.site/1",
        "title": title,
        "journal": journal.name,
        "total": len(items),
        "chunk": options.chunk,
        "chunks": chunks,
        "thumb_px": THUMB_PX,
        "kinds": tally.kinds,
        "kind_counts": [tally.kind_counts.get(k, 0) for k in tally.kinds],
        "tasks": sel.tasks,
        "task_counts": task_counts,
        "flags": tally.flags,
        "flag_counts": [tally.flag_counts.get(f, 0) for f in tally.flags],
        "lines": sel.lines,
        "bad_lines": sel.bad_lines,
        "refused": len(sel.refused),
        "bytes_sent": sel.bytes_sent,
        "caption_chars": tally.caption_chars,
        "latency": {"p50": _percentile(lat, 0.5), "p95": _percentile(lat, 0.95), "max": lat[-1] if lat else None},
        "throughput": {"t0": t0, "bin_s": round(bin_s, 3), "ok": tally.ok_bins, "errors": tally.err_bins,
                       **busy["numbers"]},
        "thumbnails": len(set(thumbs.values())), "cost": _cost_info(sel),
        "run": _run_info(manifest),
    }
    _write(out / "data" / "meta.js", js_assign("BATCHCAP_META", None, meta))
    static = resources.files(__package__).joinpath("static")
    for name in _STATIC:
        _write(out / name, static.joinpath(name).read_bytes())
    _write(out / "README.md", space_readme(title, body=_readme_body(report)).encode("utf-8"))
    note_written(pages)
    report.seconds = clock() - started
    return report


def _write_chunks(journal: Path, items: list[tuple[tuple[str, str], int]], tasks: list[str], out: Path, chunk: int,
                  tally: _Tally, thumb_of: Callable[[dict[str, Any]], str], bin_of: Callable[[Any], int | None]
                  ) -> tuple[int, list[int]]:
    """The records as data/cN.js files of ``chunk`` rows (stale ones removed); how many, and answers per task."""
    task_index = {task: i for i, task in enumerate(tasks)}
    task_counts = [0] * len(tasks)
    rows: list[list[Any]] = []
    chunks = 0
    for rec in read_records(journal, items):
        task = task_index.get(record_task(rec), 0)
        task_counts[task] += 1
        rows.append(_row(rec, tally, thumb_of(rec), bin_of, task))
        if len(rows) >= chunk:
            _write(out / "data" / f"c{chunks}.js", js_assign("BATCHCAP_CHUNKS", f"c{chunks}", rows))
            chunks += 1
            rows = []
    if rows:
        _write(out / "data" / f"c{chunks}.js", js_assign("BATCHCAP_CHUNKS", f"c{chunks}", rows))
        chunks += 1
    for stale in (out / "data").glob("c*.js"):
        if stale.stem[1:].isdigit() and int(stale.stem[1:]) >= chunks:
            stale.unlink()
    return chunks, task_counts


def _busy(invocations: list[Invocation], sel: Any) -> dict[str, Any]:
    """The header's throughput (``batchcap.journal.throughput``: the summary's and the manifest's definition),
    and the windows the chart's time axis keeps. Without a run manifest the journal's first to last record
    stands in for one run."""
    source = "run manifest"
    if not invocations and sel.ts_first is not None and sel.ts_last is not None:
        invocations = [Invocation(sel.ts_first).observed(sel.ts_last, sel.lines - sel.bad_lines)]
        source = "journal (no run manifest: first to last record)"
    done = [inv for inv in invocations if inv.finished]
    numbers = Throughput.of(done)
    timeline = Timeline.of(done)
    span = (timeline.windows[-1][1] - timeline.windows[0][0]) if timeline.windows else 0.0
    return {
        "windows": done,
        "numbers": {
            "busy_s": round(numbers.busy_s, 3), "images": numbers.images, "per_s": round(numbers.per_s, 1),
            "invocations": numbers.invocations, "idle_s": round(max(0.0, span - timeline.busy_s), 3),
            "source": source, "definition": DEFINITION,
        },
    }


def _cost_info(sel: Selection) -> dict[str, Any] | None:
    """What was paid (issue 18): every line's ``cost_usd``, superseded ones included; None when none has one."""
    if not sel.costed:
        return None
    return {"usd": round(sel.cost_usd, 9), "lines": sel.costed,
            "per_1000_images": round(1000 * sel.cost_usd / sel.costed, 6)}


def _run_info(manifest: dict[str, Any] | None) -> dict[str, Any] | None:
    """The manifest parts the header shows: settings (secret-free by construction), state, times, counts."""
    if manifest is None:
        return None
    keep = ("version", "state", "started_at", "finished_at", "elapsed_s", "abort_reason", "counts", "config",
            "throughput")
    return {k: manifest.get(k) for k in keep if k in manifest}


def _readme_body(report: SiteReport) -> str:
    return (
        f"A batchcap report: {plural(report.records, 'answer')}, {report.ok} ok, "
        f"{report.errors} with an error record.\n\nOpen `index.html` (it works from the disk), or upload this "
        "folder as a Static Space.\n"
    )
