"""``batchcap.run.run`` with the rate limiter's grants recorded: when each request was let go.

    python benchmarks/rate_probe.py INPUT_DIR OUT URL --rate 200 --burst 10 --concurrency 16

The same pipeline ``batchcap run`` drives (uvloop, one ClientSession), with ``RateLimiter`` swapped for a subclass
that notes ``time.monotonic()`` each time ``acquire()`` returns or ``try_acquire()`` grants (the no-wait path of an
unlimited bucket), i.e. just before the request is sent. Prints one
JSON line: ``{"ok": N, "grants": [...]}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import anyio

from batchcap.config import RunConfig
from batchcap.emulator import DEFAULT_MODEL_ID
from batchcap.flow.ratelimit import RateLimiter
from batchcap.run import assemble, pipeline

GRANTS: list[float] = []


class RecordingLimiter(RateLimiter):
    def try_acquire(self) -> bool:  # the pipeline's no-wait path (unlimited buckets only)
        if got := super().try_acquire():
            GRANTS.append(time.monotonic())
        return got

    async def acquire(self) -> float:
        waited = await super().acquire()
        GRANTS.append(time.monotonic())
        return waited


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("input_dir", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("url")
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--burst", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=16)
    a = p.parse_args()
    assemble.RateLimiter = RecordingLimiter  # type: ignore[misc]  # where a run's parts are made (issue 15)
    cfg = RunConfig.build(input_dir=a.input_dir, out=a.out, model=DEFAULT_MODEL_ID, api_base=a.url,
                          concurrency=a.concurrency,
                          rate=a.rate, burst=a.burst, dedupe="off").validate()  # hard-linked tree: send every file
    try:
        import uvloop  # noqa: F401
    except ImportError:
        options = {}
    else:
        options = {"use_uvloop": True}
    stats = anyio.run(lambda: pipeline.run(cfg), backend="asyncio", backend_options=options)
    print(json.dumps({"ok": stats.ok, "failed": stats.failed, "grants": GRANTS}))


if __name__ == "__main__":
    main()
