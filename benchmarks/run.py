"""batchcap's benchmark suite: every target a ratio to an anchor measured in the same run, then one table.

    python benchmarks/run.py                 # everything, <= 10 min (make bench)
    python benchmarks/run.py --quick         # shorter runs, <= 3 min
    python benchmarks/run.py --only rate,little
    python benchmarks/run.py --pythonpath /tmp/old-tree   # run batchcap from another source tree (before/after)

Benchmarks: throughput (batchcap run vs a bare aiohttp loop on asyncio and on uvloop, and vs huggingface_hub,
all against nginx), rate (achieved vs configured rate, burst), little (Little's-law efficiency against the
emulator), scale (RSS over a 1M-file folder, time to first request, 1M-line journal index load), adaptive
(adaptive concurrency vs fixed pools against the strict emulator: one-at-a-time, batching, roomy).
Server processes are pinned to core 1 and clients to core 0 (taskset); see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_adaptive
import bench_prepare
import bench_rate
import bench_scale
import bench_space
import bench_tasks
import bench_throughput
from _util import NCPU, Ctx, Result, git_commit

BENCHES: dict[str, Callable[[Ctx], list[Result]]] = {
    "throughput": bench_throughput.run,
    "rate": bench_rate.run,
    "little": bench_rate.run_little,
    "scale": bench_scale.run,
    "adaptive": bench_adaptive.run,
    "prepare": bench_prepare.run,
    "tasks": bench_tasks.run,
    "space": bench_space.run,
}


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "%":
        return f"{value:.2f}%"
    if unit in ("s", "MB"):
        return f"{value:.2f} {unit}"
    return f"{value:g} {unit}".strip()


def table(results: list[Result]) -> str:
    head = ("benchmark", "metric", "value", "goal", "")
    rows = [(r.bench, r.metric, fmt(r.value, r.unit),
             "-" if r.goal is None else f"{r.op} {fmt(r.goal, r.unit)}", r.verdict) for r in results]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip() for row in (head, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(results: list[Result]) -> str:
    out = ["| benchmark | metric | value | goal | | detail |", "|---|---|---|---|---|---|"]
    for r in results:
        goal = "-" if r.goal is None else f"{r.op} {fmt(r.goal, r.unit)}"
        out.append(f"| {r.bench} | {r.metric} | {fmt(r.value, r.unit)} | {goal} | {r.verdict} | {r.detail} |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="shorter runs (<= 3 min)")
    p.add_argument("--only", help=f"comma-separated subset of: {', '.join(BENCHES)}")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/batchcap-bench"),
                   help="scratch folder for image trees, journals and server logs (default: %(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder (and the 1M-file tree)")
    p.add_argument("--pythonpath", type=Path, help="run batchcap from this source tree (for before/after numbers)")
    p.add_argument("--json", type=Path, help="also write the results here as JSON")
    p.add_argument("--markdown", action="store_true", help="also print the table as markdown (for the README)")
    a = p.parse_args()
    names = list(BENCHES) if not a.only else [n.strip() for n in a.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    env = dict(os.environ)
    if a.pythonpath:
        env["PYTHONPATH"] = str(a.pythonpath.resolve())
    a.workdir.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(workdir=a.workdir, quick=a.quick, env=env, keep=a.keep)
    started = time.monotonic()
    results: list[Result] = []
    for name in names:
        t = time.monotonic()
        print(f"bench: {name} ...", file=sys.stderr)
        try:
            results += BENCHES[name](ctx)
        except Exception as exc:  # noqa: BLE001 - one failed benchmark must not hide the others
            traceback.print_exc()
            results.append(Result(name, "failed", None, detail=f"{type(exc).__name__}: {exc}"[:300]))
        print(f"bench: {name} done in {time.monotonic() - t:.0f} s", file=sys.stderr)
    elapsed = time.monotonic() - started
    if not a.keep:
        shutil.rmtree(a.workdir, ignore_errors=True)
    machine = f"{platform.node()} ({NCPU} cores, {platform.python_version()}, {platform.machine()})"
    header = (f"batchcap benchmarks: commit {git_commit()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
              f"{machine}, {'quick' if a.quick else 'full'}, {elapsed:.0f} s"
              + (f", batchcap from {a.pythonpath}" if a.pythonpath else ""))
    print()
    print(header)
    print(table(results))
    print()
    for r in results:
        if r.detail:
            print(f"  {r.bench} / {r.metric}: {r.detail}")
    if a.markdown:
        print()
        print(markdown(results))
    if a.json:
        a.json.write_text(json.dumps({"header": header, "results": [r.__dict__ | {"verdict": r.verdict}
                                                                    for r in results]}, indent=2, default=str))
    return 1 if any(r.verdict == "SKIP" and r.metric == "failed" for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
