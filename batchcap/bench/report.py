"""Write a bench: ``bench.json`` (every sample, the config, versions, machine), ``bench.md`` and a plot.

The JSON is for machines and later comparison, the markdown for a pull request or an issue, the plot for
the person deciding. The plot needs matplotlib (``pip install 'batchcap[plot]'``); without it the other two
files are still written and the report says why there is no picture.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from batchcap.bench.stats import (
    ERROR_KINDS,
    ERROR_LABELS,
    BenchResult,
    Sample,
    StepStats,
    TargetResult,
)
from batchcap.bench.verdict import describe_errors, format_duration
from batchcap.words import plural

__all__ = ["ReportPaths", "render_markdown", "render_results", "to_json", "write_plot", "write_reports"]

SCHEMA = "batchcap.bench/1"


@dataclass(frozen=True, slots=True)
class ReportPaths:
    """Where the report went; ``plot`` is None when it could not be drawn, and ``plot_note`` says why."""

    json: Path
    markdown: Path
    plot: Path | None
    plot_note: str | None


# ---------------------------------------------------------------------------------------------------------------
# JSON.


def _sample(s: Sample) -> dict[str, Any]:
    return {
        "i": s.index,
        "scheduled_s": round(s.scheduled, 6),
        "sent_s": round(s.sent, 6),
        "done_s": round(s.done, 6),
        "latency_s": round(s.latency, 6),
        "ok": s.ok,
        "kind": s.kind,
        "status": s.status,
        "bytes_sent": s.bytes_sent,
        "cost_usd": s.cost_usd,
    }


def _target(t: TargetResult) -> dict[str, Any]:
    return {
        "name": t.name,
        "description": t.description,
        "url": t.url,
        "api": t.api,
        "price_per_hour": t.price_per_hour,
        "pricing": t.pricing,
        "token_source": t.token_source,
        "cold_start": t.cold_start,
        "knee": t.knee,
        "throttle": t.throttle,
        "notes": list(t.notes),
        "space_quota": t.space_quota,
        "steps": [
            {
                "stats": rec.stats,
                "samples": [_sample(s) for s in rec.samples],
                "warmup_samples": [_sample(s) for s in rec.warmup_samples],
            }
            for rec in t.steps
        ],
    }


def to_json(result: BenchResult) -> bytes:
    """The whole bench as indented JSON. Holds no token: targets are described by secret-free configs."""
    doc = {
        "schema": SCHEMA,
        "started_at": result.started_at,
        "elapsed_s": round(result.elapsed_s, 3),
        "stopped": result.stopped,
        "slo_p95_s": result.slo_s,
        "verdict": result.verdict,
        "definitions": {
            "latency": "done - scheduled send time (closed loop: the actual send; open loop: the Poisson arrival)",
            "percentiles": "successes only; numpy 'linear' method (Hyndman & Fan type 7)",
            "images_per_s": "successes / step window (step start until the loop ended); warm-up excluded",
            "cost_per_1000": "billed by the hour: price_per_hour / (images_per_s * 3600) * 1000; billed by the token: "
                             "1000 * mean cost_usd of the successes (usage x the serving provider's price)",
            "knee": "among steps whose p95 <= slo_p95_s, the lowest level within max(5%, 1/sqrt(successes of the "
                    "best step)) of the best images/s",
            "error_kinds": {k: ERROR_LABELS[k] for k in ERROR_KINDS},
        },
        "config": result.config,
        "versions": result.versions,
        "machine": result.machine,
        "images": result.images,
        "targets": [_target(t) for t in result.targets],
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)


# ---------------------------------------------------------------------------------------------------------------
# Markdown.


def _f(value: float | None, fmt: str = ".3f") -> str:
    return "–" if value is None else format(value, fmt)


def _cost(t: TargetResult, s: StepStats) -> tuple[str, str]:
    if t.price_per_hour is None and t.pricing is None:
        return "–", "–"
    if t.price_per_hour == 0:
        return "free", "∞"
    return (f"${s.cost_per_1000:.4f}" if s.cost_per_1000 is not None else "–",
            f"{s.images_per_dollar:,.0f}" if s.images_per_dollar is not None else "–")


def billed(t: TargetResult) -> str:
    """How a target bills, for the tables: ``free``, ``$0.60/h``, ``tokens``, or a dash (no price known)."""
    if t.price_per_hour is not None:
        return "free" if t.price_per_hour == 0 else f"${t.price_per_hour:.2f}/h"
    return "tokens" if t.pricing is not None else "–"


def _table(result: BenchResult, mode: str) -> list[str]:
    closed = mode == "closed"
    head = ["target", "concurrency" if closed else "arrivals/s"]
    if not closed:
        head += ["sent/s"]
    head += ["images/s", "p50 s", "p90 s", "p95 s", "p99 s", "max s", "ok / sent"]
    head += [ERROR_LABELS[k] for k in ERROR_KINDS]
    if not closed:
        head += ["unsent", "max send lag s"]
    head += ["MB sent", "billed", "$ / 1k images", "images / $"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < 1 else "--:" for i in range(len(head))) + "|"]
    for t in result.targets:
        for rec in t.steps:
            s = rec.stats
            if s.mode != mode:
                continue
            is_knee = t.knee is not None and t.knee.mode == s.mode and t.knee.level == s.level
            lat = s.latency
            cut = " (cut by --max-time)" if s.stopped_by == "deadline" else ""
            row = [t.name, (f"**{s.level:g}** ◀ knee" if is_knee else f"{s.level:g}") + cut]
            if not closed:
                row += [f"{s.sent_per_s:.1f}"]
            row += [
                f"**{s.images_per_s:.1f}**" if is_knee else f"{s.images_per_s:.1f}",
                _f(lat.p50 if lat else None), _f(lat.p90 if lat else None), _f(lat.p95 if lat else None),
                _f(lat.p99 if lat else None), _f(lat.max if lat else None), f"{s.ok} / {s.requests}",
            ]
            row += [str(s.errors.get(k, 0)) for k in ERROR_KINDS]
            if not closed:
                row += [str(s.unsent), f"{s.max_send_lag_s:.3f}"]
            row += [f"{s.bytes_sent / 1e6:.2f}", billed(t), *_cost(t, s)]
            lines.append("| " + " | ".join(row) + " |")
    return lines


def sent_line(img: dict[str, Any], prep: Any) -> str:
    """What was sent of the images: their bytes before and after preparation, as ``batchcap run`` prepares them."""
    if "bytes_sent_total" not in img:  # a bench.json from before preparation was shared
        return "Sent as the files were (no preparation)."
    how = "files as they are (--max-side 0)"
    if isinstance(prep, dict) and prep.get("max_side"):
        limit = prep.get("max_upload_bytes") or 0
        body = f"body <= {limit / 1e6:g} MB" if limit else "no body limit"
        how = (f"long side <= {prep['max_side']} px, JPEG quality {prep.get('jpeg_quality')}, metadata "
               f"{'kept' if prep.get('keep_metadata') else 'stripped'}, {body}")
    return (f"Sent as `batchcap run` sends them: {img.get('bytes_total', 0) / 1e6:.1f} MB on disk -> "
            f"{img['bytes_sent_total'] / 1e6:.1f} MB of image data ({img.get('prepared', 0)} prepared, "
            f"{img.get('passed_as_is', 0)} as they were; {how}).")


def render_results(result: BenchResult) -> str:
    """The verdict and the results tables: what the command prints at the end."""
    out = [result.verdict, ""]
    modes = [m for m in ("closed", "open") if any(r.stats.mode == m for t in result.targets for r in t.steps)]
    for mode in modes:
        out.append(
            "Closed loop (N requests in flight; each sends its next image when the last answered):"
            if mode == "closed"
            else "Open loop (Poisson arrivals at a fixed rate; latency from the scheduled send time):"
        )
        out += [*_table(result, mode), ""]
    if not modes:
        out.append("No step ran: see the notes in bench.md.")
    return "\n".join(out).rstrip() + "\n"


def _target_line(t: TargetResult, slo: float) -> str:
    price = "free" if t.price_per_hour == 0 else f"${t.price_per_hour:.2f}/h" if t.price_per_hour is not None \
        else f"billed by the token: {t.pricing}" if t.pricing is not None else "no price given"
    bits = [f"**{t.name}**: `{t.description}` ({price}; token: {t.token_source})"]
    unit = "concurrency" if any(r.stats.mode == "closed" for r in t.steps) else "arrival rate"
    c = t.cold_start
    if c is not None:
        errs = describe_errors(c.errors)
        if c.ok and c.seconds is not None:
            bits.append(f"first caption {c.seconds:.2f} s after the first request ({_n(c.attempts, 'request')}"
                        + (f": {errs}" if errs else "") + ")")
        else:
            bits.append(f"no caption during the cold-start probe ({_n(c.attempts, 'request')}"
                        + (f": {errs}" if errs else "") + ")")
    k = t.knee
    if k is not None and k.latency is not None:
        where = f"concurrency {k.level:g}" if k.mode == "closed" else f"{k.level:g} arrivals/s"
        cost = f", ${k.cost_per_1000:.4f} per 1,000 images" if k.cost_per_1000 else ""
        bits.append(f"knee at {where}: {k.images_per_s:.1f} images/s, p95 {k.latency.p95:.3f} s{cost}")
    elif t.steps:
        bits.append(f"no step kept p95 within {slo:g} s")
    th = t.throttle
    if th.throttled:
        bits.append(
            f"rate limited (429) from {unit} {th.first_throttled_level:g} on; "
            f"{_f(th.images_per_hour_unthrottled, ',.0f')} images/hour sustained before being rate limited, "
            f"{_f(th.images_per_hour_throttled, ',.0f')} images/hour at best while throttled"
        )
    elif t.price_per_hour == 0 and th.images_per_hour_unthrottled:
        bits.append(f"never rate limited; up to {th.images_per_hour_unthrottled:,.0f} images/hour")
    line = "- " + "; ".join(bits) + "."
    for note in t.notes:
        line += f"\n  - note: {note}"
    return line


def _n(count: int, noun: str) -> str:
    return plural(count, noun)


def _count(value: Any, noun: str) -> str:
    """``plural`` for a count read back from bench.json (an unknown one shows as ``?``)."""
    return plural(value, noun) if isinstance(value, int) and not isinstance(value, bool) else f"? {noun}s"


def _warmup_table(result: BenchResult) -> list[str]:
    lines = ["| target | mode | level | requests | ok | p50 s | max s | errors |", "|---|---|--:|--:|--:|--:|--:|---|"]
    for t in result.targets:
        for rec in t.steps:
            w = rec.stats.warmup
            if not w.requests:
                continue
            errs = describe_errors(w.errors) or "–"
            lines.append(
                f"| {t.name} | {rec.stats.mode} | {rec.stats.level:g} | {w.requests} | {w.ok} | "
                f"{_f(w.latency.p50 if w.latency else None)} | {_f(w.latency.max if w.latency else None)} | {errs} |"
            )
    return lines if len(lines) > 2 else []


def render_markdown(result: BenchResult, *, plot_name: str | None = None, plot_note: str | None = None) -> str:
    """``bench.md``: verdict, picture, tables, per-target facts, warm-up, and how it was measured."""
    cfg = result.config
    v, m = result.versions, result.machine
    out = ["# batchcap bench", "", "## Verdict", "", result.verdict, ""]
    if plot_name:
        out += [f"![throughput and latency per target]({plot_name})", ""]
    elif plot_note:
        out += [f"_No plot: {plot_note}_", ""]
    out += ["## Results", "", render_results(result).split("\n", 2)[2].rstrip(), ""]
    out += ["## Targets", ""] + [_target_line(t, result.slo_s) for t in result.targets] + [""]
    warm = _warmup_table(result)
    if warm:
        out += ["## Warm-up (sent before each step, not in the results)", "", *warm, ""]
    img = result.images
    source = cfg.get("images_note") or f"`{img.get('dir')}`"
    out += [
        "## How this was measured",
        "",
        (f"- {_count(img.get('count'), 'image')} ({img.get('bytes_total', 0) / 1e6:.1f} MB, median "
        f"{img.get('bytes_median', 0) / 1e3:.0f} kB) from {source}, cycled; each target got the same bytes."),
        f"- {sent_line(img, cfg.get('prepare'))}",
        (f"- Per step: up to {_count(cfg.get('requests'), 'request')} or {cfg.get('duration_s')} s, after "
        f"{_count(cfg.get('warmup'), 'warm-up request')}. One HTTP attempt per request, no retries: errors are counted, not hidden. In closed "
        f"loop a worker rests after a 429 (Retry-After, else {cfg.get('throttle_pause_s')} s)."),
        (f"- Latency: from the scheduled send time to the answer, successes only; percentiles by numpy's linear "
        f"method. SLO: p95 <= {result.slo_s:g} s. Knee: among steps within the SLO, the lowest level within "
         f"5 % (or 1/sqrt(successes), if larger) of the best images/s."),
        ("- Cost per 1,000 images: billed by the hour (an Endpoint), price per hour / (images/s x 3600) x 1000, i.e. "
         "billed while busy; billed by the token (a router provider), 1,000 x the mean cost of the step's answers, "
         "each its measured usage at the price of the provider that served it."),
        f"- Started {result.started_at}, took {format_duration(result.elapsed_s)}"
        + (", interrupted (Ctrl-C): partial results" if result.stopped == "interrupted"
           else ", stopped early by --max-time" if result.stopped else "") + ".",
        (f"- batchcap {v.get('batchcap')} (commit {v.get('git_commit') or 'unknown'}), Python {v.get('python')}, "
        f"aiohttp {v.get('aiohttp')}, event loop {v.get('event_loop')}; {m.get('platform')}, "
        f"{m.get('cpu_count')} CPUs."),
        "",
    ]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------------------
# Plot.

_PERCENTILES: tuple[tuple[str, Any, str], ...] = (("p50", "-", "o"), ("p95", "--", "s"), ("p99", ":", "^"))


def write_plot(result: BenchResult, path: Path) -> str | None:
    """Draw throughput, latency and failures per level for each target. Returns why not, or None when drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: pip install 'batchcap[plot]'"
    modes = [m for m in ("closed", "open") if any(r.stats.mode == m for t in result.targets for r in t.steps)]
    if not modes:
        return "no step ran, nothing to plot"
    fig, axes = plt.subplots(len(modes), 3, figsize=(16, 5.0 * len(modes)), squeeze=False, layout="constrained")
    for row, mode in enumerate(modes):
        _plot_row(list(axes[row]), result, mode)
    names = " vs ".join(t.name for t in result.targets)
    fig.suptitle(f"batchcap bench: {names} on {_count(result.images.get('count'), 'image')} "
                 f"(★ knee = lowest level reaching the best images/s with p95 ≤ {result.slo_s:g} s)", fontsize=13)
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return None


def _plot_row(axes: list[Any], result: BenchResult, mode: str) -> None:
    """One row of three panels (throughput, latency, failures) for one loop mode."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator

    ax_tp, ax_lat, ax_err = axes
    closed = mode == "closed"
    loop = "closed loop" if closed else "open loop"
    levels = sorted({r.stats.level for t in result.targets for r in t.steps if r.stats.mode == mode})
    rates: list[float] = []
    for n, t in enumerate(result.targets):
        colour = plt.get_cmap("tab10")(n % 10)
        steps = [r.stats for r in t.steps if r.stats.mode == mode]
        if not steps:
            continue
        xs = [s.level for s in steps]
        rates += [s.images_per_s for s in steps if s.images_per_s > 0]
        price = f" ({billed(t)})" if billed(t) != "–" else ""
        ax_tp.plot(xs, [s.images_per_s for s in steps], "-o", color=colour, lw=2, label=t.name + price)
        k = t.knee
        if k is not None and k.mode == mode:
            cost = f", ${k.cost_per_1000:.4f}/1k img" if k.cost_per_1000 else ""
            at_right = k.level == levels[-1]
            ax_tp.plot([k.level], [k.images_per_s], "*", ms=20, color=colour, mec="black", zorder=5)
            ax_tp.annotate(f"knee {k.level:g}: {k.images_per_s:.1f} img/s{cost}", (k.level, k.images_per_s),
                           textcoords="offset points", xytext=(-12 if at_right else 12, 10),
                           ha="right" if at_right else "left", fontsize=9, color=colour, fontweight="bold")
        for name, style, marker in _PERCENTILES:
            pts = [(s.level, getattr(s.latency, name)) for s in steps if s.latency is not None]
            if pts:
                ax_lat.plot(*zip(*pts, strict=True), linestyle=style, marker=marker, color=colour, ms=5, lw=1.6)
        failed = [100.0 * s.failed / s.requests if s.requests else 0.0 for s in steps]
        kinds = {ERROR_LABELS[k]: sum(s.errors.get(k, 0) for s in steps) for k in ERROR_KINDS}
        seen = ", ".join(f"{count}x {name}" for name, count in kinds.items() if count) or "no errors"
        ax_err.plot(xs, failed, "-o", color=colour, lw=2, label=f"{t.name}: {seen}")
    if not closed and levels:
        ax_tp.plot(levels, levels, color="grey", lw=1, ls="--", label="offered load (nominal)")
        rates += levels
    if rates and max(rates) / min(rates) > 20:  # targets an order of magnitude apart: linear would flatten one
        ax_tp.set_yscale("log")
        ax_tp.set_ylim(min(rates) / 1.8, max(rates) * 2.2)
        ax_tp.set_ylabel("successful images / s (log scale)")
    else:
        ax_tp.set_ylim(0, max(rates, default=1.0) * 1.25)
        ax_tp.set_ylabel("successful images / s")
    ax_tp.set_title(f"Throughput ({loop})")
    ax_tp.legend(title="target (price)", loc="best", fontsize=9)

    slo = result.slo_s
    ax_lat.set_yscale("log")
    low, high = ax_lat.get_ylim()
    ax_lat.set_ylim(min(low, slo / 2), max(high, slo * 2.5))
    ax_lat.axhline(slo, color="crimson", lw=1.4, ls="-.")
    ax_lat.annotate(f"SLO: p95 ≤ {slo:g} s", (0.98, slo), xycoords=("axes fraction", "data"), ha="right",
                    textcoords="offset points", xytext=(0, 4), color="crimson", fontsize=9, fontweight="bold")
    ax_lat.legend(handles=[Line2D([], [], color="dimgrey", linestyle=st, marker=mk, label=nm)
                           for nm, st, mk in _PERCENTILES], title="percentile (colour = target)",
                  loc="center right", fontsize=9)
    ax_lat.set(title=f"Latency of successes ({'closed loop' if closed else 'open loop'})", ylabel="seconds (log scale)")

    ax_err.set(title=f"Failed requests ({'closed loop' if closed else 'open loop'})", ylabel="% of measured requests")
    ax_err.set_ylim(-3, 103)
    ax_err.legend(title="target: errors by kind", loc="best", fontsize=8)
    plain = FuncFormatter(lambda v, _pos: f"{v:g}")
    for ax in (ax_tp, ax_lat):
        if ax.get_yscale() == "log":  # 0.1, 0.2, 0.5, 1, 2 ... read faster than 10^-1
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_minor_locator(NullLocator())
            ax.yaxis.set_major_formatter(plain)
    xlabel = "concurrency (requests in flight)" if closed else "offered load (Poisson arrivals / s)"
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlim(levels[0] / 1.35, levels[-1] * 1.35)
        ax.xaxis.set_major_locator(FixedLocator(levels))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(plain)
        ax.set_xlabel(xlabel)
        ax.grid(True, which="major", alpha=0.3)


def write_reports(result: BenchResult, out_dir: Path, *, plot_format: str = "png") -> ReportPaths:
    """Write bench.json, the plot (when possible) and bench.md into ``out_dir`` (created if missing)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "bench.json"
    json_path.write_bytes(to_json(result))
    plot_path: Path | None = out_dir / f"bench.{plot_format}"
    assert plot_path is not None
    note = write_plot(result, plot_path)
    if note is not None:
        plot_path = None
    md_path = out_dir / "bench.md"
    md_path.write_text(render_markdown(result, plot_name=plot_path.name if plot_path else None, plot_note=note),
                       encoding="utf-8")
    return ReportPaths(json_path, md_path, plot_path, note)
