"""The Endpoint lifecycle client against the emulated management API, with a real run in between."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import orjson
import pytest

from batchcap import RunConfig, Secret, run
from batchcap.emulator import DEFAULT_TOKEN, EmulatorSettings, RunningEmulator
from batchcap.emulator.management import (
    ManagedEndpointSettings,
    RunningManagedEndpoint,
    start_managed_endpoint,
)
from batchcap.errors import AuthError, ConfigError, ModelLoading, WrongTarget
from batchcap.service.endpoints import EndpointLifecycle, EndpointName, EndpointsAPI

Emulator = Callable[[EmulatorSettings], Awaitable[RunningEmulator]]
TOKEN = Secret(DEFAULT_TOKEN)
NAME = EndpointName.parse("acme/captioner")


@dataclass
class Setup:
    model: RunningEmulator
    managed: RunningManagedEndpoint


@pytest.fixture
async def setup(emulator: Emulator) -> AsyncIterator[Setup]:
    model = await emulator(EmulatorSettings(auth="protected", latency=0.01))
    async with await start_managed_endpoint(
        ManagedEndpointSettings(pending_s=0.2, initializing_s=0.3), upstream=model.url
    ) as managed:
        yield Setup(model, managed)


def cfg(url: str, folder: Path, out: Path) -> RunConfig:
    return RunConfig.build(input_dir=folder, out=out, endpoint=url, concurrency=4, rate=None, timeout=5.0,
                     quiet=True).validate()


async def test_paused_endpoint_is_woken_used_and_paused_again(setup: Setup, sample_dir: Path, tmp_path: Path) -> None:
    notes: list[str] = []
    out = tmp_path / "out.jsonl"
    api = EndpointsAPI(setup.managed.api_url, token=TOKEN)
    async with api, EndpointLifecycle(api, NAME, after="pause", poll=0.05, progress=notes.append) as info:
        assert setup.managed.state == "running"
        stats = await run(cfg(info.url or "", sample_dir, out), token=TOKEN)
    assert stats.ok == 20
    assert len(out.read_bytes().splitlines()) == 20
    assert setup.managed.state == "paused"
    running_at = setup.managed.lifecycle.transitions[-2]
    assert running_at[1] == "running"
    gate = setup.managed.gate_log
    assert all(e.state == "running" and e.forwarded for e in gate)  # nothing reached the gate before running
    assert sum(e.method == "POST" for e in gate) == 20
    assert setup.model.log.count(200) == 21  # 20 captions + the health check, all after the wake
    assert all(e.t >= running_at[0] for e in gate)
    log = setup.managed.api_log
    assert [e.action for e in log][:2] == ["get", "resume"]
    assert log[-1].action == "pause"
    assert all(e.auth_present and e.auth_ok for e in log)  # every management call carried the token
    assert any(n.startswith(("waking acme/captioner: pending", "waking acme/captioner: initializing"))
               for n in notes), notes
    assert notes[-1] == "Endpoint acme/captioner is paused"
    assert DEFAULT_TOKEN not in "".join(notes)


async def test_cancelled_run_still_pauses(setup: Setup, sample_dir: Path, tmp_path: Path) -> None:
    setup.managed.lifecycle.resume()
    async with EndpointsAPI(setup.managed.api_url, token=TOKEN) as api:
        with anyio.move_on_after(0.8):  # cancelled while waking or while captioning
            async with EndpointLifecycle(api, NAME, after="scale-to-zero", poll=0.05) as info:
                await run(cfg(info.url or "", sample_dir, tmp_path / "o.jsonl"), token=TOKEN)
                await anyio.sleep(10)
    assert setup.managed.state == "scaledToZero"


async def test_run_error_still_pauses_and_stays_first(setup: Setup) -> None:
    async with EndpointsAPI(setup.managed.api_url, token=TOKEN) as api:
        with pytest.raises(RuntimeError, match="boom"):
            async with EndpointLifecycle(api, NAME, after="pause", poll=0.05):
                raise RuntimeError("boom")
    assert setup.managed.state == "paused"
    assert setup.managed.api_log[-1].action == "pause"


async def test_wrong_token_unknown_name_failed_state_and_timeout(setup: Setup, emulator: Emulator) -> None:
    async with EndpointsAPI(setup.managed.api_url, token=Secret("hf_wrong")) as api:
        with pytest.raises(AuthError, match="refused the token") as caught:
            await api.get(NAME)
        assert "hf_wrong" not in str(caught.value)
    async with EndpointsAPI(setup.managed.api_url, token=TOKEN) as api:
        with pytest.raises(WrongTarget, match="no Endpoint acme/other"):
            await api.get(EndpointName("acme", "other"))
        with pytest.raises(ModelLoading, match="still"):
            async with EndpointLifecycle(api, NAME, after="pause", max_wait=0.1, poll=0.05):
                pass
        assert setup.managed.state == "paused"  # woken, never ready in time: put back to sleep
    model = await emulator(EmulatorSettings())
    m = await start_managed_endpoint(ManagedEndpointSettings(state="failed"), upstream=model.url)
    async with m, EndpointsAPI(m.api_url, token=TOKEN) as api:
        with pytest.raises(WrongTarget, match="is failed"):
            async with EndpointLifecycle(api, NAME, poll=0.05):
                pass


def test_names_and_settings_are_checked() -> None:
    assert EndpointName.parse(" acme/captioner ") == NAME
    for bad in ("captioner", "a/b/c", "/x", "acme/"):
        with pytest.raises(ConfigError, match="NAMESPACE/NAME"):
            EndpointName.parse(bad)
    with pytest.raises(ConfigError, match="needs a token"):
        EndpointsAPI("http://127.0.0.1:1/v2", token=None)
    with pytest.raises(ConfigError, match="http"):
        EndpointsAPI("ftp://x/v2", token=TOKEN)


async def test_the_token_goes_to_no_other_host(setup: Setup) -> None:
    async with EndpointsAPI(setup.managed.api_url, token=TOKEN) as api:
        with pytest.raises(ConfigError, match="refusing to send the token"):
            await api._request("GET", "http://127.0.0.2:9/health")
    assert orjson.dumps([e._asdict() for e in setup.managed.api_log]).find(DEFAULT_TOKEN.encode()) == -1
