"""What every benchmark shares: core pinning, the nginx and emulator servers, image trees, RSS sampling.

Every server started here is stopped by its context manager, and every wait is bounded in time.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PY = sys.executable
#: The model id every benchmark asks for: the one the emulator serves by default (others are answered 404, as
#: the router answers them); nginx anchors answer any path alike.
MODEL = "Salesforce/blip-image-captioning-base"
BATCHCAP = str(Path(PY).with_name("batchcap"))
#: Server on one core, client on the other (a 2-core machine); a 1-core machine shares core 0.
NCPU = os.cpu_count() or 1
SERVER_CORE = "1" if NCPU > 1 else "0"
CLIENT_CORE = "0"


@dataclass
class Ctx:
    """What every benchmark gets: where to put files, quick or full, the environment for batchcap runs."""

    workdir: Path
    quick: bool
    env: dict[str, str]
    keep: bool = False


@dataclass
class Result:
    """One row of the table: ``value`` compared to ``goal`` with ``op`` (``>=`` or ``<=``)."""

    bench: str
    metric: str
    value: float | None
    goal: float | None = None
    op: str = ">="
    unit: str = ""
    detail: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "SKIP"
        if self.goal is None:
            return "info"
        ok = self.value >= self.goal if self.op == ">=" else self.value <= self.goal
        return "PASS" if ok else "MISS"


def pinned(core: str, argv: Sequence[str]) -> list[str]:
    """``argv`` under ``taskset -c core`` when taskset exists (it is in util-linux)."""
    if shutil.which("taskset"):
        return ["taskset", "-c", core, *argv]
    return list(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
    """Signal one process we started and wait for it (then SIGKILL it if it will not go)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return int(proc.returncode)


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


# ---------------------------------------------------------------------------------------------------------------
# nginx


def ensure_nginx() -> str | None:
    """The nginx binary, installing Debian's nginx-light once if it is missing; None (with a reason) if impossible."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        print("bench: nginx is missing and cannot be installed here (needs apt-get as root)", file=sys.stderr)
        return None
    print("bench: installing nginx-light (apt-get update && apt-get install nginx-light) ...", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "nginx-light"]):
        try:
            subprocess.run(cmd, env=env, check=True, timeout=300, stdout=subprocess.DEVNULL)
        except (subprocess.SubprocessError, OSError) as exc:
            print(f"bench: {' '.join(cmd)} failed: {exc}", file=sys.stderr)
            return None
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


class Nginx:
    """nginx from ``benchmarks/nginx.conf`` on a free port, pinned to the server core, as one process."""

    def __init__(self, binary: str, workdir: Path, *, access_log: bool = True) -> None:
        self.binary = binary
        self.prefix = workdir / "nginx"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.access_log = self.prefix / "access.log"
        self._log = access_log
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        shutil.rmtree(self.prefix, ignore_errors=True)
        self.prefix.mkdir(parents=True)
        conf = (HERE / "nginx.conf").read_text()
        log = f"{self.access_log} bench" if self._log else "off"
        conf = conf.replace("@PREFIX@", str(self.prefix)).replace("@PORT@", str(self.port))
        conf = conf.replace("@ACCESS_LOG@", log)
        (self.prefix / "nginx.conf").write_text(conf)
        argv = [self.binary, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf"),
                "-e", str(self.prefix / "error.log")]
        self.proc = subprocess.Popen(pinned(SERVER_CORE, argv), stdin=subprocess.DEVNULL)
        try:
            wait_port(self.port)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop(self.proc, signal.SIGQUIT)  # graceful: finishes the log
            self.proc = None

    def log_lines(self) -> list[str]:
        """The access log: ``$msec $status $request_length $connection $connection_requests`` per request."""
        if not self.access_log.exists():
            return []
        return [line for line in self.access_log.read_text().splitlines() if line]


# ---------------------------------------------------------------------------------------------------------------
# The emulator in a subprocess (benchmarks/emu_server.py) that dumps its request log when stopped.


class Emulator:
    """``batchcap``'s own emulator, pinned to the server core; ``.times`` holds its admission times after exit."""

    def __init__(self, workdir: Path, *flags: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dump = workdir / f"emulator-{self.port}.log"
        self.flags = flags
        self.proc: subprocess.Popen[bytes] | None = None
        self.times: list[float] = []  # time.monotonic() of each 200, as the emulator logged it (system-wide clock)
        self._skip = 0

    def __enter__(self) -> Self:
        argv = [PY, str(HERE / "emu_server.py"), "--port", str(self.port), "--dump", str(self.dump), *self.flags]
        self.proc = subprocess.Popen(pinned(SERVER_CORE, argv), stdin=subprocess.DEVNULL)
        try:
            wait_port(self.port, 20)
        except BaseException:
            self.__exit__()
            raise
        return self

    def warm_up(self, body: bytes, count: int = 20) -> None:
        """Send ``count`` requests first (imports, decoder and caches warm); ``times`` will leave them out."""
        import urllib.request

        for _ in range(count):
            req = urllib.request.Request(f"{self.url}/models/{MODEL}", data=body, method="POST",
                                         headers={"Content-Type": "image/jpeg"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                resp.read()
        self._skip += count

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop(self.proc, signal.SIGTERM, timeout=30)
            self.proc = None
            if self.dump.exists():
                self.times = sorted(float(x) for x in self.dump.read_text().split())[self._skip:]
                self.dump.unlink()


# ---------------------------------------------------------------------------------------------------------------
# Images


def make_distinct(dest: Path, count: int, *, seed: int = 7, target_kb: int = 50) -> list[Path]:
    """``count`` distinct random-noise JPEGs of about ``target_kb`` KB (noise does not compress)."""
    from PIL import Image

    dest.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    out = []
    for i in range(count):
        path = dest / f"src{i:03d}.jpg"
        out.append(path)
        if path.exists():
            continue
        side = 256
        pixels = rng.randbytes(side * side * 3)
        buf = io.BytesIO()
        Image.frombytes("RGB", (side, side), pixels).save(buf, "JPEG", quality=82 + (i % 5))
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(path)
    return out


def link_tree(dest: Path, sources: Sequence[Path], total: int, *, per_folder: int = 10_000) -> int:
    """``total`` hard links named ``dNNNN/fNNNNNNN.jpg``; file ``i`` is ``sources[i % len(sources)]``.

    ext4 allows 65,000 links per inode, so ``total / len(sources)`` must stay below that. Returns the count made
    (a tree already complete from an earlier call is reused).
    """
    if total / len(sources) > 64_000:
        raise ValueError(f"{total} links over {len(sources)} files exceeds ext4's 65,000 links per file")
    marker = dest / f".complete-{total}-{len(sources)}-{per_folder}"
    if marker.exists():
        return total
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    src = [os.fspath(s) for s in sources]
    k = len(src)
    link = os.link
    for start in range(0, total, per_folder):
        folder = os.path.join(dest, f"d{start // per_folder:04d}")
        os.mkdir(folder)
        for i in range(start, min(total, start + per_folder)):
            link(src[i % k], f"{folder}/f{i:07d}.jpg")
    marker.touch()
    return total


def tree_order(total: int, k: int) -> list[int]:
    """Which source each file of ``link_tree`` is, in the order batchcap scans it (folders and names sorted)."""
    return [i % k for i in range(total)]


def warm(paths: Sequence[Path]) -> None:
    for p in paths:
        p.read_bytes()


# ---------------------------------------------------------------------------------------------------------------
# Process watching


def rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def parse_summary(stderr: str) -> dict[str, float]:
    """The numbers of batchcap's summary line: ``batchcap: N ok, M errors, ... in T s (R img/s; ...``."""
    import re

    m = re.search(r"batchcap: (\d+) ok, (\d+) errors, (\d+) already done, in ([\d.]+) s \(([\d.]+) img/s", stderr)
    if not m:
        raise RuntimeError(f"no batchcap summary in its output:\n{stderr[-2000:]}")
    ok, err, skipped, elapsed, rate = m.groups()
    return {"ok": int(ok), "errors": int(err), "skipped": int(skipped), "elapsed": float(elapsed), "rate": float(rate)}


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    except (subprocess.SubprocessError, OSError):
        return "unknown"
    return out + ("+dirty" if dirty else "")


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    t = time.monotonic()
    try:
        yield
    finally:
        print(f"bench: {label} took {time.monotonic() - t:.1f} s", file=sys.stderr)
