"""Flat open-addressing tables of 64-bit keys, for the resume index: a few bytes per entry, no object per entry.

A ``set`` of a million ints takes ~70 MB; these take 8-16 bytes per slot, at most half full (linear probing, slot
value 0 = empty, so key 0 is stored as 1: two keys in 2^64 merge, harmless). The loader knows the count before it
builds a table, so tables never grow.
"""

from __future__ import annotations

import sys
from array import array

__all__ = ["AnswerTable", "KeySet", "table_size"]


def table_size(n: int) -> int:
    size = 8
    while size < 2 * n:
        size *= 2
    return size


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
        keys, mask = self.keys, self.mask
        i = key & mask
        k = keys[i]
        while k and k != key:
            i = (i + 1) & mask
            k = keys[i]
        if not k:
            keys[i] = key
        return i

    def find(self, key: int) -> int:
        """The slot holding ``key``, or -1."""
        key = key or 1
        keys, mask = self.keys, self.mask
        i = key & mask
        k = keys[i]
        while k:
            if k == key:
                return i
            i = (i + 1) & mask
            k = keys[i]
        return -1

    def classes(self) -> bytes:
        """The class of every slot (0: no ok answer), as bytes: the top byte of each little-endian 64-bit value."""
        raw = self.ok.tobytes()
        return raw[7::8] if sys.byteorder == "little" else raw[0::8]


