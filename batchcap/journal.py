"""The JSONL journal: one line per finished image, and the checkpoint a rerun resumes from.

A line is written whole or not at all, by one ``os.write`` per batch with no Python-side
buffer, so ``kill -9`` at any moment leaves at worst one torn *last* line. ``load_index``
repairs that line on the next run and builds the set of paths already done; everything
else is captioned again. There is no separate state file to get out of step.

Line shape (key order is fixed; ``request_id`` is left out when unknown)::

    {"path":"a/b.jpg","status":"ok","caption":"...","attempts":1,"latency_s":0.8,
     "bytes_sent":51234,"target":"hf:blip","request_id":"r-1","ts":1732579200.1}
    {"path":"c.png","status":"error","error":{"type":"InputError","message":"empty file",
     "http_status":null,"retryable":false},"attempts":1,...}

One exclusive ``flock`` on the journal itself guards it: ``JournalWriter`` holds it for
the run, and ``load_index`` takes it while it repairs, so two runs on one ``--out`` fail
fast instead of interleaving lines or cutting each other's.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import sys
import time
from array import array
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import orjson

from batchcap.errors import JournalError
from batchcap.models import Record

__all__ = [
    "JournalIndex",
    "JournalWriter",
    "decode_line",
    "encode_record",
    "load_index",
    "path_key",
    "write_json_atomic",
]

_CHUNK = 4 * 1024 * 1024  # measured: 1-16 MB load equally fast; smaller keeps the peak low
_OK_PREFIX = b'{"path":"'
_STATUS = b'","status":"'
_STATUSES = ("ok", "error")
_sync = getattr(os, "fdatasync", os.fsync)  # the size change is flushed too; inode times are not needed


def encode_record(r: Record) -> bytes:
    """One journal line, newline included: a single ``orjson.dumps`` on the hot path."""
    line: dict[str, Any] = {"path": r.path, "status": r.status}
    if r.status == "ok":
        line["caption"] = r.caption
    else:
        e = r.error
        line["error"] = (
            None
            if e is None
            else {
                "type": e.type,
                "message": e.message,
                "http_status": e.http_status,
                "retryable": e.retryable,
            }
        )
    line["attempts"] = r.attempts
    line["latency_s"] = r.latency_s
    line["bytes_sent"] = r.bytes_sent
    line["target"] = r.target
    if r.request_id is not None:
        line["request_id"] = r.request_id
    line["ts"] = r.ts
    try:
        return orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        # A lone surrogate (e.g. "\ud800" decoded from a service's JSON) is not UTF-8; keep the
        # record and replace the bad code point rather than lose a paid-for caption.
        return orjson.dumps(_scrub(line), option=orjson.OPT_APPEND_NEWLINE)


def decode_line(line: bytes) -> dict[str, Any]:
    """Parse one journal line; ``ValueError`` unless it is an object with a string path and a status."""
    obj = orjson.loads(line)
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("path"), str)
        or obj.get("status") not in _STATUSES
    ):
        raise ValueError("not a batchcap journal record")
    return obj


def path_key(path: str) -> int:
    """The 64-bit key the index keeps for a path: a hash of its UTF-8 bytes, as the journal holds them.

    Python's own ``hash`` of bytes (SipHash, 64-bit on 64-bit builds) is used because it
    costs a third of ``blake2b`` on the 1M-line load. It is salted per process, which is
    fine: the index lives in memory for one run and is rebuilt from the journal each time.
    """
    return _bytes_key(path.encode("utf-8", "surrogatepass"))


def _blake_key(raw: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), signed=True)


# 32-bit builds hash to 32 bits, which would collide within a large folder: use blake2b there.
_bytes_key: Callable[[bytes], int] = hash if sys.hash_info.width >= 64 else _blake_key


class _KeySet:
    """A set of 64-bit ints in one flat ``array``: open addressing, linear probing, <= 50% full.

    8 bytes per slot, so ~16 MB for a million keys where a ``set`` of ints takes ~70 MB.
    Fixed capacity (the loader knows the count up front). Slot value 0 means empty, so
    key 0 is stored as 1: two keys in 2⁶⁴ merge, harmless.
    """

    __slots__ = ("_len", "_mask", "_slots")

    def __init__(self, capacity: int) -> None:
        size = 8
        while size < 2 * capacity:
            size *= 2
        self._slots = array("q", bytes(8 * size))
        self._mask = size - 1
        self._len = 0

    def add(self, key: int) -> bool:
        """Insert; False if it was already there. The caller stays within the capacity."""
        key = key or 1
        slots, mask = self._slots, self._mask
        i = key & mask
        k = slots[i]
        while k:
            if k == key:
                return False
            i = (i + 1) & mask
            k = slots[i]
        slots[i] = key
        self._len += 1
        return True

    def add_all(self, keys: Iterable[int]) -> None:
        """``add`` inlined, for the million-key build after a load (~0.4 us per key)."""
        slots, mask = self._slots, self._mask
        n = 0
        for key in keys:
            key = key or 1
            i = key & mask
            k = slots[i]
            while k:
                if k == key:
                    break
                i = (i + 1) & mask
                k = slots[i]
            else:
                slots[i] = key
                n += 1
        self._len += n

    def __contains__(self, key: int) -> bool:
        key = key or 1
        slots, mask = self._slots, self._mask
        i = key & mask
        k = slots[i]
        while k:
            if k == key:
                return True
            i = (i + 1) & mask
            k = slots[i]
        return False

    def __len__(self) -> int:
        return self._len


class JournalIndex:
    """The resume index: which paths are done, as 64-bit path keys (see ``path_key``) in a flat table.

    16-32 bytes per done path (17.8 MB measured for a million); a lookup costs ~1 us. Two
    paths share a key with probability ~n²/2⁶⁵ (3e-8 for a million), and then the second
    would be skipped as done: accepted. The counts describe the journal, per distinct path.
    """

    __slots__ = ("_keys", "error_final", "error_retryable", "lines", "ok", "repaired_bytes")

    def __init__(self, paths: Iterable[str] = ()) -> None:
        """An index holding ``paths`` as done (a convenience for tests and callers)."""
        keys = [path_key(p) for p in paths]
        self._keys = _KeySet(len(keys))
        self._keys.add_all(keys)
        self.ok = len(self._keys)  #: paths with an ok record (a caption)
        self.error_final = 0  #: paths without a caption whose last record is a non-retryable error
        self.error_retryable = 0  #: paths without a caption whose last record is a retryable error
        self.lines = 0  #: records read
        self.repaired_bytes = 0  #: bytes of a torn last line cut off the file

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and path_key(path) in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return (
            f"JournalIndex(done={len(self)}, ok={self.ok}, error_final={self.error_final}, "
            f"error_retryable={self.error_retryable}, lines={self.lines}, repaired_bytes={self.repaired_bytes})"
        )


def load_index(path: Path, *, retry_failed: bool = False, repair: bool = True) -> JournalIndex:
    """Read the journal once and return what is done; repair a torn last line.

    Done means: some record is ok (an ok caption is never discarded, even if an error for
    the same path follows), or the *last* record is an error with ``retryable`` false.
    ``retry_failed`` counts only ok as done, so final errors are tried again.

    A last line without its newline, or that is not JSON, was an interrupted write: with
    ``repair`` the file is truncated to the end of the last good line (``repaired_bytes``
    says how much went). The one exception is a last line that parses completely and only
    lacks the newline: the newline is added and the record kept. A bad line anywhere else
    raises ``JournalError``: that is no crash of ours, so a person should look.

    ok lines as ``encode_record`` writes them are recognised by shape (prefix, status,
    closing brace) without a full parse; every other line goes through orjson.

    With ``repair``, the journal's lock is held while reading and repairing (unless this
    process's ``JournalWriter`` already holds it), so a torn tail is never "repaired" while
    another run is still writing it: that raises the same ``JournalError`` as the writer.
    """
    try:
        f = open(path, "rb", buffering=0)  # noqa: SIM115 - closed in the finally below
    except FileNotFoundError:
        return JournalIndex()
    except OSError as exc:
        raise JournalError(f"cannot read {path}: {exc.strerror}; check its permissions") from None
    loader = _Loader(path)
    rest = b""  # the unfinished line at the end of the last chunk
    pos = 0  # bytes read so far
    try:
        if repair and _file_id(f.fileno()) not in _HELD:
            _lock(f.fileno(), path)  # released when f closes
        while True:
            try:
                chunk = f.read(_CHUNK)
            except OSError as exc:
                raise JournalError(f"cannot read {path}: {exc.strerror}") from None
            if not chunk:
                break
            lines = chunk.split(b"\n")  # no copy of the chunk: the unfinished line rides along
            if rest:
                lines[0] = rest + lines[0]
            start = pos - len(rest)
            pos += len(chunk)
            rest = lines.pop()
            loader.feed(lines, start)
        loader.finish(rest, pos - len(rest), repair=repair)
    finally:
        f.close()
    return loader.index(retry_failed)


class _Loader:
    """One ``load_index`` pass: ok keys and error keys in file order, and a pending bad line."""

    __slots__ = ("bad", "blank", "err_keys", "err_retry", "lineno", "ok_keys", "path", "repaired")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ok_keys = array("q")  # with repeats; deduplicated by the final _KeySet
        self.err_keys = array("q")  # in file order: the last one per path wins
        self.err_retry = bytearray()  # retryable flag per err_keys entry
        self.lineno = 0  # physical lines read, for messages
        self.blank = 0  # of which are not records (blank, or the torn last one)
        self.bad: tuple[int, int] | None = None  # (line number, file offset) of an unparseable line
        self.repaired = 0

    def feed(self, lines: list[bytes], start: int) -> None:
        """Take whole lines (newlines stripped); the first begins at file offset ``start``."""
        if self.bad is not None and any(line.strip() for line in lines):
            self._raise_bad()
        append = self.ok_keys.append
        key_of = _bytes_key
        for line in lines:
            # Fast path: an ok line as encode_record writes it. The path is JSON-escaped, so the
            # first '","status":"' ends it; without a backslash its bytes are its UTF-8 form.
            if line.startswith(_OK_PREFIX) and line.endswith(b"}"):
                j = line.find(_STATUS, 9)
                if j > 0 and line.startswith(b'ok"', j + 12):
                    raw = line[9:j]
                    if b"\\" not in raw:
                        append(key_of(raw))
                        continue
            self._slow(line, lines, start)
        self.lineno += len(lines)

    def _slow(self, line: bytes, lines: list[bytes], start: int) -> None:
        """Any line the fast path did not take: parse it fully, or remember it as bad."""
        if not line.strip():
            self.blank += 1
            return
        try:
            self._record(decode_line(line))
        except ValueError:
            i = next(k for k, x in enumerate(lines) if x is line)
            self.bad = (self.lineno + i + 1, start + sum(len(x) + 1 for x in lines[:i]))
            if any(x.strip() for x in lines[i + 1 :]):
                self._raise_bad()

    def _record(self, obj: dict[str, Any]) -> None:
        key = path_key(obj["path"])
        if obj["status"] == "ok":
            self.ok_keys.append(key)
        else:
            err = obj.get("error")
            self.err_keys.append(key)
            self.err_retry.append(isinstance(err, dict) and err.get("retryable") is True)

    def _raise_bad(self) -> None:
        assert self.bad is not None
        raise JournalError(
            f"line {self.bad[0]} of {self.path.name} is not JSON; only the last line may be torn: "
            f"move the file aside or fix that line ({self.path})"
        )

    def finish(self, tail: bytes, start: int, *, repair: bool) -> None:
        """Handle what follows the last newline, and a bad line that turned out to be the last."""
        size = start + len(tail)
        cut: int | None = None  # truncate the file here
        if tail.strip():
            if self.bad is not None:
                self._raise_bad()
            self.lineno += 1
            try:
                obj = decode_line(tail)
            except ValueError:
                self.blank += 1
                cut = start
            else:
                self._record(obj)
                if repair:
                    _append_newline(self.path)
        elif tail:  # only whitespace after the last newline: drop it
            cut = start
        if self.bad is not None:
            self.blank += 1  # not a record either
            cut = self.bad[1]
        if cut is not None and cut < size:
            if repair:
                _truncate(self.path, cut)
            self.repaired = size - cut

    def index(self, retry_failed: bool) -> JournalIndex:
        """Resolve the errors (last wins, any ok wins) and build the compact table."""
        ok_keys, err_keys, err_retry = self.ok_keys, self.err_keys, self.err_retry
        done = _KeySet(len(ok_keys) + len(err_keys))
        done.add_all(ok_keys)
        n_ok = len(done)
        self.ok_keys = array("q")  # free 8 bytes per line before the next allocation
        seen = _KeySet(len(err_keys))
        final: list[int] = []
        retryable = 0
        for i in range(len(err_keys) - 1, -1, -1):
            key = err_keys[i]
            if not seen.add(key) or key in done:  # a later error for the path, or an ok, won
                continue
            if err_retry[i]:
                retryable += 1
            else:
                final.append(key)
        if not retry_failed:
            done.add_all(final)
        index = JournalIndex()
        index._keys = done
        index.ok = n_ok
        index.error_final = len(final)
        index.error_retryable = retryable
        index.lines = self.lineno - self.blank
        index.repaired_bytes = self.repaired
        return index


#: (st_dev, st_ino) of the journals this process's JournalWriters hold locked.
_HELD: set[tuple[int, int]] = set()


def _file_id(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino)


def _lock(fd: int, path: Path) -> None:
    """Take the journal's exclusive lock without waiting; ``JournalError`` if another run has it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise JournalError(
            f"another batchcap run is writing to {path}; wait for it to finish or choose another --out"
        ) from None
    except OSError as exc:  # e.g. a filesystem without locks: refuse rather than risk interleaving
        raise JournalError(f"cannot lock {path}: {exc.strerror}; put --out on a local disk") from None


def _truncate(path: Path, size: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            _sync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise JournalError(f"cannot repair the torn last line of {path}: {exc.strerror}") from None


def _append_newline(path: Path) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            _write_all(fd, b"\n")
            _sync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _write_error(path, exc) from None


class JournalWriter:
    """The single owner of the journal file: append whole lines, fsync on a timer, hold the lock.

    ``with JournalWriter(path) as w: w.write(records)``. An exclusive ``flock`` on the file
    itself keeps a second run (another terminal, a cron job) from interleaving lines.
    ``write`` blocks (one ``os.write``, sometimes an fsync): call it from one task, via a
    worker thread if the event loop must not stall. Not thread-safe.

    Between fsyncs the data sits in the page cache: a killed process loses nothing, a power
    cut loses at most ``fsync_interval`` seconds of results (they are redone on resume).
    """

    __slots__ = (
        "_clock",
        "_fd",
        "_id",
        "_last_sync",
        "_size",
        "_torn",
        "_unsynced",
        "fsync_interval",
        "path",
    )

    def __init__(
        self, path: Path, *, fsync_interval: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self.fsync_interval = fsync_interval
        self._clock = clock
        self._fd = -1
        self._id = (0, 0)  # (st_dev, st_ino) of the open file
        self._size = 0  # file size before the current write: where to cut back to on failure
        self._last_sync = 0.0
        self._unsynced = False
        self._torn = False

    def open(self) -> None:
        """Open for append and take the lock; ``JournalError`` with a hint if either fails."""
        if self._fd >= 0:
            return
        parent = self.path.parent
        if not parent.is_dir():
            raise JournalError(f"cannot create {self.path}: folder {parent} does not exist; create it first")
        flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
        created = False
        try:
            try:
                fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o644)
                created = True
            except FileExistsError:
                fd = os.open(self.path, flags)
        except OSError as exc:
            raise _write_error(self.path, exc) from None
        try:
            _lock(fd, self.path)
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._id = (st.st_dev, st.st_ino)
        _HELD.add(self._id)
        self._size = st.st_size
        self._last_sync = self._clock()
        if created:
            _sync_dir(parent)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def write(self, records: Sequence[Record]) -> None:
        """Append the records as whole lines in one ``os.write``; on failure the file is cut back.

        Raises ``JournalError`` (disk full, I/O error): the run must stop, and nothing of
        this batch is left in the file, so the next run redoes exactly these images.
        """
        if self._fd < 0:
            raise JournalError(f"journal {self.path} is not open")  # a bug, but say which file
        if self._torn:
            raise JournalError(f"an earlier write to {self.path} failed half-way; run the same command again")
        if not records:
            return
        data = b"".join([encode_record(r) for r in records])
        try:
            # Asked each time (1 us): load_index may have cut a torn tail since open().
            self._size = os.fstat(self._fd).st_size
            _write_all(self._fd, data)
        except OSError as exc:
            self._cut_back()  # a partial batch would end in a half line
            raise _write_error(self.path, exc) from None
        self._size += len(data)
        self._unsynced = True
        if self._clock() - self._last_sync >= self.fsync_interval:
            self.flush_and_sync()

    def flush_and_sync(self) -> None:
        """Make everything written so far durable (there is no user-space buffer to flush)."""
        if self._fd < 0 or not self._unsynced:
            return
        try:
            _sync(self._fd)
        except OSError as exc:
            raise _write_error(self.path, exc) from None
        self._unsynced = False
        self._last_sync = self._clock()

    def close(self) -> None:
        """fsync, release the lock and close; safe to call twice."""
        fd = self._fd
        if fd < 0:
            return
        try:
            self.flush_and_sync()
        finally:
            self._fd = -1
            _HELD.discard(self._id)
            os.close(fd)  # releases the flock

    def _cut_back(self) -> None:
        """Remove a partial batch so no half line can later pass for data."""
        try:
            if os.fstat(self._fd).st_size > self._size:
                os.ftruncate(self._fd, self._size)
        except OSError:
            # The disk is gone. Appending after a half line would bury it mid-file, where
            # load_index refuses it; left as the last line, the next run repairs it.
            self._torn = True

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"size={self._size}"
        return f"<JournalWriter {self.path} {state}>"


def write_json_atomic(path: Path, obj: Any) -> None:
    """Replace ``path`` with ``obj`` as indented JSON, all or nothing (tmp file, fsync, ``os.replace``).

    For the run manifest beside the journal: a reader sees the old file or the new one,
    never half of one. Raises ``OSError`` (the tmp file is removed); ``TypeError`` if
    orjson cannot serialise ``obj``.
    """
    data = orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _sync_dir(path.parent)


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all is written (a write may be partial near a full disk)."""
    view = memoryview(data)
    done = 0
    while done < len(data):
        done += os.write(fd, view[done:])


def _sync_dir(folder: Path) -> None:
    """fsync a folder so a new or renamed entry survives a power cut (best effort)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_SPACE = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file size limit reached (ulimit -f, or the filesystem's largest file)",
}


def _write_error(path: Path, exc: OSError) -> JournalError:
    """The one message per failure class; results already written stay valid either way."""
    code = exc.errno or 0
    if code in _SPACE:
        return JournalError(
            f"cannot write {path}: {_SPACE[code]}; free some space and run the same command again "
            "(results so far are kept)"
        )
    if code == errno.EISDIR:
        return JournalError(f"cannot write {path}: it is a folder; give --out a file name")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return JournalError(
            f"cannot write {path}: {exc.strerror}; check the folder's permissions or choose another --out"
        )
    reason = exc.strerror or os.strerror(code) or str(exc)
    return JournalError(
        f"cannot write {path}: {reason}; fix the disk and run the same command again (results so far are kept)"
    )


def _scrub(obj: Any) -> Any:
    """Replace lone surrogates in every string so the record can be UTF-8 JSON."""
    if isinstance(obj, str):
        return obj.encode("utf-8", "replace").decode("utf-8")
    if isinstance(obj, dict):
        return {k: _scrub(v) for k, v in obj.items()}
    return obj
