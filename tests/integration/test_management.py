"""The emulated management API over loopback: its JSON, its token rule, the gate, and the real huggingface_hub."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import anyio
import pytest

from batchcap.emulator import DEFAULT_TOKEN, EmulatorSettings, RunningEmulator
from batchcap.emulator.management import (
    ManagedEndpointSettings,
    RunningManagedEndpoint,
    start_managed_endpoint,
)

Emulator = Callable[[EmulatorSettings], Awaitable[RunningEmulator]]
AUTH = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}


@pytest.fixture
async def managed(emulator: Emulator) -> AsyncIterator[RunningManagedEndpoint]:
    model = await emulator(EmulatorSettings(auth="protected"))
    settings = ManagedEndpointSettings(pending_s=0.2, initializing_s=0.3)
    async with await start_managed_endpoint(settings, upstream=model.url) as m:
        yield m


async def call(method: str, url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.request(method, url, headers=headers or {}) as r:
        body = await r.json(content_type=None) if r.content_type == "application/json" else await r.text()
        return r.status, body


async def test_shape_states_token_and_gate(managed: RunningManagedEndpoint) -> None:
    ep = f"{managed.api_url}/endpoint/acme/captioner"
    assert (await call("GET", ep))[0] == 401
    assert (await call("GET", ep, {"Authorization": "Bearer wrong"}))[0] == 401
    status, body = await call("GET", ep, AUTH)
    assert status == 200
    assert set(body) >= {"name", "type", "healthRoute", "compute", "status"}
    assert set(body["compute"]["scaling"]) == {"minReplica", "maxReplica", "scaleToZeroTimeout"}
    assert set(body["status"]) >= {"state", "url", "message", "readyReplica", "targetReplica"}
    assert body["status"]["state"] == "paused"
    assert body["status"]["url"] == managed.endpoint_url
    assert (await call("GET", managed.endpoint_url + "/health", AUTH))[0] == 503  # asleep: the gate refuses
    assert (await call("GET", f"{managed.api_url}/endpoint/acme/other", AUTH))[0] == 404
    status, body = await call("POST", ep + "/resume", AUTH)
    assert (status, body["status"]["state"]) == (200, "pending")
    with anyio.fail_after(5):
        while (await call("GET", ep, AUTH))[1]["status"]["state"] != "running":
            await anyio.sleep(0.05)
    status, body = await call("POST", ep + "/resume", AUTH)
    assert status == 400
    assert "already running" in body["error"]
    assert (await call("GET", managed.endpoint_url + "/health", AUTH)) == (200, "Ok")  # forwarded to the model
    assert (await call("GET", managed.endpoint_url + "/health"))[0] == 401  # the model's own auth still holds
    assert (await call("POST", ep + "/scale-to-zero", AUTH))[1]["status"]["state"] == "scaledToZero"
    assert (await call("GET", managed.endpoint_url + "/health", AUTH))[0] == 503  # ...which wakes it
    assert managed.state == "pending"
    assert (await call("POST", ep + "/pause", AUTH))[1]["status"]["state"] == "paused"
    log = managed.api_log
    assert [e.status for e in log if not e.auth_ok] == [401, 401]
    assert [e.auth_present for e in log[:2]] == [False, True]
    assert all(e.auth_ok for e in log[2:])


async def test_scale_up_timeout_header_holds_the_request(managed: RunningManagedEndpoint) -> None:
    managed.lifecycle.scale_to_zero()
    status, _ = await call("GET", managed.endpoint_url + "/health", {**AUTH, "X-Scale-Up-Timeout": "5"})
    assert status == 200
    assert [e.status for e in managed.gate_log] == [200]


async def test_huggingface_hub_resume_wait_works_against_it(
    managed: RunningManagedEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = pytest.importorskip("huggingface_hub")
    from huggingface_hub import constants

    # hf_api builds every management URL from this constant at call time.
    monkeypatch.setattr(constants, "INFERENCE_ENDPOINTS_ENDPOINT", managed.api_url)

    def resume_and_wait() -> Any:
        api = hub.HfApi(token=DEFAULT_TOKEN)
        endpoint = api.get_inference_endpoint("captioner", namespace="acme", token=DEFAULT_TOKEN)
        assert endpoint.status == "paused"
        return endpoint.resume().wait(timeout=20, refresh_every=0.1)  # type: ignore[arg-type]

    endpoint = await anyio.to_thread.run_sync(resume_and_wait)
    assert endpoint.status == "running"
    assert endpoint.url == managed.endpoint_url
    assert managed.state == "running"
    assert all(e.auth_ok for e in managed.api_log)
    assert managed.gate_log[-1].status == 200  # wait() ended on a healthy GET {url}/health

    def pause() -> str:
        return str(hub.HfApi().pause_inference_endpoint("captioner", namespace="acme", token=DEFAULT_TOKEN).status)

    assert await anyio.to_thread.run_sync(pause) == "paused"
