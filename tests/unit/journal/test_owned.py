"""The outputs ledger: batchcap replaces only files it wrote and nobody changed since."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from batchcap.errors import ConfigError
from batchcap.journal.owned import LEDGER, Ledger, note_written, refuse_foreign


def test_a_file_is_ours_only_as_we_left_it(tmp_path: Path) -> None:
    out = tmp_path / "metadata.csv"
    assert not Ledger(tmp_path).foreign(out)  # not there: nothing to lose
    out.write_text("a,b\n", encoding="utf-8")
    assert Ledger(tmp_path).foreign(out)  # someone else's
    note_written([out])
    assert not Ledger(tmp_path).foreign(out)  # read back from the ledger file
    st = out.stat()
    os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # touched or edited since: theirs now
    assert Ledger(tmp_path).foreign(out)


def test_refuse_foreign_names_the_file_and_the_way_out(tmp_path: Path) -> None:
    mine, theirs = tmp_path / "index.html", tmp_path / "README.md"
    mine.write_text("<p>", encoding="utf-8")
    note_written([mine])
    refuse_foreign([mine, tmp_path / "app.js"], overwrite=False)  # ours, and a missing one: fine
    theirs.write_text("# notes\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"README\.md is already there .* --overwrite"):
        refuse_foreign([mine, theirs], overwrite=False)
    refuse_foreign([theirs], overwrite=True)


def test_an_unreadable_ledger_makes_every_file_foreign(tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    out.write_text("x", encoding="utf-8")
    note_written([out])
    (tmp_path / LEDGER).write_bytes(b"{not json")
    assert Ledger(tmp_path).foreign(out)
