"""Which files in a folder batchcap wrote, so ``export``, ``report`` and ``bench`` replace only their own.

Names such as ``metadata.jsonl``, ``metadata.csv`` or ``index.html`` are also what users and other tools write; an
export into the photo folder itself (imagefolder without ``--out``) must not replace a ``metadata.jsonl`` someone
made by hand. Each folder batchcap writes outputs into gets a small ledger, ``.batchcap-outputs.json`` (hidden:
``datasets`` and the Hub's viewer skip it, and the printed ``hf upload`` command leaves it out), holding each
written file's size and modification time as batchcap left it. An existing file is batchcap's when the ledger
names it and it is unchanged since; anything else (a user's file, or batchcap's file edited since) is kept and
the command stops before it writes (exit 2) unless ``--overwrite`` is given.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import orjson

from batchcap.errors import ConfigError

__all__ = ["LEDGER", "Ledger", "note_written", "refuse_foreign"]

LEDGER = ".batchcap-outputs.json"


class Ledger:
    """The files batchcap wrote in one folder: name -> [size, mtime_ns] as it left them."""

    __slots__ = ("_changed", "_known", "folder")

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._changed = False
        try:
            raw = orjson.loads((folder / LEDGER).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            raw = {}
        files = raw.get("files") if isinstance(raw, dict) else None
        self._known: dict[str, list[int]] = files if isinstance(files, dict) else {}

    def _name(self, path: Path) -> str:
        return path.relative_to(self.folder).as_posix()

    def foreign(self, path: Path) -> bool:
        """``path`` exists and is not a file batchcap wrote here (or it was changed since)."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        except OSError:
            return True
        return self._known.get(self._name(path)) != [st.st_size, st.st_mtime_ns]

    def wrote(self, path: Path) -> None:
        """Note ``path`` as batchcap's, as it is now (call after writing it)."""
        try:
            st = path.stat()
        except OSError:
            return
        self._known[self._name(path)] = [st.st_size, st.st_mtime_ns]
        self._changed = True

    def save(self) -> None:
        """Write the ledger when something was noted (temp file + rename); an unwritable folder failed earlier."""
        if not self._changed:
            return
        target = self.folder / LEDGER
        tmp = target.with_name(f".{LEDGER}.{os.getpid()}.tmp")
        tmp.write_bytes(orjson.dumps({"written_by": "batchcap", "files": self._known}, option=orjson.OPT_SORT_KEYS))
        os.replace(tmp, target)
        self._changed = False


def _ledger(ledgers: dict[Path, Ledger], folder: Path) -> Ledger:
    """``folder``'s ledger, read once per call of the functions below."""
    if folder not in ledgers:
        ledgers[folder] = Ledger(folder)
    return ledgers[folder]


def note_written(paths: Iterable[Path]) -> None:
    """Record ``paths`` (files just written) in their folders' ledgers."""
    ledgers: dict[Path, Ledger] = {}
    for path in paths:
        if not path.is_file():
            continue
        _ledger(ledgers, path.parent).wrote(path)
    for ledger in ledgers.values():
        ledger.save()


def refuse_foreign(paths: Iterable[Path], *, overwrite: bool) -> None:
    """Before writing: stop (``ConfigError``, exit 2) if any of ``paths`` exists and batchcap did not write it."""
    if overwrite:
        return
    ledgers: dict[Path, Ledger] = {}
    foreign = []
    for path in paths:
        if _ledger(ledgers, path.parent).foreign(path):
            foreign.append(path)
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise ConfigError(f"{foreign[0]}{more} is already there and batchcap did not write it (or it was changed "
                          "since): nothing was written; move it away, choose another --out, or pass --overwrite "
                          "to replace it")
