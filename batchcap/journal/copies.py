"""Answers found by content: (image digest, answer id) -> the file offset of an ok line, built on first use.

A copy, a moved or renamed file, a renamed folder: the image's content and the question asked (the answer part of
the fingerprint) match an answer the journal already holds, wherever it is. The table is built by one pass over
the journal as it was when the index was loaded (most reruns never need it); 16-32 bytes per ok line.
"""

from __future__ import annotations

import os
from array import array
from pathlib import Path

from batchcap.journal.codec import FINGERPRINTED_OK
from batchcap.journal.tables import probe, table_size

__all__ = ["Copies"]

CHUNK = 4 * 1024 * 1024
_FP_HEX = 24
_ANSWER_AT = 10
_DIGEST_HEX = 32
_FP_AT = len(FINGERPRINTED_OK)
_DIGEST_SEP = b'","digest":"'
_MASK64 = (1 << 64) - 1


class Copies:
    """(content digest, answer id) -> file offset of an ok line: open addressing, two flat arrays."""

    __slots__ = ("keys", "mask", "offsets")

    def __init__(self, keys: array[int], offsets: array[int]) -> None:
        size = table_size(len(keys))
        self.mask = size - 1
        self.keys = array("q", bytes(8 * size))
        self.offsets = array("q", bytes(8 * size))
        table, mask, offs = self.keys, self.mask, self.offsets
        for key, off in zip(keys, offsets, strict=True):
            i = probe(table, mask, key or 1)
            table[i] = key or 1
            offs[i] = off  # the later line wins: a newer answer for the same question

    @staticmethod
    def key(digest: bytes | str, answer: int) -> int:
        """Both are uniform 64-bit values: their XOR is one (as a signed int for the table)."""
        v = (int(digest[:16], 16) ^ answer) & _MASK64
        return v - (1 << 64) if v >= 1 << 63 else v

    @classmethod
    def build(cls, path: Path | None, size: int) -> Copies:
        """One pass over the first ``size`` bytes of the journal: every ok line with a fingerprint and a digest."""
        keys, offsets = array("q"), array("q")
        if path is not None and size > 0:
            try:
                with open(path, "rb", buffering=0) as f:
                    _scan_copies(f.fileno(), size, keys, offsets)
            except OSError:
                pass  # no copies found is a correct (if costlier) answer
        return cls(keys, offsets)

    def find(self, digest: str, answer: int) -> int | None:
        i = probe(self.keys, self.mask, self.key(digest, answer) or 1)
        return self.offsets[i] if self.keys[i] else None


def _scan_copies(fd: int, size: int, keys: array[int], offsets: array[int]) -> None:
    rest = b""
    pos = 0
    add_key, add_off = keys.append, offsets.append
    key = Copies.key
    while pos < size:
        chunk = os.read(fd, min(CHUNK, size - pos))
        if not chunk:
            break
        lines = chunk.split(b"\n")
        if rest:
            lines[0] = rest + lines[0]
        off = pos - len(rest)
        pos += len(chunk)
        rest = lines.pop()
        for line in lines:
            k = line.find(FINGERPRINTED_OK, 9)
            if k > 0:
                f = k + _FP_AT
                d = f + _FP_HEX + len(_DIGEST_SEP)
                if line.startswith(_DIGEST_SEP, f + _FP_HEX) and line.startswith(b'"', d + _DIGEST_HEX):
                    try:
                        add_key(key(line[d : d + _DIGEST_HEX], int(line[f + _ANSWER_AT : f + _FP_HEX], 16)))
                    except ValueError:
                        pass
                    else:
                        add_off(off)
            off += len(line) + 1
