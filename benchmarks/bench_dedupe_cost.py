"""What default dedupe costs a run that has no copies: ``run --quiet`` vs ``run --quiet --no-dedupe``.

    cd benchmarks && ../.venv/bin/python bench_dedupe_cost.py [--count 4000] [--rounds 3]

nginx's canned reply (as in ``bench_throughput``), ``--concurrency 64 --rate unlimited``, a tree of ``count``
*distinct* ~48 KB noise JPEGs (so dedupe sends every file, and only its hashing shows). Rounds alternate
the two; img/s is batchcap's own summary; the ratio is the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from pathlib import Path

from _util import (
    BATCHCAP,
    CLIENT_CORE,
    MODEL,
    Nginx,
    ensure_nginx,
    make_distinct,
    parse_summary,
    pinned,
    warm,
)


def one(tree: Path, url: str, out: Path, *extra: str) -> float:
    for p in (out, out.with_name(out.stem + ".manifest.json")):
        p.unlink(missing_ok=True)
    argv = [BATCHCAP, "run", str(tree), "--out", str(out), "--model", MODEL, "--api-base", url, "--concurrency", "64",
            "--rate", "unlimited", "--quiet", *extra]
    proc = subprocess.run(pinned(CLIENT_CORE, argv), capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return parse_summary(proc.stderr)["rate"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    binary = ensure_nginx()
    if binary is None:
        raise SystemExit("nginx is not installed")
    with tempfile.TemporaryDirectory(prefix="batchcap-dedupe-cost-") as tmp:
        work = Path(tmp)
        sources = make_distinct(work / "tree", args.count)
        warm(sources)
        with Nginx(binary, work, access_log=False) as nginx:
            off, exact = [], []
            for _ in range(args.rounds):
                off.append(one(work / "tree", nginx.url, work / "off.jsonl", "--no-dedupe"))
                exact.append(one(work / "tree", nginx.url, work / "exact.jsonl"))
    ratios = [e / o for e, o in zip(exact, off, strict=True)]
    print(f"{args.count} distinct ~48 KB JPEGs, nginx canned reply, c=64, unlimited, --quiet, {args.rounds} rounds")
    print(f"  --no-dedupe:    median {statistics.median(off):,.0f} img/s ({', '.join(f'{x:,.0f}' for x in off)})")
    print(f"  dedupe exact:   median {statistics.median(exact):,.0f} img/s ({', '.join(f'{x:,.0f}' for x in exact)})")
    print(f"  exact / off:    median {statistics.median(ratios):.3f}x")


if __name__ == "__main__":
    main()
