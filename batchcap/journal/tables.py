"""Flat open-addressing tables of 64-bit keys, for the resume index: a few bytes per entry, no object per entry.

A ``set`` of a million ints takes ~70 MB; these take 8-16 bytes per slot, at most half full (linear probing, slot
value 0 = empty, so key 0 is stored as 1: two keys in 2^64 merge, harmless). The loader knows the count before it
builds a table, so tables never grow.
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from collections.abc import Callable
from typing import NamedTuple

from batchcap.journal.codec import task_key_bytes
from batchcap.models import DEFAULT_TASK

__all__ = ["ANSWER_AT", "FP_HEX", "LEGACY", "AnswerTable", "Entry", "KeySet", "answer_id", "bytes_key", "path_key",
           "probe", "table_size", "task_key"]

FP_HEX = 24  #: fingerprint length: 8 hex of settings, 16 hex of what was asked of the image
ANSWER_AT = 10  #: the answer id is the fingerprint's last 14 hex digits (56 bits)
#: The answer id of a line without a fingerprint (written before issue 16, or an error that belongs to no
#: request). A real answer id is 0 with probability 2^-56.
LEGACY = 0


class Entry(NamedTuple):
    """What the journal holds for one (path, task): the latest ok answer and the last error."""

    ok: int | None  #: answer id of the latest ok answer (:data:`LEGACY` if it has no fingerprint); None: no ok
    spec: int  #: the settings part of that answer's fingerprint (0 without one)
    error: int | None  #: answer id of the last error (:data:`LEGACY`: one that holds for any question); None: none
    final: bool  #: that error was final (not retried unless --retry-failed)


def path_key(path: str) -> int:
    """The 64-bit key of a path alone (kept for callers that index paths, e.g. tests of ``KeySet``)."""
    return bytes_key(path.encode("utf-8", "surrogatepass"))


def task_key(path: str, task: str = DEFAULT_TASK) -> int:
    """The 64-bit key the index keeps for (path, task): a hash of the bytes an ok line holds between
    ``{"path":"`` and its status, so the load hashes a slice of the line itself.

    Python's own ``hash`` of bytes (SipHash, 64-bit on 64-bit builds) is used because it costs a third of
    ``blake2b`` on the 1M-line load. It is salted per process, which is fine: the index lives in memory for
    one run and is rebuilt from the journal each time.
    """
    return bytes_key(task_key_bytes(path, task))


def answer_id(fingerprint: str) -> int:
    """What the index compares of a fingerprint: its last 14 hex digits (56 of the 64 bits of what was asked
    of the image) as an int; ``ValueError`` if it is not a fingerprint. Two different questions share one with
    probability 2^-56."""
    if len(fingerprint) != FP_HEX:
        raise ValueError(f"a fingerprint has {FP_HEX} hex digits (got {len(fingerprint)})")
    return int(fingerprint[ANSWER_AT:], 16)


def _blake_key(raw: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), signed=True)


# 32-bit builds hash to 32 bits, which would collide within a large folder: use blake2b there.
bytes_key: Callable[[bytes], int] = hash if sys.hash_info.width >= 64 else _blake_key




def table_size(n: int) -> int:
    size = 8
    while size < 2 * n:
        size *= 2
    return size


def probe(keys: array[int], mask: int, key: int) -> int:
    """The slot holding ``key`` (non-zero: callers store 0 as 1), or the empty slot where it goes: the one
    linear probe every table here uses (the index's load loop inlines it: a call per line costs too much there)."""
    i = key & mask
    k = keys[i]
    while k and k != key:
        i = (i + 1) & mask
        k = keys[i]
    return i


class KeySet:
    """A set of 64-bit ints in one flat ``array``: open addressing, linear probing, <= 50% full.

    8 bytes per slot, so ~16 MB for a million keys where a ``set`` of ints takes ~70 MB. Fixed capacity
    (the caller knows the count up front). Slot value 0 means empty, so key 0 is stored as 1: two keys in
    2⁶⁴ merge, harmless.
    """

    __slots__ = ("_len", "_mask", "_slots")

    def __init__(self, capacity: int) -> None:
        size = table_size(capacity)
        self._slots = array("q", bytes(8 * size))
        self._mask = size - 1
        self._len = 0

    def add(self, key: int) -> bool:
        """Insert; False if it was already there. The caller stays within the capacity."""
        key = key or 1
        slots = self._slots
        i = probe(slots, self._mask, key)
        if slots[i]:
            return False
        slots[i] = key
        self._len += 1
        return True

    def __contains__(self, key: int) -> bool:
        return bool(self._slots[probe(self._slots, self._mask, key or 1)])

    def __len__(self) -> int:
        return self._len


class AnswerTable:
    """The answer slots: open addressing on the (path, task) key, <= 50% full, two flat arrays.

    16 bytes per slot: the key, and the latest ok answer packed as its class (top 8 bits: which task and which
    settings part of the fingerprint; at most 253 kinds are told apart, the rest share class 255; 0 = no ok)
    over its answer id (56 bits). Errors (rare) live in a dict by slot. ~34 MB for a million answers.
    """

    __slots__ = ("errors", "keys", "mask", "ok")

    def __init__(self, capacity: int) -> None:
        size = table_size(capacity)
        self.mask = size - 1
        self.keys = array("q", bytes(8 * size))
        self.ok = array("Q", bytes(8 * size))
        self.errors: dict[int, tuple[int, bool]] = {}  #: slot -> (answer id, final) of its last error

    def slot(self, key: int) -> int:
        """The slot of ``key``, taken if it was free."""
        key = key or 1
        i = probe(self.keys, self.mask, key)
        if not self.keys[i]:
            self.keys[i] = key
        return i

    def find(self, key: int) -> int:
        """The slot holding ``key``, or -1."""
        i = probe(self.keys, self.mask, key or 1)
        return i if self.keys[i] else -1

    def classes(self) -> bytes:
        """The class of every slot (0: no ok answer), as bytes: the top byte of each little-endian 64-bit value."""
        raw = self.ok.tobytes()
        return raw[7::8] if sys.byteorder == "little" else raw[0::8]


