"""CPU per image of ``batchcap run`` against nginx's canned reply, for one or more source trees, alternated.

The small-file hot path (48 KB files, ``--concurrency fixed:64 --rate unlimited --no-dedupe --quiet``, zero
latency) is where batchcap's own per-image CPU is the whole cost. CPU is ``getrusage`` of the run's process
around ``cli.main`` (imports excluded), which is steadier than a wall rate on a shared machine; the collector's
own time per image is measured by ``gc.callbacks``. Trees are taken through ``PYTHONPATH`` and alternated
round by round, so a before/after pair shares its minutes::

    git worktree add --detach /tmp/before 75a5aee
    python benchmarks/bench_cpu.py --rounds 6 . /tmp/before
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from _util import CLIENT_CORE, MODEL, PY, Nginx, ensure_nginx, link_tree, make_distinct, pinned, warm

INNER = r"""
import gc, json, resource, sys, time
from batchcap.cli import main
gc_time = [0.0, 0.0, 0]
def _watch(phase, info):
    if phase == "start":
        gc_time[1] = time.perf_counter()
    else:
        gc_time[0] += time.perf_counter() - gc_time[1]
        gc_time[2] += 1
gc.callbacks.append(_watch)
r0 = resource.getrusage(resource.RUSAGE_SELF)
try:
    main(sys.argv[1:])
except SystemExit:
    pass
r1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
print(json.dumps({"cpu": cpu, "gc": gc_time[0], "collections": gc_time[2]}), file=sys.__stdout__)
"""


def one_run(tree: Path, images: Path, out: Path, url: str) -> dict[str, float]:
    for p in out.parent.glob(out.stem + "*"):
        p.unlink()
    argv = [PY, "-c", INNER, "run", str(images), "--out", str(out), "--model", MODEL, "--api-base", url,
            "--concurrency", "fixed:64", "--rate", "unlimited", "--no-dedupe", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(pinned(CLIENT_CORE, argv), capture_output=True, text=True, env=env, timeout=600,
                          cwd="/", check=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"{tree}: batchcap run failed:\n{done.stderr[-2000:]}")
    got: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trees", nargs="+", type=Path, help="source trees (their batchcap/ is imported)")
    ap.add_argument("--images", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--work", type=Path, default=Path("/tmp/batchcap-bench-cpu"))
    args = ap.parse_args()
    nginx = ensure_nginx()
    if nginx is None:
        sys.exit("bench_cpu: nginx is not installed and cannot be")
    args.work.mkdir(parents=True, exist_ok=True)
    sources = make_distinct(args.work / "src", 48)
    tree = args.work / f"tree{args.images}"
    if not tree.exists():
        link_tree(tree, sources, args.images)
    warm(sources)
    trees = [t.resolve() for t in args.trees]
    cpu: dict[Path, list[float]] = {t: [] for t in trees}
    gc_us: dict[Path, list[float]] = {t: [] for t in trees}
    with Nginx(nginx, args.work) as server:
        one_run(trees[0], tree, args.work / "out.jsonl", server.url)  # warm-up: page cache, nginx, pyc files
        for r in range(args.rounds):
            for t in trees:
                got = one_run(t, tree, args.work / "out.jsonl", server.url)
                cpu[t].append(got["cpu"] / args.images * 1e6)
                gc_us[t].append(got["gc"] / args.images * 1e6)
                print(f"round {r + 1}: {t}: {cpu[t][-1]:.0f} us/image CPU, collector {gc_us[t][-1]:.1f} us/image "
                      f"({got['collections']:.0f} collections)", file=sys.stderr)
    for t in trees:
        print(f"{t}: CPU per image median {statistics.median(cpu[t]):.0f} us "
              f"({', '.join(f'{v:.0f}' for v in sorted(cpu[t]))}); collector {statistics.median(gc_us[t]):.1f} us")


if __name__ == "__main__":
    main()
