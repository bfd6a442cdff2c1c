"""A run at an Inference Endpoint named by ``--endpoint-name``: woken first, put back to sleep after."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import anyio

from batchcap.aio import watch_signals
from batchcap.config import RunConfig
from batchcap.errors import ConfigError
from batchcap.progress import Progress
from batchcap.service.auth import Secret
from batchcap.service.endpoints import EndpointInfo, EndpointLifecycle, EndpointName, EndpointsAPI, OnProgress

from .pipeline import run
from .stats import RunStats

__all__ = ["run_with_endpoint"]


async def run_with_endpoint(
    cfg: RunConfig,
    *,
    token: Secret | None,
    progress: Progress | None = None,
    notes: OnProgress | None = None,
    handle_signals: bool = False,
    on_scan_done: Callable[[], None] | None = None,
    poll: float = 5.0,
) -> RunStats:
    """``run`` at the Endpoint ``cfg.target.endpoint_name`` names: woken first, put to sleep after (``after_run``).

    One signal watcher covers the whole of it (the wake, the run, the pause), so Ctrl-C or SIGTERM at any point
    ends the run as an interruption and the Endpoint still goes to sleep. ``notes`` hears the lifecycle lines.
    """
    target = cfg.target
    if not target.endpoint_name:
        raise ConfigError("run_with_endpoint needs --endpoint-name NAMESPACE/NAME")
    api = EndpointsAPI(target.endpoints_api, token=token)
    lifecycle = EndpointLifecycle(api, EndpointName.parse(target.endpoint_name), after=target.after_run,
                                  max_wait=cfg.limits.max_wait, poll=poll, progress=notes)
    stop = anyio.Event()
    wake_scope = anyio.CancelScope()

    def on_signal() -> None:
        stop.set()
        wake_scope.cancel()

    async with api, anyio.create_task_group() as tg:
        if handle_signals:
            tg.start_soon(watch_signals, on_signal)
        try:
            info: EndpointInfo | None = None
            with wake_scope:
                info = await lifecycle.wake()
            if info is None:  # interrupted while waking (and already put back to sleep by wake())
                stats = RunStats()
                stats.interrupted = True
                tg.cancel_scope.cancel()
                return stats
            stats = await run(replace(cfg, target=replace(target, endpoint=info.url, endpoint_name=None)), token=token, progress=progress, stop=stop,
                              on_scan_done=on_scan_done, notes=notes)
        except BaseException:
            await lifecycle.sleep(raise_errors=False)
            raise
        await lifecycle.sleep(raise_errors=True)
        tg.cancel_scope.cancel()
    return stats
