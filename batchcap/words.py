"""Counted nouns for messages: ``plural(1, "file") == "1 file"``, ``plural(3, "copy") == "3 copies"``.

Every count a person reads goes through here, so "1 files" and "1 errors" cannot come back one message at a
time (``tests/unit/test_words.py`` scans the printing modules for a count written before a bare plural).
"""

from __future__ import annotations

__all__ = ["plural", "plural_word"]

_VOWELS = frozenset("aeiou")


def plural_word(n: int, noun: str, many: str | None = None) -> str:
    """``noun`` for exactly one, else ``many`` (default: English's regular plural of ``noun``)."""
    if n == 1:
        return noun
    if many is not None:
        return many
    if noun.endswith("y") and len(noun) > 1 and noun[-2] not in _VOWELS:
        return noun[:-1] + "ies"  # copy -> copies, retry -> retries, entry -> entries
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    return noun + "s"


def plural(n: int, noun: str, many: str | None = None, *, grouped: bool = False) -> str:
    """The count and its noun: ``"1 error"``, ``"2 errors"``; ``grouped`` writes ``12,345``."""
    count = f"{n:,}" if grouped else str(n)
    return f"{count} {plural_word(n, noun, many)}"
