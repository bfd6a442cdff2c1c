"""`bench --target NAME=endpoint:NAMESPACE/NAME@API`: the true cold start of a paused Endpoint, left paused after."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from batchcap.bench import BenchSettings, parse_target, resolve_targets, run_bench
from batchcap.emulator import DEFAULT_TOKEN, EmulatorSettings, RunningEmulator
from batchcap.emulator.management import ManagedEndpointSettings, start_managed_endpoint
from batchcap.errors import ConfigError, UsageError

Emulator = Callable[[EmulatorSettings], Awaitable[RunningEmulator]]


async def test_paused_endpoint_cold_start_is_measured_from_the_resume(
    emulator: Emulator, sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no-hf-home"))
    model = await emulator(EmulatorSettings(auth="protected", latency=0.01))
    token_file = tmp_path / "t"
    token_file.write_text(DEFAULT_TOKEN)
    settings = ManagedEndpointSettings(pending_s=0.3, initializing_s=0.4)
    async with await start_managed_endpoint(settings, upstream=model.url) as managed:
        targets = resolve_targets([f"ep=endpoint:acme/captioner@{managed.api_url}"], api_base="http://unused",
                                  token_files=[f"ep={token_file}"])
        bench = BenchSettings(targets=targets, images_dir=sample_dir, images=4, concurrency=(1,), requests=4,
                              duration=1.0, warmup=1, cold_start_timeout=10.0, max_time=20.0)
        with anyio.fail_after(30):
            result = await run_bench(bench)
        assert managed.state == "paused"  # found paused, left paused
        assert all(e.auth_ok for e in managed.api_log)
    target = result.targets[0]
    assert target.cold_start is not None
    assert target.cold_start.ok
    assert target.cold_start.seconds is not None
    assert target.cold_start.seconds >= 0.7  # pending + initializing: from the resume, not the first request
    assert any("paused -> running and healthy" in n for n in target.notes)
    assert target.steps


def test_endpoint_target_spelling() -> None:
    t = parse_target("ep=endpoint:acme/captioner")
    assert t.cfg.target.endpoint_name == "acme/captioner"
    assert t.cfg.target.endpoints_api == "https://api.endpoints.huggingface.cloud/v2"
    with pytest.raises(ConfigError, match="NAMESPACE/NAME"):
        parse_target("ep=endpoint:captioner")
    with pytest.raises(UsageError, match="MANAGEMENT_API"):
        parse_target("ep=endpoint:acme/c@ftp://x")
