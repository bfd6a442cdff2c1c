"""File helpers the journal and the run manifest share: the lock, whole writes, fsync, atomic replace.

One exclusive ``flock`` on the journal itself guards it: ``JournalWriter`` holds it for the run, and
``load_index`` takes it while it repairs, so two runs on one ``--out`` fail fast instead of interleaving
lines or cutting each other's. Every OS error becomes a ``JournalError`` that says what to do.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from batchcap.errors import ConfigError, JournalError
from batchcap.types import Clock

__all__ = [
    "HELD",
    "append_newline",
    "ensure_writable_file",
    "ensure_writable_folder",
    "file_id",
    "held_by_a_run",
    "lock",
    "manifest_path",
    "replacing",
    "sync",
    "sync_dir",
    "truncate",
    "wait_released",
    "write_all",
    "write_error",
    "write_json_atomic",
]

sync = getattr(os, "fdatasync", os.fsync)  # the size change is flushed too; inode times are not needed

#: (st_dev, st_ino) of the journals this process's JournalWriters hold locked.
HELD: set[tuple[int, int]] = set()


def file_id(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino)


def lock(fd: int, path: Path) -> None:
    """Take the journal's exclusive lock without waiting; ``JournalError`` if another run has it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise JournalError(
            f"another batchcap run is writing to {path}; wait for it to finish or choose another --out"
        ) from None
    except OSError as exc:  # e.g. a filesystem without locks: refuse rather than risk interleaving
        raise JournalError(f"cannot lock {path}: {exc.strerror}; put --out on a local disk") from None


def held_by_a_run(path: Path) -> bool:
    """Whether a batchcap run holds ``path``'s lock now: it is still writing, and a reader sees part of it.

    Asked without waiting and without keeping anything: a shared ``flock`` is tried and let go at once. A file
    that cannot be opened or locked is not held (the reader's own open reports what is wrong with it).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing the descriptor lets go of the shared lock too
    return False


def wait_released(
    path: Path, timeout: float, *, clock: Clock = time.monotonic, sleep: Callable[[float], None] = time.sleep,
    poll: float = 0.5,
) -> bool:
    """Wait until no run holds ``path`` (True), or ``timeout`` seconds have passed (False). Bounded by the clock."""
    deadline = clock() + timeout
    while held_by_a_run(path):
        left = deadline - clock()
        if left <= 0:
            return False
        sleep(min(poll, left))
    return True


def truncate(path: Path, size: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            sync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise JournalError(f"cannot repair the torn last line of {path}: {exc.strerror}") from None


def append_newline(path: Path) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            write_all(fd, b"\n")
            sync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise write_error(path, exc) from None



@contextmanager
def replacing(path: Path, *, tmp: Path | None = None) -> Iterator[Path]:
    """Yield a temp path beside ``path`` (or ``tmp``): on success it replaces ``path`` in one rename, on any
    failure it is removed. Readers see the old file or the new one, never half of one."""
    tmp = tmp if tmp is not None else path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    """Replace ``path`` with ``obj`` as indented JSON, all or nothing (tmp file, fsync, ``os.replace``).

    For the run manifest beside the journal: a reader sees the old file or the new one,
    never half of one. Raises ``OSError`` (the tmp file is removed); ``TypeError`` if
    orjson cannot serialise ``obj``.
    """
    data = orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    with replacing(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    sync_dir(path.parent)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all is written (a write may be partial near a full disk)."""
    view = memoryview(data)
    done = 0
    while done < len(data):
        done += os.write(fd, view[done:])


def sync_dir(folder: Path) -> None:
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


SPACE = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file size limit reached (ulimit -f, or the filesystem's largest file)",
}


def write_error(path: Path, exc: OSError) -> JournalError:
    """The one message per failure class; results already written stay valid either way."""
    code = exc.errno or 0
    if code in SPACE:
        return JournalError(
            f"cannot write {path}: {SPACE[code]}; free some space and run the same command again "
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


def manifest_path(journal: Path) -> Path:
    """The run manifest beside the journal: ``results.jsonl`` -> ``results.manifest.json``."""
    return journal.with_name(journal.stem + ".manifest.json")


def ensure_writable_folder(folder: Path, *, flag: str) -> None:
    """Make ``folder`` (parents included) and prove a file can be created in it, before anything is sent.

    Checked by doing it (a temp file made and removed), not by permission bits: root ignores those, and a
    read-only mount or a full quota only shows on a real write. Raises ``ConfigError`` naming ``flag``.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / f".batchcap-write-test-{os.getpid()}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(folder / f".batchcap-write-test-{os.getpid()}")
    except OSError as exc:
        reason = SPACE.get(exc.errno or 0) or exc.strerror or str(exc)
        raise ConfigError(f"{flag} {folder}: cannot write there ({reason}); choose another place") from None


def ensure_writable_file(path: Path, *, flag: str) -> None:
    """``ensure_writable_folder`` for the file's folder, and the file itself writable if it exists (not a folder)."""
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; give a file name")
    ensure_writable_folder(path.parent, flag=flag)
    if path.exists():
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
        except OSError as exc:
            raise ConfigError(f"{flag} {path}: cannot write it ({exc.strerror}); check its permissions") from None
