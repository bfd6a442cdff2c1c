"""What it costs, known and capped (issue 18), as a user runs it: real servers on loopback, the real CLI.

* A server whose every answer costs a known amount, 300 images, concurrency 16, a cap that fits about half of
  them: the server billed <= the cap and >= 85% of it, exit 3 with the budget line; a rerun with a cap for
  everything finishes the rest, and every image was billed exactly once.
* Prices from ``/v1/models`` in the router's shape give the same costs as ``--token-price`` with the same numbers.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import orjson
import pytest
from aiohttp import web

from batchcap.cli import EXIT_ABORTED, EXIT_OK
from batchcap.config import RunConfig
from batchcap.emulator import EmulatorSettings, RunningEmulator
from batchcap.errors import ConfigError, RunAborted
from batchcap.flow.budget import TokenPrice
from batchcap.run import run
from batchcap.source.samples import generate

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
RawServer = Callable[[Handler], Awaitable[str]]
Emulator = Callable[[EmulatorSettings], Awaitable[RunningEmulator]]
MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
#: Every answer: 1,000 prompt and 20 completion tokens at $30 / $160 per million = $0.0332 an image.
PROMPT, COMPLETION, PRICE = 1000, 20, TokenPrice(30.0, 160.0)
EACH = PRICE.cost(PROMPT, COMPLETION)


def env() -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    base["HF_HOME"] = "/nonexistent-batchcap-test"
    return base


def records(out: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in out.read_bytes().splitlines()]


class Metered:
    """A router with one priced provider: every answer costs EACH, billed per image (by the image's bytes)."""

    def __init__(self) -> None:
        self.billed: Counter[str] = Counter()
        self.usd = 0.0
        self.in_flight = 0
        self.most_in_flight = 0
        self.rng = random.Random(5)

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.method == "GET" and request.path == "/v1/models":
            return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model", "providers": [
                {"provider": "novita", "status": "live", "pricing": {"input": PRICE.input, "output": PRICE.output}},
            ]}]})
        body = orjson.loads(await request.read())
        image = body["messages"][0]["content"][1]["image_url"]["url"]
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await anyio.sleep(self.rng.uniform(0.002, 0.03))  # answers come back out of order
        finally:
            self.in_flight -= 1
        self.billed[hashlib.sha256(image.encode()).hexdigest()] += 1
        self.usd += EACH
        return web.json_response(
            {"choices": [{"index": 0, "message": {"role": "assistant", "content": "a photo"}, "finish_reason": "stop"}],
             "usage": {"prompt_tokens": PROMPT, "completion_tokens": COMPLETION,
                       "total_tokens": PROMPT + COMPLETION}},
            headers={"x-inference-provider": "novita"})


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    generate(tmp_path / "img", 300, seed=18)
    return tmp_path / "img"


async def batchcap(*args: str) -> tuple[int, str]:
    with anyio.fail_after(120):
        result = await anyio.run_process([sys.executable, "-m", "batchcap", *args], env=env(), check=False)
    return result.returncode, result.stderr.decode()


async def test_max_cost_holds_at_concurrency_16_and_a_rerun_pays_only_for_the_rest(
    raw_server: RawServer, folder: Path, tmp_path: Path
) -> None:
    server = Metered()
    url = (await raw_server(server)).rstrip("/")
    out = tmp_path / "captions.jsonl"
    run_args = ["run", str(folder), "--out", str(out), "--api", "openai", "--base-url", url + "/v1",
                "--model", MODEL, "--concurrency", "16", "--quiet"]
    cap = 5.00  # about 150 of the 300 images
    code, err = await batchcap(*run_args, "--max-cost", f"{cap:.2f}")
    assert code == EXIT_ABORTED, err
    assert server.usd <= cap  # what the server billed never passed the cap
    assert server.usd >= 0.85 * cap
    assert server.most_in_flight > 8  # the cap held under real concurrency, not by going one at a time
    line = re.search(r"budget reached: spent \$(\d+\.\d\d) of \$5\.00 \(([\d,]+) images\); run again with a higher "
                     r"--max-cost to continue", err)
    assert line is not None, err
    first = records(out)
    assert float(line[1]) == pytest.approx(server.usd, abs=0.005)
    assert int(line[2].replace(",", "")) == len(first) == sum(server.billed.values())
    assert all(r["status"] == "ok" and r["provider"] == "novita" for r in first)
    assert sum(float(r["cost_usd"]) for r in first) == pytest.approx(server.usd)  # type: ignore[arg-type]
    assert "Traceback" not in err

    code, err = await batchcap(*run_args, "--max-cost", "20")
    assert code == EXIT_OK, err
    assert len(server.billed) == 300
    assert set(server.billed.values()) == {1}
    done = records(out)
    assert len({r["path"] for r in done}) == len(done) == 300
    manifest = orjson.loads((tmp_path / "captions.manifest.json").read_bytes())
    spend = manifest["spend"]
    assert spend["job_usd"] == pytest.approx(server.usd)
    assert spend["earlier_usd"] == pytest.approx(sum(float(r["cost_usd"]) for r in first))  # type: ignore[arg-type]
    assert spend["by_provider"]["novita"]["images"] == 300 - len(first)
    assert spend["run"]["per_1000_images_usd"] == pytest.approx(1000 * EACH)
    assert spend["prices"][f"openai:{MODEL}@{url.removeprefix('http://')}"]["by_provider"] == {
        "novita": {"input": PRICE.input, "output": PRICE.output}}


async def test_max_images_caps_by_count_for_the_whole_job(raw_server: RawServer, folder: Path, tmp_path: Path) -> None:
    server = Metered()
    url = (await raw_server(server)).rstrip("/")
    out = tmp_path / "captions.jsonl"
    cfg = RunConfig.build(input_dir=folder, out=out, api="openai", base_url=url + "/v1", model=MODEL, concurrency=16,
                    max_images=100).validate()
    with anyio.fail_after(60), pytest.raises(RunAborted, match=r"image limit reached: 100 images of --max-images "
                                                                r"100 done") as info:
        await run(cfg)
    assert info.value.kind == "budget"
    assert len(records(out)) == sum(server.billed.values()) == 100
    with anyio.fail_after(60), pytest.raises(RunAborted, match="image limit reached"):
        await run(cfg)  # the same cap again: the 100 already done count, nothing more is sent
    assert sum(server.billed.values()) == 100
    with anyio.fail_after(60):
        stats = await run(cfg.with_flat({"max_images": 300}).validate())
    assert stats.ok == 200
    assert len(server.billed) == 300
    assert set(server.billed.values()) == {1}


async def test_router_prices_and_token_price_give_the_same_costs(emulator: Emulator, tmp_path: Path) -> None:
    generate(tmp_path / "img", 40, seed=7)
    server = await emulator(EmulatorSettings())  # emu-fast serves by default at $0.25 / $1.00 per 1M tokens
    base = {"input_dir": tmp_path / "img", "api": "openai", "base_url": server.url + "/v1",
                "model": "Salesforce/blip-image-captioning-base", "concurrency": 8}
    notes: list[str] = []
    with anyio.fail_after(60):
        listed = await run(RunConfig.build(out=tmp_path / "listed.jsonl", **base).validate(),  # type: ignore[arg-type]
                           notes=notes.append)
        fixed = await run(RunConfig.build(out=tmp_path / "fixed.jsonl", token_price=TokenPrice(0.25, 1.0),  # type: ignore[arg-type]
                                    **base).validate())
    assert any("emu-fast $0.25 in / $1 out per 1M tokens" in n and "/v1/models" in n for n in notes)
    a = {r["path"]: r["cost_usd"] for r in records(tmp_path / "listed.jsonl")}
    b = {r["path"]: r["cost_usd"] for r in records(tmp_path / "fixed.jsonl")}
    assert len(a) == 40
    assert a == b
    assert listed.spend.usd == pytest.approx(fixed.spend.usd) == pytest.approx(server.log.billed_usd / 2)


async def test_a_provider_without_a_price_is_said_once_and_a_cap_refuses_to_start(
    emulator: Emulator, tmp_path: Path
) -> None:
    generate(tmp_path / "img", 12, seed=8)
    server = await emulator(EmulatorSettings())
    base = {"input_dir": tmp_path / "img", "out": tmp_path / "r.jsonl", "api": "openai", "base_url": server.url + "/v1",
                "model": "Salesforce/blip-image-captioning-base:emu-unpriced", "concurrency": 4}
    notes: list[str] = []
    with anyio.fail_after(60):
        stats = await run(RunConfig.build(**base).validate(), notes=notes.append)  # type: ignore[arg-type]
    assert stats.ok == 12
    assert [n for n in notes if "no price is known" in n] == notes[-1:]  # said once
    assert "--token-price" in notes[-1]
    recs = records(tmp_path / "r.jsonl")
    assert all(r["provider"] == "emu-unpriced" and "usage" in r and "cost_usd" not in r for r in recs)
    served = sum(1 for entry in server.log.entries if entry.kind == "chat")
    (tmp_path / "r.jsonl").unlink()
    with anyio.fail_after(60), pytest.raises(ConfigError, match=r"--max-cost 1 cannot be kept: no price is known"):
        await run(RunConfig.build(max_cost=1.0, **base).validate())  # type: ignore[arg-type]
    assert sum(1 for entry in server.log.entries if entry.kind == "chat") == served  # nothing was sent


async def test_an_endpoints_records_share_its_busy_time_and_the_cap_holds(
    emulator: Emulator, tmp_path: Path
) -> None:
    generate(tmp_path / "img", 60, seed=9)
    server = await emulator(EmulatorSettings(profile="endpoint", latency=0.02))
    per_hour = 360.0  # $0.10 a second
    cfg = RunConfig.build(input_dir=tmp_path / "img", out=tmp_path / "r.jsonl", endpoint=server.url, concurrency=4,
                    price_per_hour=(str(per_hour),), max_cost=0.08).validate()
    with anyio.fail_after(60), pytest.raises(RunAborted, match="budget reached") as info:
        await run(cfg)
    assert info.value.kind == "budget"
    recs = records(tmp_path / "r.jsonl")
    assert 0 < len(recs) < 60
    spent = sum(float(r["cost_usd"]) for r in recs)  # type: ignore[arg-type]
    assert spent <= 0.08
    ts = [float(r["ts"]) for r in recs]  # type: ignore[arg-type]
    assert spent == pytest.approx(per_hour / 3600 * (max(ts) - min(ts)), abs=0.02)  # the busy span, cut up


async def test_check_probe_10_estimates_the_runs_spend_within_15_percent(emulator: Emulator, folder: Path,
                                                                      tmp_path: Path) -> None:
    """The issue's third check: the estimate comes from measured usage (tokens, not guesses), with a range."""
    server = await emulator(EmulatorSettings())
    target = f"openai:Salesforce/blip-image-captioning-base@{server.url}/v1"
    with anyio.fail_after(60):
        proc = await anyio.run_process([sys.executable, "-m", "batchcap", "check", str(folder), "--target", target,
                                        "--probe", "10", "--json"], env=env(), check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    report = orjson.loads(proc.stdout)
    assert report["probe"]["ok"] == 10
    assert report["probe"]["usage"]["prompt_tokens"] > 0
    est = report["estimate"]
    assert est["cost_source"] == "probe usage"
    assert est["tokens"]["sample"] == 10
    assert est["cost_low"] <= est["cost"] <= est["cost_high"]
    probed = server.log.billed_usd
    with anyio.fail_after(60):
        stats = await run(RunConfig.build(input_dir=folder, out=tmp_path / "r.jsonl", api="openai",
                                    base_url=server.url + "/v1", model="Salesforce/blip-image-captioning-base",
                                    concurrency=16).validate())
    real = stats.spend.usd
    assert stats.ok == 300
    assert real == pytest.approx(server.log.billed_usd - probed)  # what the run recorded is what was billed
    assert abs(est["cost"] - real) <= 0.15 * real
    assert est["cost_low"] <= real <= est["cost_high"]
