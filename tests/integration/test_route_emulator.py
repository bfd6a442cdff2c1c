"""Several targets in one run: failover when one runs out of credits, spread across two with room."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import anyio
import orjson
import pytest
from aiohttp import web
from conftest import MODEL, RawServerFactory

from batchcap.config import RunConfig
from batchcap.errors import ConfigError, RunAborted
from batchcap.flow.retry import RetryPolicy
from batchcap.run import run
from batchcap.source.samples import generate

CREDITS = "You have exceeded your monthly included credits for Inference Providers."


@pytest.fixture
def images(tmp_path: Path) -> Path:
    generate(tmp_path / "img", 150, seed=5)
    return tmp_path / "img"


def counting(name: str, calls: Counter[str], *, credits: int | None = None, delay: float = 0.0):  # type: ignore[no-untyped-def]
    served = itertools.count()

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        await request.read()
        calls[name] += 1
        if delay:
            await anyio.sleep(delay)
        if credits is not None and next(served) >= credits:
            calls[name + " after 402"] += 1
            return web.json_response({"error": CREDITS}, status=402)
        return web.json_response([{"generated_text": f"caption by {name}"}])

    return handler


async def test_failover_moves_to_the_next_target_when_credits_run_out(
    raw_server: RawServerFactory, images: Path, tmp_path: Path
) -> None:
    calls: Counter[str] = Counter()
    free = await raw_server(counting("free", calls, credits=60))
    paid = await raw_server(counting("paid", calls))
    out = tmp_path / "r.jsonl"
    cfg = RunConfig.build(input_dir=images, out=out, rate=None, concurrency=4, targets=(
        f"free=hf:{MODEL}", f"paid={paid.rstrip('/')}/"), api_base=free.rstrip("/"),
        price_per_hour=("paid=0.60",)).validate()
    with anyio.fail_after(30):
        stats = await run(cfg, policy=RetryPolicy.immediate())
    assert (stats.ok, stats.failed) == (150, 0)
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    by = Counter(str(r["target"]).split("=", 1)[0] for r in records)
    assert by == {"free": 60, "paid": 90}  # every image ok, both targets named in the records
    assert calls["free after 402"] <= cfg.limits.ceiling  # the spent target gets almost no requests after its 402
    assert "free" in stats.drained
    assert "credits" in stats.drained["free"]
    paid_info = next(v for k, v in stats.targets.items() if k.startswith("paid="))
    assert paid_info["cost"] is not None


async def test_spread_uses_both_targets_and_the_faster_takes_more(
    raw_server: RawServerFactory, images: Path, tmp_path: Path
) -> None:
    calls: Counter[str] = Counter()
    slow = await raw_server(counting("slow", calls, delay=0.03))
    fast = await raw_server(counting("fast", calls, delay=0.005))
    cfg = RunConfig.build(input_dir=images, out=tmp_path / "r.jsonl", rate=None, concurrency=2, route="spread",
                    targets=(f"slow={slow}", f"fast={fast}")).validate()
    with anyio.fail_after(30):
        stats = await run(cfg)
    assert stats.ok == 150
    assert calls["fast"] > calls["slow"] > 0


async def test_the_run_stops_only_when_every_target_is_spent(
    raw_server: RawServerFactory, images: Path, tmp_path: Path
) -> None:
    calls: Counter[str] = Counter()
    a = await raw_server(counting("a", calls, credits=10))
    b = await raw_server(counting("b", calls, credits=10))
    cfg = RunConfig.build(input_dir=images, out=tmp_path / "r.jsonl", rate=None, concurrency=2,
                    targets=(f"a={a}", f"b={b}")).validate()
    with anyio.fail_after(30), pytest.raises(RunAborted, match="every target is spent") as info:
        await run(cfg, policy=RetryPolicy.immediate())
    assert info.value.kind == "credits"
    lines = (tmp_path / "r.jsonl").read_bytes().splitlines()
    assert len(lines) == 20
    assert all(orjson.loads(line)["status"] == "ok" for line in lines)


async def test_a_bad_target_spec_is_a_config_error_before_anything_starts(images: Path, tmp_path: Path) -> None:
    cfg = RunConfig.build(input_dir=images, out=tmp_path / "r.jsonl", targets=("nospec",)).validate()
    with pytest.raises(ConfigError, match="expected NAME=SPEC"):
        await run(cfg)
    assert not (tmp_path / "r.jsonl").exists()
