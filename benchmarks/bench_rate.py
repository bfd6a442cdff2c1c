"""Rate accuracy and Little's law, both against batchcap's own emulator (pinned to the other core).

* rate: ``--rate R --burst B`` over ~30 s of work against a zero-latency emulator. The achieved rate is the
  steady one from the server's admission times: the bucket starts full, so ``B`` requests go at once and the
  rest one every ``1/R``: ``(n - B) / (t_last - t_first)``. The burst check slides windows of several lengths
  ``w`` over the admission times and compares the busiest with ``B + R*w``.
* little: latency ``L`` fixed, concurrency ``c``, no rate limit: throughput / (c / L).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from _util import (
    BATCHCAP,
    CLIENT_CORE,
    HERE,
    MODEL,
    PY,
    Ctx,
    Emulator,
    Result,
    link_tree,
    make_distinct,
    parse_summary,
    pinned,
)

from batchcap.emulator.log import busiest


def batchcap(ctx: Ctx, tree: Path, url: str, out: Path, *flags: str, timeout: float) -> dict[str, float]:
    for p in (out, out.with_name(out.stem + ".manifest.json")):
        p.unlink(missing_ok=True)
    argv = [BATCHCAP, "run", str(tree), "--out", str(out), "--model", MODEL, "--api-base", url, "--quiet",
            "--no-dedupe", *flags]  # the tree is hard links of a few files: dedupe would send almost nothing
    proc = subprocess.run(pinned(CLIENT_CORE, argv), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, env=ctx.env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"batchcap run exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return parse_summary(proc.stderr)


def windows_check(times: list[float], rate: float, burst: int) -> tuple[float, float, str]:
    """(worst excess over B + R*w, at which w, the per-window detail)."""
    windows = (1 / rate, 5 / rate, 0.1, 1.0, 5.0)
    counts = {w: busiest(times, w) for w in windows}
    excess = {w: counts[w] - (burst + rate * w) for w in windows}
    worst = max(excess, key=lambda w: excess[w])
    detail = ", ".join(f"{w:g}s: {counts[w]} <= {burst + rate * w:g}" for w in windows)
    return excess[worst], worst, detail


def run_rate(ctx: Ctx) -> list[Result]:
    rate, burst = 200.0, 10
    seconds = 10 if ctx.quick else 30
    total = burst + int(rate * seconds)
    sources = make_distinct(ctx.workdir / "src", 48)
    tree = ctx.workdir / f"rate{total}"
    link_tree(tree, sources, total)
    out = ctx.workdir / "rate.jsonl"
    for p in (out, out.with_name(out.stem + ".manifest.json")):
        p.unlink(missing_ok=True)
    with Emulator(ctx.workdir) as emu:
        emu.warm_up(sources[0].read_bytes())
        argv = [PY, str(HERE / "rate_probe.py"), str(tree), str(out), emu.url, "--rate", f"{rate:g}",
                "--burst", str(burst), "--concurrency", "16"]
        proc = subprocess.run(pinned(CLIENT_CORE, argv), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=seconds * 3 + 60, env=ctx.env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"rate probe exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    sent = sorted(got["grants"])
    times = emu.times
    if len(times) != total or got["ok"] != total or len(sent) != total:
        raise RuntimeError(f"rate: server saw {len(times)}, {len(sent)} grants, {got['ok']} ok, of {total}")
    span = times[-1] - times[0]
    achieved = (len(times) - burst) / span
    client = (len(sent) - burst) / (sent[-1] - sent[0])
    error = achieved / rate - 1.0
    sent_excess, sent_w, sent_detail = windows_check(sent, rate, burst)
    seen_excess, seen_w, seen_detail = windows_check(times, rate, burst)
    return [
        Result("rate", f"|achieved / configured - 1| (R={rate:g}/s, B={burst})", 100 * abs(error), 1.0, "<=", "%",
               detail=f"{achieved:.3f}/s at the server over {span:.1f} s ({total} requests; steady rate "
                      f"(n - B) / span); {client:.3f}/s as sent"),
        Result("rate", "burst: busiest window - (B + R*w), as sent", sent_excess, 0.0, "<=", "req",
               detail=f"limiter grant times in the pipeline; worst at w={sent_w:g}s; {sent_detail}"),
        Result("rate", "burst: busiest window - (B + R*w), at the server", seen_excess, None, "<=", "req",
               detail=f"emulator admission times, incl. connection set-up skew of the first requests; "
                      f"worst at w={seen_w:g}s; {seen_detail}"),
    ]


def run_little(ctx: Ctx) -> list[Result]:
    latency, conc = 0.1, 32
    ideal = conc / latency
    seconds = 10 if ctx.quick else 20
    total = int(ideal * seconds)
    sources = make_distinct(ctx.workdir / "src", 48)
    tree = ctx.workdir / f"little{total}"
    link_tree(tree, sources, total)
    out = ctx.workdir / "little.jsonl"
    with Emulator(ctx.workdir, "--latency", f"{latency:g}") as emu:
        emu.warm_up(sources[0].read_bytes(), count=2)
        started = time.monotonic()
        got = batchcap(ctx, tree, emu.url, out, "--concurrency", str(conc), "--rate", "unlimited",
                       timeout=seconds * 3 + 60)
        wall = time.monotonic() - started
    times = emu.times
    steady = (len(times) - conc) / (times[-1] - times[0]) if len(times) > conc else 0.0
    return [
        Result("little", f"throughput / (c/L), c={conc}, L={latency:g}s", got["rate"] / ideal, 0.95, unit="x",
               detail=f"{got['rate']:.1f} img/s end to end (batchcap's own summary, {total} images, "
                      f"{got['elapsed']:.1f} s) vs {ideal:g} ideal; steady state at the server {steady:.1f}/s "
                      f"({steady / ideal:.3f}); process wall {wall:.1f} s"),
    ]


def run(ctx: Ctx) -> list[Result]:
    out = run_rate(ctx)
    print(f"bench: rate: {out[0].value:.3f}% off, burst excess {out[1].value:g}", file=sys.stderr)
    return out
