"""``batchcap check`` vs ``batchcap run``, per file, on the same tree: the goal is check >= 10x faster.

    .venv/bin/python benchmarks/bench_check.py [--count 2000] [--rounds 3]

The run captions the tree at ``--rate unlimited --concurrency fixed:32 --quiet --no-dedupe`` against the emulator (``batchcap
serve``, latency 0, its own process on the server core); check runs ``--json`` (exact dedupe, 2 readers) and,
once, ``--dedupe near``. Both are the real CLI as subprocesses, timed wall clock from spawn to exit; each
command's start-up (the same command on an empty folder, median of the rounds) is taken off before dividing
by the file count, so "per file" is per file. Rounds alternate run and check; the ratio is the median of
the per-round ratios (``run`` gets a fresh journal each round, so it always captions every file).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _util import BATCHCAP, CLIENT_CORE, SERVER_CORE, free_port, pinned, stop, wait_port

from batchcap.source.samples import generate


def timed(argv: list[str]) -> tuple[float, str]:
    started = time.monotonic()
    proc = subprocess.run(pinned(CLIENT_CORE, argv), capture_output=True, text=True, timeout=600, check=False)
    took = time.monotonic() - started
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{argv[:3]} exited {proc.returncode}: {proc.stderr[-500:]}")
    return took, proc.stderr


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="batchcap-bench-check-") as tmp:
        tree = Path(tmp) / "tree"
        generate(tree, args.count, seed=0)
        port = free_port()
        server = subprocess.Popen(pinned(SERVER_CORE, [BATCHCAP, "serve", "--port", str(port)]),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port)
            url = f"http://127.0.0.1:{port}/"
            empty = Path(tmp) / "empty"
            empty.mkdir()
            no_dedupe = ["--no-dedupe"] if _has_no_dedupe() else []
            # the fastest captioning: a fixed pool (an adaptive limit starts low against a local server)
            concurrency = "fixed:32" if "fixed:N" in _run_help() else "32"

            def run_argv(folder: Path, out: Path) -> list[str]:
                return [BATCHCAP, "run", str(folder), "--endpoint", url, "--out", str(out), "--rate", "unlimited",
                        "--concurrency", concurrency, "--quiet", *no_dedupe]

            run_base, check_base, runs, checks = [], [], [], []
            for r in range(args.rounds):
                run_base.append(timed(run_argv(empty, Path(tmp) / f"empty{r}.jsonl"))[0])
                check_base.append(timed([BATCHCAP, "check", str(empty), "--json"])[0])
                runs.append(timed(run_argv(tree, Path(tmp) / f"run{r}.jsonl"))[0])
                checks.append(timed([BATCHCAP, "check", str(tree), "--json"])[0])
            near_s = timed([BATCHCAP, "check", str(tree), "--json", "--dedupe", "near"])[0]
        finally:
            stop(server)
    n = args.count
    rb, cb = statistics.median(run_base), statistics.median(check_base)
    run_us = [(t - rb) / n * 1e6 for t in runs]
    check_us = [(t - cb) / n * 1e6 for t in checks]
    ratios = [a / b for a, b in zip(run_us, check_us, strict=True)]
    print(f"{n} files ({sys.platform}), {args.rounds} rounds; start-up: run {rb:.2f} s, check {cb:.2f} s")
    print(f"  run   (emulator, unlimited, {concurrency}): median {statistics.median(runs):.2f} s, "
          f"{statistics.median(run_us):.0f} us/file")
    print(f"  check --json (exact dedupe):       median {statistics.median(checks):.2f} s, "
          f"{statistics.median(check_us):.0f} us/file")
    print(f"  check --json --dedupe near:        {near_s:.2f} s, {(near_s - cb) / n * 1e6:.0f} us/file")
    print(f"  run / check per file: median {statistics.median(ratios):.1f}x "
          f"(rounds: {', '.join(f'{x:.1f}' for x in ratios)}; goal >= 10x)")


def _run_help() -> str:
    return subprocess.run([BATCHCAP, "run", "--help"], capture_output=True, text=True, timeout=60, check=False).stdout


def _has_no_dedupe() -> bool:
    return "--no-dedupe" in _run_help()


if __name__ == "__main__":
    main()
