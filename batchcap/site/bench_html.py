"""``bench.html``: one self-contained page for a bench (verdict, plots, tables), from the ``bench.json`` document.

It takes the parsed JSON rather than the in-memory result, so a page can be made again from any saved
``bench.json``. No script at all: the plots are inline SVG drawn here, every string is HTML-escaped, and
the page's CSP allows no script, so a target description or an error message cannot run anything.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any

from batchcap.bench.report import sent_line
from batchcap.site.space import space_readme
from batchcap.words import plural

__all__ = ["render_bench_html", "write_bench_html"]

_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
_CSS = """
body{margin:0 auto;max-width:1200px;padding:16px 20px 40px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
sans-serif;color:#1d2330;background:#fff}h1{font-size:22px;margin:0 0 8px}h2{font-size:16px;margin:24px 0 8px}
.verdict{background:#f1f5ff;border:1px solid #c7d7fe;border-radius:8px;padding:10px 14px;font-size:15px}
.plots{display:flex;flex-wrap:wrap;gap:12px}.plot{border:1px solid #e3e6ea;border-radius:8px;padding:6px}
.plot h3{font-size:12px;margin:0 0 4px;color:#667085}svg text{font-size:10px;fill:#475467}
table{border-collapse:collapse;font-size:12px;margin:4px 0 8px}th,td{border-bottom:1px solid #e3e6ea;padding:3px 7px;
text-align:right;white-space:nowrap}th:first-child,td:first-child{text-align:left}th{background:#f6f7f9}
tr.knee td{font-weight:700;background:#fffbe6}.muted{color:#667085}ul{padding-left:20px}code{font-size:12px}
.legend span{display:inline-block;margin-right:14px}.legend i{display:inline-block;width:18px;height:3px;
vertical-align:middle;margin-right:5px}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _count(value: Any, noun: str) -> str:
    """``plural`` for a count read from bench.json (any JSON value: an unknown count shows as ``?``)."""
    return plural(value, noun) if isinstance(value, int) and not isinstance(value, bool) else f"? {noun}s"


def _md_inline(text: str) -> str:
    """Escape, then the two markdown marks the verdict uses: **bold** and `code`."""
    out = _e(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def _num(value: Any, fmt: str = ".3f") -> str:
    return "–" if not isinstance(value, int | float) or isinstance(value, bool) else format(value, fmt)


def _steps(doc: dict[str, Any], mode: str) -> list[tuple[int, dict[str, Any], list[dict[str, Any]]]]:
    """(target index, target, its step stats in ``mode``) for every target with such steps."""
    out = []
    for i, t in enumerate(doc.get("targets") or []):
        stats = [s["stats"] for s in t.get("steps") or []
                 if isinstance(s, dict) and isinstance(s.get("stats"), dict) and s["stats"].get("mode") == mode]
        if stats:
            out.append((i, t, stats))
    return out


def _is_knee(t: dict[str, Any], s: dict[str, Any]) -> bool:
    k = t.get("knee")
    return isinstance(k, dict) and k.get("mode") == s.get("mode") and k.get("level") == s.get("level")


def _billed(t: dict[str, Any]) -> str:
    """``free``, ``$0.60/h`` (an Endpoint), ``tokens`` (a router provider, at its measured usage), or a dash."""
    price = t.get("price_per_hour")
    if isinstance(price, int | float):
        return "free" if price == 0 else f"${price:.2f}/h"
    return "tokens" if t.get("pricing") else "–"


def _cost(t: dict[str, Any], s: dict[str, Any]) -> tuple[str, str]:
    price = t.get("price_per_hour")
    if price is None and not t.get("pricing"):
        return "–", "–"
    if price == 0:
        return "free", "∞"
    cost, per = s.get("cost_per_1000"), s.get("images_per_dollar")
    return (f"${cost:.4f}" if isinstance(cost, int | float) else "–",
            f"{per:,.0f}" if isinstance(per, int | float) else "–")


def _table(doc: dict[str, Any], mode: str) -> str:
    closed = mode == "closed"
    kinds = list((doc.get("definitions") or {}).get("error_kinds") or {})
    labels = (doc.get("definitions") or {}).get("error_kinds") or {}
    head = ["target", "concurrency" if closed else "arrivals/s"] + ([] if closed else ["sent/s"])
    head += ["images/s", "p50 s", "p90 s", "p95 s", "p99 s", "max s", "ok / sent"]
    head += [str(labels.get(k, k)) for k in kinds]
    head += ([] if closed else ["unsent", "max send lag s"]) + ["MB sent", "billed", "$ / 1k images", "images / $"]
    rows = ["<tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"]
    for _i, t, steps in _steps(doc, mode):
        for s in steps:
            lat = s.get("latency") or {}
            knee = _is_knee(t, s)
            level = _num(s.get("level"), "g") + (" ◀ knee" if knee else "")
            if s.get("stopped_by") == "deadline":
                level += " (cut by --max-time)"
            cells = [t.get("name"), level] + ([] if closed else [_num(s.get("sent_per_s"), ".1f")])
            cells += [_num(s.get("images_per_s"), ".1f")]
            cells += [_num(lat.get(p)) for p in ("p50", "p90", "p95", "p99", "max")]
            cells += [f"{s.get('ok', 0)} / {s.get('requests', 0)}"]
            cells += [str((s.get("errors") or {}).get(k, 0)) for k in kinds]
            if not closed:
                cells += [str(s.get("unsent", 0)), _num(s.get("max_send_lag_s"))]
            cells += [_num((s.get("bytes_sent") or 0) / 1e6, ".2f"), _billed(t), *_cost(t, s)]
            tr = '<tr class="knee">' if knee else "<tr>"
            rows.append(tr + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _chart(doc: dict[str, Any], mode: str, title: str, value: Any, *, log_y: bool = False,
           hline: float | None = None, y_label: str = "") -> str:
    """One small SVG line chart: x = the sweep levels (evenly spaced), one line per target."""
    series = []
    levels: list[float] = sorted({float(s["level"]) for _i, _t, steps in _steps(doc, mode) for s in steps})
    for i, t, steps in _steps(doc, mode):
        pts = [(float(s["level"]), v, _is_knee(t, s)) for s in steps
               if isinstance(v := value(s), int | float) and (v > 0 or not log_y)]
        series.append((i, pts))
    ys = [v for _i, pts in series for _x, v, _k in pts] + ([hline] if hline else [])
    if not levels or not ys:
        return ""
    w, h, left, right, top, bottom = 360, 200, 44, 10, 10, 30
    lo, hi = (min(ys), max(ys))
    if log_y:
        lo, hi = math.log10(lo / 1.5), math.log10(hi * 1.5)
    else:
        lo, hi = 0.0, (hi * 1.15 or 1.0)

    def x_of(level: float) -> float:
        if len(levels) == 1:
            return left + (w - left - right) / 2
        return left + levels.index(level) * (w - left - right) / (len(levels) - 1)

    def y_of(v: float) -> float:
        v = math.log10(v) if log_y else v
        return top + (h - top - bottom) * (1 - (v - lo) / ((hi - lo) or 1.0))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">',
             f"<title>{_e(title)}</title>",
             f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="#98a2b3"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="#98a2b3"/>']
    for level in levels:
        parts.append(f'<text x="{x_of(level):.1f}" y="{h - bottom + 13}" text-anchor="middle">{level:g}</text>')
    ticks = [10 ** e * m for e in range(math.floor(lo), math.ceil(hi) + 1) for m in (1, 2, 5)] if log_y else \
        [hi / 1.15 * f for f in (0, 0.5, 1)]
    for v in ticks:
        if v <= 0 and log_y:
            continue
        y = y_of(v)
        if top - 0.5 <= y <= h - bottom + 0.5:
            parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{w - right}" y2="{y:.1f}" stroke="#eef0f3"/>')
            parts.append(f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end">{v:.3g}</text>')
    if hline:
        y = y_of(hline)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{w - right}" y2="{y:.1f}" stroke="crimson" '
                     f'stroke-dasharray="5 3"/><text x="{w - right}" y="{y - 3:.1f}" text-anchor="end" '
                     f'style="fill:crimson">SLO {hline:g} s</text>')
    for i, pts in series:
        colour = _COLOURS[i % len(_COLOURS)]
        coords = " ".join(f"{x_of(x):.1f},{y_of(v):.1f}" for x, v, _k in pts)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>')
        for x, v, knee in pts:
            r = 6 if knee else 3
            parts.append(f'<circle cx="{x_of(x):.1f}" cy="{y_of(v):.1f}" r="{r}" fill="{colour}"'
                         + (' stroke="#000"' if knee else "") + "/>")
    parts.append(f'<text x="{(left + w - right) / 2}" y="{h - 3}" text-anchor="middle">'
                 f"{'concurrency' if mode == 'closed' else 'arrivals / s'}</text>")
    if y_label:
        parts.append(f'<text x="10" y="{(top + h - bottom) / 2}" transform="rotate(-90 10 {(top + h - bottom) / 2})" '
                     f'text-anchor="middle">{_e(y_label)}</text>')
    parts.append("</svg>")
    return f'<div class="plot"><h3>{_e(title)}</h3>{"".join(parts)}</div>'


def _failed_pct(s: dict[str, Any]) -> float:
    req = s.get("requests") or 0
    return 100.0 * sum((s.get("errors") or {}).values()) / req if req else 0.0


def _target_item(t: dict[str, Any], slo: Any) -> str:
    price = t.get("price_per_hour")
    price_text = ("free" if price == 0 else f"${price:.2f}/h" if price is not None
                  else f"billed by the token: {t['pricing']}" if t.get("pricing") else "no price given")
    bits = [(f"<strong>{_e(t.get('name'))}</strong>: <code>{_e(t.get('description'))}</code> "
            f"({_e(price_text)}; token: {_e(t.get('token_source'))})")]
    c = t.get("cold_start")
    if isinstance(c, dict):
        if c.get("ok") and isinstance(c.get("seconds"), int | float):
            bits.append(f"first caption {c['seconds']:.2f} s after the first request ({_e(_count(c.get('attempts'), 'request'))})")
        else:
            bits.append(f"no caption during the cold-start probe: {_e(c.get('last_error') or 'no answer')}")
    k = t.get("knee")
    if isinstance(k, dict) and isinstance(k.get("latency"), dict):
        where = f"concurrency {k['level']:g}" if k.get("mode") == "closed" else f"{k['level']:g} arrivals/s"
        bits.append(f"knee at {_e(where)}: {_num(k.get('images_per_s'), '.1f')} images/s, "
                    f"p95 {_num(k['latency'].get('p95'))} s")
    elif t.get("steps"):
        bits.append(f"no step kept p95 within {_e(slo)} s")
    th = t.get("throttle")
    if isinstance(th, dict) and th.get("throttled"):
        bits.append(f"rate limited (429) from level {_num(th.get('first_throttled_level'), 'g')} on")
    notes = "".join(f"<li class=\"muted\">note: {_e(n)}</li>" for n in t.get("notes") or [])
    return "<li>" + "; ".join(bits) + "." + (f"<ul>{notes}</ul>" if notes else "") + "</li>"


def render_bench_html(doc: dict[str, Any]) -> str:
    """The page for one parsed ``bench.json`` (schema ``batchcap.bench/1``): verdict, plots, tables, targets."""
    targets = doc.get("targets") or []
    slo = doc.get("slo_p95_s")
    names = " vs ".join(str(t.get("name")) for t in targets) or "no target"
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
           f"<title>batchcap bench: {_e(names)}</title><style>{_CSS}</style></head><body>",
           f"<h1>batchcap bench: {_e(names)}</h1>",
           f'<div class="verdict">{_md_inline(str(doc.get("verdict") or "No verdict."))}</div>']
    legend = "".join(f'<span><i style="background:{_COLOURS[i % len(_COLOURS)]}"></i>{_e(t.get("name"))}</span>'
                     for i, t in enumerate(targets))
    modes = [m for m in ("closed", "open") if _steps(doc, m)]
    for mode in modes:
        loop = "closed loop" if mode == "closed" else "open loop"
        out.append(f"<h2>{'Closed loop: N requests in flight' if mode == 'closed' else 'Open loop: Poisson arrivals'}</h2>")
        out.append(f'<p class="legend">{legend} <span class="muted">(big dot: knee)</span></p><div class="plots">')
        out.append(_chart(doc, mode, f"Throughput ({loop})", lambda s: s.get("images_per_s"), y_label="images / s"))
        out.append(_chart(doc, mode, f"p95 latency of successes ({loop})",
                          lambda s: (s.get("latency") or {}).get("p95"), log_y=True,
                          hline=slo if isinstance(slo, int | float) else None, y_label="seconds"))
        out.append(_chart(doc, mode, f"Failed requests ({loop})", _failed_pct, y_label="% of requests"))
        out.append("</div>")
        out.append(_table(doc, mode))
    if not modes:
        out.append("<p>No step ran.</p>")
    out.append("<h2>Targets</h2><ul>" + "".join(_target_item(t, slo) for t in targets) + "</ul>")
    cfg, v, m, img = doc.get("config") or {}, doc.get("versions") or {}, doc.get("machine") or {}, doc.get("images") or {}
    out.append("<h2>How this was measured</h2><ul>")
    out.append(f"<li>{_e(_count(img.get('count'), 'image'))} ({(img.get('bytes_total') or 0) / 1e6:.1f} MB), each "
               f"target got the same bytes; per step up to {_e(_count(cfg.get('requests'), 'request'))} or "
               f"{_e(cfg.get('duration_s'))} s after {_e(_count(cfg.get('warmup'), 'warm-up request'))}; one "
               "attempt per request, no retries.</li>")
    out.append(f"<li>{_e(sent_line(img, cfg.get('prepare')).replace('`', ''))}</li>")
    out.append(f"<li>Latency from the scheduled send time, successes only. SLO: p95 ≤ {_e(slo)} s.</li>")
    out.append(f"<li>Started {_e(doc.get('started_at'))}, took {_num(doc.get('elapsed_s'), '.1f')} s"
               + (f", stopped: {_e(doc.get('stopped'))}" if doc.get("stopped") else "") + ".</li>")
    out.append(f"<li>batchcap {_e(v.get('batchcap'))} (commit {_e(v.get('git_commit') or 'unknown')}), Python "
               f"{_e(v.get('python'))}, aiohttp {_e(v.get('aiohttp'))}, event loop {_e(v.get('event_loop'))}; "
               f"{_e(m.get('platform'))}, {_e(m.get('cpu_count'))} CPUs.</li></ul>")
    out.append('<p class="muted">Every sample is in bench.json beside this page.</p></body></html>')
    return "\n".join(out) + "\n"


def write_bench_html(doc: dict[str, Any], out_dir: Path) -> Path:
    """Write ``bench.html`` and a Static Space ``README.md`` (front matter, app_file bench.html) into ``out_dir``.

    An existing README.md without Space front matter is left alone (it is someone's own file).
    """
    page = out_dir / "bench.html"
    page.write_text(render_bench_html(doc), encoding="utf-8")
    readme = out_dir / "README.md"
    names = " vs ".join(str(t.get("name")) for t in doc.get("targets") or [])
    try:
        mine = readme.read_text(encoding="utf-8").startswith("---\n")
    except FileNotFoundError:
        mine = True
    if mine:
        readme.write_text(space_readme(f"batchcap bench: {names}", app_file="bench.html",
                                       body="A batchcap bench: open `bench.html`; the raw samples are in "
                                            "`bench.json`.\n"), encoding="utf-8")
    return page
