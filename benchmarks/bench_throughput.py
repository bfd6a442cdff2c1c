"""End-to-end ``batchcap run`` against nginx's canned reply, as a ratio to the anchors sending the same bytes.

Rounds alternate the runs (bare asyncio, batchcap with progress, bare uvloop, batchcap --quiet) so each ratio
compares runs from the same minute; the reported ratio is the median of the per-round ratios. huggingface_hub's
``AsyncInferenceClient`` runs twice at the end (it is ~10x slower, so it is bounded by time, not count).
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
    Nginx,
    Result,
    ensure_nginx,
    link_tree,
    make_distinct,
    median,
    parse_summary,
    pinned,
    warm,
)

CONCURRENCY = 64


def run_batchcap(ctx: Ctx, tree: Path, url: str, out: Path, *, quiet: bool, expect: int) -> dict[str, float]:
    for p in (out, out.with_name(out.stem + ".manifest.json")):
        p.unlink(missing_ok=True)
    argv = [BATCHCAP, "run", str(tree), "--out", str(out), "--model", MODEL, "--api-base", url,
            "--concurrency", f"fixed:{CONCURRENCY}", "--rate", "unlimited",
            "--no-dedupe"]  # 48 distinct files hard-linked: dedupe would send 48 (the anchors send every file)
    if quiet:
        argv.append("--quiet")
    errfile = out.with_suffix(".stderr")
    started = time.perf_counter()
    with errfile.open("wb") as err:  # tqdm draws into this file: it still formats every refresh
        proc = subprocess.run(pinned(CLIENT_CORE, argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=err, timeout=300, env=ctx.env, check=False)
    wall = time.perf_counter() - started
    text = errfile.read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"batchcap run exited {proc.returncode}:\n{text[-2000:]}")
    got = parse_summary(text)
    if got["ok"] != expect:
        raise RuntimeError(f"batchcap captioned {got['ok']} of {expect} images:\n{text[-2000:]}")
    got["wall"] = wall
    got["wall_rate"] = expect / wall
    return got


def run_client(kind: str, url: str, sources: Path, *, count: int, loop: str = "asyncio",
               duration: float = 120.0, read_files: Path | None = None) -> dict[str, float]:
    argv = [PY, str(HERE / "clients.py"), kind, url, str(sources), "--count", str(count),
            "--concurrency", str(CONCURRENCY), "--loop", loop, "--duration", str(duration)]
    if read_files is not None:
        argv += ["--read-files", str(read_files)]
    proc = subprocess.run(pinned(CLIENT_CORE, argv), capture_output=True, text=True, timeout=duration + 120, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} client failed:\n{proc.stderr[-2000:]}")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    if got["errors"]:
        raise RuntimeError(f"{kind} client had {got['errors']} errors")
    return got


def keepalive_check(url: str, srcdir: Path, server: Nginx) -> str:
    """1,000 POSTs of ~50 KB on 64 keep-alive connections: every reply 200, connections reused."""
    before = len(server.log_lines())
    run_client("bare", url, srcdir, count=1000)
    lines = server.log_lines()[before:]
    conns = {line.split()[3] for line in lines}
    statuses = {line.split()[1] for line in lines}
    if len(lines) != 1000 or statuses != {"200"} or len(conns) > CONCURRENCY:
        raise RuntimeError(f"nginx keep-alive check failed: {len(lines)} logged, statuses {statuses}, "
                           f"{len(conns)} connections")
    return f"1000 POSTs on {len(conns)} connections, all 200"


def run(ctx: Ctx) -> list[Result]:
    quick = ctx.quick
    work = ctx.workdir
    nginx = ensure_nginx()
    names = ("run/bare-asyncio", "run/bare-asyncio (--quiet)", "run/bare-uvloop", "run/hfh")
    if nginx is None:
        return [Result("throughput", n, None, detail="skipped: nginx is not installed and cannot be") for n in names]
    total = 20_000 if quick else 30_000
    rounds = 3 if quick else 5
    sources = make_distinct(work / "src", 48)
    srcdir = work / "src"
    tree = work / f"tree{total}"
    link_tree(tree, sources, total)
    warm(sources)
    out = work / "throughput.jsonl"
    size_kb = sum(p.stat().st_size for p in sources) / len(sources) / 1024
    rows: dict[str, list[float]] = {k: [] for k in ("bare", "uvloop", "files", "run", "quiet", "hfh", "r_files",
                                                     "r_bare", "r_uvloop", "r_quiet_bare", "r_quiet_uvloop")}
    with Nginx(nginx, work) as server:
        check = keepalive_check(server.url, srcdir, server)
        print(f"bench: throughput: nginx {check}", file=sys.stderr)
        # Warm-up: connections, nginx, the page cache, the interpreters' own caches.
        run_client("bare", server.url, srcdir, count=3000, loop="uvloop")
        run_batchcap(ctx, tree, server.url, out, quiet=True, expect=total)
        for r in range(rounds):
            bare = run_client("bare", server.url, srcdir, count=total)["rate"]
            full = run_batchcap(ctx, tree, server.url, out, quiet=False, expect=total)["rate"]
            uv = run_client("bare", server.url, srcdir, count=total, loop="uvloop")["rate"]
            quiet = run_batchcap(ctx, tree, server.url, out, quiet=True, expect=total)["rate"]
            files = run_client("bare", server.url, srcdir, count=total, loop="uvloop", read_files=tree)["rate"]
            rows["files"].append(files)
            rows["r_files"].append(quiet / files)
            rows["bare"].append(bare)
            rows["run"].append(full)
            rows["uvloop"].append(uv)
            rows["quiet"].append(quiet)
            # Each batchcap run is paired with the anchor run next to it in time.
            rows["r_bare"].append(full / bare)
            rows["r_uvloop"].append(full / uv)
            rows["r_quiet_bare"].append(quiet / bare)
            rows["r_quiet_uvloop"].append(quiet / uv)
            print(f"bench: throughput round {r + 1}/{rounds}: bare asyncio {bare:.0f}, batchcap {full:.0f}, "
                  f"bare uvloop {uv:.0f}, batchcap --quiet {quiet:.0f}, bare uvloop reading the files {files:.0f} req/s", file=sys.stderr)
        hfh_runs = []
        for _ in range(2):
            hfh = run_client("hfh", server.url, srcdir, count=total, duration=4.0 if quick else 8.0)
            full = run_batchcap(ctx, tree, server.url, out, quiet=False, expect=total)["rate"]
            hfh_runs.append((hfh, full))
            print(f"bench: throughput hfh {hfh['rate']:.0f} req/s ({hfh['requests']} requests), "
                  f"batchcap {full:.0f}", file=sys.stderr)
    for p in out.parent.glob(out.stem + "*"):
        p.unlink()
    files = f"{total:,} files of ~{size_kb:.0f} KB (48 distinct, hard links), c={CONCURRENCY}, {rounds} rounds"
    med = {k: median(v) for k, v in rows.items() if v}
    hfh_rate = median([h["rate"] for h, _ in hfh_runs])
    hfh_ratio = median([f / h["rate"] for h, f in hfh_runs])
    return [
        Result("throughput", "run / bare asyncio", med["r_bare"], 1.0, unit="x",
               detail=f"batchcap {med['run']:.0f} img/s (progress on) vs bare asyncio {med['bare']:.0f} req/s; {files}",
               extra={"rounds": rows}),
        Result("throughput", "run --quiet / bare asyncio", med["r_quiet_bare"], 1.0, unit="x",
               detail=f"batchcap --quiet {med['quiet']:.0f} img/s"),
        Result("throughput", "run / bare uvloop", med["r_uvloop"], 0.8, unit="x",
               detail=f"bare uvloop {med['uvloop']:.0f} req/s"),
        Result("throughput", "run --quiet / bare uvloop", med["r_quiet_uvloop"], 0.8, unit="x"),
        Result("throughput", "run --quiet / bare uvloop reading the files", med["r_files"], None, unit="x",
               detail=f"the uvloop loop reading file i (open, read, close) per request: {med['files']:.0f} req/s; "
                      "the rest of the gap is scan, bookkeeping and journal"),
        Result("throughput", "run / huggingface_hub", hfh_ratio, 8.0, unit="x",
               detail=f"AsyncInferenceClient.image_to_text under Semaphore(64): {hfh_rate:.0f} req/s "
                      f"(huggingface_hub {hfh_runs[0][0].get('version')})"),
    ]

