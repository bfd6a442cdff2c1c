"""The single owner of the journal file: whole lines appended, fsync on a timer, the lock held."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from batchcap.errors import JournalError
from batchcap.journal import fsio
from batchcap.journal.codec import encode_record
from batchcap.models import Record

__all__ = ["JournalWriter"]


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
            raise fsio.write_error(self.path, exc) from None
        try:
            fsio.lock(fd, self.path)
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._id = (st.st_dev, st.st_ino)
        fsio.HELD.add(self._id)
        self._size = st.st_size
        self._last_sync = self._clock()
        if created:
            fsio.sync_dir(parent)

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
            fsio.write_all(self._fd, data)
        except OSError as exc:
            self._cut_back()  # a partial batch would end in a half line
            raise fsio.write_error(self.path, exc) from None
        self._size += len(data)
        self._unsynced = True
        if self._clock() - self._last_sync >= self.fsync_interval:
            self.flush_and_sync()

    def flush_and_sync(self) -> None:
        """Make everything written so far durable (there is no user-space buffer to flush)."""
        if self._fd < 0 or not self._unsynced:
            return
        try:
            fsio.sync(self._fd)
        except OSError as exc:
            raise fsio.write_error(self.path, exc) from None
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
            fsio.HELD.discard(self._id)
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

