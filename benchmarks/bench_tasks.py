"""Several tasks per image (issue 16): the image is read and prepared once, whatever the number of tasks.

Rows (one child interpreter per run, rounds interleaved, median of the per-round ratios):

* ``3 tasks / 1 task, CPU of batchcap run, 12 MP photos``: ``batchcap run`` (the CLI, ``--api openai`` against a
  zero-latency emulator pinned to the server core) over 12 MP grainy phone JPEGs (``bench_prepare``'s), once with
  one task and once with three (``--task`` x 3: three requests per image, back to back), each in a fresh journal.
  The value is the ratio of the CPU time (user + system, ``RUSAGE_CHILDREN``) of the batchcap process: what the
  two extra tasks cost on top of reading, hashing and preparing each photo once. Goal <= 1.15x. The requests
  sent are in the detail (3x).

    python benchmarks/bench_tasks.py          # this benchmark alone (~1 min)
    python benchmarks/run.py --only tasks
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import BATCHCAP, Ctx, Emulator, Result, parse_summary
from bench_prepare import make_photos

TASKS = ("caption=Write a short, factual one-sentence caption for this image.",
         "tags=List five tags for this {{ folder }} photo.",
         "detail=Describe the lighting and the colours.")


def _tree(ctx: Ctx, photos: list[Path], copies: int) -> Path:
    tree = ctx.workdir / "tasks" / "tree"
    if tree.exists():
        for old in tree.iterdir():
            old.unlink()
    tree.mkdir(parents=True, exist_ok=True)
    for c in range(copies):
        for p in photos:
            os.link(p, tree / f"c{c}-{p.name}")
    return tree


def _cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def one_run(ctx: Ctx, tree: Path, url: str, tasks: tuple[str, ...]) -> tuple[float, dict[str, float]]:
    """CPU seconds of one ``batchcap run`` child, and its summary numbers."""
    out = ctx.workdir / "tasks" / f"out-{len(tasks)}.jsonl"
    out.unlink(missing_ok=True)
    out.with_name(out.stem + ".manifest.json").unlink(missing_ok=True)
    argv = [BATCHCAP, "run", str(tree), "--out", str(out), "--api", "openai", "--base-url", f"{url}/v1",
            "--model", "x", "--rate", "unlimited", "--concurrency", "8", "--quiet", "--dedupe", "off"]
    for task in tasks:
        argv += ["--task", task]
    before = _cpu()
    proc = subprocess.run(argv, env=ctx.env, capture_output=True, text=True, timeout=600, check=False)
    cpu = _cpu() - before
    if proc.returncode != 0:
        raise RuntimeError(f"batchcap run exited {proc.returncode}: {proc.stderr[-1000:]}")
    return cpu, parse_summary(proc.stderr)


def run(ctx: Ctx) -> list[Result]:
    photos = make_photos(ctx.workdir / "prepare" / "photos", 6 if ctx.quick else 8, "grainy")
    copies = 2 if ctx.quick else 3
    tree = _tree(ctx, photos, copies)
    images = len(photos) * copies
    rounds = 2 if ctx.quick else 3
    ratios: list[float] = []
    one: list[float] = []
    three: list[float] = []
    sent = {1: 0.0, 3: 0.0}
    with Emulator(ctx.workdir) as emu:
        for _ in range(rounds):
            cpu1, s1 = one_run(ctx, tree, emu.url, TASKS[:1])
            cpu3, s3 = one_run(ctx, tree, emu.url, TASKS)
            if (s1["ok"], s3["ok"]) != (images, 3 * images):
                raise RuntimeError(f"expected {images} and {3 * images} answers, got {s1['ok']} and {s3['ok']}")
            sent = {1: s1["ok"], 3: s3["ok"]}
            one.append(cpu1)
            three.append(cpu3)
            ratios.append(cpu3 / cpu1)
    ratio = statistics.median(ratios)
    return [Result(
        "tasks", "3 tasks / 1 task, CPU of batchcap run, 12 MP photos", ratio, 1.15, "<=", "x",
        detail=f"{images} photos (~3.8 MB, prepared to <= 1024 px), {int(sent[1])} vs {int(sent[3])} answers; CPU "
               f"{statistics.median(one):.2f} s vs {statistics.median(three):.2f} s (median of {rounds} rounds: "
               f"{', '.join(f'{r:.3f}' for r in ratios)})",
    )]


if __name__ == "__main__":
    import tempfile

    from run import table  # type: ignore[import-not-found]

    with tempfile.TemporaryDirectory(prefix="batchcap-bench-tasks-") as tmp:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        print(table(run(Ctx(Path(tmp), quick="--quick" in sys.argv, env=env))))
