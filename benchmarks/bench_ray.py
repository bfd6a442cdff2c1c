"""Ray's cost and the job-wide rate: `batchcap run --ray local --workers 2` vs one `batchcap run`, same work.

    .venv/bin/python benchmarks/bench_ray.py            # ~1.5 min on 2 cores
    .venv/bin/python benchmarks/bench_ray.py --quick    # ~40 s

Against the emulator (its own process, latency L), the same folder, the same total ``--concurrency``:

* ``io``: latency-bound work (L = 0.05 s, concurrency 16, unlimited rate). Ratio Ray / one process of the
  summary's img/s (over the run itself) and of the wall time of the whole command (Ray's cluster start-up
  included). Rounds alternate, the ratio is the median of per-round ratios.
* ``rate``: a rate-bound job (``--rate 40 --burst 4``): achieved rate at the server for both, and the busiest
  1 s window at the server against rate + burst.

The model in the README (what N machines give against a rate limit) is computed from the measured per-worker
throughput here: ``min(N x T1, R)``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import free_port, median, parse_summary, stop, wait_port

from batchcap.emulator.log import busiest
from batchcap.source.samples import generate

HERE = Path(__file__).resolve().parent
MODEL = "Salesforce/blip-image-captioning-base"


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "RAY_ADDRESS")}
    e["HF_HOME"] = "/nonexistent-batchcap-bench"
    return e


class Emulator:
    def __init__(self, work: Path, latency: float) -> None:
        self.port = free_port()
        self.dump = work / f"times-{self.port}.txt"
        self.proc = subprocess.Popen([sys.executable, str(HERE / "emu_server.py"), "--port", str(self.port),
                                      "--dump", str(self.dump), "--latency", str(latency)], env=env())
        wait_port(self.port)

    def times(self) -> list[float]:
        stop(self.proc)
        return sorted(float(x) for x in self.dump.read_text().split())


def startup(stderr: str) -> float:
    import re

    m = re.search(r"Ray start-up ([\d.]+) s, stop and merge ([\d.]+) s", stderr)
    return float(m.group(1)) + float(m.group(2)) if m else 0.0


def batchcap(emu: Emulator, folder: Path, out: Path, *flags: str) -> tuple[dict[str, float], float]:
    argv = [sys.executable, "-m", "batchcap", "run", str(folder), "--out", str(out), "--model", MODEL,
            "--api-base", f"http://127.0.0.1:{emu.port}/hf-inference", "--quiet", *flags]
    t = time.monotonic()
    done = subprocess.run(argv, env=env(), capture_output=True, text=True, timeout=600, check=False)
    wall = time.monotonic() - t
    if done.returncode != 0:
        raise RuntimeError(f"batchcap exited {done.returncode}:\n{done.stderr[-3000:]}")
    summary = parse_summary(done.stderr)
    summary["startup"] = startup(done.stderr)
    if summary["startup"]:  # the rate over the work itself, Ray's cluster start and stop excluded
        summary["rate"] = (summary["ok"] + summary["errors"]) / (summary["elapsed"] - summary["startup"])
    return summary, wall


def prep_rounds(work: Path, folder: Path, rounds: int) -> None:
    """Preparation-bound: 12 MP phone photos (resized to 1024 px before upload), an instant emulator."""
    per_run: list[float] = []
    for r in range(rounds):
        results = {}
        for mode in ("one", "ray"):
            emu = Emulator(work, 0.0)
            flags = ["--concurrency", "16", "--rate", "unlimited", "--no-dedupe"]  # the copies are prepared too
            if mode == "ray":
                flags += ["--ray", "local", "--workers", "2"]
            try:
                summary, wall = batchcap(emu, folder, work / f"prep-{mode}-{r}.jsonl", *flags)
            finally:
                emu.times()
            results[mode] = summary["rate"]
            print(f"prep round {r + 1} {mode}: {summary['rate']:.1f} img/s over the work, {wall:.1f} s wall", flush=True)
        per_run.append(results["ray"] / results["one"])
    print(f"prep: Ray 2 workers / one process on 12 MP photos, img/s over the work: x{median(per_run):.2f} "
          f"(goal >= 0.85; median of {rounds} rounds)")


def io_rounds(work: Path, folder: Path, rounds: int) -> None:
    per_run: list[float] = []
    per_wall: list[float] = []
    for r in range(rounds):
        results = {}
        for mode in ("one", "ray"):
            emu = Emulator(work, 0.05)
            flags = ["--concurrency", "16", "--rate", "unlimited"]
            if mode == "ray":
                flags += ["--ray", "local", "--workers", "2"]
            try:
                summary, wall = batchcap(emu, folder, work / f"io-{mode}-{r}.jsonl", *flags)
            finally:
                emu.times()
            results[mode] = (summary["rate"], wall)
            print(f"io round {r + 1} {mode}: {summary['rate']:.1f} img/s over the work, {wall:.1f} s wall"
                  + (f" (Ray start + stop {summary['startup']:.1f} s)" if summary["startup"] else ""), flush=True)
        per_run.append(results["ray"][0] / results["one"][0])
        per_wall.append(results["one"][1] / results["ray"][1])
    print(f"io: Ray 2 workers / one process: img/s over the work (cluster start and stop excluded) x{median(per_run):.2f}, "
          f"whole command (wall, start-up included) x{median(per_wall):.2f}  (median of {rounds} rounds)")


def rate_job(work: Path, folder: Path, n: int) -> None:
    for mode in ("one", "ray"):
        emu = Emulator(work, 0.02)
        flags = ["--concurrency", "8", "--rate", "40", "--burst", "4"]
        if mode == "ray":
            flags += ["--ray", "local", "--workers", "2"]
        try:
            batchcap(emu, folder, work / f"rate-{mode}.jsonl", *flags)
        finally:
            times = emu.times()
        achieved = (len(times) - 4) / (times[-1] - times[0]) if len(times) > 5 else 0.0
        print(f"rate {mode}: {len(times)} requests, achieved {achieved:.1f}/s at the server (goal 40), busiest 1 s "
              f"window {busiest(times, 1.0)} (bound rate + burst = 44)", flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", choices=("io", "rate", "prep"), help="one part only")
    a = p.parse_args()
    n_io, rounds, n_rate = (1000, 2, 200) if a.quick else (3000, 3, 400)
    with tempfile.TemporaryDirectory(prefix="batchcap-bench-ray-") as tmp:
        work = Path(tmp)
        if a.only in (None, "prep"):
            from bench_prepare import make_photos

            distinct = make_photos(work / "distinct", 24 if a.quick else 48, "daylight")
            photos = work / "photos"
            for copy in range(8):  # hard links: 8 x the work without 8 x the disk (run with --no-dedupe)
                (photos / f"c{copy}").mkdir(parents=True)
                for src in distinct:
                    os.link(src, photos / f"c{copy}" / src.name)
            prep_rounds(work, photos, rounds)
        if a.only in (None, "io"):
            folder = work / "imgs"
            generate(folder, max(n_io, n_rate), seed=9)
            io_rounds(work, folder, rounds)
        if a.only in (None, "rate"):
            small = work / "imgs-rate"
            generate(small, n_rate, seed=10)
            rate_job(work, small, n_rate)


if __name__ == "__main__":
    main()
