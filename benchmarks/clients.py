"""The anchors batchcap is held to, each run as its own process (pinned by the caller) printing one JSON line.

    python benchmarks/clients.py bare --loop asyncio URL DIR --count 30000 --concurrency 64
    python benchmarks/clients.py hfh URL DIR --count 10000 --concurrency 64 --duration 10

``bare``: the least a Python client can do to send the files: the distinct file contents are read into memory
first, then ``concurrency`` coroutines share one iterator over the file sequence and POST each body with one
aiohttp ``ClientSession`` (connector limit = concurrency) and read the reply. No scan, no files, no journal.
File ``i`` of the tree is source ``i % k`` (see ``_util.link_tree``), so the same bytes go in the same order.

``bare --read-files TREE``: the same loop, but each body is read from file ``i`` of the tree (open, read, close,
blocking, on the event loop) instead of memory: what reading the files costs, with nothing else of batchcap.

``hfh``: huggingface_hub's ``AsyncInferenceClient(model=URL/models/MODEL).image_to_text(bytes)`` under an
``asyncio.Semaphore(concurrency)``, the way its docs suggest fanning out, on the same bodies.

Both stop at ``count`` requests or ``duration`` seconds, whichever comes first; the rate is requests / time from
the first send to the last answer (the session is made before the clock starts, as batchcap makes its own inside
its timed ``run``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

#: The emulator's served id (an nginx anchor answers any path alike).
MODEL = "Salesforce/blip-image-captioning-base"


def bodies(folder: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(folder.glob("src*.jpg"))]


def tree_path(tree: Path, i: int) -> str:
    """File ``i`` of ``_util.link_tree`` (10,000 per folder)."""
    return f"{tree}/d{i // 10_000:04d}/f{i:07d}.jpg"


async def bare(
    url: str, data: list[bytes], count: int, concurrency: int, duration: float, tree: Path | None = None
) -> dict[str, object]:
    import aiohttp

    k = len(data)
    headers = {"Content-Type": "image/jpeg"}
    errors = 0
    done = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        todo = iter(range(count))
        started = time.perf_counter()
        deadline = started + duration

        async def worker() -> None:
            nonlocal errors, done
            for i in todo:
                if tree is None:
                    body = data[i % k]
                else:
                    with open(tree_path(tree, i), "rb", buffering=0) as f:  # noqa: ASYNC230 - on purpose
                        body = f.read()
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                done += 1
                if time.perf_counter() > deadline:
                    return

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"requests": done, "errors": errors, "elapsed": elapsed, "rate": done / elapsed}


async def hfh(url: str, data: list[bytes], count: int, concurrency: int, duration: float) -> dict[str, object]:
    import huggingface_hub
    from huggingface_hub import AsyncInferenceClient

    k = len(data)
    client = AsyncInferenceClient(model=f"{url}/models/{MODEL}", token=None)
    sem = asyncio.Semaphore(concurrency)
    errors = 0
    done = 0
    started = time.perf_counter()
    deadline = started + duration

    async def one(i: int) -> None:
        nonlocal errors, done
        async with sem:
            if time.perf_counter() > deadline:
                return
            try:
                out = await client.image_to_text(data[i % k])
                if not out.generated_text:
                    errors += 1
            except Exception:  # noqa: BLE001 - counted, not raised: the rate is what is measured
                errors += 1
            done += 1

    # Tasks are created in slices so a huge --count does not create them all up front.
    for start in range(0, count, 4096):
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + 4096))))
        if time.perf_counter() > deadline:
            break
    elapsed = time.perf_counter() - started
    close = getattr(client, "close", None)
    if close is not None:
        await close()
    return {"requests": done, "errors": errors, "elapsed": elapsed, "rate": done / elapsed,
            "version": huggingface_hub.__version__}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=("bare", "hfh"))
    p.add_argument("url", help="server root, e.g. http://127.0.0.1:8080")
    p.add_argument("sources", type=Path, help="folder of the distinct src*.jpg files")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--duration", type=float, default=120.0, help="stop after this many seconds anyway")
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    p.add_argument("--read-files", type=Path, metavar="TREE", help="bare: read each body from the tree's file i")
    a = p.parse_args()
    data = bodies(a.sources)
    if not data:
        raise SystemExit(f"no src*.jpg in {a.sources}")
    url = f"{a.url}/models/{MODEL}" if a.kind == "bare" else a.url
    if a.kind == "bare":
        coro = bare(url, data, a.count, a.concurrency, a.duration, a.read_files)
    else:
        coro = hfh(url, data, a.count, a.concurrency, a.duration)
    if a.loop == "uvloop":
        import uvloop

        out = uvloop.run(coro)
    else:
        out = asyncio.run(coro)
    out["loop"] = a.loop
    print(json.dumps(out))


if __name__ == "__main__":
    main()
