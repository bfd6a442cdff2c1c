"""The resume index: which paths the journal already holds, read once at start, with torn-line repair.

A line is written whole or not at all (see ``writer``), so ``kill -9`` at any moment leaves at worst one
torn *last* line. ``load_index`` repairs that line on the next run and builds the set of paths already
done; everything else is captioned again. There is no separate state file to get out of step.
"""

from __future__ import annotations

import hashlib
import math
import sys
from array import array
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from batchcap.errors import JournalError
from batchcap.journal import fsio
from batchcap.journal.codec import COST_KEY, OK_PREFIX, STATUS_SEP, decode_line

__all__ = ["JournalIndex", "KeySet", "load_index", "path_key"]

CHUNK = 4 * 1024 * 1024  # measured: 1-16 MB load equally fast; smaller keeps the peak low


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


class KeySet:
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

    __slots__ = ("_keys", "error_final", "error_retryable", "errors_by_type", "lines", "ok", "repaired_bytes",
                 "spent_images", "spent_usd")

    def __init__(self, paths: Iterable[str] = ()) -> None:
        """An index holding ``paths`` as done (a convenience for tests and callers)."""
        keys = [path_key(p) for p in paths]
        self._keys = KeySet(len(keys))
        self._keys.add_all(keys)
        self.ok = len(self._keys)  #: paths with an ok record (a caption)
        self.error_final = 0  #: paths without a caption whose last record is a non-retryable error
        self.error_retryable = 0  #: paths without a caption whose last record is a retryable error
        self.lines = 0  #: records read
        self.repaired_bytes = 0  #: bytes of a torn last line cut off the file
        #: paths without a caption, by the error type of their last record (final and retryable alike)
        self.errors_by_type: dict[str, int] = {}
        self.spent_usd = 0.0  #: the sum of every record's ``cost_usd``: what earlier runs of this journal spent
        self.spent_images = 0  #: records that carry a ``cost_usd``

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and path_key(path) in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return (
            f"JournalIndex(done={len(self)}, ok={self.ok}, error_final={self.error_final}, "
            f"error_retryable={self.error_retryable}, lines={self.lines}, repaired_bytes={self.repaired_bytes}, "
            f"spent_usd={self.spent_usd:.6g})"
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
        if repair and fsio.file_id(f.fileno()) not in fsio.HELD:
            fsio.lock(f.fileno(), path)  # released when f closes
        while True:
            try:
                chunk = f.read(CHUNK)
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
            costs = bool(lines) and (COST_KEY in chunk or COST_KEY in lines[0])  # one fast search per chunk
            loader.feed(lines, start, costs=costs)
        loader.finish(rest, pos - len(rest), repair=repair)
    finally:
        f.close()
    return loader.index(retry_failed)


def _number(text: bytes) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class _Loader:
    """One ``load_index`` pass: ok keys and error keys in file order, and a pending bad line."""

    __slots__ = ("bad", "blank", "cost_sums", "cost_texts", "costed", "costs", "err_keys", "err_retry", "err_type",
                 "lineno", "ok_keys", "path", "repaired", "types")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ok_keys = array("q")  # with repeats; deduplicated by the final KeySet
        self.err_keys = array("q")  # in file order: the last one per path wins
        self.err_retry = bytearray()  # retryable flag per err_keys entry
        self.err_type = bytearray()  # index into ``types`` per err_keys entry
        self.types: dict[str, int] = {}  # error type names seen (at most 255; the rest count as "other")
        self.lineno = 0  # physical lines read, for messages
        self.blank = 0  # of which are not records (blank, or the torn last one)
        self.bad: tuple[int, int] | None = None  # (line number, file offset) of an unparseable line
        self.repaired = 0
        self.costs: list[float] = []  # the cost_usd of the records of this chunk
        self.cost_texts: list[bytes] = []  # ... as the fast path cut them out, converted per chunk
        self.cost_sums: list[float] = []  # one exact sum per chunk: memory stays flat
        self.costed = 0  # records with a cost

    def feed(self, lines: list[bytes], start: int, *, costs: bool = False) -> None:
        """Take whole lines (newlines stripped); the first begins at file offset ``start``.

        ``costs``: some line may carry a ``cost_usd`` (the chunk holds the key), so ok lines are searched for it;
        a journal of a run without prices pays one fast search per chunk for that, not one per line.
        """
        if self.bad is not None and any(line.strip() for line in lines):
            self._raise_bad()
        if costs:
            self._feed_costs(lines, start)
            return
        append = self.ok_keys.append
        key_of = _bytes_key
        for line in lines:
            # Fast path: an ok line as encode_record writes it. The path is JSON-escaped, so the
            # first '","status":"' ends it; without a backslash its bytes are its UTF-8 form.
            if line.startswith(OK_PREFIX) and line.endswith(b"}"):
                j = line.find(STATUS_SEP, 9)
                if j > 0 and line.startswith(b'ok"', j + 12):
                    raw = line[9:j]
                    if b"\\" not in raw:
                        append(key_of(raw))
                        continue
            self._slow(line, lines, start)
        self.lineno += len(lines)

    def _feed_costs(self, lines: list[bytes], start: int) -> None:
        """``feed`` for lines that may carry a cost: the fast path also cuts ``"cost_usd":N`` out of each ok line.

        The key is searched from the line's end (only ``request_id`` and ``ts`` follow it) and its value ends at
        the next comma (``ts`` always follows); the values are converted together at the end of the chunk.
        """
        append, cost = self.ok_keys.append, self.cost_texts.append
        key_of = _bytes_key
        for line in lines:
            if line.startswith(OK_PREFIX) and line.endswith(b"}"):
                j = line.find(STATUS_SEP, 9)
                if j > 0 and line.startswith(b'ok"', j + 12):
                    raw = line[9:j]
                    if b"\\" not in raw:
                        append(key_of(raw))
                        k = line.rfind(COST_KEY)
                        if k > 0:
                            cost(line[k + 12 : line.find(b",", k + 12)])
                        continue
            self._slow(line, lines, start)
        self.lineno += len(lines)
        self._sum_costs()

    def _sum_costs(self) -> None:
        """One exact sum per chunk, so memory stays flat whatever the journal's length."""
        texts, values = self.cost_texts, self.costs
        if texts:
            try:
                values.extend(map(float, texts))
            except ValueError:  # not a number after all (a hand-edited line): those count as no cost
                values.extend(v for v in map(_number, texts) if v is not None)
            texts.clear()
        if values:
            self.cost_sums.append(math.fsum(values))
            self.costed += len(values)
            values.clear()

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
        cost = obj.get("cost_usd")
        if isinstance(cost, int | float) and not isinstance(cost, bool) and math.isfinite(cost):
            self.costs.append(float(cost))
        key = path_key(obj["path"])
        if obj["status"] == "ok":
            self.ok_keys.append(key)
        else:
            err = obj.get("error")
            self.err_keys.append(key)
            self.err_retry.append(isinstance(err, dict) and err.get("retryable") is True)
            kind = err.get("type") if isinstance(err, dict) else None
            name = kind if isinstance(kind, str) else "?"
            code = self.types.get(name)
            if code is None:
                if len(self.types) >= 255:  # a bounded table: a journal with 255 error types is already odd
                    name = "other"
                code = self.types.setdefault(name, len(self.types))
            self.err_type.append(code)

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
                    fsio.append_newline(self.path)
        elif tail:  # only whitespace after the last newline: drop it
            cut = start
        if self.bad is not None:
            self.blank += 1  # not a record either
            cut = self.bad[1]
        if cut is not None and cut < size:
            if repair:
                fsio.truncate(self.path, cut)
            self.repaired = size - cut

    def index(self, retry_failed: bool) -> JournalIndex:
        """Resolve the errors (last wins, any ok wins) and build the compact table."""
        ok_keys, err_keys, err_retry = self.ok_keys, self.err_keys, self.err_retry
        done = KeySet(len(ok_keys) + len(err_keys))
        done.add_all(ok_keys)
        n_ok = len(done)
        self.ok_keys = array("q")  # free 8 bytes per line before the next allocation
        seen = KeySet(len(err_keys))
        final: list[int] = []
        retryable = 0
        by_code = [0] * 256
        err_type = self.err_type
        for i in range(len(err_keys) - 1, -1, -1):
            key = err_keys[i]
            if not seen.add(key) or key in done:  # a later error for the path, or an ok, won
                continue
            by_code[err_type[i]] += 1
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
        index.errors_by_type = {name: by_code[code] for name, code in self.types.items() if by_code[code]}
        self._sum_costs()  # the slow path's, and the last line's
        index.spent_usd = math.fsum(self.cost_sums)
        index.spent_images = self.costed
        return index

