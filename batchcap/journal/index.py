"""The resume index: per image and task, the answer the journal holds and what made it; read once at start.

A line is written whole or not at all (see ``writer``), so ``kill -9`` at any moment leaves at worst one
torn *last* line. ``load_index`` repairs that line on the next run and builds, for every (path, task) the
journal holds (an "answer slot"), what a rerun needs to decide without reading the image:

* the latest ok answer's fingerprint: its settings part (8 hex, "spec") and its per-image part (16 hex,
  the "answer id": what was asked of this image, ``batchcap.tasks.fingerprint``); lines written before
  fingerprints carry none and get :data:`LEGACY`;
* the last error's answer id (:data:`LEGACY` when it has none: an unreadable file is unreadable whatever is
  asked) and whether it was final.

The run compares these with what it would ask (``batchcap.run.plan``): the same answer id is kept, a final
error for it is skipped, anything else is stale (asked again, or kept with ``--keep-stale``). There is no
separate state file to get out of step.

Copies: :meth:`JournalIndex.find_copy` finds an ok line anywhere in the journal with a given content digest
and answer id (a moved file, a renamed folder, a copy), so its answer can be reused without a request. Its
table is built on first use by a second pass over the journal as it was at load (most reruns never need it).
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from batchcap.errors import JournalError
from batchcap.journal import fsio
from batchcap.journal.codec import (
    COST_KEY,
    FINGERPRINTED_OK,
    OK_PREFIX,
    STATUS_SEP,
    TASK_SEP,
    decode_line,
    record_task,
)
from batchcap.journal.copies import Copies
from batchcap.journal.spent import Spent
from batchcap.journal.tables import (
    ANSWER_AT,
    FP_HEX,
    LEGACY,
    AnswerTable,
    Entry,
    KeySet,
    answer_id,
    bytes_key,
    path_key,
    probe,
    task_key,
)
from batchcap.models import DEFAULT_TASK

__all__ = ["LEGACY", "Entry", "JournalIndex", "KeySet", "answer_id", "load_index", "path_key", "task_key"]

CHUNK = 4 * 1024 * 1024  # measured: 1-16 MB load equally fast; smaller keeps the peak low
_FP_HEX, _ANSWER_AT = FP_HEX, ANSWER_AT
_FP_AT = len(FINGERPRINTED_OK)
_ANSWER_MASK = (1 << 56) - 1
_OK_TAIL = FINGERPRINTED_OK[len(STATUS_SEP) :]  # ok","fingerprint":"


#: Class 0: no ok answer in the slot; class 1: the default task's answers without a fingerprint.
_NONE, _LEGACY_CLASS, _OTHER = 0, 1, 255


class JournalIndex:
    """What the journal holds, per (path, task); see the module docstring. Lookups cost ~1 us.

    Two (path, task) pairs share a key with probability ~n²/2⁶⁵ (3e-8 for a million); then the second would
    be judged by the first's answer: accepted. The counts describe the journal, per answer slot.
    """

    __slots__ = ("_classes", "_copies", "_copies_lock", "_table", "error_final", "error_retryable", "errors_by_type",
                 "legacy", "lines", "ok", "path", "repaired_bytes", "retry_failed", "size", "spent_images", "spent_usd")

    def __init__(self, paths: Iterable[str] = (), *, task: str = DEFAULT_TASK) -> None:
        """An index holding an ok answer without fingerprint for each of ``paths`` (a convenience for tests)."""
        keys = [task_key(p, task) for p in paths]
        table = AnswerTable(len(keys))
        self._classes: list[tuple[str, int]] = [("", 0), (DEFAULT_TASK, 0)]  #: class -> (task, spec)
        cls = _LEGACY_CLASS
        if task != DEFAULT_TASK:
            self._classes.append((task, 0))
            cls = 2
        for key in keys:
            table.ok[table.slot(key)] = cls << 56
        self._table = table
        self.ok = len(set(keys))  #: answer slots with an ok record
        self.error_final = 0  #: slots without an ok whose last record is a non-retryable error
        self.error_retryable = 0  #: slots without an ok whose last record is a retryable error
        self.legacy = self.ok  #: ok answers without a fingerprint (written before issue 16)
        self.lines = 0  #: records read
        self.repaired_bytes = 0  #: bytes of a torn last line cut off the file
        self.retry_failed = False  #: final errors count as not done (``--retry-failed``)
        self.path: Path | None = None  #: the journal, for ``find_copy``
        self.size = 0  #: its size once loaded: ``find_copy`` reads no further
        self.spent_usd = 0.0  #: the sum of every record's ``cost_usd``: what earlier runs of this journal spent
        self.spent_images = 0  #: records that carry a ``cost_usd``
        #: answer slots without an ok, by the error type of their last record (final and retryable alike)
        self.errors_by_type: dict[str, int] = {}
        self._copies: Copies | None = None
        self._copies_lock = threading.Lock()

    def entry(self, path: str, task: str = DEFAULT_TASK) -> Entry | None:
        """What the journal holds for (path, task), or None."""
        table = self._table
        i = table.find(task_key(path, task))
        if i < 0:
            return None
        packed = table.ok[i]
        cls = packed >> 56
        err = table.errors.get(i)
        return Entry(
            packed & _ANSWER_MASK if cls else None,
            self._classes[cls][1] if cls < len(self._classes) else 0,
            None if err is None else err[0],
            err is not None and err[1],
        )

    def done(self, path: str, task: str = DEFAULT_TASK) -> bool:
        """An answer of any fingerprint, or a final error (not with ``retry_failed``): what a run without tasks
        or fingerprints would skip."""
        table = self._table
        i = table.find(task_key(path, task))
        if i < 0:
            return False
        if table.ok[i]:
            return True
        err = table.errors.get(i)
        return not self.retry_failed and err is not None and err[1]

    def __contains__(self, path: object) -> bool:
        """``path`` is done for the default task (see ``done``)."""
        return isinstance(path, str) and self.done(path)

    def __len__(self) -> int:
        """Answer slots that are done (see ``done``)."""
        return self.ok + (0 if self.retry_failed else self.error_final)

    def latest_by_spec(self) -> dict[str, Counter[int]]:
        """Per task: how many answers' latest ok was made with each settings part (spec) of the fingerprint.

        The run compares these with its own specs to say, before it starts, how many answers are stale.
        Answers of kinds past the 254th (class 255) are counted under task ``?``.
        """
        counts = Counter(self._table.classes())
        counts.pop(_NONE, None)
        out: dict[str, Counter[int]] = {}
        for cls, n in counts.items():
            task, spec = self._classes[cls] if cls < len(self._classes) and cls != _OTHER else ("?", 0)
            out.setdefault(task, Counter())[spec] += n
        return out

    def find_copy(self, digest: str, answer: int) -> int | None:
        """The file offset of an ok line whose image has ``digest`` and whose answer id is ``answer``, or None.

        Thread-safe (the readers ask). The first call reads the journal once more (as it was at load).
        """
        copies = self._copies
        if copies is None:
            with self._copies_lock:
                copies = self._copies
                if copies is None:
                    copies = self._copies = Copies.build(self.path, self.size)
        return copies.find(digest, answer)

    def read_line(self, offset: int) -> dict[str, Any] | None:
        """The record at ``offset`` (from ``find_copy``), or None if it cannot be read back."""
        if self.path is None:
            return None
        try:
            with open(self.path, "rb") as f:
                f.seek(offset)
                return decode_line(f.readline())
        except (OSError, ValueError):
            return None

    def __repr__(self) -> str:
        return (
            f"JournalIndex(done={len(self)}, ok={self.ok}, error_final={self.error_final}, "
            f"error_retryable={self.error_retryable}, legacy={self.legacy}, lines={self.lines}, "
            f"repaired_bytes={self.repaired_bytes}, spent_usd={self.spent_usd:.6g})"
        )


def load_index(path: Path, *, retry_failed: bool = False, repair: bool = True) -> JournalIndex:
    """Read the journal once and return what it holds; repair a torn last line.

    ``retry_failed`` makes final errors count as not done (``done``, ``len``; ``Entry.final`` is unchanged).

    A last line without its newline, or that is not JSON, was an interrupted write: with ``repair`` the file
    is truncated to the end of the last good line (``repaired_bytes`` says how much went). The one exception
    is a last line that parses completely and only lacks the newline: the newline is added and the record
    kept. A bad line anywhere else raises ``JournalError``: that is no crash of ours, so a person should look.

    ok lines as ``encode_record`` writes them are recognised by shape (prefix, task, status, fingerprint,
    closing brace) without a full parse; every other line goes through orjson.

    With ``repair``, the journal's lock is held while reading and repairing (unless this process's
    ``JournalWriter`` already holds it), so a torn tail is never "repaired" while another run is still writing
    it: that raises the same ``JournalError`` as the writer.
    """
    try:
        f = open(path, "rb", buffering=0)  # noqa: SIM115 - closed in the finally below
    except FileNotFoundError:
        index = JournalIndex()
        index.retry_failed = retry_failed
        index.path = path
        return index
    except OSError as exc:
        raise JournalError(f"cannot read {path}: {exc.strerror}; check its permissions") from None
    loader = _Loader(path)
    size = os.fstat(f.fileno()).st_size
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
            if not start:  # the first chunk: size the table for the whole file by its lines' length
                loader.reserve(len(lines) * size // max(1, pos - len(rest)) + 64)
            costs = bool(lines) and (COST_KEY in chunk or COST_KEY in lines[0])  # one fast search per chunk
            loader.feed(lines, start, costs=costs)
        loader.finish(rest, pos - len(rest), repair=repair)
    finally:
        f.close()
    index = loader.index(retry_failed)
    index.path = path
    index.size = pos - loader.repaired
    return index


class _Loader:
    """One ``load_index`` pass: ok records straight into their slots (the latest wins), errors in a list.

    The table is sized from the first chunk (its lines' mean length over the file's size) and doubled in the
    rare case the file's lines are shorter than that: no per-line array is kept, so the peak is the table.
    """

    __slots__ = ("bad", "blank", "class_of", "errors", "legacy", "lineno", "path", "repaired", "spent", "table",
                 "types", "used")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.table = AnswerTable(8)
        self.used = 0  # slots taken in ``table`` (each holds an ok answer)
        self.errors: list[tuple[int, int, bool, str]] = []  # (key, answer id, final, error type), in file order
        self.types: dict[str, str] = {}  # error type names met (at most 255; the rest count as "other")
        #: ``TASK","status":"ok","fingerprint":"SPEC`` as it stands on a line -> class number
        self.class_of: dict[bytes, int] = {}
        self.legacy = 0  # ok lines without a fingerprint
        self.lineno = 0  # physical lines read, for messages
        self.blank = 0  # of which are not records (blank, or the torn last one)
        self.bad: tuple[int, int] | None = None  # (line number, file offset) of an unparseable line
        self.repaired = 0
        self.spent = Spent()  # the records' cost_usd

    def reserve(self, answers: int) -> None:
        """Room for ``answers`` slots (the table is at most half full), keeping what is in it."""
        if 2 * answers <= len(self.table.keys):
            return
        old = self.table
        self.table = AnswerTable(answers)
        keys, mask, values = self.table.keys, self.table.mask, self.table.ok
        for key, value in zip(old.keys, old.ok, strict=True):
            if key:
                i = key & mask
                while keys[i]:
                    i = (i + 1) & mask
                keys[i] = key
                values[i] = value

    def _put(self, key: int, value: int) -> None:
        """One ok answer (the slow path; ``feed`` inlines this)."""
        if 2 * (self.used + 1) > len(self.table.keys):
            self.reserve(2 * (self.used + 1))
        table = self.table
        key = key or 1
        i = probe(table.keys, table.mask, key)
        if not table.keys[i]:
            table.keys[i] = key
            self.used += 1
        table.ok[i] = value

    def _class(self, name: bytes) -> int:
        """The class of a (task, spec) met for the first time (1 is the default task without fingerprint)."""
        cls = self.class_of.get(name)
        if cls is None:
            cls = self.class_of[name] = min(len(self.class_of) + 2, _OTHER)
        return cls

    def feed(self, lines: list[bytes], start: int, *, costs: bool = False) -> None:
        """Take whole lines (newlines stripped); the first begins at file offset ``start``.

        ``costs``: some line may carry a ``cost_usd`` (the chunk holds the key), so ok lines are searched for it
        from their end (only ``request_id`` and ``ts`` follow it; ``ts`` always, so its value ends at a comma); a
        journal of runs without prices pays one fast search per chunk for that, not one per line.
        """
        if self.bad is not None and any(line.strip() for line in lines):
            self._raise_bad()
        if 2 * (self.used + len(lines)) > len(self.table.keys):  # the estimate was short: double, not per line
            self.reserve(max(2 * self.used, self.used + len(lines)))
        table = self.table
        tkeys, mask, tvalues = table.keys, table.mask, table.ok
        used = self.used
        key_of = bytes_key
        # The kind of the line before (task, status ok, fingerprint's settings part), and where in such a line
        # the task ends and the answer id starts, counted from the task separator: consecutive lines mostly
        # share it, and then one ``startswith`` stands for finding the status and checking it.
        last, last_cls, task_end, answer_at = b"\x00", 0, 0, 0
        fp_at, answer_from, fp_hex, task_sep, status_sep, ok_tail = (
            _FP_AT, _ANSWER_AT, _FP_HEX, TASK_SEP, STATUS_SEP, _OK_TAIL)
        legacy_cls = _LEGACY_CLASS << 56
        cost = self.spent.texts.append
        for line in lines:
            # Fast path: an ok line as encode_record writes it. The path is JSON-escaped, so the first
            # '","task":"' ends it, and the task (a plain name) ends at the status; without a backslash the
            # bytes between are exactly what ``task_key`` hashes.
            key = value = 0
            if line.startswith(OK_PREFIX) and line.endswith(b"}"):
                j = line.find(task_sep, 9)
                if j > 0:
                    if line.startswith(last, j + 10):  # TASK","status":"ok","fingerprint":"SPEC as before
                        raw = line[9 : j + task_end]
                        if b"\\" not in raw:
                            try:
                                value = last_cls | int(line[j + answer_at : j + answer_at + 14], 16)
                            except ValueError:
                                pass
                            else:
                                key = key_of(raw)
                    else:
                        k = line.find(status_sep, j)
                        if k > 0 and line.startswith(ok_tail, k + 12):
                            raw = line[9:k]
                            f = k + fp_at
                            if b"\\" not in raw and line.startswith(b'"', f + fp_hex):
                                try:
                                    answer = int(line[f + answer_from : f + fp_hex], 16)
                                except ValueError:
                                    pass
                                else:
                                    last = line[j + 10 : f + 8]
                                    last_cls = self._class(last) << 56
                                    task_end, answer_at = k - j, f + answer_from - j
                                    key, value = key_of(raw), last_cls | answer
                else:  # a line written before tasks: path, then status
                    j = line.find(status_sep, 9)
                    if j > 0 and line.startswith(b'ok"', j + 12):
                        raw = line[9:j]
                        if b"\\" not in raw:
                            key, value = key_of(raw + _DEFAULT_TASK_SUFFIX), legacy_cls
                            self.legacy += 1
            if value:
                if costs and (c := line.rfind(COST_KEY)) > 0:
                    cost(line[c + 12 : line.find(b",", c + 12)])
                key = key or 1
                i = key & mask
                k = tkeys[i]
                while k and k != key:
                    i = (i + 1) & mask
                    k = tkeys[i]
                if not k:
                    tkeys[i] = key
                    used += 1
                tvalues[i] = value
                continue
            self.used = used
            self._slow(line, lines, start)  # may insert (and grow the table): take its state back
            table = self.table
            tkeys, mask, tvalues = table.keys, table.mask, table.ok
            used = self.used
        self.used = used
        self.lineno += len(lines)
        self.spent.flush()

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
        self.spent.add(obj.get("cost_usd"))
        task = record_task(obj)
        key = task_key(obj["path"], task)
        fp = obj.get("fingerprint")
        answer = LEGACY
        spec = b""
        if isinstance(fp, str):
            try:
                answer = answer_id(fp)
            except ValueError:
                answer = LEGACY
            else:
                spec = fp[:8].encode("ascii")
        if obj["status"] == "ok":
            if answer == LEGACY and task == DEFAULT_TASK:
                cls = _LEGACY_CLASS
            else:
                cls = self._class(task.encode("utf-8", "surrogatepass") + FINGERPRINTED_OK + spec)
            self._put(key, cls << 56 | answer)
            if answer == LEGACY:
                self.legacy += 1
        else:
            err = obj.get("error")
            kind = err.get("type") if isinstance(err, dict) else None
            name = kind if isinstance(kind, str) else "?"
            found = self.types.get(name)
            if found is None:  # a bounded table: a journal with 255 error types is already odd
                found = self.types[name] = name if len(self.types) < 255 else "other"
            self.errors.append((key, answer, not (isinstance(err, dict) and err.get("retryable") is True), found))

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
        """The last error per slot (in file order) beside the latest ok answers, and the counts.

        An ok never hides an error nor the other way round, so oks and errors need no common order.
        """
        n_ok = self.used
        self.reserve(self.used + len(self.errors))
        table = self.table
        t_ok = table.ok
        errors = table.errors
        last_type: dict[int, str] = {}
        for key, answer, final, kind in self.errors:
            i = table.slot(key)
            errors[i] = (answer, final)
            last_type[i] = kind
        index = JournalIndex()
        index._table = table
        classes: list[tuple[str, int]] = [("", 0), (DEFAULT_TASK, 0)] + [("", 0)] * (_OTHER - 1)
        for name, cls in self.class_of.items():
            if cls < _OTHER:
                task, _, spec = name.partition(FINGERPRINTED_OK)
                try:
                    classes[cls] = (task.decode("utf-8", "replace"), int(spec, 16) if spec else 0)
                except ValueError:
                    classes[cls] = (task.decode("utf-8", "replace"), 0)
        index._classes = classes
        index.ok = n_ok
        index.error_final = sum(1 for i, (_, final) in errors.items() if final and not t_ok[i])
        index.error_retryable = sum(1 for i, (_, final) in errors.items() if not final and not t_ok[i])
        index.errors_by_type = dict(Counter(kind for i, kind in last_type.items() if not t_ok[i]))
        index.legacy = self.legacy
        index.lines = self.lineno - self.blank
        index.repaired_bytes = self.repaired
        index.spent_usd = self.spent.total  # the slow path's, and the last line's, included
        index.spent_images = self.spent.count
        index.retry_failed = retry_failed
        return index


_DEFAULT_TASK_SUFFIX = TASK_SEP + DEFAULT_TASK.encode()


