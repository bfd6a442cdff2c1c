"""`batchcap run --endpoint-name ... --pause-after` as a user runs it: wake, caption, pause; SIGTERM still pauses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import orjson
import pytest

from batchcap.cli import EXIT_INTERRUPTED, EXIT_OK
from batchcap.emulator import DEFAULT_TOKEN, EmulatorSettings, RunningEmulator
from batchcap.emulator.management import (
    ManagedEndpointSettings,
    RunningManagedEndpoint,
    start_managed_endpoint,
)
from batchcap.source.samples import generate

Emulator = Callable[[EmulatorSettings], Awaitable[RunningEmulator]]


def env() -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    base.update(HF_TOKEN=DEFAULT_TOKEN, HF_HOME="/nonexistent-batchcap-test")
    return base


def command(managed: RunningManagedEndpoint, folder: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "batchcap", "run", str(folder), "--out", str(out), "--endpoint-name",
            "acme/captioner", "--endpoints-api", managed.api_url, "--pause-after", "--rate", "unlimited",
            "--concurrency", "2", "--quiet", *extra]


async def managed_endpoint(model: RunningEmulator, **kw: float) -> RunningManagedEndpoint:
    settings = ManagedEndpointSettings(pending_s=kw.get("pending_s", 0.2), initializing_s=0.3)
    return await start_managed_endpoint(settings, upstream=model.url)


@pytest.fixture
async def model(emulator: Emulator) -> RunningEmulator:
    return await emulator(EmulatorSettings(auth="protected", latency=0.02))


async def test_paused_endpoint_woken_captioned_paused(model: RunningEmulator, sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    async with await managed_endpoint(model) as managed:
        done = await anyio.run_process(command(managed, sample_dir, out), env=env(), check=False)
        assert done.returncode == EXIT_OK, done.stderr
        assert managed.state == "paused"
        running_at = next(t for t, s in managed.lifecycle.transitions if s == "running")
        assert all(e.t >= running_at and e.state == "running" for e in managed.gate_log)  # none before running
        assert all(e.auth_present and e.auth_ok for e in managed.api_log)
        assert [e.action for e in managed.api_log][-1] == "pause"
    lines = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert len(lines) == 20
    assert all(r["status"] == "ok" for r in lines)
    err = done.stderr.decode()
    assert "waking acme/captioner" in err
    assert "Endpoint acme/captioner is paused" in err
    assert DEFAULT_TOKEN not in err


async def test_sigterm_mid_run_still_pauses(model: RunningEmulator, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    generate(folder, 150, seed=2)
    out = tmp_path / "out.jsonl"
    async with await managed_endpoint(model) as managed:
        async with await anyio.open_process(command(managed, folder, out), env=env(),
                                            stderr=subprocess.DEVNULL) as proc:
            with anyio.fail_after(30):
                while len(out.read_bytes().splitlines()) < 10 if out.exists() else True:
                    await anyio.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            with anyio.fail_after(30):
                await proc.wait()
        assert proc.returncode == EXIT_INTERRUPTED
        assert managed.state == "paused"
        assert managed.api_log[-1].action == "pause"
    paths = Counter(orjson.loads(x)["path"] for x in out.read_bytes().splitlines())
    assert 10 <= len(paths) < 150
    assert max(paths.values()) == 1


async def test_sigterm_while_waking_still_pauses(model: RunningEmulator, sample_dir: Path, tmp_path: Path) -> None:
    async with await managed_endpoint(model, pending_s=60) as managed:
        async with await anyio.open_process(command(managed, sample_dir, tmp_path / "o.jsonl"), env=env(),
                                            stderr=subprocess.DEVNULL) as proc:
            with anyio.fail_after(30):  # resumed, and polling its state: the wait the signal must cut
                while not any(e.action == "resume" for e in managed.api_log):
                    await anyio.sleep(0.05)
                resumed = next(i for i, e in enumerate(managed.api_log) if e.action == "resume")
                while not any(e.method == "GET" for e in managed.api_log[resumed:]):
                    await anyio.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            with anyio.fail_after(30):
                await proc.wait()
        assert proc.returncode == EXIT_INTERRUPTED
        assert managed.state == "paused"
        assert model.log.count(200) == 0  # no caption request ever reached the model
