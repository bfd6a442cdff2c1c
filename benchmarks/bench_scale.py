"""Scale: a 1,000,000-file folder (hard links to 48 small images) and a 1,000,000-line journal.

* RSS of ``batchcap run`` (default progress, drawn into a file) over the folder against a zero-latency
  emulator, sampled from /proc every 0.5 s for a bounded time, then SIGINT (it must exit 130, interrupted).
* Time to first request: the emulator's first admission time minus the time just before the spawn (both
  CLOCK_MONOTONIC), so interpreter start-up, imports, the journal index and the first scan batch all count.
* Resume index: ``batchcap.journal.load_index`` on a 1M-line journal (99% ok lines, 1% errors; each with its
  task, fingerprint and digest, issue 16), timed in a fresh interpreter, best of three (the file is in the page
  cache after the first), and its peak RSS; and the same journal as a token-billed run writes it (``usage``,
  ``provider`` and ``cost_usd`` on every ok line), whose spend the index sums (issue 18: a rerun counts what
  earlier runs spent).
"""

from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from _util import BATCHCAP, CLIENT_CORE, MODEL, PY, Ctx, Emulator, Result, link_tree, pinned, rss_kb, stop

FILES = 1_000_000


def small_sources(dest: Path, count: int = 48) -> list[Path]:
    """``count`` distinct small JPEGs (64x64, ~2 KB): the per-file cost dominates, as it would at scale."""
    import random

    from PIL import Image

    dest.mkdir(parents=True, exist_ok=True)
    rng = random.Random(11)
    out = []
    for i in range(count):
        path = dest / f"small{i:03d}.jpg"
        out.append(path)
        if not path.exists():
            buf = io.BytesIO()
            Image.frombytes("RGB", (64, 64), rng.randbytes(64 * 64 * 3)).save(buf, "JPEG", quality=70)
            path.write_bytes(buf.getvalue())
    return out


def run_folder(ctx: Ctx, tree: Path, seconds: float) -> list[Result]:
    out = ctx.workdir / "scale.jsonl"
    for p in (out, out.with_name(out.stem + ".manifest.json")):
        p.unlink(missing_ok=True)
    errfile = ctx.workdir / "scale.stderr"
    argv = [BATCHCAP, "run", str(tree), "--out", str(out), "--model", MODEL, "--concurrency", "64",
            "--rate", "unlimited", "--no-dedupe"]  # hard links of 48 files: dedupe would send 48
    peak = 0
    samples = []
    with Emulator(ctx.workdir) as emu:
        argv[argv.index("--model"):argv.index("--model")] = ["--api-base", emu.url]
        with errfile.open("wb") as err:
            spawned = time.monotonic()
            proc = subprocess.Popen(pinned(CLIENT_CORE, argv), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err, env=ctx.env)
            try:
                deadline = spawned + seconds
                while time.monotonic() < deadline and proc.poll() is None:
                    kb = rss_kb(proc.pid)
                    if kb:
                        samples.append(kb)
                        peak = max(peak, kb)
                    time.sleep(0.5)
                code = stop(proc, signal.SIGINT, timeout=60)
            finally:
                stop(proc, signal.SIGKILL)
    text = errfile.read_text(errors="replace")
    if code != 130:
        raise RuntimeError(f"batchcap run over {FILES:,} files exited {code}, not 130 (interrupted):\n{text[-2000:]}")
    done = sum(1 for _ in out.open("rb"))
    first = emu.times[0] - spawned if emu.times else float("inf")
    for p in (out, out.with_name(out.stem + ".manifest.json"), errfile):
        p.unlink(missing_ok=True)
    return [
        Result("scale", f"peak RSS over a {FILES:,}-file folder", peak / 1024, 150.0, "<=", "MB",
               detail=f"{len(samples)} samples every 0.5 s for {seconds:g} s; {done:,} images done "
                      f"({done / seconds:.0f}/s incl. start-up), then SIGINT -> exit 130"),
        Result("scale", "first request after spawn", first, 1.0, "<=", "s",
               detail="process spawn to the emulator's first admission (CLOCK_MONOTONIC on both sides)"),
    ]


def make_journal(path: Path, lines: int, *, costs: bool = False) -> None:
    """``lines`` records as the pipeline writes them: 99% ok, 1% errors (half retryable), each with its task,
    fingerprint (one settings part, a per-image part) and content digest (issue 16); ``costs``: as a chat
    target's run writes them (usage, provider, cost on every ok line)."""
    import hashlib

    from batchcap.journal import encode_record
    from batchcap.models import ErrorInfo, Record, Usage

    with path.open("wb") as f:
        chunk = []
        for i in range(lines):
            rel = f"d{i // 10_000:04d}/f{i:07d}.jpg"
            h = hashlib.blake2b(rel.encode(), digest_size=24).hexdigest()
            fp, digest = "3f9a01c2" + h[:16], h[16:48]
            if i % 100 == 99:
                err = ErrorInfo("ServerError", "HTTP 503: busy", 503, retryable=i % 200 == 199)
                rec = Record(rel, "error", error=err, attempts=3, target="hf:x", ts=1.7e9 + i, fingerprint=fp,
                             digest=digest)
            elif costs:
                usage = Usage(812 + i % 300, 17 + i % 13)
                rec = Record(rel, "ok", caption=f"a photograph number {i} of a benchmark", attempts=1,
                             latency_s=0.1234, bytes_sent=51234, target="openai:x@router", request_id=f"r-{i}",
                             ts=1.7e9 + i, usage=usage, provider="novita", fingerprint=fp, digest=digest,
                             cost_usd=round((usage.prompt_tokens * 0.2 + usage.completion_tokens * 0.8) / 1e6, 12))
            else:
                rec = Record(rel, "ok", caption=f"a photograph number {i} of a benchmark", attempts=1,
                             latency_s=0.1234, bytes_sent=51234, target="hf:x", request_id=f"r-{i}", ts=1.7e9 + i,
                             fingerprint=fp, digest=digest)
            chunk.append(encode_record(rec))
            if len(chunk) >= 10_000:
                f.write(b"".join(chunk))
                chunk.clear()
        f.write(b"".join(chunk))


_LOAD = """
import json, resource, sys, time
from pathlib import Path
from batchcap.journal import load_index
t = time.perf_counter()
index = load_index(Path(sys.argv[1]))
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "done": len(index), "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


#: The anchor, in a fresh interpreter as well: every line of the same file through Python once (read, split, a
#: byte test), the least any line-by-line reader does. Its ratio holds across a machine's fast and slow hours.
_ANCHOR = """
import json, sys, time
t = time.perf_counter()
n = 0
with open(sys.argv[1], "rb") as f:
    for line in f:
        n += line.startswith(b'{"path"')
print(json.dumps({"seconds": time.perf_counter() - t, "lines": n}))
"""


def run_journal(ctx: Ctx, lines: int = FILES) -> list[Result]:
    """The plain journal (its load time and peak RSS), then one with a cost on every ok line (the spend the index
    sums for a rerun); every line carries a task, fingerprint and digest."""
    out = []
    for costs in (False, True):
        path = ctx.workdir / "journal-1m.jsonl"
        make_journal(path, lines, costs=costs)
        size_mb = path.stat().st_size / 1e6
        runs, anchors = [], []
        for _ in range(3):  # alternated, so each load has an anchor from the same seconds
            for script, into in ((_LOAD, runs), (_ANCHOR, anchors)):
                proc = subprocess.run(pinned(CLIENT_CORE, [PY, "-c", script, str(path)]), capture_output=True,
                                      text=True, timeout=120, env=ctx.env, check=False)
                if proc.returncode != 0:
                    raise RuntimeError(f"load_index failed:\n{proc.stderr[-2000:]}")
                into.append(json.loads(proc.stdout))
        path.unlink()
        best = min(runs, key=lambda r: r["seconds"])
        anchor = min(a["seconds"] for a in anchors)
        what = f"load_index of a {lines:,}-line journal with fingerprints" + (
            " and usage/cost_usd on each ok line" if costs else "")
        out.append(Result("scale", what, best["seconds"], 2.0, "<=", "s",
                          detail=f"{size_mb:.0f} MB, {best['done']:,} done; best of 3 "
                                 f"({', '.join(format(r['seconds'], '.2f') for r in runs)} s); peak RSS "
                                 f"{best['maxrss_mb']:.0f} MB"))
        out.append(Result("scale", "load_index / reading the same lines in Python" + (" (with costs)" if costs else ""),
                          best["seconds"] / anchor, None, "", "x",
                          detail=f"best of 3 each, alternated: {best['seconds']:.2f} s vs {anchor:.2f} s"))
        if not costs:
            out.append(Result("scale", "load_index peak RSS, same journal", max(r["maxrss_mb"] for r in runs),
                              150.0, "<=", "MB", detail="ru_maxrss of the loading interpreter (imports included), "
                                                        "worst of 3"))
    return out


def run(ctx: Ctx) -> list[Result]:
    seconds = 20.0 if ctx.quick else 60.0
    tree = ctx.workdir / "tree1m"
    t = time.monotonic()
    link_tree(tree, small_sources(ctx.workdir / "small"), FILES)
    print(f"bench: scale: {FILES:,} hard links in {time.monotonic() - t:.1f} s", file=sys.stderr)
    try:
        results = run_folder(ctx, tree, seconds)
    finally:
        if not ctx.keep:
            t = time.monotonic()
            shutil.rmtree(tree, ignore_errors=True)
            print(f"bench: scale: tree removed in {time.monotonic() - t:.1f} s", file=sys.stderr)
    return results + run_journal(ctx)


if __name__ == "__main__":  # python benchmarks/bench_scale.py --journal: the index rows alone (~30 s)
    import os
    import tempfile

    if "--journal" not in sys.argv:
        sys.exit("usage: python benchmarks/bench_scale.py --journal   (the whole bench: benchmarks/run.py --only scale)")
    with tempfile.TemporaryDirectory(prefix="batchcap-bench-journal-") as tmp:
        for r in run_journal(Ctx(Path(tmp), quick=False, env=dict(os.environ))):
            goal = "" if r.goal is None else f"; goal {r.op} {r.goal}"
            print(f"{r.metric}: {r.value:.3f} {r.unit} ({r.verdict}{goal}) {r.detail}")
