"""batchcap's emulator as a benchmark server: serve until SIGTERM, then write the admission time of every 200.

    python benchmarks/emu_server.py --port 8080 --dump times.txt --latency 0.1

The times are ``time.monotonic()`` (CLOCK_MONOTONIC, one clock for every process on the machine), one per line,
so the benchmark compares them with its own clock: rate over a span, the busiest window, time to first request.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from batchcap.emulator import EmulatorSettings, start_emulator


async def serve(settings: EmulatorSettings, port: int, dump: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = await start_emulator(settings, "127.0.0.1", port)
    try:
        await stop.wait()
    finally:
        times = [e.t for e in server.log.entries if e.status == 200]
        await server.close()
        tmp = dump.with_suffix(".tmp")
        tmp.write_text("".join(f"{t:.6f}\n" for t in times))
        tmp.replace(dump)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dump", type=Path, required=True)
    p.add_argument("--latency", type=float, default=0.0)
    a = p.parse_args()
    settings = EmulatorSettings(latency=a.latency, name="bench")
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(settings, a.port, a.dump))
    else:
        uvloop.run(serve(settings, a.port, a.dump))


if __name__ == "__main__":
    main()
