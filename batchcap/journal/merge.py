"""Join shard journals into one: exactly one line per image and task, the best record for it.

    stats = merge_journals(Path("captions.jsonl"), [Path("part-1.jsonl"), Path("part-2.jsonl")])
    # MergeStats(images=1200, ok=1195, errors=5, lines=1260, superseded=60, torn=0)

Which record wins for a (path, task) (tasks stay apart: an image's caption never replaces its tags): an ok
record over any error (an ok caption is never thrown away, the rule
``load_index`` follows), then the latest ``ts``, then the later line (parts in the order given, lines in file
order). Lines are copied byte for byte, never re-encoded.

Memory is bounded: inputs up to ``bucket_bytes`` (256 MiB) are merged in memory; larger ones are first split by a
hash of the path into buckets of about that size in a temporary folder beside ``out``, and each bucket is merged
on its own. The peak is about three times one bucket's winning lines. Output is sorted by path within a bucket
(fully sorted when there is one bucket).

The result is written to a temporary file, fsynced and renamed over ``out``: a reader sees the old file or the
new one. ``out`` may be one of the parts (folded in place); an existing ``out`` that is not among the parts is
refused rather than overwritten. The manifest (``out.manifest.json``) keeps each part's own manifest (config, counts) and adds the
merged counts. A part that a running batchcap holds (the journal's ``flock``) is refused, and every part is held
with a shared lock while the merge reads it, so no run can start writing one mid-merge.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from batchcap.errors import ConfigError, JournalError
from batchcap.journal.codec import decode_line, record_task
from batchcap.journal.fsio import manifest_path, write_json_atomic
from batchcap.journal.meta import MANIFEST_VERSION, read_manifest
from batchcap.journal.throughput import Invocation, Throughput
from batchcap.redact import shown
from batchcap.version import __version__

__all__ = ["MergeStats", "merge_journals"]

BUCKET_BYTES = 256 * 1024 * 1024
#: (path, task): one answer.
Answer = tuple[str, str]
_READ = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class MergeStats:
    """What a merge wrote (``images`` lines: ``ok`` + ``errors``) and what it read."""

    parts: int
    images: int
    ok: int
    errors: int
    lines: int  #: records read from all parts
    superseded: int  #: records dropped because a better one for the same path won
    torn: int  #: unfinished last lines skipped (a part whose run was killed mid-write)


@dataclass(slots=True)
class _Counts:
    lines: int = 0
    torn: int = 0


def merge_journals(out: Path, parts: Sequence[Path], *, bucket_bytes: int = BUCKET_BYTES) -> MergeStats:
    """Merge ``parts`` into ``out`` (which may be one of them). Raises ``ConfigError``/``JournalError``."""
    if not parts:
        raise ConfigError("merge needs at least one part journal: batchcap merge OUT.jsonl PART...")
    if bucket_bytes < 1:
        raise ValueError(f"bucket_bytes must be >= 1 (got {bucket_bytes})")
    with ExitStack() as stack:
        files = [stack.enter_context(_open_locked(p)) for p in parts]
        if out.exists() and not any(_same_file(out, p) for p in parts):
            raise ConfigError(
                f"{out} already exists; to fold it into the merge, list it among the parts too "
                f"(batchcap merge {out} {out} PART...), or move it aside"
            )
        try:
            out.parent.mkdir(parents=True, exist_ok=True)  # as every command's output folder is made
        except OSError as exc:
            raise ConfigError(f"cannot write {out}: cannot make its folder {out.parent} ({exc.strerror})") from None
        total = sum(os.fstat(f.fileno()).st_size for f in files)
        nbuckets = max(1, math.ceil(total / bucket_bytes))
        counts = [_Counts() for _ in files]
        tmp = out.with_name(f".{out.name}.{os.getpid()}.merge.tmp")
        try:
            with open(tmp, "wb") as sink:
                if nbuckets == 1:
                    ok, errors = _write_winners(sink, _records(files, parts, counts))
                else:
                    ok, errors = _merge_in_buckets(sink, files, parts, counts, nbuckets, out.parent)
                sink.flush()
                os.fsync(sink.fileno())
            os.replace(tmp, out)
        except OSError as exc:
            raise JournalError(f"cannot write {out}: {exc.strerror or exc}; free some space and merge again") from None
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        lines = sum(c.lines for c in counts)
        stats = MergeStats(
            parts=len(parts), images=ok + errors, ok=ok, errors=errors, lines=lines,
            superseded=lines - ok - errors, torn=sum(c.torn for c in counts),
        )
        _write_manifest(out, parts, counts, stats)
    return stats


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@contextmanager
def _open_locked(path: Path) -> Iterator[BinaryIO]:
    """Open a journal for reading under a shared ``flock``; a running batchcap holds it exclusively."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed in the finally below
    except FileNotFoundError:
        raise ConfigError(f"part {shown(path)} does not exist; check the path") from None
    except IsADirectoryError:
        raise ConfigError(f"part {path} is a folder; pass the journal files (*.jsonl)") from None
    except OSError as exc:
        raise JournalError(f"cannot read {path}: {exc.strerror}; check its permissions") from None
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JournalError(
                f"a running batchcap is writing {path}; wait for it to finish (or stop it), then merge"
            ) from None
        except OSError as exc:
            raise JournalError(f"cannot lock {path}: {exc.strerror}; merge from a local disk") from None
        yield f
    finally:
        f.close()  # releases the lock


def _lines(f: BinaryIO, path: Path, counts: _Counts) -> Iterator[tuple[Answer, bool, float, bytes]]:
    """((path, task), is_ok, ts, line-with-newline) per record; a torn last line is skipped, a bad one elsewhere
    raises."""
    rest = b""
    lineno = 0
    pending_bad = 0  # line number of an unparseable line, fatal unless it turns out to be the last
    while True:
        chunk = f.read(_READ)
        if not chunk:
            break
        pieces = chunk.split(b"\n")
        pieces[0] = rest + pieces[0]
        rest = pieces.pop()
        for raw in pieces:
            lineno += 1
            if not raw.strip():
                continue
            if pending_bad:
                raise _bad_line(path, pending_bad)
            try:
                obj = decode_line(raw)
            except ValueError:
                pending_bad = lineno
                continue
            counts.lines += 1
            yield _key(obj, raw + b"\n")
    if rest.strip():
        if pending_bad:
            raise _bad_line(path, pending_bad)
        try:
            obj = decode_line(rest)
        except ValueError:
            counts.torn += 1  # a write cut by a kill: that image is simply not done in this part
        else:
            counts.lines += 1
            yield _key(obj, rest + b"\n")
    elif pending_bad:
        counts.torn += 1  # the unparseable line was the last one: torn, not corrupt


def _key(obj: dict[str, Any], line: bytes) -> tuple[Answer, bool, float, bytes]:
    ts = obj.get("ts")
    return (obj["path"], record_task(obj)), obj["status"] == "ok", float(ts) if isinstance(ts, int | float) else 0.0, \
        line


def _bad_line(path: Path, lineno: int) -> JournalError:
    return JournalError(
        f"line {lineno} of {path.name} is not a batchcap record; only the last line may be torn: "
        f"fix or remove that line ({path}), then merge again"
    )


def _records(
    files: Sequence[BinaryIO], paths: Sequence[Path], counts: Sequence[_Counts]
) -> Iterator[tuple[Answer, bool, float, bytes]]:
    for f, path, c in zip(files, paths, counts, strict=True):
        yield from _lines(f, path, c)


def _write_winners(sink: BinaryIO, records: Iterator[tuple[Answer, bool, float, bytes]]) -> tuple[int, int]:
    """Keep the best record per (path, task) (ok, then latest ts, then later line); write them sorted."""
    best: dict[Answer, tuple[bool, float, bytes]] = {}
    for path, is_ok, ts, line in records:
        held = best.get(path)
        if held is None or (is_ok, ts) >= (held[0], held[1]):
            best[path] = (is_ok, ts, line)
    ok = 0
    batch: list[bytes] = []
    for path in sorted(best):
        is_ok, _, line = best[path]
        ok += is_ok
        batch.append(line)
        if len(batch) >= 4096:
            sink.write(b"".join(batch))
            batch.clear()
    sink.write(b"".join(batch))
    return ok, len(best) - ok


def _bucket_of(path: str, n: int) -> int:
    return int.from_bytes(hashlib.blake2b(path.encode("utf-8", "surrogatepass"), digest_size=8).digest()) % n


def _merge_in_buckets(
    sink: BinaryIO,
    files: Sequence[BinaryIO],
    paths: Sequence[Path],
    counts: Sequence[_Counts],
    nbuckets: int,
    near: Path,
) -> tuple[int, int]:
    """Split the records by path hash into ``nbuckets`` files (order kept), then merge each in memory."""
    ok = errors = 0
    with tempfile.TemporaryDirectory(prefix=".batchcap-merge-", dir=near) as tmpdir, ExitStack() as stack:
        names = [Path(tmpdir) / f"{i}.jsonl" for i in range(nbuckets)]
        buckets = [stack.enter_context(open(n, "wb")) for n in names]
        for (path, _), _, _, line in _records(files, paths, counts):
            buckets[_bucket_of(path, nbuckets)].write(line)
        for b in buckets:
            b.close()
        for name in names:
            with open(name, "rb", buffering=0) as f:
                got = _write_winners(sink, _lines(f, name, _Counts()))
            ok, errors = ok + got[0], errors + got[1]
            name.unlink()
    return ok, errors


def _write_manifest(out: Path, parts: Sequence[Path], counts: Sequence[_Counts], stats: MergeStats) -> None:
    """The merged manifest: merged counts, the parts' run counts summed, and each part's own manifest kept."""
    entries: list[dict[str, Any]] = []
    summed: dict[str, float] = {}
    runs: list[Invocation] = []
    for part, c in zip(parts, counts, strict=True):
        manifest = read_manifest(part)
        runs += Invocation.from_manifest(manifest)
        part_counts = manifest.get("counts") if isinstance(manifest, dict) else None
        if isinstance(part_counts, dict):
            for k, v in part_counts.items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    summed[k] = summed.get(k, 0) + v
        entries.append({"journal": os.path.abspath(part), "lines": c.lines, "torn": c.torn, "manifest": manifest})
    body: dict[str, Any] = {
        "tool": "batchcap",
        "manifest_version": MANIFEST_VERSION,
        "version": __version__,
        "journal": os.path.abspath(out),
        "state": "merged",
        "merged_at": time.time(),
        "counts": asdict(stats),
        "runs_counts": summed,
        "parts": entries,
        # the parts' runs, side by side: busy time is the union of their windows (batchcap.journal.throughput)
        "invocations": [inv.to_json() for inv in Invocation.fold(sorted(runs, key=lambda inv: inv.started_at))],
        "throughput": Throughput.of(runs).to_json(),
    }
    if (config := _common_config([e["manifest"] for e in entries])) is not None:
        body["config"] = config
        body["input_dir"] = config.get("input_dir")  # what export and report read, as in a run's manifest
    try:
        write_json_atomic(manifest_path(out), body)
    except OSError as exc:
        raise JournalError(f"merged {out}, but cannot write its manifest: {exc.strerror or exc}") from None


def _common_config(manifests: Sequence[Any]) -> dict[str, Any] | None:
    """The first part's config without its shard; ``input_dir`` only if every part captioned the same folder."""
    found = [m for m in manifests if isinstance(m, dict) and isinstance(m.get("config"), dict)]
    if not found:
        return None
    config = dict(found[0]["config"])
    config["shard"] = None
    folders = {str(m.get("input_dir") or m["config"].get("input_dir")) for m in found}
    config["input_dir"] = folders.pop() if len(folders) == 1 else None
    return config
