"""Counted nouns: "1 file", "2 copies", and no message that writes a count before a bare plural."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from batchcap.words import plural, plural_word

ROOT = Path(__file__).parents[2] / "batchcap"


@pytest.mark.parametrize(
    ("n", "noun", "expected"),
    [
        (0, "file", "0 files"),
        (1, "file", "1 file"),
        (2, "file", "2 files"),
        (1, "copy", "1 copy"),
        (3, "copy", "3 copies"),
        (1, "retry", "1 retry"),
        (5, "retry", "5 retries"),
        (2, "day", "2 days"),  # a vowel before the y: a plain s
        (2, "match", "2 matches"),
        (2, "bus", "2 buses"),
        (1, "error", "1 error"),
        (1, "request", "1 request"),
    ],
)
def test_plural(n: int, noun: str, expected: str) -> None:
    assert plural(n, noun) == expected


def test_irregular_and_grouped() -> None:
    assert plural(2, "exact copy", "exact copies") == "2 exact copies"
    assert plural(1, "exact copy", "exact copies") == "1 exact copy"
    assert plural(12345, "image", grouped=True) == "12,345 images"
    assert plural_word(1, "child", "children") == "child"
    assert plural_word(4, "child", "children") == "children"


#: A count in an f-string followed by a plural noun ("{n} files"): it reads "1 files" when n is 1.
_BARE_PLURAL = re.compile(
    r"\{(?P<expr>[^{}:]+)\} (?:files|images|copies|errors|requests|retries|records|lines|captions|journals|shards"
    r"|targets|workers|sidecars|folders|paths|thumbnails|attempts|entries|parts)\b(?!/)"
)
#: Counts that are never 1 (a constant), as (file, expression).
_NEVER_ONE = {("check/preflight.py", "MAX_PROBE")}


def test_no_message_writes_a_count_before_a_bare_plural() -> None:
    """Every count a person reads goes through ``plural``: a new "{n} errors" fails here, not in a user's
    terminal. Rates ("images/s") and constants are fine."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            for match in _BARE_PLURAL.finditer(line):
                if (rel, match["expr"].strip()) not in _NEVER_ONE:
                    found.append(f"{rel}:{number}: {line.strip()}")
    assert not found, "use batchcap.words.plural for these counts:\n" + "\n".join(found)
